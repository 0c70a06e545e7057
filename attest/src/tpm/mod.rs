//! TPM 2.0 attestation without a C library: a small client for the commands attestation needs
//! ([`Tpm`] over a [`Transport`]: `/dev/tpmrm0` or swtpm's TCP socket), quote verification as a
//! pure function ([`verify_quote`]), and [`TpmEvidence`] binding a quote to the runner's
//! report_data ([`verify_tpm_quote`]).
//!
//! - `client`: Startup, GetRandom, PCR_Read, PCR_Extend, CreatePrimary (the AK), EvictControl,
//!   ReadPublic, Quote, FlushContext; `nv`: NV_ReadPublic, NV_Read, NV_DefineSpace, NV_Write, and Azure's
//!   HCL report; `azure_hcl`: parsing that report ([`HclReport`]: the hardware report, the
//!   runtime data it binds, the AK in it); `azure`: [`AzureVtpmEvidence`] (HCL report + quote by
//!   its AK, and on TDX the quote Azure's IMDS made of its TDREPORT: `azure_imds`) and
//!   [`verify_azure_vtpm`].
//! - `verify`: TPMS_ATTEST + TPMT_SIGNATURE + AK + nonce + PCR values → [`QuotedPcrs`].
//!
//! See attest/README.md, "TPM evidence", for the format and how it fits the evidence kinds.

mod attest;
mod azure;
mod azure_hcl;
mod azure_imds;
mod client;
mod error;
mod evidence;
mod marshal;
mod nv;
mod public;
mod transport;
mod types;
mod verify;

#[cfg(test)]
pub(crate) mod tests;

pub use attest::{ClockInfo, QuoteInfo, ST_ATTEST_QUOTE, TPM_GENERATED_VALUE};
pub use azure::{is_azure_vtpm, verify_azure_vtpm, AzureVtpmEvidence, VerifiedAzureVtpm};
pub use azure_hcl::{HclError, HclReport, HclReportKind, HCL_AK_KID, HCL_MAGIC};
pub use azure_imds::{Imds, ImdsError, IMDS, IMDS_SETTING, MAX_ANSWER, TD_QUOTE_PATH};
pub use client::{Hierarchy, Tpm};
pub use error::{ResponseCode, TpmError};
pub use evidence::{
    tpm_nonce, verify_tpm_quote, AkCertificate, AkSource, TpmEvidence, VerifiedTpmQuote,
    TPM_NONCE_DOMAIN,
};
pub use nv::{
    NvAuth, NvPublic, AZURE_AK_HANDLE, AZURE_HCL_REPORT_INDEX, AZURE_REPORT_DATA_INDEX,
    GCE_AK_CERT_INDEX_ECC, GCE_AK_CERT_INDEX_RSA, GCE_AK_TEMPLATE_INDEX_ECC,
    GCE_AK_TEMPLATE_INDEX_RSA, NV_AUTHREAD, NV_AUTHWRITE, NV_CHUNK, NV_NO_DA, NV_OWNERREAD,
    NV_OWNERWRITE, NV_WRITTEN,
};
pub use public::{ak_template, AkPublic, AkTemplate, PublicKey, AK_ATTRIBUTES};
pub use transport::{DeviceTransport, TcpTransport, Transport, TPMRM_DEVICE};
pub use types::{
    PcrSelection, TpmSignature, ALG_ECC, ALG_ECDAA, ALG_ECDSA, ALG_NULL, ALG_RSA, ALG_RSAPSS,
    ALG_RSASSA, ALG_SHA256, ALG_SHA384, ALG_SHA512, ECC_NIST_P256, PCR_COUNT,
};
pub use verify::{verify_quote, verify_signature, QuotedPcrs};
