//! TPM evidence end to end on a real swtpm: a "firmware" extends PCR4 with the events of a
//! synthetic boot log, the attester quotes it and reads the log, and `verify` checks the quote,
//! the AK's trust, the replay and the image's predicted events. Each tampering is refused with
//! its own error.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::get::{LocalTpm, TpmPath};
use crate::eventlog::writer::LogWriter;
use crate::eventlog::{EventLogError, EventType, HashAlg, ImagePredictions};
use crate::host::RootedFs;
use crate::measurement::{SnpMeasurement, UefiPlatform};
use crate::testing::vectors;
use crate::tpm::tests::swtpm::Swtpm;
use crate::tpm::{Hierarchy, TpmError};
use crate::{
    boot_log, AkName, AkTrust, Attester, Digest48, Evidence, Policy, Tee, VerifyError, VtpmError,
};

const RD: [u8; 64] = [0x3c; 64];

pub(crate) fn uki_digest(uki: &[u8]) -> [u8; 32] {
    Sha256::digest(uki).into()
}

/// A swtpm "booted" by a firmware that logged and extended: PCR0 a CRTM version, PCR4 the
/// boot-option action, a separator and the UKI (its digest), PCR7 a separator. The attester
/// sees the log in securityfs under its root.
pub(crate) struct Machine {
    pub(crate) swtpm: Swtpm,
    pub(crate) root: tempfile::TempDir,
    pub(crate) log: Vec<u8>,
    pub(crate) ak_name: AkName,
}

pub(crate) fn machine(uki: &[u8]) -> Machine {
    machine_with(uki, None)
}

/// [`machine`], and with `pcr12` a command line systemd-stub measured into PCR 12 (one that
/// replaced the UKI's).
pub(crate) fn machine_with(uki: &[u8], pcr12: Option<&[u8]>) -> Machine {
    let (swtpm, mut tpm) = Swtpm::start();
    let mut w = LogWriter::new(0, &[HashAlg::Sha256]);
    w.measure(0, EventType::SCrtmVersion, b"swtpm test firmware\0")
        .measure(
            4,
            EventType::EfiAction,
            b"Calling EFI Application from Boot Option",
        )
        .measure(4, EventType::Separator, &[0; 4])
        .event(
            4,
            EventType::EfiBootServicesApplication,
            &[(HashAlg::Sha256, uki_digest(uki).to_vec())],
            b"device path of the UKI",
        )
        .measure(7, EventType::Separator, &[0; 4]);
    if let Some(cmdline) = pcr12 {
        w.measure(12, EventType::Ipl, cmdline);
    }
    let log = w.bytes();
    let parsed = crate::eventlog::EventLog::parse(&log, crate::eventlog::LogKind::Tpm).unwrap();
    for e in &parsed.events {
        let crate::eventlog::MeasuredRegister::Pcr(i) = e.register else {
            panic!("a PCR")
        };
        let digest: [u8; 32] = e.digest(HashAlg::Sha256).unwrap().try_into().unwrap();
        tpm.pcr_extend(i, &digest).unwrap();
    }
    // The AK's name, as the client creates the AK.
    let (handle, ak) = tpm.create_primary_ak(Hierarchy::Endorsement).unwrap();
    tpm.flush_context(handle).unwrap();
    let ak_name = AkName(ak.name().unwrap());
    drop(tpm); // swtpm serves one client at a time
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join(boot_log::TPM_LOG.trim_start_matches('/'));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, &log).unwrap();
    Machine {
        swtpm,
        root,
        log,
        ak_name,
    }
}

impl Machine {
    pub(crate) fn attester(&self) -> Attester {
        let fs = Arc::new(RootedFs::new(self.root.path()));
        let tpm = LocalTpm::at(TpmPath::Tcp(self.swtpm.addr()));
        Attester::with_fs_and_tpm(fs, Some(tpm))
    }
}

/// The image manifest's `uefi.predictions`: the UKI in PCR4 on `qemu-ovmf-tpm`.
pub(crate) fn predictions(uki: &[u8]) -> Vec<UefiPlatform> {
    let manifest = serde_json::json!({"uefi": {"uki": {}, "disk": {}, "predictions": {
        "qemu-ovmf-tpm": {
            "trust": "swtpm: the AK is pinned by the verifier",
            "events": [{"register": "PCR4", "event_type": "EV_EFI_BOOT_SERVICES_APPLICATION",
                        "digest_alg": "sha256", "digest": hex::encode(uki_digest(uki)),
                        "what": "the UKI"}]}}}});
    ImagePredictions::from_image_manifest(&manifest)
        .unwrap()
        .platforms
        .into_iter()
        .map(|(platform, prediction)| UefiPlatform {
            platform,
            prediction,
        })
        .collect()
}

fn dev_policy(m: &Machine, uki: &[u8]) -> Policy {
    let mut p = Policy {
        allow_insecure_dev: true,
        expected_report_data: Some(RD),
        trusted_tpm_aks: vec![m.ak_name.clone()],
        ..Default::default()
    };
    p.expected.uefi = predictions(uki);
    p
}

fn tpm_error(r: Result<crate::Verified, VerifyError>) -> TpmError {
    match r {
        Err(VerifyError::Tpm(f)) => Arc::try_unwrap(f.0).unwrap_or_else(|a| panic!("{a}")),
        other => panic!("expected a TPM error, got {other:?}"),
    }
}

fn now() -> std::time::SystemTime {
    std::time::SystemTime::now()
}

#[test]
fn evidence_from_a_booted_swtpm_verifies_against_the_predictions() {
    let m = machine(b"the UKI");
    let a = m.attester();
    assert!(a.has_tpm());
    assert_eq!(a.tee(), Tee::None);
    let e = a.evidence(RD).unwrap();
    let tpm = e.tpm().expect("a quote beside the `none` evidence");
    assert_eq!(tpm.event_log.as_deref(), Some(&m.log[..]));
    assert_eq!(
        tpm.pcrs.keys().copied().collect::<Vec<_>>(),
        (0..16).collect::<Vec<_>>()
    );
    let back = Evidence::from_json(&e.to_json()).unwrap();
    assert_eq!(back, e);
    let v = crate::verify(&back, &dev_policy(&m, b"the UKI"), now()).unwrap();
    assert!(
        v.insecure,
        "no TEE: a pinned TPM does not make it confidential"
    );
    let t = v.tpm.unwrap();
    assert_eq!(t.ak_name, m.ak_name);
    assert_eq!(t.ak_trust, AkTrust::Pinned);
    assert!(t.event_log_replayed);
    assert_eq!(t.uefi_platform.as_deref(), Some("qemu-ovmf-tpm"));
    assert_ne!(t.pcrs[&4], [0; 32]);

    // The same prediction under other platforms' names too (the manifest's are alike): the one
    // named is the one that fits `none` evidence, whatever the order.
    let mut p = dev_policy(&m, b"the UKI");
    let mut aws = p.expected.uefi[0].clone();
    aws.platform = "aws-snp".into();
    p.expected.uefi.insert(0, aws);
    let t = crate::verify(&e, &p, now()).unwrap().tpm.unwrap();
    assert_eq!(t.uefi_platform.as_deref(), Some("qemu-ovmf-tpm"));

    // Dev mode without any pin: accepted, and said to be insecure.
    let mut p = dev_policy(&m, b"the UKI");
    p.trusted_tpm_aks.clear();
    let t = crate::verify(&e, &p, now()).unwrap().tpm.unwrap();
    assert_eq!(t.ak_trust, AkTrust::InsecureDev);
}

#[test]
fn each_tampering_is_refused_with_its_own_error() {
    let m = machine(b"the UKI");
    let a = m.attester();
    let e = a.evidence(RD).unwrap();
    let p = dev_policy(&m, b"the UKI");
    let Evidence::None(n) = &e else {
        panic!("none")
    };
    let with_tpm = |f: &dyn Fn(&mut crate::tpm::TpmEvidence)| {
        let mut n = n.clone();
        f(n.tpm.as_mut().unwrap());
        Evidence::None(n)
    };

    // A byte of the quote.
    let t = with_tpm(&|t| *t.quote.last_mut().unwrap() ^= 1);
    assert!(matches!(
        tpm_error(crate::verify(&t, &p, now())),
        TpmError::BadSignature
    ));

    // An AK the policy does not pin (it pins another TPM's).
    let mut other = p.clone();
    other.trusted_tpm_aks = vec![AkName(vec![0; 34])];
    assert_eq!(
        crate::verify(&e, &other, now()).unwrap_err(),
        VerifyError::Vtpm(VtpmError::AkNotTrusted {
            ak_name: m.ak_name.to_string()
        })
    );

    // An event of the log changed (the UKI's digest): PCR4 no longer replays.
    let uki = uki_digest(b"the UKI");
    let at = m.log.windows(32).position(|w| w == uki).unwrap();
    let t = with_tpm(&|t| t.event_log.as_mut().unwrap()[at] ^= 1);
    assert!(matches!(
        crate::verify(&t, &p, now()),
        Err(VerifyError::EventLog(EventLogError::DoesNotReplay { .. }))
    ));

    // Another UKI than the manifest's.
    assert!(matches!(
        crate::verify(&e, &dev_policy(&m, b"another UKI"), now()),
        Err(VerifyError::EventLog(EventLogError::WrongUkiDigest { .. }))
    ));

    // The quote of another report_data beside this one.
    let other_rd = a.evidence([0x11; 64]).unwrap();
    let t = with_tpm(&|t| *t = other_rd.tpm().unwrap().clone());
    assert!(matches!(
        tpm_error(crate::verify(&t, &p, now())),
        TpmError::NonceMismatch { .. }
    ));

    // No event log, and the policy has predictions.
    let t = with_tpm(&|t| t.event_log = None);
    assert_eq!(
        crate::verify(&t, &p, now()).unwrap_err(),
        VerifyError::EventLog(EventLogError::Missing)
    );
}

/// The recorded Milan report with a quote from the swtpm bound to its report_data: a vTPM
/// beside (outside) the TEE, as on Google's N2D or AWS.
pub(crate) fn snp_with_vtpm(m: &Machine) -> (Evidence, Policy) {
    let report = vectors::milan_report();
    let rd: [u8; 64] = report[crate::snp::layout::REPORT_DATA].try_into().unwrap();
    let fs = RootedFs::new(m.root.path());
    let tpm = LocalTpm::at(TpmPath::Tcp(m.swtpm.addr()))
        .evidence(&fs, &rd)
        .unwrap();
    let mut e = vectors::milan();
    e.tpm = Some(tpm);
    let mut p = Policy::default();
    p.snp.allow_smt = true;
    p.snp.min_tcb = crate::SnpMinTcb::none();
    p.expected.snp_firmware.push(SnpMeasurement {
        launch_digest: Digest48(report[crate::snp::layout::MEASUREMENT].try_into().unwrap()),
        label: Some("the cloud's SNP firmware (here: the recorded report's)".into()),
    });
    p.expected.uefi = predictions(b"the UKI");
    (Evidence::Snp(e), p)
}

#[test]
fn a_vtpm_outside_the_tee_needs_the_opt_in_or_a_pin() {
    let m = machine(b"the UKI");
    let (e, p) = snp_with_vtpm(&m);
    assert_eq!(
        crate::verify(&e, &p, vectors::snp_now()).unwrap_err(),
        VerifyError::Vtpm(VtpmError::UntrustedVtpm {
            ak_name: m.ak_name.to_string()
        })
    );
    let opted_in = Policy {
        allow_untrusted_vtpm: true,
        ..p.clone()
    };
    let v = crate::verify(&e, &opted_in, vectors::snp_now()).unwrap();
    assert_eq!(v.tee, Tee::Snp);
    let t = v.tpm.unwrap();
    assert_eq!(t.ak_trust, AkTrust::UntrustedVtpm);
    assert_eq!(t.uefi_platform.as_deref(), Some("qemu-ovmf-tpm"));
    assert!(t.ak_trust.to_string().contains("UNTRUSTED"));
    let pinned = Policy {
        trusted_tpm_aks: vec![m.ak_name.clone()],
        ..p.clone()
    };
    let t = crate::verify(&e, &pinned, vectors::snp_now()).unwrap();
    assert_eq!(t.tpm.unwrap().ak_trust, AkTrust::Pinned);

    // The cloud firmware's launch digest alone identifies nothing: the image must be in the
    // TPM's log, so another UKI is refused, as are a missing quote and missing predictions.
    let other_uki = Policy {
        expected: crate::ExpectedMeasurements {
            uefi: predictions(b"another UKI"),
            ..opted_in.expected.clone()
        },
        ..opted_in.clone()
    };
    assert!(matches!(
        crate::verify(&e, &other_uki, vectors::snp_now()),
        Err(VerifyError::EventLog(EventLogError::WrongUkiDigest { .. }))
    ));
    let Evidence::Snp(mut bare) = e.clone() else {
        panic!("snp")
    };
    bare.tpm = None;
    assert!(matches!(
        crate::verify(&Evidence::Snp(bare), &opted_in, vectors::snp_now()),
        Err(VerifyError::Vtpm(VtpmError::NoTpmEvidence { .. }))
    ));
    let mut no_predictions = opted_in.clone();
    no_predictions.expected.uefi.clear();
    assert_eq!(
        crate::verify(&e, &no_predictions, vectors::snp_now()).unwrap_err(),
        VerifyError::Vtpm(VtpmError::NoTpmPlatform)
    );
    // The launch digest is the image's own (expected.snp): the vTPM beside it is not needed,
    // not trusted, and not relied on (its quote still has to be bound to the report_data).
    let mut exact = p.clone();
    exact.expected.snp = std::mem::take(&mut exact.expected.snp_firmware);
    let t = crate::verify(&e, &exact, vectors::snp_now())
        .unwrap()
        .tpm
        .unwrap();
    assert_eq!(t.ak_trust, AkTrust::NotRelied);
    assert_eq!(t.uefi_platform, None);
    let Evidence::Snp(mut other_rd) = e.clone() else {
        panic!("snp")
    };
    other_rd.tpm = Some(
        LocalTpm::at(TpmPath::Tcp(m.swtpm.addr()))
            .evidence(&RootedFs::new(m.root.path()), &[0; 64])
            .unwrap(),
    );
    assert!(matches!(
        tpm_error(crate::verify(
            &Evidence::Snp(other_rd),
            &exact,
            vectors::snp_now()
        )),
        TpmError::NonceMismatch { .. }
    ));

    let mut no_firmware = opted_in;
    no_firmware.expected.snp_firmware.clear();
    assert!(matches!(
        crate::verify(&e, &no_firmware, vectors::snp_now()),
        Err(VerifyError::Measurement(
            crate::MeasurementError::NoneExpected { tee: "snp" }
        ))
    ));
}

#[test]
fn a_command_line_from_outside_the_uki_is_refused() {
    let m = machine_with(
        b"the UKI",
        Some(b"console=ttyS0 root=/dev/sda1 init=/bin/sh"),
    );
    let e = m.attester().evidence(RD).unwrap();
    assert!(matches!(
        crate::verify(&e, &dev_policy(&m, b"the UKI"), now()),
        Err(VerifyError::Vtpm(VtpmError::UnpredictedStubEvent {
            pcr: 12,
            ..
        }))
    ));
}
