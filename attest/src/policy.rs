//! What a verifier accepts.

use serde::{Deserialize, Serialize};

use crate::measurement::ExpectedMeasurements;
use crate::snp::SnpMinTcb;

/// The verifier's policy. `Default` is strict: no dev mode, no measurement accepted until the
/// manifest's are filled in, SNP without SMT or migration agent at VMPL 0 with at least the
/// TCB AMD's bulletins require ([`SnpMinTcb::default`]), TDX with TCB status `UpToDate` only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    /// Accept `none` evidence (dev mode). It is still reported as insecure.
    pub allow_insecure_dev: bool,
    /// Accepted launch measurements (the image manifest's).
    pub expected: ExpectedMeasurements,
    /// The report_data the evidence must carry (see [`crate::report_data_for`]). `None` skips
    /// the check; the caller then compares [`crate::Verified::report_data`] itself.
    #[serde(skip)]
    pub expected_report_data: Option<[u8; 64]>,
    /// SEV-SNP specifics.
    pub snp: SnpPolicy,
    /// TDX specifics.
    pub tdx: TdxPolicy,
    /// Accept a vTPM outside the TEE (Google's on N2D, AWS's NitroTPM) to identify the image:
    /// the cloud's host can make it quote anything. Off by default; every acceptance says so.
    pub allow_untrusted_vtpm: bool,
    /// TPM attestation keys the verifier trusts by name (a dev/test TPM such as swtpm, whose
    /// AK nothing else vouches for).
    pub trusted_tpm_aks: Vec<crate::vtpm::AkName>,
}

/// SEV-SNP policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnpPolicy {
    /// Accept a platform with SMT enabled (PLATFORM_INFO.SMT_EN).
    pub allow_smt: bool,
    /// Accept a guest policy that allows a migration agent.
    pub allow_migration_agent: bool,
    /// Minimum REPORTED_TCB, component by component, per processor generation.
    pub min_tcb: SnpMinTcb,
    /// The VMPL the report must come from.
    pub vmpl: u32,
}

/// TDX policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TdxPolicy {
    /// TCB statuses accepted (Intel's names). `Revoked` is refused whatever this says.
    pub accepted_tcb_status: Vec<TdxTcbStatus>,
}

impl Default for TdxPolicy {
    fn default() -> Self {
        TdxPolicy {
            accepted_tcb_status: vec![TdxTcbStatus::UpToDate],
        }
    }
}

/// Intel's TCB status of a TDX platform (the TCB info's `tcbStatus` names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TdxTcbStatus {
    /// Fully patched.
    UpToDate,
    /// Patched; software hardening (e.g. against a side channel) is needed.
    #[serde(rename = "SWHardeningNeeded")]
    SwHardeningNeeded,
    /// Patched; platform configuration is needed.
    ConfigurationNeeded,
    /// Both of the above.
    #[serde(rename = "ConfigurationAndSWHardeningNeeded")]
    ConfigurationAndSwHardeningNeeded,
    /// Not patched.
    OutOfDate,
    /// Not patched, and configuration needed.
    OutOfDateConfigurationNeeded,
    /// TD 1.5: launched out of date, now patched; relaunch advised.
    #[serde(rename = "TDRelaunchAdvised")]
    TdRelaunchAdvised,
    /// TD 1.5: as above, with configuration needed.
    #[serde(rename = "TDRelaunchAdvisedConfigurationNeeded")]
    TdRelaunchAdvisedConfigurationNeeded,
}

impl TdxTcbStatus {
    /// Intel's name.
    pub fn as_str(self) -> &'static str {
        match self {
            TdxTcbStatus::UpToDate => "UpToDate",
            TdxTcbStatus::SwHardeningNeeded => "SWHardeningNeeded",
            TdxTcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TdxTcbStatus::ConfigurationAndSwHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TdxTcbStatus::OutOfDate => "OutOfDate",
            TdxTcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TdxTcbStatus::TdRelaunchAdvised => "TDRelaunchAdvised",
            TdxTcbStatus::TdRelaunchAdvisedConfigurationNeeded => {
                "TDRelaunchAdvisedConfigurationNeeded"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_strict() {
        let p = Policy::default();
        assert!(!p.allow_insecure_dev);
        assert!(p.expected.snp.is_empty() && p.expected.tdx.is_empty());
        assert!(!p.snp.allow_smt && !p.snp.allow_migration_agent);
        assert_eq!(p.snp.vmpl, 0);
        assert_eq!(p.snp.min_tcb, SnpMinTcb::default());
        assert_ne!(p.snp.min_tcb, SnpMinTcb::none());
        assert_eq!(p.tdx.accepted_tcb_status, [TdxTcbStatus::UpToDate]);
        assert!(!p.allow_untrusted_vtpm && p.trusted_tpm_aks.is_empty());
        assert!(p.expected.snp_firmware.is_empty());
    }

    #[test]
    fn tcb_status_names_are_intels() {
        let json = serde_json::to_string(&TdxTcbStatus::ConfigurationAndSwHardeningNeeded).unwrap();
        assert_eq!(json, "\"ConfigurationAndSWHardeningNeeded\"");
        for s in [
            TdxTcbStatus::UpToDate,
            TdxTcbStatus::SwHardeningNeeded,
            TdxTcbStatus::OutOfDate,
            TdxTcbStatus::TdRelaunchAdvised,
        ] {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        let p: Policy =
            serde_json::from_str(r#"{"tdx":{"accepted_tcb_status":["OutOfDate"]}}"#).unwrap();
        assert_eq!(p.tdx.accepted_tcb_status, [TdxTcbStatus::OutOfDate]);
        assert!(!p.allow_insecure_dev);
    }
}
