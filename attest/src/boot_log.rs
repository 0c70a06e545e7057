//! The firmware's boot event log, as the kernel exposes it, read raw for a verifier to replay:
//!
//! - **TPM** (`/sys/kernel/security/tpm0/binary_bios_measurements`, securityfs): the log of the
//!   measurements into the TPM's PCRs (the clouds' vTPMs, swtpm under QEMU). TCG PC Client
//!   format, crypto-agile after a SHA-1 header event.
//! - **CCEL** (`/sys/firmware/acpi/tables/data/CCEL`): the log area of the ACPI "CC Event Log"
//!   table a TDX guest's firmware (TDVF, Google's) fills while it extends RTMRs. The kernel
//!   exposes the whole reserved area (the table's minimum length), so the bytes after the last
//!   event are padding.
//!
//! Nothing here parses either log: the bytes are handed to the verifier as the firmware wrote
//! them. Every path goes under a root (`/` on a machine, a fake tree in tests), like
//! [`crate::Attester::detect_at`].

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::host::{Fs, RootedFs};

/// The TPM's event log (securityfs must be mounted on `/sys/kernel/security`).
pub const TPM_LOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";
/// The TDX firmware's event log: the ACPI CCEL table's log area.
pub const CCEL_LOG: &str = "/sys/firmware/acpi/tables/data/CCEL";
/// The ACPI CCEL table itself (its header says where the log area is and how long).
pub const CCEL_TABLE: &str = "/sys/firmware/acpi/tables/CCEL";

/// A log longer than this is refused rather than read into memory: real ones are tens of KiB
/// (the CCEL area OVMF reserves is 64 KiB).
pub const MAX_LOG_BYTES: u64 = 16 << 20;

/// Which log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootLogKind {
    /// The TPM event log ([`TPM_LOG`]).
    Tpm,
    /// The TDX CC event log ([`CCEL_LOG`]).
    Ccel,
}

impl BootLogKind {
    /// Where the kernel exposes this log (an absolute path below the root).
    pub fn path(self) -> &'static str {
        match self {
            BootLogKind::Tpm => TPM_LOG,
            BootLogKind::Ccel => CCEL_LOG,
        }
    }
}

impl fmt::Display for BootLogKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BootLogKind::Tpm => "tpm",
            BootLogKind::Ccel => "ccel",
        })
    }
}

/// One boot event log, as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootLog {
    /// Which log.
    pub kind: BootLogKind,
    /// Its bytes, unparsed (the CCEL area with its trailing padding).
    pub bytes: Vec<u8>,
}

/// Why a log that is there could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BootLogError {
    /// The file exists but reading it failed (permissions: the CCEL file is root's only).
    #[error("cannot read the {kind} boot event log {}: {source}", path.display())]
    Read {
        /// Which log.
        kind: BootLogKind,
        /// The file, as opened.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is there but holds nothing (a TPM whose firmware left no log).
    #[error("the {kind} boot event log {} is empty", path.display())]
    Empty {
        /// Which log.
        kind: BootLogKind,
        /// The file, as opened.
        path: PathBuf,
    },
    /// Longer than [`MAX_LOG_BYTES`].
    #[error("the {kind} boot event log {} is longer than {MAX_LOG_BYTES} bytes", path.display())]
    TooLarge {
        /// Which log.
        kind: BootLogKind,
        /// The file, as opened.
        path: PathBuf,
    },
}

/// The `kind` log of this machine; `Ok(None)` when the kernel exposes none.
pub fn read(kind: BootLogKind) -> Result<Option<BootLog>, BootLogError> {
    read_at("/", kind)
}

/// The `kind` log as seen under `root`; `Ok(None)` when it is not there.
pub fn read_at(
    root: impl Into<PathBuf>,
    kind: BootLogKind,
) -> Result<Option<BootLog>, BootLogError> {
    read_with(&RootedFs::new(root), kind)
}

/// Every boot event log this machine has: the CCEL first (a TDX guest's, replayed into the
/// RTMRs the hardware quote carries), then the TPM's. Empty when there is neither.
pub fn find() -> Result<Vec<BootLog>, BootLogError> {
    find_at("/")
}

/// [`find`] under `root`.
pub fn find_at(root: impl Into<PathBuf>) -> Result<Vec<BootLog>, BootLogError> {
    let fs = RootedFs::new(root);
    let mut logs = Vec::new();
    for kind in [BootLogKind::Ccel, BootLogKind::Tpm] {
        if let Some(log) = read_with(&fs, kind)? {
            logs.push(log);
        }
    }
    Ok(logs)
}

pub(crate) fn read_with(fs: &dyn Fs, kind: BootLogKind) -> Result<Option<BootLog>, BootLogError> {
    let path = fs.real(Path::new(kind.path()));
    let error = |source| BootLogError::Read {
        kind,
        path: path.clone(),
        source,
    };
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(error(e)),
    };
    // securityfs and sysfs report sizes that are not the content's (0 for the TPM log): read
    // to the end, up to the limit.
    let mut bytes = Vec::new();
    file.take(MAX_LOG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(error)?;
    if bytes.len() as u64 > MAX_LOG_BYTES {
        return Err(BootLogError::TooLarge { kind, path });
    }
    if bytes.is_empty() {
        return Err(BootLogError::Empty { kind, path });
    }
    tracing::debug!(%kind, bytes = bytes.len(), path = %path.display(), "boot event log read");
    Ok(Some(BootLog { kind, bytes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, path: &str, bytes: &[u8]) {
        let file = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }

    /// The start of a TPM log: a TCG_PCR_EVENT header (PCR 0, EV_NO_ACTION) whose data is the
    /// "Spec ID Event03" signature. Only its bytes matter here.
    fn tpm_log() -> Vec<u8> {
        let mut log = vec![0, 0, 0, 0, 3, 0, 0, 0];
        log.extend([0u8; 20]);
        log.extend(33u32.to_le_bytes());
        log.extend(b"Spec ID Event03\0");
        log.extend([0u8; 17]);
        log
    }

    #[test]
    fn no_log_is_none_not_an_error() {
        let root = tempfile::tempdir().unwrap();
        for kind in [BootLogKind::Tpm, BootLogKind::Ccel] {
            assert!(read_at(root.path(), kind).unwrap().is_none(), "{kind}");
        }
        assert_eq!(find_at(root.path()).unwrap(), []);
    }

    #[test]
    fn the_tpm_log_is_read_from_securityfs_unchanged() {
        let root = tempfile::tempdir().unwrap();
        put(root.path(), TPM_LOG, &tpm_log());
        let log = read_at(root.path(), BootLogKind::Tpm).unwrap().unwrap();
        assert_eq!(log.kind, BootLogKind::Tpm);
        assert_eq!(log.bytes, tpm_log());
        assert!(read_at(root.path(), BootLogKind::Ccel).unwrap().is_none());
        assert_eq!(find_at(root.path()).unwrap(), [log]);
    }

    #[test]
    fn the_ccel_area_is_read_whole_with_its_padding() {
        let root = tempfile::tempdir().unwrap();
        let mut area = tpm_log();
        area.resize(64 << 10, 0xff);
        put(root.path(), CCEL_LOG, &area);
        // The table alone (no data file: a kernel without ACPI table data) is no log.
        put(root.path(), CCEL_TABLE, b"CCEL");
        let log = read_at(root.path(), BootLogKind::Ccel).unwrap().unwrap();
        assert_eq!(log.kind, BootLogKind::Ccel);
        assert_eq!(log.bytes.len(), 64 << 10);
        assert_eq!(log.bytes, area);
    }

    #[test]
    fn with_both_the_ccel_comes_first() {
        let root = tempfile::tempdir().unwrap();
        put(root.path(), TPM_LOG, b"tpm");
        put(root.path(), CCEL_LOG, b"ccel");
        let kinds: Vec<_> = find_at(root.path())
            .unwrap()
            .into_iter()
            .map(|log| (log.kind, log.bytes))
            .collect();
        assert_eq!(
            kinds,
            [
                (BootLogKind::Ccel, b"ccel".to_vec()),
                (BootLogKind::Tpm, b"tpm".to_vec())
            ]
        );
    }

    #[test]
    fn an_empty_log_is_an_error_naming_the_file() {
        let root = tempfile::tempdir().unwrap();
        put(root.path(), TPM_LOG, b"");
        let err = read_at(root.path(), BootLogKind::Tpm).unwrap_err();
        assert!(
            matches!(
                err,
                BootLogError::Empty {
                    kind: BootLogKind::Tpm,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("binary_bios_measurements"),
            "{err}"
        );
        assert!(
            find_at(root.path()).is_err(),
            "find does not skip a broken log"
        );
    }

    #[test]
    fn an_oversized_log_is_refused_not_read_whole() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join(CCEL_LOG.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        // Sparse: no disk space used.
        std::fs::File::create(&file)
            .unwrap()
            .set_len(MAX_LOG_BYTES + 1)
            .unwrap();
        let err = read_at(root.path(), BootLogKind::Ccel).unwrap_err();
        assert!(
            matches!(
                err,
                BootLogError::TooLarge {
                    kind: BootLogKind::Ccel,
                    ..
                }
            ),
            "{err}"
        );
        // Exactly the limit is still a log.
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(MAX_LOG_BYTES)
            .unwrap();
        assert_eq!(
            read_at(root.path(), BootLogKind::Ccel)
                .unwrap()
                .unwrap()
                .bytes
                .len() as u64,
            MAX_LOG_BYTES
        );
    }

    #[test]
    fn an_unreadable_log_is_an_error_not_absent() {
        let root = tempfile::tempdir().unwrap();
        // A directory where the file should be: opening works, reading fails (EISDIR), as an
        // I/O error on a real sysfs file would.
        std::fs::create_dir_all(root.path().join(TPM_LOG.trim_start_matches('/'))).unwrap();
        let err = read_at(root.path(), BootLogKind::Tpm).unwrap_err();
        assert!(
            matches!(
                err,
                BootLogError::Read {
                    kind: BootLogKind::Tpm,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn kinds_serialize_lowercase() {
        assert_eq!(
            serde_json::to_string(&BootLogKind::Ccel).unwrap(),
            "\"ccel\""
        );
        assert_eq!(serde_json::to_string(&BootLogKind::Tpm).unwrap(), "\"tpm\"");
        assert_eq!(BootLogKind::Tpm.to_string(), "tpm");
    }
}
