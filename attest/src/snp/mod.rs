//! AMD SEV-SNP: getting reports (configfs-tsm, `/dev/sev-guest`), derived keys, and verifying
//! reports against AMD's roots.

pub(crate) mod certs;
pub mod get;
pub(crate) mod roots;
mod signer;
mod tcb;
pub(crate) mod vcek;
pub(crate) mod verify;

#[cfg(test)]
mod aws_tests;

pub use get::{DerivationRoot, DerivedKey, DerivedKeyRequest, KeyMix};
pub use signer::SnpSigningKey;
pub use tcb::{
    SnpGeneration, SnpMinTcb, SnpMinTcbSpec, SnpMinTcbSpecError, SnpTcb, SB3019_GENOA_SNP_SPL,
    SB3019_MILAN_SNP_SPL,
};
pub use verify::SnpDetails;

/// Offsets in the 1184-byte attestation report (AMD SEV-SNP ABI, Table "ATTESTATION_REPORT").
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod layout {
    use std::ops::Range;

    /// Whole report.
    pub(crate) const LEN: usize = 1184;
    /// REPORT_DATA.
    pub(crate) const REPORT_DATA: Range<usize> = 0x50..0x90;
    /// MEASUREMENT.
    pub(crate) const MEASUREMENT: Range<usize> = 0x90..0xC0;
    /// ID_KEY_DIGEST.
    pub(crate) const ID_KEY_DIGEST: Range<usize> = 0xE0..0x110;
    /// The signed part: everything before the signature.
    pub(crate) const SIGNED: Range<usize> = 0..0x2A0;
    /// Signature R, 72 bytes little-endian (48 significant).
    pub(crate) const SIG_R: Range<usize> = 0x2A0..0x2E8;
    /// Signature S, 72 bytes little-endian (48 significant).
    pub(crate) const SIG_S: Range<usize> = 0x2E8..0x330;
    /// CHIP_ID.
    pub(crate) const CHIP_ID: Range<usize> = 0x1A0..0x1E0;
    /// POLICY (u64 LE).
    pub(crate) const POLICY: Range<usize> = 0x08..0x10;
    /// REPORTED_TCB.
    pub(crate) const REPORTED_TCB: Range<usize> = 0x180..0x188;
}
