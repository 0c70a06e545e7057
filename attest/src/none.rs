//! TEE `none`: QEMU without SEV/TDX, laptops. The evidence is only the report_data, marked
//! insecure; verifiers refuse it unless the policy allows dev mode.

use crate::evidence::NoneEvidence;

pub(crate) fn evidence(report_data: &[u8; 64]) -> NoneEvidence {
    tracing::warn!(
        "no TEE: returning insecure `none` evidence (development mode; nothing is attested)"
    );
    NoneEvidence {
        report_data: *report_data,
        tpm: None,
    }
}
