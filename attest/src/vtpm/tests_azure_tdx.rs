//! Azure TDX vTPM evidence against recorded data: an HCL report from an Azure TDX CVM with the
//! TD quote Azure's IMDS returned for its TDREPORT (confidential-containers/trustee), verified
//! with Intel's collateral for its platform (FMSPC 00806F050000) at a time inside that
//! collateral's window; then every mismatch between the two, and other recorded pairs that do
//! not belong together, each refused with its own error. See testdata/azure/README.md.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::azure_tdx::verify_azure_tdx;
use super::tests_recorded::recorded;
use crate::error::{MeasurementError, Register, TdxError, VerifyError};
use crate::evidence::TdxCollateral;
use crate::measurement::{Digest48, TdxFirmware};
use crate::testing::vectors::{self, collateral_window};
use crate::tpm::{AzureVtpmEvidence, HclReport, HclReportKind};
use crate::{Endorsements, Evidence, Policy, TdReportField, Tee, VtpmError};

const HCL: &[u8] = include_bytes!("../../testdata/azure/tdx-hcl-report.bin");
const TD_QUOTE: &[u8] = include_bytes!("../../testdata/azure/tdx-td-quote.bin");
pub(crate) const COLLATERAL: &str =
    include_str!("../../testdata/azure/tdx-collateral-00806f050000.json");
/// Another Azure TDX CVM's HCL report (az-cvm-vtpm's test data): no quote of it was published.
const OTHER_HCL: &[u8] = include_bytes!("../../testdata/azure/hcl-report-tdx.bin");
/// The recorded TD quote's MRTD: Azure's TDX paravisor (read with Python at body offset 136).
const PARAVISOR_MRTD: &str = "024a32b070383331181619fa387cb4d55d1e38879f989933055ccad5bc2db795d1737b66205949d15469dc8c1ba7ab7b";
/// The HCL report's TDREPORT starts here.
const TD: usize = 32;

fn collateral() -> TdxCollateral {
    serde_json::from_str(COLLATERAL).unwrap()
}

fn endorsements() -> Endorsements {
    Endorsements {
        snp_vcek: None,
        tdx_collateral: Some(collateral()),
    }
}

/// Inside the collateral's window (2026-10-08 … 2026-10-18).
pub(crate) fn now() -> u64 {
    let (from, to) = collateral_window(&collateral());
    from + (to - from) / 2
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// The paravisor allow-listed; the recorded platform's TCB accepted as Intel rates it.
pub(crate) fn policy() -> Policy {
    let mut p = Policy::default();
    p.expected.tdx_firmware = vec![TdxFirmware {
        mrtd: PARAVISOR_MRTD.parse().unwrap(),
        rtmr0: None,
        label: Some("Azure TDX paravisor (recorded)".into()),
    }];
    p.tdx.accepted_tcb_status = vec![
        crate::TdxTcbStatus::UpToDate,
        crate::TdxTcbStatus::OutOfDate,
    ];
    p
}

fn hcl(bytes: &[u8]) -> HclReport {
    HclReport::parse(bytes).unwrap()
}

/// The recorded pair as evidence, with some TPM evidence (swtpm's: not this VM's AK).
pub(crate) fn evidence(hcl_report: &[u8], td_quote: Option<&[u8]>) -> Evidence {
    let (recorded, _) = recorded();
    Evidence::AzureVtpm(AzureVtpmEvidence {
        hcl_report: hcl_report.to_vec(),
        tpm: recorded.tpm().unwrap().clone(),
        td_quote: td_quote.map(<[u8]>::to_vec),
    })
}

/// The recorded platform's TCB under that collateral, read with Python from the PCK
/// certificate's SGX extension (CPUSVN 6,6,2,2,3,1,0,3; PCESVN 11), the quote's TEE_TCB_SVN
/// (module 1.2, microcode 6) and the QE report's ISVSVN (5): the platform level of 2023-08-09
/// (OutOfDate, these advisories), the TDX_01 module level ISVSVN 2 (OutOfDate, advisories all
/// among these), the QE UpToDate.
const RECORDED_ADVISORIES: [&str; 14] = [
    "INTEL-SA-00960",
    "INTEL-SA-00982",
    "INTEL-SA-00986",
    "INTEL-SA-01010",
    "INTEL-SA-01036",
    "INTEL-SA-01076",
    "INTEL-SA-01079",
    "INTEL-SA-01099",
    "INTEL-SA-01103",
    "INTEL-SA-01111",
    "INTEL-SA-01192",
    "INTEL-SA-01245",
    "INTEL-SA-01312",
    "INTEL-SA-01313",
];

#[test]
fn the_recorded_azure_td_quote_verifies_and_is_the_hcl_reports() {
    let report = hcl(HCL);
    assert_eq!(report.kind, HclReportKind::Tdx);
    let v = verify_azure_tdx(&report, TD_QUOTE, &policy(), &endorsements(), now()).unwrap();
    assert_eq!(v.measurements.mrtd.to_string(), PARAVISOR_MRTD);
    // Azure's paravisor leaves the RTMRs zero: the vTPM's PCRs identify the image.
    assert_eq!(v.measurements.rtmr2, Digest48([0; 48]));
    assert_eq!(
        &v.report_data[..32],
        &Sha256::digest(&report.runtime_data)[..]
    );
    assert_eq!(v.report_data[32..], [0; 32]);
    assert_eq!(v.details.quote_version, 4);
    assert_eq!(
        v.details.td_attributes, [0; 8],
        "no SEPT_VE_DISABLE: a paravisor TD"
    );
    assert_eq!(v.details.tcb_status, "OutOfDate");
    assert_eq!(v.details.advisory_ids, RECORDED_ADVISORIES);

    // The same quote as plain TDX evidence (no paravisor allow-listed by the Azure path):
    // dcap-qvl's SEPT_VE_DISABLE requirement stands.
    let plain = crate::evidence::TdxEvidence {
        quote: TD_QUOTE.to_vec(),
        collateral: Some(collateral()),
        event_log: None,
        tpm: None,
    };
    assert!(matches!(
        crate::tdx::verify::verify(&plain, None, &policy().tdx, now()),
        Err(TdxError::Attributes(m)) if m.contains("SEPT_VE_DISABLE")
    ));
}

#[test]
fn recorded_azure_tdx_evidence_is_checked_in_order_each_refusal_its_own() {
    let e = evidence(HCL, Some(TD_QUOTE));
    assert_eq!(e.tee(), Tee::Tdx);
    let json = e.to_json();
    assert!(json.contains("\"td_quote\""));
    assert_eq!(Evidence::from_json(&json).unwrap(), e);
    assert!(crate::collateral::needs_collateral(&e, &Default::default()));
    assert!(!crate::collateral::needs_collateral(&e, &endorsements()));

    // Everything about the TD holds; the TPM evidence is another TPM's (trustee published the
    // vTPM quote in another format, bound to its own nonce), refused as not the HCL's AK.
    let refused = crate::verify_with(&e, &policy(), &endorsements(), at(now())).unwrap_err();
    let VerifyError::Tpm(t) = &refused else {
        panic!("a TPM refusal after the TDX checks, got {refused}")
    };
    assert!(
        matches!(t.error(), crate::tpm::TpmError::AkNotInHclReport),
        "{refused}"
    );

    // The paravisor must be allow-listed, never taken from the evidence.
    let mut p = policy();
    p.expected.tdx_firmware.clear();
    assert_eq!(
        crate::verify_with(&e, &p, &endorsements(), at(now())).unwrap_err(),
        VerifyError::Vtpm(VtpmError::AzureParavisorNotAllowed {
            mrtd: PARAVISOR_MRTD.into()
        })
    );
    // An allow-list entry that pins RTMR[0] to another value.
    let mut p = policy();
    p.expected.tdx_firmware[0].rtmr0 = Some(Digest48([1; 48]));
    assert_eq!(
        crate::verify_with(&e, &p, &endorsements(), at(now())).unwrap_err(),
        VerifyError::Measurement(MeasurementError::Mismatch {
            register: Register::Rtmr0,
            got: "00".repeat(48),
        })
    );
    // The default policy accepts only UpToDate.
    let mut p = policy();
    p.tdx = Default::default();
    assert_eq!(
        crate::verify_with(&e, &p, &endorsements(), at(now())).unwrap_err(),
        VerifyError::Tdx(TdxError::TcbStatusNotAccepted {
            status: "OutOfDate".into(),
            advisories: RECORDED_ADVISORIES.map(String::from).to_vec(),
        })
    );
    // No collateral, and collateral out of its window.
    assert_eq!(
        crate::verify_with(&e, &policy(), &Endorsements::default(), at(now())).unwrap_err(),
        VerifyError::Tdx(TdxError::MissingCollateral)
    );
    let (_, to) = collateral_window(&collateral());
    assert!(matches!(
        crate::verify_with(&e, &policy(), &endorsements(), at(to + 86_400)),
        Err(VerifyError::Tdx(_))
    ));
    // No TD quote at all.
    let bare = evidence(HCL, None);
    assert!(!crate::collateral::needs_collateral(
        &bare,
        &Default::default()
    ));
    assert_eq!(
        crate::verify_with(&bare, &policy(), &endorsements(), at(now())).unwrap_err(),
        VerifyError::Vtpm(VtpmError::AzureTdxNoQuote)
    );
}

#[test]
fn a_tampered_td_quote_is_refused() {
    // A byte of MRTD in the quote: no longer the TDREPORT's.
    let mut q = TD_QUOTE.to_vec();
    q[48 + 136] ^= 1;
    assert!(matches!(
        verify_azure_tdx(&hcl(HCL), &q, &policy(), &endorsements(), now()),
        Err(VerifyError::Vtpm(VtpmError::AzureTdReportMismatch {
            field: TdReportField::Mrtd,
            ..
        }))
    ));
    // A byte of the quote's signature, and of the QE report: Intel's checks refuse them (the
    // paravisor exception covers only dcap-qvl's attribute refusal).
    for at_byte in [48 + 584 + 4 + 10, 48 + 584 + 4 + 64 + 64 + 6 + 258] {
        let mut q = TD_QUOTE.to_vec();
        q[at_byte] ^= 1;
        assert!(
            matches!(
                verify_azure_tdx(&hcl(HCL), &q, &policy(), &endorsements(), now()),
                Err(VerifyError::Tdx(_))
            ),
            "byte {at_byte}"
        );
    }
}

#[test]
fn a_tdreport_that_differs_from_the_quote_is_refused_field_by_field() {
    // (field, offset in the TDREPORT). The HCL report still parses: its REPORTDATA is intact.
    let cases = [
        (TdReportField::Mrtd, 512 + 16),
        (TdReportField::Rtmr(0), 512 + 208),
        (TdReportField::Rtmr(1), 512 + 256),
        (TdReportField::Rtmr(2), 512 + 304),
        (TdReportField::Rtmr(3), 512 + 352 + 47),
        (TdReportField::TdAttributes, 512),
        (TdReportField::Xfam, 512 + 8),
        (TdReportField::MrConfigId, 512 + 64),
        (TdReportField::MrOwner, 512 + 112),
        (TdReportField::MrOwnerConfig, 512 + 160),
        (TdReportField::TeeTcbSvn, 256 + 8),
        (TdReportField::MrSeam, 256 + 24),
    ];
    for (field, offset) in cases {
        let mut bytes = HCL.to_vec();
        bytes[TD + offset] ^= 0x80;
        match verify_azure_tdx(&hcl(&bytes), TD_QUOTE, &policy(), &endorsements(), now()) {
            Err(VerifyError::Vtpm(VtpmError::AzureTdReportMismatch { field: f, .. })) => {
                assert_eq!(f, field, "offset {offset}")
            }
            other => panic!("{field} at {offset}: {:?}", other.err()),
        }
    }
}

#[test]
fn runtime_data_the_quote_does_not_bind_is_refused() {
    // Rewritten consistently (a new AK in the runtime data, the TDREPORT's REPORTDATA set to its
    // digest): the HCL report parses, but the signed quote still binds the old runtime data.
    let mut bytes = HCL.to_vec();
    let start = 1236;
    let n = bytes.len();
    let key = bytes[start..n]
        .windows(3)
        .position(|w| w == b"\"n\"")
        .unwrap();
    bytes[start + key + 10] ^= 1; // a character of the AK's modulus
    let len = u32::from_le_bytes(bytes[1232..1236].try_into().unwrap()) as usize;
    let digest = Sha256::digest(&bytes[start..start + len]);
    bytes[TD + 128..TD + 160].copy_from_slice(&digest);
    let forged = hcl(&bytes);
    assert_eq!(
        verify_azure_tdx(&forged, TD_QUOTE, &policy(), &endorsements(), now())
            .err()
            .unwrap(),
        VerifyError::Vtpm(VtpmError::AzureTdxRuntimeDataNotBound {
            expected: format!("{}{}", hex::encode(digest), "00".repeat(32)),
            got: hex::encode(hcl(HCL).report_data),
        })
    );
}

#[test]
fn recorded_reports_and_quotes_that_do_not_belong_together_are_refused() {
    // Another Azure TDX CVM's HCL report with this quote.
    let other = hcl(OTHER_HCL);
    assert!(matches!(
        verify_azure_tdx(&other, TD_QUOTE, &policy(), &endorsements(), now()),
        Err(VerifyError::Vtpm(
            VtpmError::AzureTdxRuntimeDataNotBound { .. }
        ))
    ));
    // This HCL report with a TD quote from another platform (dcap-qvl's sample, its own
    // collateral and time): a valid quote, but not of this report.
    let v5 = vectors::tdx(vectors::TDX_V5, vectors::TDX_V5_COLLATERAL);
    let (from, to) = collateral_window(v5.collateral.as_ref().unwrap());
    let other_platform = Endorsements {
        snp_vcek: None,
        tdx_collateral: v5.collateral.clone(),
    };
    let p = policy();
    assert!(matches!(
        verify_azure_tdx(
            &hcl(HCL),
            vectors::TDX_V5,
            &p,
            &other_platform,
            from + (to - from) / 2
        ),
        Err(VerifyError::Vtpm(
            VtpmError::AzureTdxRuntimeDataNotBound { .. }
        ))
    ));
}
