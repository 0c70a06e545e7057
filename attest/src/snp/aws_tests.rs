//! AWS EC2 SEV-SNP, end to end: a recorded VLEK-signed report from a `c6a.large` in us-east-2
//! with the host's certificate table (the VLEK, CSP_ID `cc-us-east-2.amazonaws.com`)
//! (kitecosmic/synsema, MIT; `testdata/README.md`). Through [`crate::verify`] as the runner's
//! verifier calls it: the VLEK picked from KEY_INFO, chained to AMD's pinned Milan ASVK, its TCB
//! equal to REPORTED_TCB, the signature over the report; every tampered part refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use super::certs;
use crate::error::{CertName, SnpError, VerifyError};
use crate::evidence::{CertKind, Evidence, SnpCert, SnpEvidence};
use crate::measurement::{Digest48, SnpMeasurement};
use crate::snp::{SnpSigningKey, SnpTcb};
use crate::testing::vectors::*;
use crate::{Endorsements, Policy, VtpmError};

const RECORDED: &str = include_str!("../../testdata/snp/aws_c6a_vlek_identity.json");

// Read out of the recording with Python (testdata/README.md).
const MEASUREMENT: &str = "7a89cceaaba0bbdddc4f775acca3ef15d1f9bf8abccdc6115cfad7fb8eae113df3ee0bb50efa34db9c53ae065b1dc766";
const REPORT_DATA: &str = "0a61b9f5f745699a757a966ffe382d70779d62926791ed4848fe1069dd7aedec0000000000000000000000000000000000000000000000000000000000000000";
/// The VLEK's validity: 2026-03-09 19:30:05 to 2027-03-09 19:30:05 UTC.
const VLEK_NOT_BEFORE: u64 = 1_773_084_605;
const VLEK_NOT_AFTER: u64 = 1_804_620_605;
/// Where the VLEK's P-384 point starts in its DER (inside the part the ASVK signs).
const VLEK_POINT_AT: usize = 393;

/// 2026-10-07 19:06:40 UTC, inside the VLEK's validity.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_791_400_000)
}

fn b64(field: &str) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_str(RECORDED).unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(v[field].as_str().unwrap())
        .unwrap()
}

/// The report and the host's certificate table as the runner's attester reads them from
/// configfs-tsm (`outblob`, `auxblob`).
fn evidence() -> SnpEvidence {
    SnpEvidence {
        report: b64("document"),
        certs: certs::parse(&b64("aux")).unwrap(),
        tpm: None,
    }
}

/// The recorded launch allowed by its digest, report_data as bound, SMT allowed (AWS's hosts
/// run with SMT on), AMD-SB-3019's minimum TCB (the default).
fn policy() -> Policy {
    let mut p = Policy {
        expected_report_data: Some(crate::encoding::parse::<64>(REPORT_DATA).unwrap()),
        ..Policy::default()
    };
    p.snp.allow_smt = true;
    p.expected.snp.push(SnpMeasurement {
        launch_digest: MEASUREMENT.parse().unwrap(),
        label: Some("AWS c6a, recorded".into()),
    });
    p
}

fn check(e: &SnpEvidence, p: &Policy, at: SystemTime) -> Result<crate::Verified, VerifyError> {
    crate::verify(&Evidence::Snp(e.clone()), p, at)
}

fn snp_err(r: Result<crate::Verified, VerifyError>) -> SnpError {
    match r {
        Err(VerifyError::Snp(e)) => e,
        Err(other) => panic!("expected an SNP error, got {other:?}"),
        Ok(_) => panic!("expected an SNP error, got verified evidence"),
    }
}

fn with_vlek(der: Vec<u8>) -> SnpEvidence {
    let mut e = evidence();
    e.certs = vec![SnpCert {
        kind: CertKind::Vlek,
        der,
    }];
    e
}

#[test]
fn the_recording_is_a_vlek_signed_aws_report_with_its_vlek() {
    let e = evidence();
    assert_eq!(e.report.len(), 1184);
    // KEY_INFO.SIGNING_KEY (bits 4:2 of 0x48) = 1: VLEK. CHIP_ID masked (zero), as AWS does.
    assert_eq!((e.report[0x48] >> 2) & 7, 1);
    assert!(e.report[super::layout::CHIP_ID].iter().all(|b| *b == 0));
    assert_eq!(e.certs.len(), 1);
    assert_eq!(e.certs[0].kind, CertKind::Vlek);
    assert_eq!(e.certs[0].der.len(), 1319);
    // The VLEK names the CSP it was issued to.
    let csp = b"CN=cc-us-east-2.amazonaws.com";
    assert!(e.certs[0].der.windows(csp.len()).any(|w| w == csp));
    // A VLEK comes with the evidence: nothing to fetch from AMD.
    assert!(!crate::collateral::needs_collateral(
        &Evidence::Snp(e),
        &Endorsements::default()
    ));
}

#[test]
fn the_aws_report_is_accepted_end_to_end() {
    let v = check(&evidence(), &policy(), now()).unwrap();
    assert_eq!(v.tee, crate::Tee::Snp);
    assert!(!v.insecure);
    assert_eq!(hex::encode(v.report_data), REPORT_DATA);
    let d = v.snp.unwrap();
    assert_eq!(d.signing_key, SnpSigningKey::Vlek);
    assert_eq!(d.generation, "Milan");
    assert_eq!(d.version, 5);
    assert_eq!(d.vmpl, 0);
    assert!(d.smt_enabled);
    assert_eq!(d.chip_id, [0; 64]);
    assert_eq!(
        (
            d.tcb.reported.bootloader,
            d.tcb.reported.tee,
            d.tcb.reported.snp,
            d.tcb.reported.microcode
        ),
        (4, 0, 29, 222)
    );
    // CURRENT_TCB is newer (SNP 31, microcode 225): the VLEK is for REPORTED_TCB.
    assert_eq!((d.tcb.current.snp, d.tcb.current.microcode), (31, 225));
    // A VCEK the verifier supplies does not replace the evidence's VLEK.
    let vcek = Endorsements {
        snp_vcek: Some(GCP_V5_VMPL0_VCEK.to_vec()),
        ..Endorsements::default()
    };
    let v = crate::verify_with(&Evidence::Snp(evidence()), &policy(), &vcek, now()).unwrap();
    assert_eq!(v.snp.unwrap().signing_key, SnpSigningKey::Vlek);
}

#[test]
fn a_flipped_byte_in_the_report_is_refused() {
    let mut p = policy();
    p.expected_report_data = None;
    for (what, at) in [
        ("report_data", 0x50),
        ("measurement", 0x90),
        ("policy", 0x08),
        ("reported TCB SNP SPL, still above the minimum", 0x186),
        ("signature R", 0x2A0 + 3),
        ("signature S", 0x2E8 + 40),
    ] {
        let mut e = evidence();
        e.report[at] ^= 0x01;
        let err = snp_err(check(&e, &p, now()));
        let want = if at == 0x186 {
            // The VLEK's TCB is checked against REPORTED_TCB before the signature.
            matches!(err, SnpError::VcekTcbMismatch { .. })
        } else {
            err == SnpError::BadSignature
        };
        assert!(want, "{what}: {err:?}");
    }
    // The signing key field itself: the report then claims a VCEK, which the evidence lacks.
    let mut e = evidence();
    e.report[0x48] &= !0x1c;
    assert_eq!(snp_err(check(&e, &p, now())), SnpError::MissingVcek);
}

#[test]
fn a_missing_wrong_tampered_or_expired_vlek_is_refused() {
    // No certificate, or the VLEK filed as a VCEK: the report is VLEK-signed.
    let mut e = evidence();
    e.certs.clear();
    assert_eq!(snp_err(check(&e, &policy(), now())), SnpError::MissingVlek);
    let mut e = evidence();
    e.certs[0].kind = CertKind::Vcek;
    assert_eq!(snp_err(check(&e, &policy(), now())), SnpError::MissingVlek);
    // Another chip's key in the VLEK slot (a genuine VCEK): not under AMD's ASVK.
    assert_eq!(
        snp_err(check(&with_vlek(MILAN_VCEK.to_vec()), &policy(), now())),
        SnpError::VlekNotSignedByAmd
    );
    // A flipped byte in the VLEK's public key.
    let mut der = evidence().certs[0].der.clone();
    assert_eq!(der[VLEK_POINT_AT], 0x04, "uncompressed point marker");
    der[VLEK_POINT_AT + 10] ^= 0x01;
    assert_eq!(
        snp_err(check(&with_vlek(der), &policy(), now())),
        SnpError::VlekNotSignedByAmd
    );
    // Outside its validity.
    let at = |t: u64| UNIX_EPOCH + Duration::from_secs(t);
    assert!(matches!(
        snp_err(check(&evidence(), &policy(), at(VLEK_NOT_BEFORE - 1))),
        SnpError::CertificateNotYetValid {
            cert: CertName::Vlek,
            ..
        }
    ));
    assert!(matches!(
        snp_err(check(&evidence(), &policy(), at(VLEK_NOT_AFTER + 1))),
        SnpError::CertificateExpired {
            cert: CertName::Vlek,
            ..
        }
    ));
    for t in [VLEK_NOT_BEFORE, VLEK_NOT_AFTER] {
        assert!(check(&evidence(), &policy(), at(t)).is_ok(), "at {t}");
    }
}

#[test]
fn the_policy_decides_smt_tcb_launch_and_binding() {
    let mut p = policy();
    p.snp.allow_smt = false;
    assert_eq!(snp_err(check(&evidence(), &p, now())), SnpError::SmtEnabled);
    let mut p = policy();
    p.snp.min_tcb.milan = SnpTcb {
        snp: 30,
        ..SnpTcb::default()
    };
    assert_eq!(
        snp_err(check(&evidence(), &p, now())),
        SnpError::TcbTooLow {
            component: "snp",
            min: 30,
            got: 29
        }
    );
    let mut p = policy();
    p.expected.snp[0].launch_digest = Digest48([5; 48]);
    assert!(matches!(
        check(&evidence(), &p, now()),
        Err(VerifyError::Measurement(_))
    ));
    let mut p = policy();
    p.expected_report_data = Some([0; 64]);
    assert!(matches!(
        check(&evidence(), &p, now()),
        Err(VerifyError::ReportDataMismatch { .. })
    ));
    // As AWS's firmware (`snp_firmware`) the launch identifies no image: a NitroTPM quote must.
    let mut p = policy();
    let firmware = p.expected.snp.remove(0);
    p.expected.snp_firmware.push(firmware);
    assert!(matches!(
        check(&evidence(), &p, now()),
        Err(VerifyError::Vtpm(VtpmError::NoTpmEvidence { .. }))
    ));
}
