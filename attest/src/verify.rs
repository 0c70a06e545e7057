//! Verification entry point: dispatch per TEE, then the checks common to all (measurement,
//! report_data).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::VerifyError;
use crate::evidence::{Evidence, TdxCollateral};
use crate::measurement::{Digest48, TdxMeasurements};
use crate::policy::Policy;
use crate::snp::verify::SnpTcbs;
use crate::snp::SnpDetails;
use crate::tdx::TdxDetails;
use crate::{snp, tdx, Tee};

/// Endorsements the verifier supplies itself, used instead of the evidence's copies (for
/// example a VCEK fetched from AMD's KDS, collateral fetched from a PCCS).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endorsements {
    /// The VCEK certificate (DER) for the reporting chip.
    pub snp_vcek: Option<Vec<u8>>,
    /// DCAP collateral for the quote's platform.
    pub tdx_collateral: Option<TdxCollateral>,
}

/// The measurements found in verified evidence.
// One value per verification; boxing the TDX registers would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Measurements {
    /// SEV-SNP launch digest.
    Snp {
        /// MEASUREMENT.
        launch_digest: Digest48,
    },
    /// TDX MRTD and RTMRs.
    Tdx(TdxMeasurements),
    /// None (dev mode).
    None,
}

/// TCB information of verified evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tcb {
    /// SEV-SNP TCB versions.
    Snp(SnpTcbs),
    /// TDX: Intel's status and advisories.
    Tdx {
        /// e.g. "UpToDate".
        status: String,
        /// Intel security advisories.
        advisory_ids: Vec<String>,
    },
    /// None (dev mode).
    None,
}

/// Evidence that passed every check of the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The TEE.
    pub tee: Tee,
    /// True only for `none` evidence accepted in dev mode: nothing is attested.
    pub insecure: bool,
    /// The report_data the evidence carries (bound to the attester's keys).
    pub report_data: [u8; 64],
    /// The launch measurements.
    pub measurements: Measurements,
    /// TCB information.
    pub tcb: Tcb,
    /// SEV-SNP fields (for SNP evidence).
    pub snp: Option<SnpDetails>,
    /// TDX fields (for TDX evidence).
    pub tdx: Option<TdxDetails>,
}

/// A policy and the verifier's own endorsements, ready to verify evidence.
#[derive(Clone, Debug, Default)]
pub struct Verifier {
    /// The policy.
    pub policy: Policy,
    /// Endorsements that replace the evidence's.
    pub endorsements: Endorsements,
}

impl Verifier {
    /// A verifier with `policy` and no endorsements of its own.
    pub fn new(policy: Policy) -> Self {
        Verifier {
            policy,
            endorsements: Endorsements::default(),
        }
    }

    /// Verifies `evidence` at time `now`.
    pub fn verify(&self, evidence: &Evidence, now: SystemTime) -> Result<Verified, VerifyError> {
        verify_with(evidence, &self.policy, &self.endorsements, now)
    }
}

/// Verifies `evidence` against `policy` at time `now`, with the evidence's own certificates and
/// collateral.
pub fn verify(
    evidence: &Evidence,
    policy: &Policy,
    now: SystemTime,
) -> Result<Verified, VerifyError> {
    verify_with(evidence, policy, &Endorsements::default(), now)
}

/// Verifies `evidence` against `policy` at time `now`; `endorsements` replace the evidence's
/// VCEK or collateral where given.
pub fn verify_with(
    evidence: &Evidence,
    policy: &Policy,
    endorsements: &Endorsements,
    now: SystemTime,
) -> Result<Verified, VerifyError> {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let verified = match evidence {
        Evidence::None(n) => {
            if !policy.allow_insecure_dev {
                return Err(VerifyError::Insecure);
            }
            tracing::warn!("accepting insecure `none` evidence: the policy allows dev mode");
            Verified {
                tee: Tee::None,
                insecure: true,
                report_data: n.report_data,
                measurements: Measurements::None,
                tcb: Tcb::None,
                snp: None,
                tdx: None,
            }
        }
        Evidence::Snp(e) => {
            let v = snp::verify::verify(e, endorsements.snp_vcek.as_deref(), &policy.snp, now)?;
            policy.expected.check_snp(&v.launch_digest)?;
            Verified {
                tee: Tee::Snp,
                insecure: false,
                report_data: v.report_data,
                measurements: Measurements::Snp {
                    launch_digest: v.launch_digest,
                },
                tcb: Tcb::Snp(v.details.tcb),
                snp: Some(v.details),
                tdx: None,
            }
        }
        Evidence::Tdx(e) => {
            let v = tdx::verify::verify(e, endorsements.tdx_collateral.as_ref(), &policy.tdx, now)?;
            policy.expected.check_tdx(&v.measurements)?;
            Verified {
                tee: Tee::Tdx,
                insecure: false,
                report_data: v.report_data,
                measurements: Measurements::Tdx(v.measurements),
                tcb: Tcb::Tdx {
                    status: v.details.tcb_status.clone(),
                    advisory_ids: v.details.advisory_ids.clone(),
                },
                snp: None,
                tdx: Some(v.details),
            }
        }
    };
    if let Some(expected) = &policy.expected_report_data {
        if expected != &verified.report_data {
            return Err(VerifyError::ReportDataMismatch {
                expected: hex::encode(expected),
                got: hex::encode(verified.report_data),
            });
        }
    }
    Ok(verified)
}
