//! Verifying an SEV-SNP report.
//!
//! Order: parse → signing key and algorithm → VCEK (verifier-supplied, else the evidence's
//! certificate table) or VLEK (the evidence's) → signed by AMD's Milan, Genoa or Turin ASK or
//! ASVK (built-in roots) → validity dates of ARK, ASK/ASVK, VCEK/VLEK → its TCB =
//! REPORTED_TCB → VCEK hwID = CHIP_ID (`signer.rs`) →
//! ECDSA P-384 signature over the raw report bytes → guest policy (debug, migration agent),
//! SMT, VMPL, minimum TCB. Measurement and report_data are checked by the caller
//! ([`crate::verify`]) for every TEE alike.

use p384::ecdsa::{signature::Verifier as _, Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;

pub use super::signer::SnpSigningKey;
pub use super::tcb::SnpTcb;
use super::{layout, signer};
use crate::error::{CertName, SnpError};
use crate::evidence::SnpEvidence;
use crate::measurement::Digest48;
use crate::policy::SnpPolicy;

/// The TCB versions a report carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpTcbs {
    /// REPORTED_TCB: what the VCEK is derived from and what the policy's minimum applies to.
    pub reported: SnpTcb,
    /// CURRENT_TCB.
    pub current: SnpTcb,
    /// COMMITTED_TCB.
    pub committed: SnpTcb,
    /// LAUNCH_TCB.
    pub launch: SnpTcb,
}

/// Verified SEV-SNP report fields beyond measurement and report_data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpDetails {
    /// The processor generation whose AMD root signed the VCEK: "Milan", "Genoa" or "Turin".
    pub generation: &'static str,
    /// The key that signed the report: the chip's VCEK or a cloud provider's VLEK.
    pub signing_key: SnpSigningKey,
    /// Report format version.
    pub version: u32,
    /// The guest policy (raw u64).
    pub policy: u64,
    /// The VMPL the report was requested from.
    pub vmpl: u32,
    /// Guest SVN from the ID block.
    pub guest_svn: u32,
    /// Whether SMT was enabled on the platform.
    pub smt_enabled: bool,
    /// The chip's ID.
    pub chip_id: [u8; 64],
    /// HOST_DATA supplied by the host at launch.
    pub host_data: [u8; 32],
    /// ID block family ID.
    pub family_id: [u8; 16],
    /// ID block image ID.
    pub image_id: [u8; 16],
    /// Digest of the ID key (zero without an ID block).
    pub id_key_digest: [u8; 48],
    /// Digest of the author key (zero without one).
    pub author_key_digest: [u8; 48],
    /// TCB versions.
    pub tcb: SnpTcbs,
    /// Google's verified launch endorsement naming the launch digest, when the launch was
    /// accepted as a cloud firmware's from `expected.endorsed_firmware`.
    pub firmware_endorsement: Option<crate::measurement::EndorsedFirmware>,
}

/// The outcome of [`verify`].
pub(crate) struct SnpVerified {
    pub(crate) launch_digest: Digest48,
    pub(crate) report_data: [u8; 64],
    pub(crate) details: SnpDetails,
}

/// Verifies `evidence` at `now` (unix seconds). `vcek_override` (DER) replaces the evidence's VCEK.
pub(crate) fn verify(
    evidence: &SnpEvidence,
    vcek_override: Option<&[u8]>,
    policy: &SnpPolicy,
    now: u64,
) -> Result<SnpVerified, SnpError> {
    let raw = evidence.report.as_slice();
    let report = parse(raw)?;
    let endorser = signer::endorser(&report, evidence, vcek_override, now)?;
    check_signature(raw, &endorser.cert)?;
    check_policy(&report, policy, endorser.roots.generation)?;

    tracing::debug!(
        generation = endorser.roots.generation,
        signing_key = ?endorser.key,
        vmpl = report.vmpl,
        "SNP report verified"
    );
    let mut policy_bytes = [0u8; 8];
    policy_bytes.copy_from_slice(&raw[layout::POLICY]);
    Ok(SnpVerified {
        launch_digest: Digest48(report.measurement),
        report_data: report.report_data,
        details: SnpDetails {
            generation: endorser.roots.generation,
            signing_key: endorser.key,
            version: report.version,
            policy: u64::from_le_bytes(policy_bytes),
            vmpl: report.vmpl,
            guest_svn: report.guest_svn,
            smt_enabled: report.plat_info.smt_enabled(),
            chip_id: report.chip_id,
            host_data: report.host_data,
            family_id: report.family_id,
            image_id: report.image_id,
            id_key_digest: report.id_key_digest,
            author_key_digest: report.author_key_digest,
            tcb: SnpTcbs {
                reported: report.reported_tcb.into(),
                current: report.current_tcb.into(),
                committed: report.committed_tcb.into(),
                launch: report.launch_tcb.into(),
            },
            firmware_endorsement: None,
        },
    })
}

pub(crate) fn parse(raw: &[u8]) -> Result<AttestationReport, SnpError> {
    if raw.len() != layout::LEN {
        return Err(SnpError::MalformedReport(format!(
            "{} bytes, expected {}",
            raw.len(),
            layout::LEN
        )));
    }
    let report =
        AttestationReport::from_bytes(raw).map_err(|e| SnpError::MalformedReport(e.to_string()))?;
    if report.version < 2 {
        return Err(SnpError::UnsupportedVersion(report.version));
    }
    Ok(report)
}

/// ECDSA P-384 / SHA-384 over the raw signed bytes (not a re-encoding of the parsed report),
/// by the VCEK's or VLEK's key.
fn check_signature(raw: &[u8], vcek: &x509_cert::Certificate) -> Result<(), SnpError> {
    let key = VerifyingKey::from_sec1_bytes(
        vcek.tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes(),
    )
    .map_err(|e| SnpError::MalformedCertificate {
        cert: CertName::Vcek,
        reason: format!("not a P-384 public key: {e}"),
    })?;
    let r = scalar_be(&raw[layout::SIG_R]).ok_or(SnpError::BadSignature)?;
    let s = scalar_be(&raw[layout::SIG_S]).ok_or(SnpError::BadSignature)?;
    let sig = Signature::from_scalars(r, s).map_err(|_| SnpError::BadSignature)?;
    key.verify(&raw[layout::SIGNED], &sig)
        .map_err(|_| SnpError::BadSignature)
}

/// A 72-byte little-endian signature component → 48 bytes big-endian; the top 24 bytes must
/// be zero.
fn scalar_be(le: &[u8]) -> Option<[u8; 48]> {
    if le.len() != 72 || le[48..].iter().any(|b| *b != 0) {
        return None;
    }
    let mut be = [0u8; 48];
    for (dst, src) in be.iter_mut().zip(le[..48].iter().rev()) {
        *dst = *src;
    }
    Some(be)
}

/// The policy checks on signed fields; the minimum TCB is `generation`'s.
pub(crate) fn check_policy(
    report: &AttestationReport,
    policy: &SnpPolicy,
    generation: &str,
) -> Result<(), SnpError> {
    if report.policy.debug_allowed() {
        return Err(SnpError::DebugAllowed);
    }
    if report.policy.migrate_ma_allowed() && !policy.allow_migration_agent {
        return Err(SnpError::MigrationAgentAllowed);
    }
    if report.plat_info.smt_enabled() && !policy.allow_smt {
        return Err(SnpError::SmtEnabled);
    }
    if report.vmpl != policy.vmpl {
        return Err(SnpError::VmplMismatch {
            expected: policy.vmpl,
            got: report.vmpl,
        });
    }
    SnpTcb::from(report.reported_tcb).check_at_least(&policy.min_tcb.for_generation(generation))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use x509_cert::der::Decode;

    use super::*;
    use crate::error::{MeasurementError, Register, VerifyError};
    use crate::evidence::Evidence;
    use crate::measurement::SnpMeasurement;
    use crate::policy::Policy;
    use crate::testing::vectors::{self, *};
    use crate::verify::{verify_with, Endorsements, Measurements, Tcb};
    use crate::Tee;

    // Read out of the vectors with Python (see testdata/README.md).
    const MILAN_MEASUREMENT: &str = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";
    const MILAN_REPORT_DATA: &str = "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd";
    const GCP_MEASUREMENT: &str = "b747d55452e0b9e9079770a49e397c5e6d9573581e246da7baac4f28b5cdc5b1b6d19251b8ee600fd16a3708f58406f3";
    const GCP_VMPL1_REPORT_DATA: &str = "3a6753fd4b194de53824d7fd5b45e251cc19a32a71dd5ba3e131fe19f2adbe86d658c147479571226e0f294eb7e44abb6c1673f39a5378ac25cd5d6268b91f1a";

    /// The policy under which the vectors pass: their launch digest and report_data, SMT
    /// allowed (both platforms have SMT on).
    fn policy(measurement: &str, report_data: Option<&str>) -> Policy {
        let mut p = Policy::default();
        p.snp.allow_smt = true;
        p.expected.snp.push(SnpMeasurement {
            launch_digest: measurement.parse().unwrap(),
            label: None,
        });
        p.expected_report_data = report_data.map(|h| crate::encoding::parse::<64>(h).unwrap());
        p
    }

    /// The recorded Milan report (SNP SPL 8, 2022) is below AMD-SB-3019's minimum (0x18),
    /// which the default policy enforces: tests not about the TCB lower Milan's minimum to
    /// the report's own, as `--snp-min-tcb milan:bl=3,snp=8,ucode=0x73` would.
    fn milan_policy() -> Policy {
        let mut p = policy(MILAN_MEASUREMENT, Some(MILAN_REPORT_DATA));
        p.snp
            .min_tcb
            .apply(&"milan:bl=3,snp=8,ucode=0x73".parse().unwrap());
        p
    }

    fn check(e: SnpEvidence, p: &Policy) -> Result<crate::Verified, VerifyError> {
        crate::verify(&Evidence::Snp(e), p, snp_now())
    }

    fn check_at(e: SnpEvidence, p: &Policy, unix: u64) -> Result<crate::Verified, VerifyError> {
        crate::verify(&Evidence::Snp(e), p, UNIX_EPOCH + Duration::from_secs(unix))
    }

    fn with_report(f: impl FnOnce(&mut Vec<u8>)) -> SnpEvidence {
        let mut report = milan_report();
        f(&mut report);
        vectors::snp(&report, MILAN_VCEK)
    }

    fn snp_err(r: Result<crate::Verified, VerifyError>) -> SnpError {
        match r {
            Err(VerifyError::Snp(e)) => e,
            other => panic!("expected an SNP error, got {other:?}"),
        }
    }

    #[test]
    fn milan_v2_report_verifies_with_its_vcek_and_amd_roots() {
        let v = check(milan(), &milan_policy()).unwrap();
        assert_eq!(v.tee, Tee::Snp);
        assert_eq!(v.snp.as_ref().unwrap().signing_key, SnpSigningKey::Vcek);
        assert!(!v.insecure);
        assert_eq!(hex::encode(v.report_data), MILAN_REPORT_DATA);
        assert_eq!(
            v.measurements,
            Measurements::Snp {
                launch_digest: MILAN_MEASUREMENT.parse().unwrap()
            }
        );
        let d = v.snp.unwrap();
        assert_eq!(d.generation, "Milan");
        assert_eq!((d.version, d.vmpl, d.policy), (2, 0, 0x30000));
        assert!(d.smt_enabled);
        let want = SnpTcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 0x73,
            fmc: None,
        };
        assert_eq!(d.tcb.reported, want);
        assert_eq!(v.tcb, Tcb::Snp(d.tcb));
    }

    #[test]
    fn gcp_v5_reports_verify() {
        let v = check(
            vectors::snp(GCP_V5_VMPL0, GCP_V5_VMPL0_VCEK),
            &policy(GCP_MEASUREMENT, Some(&"00".repeat(64))),
        )
        .unwrap();
        let d = v.snp.unwrap();
        assert_eq!((d.version, d.vmpl, d.generation), (5, 0, "Milan"));
        assert_eq!(
            d.tcb.reported,
            SnpTcb {
                bootloader: 4,
                tee: 0,
                snp: 0x1b,
                microcode: 0xde,
                fmc: None
            }
        );
    }

    #[test]
    fn vmpl_must_match_the_policy() {
        let e = vectors::snp(GCP_V5_VMPL1, GCP_V5_VMPL1_VCEK);
        let mut p = policy(GCP_MEASUREMENT, Some(GCP_VMPL1_REPORT_DATA));
        assert_eq!(
            snp_err(check(e.clone(), &p)),
            SnpError::VmplMismatch {
                expected: 0,
                got: 1
            }
        );
        p.snp.vmpl = 1;
        assert_eq!(check(e, &p).unwrap().snp.unwrap().vmpl, 1);
    }

    #[test]
    fn smt_is_refused_unless_allowed() {
        let mut p = milan_policy();
        p.snp.allow_smt = false;
        assert_eq!(snp_err(check(milan(), &p)), SnpError::SmtEnabled);
    }

    #[test]
    fn the_default_minimum_refuses_a_report_from_before_sb3019() {
        let p = policy(MILAN_MEASUREMENT, Some(MILAN_REPORT_DATA));
        assert_eq!(p.snp.min_tcb, crate::SnpMinTcb::default());
        assert_eq!(
            snp_err(check(milan(), &p)),
            SnpError::TcbTooLow {
                component: "snp",
                min: 0x18,
                got: 8
            }
        );
        // A newer Milan report (GCP, SNP SPL 0x1b) passes the default.
        let gcp = policy(GCP_MEASUREMENT, Some(&"00".repeat(64)));
        assert!(check(vectors::snp(GCP_V5_VMPL0, GCP_V5_VMPL0_VCEK), &gcp).is_ok());
    }

    #[test]
    fn minimum_tcb_is_the_reports_generations() {
        // A high Genoa and Turin minimum does not apply to Milan evidence, a Milan one does.
        let mut p = milan_policy();
        p.snp.min_tcb.apply(&"genoa:snp=0xff".parse().unwrap());
        p.snp
            .min_tcb
            .apply(&"turin:0xff000000ffffffff".parse().unwrap());
        assert!(check(milan(), &p).is_ok());
        p.snp
            .min_tcb
            .apply(&"milan:0x7308000000000003".parse().unwrap());
        assert!(
            check(milan(), &p).is_ok(),
            "the report's own TCB, in raw form"
        );
        p.snp
            .min_tcb
            .apply(&"milan:0x7408000000000003".parse().unwrap());
        assert_eq!(
            snp_err(check(milan(), &p)),
            SnpError::TcbTooLow {
                component: "microcode",
                min: 0x74,
                got: 0x73
            }
        );
    }

    #[test]
    fn minimum_tcb_is_enforced_per_component() {
        let mut p = milan_policy();
        p.snp.min_tcb.milan = SnpTcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 0x73,
            fmc: None,
        };
        assert!(check(milan(), &p).is_ok());
        p.snp.min_tcb.milan.snp = 9;
        assert_eq!(
            snp_err(check(milan(), &p)),
            SnpError::TcbTooLow {
                component: "snp",
                min: 9,
                got: 8
            }
        );
        p.snp.min_tcb.milan.snp = 0;
        p.snp.min_tcb.milan.microcode = 0x74;
        assert!(matches!(
            snp_err(check(milan(), &p)),
            SnpError::TcbTooLow {
                component: "microcode",
                ..
            }
        ));
    }

    #[test]
    fn wrong_measurement_or_report_data_is_refused_with_its_own_error() {
        let mut flipped = MILAN_MEASUREMENT.to_owned();
        flipped.replace_range(0..1, "6");
        let mut p = milan_policy();
        p.expected.snp[0].launch_digest = flipped.parse().unwrap();
        assert!(matches!(
            check(milan(), &p),
            Err(VerifyError::Measurement(MeasurementError::Mismatch {
                register: Register::LaunchDigest,
                ..
            }))
        ));
        let mut p = milan_policy();
        p.expected.snp.clear();
        assert!(matches!(
            check(milan(), &p),
            Err(VerifyError::Measurement(
                MeasurementError::NoneExpected { .. }
            ))
        ));
        let mut p = milan_policy();
        if let Some(rd) = p.expected_report_data.as_mut() {
            rd[63] ^= 1;
        }
        assert!(matches!(
            check(milan(), &p),
            Err(VerifyError::ReportDataMismatch { .. })
        ));
    }

    #[test]
    fn flipped_bits_in_signed_fields_break_the_signature() {
        // One bit in the measurement, the report_data, the host data, the policy's debug bit,
        // the guest SVN: each is covered by the signature and nothing else looks at it first.
        for (offset, bit) in [
            (layout::MEASUREMENT.start, 0x01),
            (layout::MEASUREMENT.end - 1, 0x80),
            (layout::REPORT_DATA.start + 7, 0x10),
            (0xC0, 0x01),                     // HOST_DATA
            (layout::POLICY.start + 2, 0x08), // DEBUG (bit 19)
            (0x04, 0x01),                     // GUEST_SVN
        ] {
            let e = with_report(|r| r[offset] ^= bit);
            assert_eq!(
                snp_err(check(e, &milan_policy())),
                SnpError::BadSignature,
                "offset {offset:#x}"
            );
        }
    }

    #[test]
    fn no_single_byte_change_in_the_signed_part_is_accepted() {
        // Every 3rd byte of the signed region, to keep the debug-build test quick.
        for offset in (layout::SIGNED).step_by(3) {
            let e = with_report(|r| r[offset] ^= 0x01);
            assert!(
                check(e, &milan_policy()).is_err(),
                "offset {offset:#x} accepted"
            );
        }
    }

    #[test]
    fn flipped_signature_is_refused() {
        for offset in [
            layout::SIG_R.start,
            layout::SIG_R.start + 47,
            layout::SIG_S.start + 20,
        ] {
            let e = with_report(|r| r[offset] ^= 0x01);
            assert_eq!(snp_err(check(e, &milan_policy())), SnpError::BadSignature);
        }
        // The 24 high bytes of each 72-byte component must be zero.
        let e = with_report(|r| r[layout::SIG_R.start + 60] = 1);
        assert_eq!(snp_err(check(e, &milan_policy())), SnpError::BadSignature);
    }

    #[test]
    fn chip_id_and_reported_tcb_are_checked_against_the_vcek() {
        let e = with_report(|r| r[layout::CHIP_ID.start + 5] ^= 0x01);
        assert_eq!(
            snp_err(check(e, &milan_policy())),
            SnpError::VcekChipIdMismatch
        );
        // REPORTED_TCB byte 6 is the SNP SPL (8 in this report).
        let e = with_report(|r| r[layout::REPORTED_TCB.start + 6] = 9);
        assert_eq!(
            snp_err(check(e, &milan_policy())),
            SnpError::VcekTcbMismatch {
                component: "snp",
                vcek: 8,
                report: 9
            }
        );
    }

    #[test]
    fn a_vcek_for_another_chip_or_tcb_is_refused() {
        // The GCP VCEK (bootloader SPL 4) with the Milan report (bootloader 3).
        let e = vectors::snp(&milan_report(), GCP_V5_VMPL0_VCEK);
        assert!(matches!(
            snp_err(check(e, &milan_policy())),
            SnpError::VcekTcbMismatch {
                component: "bootloader",
                vcek: 4,
                report: 3
            }
        ));
        // Same TCB, other VCEK of the same chip: accepted (both are AMD's for this chip).
        let e = vectors::snp(GCP_V5_VMPL1, GCP_V5_VMPL0_VCEK);
        let mut p = policy(GCP_MEASUREMENT, Some(GCP_VMPL1_REPORT_DATA));
        p.snp.vmpl = 1;
        assert!(check(e, &p).is_ok());
    }

    #[test]
    fn tampered_vcek_is_not_signed_by_amd() {
        // Byte 40 lies in the TBS (serial / signature algorithm area); the last byte in the
        // ASK's RSA-PSS signature.
        for offset in [40, MILAN_VCEK.len() - 1] {
            let mut vcek = MILAN_VCEK.to_vec();
            vcek[offset] ^= 0x01;
            let e = vectors::snp(&milan_report(), &vcek);
            let err = snp_err(check(e, &milan_policy()));
            assert!(
                matches!(
                    err,
                    SnpError::VcekNotSignedByAmd | SnpError::MalformedCertificate { .. }
                ),
                "offset {offset}: {err:?}"
            );
        }
        let mut vcek = MILAN_VCEK.to_vec();
        vcek[MILAN_VCEK.len() - 1] ^= 0x01;
        assert_eq!(
            snp_err(check(vectors::snp(&milan_report(), &vcek), &milan_policy())),
            SnpError::VcekNotSignedByAmd
        );
    }

    #[test]
    fn turin_vcek_chains_to_the_turin_root() {
        let ask = |der: &[u8]| {
            let cert = x509_cert::Certificate::from_der(der).unwrap();
            signer::issuer(&cert, |r| &r.chain.ask).unwrap().generation
        };
        assert_eq!(ask(TURIN_VCEK), "Turin");
        assert_eq!(ask(MILAN_VCEK), "Milan");
        // A Turin VCEK does not vouch for the Milan chip's report.
        let e = vectors::snp(&milan_report(), TURIN_VCEK);
        assert!(matches!(
            snp_err(check(e, &milan_policy())),
            SnpError::VcekTcbMismatch { .. } | SnpError::VcekChipIdMismatch
        ));
    }

    #[test]
    fn vcek_validity_dates_are_enforced() {
        // vcek_milan.der: notBefore 2023-04-03T19:23:43Z, notAfter 2030-04-03T19:23:43Z.
        assert_eq!(
            snp_err(check_at(milan(), &milan_policy(), 1_680_549_823 - 1)),
            SnpError::CertificateNotYetValid {
                cert: CertName::Vcek,
                not_before: 1_680_549_823,
                now: 1_680_549_822
            }
        );
        assert!(check_at(milan(), &milan_policy(), 1_680_549_823).is_ok());
        assert!(matches!(
            snp_err(check_at(milan(), &milan_policy(), 1_901_474_623 + 1)),
            SnpError::CertificateExpired {
                cert: CertName::Vcek,
                not_after: 1_901_474_623,
                ..
            }
        ));
    }

    #[test]
    fn the_verifiers_vcek_replaces_the_evidences() {
        let bare = SnpEvidence {
            report: milan_report(),
            certs: vec![],
            tpm: None,
        };
        assert_eq!(
            snp_err(check(bare.clone(), &milan_policy())),
            SnpError::MissingVcek
        );
        let supplied = Endorsements {
            snp_vcek: Some(MILAN_VCEK.to_vec()),
            tdx_collateral: None,
        };
        let p = milan_policy();
        assert!(verify_with(&Evidence::Snp(bare), &p, &supplied, snp_now()).is_ok());
        // A wrong VCEK in the evidence does not matter when the verifier supplies the right one.
        let wrong = vectors::snp(&milan_report(), GCP_V5_VMPL0_VCEK);
        assert!(verify_with(&Evidence::Snp(wrong), &p, &supplied, snp_now()).is_ok());
    }

    #[test]
    fn signing_key_and_algorithm_fields_are_checked() {
        let e = with_report(|r| r[0x34] = 2); // SIG_ALGO
        assert_eq!(
            snp_err(check(e, &milan_policy())),
            SnpError::UnsupportedSignatureAlgorithm(2)
        );
        let e = with_report(|r| r[0x48] = 2 << 2); // KEY_INFO.SIGNING_KEY = reserved
        assert_eq!(
            snp_err(check(e, &milan_policy())),
            SnpError::UnsupportedSigningKey(2)
        );
        let e = with_report(|r| r[0x48] = 7 << 2); // KEY_INFO.SIGNING_KEY = none
        assert_eq!(snp_err(check(e, &milan_policy())), SnpError::Unsigned);
        let e = with_report(|r| r[0x48] = 0b10); // MASK_CHIP_KEY
        assert_eq!(snp_err(check(e, &milan_policy())), SnpError::Unsigned);
    }

    #[test]
    fn malformed_reports_are_refused() {
        let e = with_report(|r| r.truncate(1000));
        assert!(matches!(
            snp_err(check(e, &milan_policy())),
            SnpError::MalformedReport(_)
        ));
        let e = with_report(|r| r[0] = 1); // version 1
        assert!(matches!(
            snp_err(check(e, &milan_policy())),
            SnpError::MalformedReport(_) | SnpError::UnsupportedVersion(1)
        ));
    }

    /// Policy checks on signed fields, on a parsed report with the field changed (a real
    /// report with these bits would need a debug or migratable guest on AMD hardware).
    #[test]
    fn guest_policy_bits_are_refused() {
        let base = parse(&milan_report()).unwrap();
        let mut p = SnpPolicy {
            allow_smt: true,
            min_tcb: crate::SnpMinTcb::none(),
            ..Default::default()
        };
        assert!(check_policy(&base, &p, "Milan").is_ok());

        let mut r = base;
        r.policy.set_debug_allowed(true);
        assert_eq!(check_policy(&r, &p, "Milan"), Err(SnpError::DebugAllowed));

        let mut r = base;
        r.policy.set_migrate_ma_allowed(true);
        assert_eq!(
            check_policy(&r, &p, "Milan"),
            Err(SnpError::MigrationAgentAllowed)
        );
        p.allow_migration_agent = true;
        assert!(check_policy(&r, &p, "Milan").is_ok());
    }

    #[test]
    fn at_time_is_taken_from_the_argument() {
        // The same evidence is accepted now and refused in 2031: the clock is the caller's.
        assert!(check(milan(), &milan_policy()).is_ok());
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(1_924_992_000);
        assert!(crate::verify(&Evidence::Snp(milan()), &milan_policy(), later).is_err());
    }
}
