//! Azure vTPM evidence in [`crate::verify`]: the hardware report behind the HCL report — on SNP
//! the SNP report (signature, guest policy, TCB; its VCEK from the verifier's endorsements: the
//! evidence carries none) with its launch digest among the allowed paravisor firmware; on TDX
//! the quote Azure's IMDS made of the TDREPORT ([`super::azure_tdx`]) — binding the runtime
//! data (the AK and our report_data), the quote by that AK, and the image identified by the
//! vTPM's boot log.

use super::azure_tdx::verify_azure_tdx;
use super::{check, TpmHost, VerifiedTpm, VtpmError};
use crate::error::{MeasurementError, VerifyError};
use crate::evidence::SnpEvidence;
use crate::policy::Policy;
use crate::snp::verify::SnpVerified;
use crate::tdx::verify::TdxVerified;
use crate::tpm::{verify_azure_vtpm, AzureVtpmEvidence, HclError, HclReport, HclReportKind};
use crate::verify::Endorsements;

/// The verified hardware evidence behind an HCL report.
// One value per verification (as `Verified` itself); boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum AzureHardware {
    /// The SNP report.
    Snp(SnpVerified),
    /// The TD quote Azure made of the TDREPORT.
    Tdx(TdxVerified),
}

/// Verifies Azure vTPM evidence; returns the hardware evidence's outcome, the evidence's
/// report_data (the HCL runtime data's user-data) and the TPM's.
pub(crate) fn verify_azure(
    evidence: &AzureVtpmEvidence,
    policy: &Policy,
    endorsements: &Endorsements,
    now: u64,
) -> Result<(AzureHardware, [u8; 64], VerifiedTpm), VerifyError> {
    let hcl = HclReport::parse(&evidence.hcl_report).map_err(crate::tpm::TpmError::from)?;
    let user_data = hcl
        .user_data()
        .map_err(crate::tpm::TpmError::from)?
        .ok_or_else(|| VtpmError::BadUserData("none".into()))?;
    let report_data: [u8; 64] = user_data
        .as_slice()
        .try_into()
        .map_err(|_| VtpmError::BadUserData(format!("{} bytes", user_data.len())))?;
    let hardware = match hcl.kind {
        HclReportKind::Snp => AzureHardware::Snp(verify_snp(&hcl, policy, endorsements, now)?),
        HclReportKind::Tdx => {
            let quote = evidence
                .td_quote
                .as_deref()
                .ok_or(VtpmError::AzureTdxNoQuote)?;
            AzureHardware::Tdx(verify_azure_tdx(&hcl, quote, policy, endorsements, now)?)
        }
    };
    let verified = verify_azure_vtpm(evidence, &report_data)?;
    let tpm = check(
        &evidence.tpm,
        verified.tpm,
        TpmHost::Azure,
        policy,
        true,
        now,
    )?;
    Ok((hardware, report_data, tpm))
}

/// The SNP report inside the HCL report ([`verify_hcl_hardware`]) on allowed paravisor firmware:
/// its launch digest allow-listed, or signed by an allowed ID key (Microsoft's).
fn verify_snp(
    hcl: &HclReport,
    policy: &Policy,
    endorsements: &Endorsements,
    now: u64,
) -> Result<SnpVerified, VerifyError> {
    let hw = verify_hcl_hardware(hcl, policy, endorsements, now)?;
    let Some(why) =
        policy
            .expected
            .snp_cloud_firmware(&hw.launch_digest, &hw.details.id_key_digest, now)
    else {
        return Err(MeasurementError::SnpFirmwareNotAllowed {
            launch_digest: hw.launch_digest.to_string(),
        }
        .into());
    };
    tracing::info!(launch_digest = %hw.launch_digest, accepted = %why, "Azure paravisor");
    Ok(hw)
}

/// The hardware half of an HCL report: the SNP report inside it verified (signature by the VCEK
/// from `endorsements`, guest policy, TCB) with the HCL runtime data's digest as its
/// report_data. Azure's guest gets no certificate table: the VCEK comes from the verifier
/// (Azure's or AMD's certificate service).
pub(crate) fn verify_hcl_hardware(
    hcl: &HclReport,
    policy: &Policy,
    endorsements: &Endorsements,
    now: u64,
) -> Result<SnpVerified, VerifyError> {
    let snp = SnpEvidence {
        report: hcl.hw_report.clone(),
        certs: Vec::new(),
        tpm: None,
    };
    let hw = crate::snp::verify::verify(&snp, endorsements.snp_vcek.as_deref(), &policy.snp, now)?;
    if hw.report_data != hcl.report_data {
        return Err(crate::tpm::TpmError::from(HclError::RuntimeDataNotBound).into());
    }
    Ok(hw)
}
