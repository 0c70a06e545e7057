//! TPM tests against a real software TPM (swtpm) and recorded Azure vTPM evidence.

mod azure;
mod nv;
mod quote;
mod swtpm;
