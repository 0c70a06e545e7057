//! Verification entry point: dispatch per TEE, then the checks common to all (measurement,
//! report_data).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::collateral::CollateralClient;
use crate::error::{MeasurementError, VerifyError};

use crate::evidence::{Evidence, TdxCollateral};
use crate::measurement::{Digest48, ExpectedMeasurements, TdxMeasurements};
use crate::policy::Policy;
use crate::snp::verify::{SnpTcbs, SnpVerified};
use crate::snp::SnpDetails;
use crate::tdx::verify::TdxVerified;
use crate::tdx::TdxDetails;
use crate::tpm::{verify_tpm_quote, TpmEvidence};
use crate::vtpm::{self, TpmHost, VerifiedTpm, VtpmError};
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
    /// The TPM quote, when the evidence carries one: its AK, why that AK was trusted, the
    /// quoted PCRs, and the TPM platform whose predicted boot the event log showed.
    pub tpm: Option<VerifiedTpm>,
}

/// A policy and the verifier's own endorsements, ready to verify evidence.
#[derive(Clone, Debug, Default)]
pub struct Verifier {
    /// The policy.
    pub policy: Policy,
    /// Endorsements that replace the evidence's.
    pub endorsements: Endorsements,
    /// Where to fetch what neither `endorsements` nor the evidence supplies (an SNP VCEK, TDX
    /// collateral); `None`: nothing is fetched.
    pub collateral: Option<Arc<CollateralClient>>,
}

impl Verifier {
    /// A verifier with `policy` and no endorsements of its own.
    pub fn new(policy: Policy) -> Self {
        Verifier {
            policy,
            endorsements: Endorsements::default(),
            collateral: None,
        }
    }

    /// The same, fetching missing collateral with `client`.
    pub fn with_collateral(mut self, client: Arc<CollateralClient>) -> Self {
        self.collateral = Some(client);
        self
    }

    /// Verifies `evidence` at time `now`.
    pub fn verify(&self, evidence: &Evidence, now: SystemTime) -> Result<Verified, VerifyError> {
        self.verify_with_policy(evidence, &self.policy, now)
    }

    /// Verifies `evidence` against `policy` (e.g. this verifier's with a per-request
    /// `expected_report_data`) with this verifier's endorsements and collateral client: what the
    /// evidence lacks (an SNP VCEK, TDX collateral) and, with a Google root configured, Google's
    /// launch endorsement of a cloud firmware measurement the policy does not already accept.
    /// Fetching blocks: call it off async workers (`spawn_blocking`) where that matters.
    pub fn verify_with_policy(
        &self,
        evidence: &Evidence,
        policy: &Policy,
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let endorsed = self.fetch_firmware_endorsement(evidence, policy, now)?;
        let policy = match endorsed {
            Some(endorsed) => {
                let mut with = policy.clone();
                with.expected.endorsed_firmware.push(endorsed);
                std::borrow::Cow::Owned(with)
            }
            None => std::borrow::Cow::Borrowed(policy),
        };
        let mut endorsements = self.endorsements.clone();
        if let Some(client) = &self.collateral {
            if crate::collateral::needs_collateral(evidence, &endorsements) {
                let fetched = client.endorsements_blocking(evidence, now)?;
                endorsements.snp_vcek = endorsements.snp_vcek.or(fetched.snp_vcek);
                endorsements.tdx_collateral =
                    endorsements.tdx_collateral.or(fetched.tdx_collateral);
            }
        }
        verify_with(evidence, &policy, &endorsements, now)
    }

    /// Google's endorsement of the evidence's cloud firmware measurement, when the policy does
    /// not accept that measurement otherwise and the collateral client has a Google root.
    pub(crate) fn fetch_firmware_endorsement(
        &self,
        evidence: &Evidence,
        policy: &Policy,
        now: SystemTime,
    ) -> Result<Option<crate::measurement::EndorsedFirmware>, VerifyError> {
        let Some(client) = self
            .collateral
            .as_ref()
            .filter(|c| c.config().google_root.is_some())
        else {
            return Ok(None);
        };
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let Some((tee, measurement)) =
            crate::collateral::wanted_endorsement(evidence, &policy.expected, secs)
        else {
            return Ok(None);
        };
        Ok(client.google_endorsement_blocking(tee, &measurement, now)?)
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
            let tpm = check_tpm(
                n.tpm.as_ref(),
                &n.report_data,
                TpmHost::NoTee,
                policy,
                false,
                now,
            )?;
            Verified {
                tee: Tee::None,
                insecure: true,
                report_data: n.report_data,
                measurements: Measurements::None,
                tcb: Tcb::None,
                snp: None,
                tdx: None,
                tpm,
            }
        }
        Evidence::Snp(e) => {
            let mut v = snp::verify::verify(e, endorsements.snp_vcek.as_deref(), &policy.snp, now)?;
            let identified = check_snp_launch(
                &policy.expected,
                &v.launch_digest,
                &v.details.id_key_digest,
                e.tpm.is_some(),
                now,
            )?;
            if !identified {
                v.details.firmware_endorsement = policy
                    .expected
                    .snp_endorsement(&v.launch_digest, now)
                    .cloned();
            }
            let tpm = check_tpm(
                e.tpm.as_ref(),
                &v.report_data,
                TpmHost::OutsideTee,
                policy,
                !identified,
                now,
            )?;
            snp_verified(v, tpm)
        }
        Evidence::Tdx(e) => {
            let mut v =
                tdx::verify::verify(e, endorsements.tdx_collateral.as_ref(), &policy.tdx, now)?;
            v.details.uefi_platform = tdx::boot::check_launch(
                &policy.expected,
                &v.measurements,
                e.event_log.as_deref(),
                now,
            )?;
            if v.details.uefi_platform.is_some() {
                v.details.firmware_endorsement = policy
                    .expected
                    .tdx_endorsement(&v.measurements.mrtd, now)
                    .cloned();
            }
            // The TD is identified by its registers (or its CCEL log); a vTPM beside it is
            // checked, and its predictions too when the policy has TPM platforms.
            let tpm = check_tpm(
                e.tpm.as_ref(),
                &v.report_data,
                TpmHost::OutsideTee,
                policy,
                false,
                now,
            )?;
            tdx_verified(v, tpm)
        }
        Evidence::AzureVtpm(a) => {
            let (hw, report_data, tpm) = vtpm::verify_azure(a, policy, endorsements, now)?;
            let hardware = match hw {
                vtpm::AzureHardware::Snp(hw) => snp_verified(hw, Some(tpm)),
                vtpm::AzureHardware::Tdx(hw) => tdx_verified(hw, Some(tpm)),
            };
            Verified {
                report_data,
                ..hardware
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

fn tdx_verified(v: TdxVerified, tpm: Option<VerifiedTpm>) -> Verified {
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
        tpm,
    }
}

fn snp_verified(v: SnpVerified, tpm: Option<VerifiedTpm>) -> Verified {
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
        tpm,
    }
}

/// Accepts an SNP launch digest: the image's (`expected.snp`: returns true, the image is
/// identified), or, with a TPM quote, a cloud firmware's
/// ([`ExpectedMeasurements::snp_cloud_firmware`]: allow-listed, endorsed by Google, or signed by
/// an allowed ID key; returns false, the TPM must identify the image).
fn check_snp_launch(
    expected: &ExpectedMeasurements,
    digest: &Digest48,
    id_key_digest: &[u8; 48],
    has_tpm: bool,
    now: u64,
) -> Result<bool, VerifyError> {
    let Err(exact) = expected.check_snp(digest) else {
        return Ok(true);
    };
    let Some(why) = expected.snp_cloud_firmware(digest, id_key_digest, now) else {
        if expected.snp.is_empty()
            && !(expected.snp_firmware.is_empty()
                && expected.endorsed_firmware.is_empty()
                && expected.snp_id_keys.is_empty())
        {
            return Err(MeasurementError::SnpFirmwareNotAllowed {
                launch_digest: digest.to_string(),
            }
            .into());
        }
        return Err(exact.into());
    };
    tracing::info!(launch_digest = %digest, accepted = %why, "SNP launch is a cloud firmware");
    if !has_tpm {
        return Err(VtpmError::NoTpmEvidence {
            launch_digest: digest.to_string(),
        }
        .into());
    }
    Ok(false)
}

/// Verifies the quote of `tpm` (if any) against `report_data`, then its trust, log and image.
fn check_tpm(
    tpm: Option<&TpmEvidence>,
    report_data: &[u8; 64],
    host: TpmHost,
    policy: &Policy,
    must_identify: bool,
    now: u64,
) -> Result<Option<VerifiedTpm>, VerifyError> {
    let Some(tpm) = tpm else {
        return Ok(None);
    };
    let quote = verify_tpm_quote(tpm, report_data)?;
    vtpm::check(tpm, quote, host, policy, must_identify, now).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_google_endorsed_snp_launch_digest_is_a_cloud_firmware() {
        let endorsed = crate::measurement::EndorsedFirmware {
            uefi_digest: Digest48([1; 48]),
            signed_at: 1_798_761_600,
            valid_until: 1_900_000_000,
            tdx_mrtds: vec![],
            snp_launch_digests: vec![Digest48([0x22; 48])],
        };
        let expected = ExpectedMeasurements {
            endorsed_firmware: vec![endorsed.clone()],
            ..Default::default()
        };
        assert_eq!(
            expected.snp_endorsement(&Digest48([0x22; 48]), 0),
            Some(&endorsed)
        );
        // Not once its signing chain has expired.
        assert_eq!(
            expected.snp_endorsement(&Digest48([0x22; 48]), 1_900_000_001),
            None
        );
        assert!(matches!(
            check_snp_launch(
                &expected,
                &Digest48([0x22; 48]),
                &[0; 48],
                true,
                1_900_000_001
            ),
            Err(VerifyError::Measurement(
                MeasurementError::SnpFirmwareNotAllowed { .. }
            ))
        ));
        // Accepted as the firmware's (the TPM must then identify the image), never alone.
        assert_eq!(
            check_snp_launch(&expected, &Digest48([0x22; 48]), &[0; 48], true, 0),
            Ok(false)
        );
        assert!(matches!(
            check_snp_launch(&expected, &Digest48([0x22; 48]), &[0; 48], false, 0),
            Err(VerifyError::Vtpm(VtpmError::NoTpmEvidence { .. }))
        ));
        assert!(matches!(
            check_snp_launch(&expected, &Digest48([0x33; 48]), &[0; 48], true, 0),
            Err(VerifyError::Measurement(
                MeasurementError::SnpFirmwareNotAllowed { .. }
            ))
        ));
    }
    use crate::measurement::SnpMeasurement;
    use crate::testing::vectors::*;

    #[test]
    fn a_cloud_snp_launch_signed_by_an_allowed_id_key_is_firmware_not_the_image() {
        // Azure's paravisor, as an HCL report recorded on an Azure CVM carries it (az-cvm-vtpm
        // 0.8.2, testdata/azure): the PSP put the ID key's digest in the report.
        let hcl = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/azure/hcl-report-snp.bin"
        ))
        .unwrap();
        let report = &hcl[32..32 + 1184];
        let id_key: [u8; 48] = report[0xe0..0x110].try_into().unwrap();
        let launch = Digest48(report[0x90..0xc0].try_into().unwrap());
        let expected = ExpectedMeasurements {
            snp_id_keys: vec![crate::SnpIdKey {
                digest: Digest48(id_key),
                label: Some("Microsoft (Azure paravisor)".into()),
            }],
            ..Default::default()
        };
        assert_eq!(
            check_snp_launch(&expected, &launch, &id_key, true, 0),
            Ok(false)
        );
        assert!(expected
            .snp_cloud_firmware(&launch, &id_key, 0)
            .unwrap()
            .contains("Microsoft (Azure paravisor)"));
        // Never alone: the vTPM must identify the image.
        assert!(matches!(
            check_snp_launch(&expected, &launch, &id_key, false, 0),
            Err(VerifyError::Vtpm(VtpmError::NoTpmEvidence { .. }))
        ));
        // Another key (one bit), or none (no ID block: all zero), is not allowed.
        let mut other = id_key;
        other[47] ^= 1;
        for key in [other, [0; 48]] {
            assert!(matches!(
                check_snp_launch(&expected, &launch, &key, true, 0),
                Err(VerifyError::Measurement(
                    MeasurementError::SnpFirmwareNotAllowed { .. }
                ))
            ));
        }
        // An all-zero key in the policy does not make launches without an ID block acceptable.
        let zero = ExpectedMeasurements {
            snp_id_keys: vec![crate::SnpIdKey {
                digest: Digest48([0; 48]),
                label: None,
            }],
            ..Default::default()
        };
        assert_eq!(zero.snp_cloud_firmware(&launch, &[0; 48], 0), None);
    }

    fn milan_policy() -> Policy {
        let mut p = Policy::default();
        p.snp.allow_smt = true;
        // The recorded report predates AMD-SB-3019's minimum (see snp::verify's tests).
        p.snp.min_tcb = crate::SnpMinTcb::none();
        let report = milan_report();
        let mut digest = [0u8; 48];
        digest.copy_from_slice(&report[crate::snp::layout::MEASUREMENT]);
        p.expected.snp.push(SnpMeasurement {
            launch_digest: Digest48(digest),
            label: None,
        });
        p
    }

    #[test]
    fn real_evidence_survives_the_json_format_and_still_verifies() {
        let snp = Evidence::Snp(milan());
        let back = Evidence::from_json(&snp.to_json()).unwrap();
        assert_eq!(back, snp);
        assert!(verify(&back, &milan_policy(), snp_now()).is_ok());

        let e = tdx(TDX_V4, TDX_V4_COLLATERAL);
        let now = tdx_now(&e);
        let tdx = Evidence::Tdx(e);
        let json = tdx.to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["tee"], "tdx");
        assert!(v["collateral"]["tcb_info"]
            .as_str()
            .unwrap()
            .contains("\"TDX\""));
        let back = Evidence::from_json(&json).unwrap();
        assert_eq!(back, tdx);
        let Evidence::Tdx(t) = &back else {
            panic!("tdx")
        };
        let mut p = Policy::default();
        p.expected.tdx.push(quote_registers(&t.quote));
        assert!(verify(&back, &p, now).is_ok());
    }

    #[test]
    fn verifier_applies_its_policy_and_endorsements() {
        let bare = Evidence::Snp(crate::SnpEvidence {
            report: milan_report(),
            certs: vec![],
            tpm: None,
        });
        let mut verifier = Verifier::new(milan_policy());
        assert!(matches!(
            verifier.verify(&bare, snp_now()),
            Err(VerifyError::Snp(crate::SnpError::MissingVcek))
        ));
        verifier.endorsements.snp_vcek = Some(MILAN_VCEK.to_vec());
        assert_eq!(verifier.verify(&bare, snp_now()).unwrap().tee, Tee::Snp);
        verifier.policy.allow_insecure_dev = false;
        let none = Evidence::None(crate::NoneEvidence {
            report_data: [0; 64],
            tpm: None,
        });
        assert_eq!(
            verifier.verify(&none, snp_now()),
            Err(VerifyError::Insecure)
        );
    }
}
