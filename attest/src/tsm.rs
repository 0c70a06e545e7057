//! The kernel's configfs-tsm report interface (Linux ≥ 6.7,
//! `Documentation/ABI/testing/configfs-tsm`): one protocol for SEV-SNP and TDX.
//!
//! 1. `mkdir /sys/kernel/config/tsm/report/<unique name>`: the kernel fills the entry with
//!    `inblob`, `outblob`, `auxblob`, `provider`, `generation`, ….
//! 2. Write the 64-byte report_data to `inblob` (one write); `generation` increments.
//! 3. Read `generation`, then `outblob` (the SNP report or the TDX quote) and `auxblob` (SNP
//!    certificate table; empty for TDX), then `generation` again: if it moved, another writer
//!    used the entry and the blobs may answer someone else's inblob, so the read is refused.
//! 4. `rmdir` the entry (always, also on error).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;
use crate::host::Fs;
use crate::Tee;

/// Where report entries are created.
pub(crate) const REPORT_DIR: &str = "/sys/kernel/config/tsm/report";

/// What one report request returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TsmReport {
    pub(crate) provider: String,
    pub(crate) outblob: Vec<u8>,
    pub(crate) auxblob: Vec<u8>,
}

pub(crate) fn available(fs: &dyn Fs) -> bool {
    fs.is_dir(Path::new(REPORT_DIR))
}

pub(crate) fn tee_of_provider(provider: &str) -> Option<Tee> {
    match provider {
        "sev_guest" => Some(Tee::Snp),
        "tdx_guest" => Some(Tee::Tdx),
        _ => None,
    }
}

/// The provider's name (`sev_guest`, `tdx_guest`), read from a short-lived entry.
pub(crate) fn provider(fs: &dyn Fs) -> Result<String, Error> {
    let entry = Entry::create(fs)?;
    entry.read_text("provider", "read configfs-tsm provider")
}

/// One report request for `inblob`.
pub(crate) fn report(fs: &dyn Fs, inblob: &[u8; 64]) -> Result<TsmReport, Error> {
    let entry = Entry::create(fs)?;
    let provider = entry.read_text("provider", "read configfs-tsm provider")?;
    entry.write("inblob", inblob, "write configfs-tsm inblob")?;
    let before = entry.generation()?;
    let outblob = entry.read("outblob", "read configfs-tsm outblob")?;
    let auxblob = match entry.read("auxblob", "read configfs-tsm auxblob") {
        Ok(blob) => blob,
        Err(e) => {
            tracing::debug!(error = %e, "no configfs-tsm auxblob");
            Vec::new()
        }
    };
    let after = entry.generation()?;
    if before != after {
        return Err(Error::GenerationChanged { before, after });
    }
    tracing::debug!(
        %provider,
        outblob = outblob.len(),
        auxblob = auxblob.len(),
        generation = after,
        "configfs-tsm report"
    );
    Ok(TsmReport {
        provider,
        outblob,
        auxblob,
    })
}

/// A report entry, removed when dropped.
struct Entry<'a> {
    fs: &'a dyn Fs,
    dir: PathBuf,
}

impl<'a> Entry<'a> {
    fn create(fs: &'a dyn Fs) -> Result<Self, Error> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "attest-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = Path::new(REPORT_DIR).join(name);
        fs.create_dir(&dir).map_err(|source| Error::Io {
            what: "create configfs-tsm report entry",
            path: fs.real(&dir),
            source,
        })?;
        Ok(Entry { fs, dir })
    }

    fn read(&self, file: &str, what: &'static str) -> Result<Vec<u8>, Error> {
        let path = self.dir.join(file);
        self.fs.read(&path).map_err(|source| Error::Io {
            what,
            path: self.fs.real(&path),
            source,
        })
    }

    fn read_text(&self, file: &str, what: &'static str) -> Result<String, Error> {
        let bytes = self.read(file, what)?;
        Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
    }

    fn write(&self, file: &str, data: &[u8], what: &'static str) -> Result<(), Error> {
        let path = self.dir.join(file);
        self.fs.write(&path, data).map_err(|source| Error::Io {
            what,
            path: self.fs.real(&path),
            source,
        })
    }

    fn generation(&self) -> Result<u64, Error> {
        let text = self.read_text("generation", "read configfs-tsm generation")?;
        text.parse().map_err(|_| Error::BadGeneration(text))
    }
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.fs.remove_dir(&self.dir) {
            tracing::warn!(path = %self.fs.real(&self.dir).display(), error = %e, "could not remove configfs-tsm report entry");
        }
    }
}
