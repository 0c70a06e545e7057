//! Google Cloud C3 TDX, end to end: the recorded quote (go-tdx-guest) with Intel's collateral
//! for its platform (FMSPC 00806F050000) and its CCEL log, through [`crate::verify`] as the
//! runner's verifier calls it. Accepted with the policy that allows Google's firmware, the
//! recorded boot and the platform's TCB status; every tampered part refused with its own error.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{MeasurementError, Register, TdxError, VerifyError};
use crate::eventlog::{EventLogError, LogKind, MeasuredRegister};
use crate::evidence::{Evidence, TdxCollateral, TdxEvidence};
use crate::measurement::Digest48;
use crate::policy::{Policy, TdxTcbStatus};
use crate::testing::vectors::*;
use crate::verify::{Measurements, Tcb};
use crate::Tee;

// The quote's layout (DCAP v4, certification data type 6): TD report 48..632 (MRTD at +136,
// RTMR[1] at +376, REPORT_DATA at +520), quote signature 636..700, attestation key 700..764,
// QE report 770..1154, QE report signature 1154..1218, then the PCK chain (PEM).
const MRTD_AT: usize = 48 + 136;
const RTMR1_AT: usize = 48 + 376;
const REPORT_DATA_AT: usize = 48 + 520;
const QUOTE_SIG_AT: usize = 636;
const ATT_KEY_AT: usize = 700;
const QE_REPORT_AT: usize = 770;
const QE_SIG_AT: usize = 1154;

fn evidence() -> TdxEvidence {
    let mut e = tdx(GCP_TDX_QUOTE, GCP_TDX_COLLATERAL);
    e.event_log = Some(GCP_TDX_CCEL.to_vec());
    e
}

fn collateral() -> TdxCollateral {
    serde_json::from_str(GCP_TDX_COLLATERAL).unwrap()
}

/// Google's firmware by MRTD, the recorded boot (shim, GRUB) as the image, report_data zero as
/// the quote was taken; the default TCB policy (UpToDate only).
fn policy() -> Policy {
    Policy {
        expected: gcp_policy(),
        expected_report_data: Some([0; 64]),
        ..Default::default()
    }
}

fn now() -> SystemTime {
    tdx_now(&evidence())
}

fn check(e: &TdxEvidence, p: &Policy) -> Result<crate::Verified, VerifyError> {
    crate::verify(&Evidence::Tdx(e.clone()), p, now())
}

fn tdx_err(r: Result<crate::Verified, VerifyError>) -> TdxError {
    match r {
        Err(VerifyError::Tdx(e)) => e,
        other => panic!("expected a TDX error, got {other:?}"),
    }
}

fn flipped(offset: usize) -> TdxEvidence {
    let mut e = evidence();
    e.quote[offset] ^= 0x01;
    e
}

#[test]
fn the_collateral_is_intels_for_this_quotes_platform() {
    let c = collateral();
    let info: serde_json::Value = serde_json::from_str(&c.tcb_info).unwrap();
    assert_eq!(info["fmspc"], "00806f050000");
    assert_eq!(info["tcbEvaluationDataNumber"], 17);
    // The FMSPC in the quote's PCK certificate (SGX extension 1.2.840.113741.1.13.1.4).
    let quote = dcap_qvl::quote::Quote::parse(GCP_TDX_QUOTE).unwrap();
    assert_eq!(
        dcap_qvl::intel::quote_fmspc(&quote).unwrap(),
        [0x00, 0x80, 0x6f, 0x05, 0x00, 0x00]
    );
    // Inside every part's window: 2025-06-19 10:32:27 (QE identity issued) to 2025-07-04
    // 09:51:38 (TCB info's nextUpdate).
    assert_eq!(collateral_window(&c), (1_750_329_147, 1_751_622_698));
    assert_eq!(
        u16::from_le_bytes([GCP_TDX_QUOTE[764], GCP_TDX_QUOTE[765]]),
        6
    );
    assert_eq!(
        GCP_TDX_QUOTE[MRTD_AT..MRTD_AT + 48],
        gcp_registers().mrtd.0[..]
    );
    assert_eq!(
        GCP_TDX_QUOTE[RTMR1_AT..RTMR1_AT + 48],
        gcp_registers().rtmr1.0[..]
    );
}

#[test]
fn googles_c3_quote_is_accepted_end_to_end() {
    let v = check(&evidence(), &policy()).unwrap();
    assert_eq!(v.tee, Tee::Tdx);
    assert!(!v.insecure);
    assert_eq!(v.report_data, [0; 64]);
    assert_eq!(v.measurements, Measurements::Tdx(gcp_registers()));
    assert_eq!(
        v.tcb,
        Tcb::Tdx {
            status: "UpToDate".into(),
            advisory_ids: vec![],
        }
    );
    let d = v.tdx.unwrap();
    assert_eq!(d.quote_version, 4);
    assert_eq!(d.uefi_platform.as_deref(), Some("gcp-tdx"));
    // TDX module 1 (TDX_01 in the TCB info: SVN 4 is UpToDate), SVN 4; TDX late microcode
    // update SVN 7 (read with Python). With a module version above 0 the TCB level comparison
    // starts at component 2 (Intel's rule), so the first level (…, 7) matches.
    assert_eq!(d.tee_tcb_svn[..3], [4, 1, 7]);
}

#[test]
fn the_platforms_tcb_status_must_be_accepted() {
    let mut other = policy();
    other.tdx.accepted_tcb_status = vec![TdxTcbStatus::OutOfDate];
    assert_eq!(
        tdx_err(check(&evidence(), &other)),
        TdxError::TcbStatusNotAccepted {
            status: "UpToDate".into(),
            advisories: vec![],
        }
    );
}

#[test]
fn a_flipped_byte_in_the_quote_is_refused() {
    for offset in [MRTD_AT, RTMR1_AT + 47, REPORT_DATA_AT, QUOTE_SIG_AT + 1] {
        assert_eq!(
            tdx_err(check(&flipped(offset), &policy())),
            TdxError::BadSignature,
            "offset {offset}"
        );
    }
    assert_eq!(
        tdx_err(check(&flipped(ATT_KEY_AT + 3), &policy())),
        TdxError::QeReportBinding
    );
    for offset in [QE_REPORT_AT + 64, QE_SIG_AT + 7] {
        assert_eq!(
            tdx_err(check(&flipped(offset), &policy())),
            TdxError::QeReportSignature,
            "offset {offset}"
        );
    }
}

#[test]
fn a_tampered_pck_certificate_breaks_the_chain() {
    let mut e = evidence();
    let pem = e
        .quote
        .windows(27)
        .position(|w| w == b"-----BEGIN CERTIFICATE-----")
        .unwrap();
    // A base64 character inside the PCK leaf's signed body, replaced by another valid one.
    let at = pem + 28 + 300;
    e.quote[at] = if e.quote[at] == b'A' { b'B' } else { b'A' };
    let err = tdx_err(check(&e, &policy()));
    assert!(matches!(err, TdxError::CertificateChain(_)), "{err:?}");
}

#[test]
fn tampered_or_foreign_collateral_is_refused() {
    // The TCB info edited to call an older TCB level up to date: Intel's signature no longer
    // holds.
    let mut e = evidence();
    let c = e.collateral.as_mut().unwrap();
    let edited = c.tcb_info.replacen("\"OutOfDate\"", "\"UpToDate\"", 1);
    assert_ne!(edited, c.tcb_info);
    c.tcb_info = edited;
    let err = tdx_err(check(&e, &policy()));
    assert!(matches!(err, TdxError::CollateralSignature(_)), "{err:?}");
    // A flipped bit in the signature.
    let mut e = evidence();
    e.collateral.as_mut().unwrap().tcb_info_signature[10] ^= 1;
    let err = tdx_err(check(&e, &policy()));
    assert!(matches!(err, TdxError::CollateralSignature(_)), "{err:?}");
    // Intel's genuine TCB info for another platform (FMSPC B0C06F000000), valid at the same
    // time: the quote's FMSPC does not match it.
    let mut e = evidence();
    let other: TdxCollateral = serde_json::from_str(TDX_V4_COLLATERAL).unwrap();
    let c = e.collateral.as_mut().unwrap();
    c.tcb_info = other.tcb_info;
    c.tcb_info_signature = other.tcb_info_signature;
    let err = tdx_err(check(&e, &policy()));
    assert!(matches!(err, TdxError::TcbMatch(_)), "{err:?}");
}

#[test]
fn collateral_outside_its_window_is_refused() {
    let (from, to) = collateral_window(&collateral());
    for t in [from - 86_400, to + 1] {
        let at = UNIX_EPOCH + Duration::from_secs(t);
        let err = crate::verify(&Evidence::Tdx(evidence()), &policy(), at);
        assert!(
            matches!(err, Err(VerifyError::Tdx(TdxError::CollateralExpired(_)))),
            "at {t}: {err:?}"
        );
    }
    for t in [from, to] {
        let at = UNIX_EPOCH + Duration::from_secs(t);
        assert!(crate::verify(&Evidence::Tdx(evidence()), &policy(), at).is_ok());
    }
}

#[test]
fn without_collateral_the_quote_is_refused() {
    let mut e = evidence();
    e.collateral = None;
    assert_eq!(tdx_err(check(&e, &policy())), TdxError::MissingCollateral);
}

#[test]
fn the_log_must_replay_and_show_the_image() {
    let mut e = evidence();
    let app = crate::testing::first_boot_app(GCP_TDX_CCEL, LogKind::Ccel);
    e.event_log.as_mut().unwrap()[app.offset + 20] ^= 4;
    assert!(matches!(
        check(&e, &policy()),
        Err(VerifyError::EventLog(EventLogError::DoesNotReplay {
            register: MeasuredRegister::Rtmr(1),
            ..
        }))
    ));
    let mut e = evidence();
    e.event_log = None;
    assert_eq!(
        check(&e, &policy()).map(|_| ()),
        Err(VerifyError::EventLog(EventLogError::Missing))
    );
    // Another image (its second boot application differs): refused.
    let mut apps = recorded_apps();
    apps[1][0] ^= 1;
    let mut other_image = policy();
    other_image.expected.uefi = vec![gcp_prediction(&apps)];
    assert!(matches!(
        check(&evidence(), &other_image),
        Err(VerifyError::EventLog(EventLogError::WrongUkiDigest { .. }))
    ));
}

#[test]
fn the_firmware_and_report_data_must_be_the_expected_ones() {
    let mut other_firmware = policy();
    other_firmware.expected.tdx_firmware[0].mrtd = Digest48([1; 48]);
    assert!(matches!(
        check(&evidence(), &other_firmware),
        Err(VerifyError::Measurement(
            MeasurementError::FirmwareNotAllowed { .. }
        ))
    ));
    let mut pinned = policy();
    pinned.expected.tdx_firmware[0].rtmr0 = Some(Digest48([7; 48]));
    assert!(matches!(
        check(&evidence(), &pinned),
        Err(VerifyError::Measurement(MeasurementError::Mismatch {
            register: Register::Rtmr0,
            ..
        }))
    ));
    let mut bound = policy();
    bound.expected_report_data = Some([1; 64]);
    assert!(matches!(
        check(&evidence(), &bound),
        Err(VerifyError::ReportDataMismatch { .. })
    ));
}
