//! Azure TDX in [`super::verify_azure`]: the TD quote Azure's IMDS made of the HCL report's
//! TDREPORT. Its REPORTDATA must be SHA-256 of the HCL runtime data padded with zeros (as Azure
//! makes it), so the quote binds the vTPM's AK; its TD report body must be the TDREPORT's, field
//! by field, so nothing is read from the unverifiable TDREPORT that the quote does not vouch
//! for; its MRTD (Azure's paravisor) must be on the policy's allow-list; then it is verified like
//! any TDX quote (DCAP: PCK chain to Intel's root, TCB info, QE identity, CRLs; TCB status by the
//! policy, debug refused) except that TDATTRIBUTES need not have SEPT_VE_DISABLE: the paravisor
//! handles #VE ([`crate::tdx::paravisor`]).

use dcap_qvl::quote::{Quote, TDReport10};
use sha2::{Digest, Sha256};

use super::{TdReportField, VtpmError};
use crate::error::{MeasurementError, Register, TdxError, VerifyError};
use crate::evidence::TdxEvidence;
use crate::measurement::Digest48;
use crate::policy::Policy;
use crate::tdx::verify::TdxVerified;
use crate::tpm::HclReport;
use crate::verify::Endorsements;

/// Offsets in a TDREPORT (Intel TDX module ABI, TDREPORT_STRUCT): REPORTMACSTRUCT (256 bytes,
/// REPORTDATA at 128), TEE_TCB_INFO (at 256: VALID, TEE_TCB_SVN, MRSEAM, …), TDINFO (at 512:
/// ATTRIBUTES, XFAM, MRTD, MRCONFIGID, MROWNER, MROWNERCONFIG, RTMR[4]).
mod td_report {
    pub(super) const REPORT_DATA: usize = 128;
    pub(super) const TEE_TCB_SVN: usize = 256 + 8;
    pub(super) const MR_SEAM: usize = 256 + 24;
    pub(super) const TD_ATTRIBUTES: usize = 512;
    pub(super) const XFAM: usize = 512 + 8;
    pub(super) const MRTD: usize = 512 + 16;
    pub(super) const MR_CONFIG_ID: usize = 512 + 64;
    pub(super) const MR_OWNER: usize = 512 + 112;
    pub(super) const MR_OWNER_CONFIG: usize = 512 + 160;
    pub(super) const RTMR0: usize = 512 + 208;
}

/// Verifies the TD quote of an Azure TDX HCL report `hcl` (kind TDX) at `now`; returns the
/// verified quote. The quote's body is compared with the HCL report and the allow-list first
/// (each mismatch its own error), then the quote is verified (DCAP): all must pass.
pub(crate) fn verify_azure_tdx(
    hcl: &HclReport,
    td_quote: &[u8],
    policy: &Policy,
    endorsements: &Endorsements,
    now: u64,
) -> Result<TdxVerified, VerifyError> {
    let quote = Quote::parse(td_quote).map_err(|e| TdxError::MalformedQuote(format!("{e:#}")))?;
    let body = quote
        .report
        .as_td10()
        .ok_or_else(|| TdxError::MalformedQuote("no TD report in the quote".into()))?;
    let mut expected = [0u8; 64];
    expected[..32].copy_from_slice(&Sha256::digest(&hcl.runtime_data));
    if body.report_data != expected {
        return Err(VtpmError::AzureTdxRuntimeDataNotBound {
            expected: hex::encode(expected),
            got: hex::encode(body.report_data),
        }
        .into());
    }
    check_td_report(&hcl.hw_report, body)?;
    check_paravisor(policy, &Digest48(body.mr_td), &Digest48(body.rt_mr0))?;
    let evidence = TdxEvidence {
        quote: td_quote.to_vec(),
        collateral: None,
        event_log: None,
        tpm: None,
    };
    let verified = crate::tdx::verify::verify_paravisor_td(
        &evidence,
        endorsements.tdx_collateral.as_ref(),
        &policy.tdx,
        now,
    )?;
    tracing::info!(mrtd = %verified.measurements.mrtd, tcb = %verified.details.tcb_status,
        "Azure TD quote verified: it is the HCL report's, on an allowed paravisor");
    Ok(verified)
}

/// The quote's TD report body `q` equals the TDREPORT `report` (1024 bytes), field by field.
fn check_td_report(report: &[u8], q: &TDReport10) -> Result<(), VtpmError> {
    let fields: [(TdReportField, usize, &[u8]); 13] = [
        (
            TdReportField::ReportData,
            td_report::REPORT_DATA,
            &q.report_data,
        ),
        (TdReportField::Mrtd, td_report::MRTD, &q.mr_td),
        (TdReportField::Rtmr(0), td_report::RTMR0, &q.rt_mr0),
        (TdReportField::Rtmr(1), td_report::RTMR0 + 48, &q.rt_mr1),
        (TdReportField::Rtmr(2), td_report::RTMR0 + 96, &q.rt_mr2),
        (TdReportField::Rtmr(3), td_report::RTMR0 + 144, &q.rt_mr3),
        (
            TdReportField::TdAttributes,
            td_report::TD_ATTRIBUTES,
            &q.td_attributes,
        ),
        (TdReportField::Xfam, td_report::XFAM, &q.xfam),
        (
            TdReportField::MrConfigId,
            td_report::MR_CONFIG_ID,
            &q.mr_config_id,
        ),
        (TdReportField::MrOwner, td_report::MR_OWNER, &q.mr_owner),
        (
            TdReportField::MrOwnerConfig,
            td_report::MR_OWNER_CONFIG,
            &q.mr_owner_config,
        ),
        (
            TdReportField::TeeTcbSvn,
            td_report::TEE_TCB_SVN,
            &q.tee_tcb_svn,
        ),
        (TdReportField::MrSeam, td_report::MR_SEAM, &q.mr_seam),
    ];
    for (field, at, in_quote) in fields {
        // The HCL parser hands over 1024 bytes; a shorter slice is a mismatch, not a panic.
        let in_report = report.get(at..at + in_quote.len()).unwrap_or(&[]);
        if in_report != in_quote {
            return Err(VtpmError::AzureTdReportMismatch {
                field,
                quote: hex::encode(in_quote),
                td_report: hex::encode(in_report),
            });
        }
    }
    Ok(())
}

/// The MRTD (Azure's paravisor) is on the policy's TDX firmware allow-list; an entry that pins
/// RTMR[0] must see it.
fn check_paravisor(policy: &Policy, mrtd: &Digest48, rtmr0: &Digest48) -> Result<(), VerifyError> {
    let allowed: Vec<_> = policy
        .expected
        .tdx_firmware
        .iter()
        .filter(|f| &f.mrtd == mrtd)
        .collect();
    if allowed.is_empty() {
        return Err(VtpmError::AzureParavisorNotAllowed {
            mrtd: mrtd.to_string(),
        }
        .into());
    }
    if !allowed.iter().any(|f| f.rtmr0.is_none_or(|r| &r == rtmr0)) {
        return Err(MeasurementError::Mismatch {
            register: Register::Rtmr0,
            got: rtmr0.to_string(),
        }
        .into());
    }
    Ok(())
}
