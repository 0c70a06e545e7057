//! The parser and replay against recorded public logs (testdata/eventlog/README.md), tampered
//! variants of them, and hostile bytes.

use std::collections::BTreeMap;

use super::*;
use crate::measurement::Digest48;
use crate::testing::vectors::*;

// Read out of the recorded files independently (Python, see testdata/eventlog/README.md).
const GCP_RTMR0: &str = "3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6";
const GCP_RTMR1: &str = "f62dbc072bd5d3f3438b7b35c39a727f5aea2ffc2473f43723953f530daf62504f0a7944aa62c41a86e8a878c2b122c1";
const GCP_RTMR2: &str = "4969684dc87381fc3b3134176c8d8806eaf0a901859f5f70cfae8d17714b46c10a8de219048c9fc09f11f381a6fbe7c1";
/// Bytes of records in the CCEL log area before the 0xFF padding; records after the header.
const GCP_CCEL_LEN: usize = 18101;
const GCP_CCEL_EVENTS: usize = 43;

// go-tpm-tools server/eventlog_test.go, `Ubuntu2404AmdSevSnp`, SHA-256 bank.
const GCE_PCRS: &[(u32, &str)] = &[
    (
        0,
        "50597a27846e91d025eef597abbc89f72bff9af849094db97b0684d8bc4c515e",
    ),
    (
        1,
        "57344e1cc8c6619413df33013a7cd67915459f967395af41db21c1fa7ca9c307",
    ),
    (
        2,
        "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969",
    ),
    (
        3,
        "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969",
    ),
    (
        4,
        "abe8b3fa6aecb36c2fd93c6f6edde661c21b353d007410a2739d69bfa7e1b9be",
    ),
    (
        5,
        "0b0e1903aeb1bff649b82dba2cdcf5c4ffb75027e54f151ab00b3b989f16a300",
    ),
    (
        6,
        "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969",
    ),
    (
        7,
        "33ad69850fb2c7f30b4f8b4bc10ed93fc954dc07fa726e84f50f3d192dc1c140",
    ),
    (
        8,
        "6932a3f71dc55ad3c1a6ac2196eeac26a1b7164b6bbfa106625d94088ec3ecc3",
    ),
    (
        9,
        "ce08798b283c7a0ddc5e9ad1d602304b945b741fc60c20e254eafa0f4782512b",
    ),
    (
        14,
        "306f9d8b94f17d93dc6e7cf8f5c79d652eb4c6c4d13de2dddc24af416e13ecaf",
    ),
];

// go-tpm-tools server/eventlog_test.go, `GlinuxNoSecureBootLaptop`, SHA-256 bank.
const LOCALITY3_PCRS: &[(u32, &str)] = &[
    (
        0,
        "0e5ea849d7647a1ac1becc096fee4df98f00f8015f934afadaab0b8aa20b38a5",
    ),
    (
        1,
        "9750400838980c9419764b9cf19c975c0e159c18ebe21cb897c6e834a8d8d433",
    ),
    (
        2,
        "970096d49105b0404999173e49c3f6b8597b9c4c5ff6a9e364b55ce01037578e",
    ),
    (
        3,
        "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969",
    ),
    (
        4,
        "ddb124ca9013f1e42f98537f7f381e47c5e6caa988cf2b4088f452c5a8dd912d",
    ),
    (
        5,
        "fb58603615cfec59c0428e71913d30d45f38e4280380cc814135a7659c246b13",
    ),
    (
        6,
        "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969",
    ),
    (
        7,
        "9d1be46302bc4f5055c90a0376d9142e397ca8744f387c9824170f1bc855fde5",
    ),
];

pub(super) fn pcrs(values: &[(u32, &str)]) -> BTreeMap<u32, Vec<u8>> {
    values
        .iter()
        .map(|(i, v)| (*i, hex::decode(v).unwrap()))
        .collect()
}

/// RTMR[0..3] of the recorded GCP quote, read with dcap-qvl's parser.
pub(super) fn gcp_quote_rtmrs() -> [Digest48; 4] {
    let r = crate::testing::vectors::quote_registers(GCP_TDX_QUOTE);
    [r.rtmr0, r.rtmr1, r.rtmr2, r.rtmr3]
}

fn rtmr(i: u8) -> MeasuredRegister {
    MeasuredRegister::Rtmr(i)
}

/// The log's bytes with record `index` (after the header) removed.
fn without_event(log: &[u8], kind: LogKind, index: usize) -> Vec<u8> {
    let parsed = EventLog::parse(log, kind).unwrap();
    let start = parsed.events[index].offset;
    let end = parsed
        .events
        .get(index + 1)
        .map_or(parsed.len, |e| e.offset);
    [&log[..start], &log[end..]].concat()
}

/// The log's bytes with record `index` written twice.
fn with_event_twice(log: &[u8], kind: LogKind, index: usize) -> Vec<u8> {
    let parsed = EventLog::parse(log, kind).unwrap();
    let start = parsed.events[index].offset;
    let end = parsed
        .events
        .get(index + 1)
        .map_or(parsed.len, |e| e.offset);
    [&log[..end], &log[start..]].concat()
}

#[test]
fn the_gcp_tdx_ccel_log_parses_with_its_padding() {
    let log = EventLog::parse(GCP_TDX_CCEL, LogKind::Ccel).unwrap();
    assert_eq!(GCP_TDX_CCEL.len(), 256 * 1024);
    assert_eq!(log.len, GCP_CCEL_LEN);
    assert_eq!(log.events.len(), GCP_CCEL_EVENTS);
    assert_eq!(log.algorithms, [(0x000c, 48)]);
    let apps: Vec<&Event> = log
        .events
        .iter()
        .filter(|e| e.event_type == EventType::EfiBootServicesApplication)
        .collect();
    assert_eq!(apps.len(), 2, "shim and GRUB");
    assert!(apps.iter().all(|e| e.register == rtmr(1)));
    let first = &log.events[0];
    assert_eq!(first.event_type, EventType::EfiHandoffTables2);
    assert_eq!(first.register, rtmr(0));
    assert_eq!(first.event_type.to_string(), "EV_EFI_HANDOFF_TABLES2");
    let last = log.events.last().unwrap();
    assert_eq!(last.event_type, EventType::EfiAction);
    assert_eq!(last.data, b"Exit Boot Services Returned with Success");
    // The same records with zero padding instead of 0xFF, or none, parse the same.
    let mut zeros = GCP_TDX_CCEL[..GCP_CCEL_LEN].to_vec();
    assert_eq!(EventLog::parse(&zeros, LogKind::Ccel).unwrap(), log);
    zeros.resize(GCP_CCEL_LEN + 4096, 0);
    assert_eq!(EventLog::parse(&zeros, LogKind::Ccel).unwrap(), log);
}

#[test]
fn the_gcp_tdx_ccel_log_replays_to_its_quotes_rtmrs() {
    let quoted = gcp_quote_rtmrs();
    for (got, want) in quoted.iter().zip([GCP_RTMR0, GCP_RTMR1, GCP_RTMR2]) {
        assert_eq!(got.to_string(), want);
    }
    let replayed = verify_tdx_event_log(GCP_TDX_CCEL, &quoted).unwrap();
    assert_eq!(replayed.alg, HashAlg::Sha384);
    assert_eq!(hex::encode(&replayed.registers[&rtmr(1)]), GCP_RTMR1);
    assert_eq!(
        replayed.value(rtmr(3)).unwrap(),
        [0; 48],
        "nothing extends RTMR3"
    );
    assert_eq!(replayed.verified.len(), 4);
}

#[test]
fn tampered_gcp_tdx_logs_do_not_replay() {
    let quoted = gcp_quote_rtmrs();
    let log = EventLog::parse(GCP_TDX_CCEL, LogKind::Ccel).unwrap();
    let shim = log
        .events
        .iter()
        .position(|e| e.event_type == EventType::EfiBootServicesApplication)
        .unwrap();
    let does_not_replay =
        |bytes: &[u8], register: MeasuredRegister| match verify_tdx_event_log(bytes, &quoted) {
            Err(EventLogError::DoesNotReplay {
                register: r,
                expected,
                replayed,
            }) => {
                assert_eq!(r, register);
                assert_ne!(expected, replayed);
            }
            other => panic!("expected DoesNotReplay on {register}, got {other:?}"),
        };
    // A flipped byte of the shim's digest (index 4, count 4, algorithm 2 bytes, digest).
    let mut flipped = GCP_TDX_CCEL.to_vec();
    flipped[log.events[shim].offset + 14] ^= 1;
    does_not_replay(&flipped, rtmr(1));
    does_not_replay(&without_event(GCP_TDX_CCEL, LogKind::Ccel, shim), rtmr(1));
    does_not_replay(
        &with_event_twice(GCP_TDX_CCEL, LogKind::Ccel, shim),
        rtmr(1),
    );
    does_not_replay(&without_event(GCP_TDX_CCEL, LogKind::Ccel, 0), rtmr(0));
    // The shim's event moved from RTMR1 to RTMR2.
    let mut moved = GCP_TDX_CCEL.to_vec();
    moved[log.events[shim].offset] = 3;
    does_not_replay(&moved, rtmr(1));
    // A quote with another RTMR2.
    let mut other = quoted;
    other[2].0[0] ^= 1;
    assert!(matches!(
        verify_tdx_event_log(GCP_TDX_CCEL, &other),
        Err(EventLogError::DoesNotReplay { register, .. }) if register == rtmr(2)
    ));
}

#[test]
fn the_gce_vtpm_log_replays_to_its_recorded_pcrs() {
    let quoted = pcrs(GCE_PCRS);
    let replayed = verify_pcr_event_log(GCE_TPM_LOG, &quoted).unwrap();
    assert_eq!(replayed.alg, HashAlg::Sha256);
    assert_eq!(replayed.log.events.len(), 116);
    assert_eq!(
        replayed.log.algorithms,
        [(0x0004, 20), (0x000b, 32), (0x000c, 48)]
    );
    assert_eq!(replayed.startup_locality, 0);
    assert_eq!(replayed.verified.len(), quoted.len());
    // The SHA-384 bank replays too (no recorded values to compare: only consistency).
    assert!(EventLog::parse(GCE_TPM_LOG, LogKind::Tpm)
        .unwrap()
        .replay(HashAlg::Sha384)
        .is_ok());
}

#[test]
fn tampered_gce_vtpm_logs_do_not_replay() {
    let quoted = pcrs(GCE_PCRS);
    let log = EventLog::parse(GCE_TPM_LOG, LogKind::Tpm).unwrap();
    let app = log
        .events
        .iter()
        .position(|e| e.event_type == EventType::EfiBootServicesApplication)
        .unwrap();
    assert_eq!(log.events[app].register, MeasuredRegister::Pcr(4));
    // The SHA-256 digest is the second (after SHA-1): 12 + 2 + 20 + 2.
    let mut flipped = GCE_TPM_LOG.to_vec();
    flipped[log.events[app].offset + 36] ^= 0x80;
    let pcr4 = |r: Result<ReplayedLog, EventLogError>| {
        assert!(
            matches!(
                r,
                Err(EventLogError::DoesNotReplay {
                    register: MeasuredRegister::Pcr(4),
                    ..
                })
            ),
            "{r:?}"
        )
    };
    pcr4(verify_pcr_event_log(&flipped, &quoted));
    pcr4(verify_pcr_event_log(
        &without_event(GCE_TPM_LOG, LogKind::Tpm, app),
        &quoted,
    ));
    pcr4(verify_pcr_event_log(
        &with_event_twice(GCE_TPM_LOG, LogKind::Tpm, app),
        &quoted,
    ));
    // Flipping the SHA-1 digest only changes nothing the SHA-256 replay looks at.
    let mut sha1_only = GCE_TPM_LOG.to_vec();
    sha1_only[log.events[app].offset + 14] ^= 0x80;
    assert!(verify_pcr_event_log(&sha1_only, &quoted).is_ok());
}

#[test]
fn startup_locality_3_sets_pcr0s_reset_value() {
    let quoted = pcrs(LOCALITY3_PCRS);
    let replayed = verify_pcr_event_log(LOCALITY3_TPM_LOG, &quoted).unwrap();
    assert_eq!(replayed.startup_locality, 3);
    // Without the event (locality byte set to 0) PCR0 no longer replays.
    let log = EventLog::parse(LOCALITY3_TPM_LOG, LogKind::Tpm).unwrap();
    let event = log
        .events
        .iter()
        .find(|e| e.data.starts_with(b"StartupLocality\0"))
        .unwrap();
    let mut zero = LOCALITY3_TPM_LOG.to_vec();
    let data_end = event.offset + 12 + 2 + 20 + 2 + 32 + 4 + 17;
    zero[data_end - 1] = 0;
    assert!(matches!(
        verify_pcr_event_log(&zero, &quoted),
        Err(EventLogError::DoesNotReplay {
            register: MeasuredRegister::Pcr(0),
            ..
        })
    ));
    zero[data_end - 1] = 7;
    assert!(matches!(
        verify_pcr_event_log(&zero, &quoted),
        Err(EventLogError::Malformed { offset, .. }) if offset == event.offset
    ));
}

#[test]
fn weak_missing_or_mixed_banks_are_refused() {
    let sha1: BTreeMap<u32, Vec<u8>> = [(0, vec![0; 20])].into();
    assert!(matches!(
        verify_pcr_event_log(GCE_TPM_LOG, &sha1),
        Err(EventLogError::UnsupportedAlgorithm(_))
    ));
    let mixed: BTreeMap<u32, Vec<u8>> = [(0, vec![0; 32]), (1, vec![0; 48])].into();
    assert!(matches!(
        verify_pcr_event_log(GCE_TPM_LOG, &mixed),
        Err(EventLogError::UnsupportedAlgorithm(_))
    ));
    assert_eq!(
        verify_pcr_event_log(GCE_TPM_LOG, &BTreeMap::new()),
        Err(EventLogError::NothingQuoted)
    );
    // The laptop's log has no SHA-384 bank; a CCEL log is replayed in SHA-384 only.
    let sha384: BTreeMap<u32, Vec<u8>> = [(0, vec![0; 48])].into();
    assert!(matches!(
        verify_pcr_event_log(LOCALITY3_TPM_LOG, &sha384),
        Err(EventLogError::UnsupportedAlgorithm(_))
    ));
    let ccel = EventLog::parse(GCP_TDX_CCEL, LogKind::Ccel).unwrap();
    assert!(matches!(
        ccel.replay(HashAlg::Sha256),
        Err(EventLogError::UnsupportedAlgorithm(_))
    ));
    // A PCR above 23 is not a register.
    let high: BTreeMap<u32, Vec<u8>> = [(24, vec![0; 32])].into();
    assert!(matches!(
        verify_pcr_event_log(GCE_TPM_LOG, &high),
        Err(EventLogError::DoesNotReplay { .. })
    ));
}

#[test]
fn a_tpm_log_is_not_a_ccel_log() {
    // Its PCR indices (up to 14) are not CC MR indices.
    assert!(matches!(
        EventLog::parse(GCE_TPM_LOG, LogKind::Ccel),
        Err(EventLogError::Malformed { .. })
    ));
    // Not a crypto-agile log at all.
    let mut legacy = GCE_TPM_LOG.to_vec();
    legacy[32..48].copy_from_slice(b"Spec ID Event02\0");
    assert!(matches!(
        EventLog::parse(&legacy, LogKind::Tpm),
        Err(EventLogError::Malformed { offset: 32, .. })
    ));
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Parses and (if it parses) replays; a panic fails the test, errors must carry an offset inside
/// the input.
fn survive(bytes: &[u8], kind: LogKind) -> Option<EventLog> {
    match EventLog::parse(bytes, kind) {
        Ok(log) => {
            for alg in [HashAlg::Sha256, HashAlg::Sha384] {
                let _ = log.replay(alg);
            }
            Some(log)
        }
        Err(EventLogError::Malformed { offset, .. }) => {
            assert!(
                offset <= bytes.len(),
                "offset {offset} past {}",
                bytes.len()
            );
            None
        }
        Err(other) => panic!("parse gave a non-Malformed error: {other:?}"),
    }
}

#[test]
fn truncated_logs_are_refused_with_an_offset_or_parse_as_a_prefix() {
    for (log, kind) in [
        (&GCP_TDX_CCEL[..GCP_CCEL_LEN], LogKind::Ccel),
        (GCE_TPM_LOG, LogKind::Tpm),
        (LOCALITY3_TPM_LOG, LogKind::Tpm),
    ] {
        let full = EventLog::parse(log, kind).unwrap();
        let step = (log.len() / 3000).max(1);
        for cut in (0..log.len()).step_by(step).chain(0..200) {
            if let Some(prefix) = survive(&log[..cut], kind) {
                assert!(prefix.events.len() < full.events.len());
                assert_eq!(prefix.events[..], full.events[..prefix.events.len()]);
            }
        }
    }
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for _ in 0..3000 {
        let len = rng.below(400);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        survive(&bytes, LogKind::Tpm);
        survive(&bytes, LogKind::Ccel);
    }
    // A valid header followed by random records exercises the record parser.
    let header =
        &GCE_TPM_LOG[..EventLog::parse(GCE_TPM_LOG, LogKind::Tpm).unwrap().events[0].offset];
    for _ in 0..3000 {
        let mut bytes = header.to_vec();
        let len = rng.below(200);
        bytes.extend((0..len).map(|_| rng.next() as u8));
        survive(&bytes, LogKind::Tpm);
    }
    for (log, kind) in [
        (&GCP_TDX_CCEL[..GCP_CCEL_LEN], LogKind::Ccel),
        (GCE_TPM_LOG, LogKind::Tpm),
    ] {
        for _ in 0..300 {
            let mut bytes = log.to_vec();
            for _ in 0..=rng.below(4) {
                let at = rng.below(bytes.len());
                bytes[at] = rng.next() as u8;
            }
            survive(&bytes, kind);
        }
    }
}

#[test]
fn startup_locality_must_come_first_and_once_and_mrtd_is_not_extended() {
    let locality = |l: u8| [&b"StartupLocality\0"[..], &[l]].concat();
    let mut late = super::writer::LogWriter::new(0, &[HashAlg::Sha256]);
    late.measure(0, EventType::SCrtmVersion, b"v1")
        .no_action(0, &locality(3));
    let mut twice = super::writer::LogWriter::new(0, &[HashAlg::Sha256]);
    twice.no_action(0, &locality(3)).no_action(0, &locality(3));
    for w in [late, twice] {
        let log = EventLog::parse(&w.bytes(), LogKind::Tpm).unwrap();
        assert!(matches!(
            log.replay(HashAlg::Sha256),
            Err(EventLogError::Malformed { offset, .. }) if offset == log.events[1].offset
        ));
    }
    let mut first = super::writer::LogWriter::new(0, &[HashAlg::Sha256]);
    first
        .no_action(0, &locality(3))
        .measure(0, EventType::SCrtmVersion, b"v1");
    let replayed = EventLog::parse(&first.bytes(), LogKind::Tpm)
        .unwrap()
        .replay(HashAlg::Sha256)
        .unwrap();
    let mut start = [0u8; 32];
    start[31] = 3;
    assert_eq!(
        replayed.registers[&MeasuredRegister::Pcr(0)],
        HashAlg::Sha256.extend(&start, &HashAlg::Sha256.hash(b"v1"))
    );
    // In a CCEL log, index 0 is MRTD: firmware cannot extend it.
    let mut mrtd = super::writer::LogWriter::new(1, &[HashAlg::Sha384]);
    mrtd.measure(0, EventType::EfiPlatformFirmwareBlob2, b"fw");
    let log = EventLog::parse(&mrtd.bytes(), LogKind::Ccel).unwrap();
    assert_eq!(log.events[0].register, MeasuredRegister::Mrtd);
    assert!(matches!(
        log.replay(HashAlg::Sha384),
        Err(EventLogError::Malformed { .. })
    ));
}
