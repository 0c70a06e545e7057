//! Replaying a log: every measured event extends its register, `R := H(R || digest)`, from the
//! register's reset value; the result is compared with the registers a quote signed.

use std::collections::{BTreeMap, BTreeSet};

use super::{EventLog, EventLogError, EventType, HashAlg, LogKind, MeasuredRegister};
use crate::measurement::Digest48;

/// A TPM has PCRs 0..23.
pub(crate) const PCR_COUNT: u32 = 24;

const STARTUP_LOCALITY: &[u8; 16] = b"StartupLocality\0";

/// A log replayed in one bank: the register values it produces, and which registers a quote
/// vouched for (only [`verify_tdx_event_log`] and [`verify_pcr_event_log`] set those).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayedLog {
    /// The parsed log.
    pub log: EventLog,
    /// The bank replayed.
    pub alg: HashAlg,
    /// The value of every register the log extends.
    pub registers: BTreeMap<MeasuredRegister, Vec<u8>>,
    /// Registers whose replayed value equals a quoted one: their events are authentic.
    pub verified: BTreeSet<MeasuredRegister>,
    /// PCR0's locality from a StartupLocality event (0 without one).
    pub startup_locality: u8,
}

impl ReplayedLog {
    /// The replayed value of `register`: what the log extended it to, or its reset value if the
    /// log never extends it. `None` for MRTD and PCRs above 23.
    pub fn value(&self, register: MeasuredRegister) -> Option<Vec<u8>> {
        if let Some(v) = self.registers.get(&register) {
            return Some(v.clone());
        }
        reset_value(register, self.alg, self.startup_locality)
    }
}

/// A register's value before the first extend: PCR0 holds the startup locality in its last
/// byte, PCRs 17..22 (DRTM) are all ones, everything else zeros.
fn reset_value(register: MeasuredRegister, alg: HashAlg, locality: u8) -> Option<Vec<u8>> {
    let size = alg.size();
    match register {
        MeasuredRegister::Mrtd => None,
        MeasuredRegister::Pcr(i) if i >= PCR_COUNT => None,
        MeasuredRegister::Pcr(0) => {
            let mut v = vec![0; size];
            v[size - 1] = locality;
            Some(v)
        }
        MeasuredRegister::Pcr(17..=22) => Some(vec![0xff; size]),
        MeasuredRegister::Pcr(_) | MeasuredRegister::Rtmr(_) => Some(vec![0; size]),
    }
}

impl EventLog {
    /// Replays the log in bank `alg` (a CCEL log only in SHA-384, the RTMRs' algorithm). A TPM
    /// log's `StartupLocality` EV_NO_ACTION event sets PCR0's reset value; other EV_NO_ACTION
    /// events extend nothing.
    pub fn replay(&self, alg: HashAlg) -> Result<ReplayedLog, EventLogError> {
        if !self.has_bank(alg) {
            return Err(EventLogError::UnsupportedAlgorithm(format!(
                "the log has no {alg} bank"
            )));
        }
        if self.kind == LogKind::Ccel && alg != HashAlg::Sha384 {
            return Err(EventLogError::UnsupportedAlgorithm(format!(
                "RTMRs are SHA-384, not {alg}"
            )));
        }
        let mut registers: BTreeMap<MeasuredRegister, Vec<u8>> = BTreeMap::new();
        let mut locality: Option<u8> = None;
        for event in &self.events {
            if event.event_type == EventType::NoAction {
                if self.kind == LogKind::Tpm && event.data.starts_with(STARTUP_LOCALITY) {
                    locality = Some(startup_locality(event, &registers, locality)?);
                }
                continue;
            }
            if event.register == MeasuredRegister::Mrtd {
                return Err(EventLogError::malformed(
                    event.offset,
                    "an event extends MRTD, which only the TDX module builds",
                ));
            }
            let digest = event.digest(alg).ok_or_else(|| {
                EventLogError::malformed(event.offset, format!("the event has no {alg} digest"))
            })?;
            let locality = locality.unwrap_or(0);
            let current = registers
                .entry(event.register)
                .or_insert_with(|| reset_value(event.register, alg, locality).unwrap_or_default());
            *current = alg.extend(current, digest);
        }
        Ok(ReplayedLog {
            log: self.clone(),
            alg,
            registers,
            verified: BTreeSet::new(),
            startup_locality: locality.unwrap_or(0),
        })
    }
}

fn startup_locality(
    event: &super::Event,
    registers: &BTreeMap<MeasuredRegister, Vec<u8>>,
    seen: Option<u8>,
) -> Result<u8, EventLogError> {
    let bad = |reason: &str| EventLogError::malformed(event.offset, reason);
    if event.register != MeasuredRegister::Pcr(0) || event.data.len() != STARTUP_LOCALITY.len() + 1
    {
        return Err(bad("StartupLocality event not for PCR0 or not 17 bytes"));
    }
    if seen.is_some() {
        return Err(bad("a second StartupLocality event"));
    }
    if registers.contains_key(&MeasuredRegister::Pcr(0)) {
        return Err(bad("StartupLocality after PCR0 was extended"));
    }
    match event.data[16] {
        l @ (0 | 3 | 4) => Ok(l),
        _ => Err(bad("StartupLocality is not 0, 3 or 4")),
    }
}

/// Parses a CCEL log, replays it into RTMR[0..3] (SHA-384) and requires each to equal the
/// quote's. On success every RTMR is marked verified.
pub fn verify_tdx_event_log(
    log: &[u8],
    quote_rtmrs: &[Digest48; 4],
) -> Result<ReplayedLog, EventLogError> {
    let mut replayed = EventLog::parse(log, LogKind::Ccel)?.replay(HashAlg::Sha384)?;
    for (i, quoted) in quote_rtmrs.iter().enumerate() {
        let register = MeasuredRegister::Rtmr(i as u8);
        compare(&replayed, register, quoted.as_bytes())?;
        replayed.verified.insert(register);
    }
    Ok(replayed)
}

/// Parses a TPM event log, replays it in the bank of the quoted values (SHA-256 or SHA-384, by
/// their size; SHA-1 refused) and requires every quoted PCR to equal its replayed value. Only the
/// quoted PCRs are marked verified. (Checking the TPM quote's signature is the caller's.)
pub fn verify_pcr_event_log(
    log: &[u8],
    quoted_pcrs: &BTreeMap<u32, Vec<u8>>,
) -> Result<ReplayedLog, EventLogError> {
    let mut sizes = quoted_pcrs.values().map(Vec::len);
    let size = sizes.next().ok_or(EventLogError::NothingQuoted)?;
    if sizes.any(|s| s != size) {
        return Err(EventLogError::UnsupportedAlgorithm(
            "quoted PCR values of different sizes (mixed banks)".into(),
        ));
    }
    let alg = [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512]
        .into_iter()
        .find(|a| a.size() == size)
        .ok_or_else(|| {
            EventLogError::UnsupportedAlgorithm(format!(
                "quoted PCR values of {size} bytes (SHA-1 banks are not accepted)"
            ))
        })?;
    let mut replayed = EventLog::parse(log, LogKind::Tpm)?.replay(alg)?;
    for (index, quoted) in quoted_pcrs {
        let register = MeasuredRegister::Pcr(*index);
        compare(&replayed, register, quoted)?;
        replayed.verified.insert(register);
    }
    Ok(replayed)
}

fn compare(
    replayed: &ReplayedLog,
    register: MeasuredRegister,
    expected: &[u8],
) -> Result<(), EventLogError> {
    let value = replayed.value(register);
    if value.as_deref() == Some(expected) {
        return Ok(());
    }
    Err(EventLogError::DoesNotReplay {
        register,
        expected: hex::encode(expected),
        replayed: value
            .map(hex::encode)
            .unwrap_or_else(|| "(no such register)".into()),
    })
}
