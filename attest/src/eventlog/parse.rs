//! The crypto-agile TCG PC Client event log (TCG PC Client Platform Firmware Profile, section
//! 10.2): one SHA-1-format `TCG_PCClientPCREvent` whose data is the `TCG_EfiSpecIdEvent`
//! ("Spec ID Event03": the algorithms and their digest sizes), then `TCG_PCR_EVENT2` records.
//! All integers are little-endian. Every read is bounds-checked.

use super::{EventLogError, EventType, HashAlg, MeasuredRegister};

/// Where a log comes from, which fixes what its index field means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogKind {
    /// A TPM event log: the index is a PCR (0..23).
    Tpm,
    /// A TDX CCEL log: the index is a CC MR index (0 = MRTD, 1..4 = RTMR[0..3]).
    Ccel,
}

/// One digest of an event: the algorithm (TPM_ALG_ID) and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventDigest {
    /// TPM_ALG_ID.
    pub alg: u16,
    /// The digest.
    pub digest: Vec<u8>,
}

/// One `TCG_PCR_EVENT2` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Byte offset of the record in the log.
    pub offset: usize,
    /// The register the record names (its index field, mapped for the log's kind).
    pub register: MeasuredRegister,
    /// The event type.
    pub event_type: EventType,
    /// One digest per bank the record carries.
    pub digests: Vec<EventDigest>,
    /// The event data (what was measured, or a description of it).
    pub data: Vec<u8>,
}

impl Event {
    /// The digest in bank `alg`, if the record carries one.
    pub fn digest(&self, alg: HashAlg) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|d| d.alg == alg.id())
            .map(|d| d.digest.as_slice())
    }
}

/// A parsed event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLog {
    /// Where the log comes from.
    pub kind: LogKind,
    /// The banks the Spec ID event declares: (TPM_ALG_ID, digest size).
    pub algorithms: Vec<(u16, u16)>,
    /// The records after the Spec ID event, in log order.
    pub events: Vec<Event>,
    /// Bytes of log parsed (without trailing padding).
    pub len: usize,
}

const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
/// At most this many banks (the TPM spec defines far fewer hash algorithms).
const MAX_ALGORITHMS: u32 = 16;

impl EventLog {
    /// Parses a crypto-agile log. Trailing padding (a CCEL log area is 0xFF or zero after the
    /// last record) ends the log at a record boundary; anything else malformed is refused with
    /// its offset.
    pub fn parse(bytes: &[u8], kind: LogKind) -> Result<EventLog, EventLogError> {
        let mut r = Reader { bytes, pos: 0 };
        let algorithms = spec_id_event(&mut r)?;
        let mut events = Vec::new();
        while !is_padding(&bytes[r.pos..]) {
            events.push(event(&mut r, kind, &algorithms)?);
        }
        Ok(EventLog {
            kind,
            algorithms,
            events,
            len: r.pos,
        })
    }

    /// True if the Spec ID event declares bank `alg`.
    pub fn has_bank(&self, alg: HashAlg) -> bool {
        self.algorithms.iter().any(|(id, _)| *id == alg.id())
    }
}

fn is_padding(rest: &[u8]) -> bool {
    rest.iter().all(|b| *b == 0xff) || rest.iter().all(|b| *b == 0)
}

/// The first record: SHA-1 format, EV_NO_ACTION, data = TCG_EfiSpecIdEvent.
fn spec_id_event(r: &mut Reader<'_>) -> Result<Vec<(u16, u16)>, EventLogError> {
    let _index = r.u32("header index")?;
    let event_type = r.u32("header event type")?;
    if EventType::from_u32(event_type) != EventType::NoAction {
        return Err(EventLogError::malformed(
            4,
            format!("first event has type {event_type:#x}, not EV_NO_ACTION (not a TCG event log)"),
        ));
    }
    r.take(20, "header SHA-1 digest")?;
    let size = r.u32("header event size")? as usize;
    let data_at = r.pos;
    let data = r.take(size, "Spec ID event")?;
    let mut d = Reader {
        bytes: data,
        pos: 0,
    };
    let at = |d: &Reader<'_>| data_at + d.pos;
    if d.take(16, "Spec ID signature")
        .map_err(|e| e.shift(data_at))?
        != &SPEC_ID_SIGNATURE[..]
    {
        return Err(EventLogError::malformed(
            data_at,
            "no \"Spec ID Event03\" signature: not a crypto-agile log (SHA-1-only logs are not supported)",
        ));
    }
    d.take(8, "Spec ID platform class and version")
        .map_err(|e| e.shift(data_at))?;
    let count_at = at(&d);
    let count = d.u32("numberOfAlgorithms").map_err(|e| e.shift(data_at))?;
    if count == 0 || count > MAX_ALGORITHMS {
        return Err(EventLogError::malformed(
            count_at,
            format!("{count} algorithms in the Spec ID event"),
        ));
    }
    let mut algorithms: Vec<(u16, u16)> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let alg_at = at(&d);
        let alg = d.u16("algorithmId").map_err(|e| e.shift(data_at))?;
        let size = d.u16("digestSize").map_err(|e| e.shift(data_at))?;
        if algorithms.iter().any(|(a, _)| *a == alg) {
            return Err(EventLogError::malformed(
                alg_at,
                format!("algorithm {alg:#06x} listed twice"),
            ));
        }
        if let Some(known) = HashAlg::from_id(alg) {
            if known.size() != size as usize {
                return Err(EventLogError::malformed(
                    alg_at,
                    format!("{known} digest size {size}, expected {}", known.size()),
                ));
            }
        }
        algorithms.push((alg, size));
    }
    let vendor = d.u8("vendorInfoSize").map_err(|e| e.shift(data_at))? as usize;
    d.take(vendor, "vendorInfo").map_err(|e| e.shift(data_at))?;
    Ok(algorithms)
}

fn event(
    r: &mut Reader<'_>,
    kind: LogKind,
    algorithms: &[(u16, u16)],
) -> Result<Event, EventLogError> {
    let offset = r.pos;
    let index = r.u32("index")?;
    let event_type = EventType::from_u32(r.u32("event type")?);
    let register = register(kind, index).ok_or_else(|| {
        EventLogError::malformed(
            offset,
            format!("register index {index} out of range for a {kind:?} log"),
        )
    })?;
    let count_at = r.pos;
    let count = r.u32("digest count")?;
    if count as usize > algorithms.len() {
        return Err(EventLogError::malformed(
            count_at,
            format!("{count} digests, the log has {} banks", algorithms.len()),
        ));
    }
    let mut digests: Vec<EventDigest> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let alg_at = r.pos;
        let alg = r.u16("digest algorithm")?;
        let Some((_, size)) = algorithms.iter().find(|(a, _)| *a == alg) else {
            return Err(EventLogError::malformed(
                alg_at,
                format!("digest algorithm {alg:#06x} is not in the Spec ID event"),
            ));
        };
        if digests.iter().any(|d| d.alg == alg) {
            return Err(EventLogError::malformed(
                alg_at,
                format!("two digests of algorithm {alg:#06x}"),
            ));
        }
        let digest = r.take(*size as usize, "digest")?.to_vec();
        digests.push(EventDigest { alg, digest });
    }
    let size = r.u32("event size")? as usize;
    let data = r.take(size, "event data")?.to_vec();
    Ok(Event {
        offset,
        register,
        event_type,
        digests,
        data,
    })
}

/// The register an index names in a log of `kind`.
pub(crate) fn register(kind: LogKind, index: u32) -> Option<MeasuredRegister> {
    match kind {
        LogKind::Tpm => (index < super::replay::PCR_COUNT).then_some(MeasuredRegister::Pcr(index)),
        LogKind::Ccel => match index {
            0 => Some(MeasuredRegister::Mrtd),
            1..=4 => Some(MeasuredRegister::Rtmr(index as u8 - 1)),
            _ => None,
        },
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], EventLogError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len());
        let Some(end) = end else {
            return Err(EventLogError::malformed(
                self.pos,
                format!(
                    "{what}: needs {n} bytes, {} left",
                    self.bytes.len() - self.pos
                ),
            ));
        };
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, EventLogError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, EventLogError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, EventLogError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl EventLogError {
    /// The same error with its offset moved by `by` (for errors found inside a sub-slice).
    fn shift(self, by: usize) -> Self {
        match self {
            EventLogError::Malformed { offset, reason } => EventLogError::Malformed {
                offset: offset + by,
                reason,
            },
            other => other,
        }
    }
}
