//! Boot event logs: the TCG PC Client crypto-agile event log that UEFI firmware writes, as Linux
//! serves it (`/sys/kernel/security/tpm0/binary_bios_measurements`) and as TDX firmware leaves it
//! in the CCEL ACPI table's log area.
//!
//! - [`EventLog::parse`]: bounds-checked parser (a malformed log is [`EventLogError::Malformed`]
//!   with the byte offset, never a panic).
//! - [`EventLog::replay`] / [`verify_tdx_event_log`] / [`verify_pcr_event_log`]: the registers the
//!   log extends, recomputed and compared with a quote's.
//! - [`ImagePredictions`] / [`check_image_events`]: the image manifest's predicted boot events
//!   (the UKI's Authenticode digest in PCR4 / RTMR1, …) and register values, checked against a
//!   replayed log.
//!
//! Register numbering: in a TPM log the index is the PCR (0..23). In a CCEL log it is the CC
//! measurement register index of the UEFI spec's `EFI_CC_MEASUREMENT_PROTOCOL` for TDX (UEFI
//! 2.10 section 38.4.1, and TDVF's `MapPcrToMrIndex`): 0 = MRTD, 1 = RTMR[0] (PCR 1, 7),
//! 2 = RTMR[1] (PCR 2..6), 3 = RTMR[2] (PCR 8..15), 4 = RTMR[3].

mod error;
mod event_type;
mod parse;
mod predict;
mod replay;

#[cfg(test)]
pub(crate) mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_predict;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use error::EventLogError;
pub use event_type::EventType;
pub use parse::{Event, EventDigest, EventLog, LogKind};
pub use predict::{check_image_events, ImagePredictions, PlatformPrediction, PredictedEvent};
pub use replay::{verify_pcr_event_log, verify_tdx_event_log, ReplayedLog};

/// A hash algorithm of the log (TPM_ALG_ID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlg {
    /// TPM_ALG_SHA256 (0x000B).
    Sha256,
    /// TPM_ALG_SHA384 (0x000C): the TDX RTMR bank.
    Sha384,
    /// TPM_ALG_SHA512 (0x000D).
    Sha512,
}

impl HashAlg {
    /// The algorithm for a TPM_ALG_ID, if this crate replays it. SHA-1 (0x0004) banks are parsed
    /// but never replayed: SHA-1 collisions are practical.
    pub fn from_id(id: u16) -> Option<HashAlg> {
        match id {
            0x000b => Some(HashAlg::Sha256),
            0x000c => Some(HashAlg::Sha384),
            0x000d => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    /// The TPM_ALG_ID.
    pub fn id(self) -> u16 {
        match self {
            HashAlg::Sha256 => 0x000b,
            HashAlg::Sha384 => 0x000c,
            HashAlg::Sha512 => 0x000d,
        }
    }

    /// Digest size in bytes.
    pub fn size(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// The lower-case name used in manifests: "sha256", "sha384", "sha512".
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }

    /// `H(data)`.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        self.extend(data, &[])
    }

    /// `register := H(register || digest)`.
    pub(crate) fn extend(self, register: &[u8], digest: &[u8]) -> Vec<u8> {
        fn run<D: sha2::Digest>(a: &[u8], b: &[u8]) -> Vec<u8> {
            let mut h = D::new();
            h.update(a);
            h.update(b);
            h.finalize().to_vec()
        }
        match self {
            HashAlg::Sha256 => run::<sha2::Sha256>(register, digest),
            HashAlg::Sha384 => run::<sha2::Sha384>(register, digest),
            HashAlg::Sha512 => run::<sha2::Sha512>(register, digest),
        }
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512]
            .into_iter()
            .find(|a| a.name() == s.to_ascii_lowercase())
            .ok_or_else(|| format!("unknown digest algorithm {s:?}"))
    }
}

/// A measurement register a log event extends: a TPM PCR, or a TDX MRTD / RTMR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MeasuredRegister {
    /// TPM PCR 0..23.
    Pcr(u32),
    /// TDX MRTD (CC MR index 0; built by the TDX module, not replayable from a log).
    Mrtd,
    /// TDX RTMR[0..3] (CC MR index 1..4).
    Rtmr(u8),
}

impl fmt::Display for MeasuredRegister {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MeasuredRegister::Pcr(i) => write!(f, "PCR{i}"),
            MeasuredRegister::Mrtd => f.write_str("MRTD"),
            MeasuredRegister::Rtmr(i) => write!(f, "RTMR{i}"),
        }
    }
}

impl FromStr for MeasuredRegister {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("unknown register {s:?} (expected PCR0..PCR23, MRTD, RTMR0..RTMR3)");
        if s == "MRTD" {
            return Ok(MeasuredRegister::Mrtd);
        }
        if let Some(n) = s.strip_prefix("PCR") {
            let n: u32 = n.parse().map_err(|_| bad())?;
            return (n < replay::PCR_COUNT)
                .then_some(MeasuredRegister::Pcr(n))
                .ok_or_else(bad);
        }
        if let Some(n) = s.strip_prefix("RTMR") {
            let n: u8 = n.parse().map_err(|_| bad())?;
            return (n < 4).then_some(MeasuredRegister::Rtmr(n)).ok_or_else(bad);
        }
        Err(bad())
    }
}

impl Serialize for MeasuredRegister {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MeasuredRegister {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

impl Serialize for HashAlg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for HashAlg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}
