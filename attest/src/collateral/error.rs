//! Why collateral could not be had. One variant per failure, so callers (and tests) can tell a
//! dead server from a stale answer from a forged one.

/// A collateral fetch or check failed. Nothing is accepted after one of these.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CollateralError {
    /// The server answered with an error status other than 404.
    #[error("collateral request {url}: HTTP {status}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The request URL.
        url: String,
    },
    /// The server did not answer within the configured timeout.
    #[error("collateral request {url}: timed out")]
    Timeout {
        /// The request URL.
        url: String,
    },
    /// The server has no such answer (404): e.g. an unknown chip ID or FMSPC.
    #[error("collateral request {url}: not found (HTTP 404)")]
    NotFound {
        /// The request URL.
        url: String,
    },
    /// No connection or another transport failure.
    #[error("collateral request {url}: {reason}")]
    Transport {
        /// The request URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The answer's `nextUpdate` (or a certificate's notAfter) is before `now`, or its issue
    /// date after it.
    #[error("{what} is not current: valid until {next_update} (unix seconds), now is {now}")]
    Stale {
        /// Which answer.
        what: String,
        /// Its nextUpdate / notAfter, unix seconds.
        next_update: u64,
        /// The verification time, unix seconds.
        now: u64,
    },
    /// A signature does not verify, or the issuer chain does not lead to the pinned root.
    #[error("{what}: signature or issuer chain does not verify to the pinned root")]
    BadSignature {
        /// Which answer.
        what: String,
    },
    /// A certificate on the path is listed in its issuer's CRL.
    #[error("certificate serial {serial} ({what}) is revoked")]
    Revoked {
        /// The serial number, hex.
        serial: String,
        /// Which certificate.
        what: String,
    },
    /// The answer does not parse, or lacks a part (e.g. an issuer-chain header).
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which answer.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// Offline mode and the bundle has no answer for this request.
    #[error("offline: the collateral bundle has no answer for {missing}")]
    Offline {
        /// The request key that is missing.
        missing: String,
    },
    /// The cache directory or bundle file cannot be read or written.
    #[error("collateral cache {path}: {reason}")]
    Cache {
        /// The file or directory.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The verifier's budget of outbound requests is spent (see `CollateralConfig::
    /// max_fetches_per_minute`): nothing was asked; answers already cached are still served.
    #[error("collateral request {url} not sent: the verifier's budget of outbound requests is spent, retry in {retry_after} s")]
    RateLimited {
        /// The request URL.
        url: String,
        /// Seconds until the budget allows a request again.
        retry_after: u64,
    },
    /// This requester's share of the budget is spent (see `CollateralConfig::
    /// max_fetches_per_requester`): nothing was asked; others' requests are not held back.
    #[error("collateral request {url} not sent: requester {requester} has used its {per_minute} requests a minute, retry in {retry_after} s")]
    RequesterRateLimited {
        /// The request URL.
        url: String,
        /// Who asked (as the caller named it, e.g. a client address).
        requester: String,
        /// Its budget.
        per_minute: u32,
        /// Seconds until its budget allows a request again.
        retry_after: u64,
    },
    /// A Google launch endorsement fetched by measurement was refused.
    #[error("Google launch endorsement {url}: {error}")]
    Endorsement {
        /// Where it came from.
        url: String,
        /// Why it was refused.
        #[source]
        error: crate::endorsement::EndorsementError,
    },
    /// This evidence names nothing a collateral service can answer for.
    #[error("no collateral can be fetched for this evidence: {0}")]
    Unsupported(String),
}

impl CollateralError {
    /// For [`CollateralError::RateLimited`] and [`CollateralError::RequesterRateLimited`]:
    /// seconds until a request may be sent again.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            CollateralError::RateLimited { retry_after, .. }
            | CollateralError::RequesterRateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    pub(crate) fn malformed(what: impl Into<String>, reason: impl ToString) -> Self {
        CollateralError::Malformed {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn bad_signature(what: impl Into<String>) -> Self {
        CollateralError::BadSignature { what: what.into() }
    }
}
