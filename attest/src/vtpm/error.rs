//! Why TPM evidence was refused beyond the quote itself: one variant per trust decision.

use std::fmt;
use std::sync::Arc;

use crate::tpm::TpmError;

/// The TPM's quote verified (or the evidence is Azure's), but the policy does not accept it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VtpmError {
    /// `none` evidence carries a TPM whose AK the policy does not pin (`trusted_tpm_aks`), and
    /// the policy pins others (or is not in dev mode).
    #[error("the TPM's attestation key {ak_name} is not trusted: no TEE vouches for it and the policy does not pin it (trusted_tpm_aks)")]
    AkNotTrusted {
        /// The AK's name, hex.
        ak_name: String,
    },
    /// SNP or TDX evidence carries a vTPM outside the TEE (the cloud's), and the policy neither
    /// allows untrusted vTPMs nor pins this AK.
    #[error("the vTPM (AK {ak_name}) is OUTSIDE the TEE, where the host can forge its PCRs; refused: the policy does not say allow_untrusted_vtpm nor pin the AK")]
    UntrustedVtpm {
        /// The AK's name, hex.
        ak_name: String,
    },
    /// The launch was accepted only as a cloud firmware's (`snp_firmware`), or is Azure's: the
    /// image must be identified by the TPM, and the policy has no TPM platform predictions.
    #[error("the image must be identified by the TPM's boot log, and the policy has no TPM platform predictions (expected.uefi: qemu-ovmf-tpm, azure-vtpm, gcp-snp-vtpm, aws-snp)")]
    NoTpmPlatform,
    /// The launch digest is a cloud firmware's (`snp_firmware`), and the evidence has no TPM
    /// quote to identify the image.
    #[error("SNP launch digest {launch_digest} is a cloud firmware's: the image must be identified by a vTPM quote, and the evidence has none")]
    NoTpmEvidence {
        /// The report's launch digest, hex.
        launch_digest: String,
    },
    /// Azure TDX: the evidence carries no TD quote. The HCL report's TDREPORT is MAC'd, not
    /// signed: only the quote Azure's IMDS makes of it can be verified off the machine.
    #[error("Azure TDX vTPM evidence carries no TD quote: its TDREPORT is MAC'd, not signed, and only the quote Azure's IMDS makes of it can be verified")]
    AzureTdxNoQuote,
    /// Azure TDX: the verified quote's REPORTDATA is not SHA-256 of the HCL runtime data
    /// followed by 32 zero bytes (Azure's padding): the quote does not bind the runtime data
    /// (the vTPM's AK, the user-data).
    #[error("the TD quote's REPORTDATA {got} is not SHA-256 of the HCL runtime data padded with zeros ({expected})")]
    AzureTdxRuntimeDataNotBound {
        /// SHA-256 of the runtime data ‖ 32 zero bytes, hex.
        expected: String,
        /// The quote's REPORTDATA, hex.
        got: String,
    },
    /// Azure TDX: a field of the verified quote's TD report body differs from the HCL report's
    /// TDREPORT: the quote is not the one made of this report.
    #[error("the TD quote's {field} {quote} differs from the HCL report's TDREPORT ({td_report})")]
    AzureTdReportMismatch {
        /// The differing field.
        field: TdReportField,
        /// The quote's value, hex.
        quote: String,
        /// The TDREPORT's value, hex.
        td_report: String,
    },
    /// Azure TDX: the TD's MRTD (the paravisor's, Azure's firmware) is not on the policy's
    /// allow-list (`expected.tdx_firmware`, `--tdx-mrtd`). Never taken from the evidence.
    #[error("MRTD {mrtd} is not an Azure TDX paravisor the policy allows (expected.tdx_firmware, --tdx-mrtd)")]
    AzureParavisorNotAllowed {
        /// The quote's MRTD, hex.
        mrtd: String,
    },
    /// The log shows a measurement in PCR 12 or 13: systemd-stub measures there a command line
    /// that replaces the UKI's (from boot options the host controls), credentials or system
    /// extensions from the ESP (which the host can write) — none of which the image predicts.
    #[error("PCR{pcr} has a {event_type} event at byte {offset} of the log: a command line, credentials or extensions from outside the UKI (the host's), which the image does not predict")]
    UnpredictedStubEvent {
        /// 12 or 13.
        pcr: u32,
        /// The event's type.
        event_type: crate::eventlog::EventType,
        /// Its byte offset in the log.
        offset: usize,
    },
    /// The evidence carries a Google AK certificate (and the policy relies on the vTPM) that
    /// does not verify: another root, expired, a changed byte, or another key than the AK's.
    #[error("the vTPM's AK certificate is refused: {0}")]
    GceAkCert(#[from] super::gce_ak::GceAkError),
    /// Azure: the HCL runtime data's user-data is not 64 bytes of report_data.
    #[error("the HCL report's user-data is not a 64-byte report_data ({0})")]
    BadUserData(String),
}

/// A field of a TD report body, as both a DCAP quote and a TDREPORT carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TdReportField {
    /// REPORTDATA.
    ReportData,
    /// MRTD: the initial TD contents (on Azure, the paravisor).
    Mrtd,
    /// RTMR[0..3].
    Rtmr(u8),
    /// TDATTRIBUTES.
    TdAttributes,
    /// XFAM.
    Xfam,
    /// MRCONFIGID.
    MrConfigId,
    /// MROWNER.
    MrOwner,
    /// MROWNERCONFIG.
    MrOwnerConfig,
    /// TEE_TCB_SVN (the TDX module's and platform's SVNs).
    TeeTcbSvn,
    /// MRSEAM: the TDX module's measurement.
    MrSeam,
}

impl fmt::Display for TdReportField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TdReportField::ReportData => f.write_str("REPORTDATA"),
            TdReportField::Mrtd => f.write_str("MRTD"),
            TdReportField::Rtmr(i) => write!(f, "RTMR{i}"),
            TdReportField::TdAttributes => f.write_str("TDATTRIBUTES"),
            TdReportField::Xfam => f.write_str("XFAM"),
            TdReportField::MrConfigId => f.write_str("MRCONFIGID"),
            TdReportField::MrOwner => f.write_str("MROWNER"),
            TdReportField::MrOwnerConfig => f.write_str("MROWNERCONFIG"),
            TdReportField::TeeTcbSvn => f.write_str("TEE_TCB_SVN"),
            TdReportField::MrSeam => f.write_str("MRSEAM"),
        }
    }
}

/// A TPM quote check failed ([`TpmError`], shared: it can hold an I/O error, which is neither
/// `Clone` nor `Eq`; equality compares the variant and its message).
#[derive(Debug, Clone)]
pub struct TpmFailure(pub Arc<TpmError>);

impl TpmFailure {
    /// The error.
    pub fn error(&self) -> &TpmError {
        &self.0
    }
}

impl PartialEq for TpmFailure {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(&*self.0) == std::mem::discriminant(&*other.0)
            && self.0.to_string() == other.0.to_string()
    }
}

impl Eq for TpmFailure {}

impl fmt::Display for TpmFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TpmFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<TpmError> for TpmFailure {
    fn from(e: TpmError) -> Self {
        TpmFailure(Arc::new(e))
    }
}
