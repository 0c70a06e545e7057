//! Intel TDX: getting quotes (configfs-tsm) and verifying them with dcap-qvl plus our checks.

pub(crate) mod boot;
pub(crate) mod get;
pub(crate) mod paravisor;
pub(crate) mod verify;

#[cfg(test)]
mod gcp_tests;

pub use verify::TdxDetails;

/// The TDX TEE type in a DCAP quote header.
pub(crate) const TEE_TYPE_TDX: u32 = 0x81;
