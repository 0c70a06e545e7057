//! Azure confidential VMs' vTPM evidence: the HCL report (hardware report + runtime data naming
//! the vTPM's AK) and a quote by that AK, both bound to the runner's report_data.
//!
//! Chain a verifier follows: the hardware report (SNP report, verified with the chip's VCEK; or
//! the TDX quote Azure makes from the TDREPORT) has report_data = digest of the runtime data
//! ([`HclReport::report_data`]); the runtime data names the AK ("HCLAkPub") and carries our
//! report_data as its user-data; the AK signs a quote whose nonce is [`super::tpm_nonce`] of the
//! same report_data, over the PCRs the event log replays to.

use serde::{Deserialize, Serialize};

use super::azure_hcl::HclReport;
use super::client::Tpm;
use super::error::TpmError;
use super::evidence::{verify_tpm_quote, AkSource, TpmEvidence, VerifiedTpmQuote};
use super::nv::{AZURE_AK_HANDLE, AZURE_HCL_REPORT_INDEX};
use super::public::{AkPublic, PublicKey};
use super::transport::Transport;
use super::types::PcrSelection;
use crate::encoding::{b64, b64_opt};

/// Azure vTPM evidence as JSON: `{"hcl_report": "<base64>", "tpm": <TpmEvidence>}`, and on
/// TDX `"td_quote": "<base64>"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzureVtpmEvidence {
    /// The HCL report read from NV index 0x01400001.
    #[serde(with = "b64")]
    pub hcl_report: Vec<u8>,
    /// The quote by the vTPM's AK (persistent at 0x81000003), its PCRs and event log.
    pub tpm: TpmEvidence,
    /// TDX only: the DCAP quote Azure's IMDS made of the HCL report's TDREPORT (the TDREPORT
    /// itself is MAC'd, checkable only on the machine). `None` on SNP.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64_opt")]
    pub td_quote: Option<Vec<u8>>,
}

/// What verified Azure vTPM evidence vouches for, once the caller has also verified
/// `hcl.hw_report` with `hcl.report_data` as the expected report_data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAzureVtpm {
    /// The HCL report (its hardware report still to verify).
    pub hcl: HclReport,
    /// The verified quote.
    pub tpm: VerifiedTpmQuote,
}

/// Whether this TPM is an Azure CVM's vTPM (it holds the HCL report's NV index).
pub fn is_azure_vtpm<T: Transport>(tpm: &mut Tpm<T>) -> bool {
    tpm.nv_read_public(AZURE_HCL_REPORT_INDEX).is_ok()
}

impl AzureVtpmEvidence {
    /// Collects Azure vTPM evidence: a fresh HCL report with `report_data` as its user-data
    /// (3 s wait, see [`Tpm::azure_hcl_report`]), then a quote by the persistent AK over
    /// `selection` with the nonce derived from the same `report_data`. The TD quote (TDX) is the
    /// caller's to add ([`super::Imds::td_quote`]).
    pub fn collect<T: Transport>(
        tpm: &mut Tpm<T>,
        report_data: &[u8; 64],
        selection: &PcrSelection,
        event_log: Option<Vec<u8>>,
    ) -> Result<Self, TpmError> {
        let hcl_report = tpm.azure_hcl_report(report_data)?;
        let tpm = TpmEvidence::collect(
            tpm,
            AkSource::Persistent(AZURE_AK_HANDLE),
            report_data,
            selection,
            event_log,
        )?;
        Ok(Self {
            hcl_report,
            tpm,
            td_quote: None,
        })
    }
}

/// Verifies Azure vTPM evidence against the expected report_data: the HCL report parses and its
/// hardware report's report_data binds the runtime data; the runtime data's user-data is
/// `expected_report_data`; the quote's AK is the runtime data's HCLAkPub; the quote verifies
/// ([`verify_tpm_quote`]). The hardware report itself is the caller's to verify (SNP verifier,
/// expecting `hcl.report_data`).
pub fn verify_azure_vtpm(
    evidence: &AzureVtpmEvidence,
    expected_report_data: &[u8; 64],
) -> Result<VerifiedAzureVtpm, TpmError> {
    let hcl = HclReport::parse(&evidence.hcl_report)?;
    let user_data = hcl.user_data()?;
    if user_data.as_deref() != Some(&expected_report_data[..]) {
        return Err(TpmError::UserDataMismatch {
            expected: hex::encode(expected_report_data),
            got: user_data.map(hex::encode),
        });
    }
    let ak = AkPublic::from_tpm2b(&evidence.tpm.ak_public)?;
    if !same_key(&ak.key, &hcl.ak()?) {
        return Err(TpmError::AkNotInHclReport);
    }
    let tpm = verify_tpm_quote(&evidence.tpm, expected_report_data)?;
    Ok(VerifiedAzureVtpm { hcl, tpm })
}

/// Equal keys, RSA moduli compared without leading zero bytes (a JWK may drop them).
fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    let trim = |m: &[u8]| -> Vec<u8> { m.iter().copied().skip_while(|&x| x == 0).collect() };
    match (a, b) {
        (
            PublicKey::Rsa {
                modulus: m1,
                exponent: e1,
            },
            PublicKey::Rsa {
                modulus: m2,
                exponent: e2,
            },
        ) => e1 == e2 && trim(m1) == trim(m2),
        _ => a == b,
    }
}
