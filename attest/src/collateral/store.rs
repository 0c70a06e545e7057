//! Where answers are kept: in memory, optionally in a directory, and (offline mode) in a bundle
//! read at start. An answer is keyed by its request (`amd:/vcek/v1/…`, `intel:/tdx/…`: service
//! and path with query, no host), so a bundle recorded against one mirror serves any other.
//!
//! A bundle is either a JSON file `{"version": 1, "answers": [Entry, …]}` or a directory of
//! `*.json` files holding one `Entry` each (the cache directory's own format, so a cache
//! directory is a bundle). Entries carry the body (base64), the response headers the clients
//! read, and `next_update` (unix seconds; absent = immutable, e.g. a VCEK).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::error::CollateralError;

/// One recorded answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The request key, e.g. `amd:/vcek/v1/Milan/cert_chain`.
    pub key: String,
    /// The response body.
    #[serde(with = "b64")]
    pub body: Vec<u8>,
    /// Response headers the clients read (issuer chains), URL-decoded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Kept until (unix seconds): the answer's own nextUpdate; `None` for immutable answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_update: Option<u64>,
}

impl Entry {
    /// A response header (case-insensitive name).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn fresh_at(&self, now: u64) -> bool {
        self.next_update.is_none_or(|n| now <= n)
    }
}

/// The bundle file format.
#[derive(Serialize, Deserialize)]
struct Bundle {
    version: u32,
    answers: Vec<Entry>,
}

const BUNDLE_VERSION: u32 = 1;

/// How many answers the memory cache keeps. A verifier fetches by whatever chip, TCB, FMSPC or
/// measurement its requesters' evidence names, so without a bound its memory would grow with
/// every new one (the fetch budget only slows that down).
pub(crate) const MEMORY_ENTRIES: usize = 4096;

/// How many answers the cache directory keeps, for the same reason. Past it, the least recently
/// used tenth goes (a file's modification time is its last use), so pruning is rare.
pub(crate) const DISK_ENTRIES: usize = 16384;

/// Memory cache (at most `capacity` answers: stale ones go first, then the least recently
/// used), optional cache directory, optional offline bundle.
#[derive(Debug)]
pub(crate) struct Store {
    memory: Mutex<Memory>,
    capacity: usize,
    dir: Option<Disk>,
    offline: Option<HashMap<String, Entry>>,
}

/// The cache directory: one file per answer, at most `capacity` of them.
#[derive(Debug)]
struct Disk {
    path: PathBuf,
    capacity: usize,
    /// How many answer files it holds (counted at start, then kept up to date).
    files: Mutex<usize>,
}

impl Disk {
    fn open(path: PathBuf) -> Result<Self, CollateralError> {
        std::fs::create_dir_all(&path).map_err(|e| cache_error(&path, e))?;
        let files = answer_files(&path)?.len();
        Ok(Disk {
            path,
            capacity: DISK_ENTRIES,
            files: Mutex::new(files),
        })
    }

    fn file(&self, key: &str) -> PathBuf {
        self.path.join(file_name(key))
    }

    /// Reads the answer for `key` and marks it used.
    fn read(&self, key: &str) -> Option<Entry> {
        let path = self.file(key);
        let entry: Entry = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        if let Ok(file) = std::fs::File::options().append(true).open(&path) {
            // Best effort: a failure only makes this answer look older to pruning.
            let _ = file.set_modified(std::time::SystemTime::now());
        }
        Some(entry)
    }

    /// Writes `entry` (atomically: a temporary file renamed) and prunes when over capacity.
    fn write(&self, entry: &Entry) -> Result<(), CollateralError> {
        let path = self.file(&entry.key);
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_vec_pretty(entry).map_err(|e| cache_error(&path, e))?;
        let new = !path.exists();
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| cache_error(&path, e))?;
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        *files += usize::from(new);
        if *files > self.capacity {
            *files = self.prune()?;
        }
        Ok(())
    }

    /// Removes the least recently used answers down to nine tenths of the capacity; returns
    /// how many are left.
    fn prune(&self) -> Result<usize, CollateralError> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = answer_files(&self.path)?
            .into_iter()
            .map(|f| {
                let used = std::fs::metadata(&f)
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (used, f)
            })
            .collect();
        let keep = self.capacity - self.capacity / 10;
        if files.len() <= keep {
            return Ok(files.len());
        }
        files.sort();
        let drop = files.len() - keep;
        for (_, file) in &files[..drop] {
            std::fs::remove_file(file).map_err(|e| cache_error(file, e))?;
        }
        tracing::info!(
            dir = %self.path.display(),
            removed = drop,
            kept = keep,
            "collateral cache directory full: least recently used answers removed"
        );
        Ok(keep)
    }
}

/// The answer files (`*.json`) of a cache directory or bundle directory.
fn answer_files(dir: &Path) -> Result<Vec<PathBuf>, CollateralError> {
    let mut files = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| cache_error(dir, e))? {
        let file = item.map_err(|e| cache_error(dir, e))?.path();
        if file.extension().is_some_and(|x| x == "json") {
            files.push(file);
        }
    }
    Ok(files)
}

/// The memory cache: each answer with the tick of its last use.
#[derive(Debug, Default)]
struct Memory {
    answers: HashMap<String, (Entry, u64)>,
    tick: u64,
}

impl Memory {
    fn get(&mut self, key: &str, now: u64) -> Option<Entry> {
        self.tick += 1;
        let tick = self.tick;
        let (entry, used) = self.answers.get_mut(key).filter(|(e, _)| e.fresh_at(now))?;
        *used = tick;
        Some(entry.clone())
    }

    fn insert(&mut self, entry: Entry, capacity: usize, now: u64) {
        self.tick += 1;
        if !self.answers.contains_key(&entry.key) && self.answers.len() >= capacity {
            self.answers.retain(|_, (e, _)| e.fresh_at(now));
            while self.answers.len() >= capacity.max(1) {
                let Some(oldest) = self
                    .answers
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                self.answers.remove(&oldest);
            }
        }
        self.answers.insert(entry.key.clone(), (entry, self.tick));
    }
}

fn cache_error(path: &Path, reason: impl ToString) -> CollateralError {
    CollateralError::Cache {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl Store {
    pub(crate) fn new(
        dir: Option<PathBuf>,
        offline: Option<&Path>,
    ) -> Result<Self, CollateralError> {
        let dir = dir.map(Disk::open).transpose()?;
        let offline = offline.map(read_bundle).transpose()?;
        Ok(Store {
            memory: Mutex::default(),
            capacity: MEMORY_ENTRIES,
            dir,
            offline,
        })
    }

    /// The same store keeping at most `capacity` answers in memory.
    #[cfg(test)]
    pub(crate) fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The same store keeping at most `capacity` answers in its directory.
    #[cfg(test)]
    fn with_disk_capacity(mut self, capacity: usize) -> Self {
        if let Some(disk) = &mut self.dir {
            disk.capacity = capacity;
        }
        self
    }

    /// Offline: the bundle's answer, fresh or not (the caller's checks refuse a stale one).
    pub(crate) fn offline(&self, key: &str) -> Option<Result<Entry, CollateralError>> {
        let bundle = self.offline.as_ref()?;
        Some(
            bundle
                .get(key)
                .cloned()
                .ok_or_else(|| CollateralError::Offline {
                    missing: key.to_owned(),
                }),
        )
    }

    /// A cached answer still fresh at `now`: memory first, then the directory.
    pub(crate) fn get(&self, key: &str, now: u64) -> Option<Entry> {
        if let Some(e) = self.lock().get(key, now) {
            return Some(e);
        }
        let entry = self.dir.as_ref()?.read(key)?;
        if entry.key != key || !entry.fresh_at(now) {
            return None;
        }
        self.lock().insert(entry.clone(), self.capacity, now);
        Some(entry)
    }

    /// Keeps a checked answer in memory and, with a cache directory, on disk.
    pub(crate) fn put(&self, entry: Entry) -> Result<(), CollateralError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Some(dir) = &self.dir {
            dir.write(&entry)?;
        }
        self.lock().insert(entry, self.capacity, now);
        Ok(())
    }

    /// Every answer in memory, sorted by key.
    pub(crate) fn entries(&self) -> Vec<Entry> {
        let mut all: Vec<Entry> = self
            .lock()
            .answers
            .values()
            .map(|(e, _)| e.clone())
            .collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes `entries` as a bundle: a JSON file, or (when `path` is an existing directory) one
/// file per answer.
pub(crate) fn write_bundle(path: &Path, entries: &[Entry]) -> Result<(), CollateralError> {
    if path.is_dir() {
        for entry in entries {
            let file = path.join(file_name(&entry.key));
            let json = serde_json::to_vec_pretty(entry).map_err(|e| cache_error(&file, e))?;
            std::fs::write(&file, json).map_err(|e| cache_error(&file, e))?;
        }
        return Ok(());
    }
    let bundle = Bundle {
        version: BUNDLE_VERSION,
        answers: entries.to_vec(),
    };
    let json = serde_json::to_vec_pretty(&bundle).map_err(|e| cache_error(path, e))?;
    std::fs::write(path, json).map_err(|e| cache_error(path, e))
}

/// Reads a bundle file or directory.
pub(crate) fn read_bundle(path: &Path) -> Result<HashMap<String, Entry>, CollateralError> {
    let entries = if path.is_dir() {
        let mut entries = Vec::new();
        for file in answer_files(path)? {
            let bytes = std::fs::read(&file).map_err(|e| cache_error(&file, e))?;
            entries.push(serde_json::from_slice(&bytes).map_err(|e| cache_error(&file, e))?);
        }
        entries
    } else {
        let bytes = std::fs::read(path).map_err(|e| cache_error(path, e))?;
        let bundle: Bundle = serde_json::from_slice(&bytes).map_err(|e| cache_error(path, e))?;
        if bundle.version != BUNDLE_VERSION {
            return Err(cache_error(
                path,
                format!(
                    "bundle version {} (expected {BUNDLE_VERSION})",
                    bundle.version
                ),
            ));
        }
        bundle.answers
    };
    Ok(entries.into_iter().map(|e| (e.key.clone(), e)).collect())
}

/// A readable, collision-free file name for a key: its characters that are safe in a file name,
/// then 16 hex digits of its SHA-256.
fn file_name(key: &str) -> String {
    let readable: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(100)
        .collect();
    let hash = hex::encode(&sha2::Sha256::digest(key.as_bytes())[..8]);
    format!("{readable}-{hash}.json")
}

mod b64 {
    use super::*;

    pub(super) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(key: &str, next_update: Option<u64>) -> Entry {
        Entry {
            key: key.to_owned(),
            body: key.as_bytes().to_vec(),
            headers: BTreeMap::new(),
            next_update,
        }
    }

    #[test]
    fn the_memory_cache_is_bounded_and_drops_stale_then_least_recently_used_answers() {
        let store = Store::new(None, None).unwrap().with_capacity(3);
        let later = u64::MAX / 2;
        store.put(answer("amd:/a", None)).unwrap();
        store.put(answer("amd:/b", None)).unwrap();
        store.put(answer("amd:/stale", Some(1))).unwrap();
        // Full: the stale answer goes first.
        store.put(answer("amd:/c", None)).unwrap();
        assert_eq!(store.entries().len(), 3);
        assert!(store.get("amd:/stale", 0).is_none());
        // `a` used, so `b` is the least recently used when `d` comes.
        assert!(store.get("amd:/a", later).is_some());
        store.put(answer("amd:/d", None)).unwrap();
        let keys: Vec<String> = store.entries().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["amd:/a", "amd:/c", "amd:/d"]);
        // A thousand distinct answers later, still three.
        for i in 0..1000 {
            store.put(answer(&format!("amd:/chip/{i}"), None)).unwrap();
        }
        assert_eq!(store.entries().len(), 3);
        // Replacing an answer already kept evicts nothing.
        store.put(answer("amd:/chip/999", None)).unwrap();
        assert_eq!(store.entries().len(), 3);
    }

    #[test]
    fn the_cache_directory_is_bounded_and_keeps_the_answers_used_last() {
        let dir = tempfile::tempdir().unwrap();
        let files = || answer_files(dir.path()).unwrap().len();
        let store = Store::new(Some(dir.path().to_owned()), None)
            .unwrap()
            .with_capacity(1)
            .with_disk_capacity(20);
        let long_ago = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for i in 0..20 {
            store.put(answer(&format!("amd:/chip/{i}"), None)).unwrap();
            // Written long ago, in order, so the file times say which is older.
            let file = dir.path().join(file_name(&format!("amd:/chip/{i}")));
            let when = long_ago + std::time::Duration::from_secs(i);
            std::fs::File::options()
                .append(true)
                .open(file)
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
        assert_eq!(files(), 20);
        // The oldest one, read from disk (memory holds one answer only), becomes the newest.
        assert!(store.get("amd:/chip/0", 0).is_some());
        store.put(answer("amd:/chip/20", None)).unwrap();
        // 21 > 20: down to 18, the three least recently used gone (1, 2, 3).
        assert_eq!(files(), 18);
        let kept = |i: u32| store.get(&format!("amd:/chip/{i}"), 0).is_some();
        assert!(kept(0) && kept(4) && kept(20));
        assert!(!kept(1) && !kept(2) && !kept(3));
        // A new store counts what the directory holds: 18, then 21 puts later pruned again.
        let again = Store::new(Some(dir.path().to_owned()), None)
            .unwrap()
            .with_disk_capacity(20);
        for i in 100..103 {
            again.put(answer(&format!("amd:/chip/{i}"), None)).unwrap();
        }
        assert_eq!(files(), 18);
    }
}
