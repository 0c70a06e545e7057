//! Sealed, crash-safe records on a directory the host controls (issue 11), and the place the
//! `local` key store keeps its root when no hardware key exists (issue 5).
//!
//! ```text
//! let state = StateDir::open("/var/lib/runner", KeySource::Snp)?;   // blocking: spawn_blocking
//! state.put("workers", &id, &record_bytes)?;                       // durable when Ok
//! for r in state.load_all("workers")? { match r { Ok((id, bytes)) => …, Err(refused) => … } }
//! state.delete("workers", &id)?;                                   // durable when Ok
//! let root = state.get_or_create_secret("local-keys")?;            // 32 random bytes, kept sealed
//! ```
//!
//! # Layout
//!
//! ```text
//! <dir>/                  0700, created if missing
//!   lock                  flock'ed while a StateDir is open: one runner per directory
//!   store-id              this directory's random 16-byte id, sealed
//!   dev-root.key          KeySource::DevFile only: the root in clear, 0600
//!   records/<kind>/<name>.rec
//! ```
//!
//! # What it guarantees
//!
//! - **Confidentiality and integrity** of each record against the host: XChaCha20-Poly1305
//!   under a key derived from [`KeySource`] (SNP: the measurement-bound derived key, see
//!   `attest::sealing`). The authenticated header (format version, store id, kind, name,
//!   length; see `format.rs`) binds every record to *this* directory and to *its* name: a record
//!   modified, cut off, renamed, moved to another kind, or copied from another state directory
//!   (even one sealed under the same key: same image on the same chip) is refused. Each refusal
//!   is reported per record ([`RecordError`], also logged) and never stops the others loading.
//! - **Durability**: `put` returns after the record is on disk (temporary file in the same
//!   directory, fsync, rename, fsync of the directory); `delete` after unlink + fsync of the
//!   directory. A crash at any instant leaves either the old or the new record, never a mix;
//!   leftover temporary files are removed at open and never block start-up.
//!
//! # Cipher choice
//!
//! XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`, audited by NCC Group in 2020): its
//! 24-byte nonce can be drawn at random for every write with no practical collision risk and no
//! counter to keep (a counter on a host-controlled disk could be rolled back, and a repeated
//! nonce under GCM is fatal). Constant-time in software, so it does not depend on AES-NI.
//! AES-256-GCM-SIV would also survive nonce reuse, but its crate sees less use.
//!
//! # What it does NOT prevent
//!
//! - **Rollback of the whole directory**: the host can put back an older copy of the entire
//!   directory (or the whole disk). Every file in it is then genuine and consistent, so it opens:
//!   deleted workers reappear, newer ones vanish, an older config comes back. The same holds for
//!   one record replaced by its own older version (same store id, same name). Detecting this
//!   needs a monotonic counter outside the host's reach (e.g. a version stored on Sapphire and
//!   checked at start). **Not built.**
//! - **Deletion**: the host can delete records or the whole directory (denial of service). A
//!   missing store id next to existing records is refused ([`StateError::StoreIdMissing`]) rather
//!   than silently started afresh.
//! - **Size and timing**: file sizes, names (worker ids), and when records change are visible.
//! - **Dev mode** ([`KeySource::DevFile`]): the key lies next to the data; nothing is protected.

mod error;
mod format;
mod fsio;
mod key;

#[cfg(test)]
mod tests;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use attest::sealing::SealingRoot;
use nix::fcntl::{Flock, FlockArg};

pub use error::{RecordError, Refused, StateError};
pub use key::{KeySource, DEV_ROOT_FILE};

use format::{RecordId, Sealer, StoreId};

/// One record from [`StateDir::load_all`]: its name and bytes, or why it was refused.
pub type Loaded = Result<(String, Vec<u8>), RecordError>;

/// The largest record accepted, written or read (a bound against hostile files; scripts are
/// limited far below it by `--max-script-bytes`).
pub const MAX_RECORD_BYTES: usize = 256 << 20;
/// The largest record file read: [`MAX_RECORD_BYTES`] plus the header (≤ 287 bytes with the
/// longest kind and name), nonce and tag.
const MAX_FILE_BYTES: u64 = MAX_RECORD_BYTES as u64 + 512;
/// Longest kind or record name.
pub const MAX_NAME_LEN: usize = 128;
/// The kind [`StateDir::get_or_create_secret`] keeps its secrets under.
pub const SECRETS_KIND: &str = "secrets";

const LOCK_FILE: &str = "lock";
const STORE_ID_FILE: &str = "store-id";
const RECORDS_DIR: &str = "records";
const RECORD_SUFFIX: &str = ".rec";

/// An open state directory. Blocking file I/O: call from `spawn_blocking` in async code.
/// `Send + Sync`: share it behind an `Arc`.
pub struct StateDir {
    path: PathBuf,
    records: PathBuf,
    sealer: Sealer,
    store_id: StoreId,
    /// Serialises get-or-create of secrets (two creators must not both win).
    secrets: Mutex<()>,
    _lock: Flock<File>,
}

impl std::fmt::Debug for StateDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDir")
            .field("path", &self.path)
            .field("store_id", &hex::encode(self.store_id))
            .finish_non_exhaustive()
    }
}

impl StateDir {
    /// Opens (creating if missing) the state directory at `path` with the key from `key`.
    ///
    /// Fails if another process has it open ([`StateError::Busy`]), if the key cannot be had,
    /// or if the directory's store id cannot be opened under this key (another image or chip,
    /// or tampered): the caller decides whether to run stateless. Leftover temporary files are
    /// removed.
    pub fn open(path: impl Into<PathBuf>, key: KeySource) -> Result<StateDir, StateError> {
        let path = path.into();
        let io = |what: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| StateError::Io {
                what,
                path: p,
                source,
            }
        };
        fsio::ensure_private_dir(&path).map_err(io("create state directory", &path))?;
        let lock = lock(&path)?;
        let records = path.join(RECORDS_DIR);
        fsio::ensure_private_dir(&records).map_err(io("create directory", &records))?;

        // Crash leftovers; then make every existing entry durable (a runner killed between a
        // rename and its directory fsync left it in the page cache only).
        let mut removed = fsio::remove_temp_files(&path).map_err(io("list", &path))?;
        let kinds = kind_dirs(&records).map_err(io("list", &records))?;
        for dir in &kinds {
            removed += fsio::remove_temp_files(dir).map_err(io("list", dir))?;
            fsio::sync_dir(dir).map_err(io("fsync", dir))?;
        }
        if removed > 0 {
            tracing::info!(removed, path = %path.display(), "removed temporary state files left by an interrupted write");
        }
        fsio::sync_dir(&records).map_err(io("fsync", &records))?;

        let key = key.state_key(&path)?;
        let sealer = Sealer::new(key.as_bytes());
        drop(key);
        let store_id = store_id(&path, &sealer, &kinds)?;
        fsio::sync_dir(&path).map_err(io("fsync", &path))?;
        tracing::info!(path = %path.display(), store_id = %hex::encode(store_id), "state directory open");
        Ok(StateDir {
            path,
            records,
            sealer,
            store_id,
            secrets: Mutex::new(()),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores `bytes` as record `kind`/`name`, replacing any previous one. Durable when `Ok`.
    pub fn put(&self, kind: &str, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        validate_name("kind", kind)?;
        validate_name("name", name)?;
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(StateError::TooLarge {
                len: bytes.len(),
                max: MAX_RECORD_BYTES,
            });
        }
        let dir = self.records.join(kind);
        fsio::ensure_private_dir(&dir).map_err(|source| StateError::Io {
            what: "create directory",
            path: dir.clone(),
            source,
        })?;
        let sealed = self
            .sealer
            .seal_record(&self.id(kind, name), bytes)
            .map_err(|e| StateError::Io {
                what: "random nonce for",
                path: dir.join(record_file(name)),
                source: io::Error::other(e),
            })?;
        fsio::write_durably(&dir, &record_file(name), &sealed).map_err(|source| StateError::Io {
            what: "write record",
            path: dir.join(record_file(name)),
            source,
        })
    }

    /// Removes record `kind`/`name`. Durable when `Ok`; `Ok(false)` if there was none.
    pub fn delete(&self, kind: &str, name: &str) -> Result<bool, StateError> {
        validate_name("kind", kind)?;
        validate_name("name", name)?;
        let dir = self.records.join(kind);
        match fsio::remove_durably(&dir, &record_file(name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false), // no such kind dir
            r => r.map_err(|source| StateError::Io {
                what: "delete record",
                path: dir.join(record_file(name)),
                source,
            }),
        }
    }

    /// Record `kind`/`name`: `Ok(None)` if absent, [`StateError::Record`] if refused.
    pub fn get(&self, kind: &str, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        validate_name("kind", kind)?;
        validate_name("name", name)?;
        let path = self.records.join(kind).join(record_file(name));
        match fsio::read_bounded(&path, MAX_FILE_BYTES) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            read => self
                .open_read(kind, name, &path, read)
                .map(Some)
                .map_err(StateError::Record),
        }
    }

    /// Every record of `kind`, sorted by name: each either its name and bytes or the reason it
    /// was refused (also logged). One bad record never hides the others. Fails as a whole only
    /// if the kind's directory cannot be listed.
    pub fn load_all(&self, kind: &str) -> Result<Vec<Loaded>, StateError> {
        validate_name("kind", kind)?;
        let dir = self.records.join(kind);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StateError::Io {
                    what: "list",
                    path: dir,
                    source,
                })
            }
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| StateError::Io {
                what: "list",
                path: dir.clone(),
                source,
            })?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if fsio::is_temp(&file_name) {
                continue; // a write in progress (or a crash leftover, removed at next open)
            }
            files.push((file_name, entry.path()));
        }
        files.sort();

        let out = files
            .into_iter()
            .map(|(file_name, path)| {
                let name = file_name
                    .strip_suffix(RECORD_SUFFIX)
                    .filter(|n| validate_name("name", n).is_ok());
                let result = match name {
                    None => Err(RecordError {
                        path,
                        name: None,
                        reason: Refused::BadFileName,
                    }),
                    Some(name) => {
                        let read = fsio::read_bounded(&path, MAX_FILE_BYTES);
                        self.open_read(kind, name, &path, read)
                            .map(|bytes| (name.to_owned(), bytes))
                    }
                };
                if let Err(e) = &result {
                    tracing::warn!(path = %e.path.display(), reason = %e.reason, "state record refused");
                }
                result
            })
            .collect();
        Ok(out)
    }

    /// The 32-byte secret `name` (kind [`SECRETS_KIND`]), created at random and stored if
    /// absent. A stored secret that is refused is an error, never silently replaced (a new root
    /// would change every key derived from it).
    pub fn get_or_create_secret(&self, name: &str) -> Result<SealingRoot, StateError> {
        let _guard = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        let path = || self.records.join(SECRETS_KIND).join(record_file(name));
        if let Some(mut bytes) = self.get(SECRETS_KIND, name)? {
            let secret: Result<[u8; 32], _> = bytes.as_slice().try_into();
            let len = bytes.len();
            bytes.fill(0);
            return match secret {
                Ok(secret) => Ok(SealingRoot::from_bytes(secret)),
                Err(_) => Err(StateError::Record(RecordError {
                    path: path(),
                    name: Some(name.to_owned()),
                    reason: Refused::Truncated {
                        expected: 32,
                        found: len as u64,
                    },
                })),
            };
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| StateError::Io {
            what: "random secret for",
            path: path(),
            source: io::Error::other(e),
        })?;
        let secret = SealingRoot::from_bytes(bytes);
        bytes.fill(0);
        self.put(SECRETS_KIND, name, secret.as_bytes())?;
        tracing::info!(name, "created a new sealed secret");
        Ok(secret)
    }

    fn id<'a>(&'a self, kind: &'a str, name: &'a str) -> RecordId<'a> {
        RecordId {
            store_id: &self.store_id,
            kind,
            name,
        }
    }

    fn open_read(
        &self,
        kind: &str,
        name: &str,
        path: &Path,
        read: io::Result<fsio::Bounded>,
    ) -> Result<Vec<u8>, RecordError> {
        let refused = |reason| RecordError {
            path: path.to_path_buf(),
            name: Some(name.to_owned()),
            reason,
        };
        match read {
            Err(e) => Err(refused(Refused::Unreadable(e))),
            Ok(fsio::Bounded::TooLarge(len)) => Err(refused(Refused::TooLarge {
                len,
                max: MAX_FILE_BYTES,
            })),
            Ok(fsio::Bounded::Bytes(file)) => self
                .sealer
                .open_record(&self.id(kind, name), &file)
                .map_err(refused),
        }
    }
}

/// Checks a kind or record name: 1 to [`MAX_NAME_LEN`] ASCII letters, digits, `-` or `_`
/// (a UUID, a hex digest). No `.`, no `/`: a name can never leave its directory.
pub fn validate_name(what: &'static str, value: &str) -> Result<(), StateError> {
    let rule = "1 to 128 ASCII letters, digits, '-' or '_'";
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidName {
            what,
            value: value.chars().take(MAX_NAME_LEN + 8).collect(),
            rule,
        })
    }
}

fn record_file(name: &str) -> String {
    format!("{name}{RECORD_SUFFIX}")
}

/// Takes the directory's lock file (kept open, and so locked, while the `StateDir` lives).
fn lock(dir: &Path) -> Result<Flock<File>, StateError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|source| StateError::Io {
            what: "open lock file",
            path: path.clone(),
            source,
        })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            StateError::Busy(dir.to_path_buf())
        } else {
            StateError::Io {
                what: "lock",
                path,
                source: errno.into(),
            }
        }
    })
}

/// The kind directories under `records/` (entries with a valid kind name that are directories).
fn kind_dirs(records: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(records)? {
        let entry = entry?;
        let valid = entry
            .file_name()
            .to_str()
            .is_some_and(|n| validate_name("kind", n).is_ok());
        if valid && entry.file_type()?.is_dir() {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Opens the store id, or creates it when the directory holds no record yet.
fn store_id(dir: &Path, sealer: &Sealer, kinds: &[PathBuf]) -> Result<StoreId, StateError> {
    let path = dir.join(STORE_ID_FILE);
    match fsio::read_bounded(&path, 1024) {
        Ok(fsio::Bounded::Bytes(file)) => sealer
            .open_store_id(&file)
            .map_err(|reason| StateError::StoreId { path, reason }),
        Ok(fsio::Bounded::TooLarge(len)) => Err(StateError::StoreId {
            path,
            reason: Refused::TooLarge { len, max: 1024 },
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut records = 0;
            for kind in kinds {
                let entries = fs::read_dir(kind).map_err(|source| StateError::Io {
                    what: "list",
                    path: kind.clone(),
                    source,
                })?;
                records += entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(RECORD_SUFFIX))
                    .count();
            }
            if records > 0 {
                return Err(StateError::StoreIdMissing { path, records });
            }
            let mut id = StoreId::default();
            let io = |source| StateError::Io {
                what: "create store id",
                path: path.clone(),
                source,
            };
            getrandom::fill(&mut id).map_err(|e| io(io::Error::other(e)))?;
            let sealed = sealer
                .seal_store_id(&id)
                .map_err(|e| io(io::Error::other(e)))?;
            fsio::write_durably(dir, STORE_ID_FILE, &sealed).map_err(io)?;
            tracing::info!(path = %dir.display(), "new state directory");
            Ok(id)
        }
        Err(source) => Err(StateError::StoreId {
            path,
            reason: Refused::Unreadable(source),
        }),
    }
}
