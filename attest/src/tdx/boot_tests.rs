//! The TDX launch decision: exact registers, or an allow-listed firmware plus a boot log that
//! replays and shows the image. On the recorded Google Cloud TDX quote and CCEL log, and through
//! `verify` on a recorded quote with collateral.

use super::*;
use crate::error::Register;
use crate::eventlog::{LogKind, MeasuredRegister};
use crate::measurement::Digest48;
use crate::testing::vectors::*;

#[test]
fn a_uefi_boot_is_accepted_by_allowed_firmware_and_a_matching_log() {
    assert_eq!(
        check_launch(&gcp_policy(), &gcp_registers(), Some(GCP_TDX_CCEL), 0),
        Ok(Some("gcp-tdx".into()))
    );
    // Pinning RTMR[0] too.
    let mut pinned = gcp_policy();
    pinned.tdx_firmware[0].rtmr0 = Some(gcp_registers().rtmr0);
    assert!(check_launch(&pinned, &gcp_registers(), Some(GCP_TDX_CCEL), 0).is_ok());
    pinned.tdx_firmware[0].rtmr0 = Some(Digest48([0; 48]));
    assert!(matches!(
        check_launch(&pinned, &gcp_registers(), Some(GCP_TDX_CCEL), 0),
        Err(VerifyError::Measurement(MeasurementError::Mismatch {
            register: Register::Rtmr0,
            ..
        }))
    ));
}

#[test]
fn a_uefi_boot_needs_the_log_and_an_allowed_firmware() {
    assert_eq!(
        check_launch(&gcp_policy(), &gcp_registers(), None, 0),
        Err(VerifyError::EventLog(EventLogError::Missing))
    );
    let mut no_firmware = gcp_policy();
    no_firmware.tdx_firmware.clear();
    assert!(matches!(
        check_launch(&no_firmware, &gcp_registers(), Some(GCP_TDX_CCEL), 0),
        Err(VerifyError::Measurement(MeasurementError::FirmwareNotAllowed { mrtd })) if mrtd == gcp_registers().mrtd.to_string()
    ));
}

#[test]
fn a_tampered_log_or_another_image_is_refused() {
    let app = crate::testing::first_boot_app(GCP_TDX_CCEL, LogKind::Ccel);
    let mut tampered = GCP_TDX_CCEL.to_vec();
    tampered[app.offset + 20] ^= 4;
    assert!(matches!(
        check_launch(&gcp_policy(), &gcp_registers(), Some(&tampered), 0),
        Err(VerifyError::EventLog(EventLogError::DoesNotReplay { .. }))
    ));
    // The image predicts another second application (its UKI): the recorded GRUB is refused.
    let mut apps = recorded_apps();
    apps[1][0] ^= 1;
    let mut other_image = gcp_policy();
    other_image.uefi = vec![gcp_prediction(&apps)];
    assert!(matches!(
        check_launch(&other_image, &gcp_registers(), Some(GCP_TDX_CCEL), 0),
        Err(VerifyError::EventLog(EventLogError::WrongUkiDigest { .. }))
    ));
}

#[test]
fn the_exact_register_path_is_kept() {
    let got = gcp_registers();
    let mut policy = gcp_policy();
    policy.tdx.push(got.clone());
    assert_eq!(check_launch(&policy, &got, None, 0), Ok(None));
    // Exact values that differ, and no log: the exact mismatch is the reason given.
    policy.tdx[0].rtmr2 = Digest48([9; 48]);
    assert!(matches!(
        check_launch(&policy, &got, None, 0),
        Err(VerifyError::Measurement(MeasurementError::Mismatch {
            register: Register::Rtmr2,
            ..
        }))
    ));
    // Only vTPM (PCR) predictions: no TDX UEFI path, the exact check decides.
    let mut vtpm = gcp_policy();
    vtpm.uefi[0].prediction.events.clear();
    vtpm.uefi[0].prediction.values = [(MeasuredRegister::Pcr(4), vec![0; 32])].into();
    assert!(matches!(
        check_launch(&vtpm, &got, Some(GCP_TDX_CCEL), 0),
        Err(VerifyError::Measurement(MeasurementError::NoneExpected {
            tee: "tdx"
        }))
    ));
}

#[test]
fn verify_uses_the_event_log_of_tdx_evidence() {
    let mut evidence = tdx(TDX_V4, TDX_V4_COLLATERAL);
    let now = tdx_now(&evidence);
    let mut policy = crate::Policy {
        expected: gcp_policy(),
        ..Default::default()
    };
    policy.expected.tdx_firmware[0].mrtd = quote_registers(TDX_V4).mrtd;
    let check =
        |e: &crate::TdxEvidence| crate::verify(&crate::Evidence::Tdx(e.clone()), &policy, now);
    assert_eq!(
        check(&evidence).map(|_| ()),
        Err(VerifyError::EventLog(EventLogError::Missing))
    );
    // Google's log does not replay to this (other) TD's RTMRs.
    evidence.event_log = Some(GCP_TDX_CCEL.to_vec());
    assert!(matches!(
        check(&evidence),
        Err(VerifyError::EventLog(EventLogError::DoesNotReplay {
            register: MeasuredRegister::Rtmr(0),
            ..
        }))
    ));
    // The log travels in the evidence JSON; evidence without it (older runners) still parses.
    let json = crate::Evidence::Tdx(evidence.clone()).to_json();
    let back = crate::Evidence::from_json(&json).unwrap();
    assert_eq!(back, crate::Evidence::Tdx(evidence.clone()));
    let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
    old.as_object_mut().unwrap().remove("event_log");
    let crate::Evidence::Tdx(old) = crate::Evidence::from_json(&old.to_string()).unwrap() else {
        panic!("tdx")
    };
    assert_eq!(old.event_log, None);
}

/// The TEST launch endorsement (made under a test root: `testdata/gce-endorsement/`), verified.
fn endorsed_c3_firmware() -> crate::measurement::EndorsedFirmware {
    use crate::endorsement::GoogleEndorsement;
    let bytes = include_bytes!("../../testdata/gce-endorsement/endorsement.binarypb");
    let root = include_bytes!("../../testdata/gce-endorsement/root.der");
    GoogleEndorsement::parse(bytes)
        .unwrap()
        .verify(root, 1_800_000_000)
        .unwrap()
}

#[test]
fn a_google_endorsed_mrtd_is_accepted_like_an_allow_listed_one() {
    let mut endorsed = gcp_policy();
    endorsed.tdx_firmware.clear();
    endorsed.endorsed_firmware.push(endorsed_c3_firmware());
    assert_eq!(
        endorsed.tdx_endorsement(&gcp_registers().mrtd, 0),
        endorsed.endorsed_firmware.first()
    );
    assert_eq!(
        check_launch(&endorsed, &gcp_registers(), Some(GCP_TDX_CCEL), 0),
        Ok(Some("gcp-tdx".into()))
    );
    // Once its signing chain has expired, the endorsement no longer counts.
    let valid_until = endorsed.endorsed_firmware[0].valid_until;
    assert!(valid_until > 1_800_000_000 && valid_until < u64::MAX);
    assert!(matches!(
        check_launch(
            &endorsed,
            &gcp_registers(),
            Some(GCP_TDX_CCEL),
            valid_until + 1
        ),
        Err(VerifyError::Measurement(
            MeasurementError::FirmwareNotAllowed { .. }
        ))
    ));
    assert_eq!(
        check_launch(&endorsed, &gcp_registers(), Some(GCP_TDX_CCEL), valid_until),
        Ok(Some("gcp-tdx".into()))
    );
    // The endorsement does not stand in for the boot log, nor for the image's events.
    assert_eq!(
        check_launch(&endorsed, &gcp_registers(), None, 0),
        Err(VerifyError::EventLog(EventLogError::Missing))
    );
    // An allow-list entry for the same MRTD keeps its RTMR[0] pin.
    let mut pinned = endorsed.clone();
    pinned.tdx_firmware = gcp_policy().tdx_firmware;
    pinned.tdx_firmware[0].rtmr0 = Some(Digest48([7; 48]));
    assert!(matches!(
        check_launch(&pinned, &gcp_registers(), Some(GCP_TDX_CCEL), 0),
        Err(VerifyError::Measurement(MeasurementError::Mismatch {
            register: Register::Rtmr0,
            ..
        }))
    ));
}

#[test]
fn an_mrtd_the_endorsement_does_not_name_is_not_allowed() {
    let mut endorsed = gcp_policy();
    endorsed.tdx_firmware.clear();
    let mut other = endorsed_c3_firmware();
    other.tdx_mrtds.retain(|m| *m != gcp_registers().mrtd);
    assert_eq!(
        other.tdx_mrtds.len(),
        1,
        "the endorsement's other MRTD stays"
    );
    endorsed.endorsed_firmware.push(other);
    assert!(matches!(
        check_launch(&endorsed, &gcp_registers(), Some(GCP_TDX_CCEL), 0),
        Err(VerifyError::Measurement(MeasurementError::FirmwareNotAllowed { mrtd })) if mrtd == gcp_registers().mrtd.to_string()
    ));
}

/// A verifier whose collateral client has the TEST root and reads endorsements from `dir`.
fn fetching_verifier(dir: &std::path::Path) -> crate::Verifier {
    let client = crate::collateral::CollateralClient::new(crate::collateral::CollateralConfig {
        google_url: "http://127.0.0.1:9".into(),
        google_root: Some(include_bytes!("../../testdata/gce-endorsement/root.der").to_vec()),
        google_dir: Some(dir.to_owned()),
        ..Default::default()
    })
    .unwrap();
    crate::Verifier::new(crate::Policy::default()).with_collateral(std::sync::Arc::new(client))
}

fn gcp_evidence() -> crate::Evidence {
    crate::Evidence::Tdx(crate::TdxEvidence {
        quote: GCP_TDX_QUOTE.to_vec(),
        collateral: None,
        event_log: Some(GCP_TDX_CCEL.to_vec()),
        tpm: None,
    })
}

#[test]
fn an_mrtd_nothing_accepts_is_looked_up_by_the_verifier_and_accepted_once_endorsed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tdx")).unwrap();
    let file = dir
        .path()
        .join(format!("tdx/{}.binarypb", gcp_registers().mrtd));
    std::fs::write(
        &file,
        include_bytes!("../../testdata/gce-endorsement/endorsement.binarypb"),
    )
    .unwrap();
    let verifier = fetching_verifier(dir.path());
    let mut policy = crate::Policy {
        expected: gcp_policy(),
        ..Default::default()
    };
    policy.expected.tdx_firmware.clear();
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let endorsed = verifier
        .fetch_firmware_endorsement(&gcp_evidence(), &policy, at)
        .unwrap()
        .expect("fetched by the quote's MRTD");
    assert_eq!(endorsed, endorsed_c3_firmware());
    policy.expected.endorsed_firmware.push(endorsed);
    assert_eq!(
        check_launch(
            &policy.expected,
            &gcp_registers(),
            Some(GCP_TDX_CCEL),
            1_800_000_000
        ),
        Ok(Some("gcp-tdx".into()))
    );

    // Nothing is looked up once the MRTD is accepted: endorsed (just above), allow-listed, or
    // when the policy accepts no UEFI boot at all.
    std::fs::remove_file(&file).unwrap();
    let wanted = |expected: &ExpectedMeasurements| {
        crate::collateral::wanted_endorsement(&gcp_evidence(), expected, 1_800_000_000)
    };
    assert_eq!(wanted(&policy.expected), None);
    assert_eq!(wanted(&gcp_policy()), None);
    assert_eq!(wanted(&ExpectedMeasurements::default()), None);
    let mut unknown = gcp_policy();
    unknown.tdx_firmware.clear();
    assert_eq!(
        wanted(&unknown),
        Some((crate::collateral::GoogleTee::Tdx, gcp_registers().mrtd))
    );
    // Google has none (absent from the directory): no endorsement, the launch is refused.
    policy.expected.endorsed_firmware.clear();
    assert_eq!(
        verifier.fetch_firmware_endorsement(&gcp_evidence(), &policy, at),
        Ok(None)
    );
    // Without a Google root the verifier looks nothing up.
    let rootless = crate::Verifier::new(crate::Policy::default()).with_collateral(
        std::sync::Arc::new(crate::collateral::CollateralClient::new(Default::default()).unwrap()),
    );
    assert_eq!(
        rootless.fetch_firmware_endorsement(&gcp_evidence(), &policy, at),
        Ok(None)
    );
}
