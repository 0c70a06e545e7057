//! Typed errors: the store as a whole ([`StateError`]) and one refused record ([`RecordError`]).

use std::io;
use std::path::PathBuf;

use attest::sealing::SealingError;

/// The state directory cannot be used, or an operation on it failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file-system operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Another process (another runner) holds this state directory.
    #[error("state directory {0} is in use by another process")]
    Busy(PathBuf),
    /// A kind or record name outside the allowed alphabet (see [`super::validate_name`]).
    #[error("invalid record {what} {value:?}: {rule}")]
    InvalidName {
        /// "kind" or "name".
        what: &'static str,
        /// The value refused (names are ids, not secrets).
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A record larger than [`super::MAX_RECORD_BYTES`] was to be written.
    #[error("record of {len} bytes is larger than the {max} bytes a state record may hold")]
    TooLarge {
        /// Bytes given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The hardware sealing key could not be obtained.
    #[error("state sealing key: {0}")]
    Key(#[from] SealingError),
    /// The development root file is unusable (e.g. not 32 bytes).
    #[error("development root key {path}: {reason}")]
    DevKey {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Records exist but the store id is gone: the directory was tampered with (a crash cannot
    /// cause this: the store id is written, durably, before any record).
    #[error("state directory {path} holds {records} record file(s) but no store-id: tampered with; refusing to start a new store over them")]
    StoreIdMissing {
        /// The missing file.
        path: PathBuf,
        /// Record files found.
        records: usize,
    },
    /// The store id exists but cannot be opened under this key (another image or chip, or
    /// modified).
    #[error("state directory store-id {path}: {reason}")]
    StoreId {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        reason: Refused,
    },
    /// The one record asked for was refused.
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// One record file that could not be loaded. Others load regardless.
#[derive(Debug, thiserror::Error)]
#[error("state record {path}: {reason}")]
pub struct RecordError {
    /// The file.
    pub path: PathBuf,
    /// The record name taken from the file name, when the file name is a valid one.
    pub name: Option<String>,
    /// Why it was refused.
    pub reason: Refused,
}

/// Why a sealed file was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// It could not be read.
    #[error("unreadable: {0}")]
    Unreadable(#[source] io::Error),
    /// The file name is not `<name>.rec` with a valid name.
    #[error("not a record file name")]
    BadFileName,
    /// Larger than any record may be.
    #[error("{len} bytes, larger than the {max} bytes a record may hold")]
    TooLarge {
        /// File size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The file does not start with the record magic.
    #[error("not a sealed state file (bad magic)")]
    NotSealed,
    /// A format version this runner does not read.
    #[error("format version {0} is not supported")]
    UnsupportedVersion(u8),
    /// Shorter than its header says: cut off.
    #[error("truncated: {found} bytes, the header says {expected}")]
    Truncated {
        /// Bytes the header announces.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// Written by another state directory (another store id): copied or swapped by the host.
    #[error("foreign: written by another state directory (store id differs)")]
    Foreign,
    /// Sealed for another kind or name than its file says: renamed or moved by the host.
    #[error("misplaced: sealed as {kind}/{name}, found under another name")]
    Misplaced {
        /// Kind in the sealed header.
        kind: String,
        /// Name in the sealed header.
        name: String,
    },
    /// Authentication failed: modified, or sealed under another key (another image or chip).
    #[error(
        "authentication failed: modified, or sealed under another key (another image or chip)"
    )]
    Tampered,
}
