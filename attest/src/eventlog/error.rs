//! Why a boot event log was refused: one variant per failed check.

use super::{EventType, MeasuredRegister};

/// A boot event log could not be parsed, does not replay to the quoted registers, or does not
/// show the image the manifest predicts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    /// The bytes are not a well-formed crypto-agile TCG event log.
    #[error("malformed event log at byte {offset}: {reason}")]
    Malformed {
        /// Byte offset of the field (or event) that is wrong.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// The verifier needs a boot event log and the evidence carries none.
    #[error(
        "the evidence carries no boot event log, and the policy needs one to identify the image"
    )]
    Missing,
    /// The digest algorithm is not one this crate replays or accepts (SHA-1, unknown IDs), or
    /// the log has no bank for it.
    #[error("digest algorithm not supported here: {0}")]
    UnsupportedAlgorithm(String),
    /// A register replayed from the log differs from the quoted (or predicted) value.
    #[error("{register}: the event log replays to {replayed}, expected {expected}")]
    DoesNotReplay {
        /// The register.
        register: MeasuredRegister,
        /// The quoted or predicted value, hex.
        expected: String,
        /// The value the log replays to, hex.
        replayed: String,
    },
    /// No quoted register value was given to compare the log with.
    #[error("no quoted register values to replay the event log against")]
    NothingQuoted,
    /// The check relies on events in a register the quote does not cover: the log's events there
    /// are unauthenticated.
    #[error("{register} is not covered by the quote: its logged events prove nothing")]
    RegisterNotQuoted {
        /// The register.
        register: MeasuredRegister,
    },
    /// A predicted event is not in the log (in that register, in that order).
    #[error("{register}: predicted event {event_type} {digest} ({what}) is not in the event log")]
    MissingEvent {
        /// The register.
        register: MeasuredRegister,
        /// The predicted event type.
        event_type: EventType,
        /// The predicted digest, hex.
        digest: String,
        /// What the manifest says the event is.
        what: String,
    },
    /// The log has a boot application (or UEFI driver) the manifest does not predict: another
    /// boot path, other code.
    #[error(
        "{register}: unexpected {event_type} {digest} at byte {offset}: not a predicted boot step"
    )]
    UnexpectedEvent {
        /// The register.
        register: MeasuredRegister,
        /// The logged event type.
        event_type: EventType,
        /// The logged digest, hex.
        digest: String,
        /// The event's byte offset in the log.
        offset: usize,
    },
    /// The firmware loaded a boot application (where the UKI is predicted) whose digest is not
    /// the image's: a different UKI.
    #[error("{register}: {what} has digest {logged}, the image's is {expected}")]
    WrongUkiDigest {
        /// The register.
        register: MeasuredRegister,
        /// What the manifest says the event is ("the UKI").
        what: String,
        /// The image's digest, hex.
        expected: String,
        /// The logged digest, hex.
        logged: String,
    },
    /// The image manifest's `uefi.predictions` could not be read.
    #[error("image manifest uefi.predictions: {0}")]
    BadPredictions(String),
}

impl EventLogError {
    pub(crate) fn malformed(offset: usize, reason: impl Into<String>) -> Self {
        EventLogError::Malformed {
            offset,
            reason: reason.into(),
        }
    }
}
