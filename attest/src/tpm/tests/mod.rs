//! TPM tests against a real software TPM (swtpm) and recorded Azure vTPM evidence.

mod azure;
mod azure_flow;
mod nv;
mod quote;
mod swtpm;
