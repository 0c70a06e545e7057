//! Crash-safe file operations: write to a temporary file, fsync, rename, fsync the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Suffix of temporary files; with a leading `.` they are never taken for records.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Whether a directory entry is one of our temporary files (`.<final>.<random>.tmp`).
pub(crate) fn is_temp(file_name: &str) -> bool {
    file_name.starts_with('.') && file_name.ends_with(TMP_SUFFIX)
}

/// Replaces `dir/file_name` with `bytes` atomically and durably: after `Ok`, the new content
/// survives a crash; after a crash at any instant, the file holds the old or the new content,
/// never a mix (a leftover temporary file is removed at the next open).
pub(crate) fn write_durably(dir: &Path, file_name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut rand = [0u8; 8];
    getrandom::fill(&mut rand).map_err(io::Error::other)?;
    let tmp = dir.join(format!(".{file_name}.{}{TMP_SUFFIX}", hex::encode(rand)));
    let written = (|| {
        // create_new: O_EXCL, so an existing file or symlink at that path is never followed.
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, dir.join(file_name))
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Removes `dir/file_name` durably. `Ok(false)` if it did not exist.
pub(crate) fn remove_durably(dir: &Path, file_name: &str) -> io::Result<bool> {
    match fs::remove_file(dir.join(file_name)) {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// fsync of a directory: makes the entries created, renamed or removed in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` (mode 0700) if missing, durably (the parent is synced). Returns whether it was
/// created. An existing directory with group or other permissions is narrowed to 0700.
pub(crate) fn ensure_private_dir(dir: &Path) -> io::Result<bool> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = fs::metadata(dir)?;
            if !meta.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not a directory",
                ));
            }
            if meta.permissions().mode() & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            }
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Missing parents: create them too (each 0700), then make every new entry durable.
            fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(dir)?;
            for ancestor in dir.ancestors().skip(1) {
                if !ancestor.as_os_str().is_empty() {
                    sync_dir(ancestor)?;
                }
            }
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// Reads a regular file without following a symlink, refusing more than `max` bytes.
pub(crate) enum Bounded {
    Bytes(Vec<u8>),
    TooLarge(u64),
}

pub(crate) fn read_bounded(path: &Path, max: u64) -> io::Result<Bounded> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let len = f.metadata()?.len();
    if len > max {
        return Ok(Bounded::TooLarge(len));
    }
    let mut out = Vec::with_capacity(len as usize);
    // The file may grow between metadata and read: read at most one byte past the limit.
    f.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Ok(Bounded::TooLarge(out.len() as u64));
    }
    Ok(Bounded::Bytes(out))
}

/// Removes our temporary files left in `dir` by a crash. Returns how many were removed; a
/// failure to remove one is logged, never fatal.
pub(crate) fn remove_temp_files(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_temp(&name) {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(path = %entry.path().display(), error = %e, "could not remove a leftover temporary state file")
            }
        }
    }
    Ok(removed)
}
