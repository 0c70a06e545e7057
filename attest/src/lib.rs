//! TEE detection, attestation evidence (SEV-SNP, TDX, none) and its verification.
//!
//! - [`Attester`] / [`detect`] / [`evidence`]: which TEE this machine is in (configfs-tsm
//!   first, then `/dev/sev-guest`, `/dev/tdx_guest`, else `none`) and fresh [`Evidence`]
//!   carrying a caller's 64-byte report_data.
//! - [`report_data_for`]: binds public keys, a nonce and a context into report_data.
//! - [`verify`] / [`Verifier`]: checks evidence against a [`Policy`] at a given time and
//!   returns [`Verified`] or a typed [`VerifyError`].
//! - [`collateral`]: the verifier's own VCEKs (AMD KDS) and DCAP collateral (Intel PCS/PCCS),
//!   checked, cached, or read from an offline bundle.
//! - [`snp_derived_key`]: a sealing key from the AMD secure processor.
//! - [`tpm`]: TPM 2.0 quotes (a pure-Rust client, quote verification, [`tpm::TpmEvidence`]).
//! - [`eventlog`]: boot event logs (TPM, TDX CCEL): parse, replay against quoted registers,
//!   check the image's predicted boot events.
//! - [`boot_log`]: the firmware's boot event log (TPM or TDX CCEL), raw, for a verifier to
//!   replay.
//!
//! See README.md for the evidence format, the binding, and what is (and is not) checked.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod attester;
mod binding;
pub mod boot_log;
pub mod collateral;
mod detect;
mod encoding;
pub mod endorsement;
mod error;
pub mod eventlog;
mod evidence;
mod host;
mod measurement;
mod none;
mod policy;
pub mod sealing;
pub mod snp;
mod tdx;
pub mod tpm;
mod tsm;
mod verify;
mod vtpm;

#[cfg(test)]
mod testing;

pub use attester::{detect, evidence, snp_derived_key, Attester};
pub use binding::{report_data_for, BoundKey, REPORT_DATA_DOMAIN};
pub use boot_log::{BootLog, BootLogError, BootLogKind};
pub use detect::{Detection, Interface, Tee};
pub use error::{CertName, Error, MeasurementError, Register, SnpError, TdxError, VerifyError};
pub use evidence::{
    CertKind, Evidence, NoneEvidence, SnpCert, SnpEvidence, TdxCollateral, TdxEvidence,
    FORMAT_VERSION,
};
pub use measurement::{
    Digest48, EndorsedFirmware, ExpectedMeasurements, ManifestError, SnpIdKey, SnpMeasurement,
    TdxFirmware, TdxMeasurements, UefiPlatform,
};
pub use policy::{Policy, SnpPolicy, TdxPolicy, TdxTcbStatus};
pub use snp::verify::SnpTcbs;
pub use snp::{
    DerivationRoot, DerivedKey, DerivedKeyRequest, KeyMix, SnpDetails, SnpGeneration, SnpMinTcb,
    SnpMinTcbSpec, SnpMinTcbSpecError, SnpSigningKey, SnpTcb,
};
pub use tdx::TdxDetails;
pub use verify::{verify, verify_with, Endorsements, Measurements, Tcb, Verified, Verifier};
pub use vtpm::gce_ak::{verify_ak_certificate, GceAkError};
pub use vtpm::{AkIssuer, AkName, AkTrust, TdReportField, TpmFailure, VerifiedTpm, VtpmError};
