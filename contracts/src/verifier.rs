//! The attestation verifier: checks a TEE's evidence with `attest` and, when it passes, signs
//! the `VerifiedEvidence` that `VerifierPermitter` trusts.
//!
//! It checks, through `attest::Verifier::verify_with_policy` (which first fetches the VCEK or
//! TDX collateral the evidence lacks when the verifier has a collateral client): the evidence's
//! signatures and certificate chain (SNP, TDX), the policy (TCB, debug, …), the launch measurements against the expected ones,
//! and that report_data equals the request's (`AuthorizationRequest::report_data`, which commits
//! to the binding of chain, registry, identity, requester, code hash and nonce). `none` evidence
//! passes only with `Policy::allow_insecure_dev`. Only then does it sign; a refusal signs
//! nothing.
//!
//! The on-chain measurement (32 bytes, what the permitter's owner allows):
//! - SEV-SNP: `keccak256(launch_digest)` (48 bytes);
//! - TDX: `keccak256(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ RTMR3)` (5 × 48 bytes: MRTD alone covers
//!   only the firmware);
//! - `none` (development): `keccak256("smart-worker/measurement/none")`.

use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::{keccak256, Address, B256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use alloy::sol_types::{eip712_domain, SolStruct};
use attest::{Digest48, Evidence, Measurements, Policy, TdxMeasurements};

use crate::keys::{typed, Authorization, AuthorizationRequest, BoxFuture, EvidenceVerifier};

/// The input of the `none` (development) measurement's hash.
pub const NONE_MEASUREMENT_INPUT: &[u8] = b"smart-worker/measurement/none";

/// Why evidence was refused. Nothing is signed in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// The evidence is not evidence JSON (format version 1).
    #[error("malformed evidence: {0}")]
    Malformed(String),
    /// `attest` refused it (signature, chain, policy, measurement, report_data, dev mode).
    #[error("evidence refused: {0}")]
    Refused(#[from] attest::VerifyError),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// The verifier: an `attest` policy (with its endorsements) and a signing key.
pub struct Verifier {
    attest: attest::Verifier,
    signer: PrivateKeySigner,
}

impl Verifier {
    /// A verifier that checks evidence with `attest` (its `policy.expected_report_data` is
    /// replaced per request) and signs with `signer`.
    pub fn new(attest: attest::Verifier, signer: PrivateKeySigner) -> Self {
        Verifier { attest, signer }
    }

    /// The signer's address, to allow in the permitter (`setVerifier`).
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// Verifies `evidence` (evidence JSON) for `request` at `now` and signs the authorization.
    pub fn authorize_at(
        &self,
        request: &AuthorizationRequest,
        evidence: &[u8],
        now: SystemTime,
    ) -> Result<Authorization, VerifierError> {
        let text = std::str::from_utf8(evidence)
            .map_err(|_| VerifierError::Malformed("not UTF-8 JSON".into()))?;
        let evidence =
            Evidence::from_json(text).map_err(|e| VerifierError::Malformed(e.to_string()))?;
        let mut policy = self.attest.policy.clone();
        policy.expected_report_data = Some(request.report_data());
        // The verifier's endorsements, and collateral fetched for what the evidence lacks.
        let verified = self.attest.verify_with_policy(&evidence, &policy, now)?;
        let measurement = onchain_measurement(&verified.measurements);
        let verified_at = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let hash = verified_evidence_signing_hash(request, measurement, verified_at);
        let signature = self
            .signer
            .sign_hash_sync(&hash)
            .map_err(|e| VerifierError::Sign(e.to_string()))?;
        Ok(Authorization {
            measurement,
            verified_at,
            signature: signature.as_bytes().to_vec().into(),
        })
    }
}

impl EvidenceVerifier for Verifier {
    fn authorize<'a>(
        &'a self,
        request: &'a AuthorizationRequest,
        evidence: &'a [u8],
    ) -> BoxFuture<'a, Result<Authorization, String>> {
        Box::pin(async move {
            self.authorize_at(request, evidence, SystemTime::now())
                .map_err(|e| e.to_string())
        })
    }
}

/// The EIP-712 digest of `VerifiedEvidence(measurement, binding, verifiedAt)` in the domain
/// ("VerifierPermitter", "1", chain id, permitter) of `request`.
pub fn verified_evidence_signing_hash(
    request: &AuthorizationRequest,
    measurement: B256,
    verified_at: u64,
) -> B256 {
    typed::VerifiedEvidence {
        measurement,
        binding: request.binding(),
        verifiedAt: verified_at,
    }
    .eip712_signing_hash(&eip712_domain! {
        name: "VerifierPermitter",
        version: "1",
        chain_id: request.chain_id,
        verifying_contract: request.permitter,
    })
}

/// The 32-byte on-chain form of verified measurements (see the module documentation).
pub fn onchain_measurement(m: &Measurements) -> B256 {
    match m {
        Measurements::Snp { launch_digest } => snp_measurement(launch_digest),
        Measurements::Tdx(t) => tdx_measurement(t),
        Measurements::None => none_measurement(),
    }
}

/// `keccak256(launch_digest)`.
pub fn snp_measurement(launch_digest: &Digest48) -> B256 {
    keccak256(launch_digest.as_bytes())
}

/// `keccak256(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ RTMR3)`.
pub fn tdx_measurement(t: &TdxMeasurements) -> B256 {
    let mut bytes = Vec::with_capacity(5 * 48);
    for r in [&t.mrtd, &t.rtmr0, &t.rtmr1, &t.rtmr2, &t.rtmr3] {
        bytes.extend_from_slice(r.as_bytes());
    }
    keccak256(bytes)
}

/// `keccak256("smart-worker/measurement/none")`: development only.
pub fn none_measurement() -> B256 {
    keccak256(NONE_MEASUREMENT_INPUT)
}

/// The on-chain form of every measurement a verifier with `policy` signs (what the permitter's
/// owner passes to `setMeasurement`): the expected SNP and TDX launches, and the `none`
/// measurement when the policy allows development evidence.
pub fn allowed_measurements(policy: &Policy) -> Vec<B256> {
    let expected = &policy.expected;
    let snp = expected
        .snp
        .iter()
        .map(|m| snp_measurement(&m.launch_digest));
    let tdx = expected.tdx.iter().map(tdx_measurement);
    let none = policy.allow_insecure_dev.then(none_measurement);
    snp.chain(tdx).chain(none).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::address;
    use attest::{ExpectedMeasurements, NoneEvidence};

    fn request() -> AuthorizationRequest {
        AuthorizationRequest {
            chain_id: 31337,
            registry: address!("0000000000000000000000000000000000000001"),
            permitter: address!("0000000000000000000000000000000000000003"),
            identity: B256::with_last_byte(42),
            requester: address!("00000000000000000000000000000000000000aa"),
            code_hash: B256::repeat_byte(0xc0),
            nonce: B256::repeat_byte(0x0e),
        }
    }

    fn dev_verifier(allow_dev: bool) -> Verifier {
        let policy = Policy {
            allow_insecure_dev: allow_dev,
            ..Policy::default()
        };
        Verifier::new(attest::Verifier::new(policy), PrivateKeySigner::random())
    }

    fn none_evidence(report_data: [u8; 64]) -> Vec<u8> {
        Evidence::None(NoneEvidence {
            report_data,
            tpm: None,
        })
        .to_json()
        .into_bytes()
    }

    #[test]
    fn dev_evidence_for_the_binding_is_signed_by_the_verifier() {
        let v = dev_verifier(true);
        let req = request();
        let now = SystemTime::now();
        let auth = v
            .authorize_at(&req, &none_evidence(req.report_data()), now)
            .unwrap();
        assert_eq!(auth.measurement, none_measurement());
        let sig = alloy::primitives::Signature::try_from(auth.signature.as_ref()).unwrap();
        let hash = verified_evidence_signing_hash(&req, auth.measurement, auth.verified_at);
        assert_eq!(
            sig.recover_address_from_prehash(&hash).unwrap(),
            v.address()
        );
    }

    #[test]
    fn none_evidence_is_refused_unless_dev_mode_is_allowed() {
        let req = request();
        let err = dev_verifier(false)
            .authorize_at(&req, &none_evidence(req.report_data()), SystemTime::now())
            .unwrap_err();
        assert!(
            matches!(err, VerifierError::Refused(attest::VerifyError::Insecure)),
            "{err:?}"
        );
    }

    #[test]
    fn evidence_for_another_binding_is_refused() {
        let v = dev_verifier(true);
        let req = request();
        for changed in [
            AuthorizationRequest {
                requester: address!("00000000000000000000000000000000000000bb"),
                ..req
            },
            AuthorizationRequest {
                code_hash: B256::repeat_byte(0xc1),
                ..req
            },
            AuthorizationRequest {
                nonce: B256::repeat_byte(0x0f),
                ..req
            },
            AuthorizationRequest { chain_id: 1, ..req },
        ] {
            let err = v
                .authorize_at(
                    &req,
                    &none_evidence(changed.report_data()),
                    SystemTime::now(),
                )
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    VerifierError::Refused(attest::VerifyError::ReportDataMismatch { .. })
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn tampered_evidence_is_refused() {
        let v = dev_verifier(true);
        let req = request();
        let good = String::from_utf8(none_evidence(req.report_data())).unwrap();
        // One report_data digit changed.
        let rd = hex::encode(req.report_data());
        let mut flipped = rd.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        let tampered = good.replace(&rd, std::str::from_utf8(&flipped).unwrap());
        assert!(matches!(
            v.authorize_at(&req, tampered.as_bytes(), SystemTime::now()),
            Err(VerifierError::Refused(_))
        ));
        // `none` evidence claiming to be secure, truncated JSON, binary junk.
        let secure = good.replace("\"insecure\":true", "\"insecure\":false");
        for junk in [secure.as_bytes(), &good.as_bytes()[..20], &[0xff, 0xfe][..]] {
            assert!(matches!(
                v.authorize_at(&req, junk, SystemTime::now()),
                Err(VerifierError::Malformed(_))
            ));
        }
    }

    #[test]
    fn malformed_snp_report_is_refused() {
        // A 3-byte "report": refused by attest before anything is signed.
        let v = Verifier::new(
            attest::Verifier::new(Policy::default()),
            PrivateKeySigner::random(),
        );
        let evidence = format!(
            r#"{{"version":1,"tee":"snp","report":"{}","certs":[]}}"#,
            "AAAA"
        );
        assert!(matches!(
            v.authorize_at(&request(), evidence.as_bytes(), SystemTime::now()),
            Err(VerifierError::Refused(_))
        ));
    }

    #[test]
    fn measurement_forms() {
        let d = Digest48([7; 48]);
        assert_eq!(snp_measurement(&d), keccak256([7u8; 48]));
        let t = TdxMeasurements {
            mrtd: Digest48([1; 48]),
            rtmr0: Digest48([2; 48]),
            rtmr1: Digest48([3; 48]),
            rtmr2: Digest48([4; 48]),
            rtmr3: Digest48([5; 48]),
            label: None,
        };
        let mut all = Vec::new();
        for b in 1..=5u8 {
            all.extend_from_slice(&[b; 48]);
        }
        assert_eq!(tdx_measurement(&t), keccak256(&all));
        assert_eq!(
            none_measurement(),
            keccak256(b"smart-worker/measurement/none")
        );
        let expected = ExpectedMeasurements {
            snp: vec![attest::SnpMeasurement {
                launch_digest: d,
                label: None,
            }],
            tdx: vec![t.clone()],
            ..ExpectedMeasurements::default()
        };
        let mut policy = Policy {
            expected,
            ..Policy::default()
        };
        assert_eq!(
            allowed_measurements(&policy),
            vec![snp_measurement(&d), tdx_measurement(&t)]
        );
        policy.allow_insecure_dev = true;
        assert_eq!(
            allowed_measurements(&policy),
            vec![snp_measurement(&d), tdx_measurement(&t), none_measurement()]
        );
    }
}
