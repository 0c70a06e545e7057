//! TPM tests against a real software TPM (swtpm) and recorded Azure vTPM evidence.

mod azure;
pub(crate) mod azure_flow;
mod nv;
mod quote;
pub(crate) mod swtpm;
