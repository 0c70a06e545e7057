//! Verifying a TDX quote.
//!
//! dcap-qvl (offline, collateral as input, Intel's SGX root CA built in) checks: the root CA
//! CRL; TCB info and QE identity (validity window, signer chain to Intel's root, signature);
//! the PCK chain carried in the quote (to Intel's root, CRLs); the QE report's signature by the
//! PCK key and its binding of the attestation key; the QE against its identity; the quote's
//! signature by the attestation key; the platform's TCB level and status (Revoked refused); TD
//! attributes (debug, migration, reserved bits, service TDs).
//!
//! Then ours: the TCB status is one the policy accepts; the TD is not debuggable (again, on the
//! verified report). [`verify_paravisor_td`] (Azure's allow-listed paravisor TDs only) lets
//! TDATTRIBUTES without SEPT_VE_DISABLE through: see [`super::paravisor`]. MRTD/RTMRs and report_data are checked by [`crate::verify`].
//!
//! dcap-qvl's errors are `anyhow` messages; [`classify`] maps them to [`TdxError`] variants
//! (dcap-qvl is pinned in Cargo.toml; the tamper tests pin the mapping).

use dcap_qvl::quote::Quote;
use dcap_qvl::QuoteCollateralV3;

use super::TEE_TYPE_TDX;
use crate::error::TdxError;
use crate::evidence::{TdxCollateral, TdxEvidence};
use crate::measurement::{Digest48, TdxMeasurements};
use crate::policy::TdxPolicy;

/// Verified TDX quote fields beyond measurements and report_data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdxDetails {
    /// Quote format version (4 or 5).
    pub quote_version: u16,
    /// Intel's TCB status for the platform, e.g. "UpToDate".
    pub tcb_status: String,
    /// Intel security advisories that apply.
    pub advisory_ids: Vec<String>,
    /// TEE_TCB_SVN (TDX module and platform SVNs).
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM: the TDX module's measurement.
    pub mr_seam: [u8; 48],
    /// TD_ATTRIBUTES.
    pub td_attributes: [u8; 8],
    /// XFAM.
    pub xfam: [u8; 8],
    /// MRCONFIGID.
    pub mr_config_id: [u8; 48],
    /// MROWNER.
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG.
    pub mr_owner_config: [u8; 48],
    /// The `expected.uefi` platform whose predicted boot the event log showed; `None` when the
    /// registers matched `expected.tdx` exactly (direct boot).
    pub uefi_platform: Option<String>,
    /// For a UEFI boot: Google's verified launch endorsement naming the MRTD
    /// (`expected.endorsed_firmware`), if the policy holds one.
    pub firmware_endorsement: Option<crate::measurement::EndorsedFirmware>,
}

pub(crate) struct TdxVerified {
    pub(crate) measurements: TdxMeasurements,
    pub(crate) report_data: [u8; 64],
    pub(crate) details: TdxDetails,
}

/// Verifies `evidence` at `now` (unix seconds). `collateral_override` replaces the evidence's.
pub(crate) fn verify(
    evidence: &TdxEvidence,
    collateral_override: Option<&TdxCollateral>,
    policy: &TdxPolicy,
    now: u64,
) -> Result<TdxVerified, TdxError> {
    verify_td(evidence, collateral_override, policy, now, false)
}

/// [`verify`] for a paravisor TD the caller has accepted by its MRTD (Azure's): TDATTRIBUTES
/// without SEPT_VE_DISABLE pass (see [`super::paravisor`]); everything else as [`verify`].
pub(crate) fn verify_paravisor_td(
    evidence: &TdxEvidence,
    collateral_override: Option<&TdxCollateral>,
    policy: &TdxPolicy,
    now: u64,
) -> Result<TdxVerified, TdxError> {
    verify_td(evidence, collateral_override, policy, now, true)
}

fn verify_td(
    evidence: &TdxEvidence,
    collateral_override: Option<&TdxCollateral>,
    policy: &TdxPolicy,
    now: u64,
    paravisor: bool,
) -> Result<TdxVerified, TdxError> {
    let quote =
        Quote::parse(&evidence.quote).map_err(|e| TdxError::MalformedQuote(format!("{e:#}")))?;
    if quote.header.tee_type != TEE_TYPE_TDX {
        return Err(TdxError::MalformedQuote(format!(
            "TEE type {:#x} is not TDX",
            quote.header.tee_type
        )));
    }
    let collateral = collateral_override
        .or(evidence.collateral.as_ref())
        .ok_or(TdxError::MissingCollateral)?;

    let dcap = to_dcap(collateral);
    let (status, advisory_ids) = match dcap_qvl::verify::rustcrypto::verify(
        &evidence.quote,
        &dcap,
        now,
    ) {
        Ok(v) => (v.status, v.advisory_ids),
        Err(e) if paravisor && format!("{e:#}") == super::paravisor::SEPT_VE_REFUSAL => {
            let t = super::paravisor::tcb_status(&quote, &dcap).map_err(|reason| {
                TdxError::Other(format!("the paravisor TD's TCB status: {reason}"))
            })?;
            tracing::info!(status = %t.status, "paravisor TD: quote verified, TDATTRIBUTES without SEPT_VE_DISABLE (the paravisor handles #VE)");
            (t.status.to_string(), t.advisory_ids)
        }
        Err(e) => return Err(classify(&format!("{e:#}"))),
    };
    // The quote's own body: dcap-qvl verified its signature (both branches above).
    let td = quote
        .report
        .as_td10()
        .ok_or_else(|| TdxError::MalformedQuote("no TD report in the quote".into()))?;
    check_tcb_status(&status, &advisory_ids, policy)?;
    check_attributes(&td.td_attributes)?;

    tracing::debug!(%status, "TDX quote verified");
    Ok(TdxVerified {
        measurements: registers(td),
        report_data: td.report_data,
        details: TdxDetails {
            quote_version: quote.header.version,
            tcb_status: status,
            advisory_ids,
            tee_tcb_svn: td.tee_tcb_svn,
            mr_seam: td.mr_seam,
            td_attributes: td.td_attributes,
            xfam: td.xfam,
            mr_config_id: td.mr_config_id,
            mr_owner: td.mr_owner,
            mr_owner_config: td.mr_owner_config,
            uefi_platform: None,
            firmware_endorsement: None,
        },
    })
}

/// The measurement registers of a TD 1.0 report body.
pub(crate) fn registers(td: &dcap_qvl::quote::TDReport10) -> TdxMeasurements {
    TdxMeasurements {
        mrtd: Digest48(td.mr_td),
        rtmr0: Digest48(td.rt_mr0),
        rtmr1: Digest48(td.rt_mr1),
        rtmr2: Digest48(td.rt_mr2),
        rtmr3: Digest48(td.rt_mr3),
        label: None,
    }
}

pub(crate) fn to_dcap(c: &TdxCollateral) -> QuoteCollateralV3 {
    QuoteCollateralV3 {
        pck_crl_issuer_chain: c.pck_crl_issuer_chain.clone(),
        root_ca_crl: c.root_ca_crl.clone(),
        pck_crl: c.pck_crl.clone(),
        tcb_info_issuer_chain: c.tcb_info_issuer_chain.clone(),
        tcb_info: c.tcb_info.clone(),
        tcb_info_signature: c.tcb_info_signature.clone(),
        qe_identity_issuer_chain: c.qe_identity_issuer_chain.clone(),
        qe_identity: c.qe_identity.clone(),
        qe_identity_signature: c.qe_identity_signature.clone(),
        pck_certificate_chain: c.pck_certificate_chain.clone(),
    }
}

/// The TCB status must be one the policy lists.
pub(crate) fn check_tcb_status(
    status: &str,
    advisories: &[String],
    policy: &TdxPolicy,
) -> Result<(), TdxError> {
    if status == "Revoked" {
        return Err(TdxError::TcbRevoked);
    }
    if policy
        .accepted_tcb_status
        .iter()
        .any(|s| s.as_str() == status)
    {
        return Ok(());
    }
    Err(TdxError::TcbStatusNotAccepted {
        status: status.to_owned(),
        advisories: advisories.to_vec(),
    })
}

/// TD_ATTRIBUTES bit 0 (TUD.DEBUG) must be clear.
pub(crate) fn check_attributes(td_attributes: &[u8; 8]) -> Result<(), TdxError> {
    if td_attributes[0] & 0x01 != 0 {
        return Err(TdxError::DebugEnabled);
    }
    Ok(())
}

/// Maps a dcap-qvl error message (`{:#}`: context chain) to a typed error. Ordered: the first
/// matching pattern wins, so QE-specific messages come before generic ones.
pub(crate) fn classify(message: &str) -> TdxError {
    type Make = fn(String) -> TdxError;
    const TABLE: &[(&str, Make)] = &[
        ("ISV enclave report signature is invalid", |_| {
            TdxError::BadSignature
        }),
        ("Signature is invalid for qe_report", |_| {
            TdxError::QeReportSignature
        }),
        ("QE report hash mismatch", |_| TdxError::QeReportBinding),
        ("Invalid QE auth data length", |_| TdxError::QeReportBinding),
        ("QE MRSIGNER mismatch", TdxError::QeIdentity),
        ("QE ISVPRODID mismatch", TdxError::QeIdentity),
        ("QE MISCSELECT mismatch", TdxError::QeIdentity),
        ("QE ATTRIBUTES mismatch", TdxError::QeIdentity),
        ("QE report validation failed", TdxError::QeIdentity),
        ("Unsupported QE Identity", TdxError::QeIdentity),
        ("QE TCB", TdxError::QeIdentity),
        ("TCBInfo expired", TdxError::CollateralExpired),
        (
            "TCBInfo issue date is in the future",
            TdxError::CollateralExpired,
        ),
        ("QE Identity expired", TdxError::CollateralExpired),
        (
            "QE Identity issue date is in the future",
            TdxError::CollateralExpired,
        ),
        (
            "Signature is invalid for tcb_info",
            TdxError::CollateralSignature,
        ),
        (
            "Signature is invalid for qe_identity",
            TdxError::CollateralSignature,
        ),
        ("Failed to decode TcbInfo", TdxError::MalformedCollateral),
        ("Failed to decode QeIdentity", TdxError::MalformedCollateral),
        ("Failed to parse TCB Info", TdxError::MalformedCollateral),
        ("Failed to parse QE Identity", TdxError::MalformedCollateral),
        ("Failed to parse root CA CRL", TdxError::CollateralSignature),
        ("Failed to parse PCK CRL", TdxError::MalformedCollateral),
        (
            "Certificate chain is too short for",
            TdxError::MalformedCollateral,
        ),
        (
            "Failed to verify certificate chain",
            TdxError::CertificateChain,
        ),
        (
            "Failed to extract PCK certificates",
            TdxError::CertificateChain,
        ),
        (
            "Failed to parse PCK certificate",
            TdxError::CertificateChain,
        ),
        (
            "Certificate chain is too short in quote",
            TdxError::CertificateChain,
        ),
        (
            "must be issued directly by the root CA",
            TdxError::CertificateChain,
        ),
        (
            "Unsupported DCAP PCK cert format",
            TdxError::CertificateChain,
        ),
        ("TCB status is invalid: Revoked", |_| TdxError::TcbRevoked),
        ("No matching TCB level", TdxError::TcbMatch),
        ("Fmspc mismatch", TdxError::TcbMatch),
        ("TDX module", TdxError::TcbMatch),
        ("TCB info in the collateral", TdxError::TcbMatch),
        ("Debug mode is enabled", |_| TdxError::DebugEnabled),
        ("TD profiling is enabled", TdxError::Attributes),
        ("Reserved bits in TD attributes", TdxError::Attributes),
        ("TD migration is enabled", TdxError::Attributes),
        ("SERVTD_EXT is enabled", TdxError::Attributes),
        ("SEPT_VE_DISABLE is not enabled", TdxError::Attributes),
        ("Invalid MR service TD", TdxError::Attributes),
        ("Failed to decode quote", TdxError::MalformedQuote),
        ("Unsupported DCAP quote version", TdxError::MalformedQuote),
        ("Unknown QE vendor ID", TdxError::MalformedQuote),
        ("Unsupported TEE type", TdxError::MalformedQuote),
        ("TEE quote must have version", TdxError::MalformedQuote),
        (
            "Unsupported DCAP attestation key type",
            TdxError::MalformedQuote,
        ),
        ("Failed to get signed quote scope", TdxError::MalformedQuote),
    ];
    TABLE
        .iter()
        .find(|(needle, _)| message.contains(needle))
        .map(|(_, make)| make(message.to_owned()))
        .unwrap_or_else(|| TdxError::Other(message.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::*;
    use crate::error::{MeasurementError, Register, VerifyError};
    use crate::evidence::Evidence;
    use crate::policy::{Policy, TdxTcbStatus};
    use crate::testing::vectors::*;
    use crate::verify::{verify_with, Endorsements, Measurements, Tcb};
    use crate::Tee;

    // Read out of tdx_quote (v4) with Python (see testdata/README.md).
    const V4_MRTD: &str = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7";
    const V4_RTMR0: &str = "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0";
    const V4_RTMR1: &str = "0084452c01668329d4bc06acdf58a7205c26743304509973949e5619bf81a6a7aea8c323c173019b3093d54e579e9378";
    const V4_RTMR2: &str = "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3ba80b70870d7330733642e01d48c3132";
    const V4_REPORT_DATA: &str = "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20";
    // tdx_quote_td15ex (v5).
    const V5_MRTD: &str = "2a674327c50218dba880066b349b8d559d749ed68dce33fd651c184a877d084b07a9e583767a7ad5da13ed91deec2b70";
    const V5_RTMR3: &str = "556d4986cae57e7e3756b6471e4951be6f5f1b4e70942c72325223d6af239da90f1484eeb627727e6d2c0755393b5fdf";

    // v4 quote layout: header 0..48, TD report 48..632, signature data length 632..636, quote
    // signature 636..700, attestation key 700..764, certification data type 6 at 764, QE
    // report 770..1154, QE report signature 1154..1218, PCK chain PEM from 1258.
    const MRTD_AT: usize = 184;
    const REPORT_DATA_AT: usize = 568;
    const QUOTE_SIG_AT: usize = 636;
    const ATT_KEY_AT: usize = 700;
    const QE_REPORT_AT: usize = 770;
    const QE_SIG_AT: usize = 1154;
    const PCK_PEM_AT: usize = 1258;

    fn v4() -> TdxEvidence {
        tdx(TDX_V4, TDX_V4_COLLATERAL)
    }

    fn measurements(mrtd: &str, r: [&str; 4]) -> TdxMeasurements {
        TdxMeasurements {
            mrtd: mrtd.parse().unwrap(),
            rtmr0: r[0].parse().unwrap(),
            rtmr1: r[1].parse().unwrap(),
            rtmr2: r[2].parse().unwrap(),
            rtmr3: r[3].parse().unwrap(),
            label: None,
        }
    }

    fn v4_measurements() -> TdxMeasurements {
        measurements(V4_MRTD, [V4_RTMR0, V4_RTMR1, V4_RTMR2, &"00".repeat(48)])
    }

    fn v4_policy() -> Policy {
        let mut p = Policy::default();
        p.expected.tdx.push(v4_measurements());
        p.expected_report_data = Some(crate::encoding::parse::<64>(V4_REPORT_DATA).unwrap());
        p
    }

    fn check(e: &TdxEvidence, p: &Policy) -> Result<crate::Verified, VerifyError> {
        crate::verify(&Evidence::Tdx(e.clone()), p, tdx_now(e))
    }

    fn tdx_err(r: Result<crate::Verified, VerifyError>) -> TdxError {
        match r {
            Err(VerifyError::Tdx(e)) => e,
            other => panic!("expected a TDX error, got {other:?}"),
        }
    }

    fn tampered_quote(offset: usize, bit: u8) -> TdxEvidence {
        let mut e = v4();
        e.quote[offset] ^= bit;
        e
    }

    #[test]
    fn layout_offsets_used_by_the_tamper_tests_are_right() {
        assert_eq!(u16::from_le_bytes([TDX_V4[764], TDX_V4[765]]), 6);
        assert_eq!(hex::encode(&TDX_V4[MRTD_AT..MRTD_AT + 48]), V4_MRTD);
        assert_eq!(
            hex::encode(&TDX_V4[REPORT_DATA_AT..REPORT_DATA_AT + 64]),
            V4_REPORT_DATA
        );
        assert!(TDX_V4[PCK_PEM_AT..].starts_with(b"-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn v4_quote_verifies_with_its_collateral() {
        let v = check(&v4(), &v4_policy()).unwrap();
        assert_eq!(v.tee, Tee::Tdx);
        assert!(!v.insecure);
        assert_eq!(hex::encode(v.report_data), V4_REPORT_DATA);
        assert_eq!(v.measurements, Measurements::Tdx(v4_measurements()));
        assert_eq!(
            v.tcb,
            Tcb::Tdx {
                status: "UpToDate".into(),
                advisory_ids: vec![]
            }
        );
        let d = v.tdx.unwrap();
        assert_eq!(d.quote_version, 4);
        assert_eq!(d.td_attributes, [0, 0, 0, 0x10, 0, 0, 0, 0]);
    }

    #[test]
    fn v5_td15_quote_verifies() {
        let e = tdx(TDX_V5, TDX_V5_COLLATERAL);
        let mut p = Policy::default();
        p.expected.tdx.push(quote_registers(TDX_V5));
        // The parser's view agrees with the independently read values.
        assert_eq!(p.expected.tdx[0].mrtd, V5_MRTD.parse().unwrap());
        assert_eq!(p.expected.tdx[0].rtmr3, V5_RTMR3.parse().unwrap());
        let v = check(&e, &p).unwrap();
        assert_eq!(v.tdx.unwrap().quote_version, 5);
    }

    #[test]
    fn out_of_date_platform_matches_no_tcb_level() {
        // dcap-qvl's own tests need a TCB-info override to get a status for this quote: its
        // platform SVNs are below every level of the TCB info.
        let e = tdx(TDX_OUTDATED, TDX_OUTDATED_COLLATERAL);
        let mut p = Policy::default();
        p.tdx.accepted_tcb_status = vec![TdxTcbStatus::OutOfDate, TdxTcbStatus::UpToDate];
        assert!(matches!(tdx_err(check(&e, &p)), TdxError::TcbMatch(_)));
    }

    #[test]
    fn tcb_status_must_be_accepted_by_the_policy() {
        let mut p = v4_policy();
        p.tdx.accepted_tcb_status = vec![TdxTcbStatus::OutOfDate];
        assert_eq!(
            tdx_err(check(&v4(), &p)),
            TdxError::TcbStatusNotAccepted {
                status: "UpToDate".into(),
                advisories: vec![]
            }
        );
    }

    #[test]
    fn collateral_outside_its_validity_window_is_refused() {
        let e = v4();
        let (from, to) = collateral_window(e.collateral.as_ref().unwrap());
        for t in [from.saturating_sub(86_400), to + 86_400] {
            let at = UNIX_EPOCH + Duration::from_secs(t);
            let err = crate::verify(&Evidence::Tdx(e.clone()), &v4_policy(), at);
            assert!(
                matches!(err, Err(VerifyError::Tdx(TdxError::CollateralExpired(_)))),
                "at {t}: {err:?}"
            );
        }
        // A month after the window: the TCB info has expired.
        let late = UNIX_EPOCH + Duration::from_secs(to + 30 * 86_400);
        let err = tdx_err(crate::verify(&Evidence::Tdx(e), &v4_policy(), late));
        assert!(matches!(err, TdxError::CollateralExpired(_)), "{err:?}");
    }

    #[test]
    fn flipped_bits_in_the_td_report_break_the_quote_signature() {
        for offset in [
            MRTD_AT,
            MRTD_AT + 47,
            REPORT_DATA_AT,
            REPORT_DATA_AT + 63,
            376,
            520,
        ] {
            let err = tdx_err(check(&tampered_quote(offset, 0x01), &v4_policy()));
            assert_eq!(err, TdxError::BadSignature, "offset {offset}");
        }
    }

    #[test]
    fn flipped_quote_signature_is_refused() {
        for offset in [QUOTE_SIG_AT, QUOTE_SIG_AT + 63] {
            let err = tdx_err(check(&tampered_quote(offset, 0x01), &v4_policy()));
            assert_eq!(err, TdxError::BadSignature, "offset {offset}");
        }
    }

    #[test]
    fn a_different_attestation_key_is_not_bound_by_the_qe_report() {
        let err = tdx_err(check(&tampered_quote(ATT_KEY_AT + 10, 0x01), &v4_policy()));
        assert_eq!(err, TdxError::QeReportBinding);
    }

    #[test]
    fn flipped_qe_report_or_its_signature_is_refused() {
        for offset in [QE_REPORT_AT + 100, QE_SIG_AT + 5] {
            let err = tdx_err(check(&tampered_quote(offset, 0x01), &v4_policy()));
            assert_eq!(err, TdxError::QeReportSignature, "offset {offset}");
        }
    }

    #[test]
    fn tampered_pck_certificate_breaks_the_chain() {
        // A base64 character inside the PCK leaf's body, replaced by another valid one.
        let mut e = v4();
        let at = PCK_PEM_AT + 28 + 200;
        e.quote[at] = if e.quote[at] == b'A' { b'B' } else { b'A' };
        let err = tdx_err(check(&e, &v4_policy()));
        assert!(matches!(err, TdxError::CertificateChain(_)), "{err:?}");
    }

    #[test]
    fn tampered_collateral_is_refused() {
        let mut e = v4();
        let c = e.collateral.as_mut().unwrap();
        c.tcb_info = c.tcb_info.replacen("\"tcbType\":0", "\"tcbType\":1", 1);
        assert_ne!(
            c.tcb_info,
            serde_json::from_str::<TdxCollateral>(TDX_V4_COLLATERAL)
                .unwrap()
                .tcb_info
        );
        assert!(matches!(
            tdx_err(check(&e, &v4_policy())),
            TdxError::CollateralSignature(_)
        ));

        let mut e = v4();
        e.collateral.as_mut().unwrap().tcb_info_signature[3] ^= 1;
        assert!(matches!(
            tdx_err(check(&e, &v4_policy())),
            TdxError::CollateralSignature(_)
        ));

        let mut e = v4();
        e.collateral.as_mut().unwrap().qe_identity_signature[3] ^= 1;
        assert!(matches!(
            tdx_err(check(&e, &v4_policy())),
            TdxError::CollateralSignature(_)
        ));

        let mut e = v4();
        let crl = &mut e.collateral.as_mut().unwrap().root_ca_crl;
        let last = crl.len() - 1;
        crl[last] ^= 1;
        let err = tdx_err(check(&e, &v4_policy()));
        assert!(matches!(err, TdxError::CollateralSignature(_)), "{err:?}");
    }

    #[test]
    fn collateral_is_required_and_the_verifiers_copy_wins() {
        let mut bare = v4();
        let collateral = bare.collateral.take().unwrap();
        assert_eq!(
            tdx_err(crate::verify(
                &Evidence::Tdx(bare.clone()),
                &v4_policy(),
                tdx_now(&v4())
            )),
            TdxError::MissingCollateral
        );
        let supplied = Endorsements {
            snp_vcek: None,
            tdx_collateral: Some(collateral),
        };
        assert!(verify_with(
            &Evidence::Tdx(bare),
            &v4_policy(),
            &supplied,
            tdx_now(&v4())
        )
        .is_ok());
        // Stale collateral in the evidence is ignored when the verifier supplies good one.
        let mut stale = v4();
        stale.collateral = Some(serde_json::from_str(TDX_OUTDATED_COLLATERAL).unwrap());
        assert!(verify_with(
            &Evidence::Tdx(stale),
            &v4_policy(),
            &supplied,
            tdx_now(&v4())
        )
        .is_ok());
    }

    #[test]
    fn each_register_is_compared_with_the_manifest() {
        for (i, register) in [
            Register::Mrtd,
            Register::Rtmr0,
            Register::Rtmr1,
            Register::Rtmr2,
            Register::Rtmr3,
        ]
        .into_iter()
        .enumerate()
        {
            let mut p = v4_policy();
            let m = &mut p.expected.tdx[0];
            let reg = [
                &mut m.mrtd,
                &mut m.rtmr0,
                &mut m.rtmr1,
                &mut m.rtmr2,
                &mut m.rtmr3,
            ];
            reg.into_iter().nth(i).unwrap().0[0] ^= 1;
            match check(&v4(), &p) {
                Err(VerifyError::Measurement(MeasurementError::Mismatch {
                    register: r, ..
                })) => {
                    assert_eq!(r, register)
                }
                other => panic!("{register:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn report_data_must_be_the_expected_one() {
        let mut p = v4_policy();
        p.expected_report_data.as_mut().unwrap()[0] ^= 1;
        assert!(matches!(
            check(&v4(), &p),
            Err(VerifyError::ReportDataMismatch { .. })
        ));
    }

    #[test]
    fn malformed_quotes_are_refused() {
        let mut e = v4();
        e.quote.truncate(600);
        assert!(matches!(
            tdx_err(check(&e, &v4_policy())),
            TdxError::MalformedQuote(_)
        ));
        let mut e = v4();
        e.quote[4] = 0; // TEE type SGX
        assert!(matches!(
            tdx_err(check(&e, &v4_policy())),
            TdxError::MalformedQuote(_)
        ));
    }

    #[test]
    fn debug_td_is_refused() {
        assert_eq!(check_attributes(&[0, 0, 0, 0x10, 0, 0, 0, 0]), Ok(()));
        assert_eq!(
            check_attributes(&[1, 0, 0, 0x10, 0, 0, 0, 0]),
            Err(TdxError::DebugEnabled)
        );
        // In a real quote the bit is signed: flipping it breaks the signature first.
        assert_eq!(
            tdx_err(check(&tampered_quote(168, 0x01), &v4_policy())),
            TdxError::BadSignature
        );
    }

    #[test]
    fn revoked_is_refused_whatever_the_policy() {
        let mut p = TdxPolicy::default();
        p.accepted_tcb_status.push(TdxTcbStatus::OutOfDate);
        assert_eq!(
            check_tcb_status("Revoked", &[], &p),
            Err(TdxError::TcbRevoked)
        );
        assert!(check_tcb_status("OutOfDate", &[], &p).is_ok());
        assert!(matches!(
            check_tcb_status("SWHardeningNeeded", &["INTEL-SA-1".into()], &p),
            Err(TdxError::TcbStatusNotAccepted { advisories, .. }) if advisories == ["INTEL-SA-1"]
        ));
    }

    #[test]
    fn classification_of_dcap_messages() {
        type Is = fn(&TdxError) -> bool;
        let cases: [(&str, Is); 8] = [
            ("Failed to verify certificate chain: CertExpired", |e| {
                matches!(e, TdxError::CertificateChain(_))
            }),
            ("QE report validation failed: Debug mode is enabled", |e| {
                matches!(e, TdxError::QeIdentity(_))
            }),
            ("Debug mode is enabled", |e| *e == TdxError::DebugEnabled),
            ("TD migration is enabled", |e| {
                matches!(e, TdxError::Attributes(_))
            }),
            ("No matching TCB level found", |e| {
                matches!(e, TdxError::TcbMatch(_))
            }),
            ("TCB status is invalid: Revoked", |e| {
                *e == TdxError::TcbRevoked
            }),
            ("QE Identity expired", |e| {
                matches!(e, TdxError::CollateralExpired(_))
            }),
            ("something new", |e| matches!(e, TdxError::Other(_))),
        ];
        for (message, ok) in cases {
            let e = classify(message);
            assert!(ok(&e), "{message} → {e:?}");
        }
    }

    #[test]
    fn verification_time_is_the_callers() {
        let e = v4();
        assert!(check(&e, &v4_policy()).is_ok());
        assert!(crate::verify(&Evidence::Tdx(e), &v4_policy(), SystemTime::UNIX_EPOCH).is_err());
    }
}
