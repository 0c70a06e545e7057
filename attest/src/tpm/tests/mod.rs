//! TPM tests against a real software TPM (swtpm) and recorded Azure vTPM evidence.

mod azure;
pub(crate) mod azure_flow;
pub(crate) mod imds;
mod nv;
mod quote;
pub(crate) mod swtpm;
