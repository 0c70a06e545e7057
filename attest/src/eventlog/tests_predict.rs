//! The image checks: a replayed log against a platform's predictions, on logs written here (every
//! path) and on the recorded Google Cloud logs.

use std::collections::BTreeMap;

use super::tests::{gcp_quote_rtmrs, pcrs};
use super::writer::LogWriter;
use super::*;
use crate::measurement::Digest48;
use crate::testing::vectors::*;

const UKI: [u8; 48] = [0x55; 48];
const OTHER_UKI: [u8; 48] = [0x66; 48];
const GPT: &[u8] = b"EFI PART: the image's partition table";
const BSA: EventType = EventType::EfiBootServicesApplication;

/// A TDVF-style CCEL log: firmware configuration in RTMR[0], the GPT and `apps` in RTMR[1], the
/// UKI stub's measurements in RTMR[2].
fn tdx_boot(apps: &[[u8; 48]], gpt: bool) -> Vec<u8> {
    let mut w = LogWriter::new(1, &[HashAlg::Sha384]);
    w.measure(1, EventType::EfiHandoffTables2, b"TdxTable")
        .measure(1, EventType::EfiVariableDriverConfig, b"SecureBoot")
        .measure(1, EventType::Separator, &[0; 4])
        .measure(
            2,
            EventType::EfiAction,
            b"Calling EFI Application from Boot Option",
        )
        .measure(2, EventType::Separator, &[0; 4]);
    if gpt {
        w.measure(2, EventType::EfiGptEvent, GPT);
    }
    for app in apps {
        w.event(
            2,
            BSA,
            &[(HashAlg::Sha384, app.to_vec())],
            b"\\EFI\\BOOT\\BOOTX64.EFI",
        );
    }
    w.measure(3, EventType::Ipl, b"console=ttyS0 root=/dev/dm-0")
        .measure(2, EventType::EfiAction, b"Exit Boot Services Invocation");
    w.bytes()
}

/// The RTMRs a quote would carry after the boot `log` describes.
fn quote_for(log: &[u8]) -> [Digest48; 4] {
    let replayed = EventLog::parse(log, LogKind::Ccel)
        .unwrap()
        .replay(HashAlg::Sha384)
        .unwrap();
    [0, 1, 2, 3].map(|i| {
        let v = replayed.value(MeasuredRegister::Rtmr(i)).unwrap();
        Digest48(v.try_into().unwrap())
    })
}

fn predicted(
    register: MeasuredRegister,
    event_type: EventType,
    alg: HashAlg,
    digest: &[u8],
    what: &str,
) -> PredictedEvent {
    PredictedEvent {
        register,
        event_type,
        digest_alg: alg,
        digest: digest.to_vec(),
        what: what.into(),
        optional: false,
    }
}

/// What the image tool predicts for `tdx_boot(&[UKI], true)`.
fn tdx_prediction() -> PlatformPrediction {
    let good = quote_for(&tdx_boot(&[UKI], true));
    let rtmr1 = MeasuredRegister::Rtmr(1);
    PlatformPrediction {
        trust: "Google's TDX firmware (MRTD allow-list)".into(),
        closed: Default::default(),
        events: vec![
            predicted(
                rtmr1,
                EventType::EfiGptEvent,
                HashAlg::Sha384,
                &HashAlg::Sha384.hash(GPT),
                "the GPT",
            ),
            predicted(rtmr1, BSA, HashAlg::Sha384, &UKI, "the UKI"),
        ],
        values: BTreeMap::from([
            (rtmr1, good[1].0.to_vec()),
            (MeasuredRegister::Rtmr(2), good[2].0.to_vec()),
        ]),
    }
}

fn check_tdx(log: &[u8], prediction: &PlatformPrediction) -> Result<(), EventLogError> {
    let replayed = verify_tdx_event_log(log, &quote_for(log))?;
    check_image_events(&replayed, prediction)
}

#[test]
fn the_predicted_boot_is_accepted() {
    assert_eq!(
        check_tdx(&tdx_boot(&[UKI], true), &tdx_prediction()),
        Ok(())
    );
}

#[test]
fn another_uki_is_a_wrong_uki_digest() {
    match check_tdx(&tdx_boot(&[OTHER_UKI], true), &tdx_prediction()) {
        Err(EventLogError::WrongUkiDigest {
            register,
            what,
            expected,
            logged,
        }) => {
            assert_eq!(register, MeasuredRegister::Rtmr(1));
            assert_eq!(what, "the UKI");
            assert_eq!(expected, hex::encode(UKI));
            assert_eq!(logged, hex::encode(OTHER_UKI));
        }
        other => panic!("expected WrongUkiDigest, got {other:?}"),
    }
}

#[test]
fn an_extra_boot_application_is_unexpected() {
    for apps in [[UKI, OTHER_UKI], [OTHER_UKI, UKI]] {
        let log = tdx_boot(&apps, true);
        let extra = EventLog::parse(&log, LogKind::Ccel)
            .unwrap()
            .events
            .into_iter()
            .find(|e| e.event_type == BSA && e.digest(HashAlg::Sha384) == Some(&OTHER_UKI[..]))
            .unwrap();
        assert_eq!(
            check_tdx(&log, &tdx_prediction()),
            Err(EventLogError::UnexpectedEvent {
                register: MeasuredRegister::Rtmr(1),
                event_type: BSA,
                digest: hex::encode(OTHER_UKI),
                offset: extra.offset,
            })
        );
    }
}

#[test]
fn an_unpredicted_uefi_driver_is_unexpected() {
    let mut log = tdx_boot(&[UKI], true);
    let mut w = LogWriter::new(1, &[HashAlg::Sha384]);
    w.event(
        2,
        EventType::EfiBootServicesDriver,
        &[(HashAlg::Sha384, vec![0x99; 48])],
        b"rom",
    );
    let header_len = EventLog::parse(&w.bytes(), LogKind::Ccel).unwrap().events[0].offset;
    log.extend_from_slice(&w.bytes()[header_len..]);
    assert!(matches!(
        check_tdx(&log, &tdx_prediction()),
        Err(EventLogError::UnexpectedEvent {
            event_type: EventType::EfiBootServicesDriver,
            ..
        })
    ));
}

#[test]
fn a_missing_or_reordered_event_is_missing() {
    assert!(matches!(
        check_tdx(&tdx_boot(&[UKI], false), &tdx_prediction()),
        Err(EventLogError::MissingEvent { event_type: EventType::EfiGptEvent, what, .. }) if what == "the GPT"
    ));
    let mut reordered = tdx_prediction();
    reordered.events.reverse();
    assert!(matches!(
        check_tdx(&tdx_boot(&[UKI], true), &reordered),
        Err(EventLogError::MissingEvent {
            event_type: EventType::EfiGptEvent,
            ..
        })
    ));
}

#[test]
fn a_predicted_value_that_does_not_replay_is_refused() {
    let mut prediction = tdx_prediction();
    prediction
        .values
        .insert(MeasuredRegister::Rtmr(2), vec![0; 48]);
    assert!(matches!(
        check_tdx(&tdx_boot(&[UKI], true), &prediction),
        Err(EventLogError::DoesNotReplay { register: MeasuredRegister::Rtmr(2), expected, .. }) if expected == "00".repeat(48)
    ));
    // A value of the wrong size for the bank.
    prediction
        .values
        .insert(MeasuredRegister::Rtmr(2), vec![0; 32]);
    assert!(matches!(
        check_tdx(&tdx_boot(&[UKI], true), &prediction),
        Err(EventLogError::UnsupportedAlgorithm(_))
    ));
}

#[test]
fn an_empty_prediction_accepts_nothing() {
    assert!(matches!(
        check_tdx(&tdx_boot(&[UKI], true), &PlatformPrediction::default()),
        Err(EventLogError::BadPredictions(_))
    ));
}

#[test]
fn a_log_that_does_not_replay_never_reaches_the_image_check() {
    let log = tdx_boot(&[UKI], true);
    let mut quote = quote_for(&log);
    quote[1] = quote_for(&tdx_boot(&[OTHER_UKI], true))[1];
    assert!(matches!(
        verify_tdx_event_log(&log, &quote),
        Err(EventLogError::DoesNotReplay {
            register: MeasuredRegister::Rtmr(1),
            ..
        })
    ));
}

#[test]
fn events_in_registers_no_quote_covers_prove_nothing() {
    let uki256 = [0x77; 32];
    let mut w = LogWriter::new(0, &[HashAlg::Sha256]);
    w.measure(0, EventType::SCrtmVersion, b"firmware").event(
        4,
        BSA,
        &[(HashAlg::Sha256, uki256.to_vec())],
        b"",
    );
    let log = w.bytes();
    let replayed = EventLog::parse(&log, LogKind::Tpm)
        .unwrap()
        .replay(HashAlg::Sha256)
        .unwrap();
    let prediction = PlatformPrediction {
        trust: String::new(),
        closed: Default::default(),
        events: vec![predicted(
            MeasuredRegister::Pcr(4),
            BSA,
            HashAlg::Sha256,
            &uki256,
            "the UKI",
        )],
        values: BTreeMap::new(),
    };
    // Replayed, but not compared with any quote.
    assert_eq!(
        check_image_events(&replayed, &prediction),
        Err(EventLogError::RegisterNotQuoted {
            register: MeasuredRegister::Pcr(4)
        })
    );
    // Quoted PCR0 only.
    let pcr0 = BTreeMap::from([(0, replayed.value(MeasuredRegister::Pcr(0)).unwrap())]);
    let quoted = verify_pcr_event_log(&log, &pcr0).unwrap();
    assert_eq!(
        check_image_events(&quoted, &prediction),
        Err(EventLogError::RegisterNotQuoted {
            register: MeasuredRegister::Pcr(4)
        })
    );
    let pcr4 = BTreeMap::from([(4, replayed.value(MeasuredRegister::Pcr(4)).unwrap())]);
    let quoted = verify_pcr_event_log(&log, &pcr4).unwrap();
    assert_eq!(check_image_events(&quoted, &prediction), Ok(()));
}

// go-tpm-tools server/eventlog_test.go, `Ubuntu2404AmdSevSnp.ExpectedEFIAppDigests` (SHA-256):
// shim, then GRUB.
const GCE_SHIM: &str = "724de6844dd0fe618ba5776c7bca0728be38a6544e24e44ef259b987b7abce80";
const GCE_GRUB: &str = "5e8cb75acdf8e09e5fc14cc2d6ce0c2288af208976d97309851c661e91ec1e03";
const GCE_PCR4: &str = "abe8b3fa6aecb36c2fd93c6f6edde661c21b353d007410a2739d69bfa7e1b9be";

fn gce_prediction(apps: &[&str]) -> PlatformPrediction {
    PlatformPrediction {
        trust: "the vTPM (outside the TEE on N2D)".into(),
        closed: Default::default(),
        events: apps
            .iter()
            .map(|d| {
                predicted(
                    MeasuredRegister::Pcr(4),
                    BSA,
                    HashAlg::Sha256,
                    &hex::decode(d).unwrap(),
                    "boot application",
                )
            })
            .collect(),
        values: BTreeMap::from([(MeasuredRegister::Pcr(4), hex::decode(GCE_PCR4).unwrap())]),
    }
}

#[test]
fn the_recorded_gce_boot_matches_its_boot_applications() {
    let quoted = pcrs(&[(4, GCE_PCR4)]);
    let replayed = verify_pcr_event_log(GCE_TPM_LOG, &quoted).unwrap();
    assert_eq!(
        check_image_events(&replayed, &gce_prediction(&[GCE_SHIM, GCE_GRUB])),
        Ok(())
    );
    // GRUB predicted with another digest: the logged GRUB is a wrong digest.
    let mut other = hex::decode(GCE_GRUB).unwrap();
    other[0] ^= 1;
    assert!(matches!(
        check_image_events(&replayed, &gce_prediction(&[GCE_SHIM, &hex::encode(&other)])),
        Err(EventLogError::WrongUkiDigest { logged, .. }) if logged == GCE_GRUB
    ));
    // Only the shim predicted: GRUB is another boot step.
    assert!(matches!(
        check_image_events(&replayed, &gce_prediction(&[GCE_SHIM])),
        Err(EventLogError::UnexpectedEvent { digest, .. }) if digest == GCE_GRUB
    ));
}

#[test]
fn the_recorded_gcp_tdx_boot_matches_its_boot_applications() {
    let log = EventLog::parse(GCP_TDX_CCEL, LogKind::Ccel).unwrap();
    let apps: Vec<Vec<u8>> = log
        .events
        .iter()
        .filter(|e| e.event_type == BSA)
        .map(|e| e.digest(HashAlg::Sha384).unwrap().to_vec())
        .collect();
    // Read out of the log with Python (testdata/eventlog/README.md).
    assert_eq!(hex::encode(&apps[0]), "5a10026c9ad41d1f90dc9cfe88bcabe1842ccfd85495c81b1a1ab926a9ef23b5d2e60eefeba0415bbe5c8c328a899a0a");
    let quote = gcp_quote_rtmrs();
    let rtmr1 = MeasuredRegister::Rtmr(1);
    let prediction = PlatformPrediction {
        trust: String::new(),
        closed: Default::default(),
        events: apps
            .iter()
            .map(|d| predicted(rtmr1, BSA, HashAlg::Sha384, d, "boot application"))
            .collect(),
        values: BTreeMap::from([
            (rtmr1, quote[1].0.to_vec()),
            (MeasuredRegister::Rtmr(2), quote[2].0.to_vec()),
        ]),
    };
    let replayed = verify_tdx_event_log(GCP_TDX_CCEL, &quote).unwrap();
    assert_eq!(check_image_events(&replayed, &prediction), Ok(()));
    let mut uki_only = prediction.clone();
    uki_only.events.remove(0);
    assert!(matches!(
        check_image_events(&replayed, &uki_only),
        Err(EventLogError::UnexpectedEvent { offset, .. }) if offset == log.events.iter().find(|e| e.event_type == BSA).unwrap().offset
    ));
}

/// A manifest with the image tool's `uefi` schema.
fn manifest(gcp_events: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "schema": 3,
        "measurements": {},
        "uefi": {
            "uki": {"path": "EFI/BOOT/BOOTX64.EFI", "size": 1234, "sha256": "00".repeat(32),
                    "authenticode_sha256": "77".repeat(32), "authenticode_sha384": "55".repeat(48)},
            "disk": {"size": 1073741824},
            "predictions": {
                "gcp-tdx": {"trust": "Google's TDX firmware", "events": gcp_events,
                            "values": {"RTMR1": "11".repeat(48), "RTMR2": "22".repeat(48)}},
                "azure-vtpm": {"trust": "Azure's paravisor vTPM",
                               "events": [{"register": "PCR4", "event_type": "EV_EFI_BOOT_SERVICES_APPLICATION",
                                           "digest_alg": "sha256", "digest": "77".repeat(32), "what": "the UKI"}],
                               "values": {"PCR4": "33".repeat(32)}}
            }
        }
    })
}

fn uki_event(register: &str, alg: &str, digest: String) -> serde_json::Value {
    serde_json::json!([{"register": register, "event_type": "EV_EFI_BOOT_SERVICES_APPLICATION",
                        "digest_alg": alg, "digest": digest, "what": "the UKI"}])
}

#[test]
fn predictions_are_read_from_the_image_manifest() {
    let m = manifest(uki_event("RTMR1", "sha384", "55".repeat(48)));
    let p = ImagePredictions::from_image_manifest(&m).unwrap();
    assert_eq!(p.platforms.len(), 2);
    let gcp = &p.platforms["gcp-tdx"];
    assert!(gcp.is_tdx());
    assert!(!p.platforms["azure-vtpm"].is_tdx());
    assert_eq!(gcp.events[0].register, MeasuredRegister::Rtmr(1));
    assert_eq!(gcp.events[0].event_type, BSA);
    assert_eq!(gcp.events[0].digest, UKI);
    assert_eq!(gcp.values[&MeasuredRegister::Rtmr(2)], [0x22; 48]);
    // The policy's JSON form is the manifest's.
    let json = serde_json::to_value(gcp).unwrap();
    assert_eq!(json, m["uefi"]["predictions"]["gcp-tdx"]);
    assert_eq!(
        serde_json::from_value::<PlatformPrediction>(json).unwrap(),
        *gcp
    );
    // No `uefi`: a direct-boot image, no platforms.
    let none =
        ImagePredictions::from_image_manifest(&serde_json::json!({"measurements": {}})).unwrap();
    assert!(none.platforms.is_empty());
}

#[test]
fn malformed_predictions_are_refused() {
    for events in [
        uki_event("RTMR1", "sha384", "55".repeat(32)), // digest size ≠ algorithm
        uki_event("PCR4", "sha256", "77".repeat(32)),  // PCRs mixed with RTMRs
        uki_event("MRTD", "sha384", "55".repeat(48)),  // the firmware's register
        uki_event("RTMR4", "sha384", "55".repeat(48)), // no such register
        uki_event("RTMR1", "sha1", "55".repeat(20)),   // SHA-1
        serde_json::json!([{"register": "RTMR1", "event_type": "EV_BOOT", "digest_alg": "sha384", "digest": "55".repeat(48)}]),
        serde_json::json!([{"register": "RTMR1", "event_type": "EV_IPL", "digest_alg": "sha384", "digest": "zz"}]),
        // optional in a register that is not closed: its absence could hide another event
        serde_json::json!([{"register": "RTMR2", "event_type": "EV_EVENT_TAG", "digest_alg": "sha384", "digest": "55".repeat(48), "optional": true}]),
    ] {
        let m = manifest(events.clone());
        assert!(
            matches!(
                ImagePredictions::from_image_manifest(&m),
                Err(EventLogError::BadPredictions(_))
            ),
            "{events}"
        );
    }
}

/// A TDX boot of the UKI whose RTMR[2] holds `rtmr2` (event type, data), in order.
fn tdx_boot_rtmr2(rtmr2: &[(EventType, &[u8])]) -> Vec<u8> {
    let mut w = LogWriter::new(1, &[HashAlg::Sha384]);
    w.measure(2, EventType::EfiGptEvent, GPT).event(
        2,
        BSA,
        &[(HashAlg::Sha384, UKI.to_vec())],
        b"\\EFI\\BOOT\\BOOTX64.EFI",
    );
    for (event_type, data) in rtmr2 {
        w.measure(3, *event_type, data);
    }
    w.bytes()
}

const STUB_SECTION: &[u8] = b".linux\0";
const KERNEL_OPTIONS: &[u8] = b"console=ttyS0 root=/dev/dm-0";

/// RTMR[2] as the image tool predicts it under TDX: the stub's section required, Linux's own
/// event optional (logged to a vTPM instead when the firmware has one), the register closed.
fn closed_rtmr2_prediction() -> PlatformPrediction {
    let rtmr2 = MeasuredRegister::Rtmr(2);
    let mut kernel = predicted(
        rtmr2,
        EventType::EventTag,
        HashAlg::Sha384,
        &HashAlg::Sha384.hash(KERNEL_OPTIONS),
        "Linux's LoadOptions",
    );
    kernel.optional = true;
    PlatformPrediction {
        trust: String::new(),
        closed: [rtmr2].into(),
        events: vec![
            predicted(
                MeasuredRegister::Rtmr(1),
                BSA,
                HashAlg::Sha384,
                &UKI,
                "the UKI",
            ),
            predicted(
                rtmr2,
                EventType::Ipl,
                HashAlg::Sha384,
                &HashAlg::Sha384.hash(STUB_SECTION),
                "the stub's section",
            ),
            kernel,
        ],
        values: BTreeMap::new(),
    }
}

#[test]
fn an_optional_event_may_be_absent_but_a_closed_register_holds_nothing_else() {
    let prediction = closed_rtmr2_prediction();
    let stub = (EventType::Ipl, STUB_SECTION);
    let kernel = (EventType::EventTag, KERNEL_OPTIONS);
    // Linux logged into RTMR[2] (no TPM), or into a vTPM instead: both accepted.
    assert_eq!(
        check_tdx(&tdx_boot_rtmr2(&[stub, kernel]), &prediction),
        Ok(())
    );
    assert_eq!(check_tdx(&tdx_boot_rtmr2(&[stub]), &prediction), Ok(()));
    // A command line from the boot entry: the stub logs it as one more EV_IPL event.
    let other_cmdline = (EventType::Ipl, &b"init=/bin/sh"[..]);
    for rtmr2 in [
        vec![stub, other_cmdline, kernel],
        vec![stub, other_cmdline],
        // Linux's event with another command line.
        vec![
            stub,
            (EventType::EventTag, &b"console=ttyS0 init=/bin/sh"[..]),
        ],
    ] {
        assert!(
            matches!(
                check_tdx(&tdx_boot_rtmr2(&rtmr2), &prediction),
                Err(EventLogError::UnexpectedEvent {
                    register: MeasuredRegister::Rtmr(2),
                    ..
                })
            ),
            "{rtmr2:?}"
        );
    }
    // The required event is still required.
    assert!(matches!(
        check_tdx(&tdx_boot_rtmr2(&[kernel]), &prediction),
        Err(EventLogError::MissingEvent {
            register: MeasuredRegister::Rtmr(2),
            ..
        })
    ));
    // Not closed, the same extra event would pass (it is no code): closing is what pins it.
    let mut open = prediction.clone();
    open.closed.clear();
    assert_eq!(
        check_tdx(&tdx_boot_rtmr2(&[stub, other_cmdline]), &open),
        Ok(())
    );
}
