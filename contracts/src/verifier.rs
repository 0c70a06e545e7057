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
//! - `none` (development): `keccak256("smart-worker/measurement/none")`;
//! - a UEFI boot the verifier accepted by the image's predicted boot events (a cloud's TDX
//!   with its CCEL log, or a TPM whose log identifies the image): [`uefi_measurement`], over the
//!   platform's name and its predicted events and register values — one per (cloud, image)
//!   pair. The launch digest or MRTD there is the cloud firmware's, the same for every image, so
//!   it cannot be the on-chain measurement; the verifier holds that firmware to its allow-list.

use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::{keccak256, Address, B256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use alloy::sol_types::{eip712_domain, SolStruct};
use attest::{Digest48, Evidence, Measurements, Policy, TdxMeasurements, UefiPlatform, Verified};

use crate::keys::{typed, Authorization, AuthorizationRequest, BoxFuture, EvidenceVerifier};

/// The domain of [`uefi_measurement`]'s hash.
pub const UEFI_MEASUREMENT_DOMAIN: &[u8] = b"smart-worker/measurement/uefi/v1";

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
        let measurement = verified_measurement(&verified, &policy);
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

/// The on-chain measurement of what `policy` accepted in `verified`: the image's platform
/// prediction when the boot was accepted by its event log ([`uefi_measurement`]), else the
/// launch measurements ([`onchain_measurement`]).
pub fn verified_measurement(verified: &Verified, policy: &Policy) -> B256 {
    let platform = verified
        .tdx
        .as_ref()
        .and_then(|t| t.uefi_platform.as_deref())
        .or_else(|| verified.tpm.as_ref()?.uefi_platform.as_deref());
    match platform.and_then(|name| policy.expected.uefi.iter().find(|p| p.platform == name)) {
        Some(platform) => uefi_measurement(platform),
        None => onchain_measurement(&verified.measurements),
    }
}

/// `keccak256(domain ‖ platform ‖ each predicted event ‖ each predicted value ‖ each closed
/// register)`, every field length-prefixed (u32, big-endian): the events in the manifest's order
/// as (register, event type, bank, digest, optional as one byte), the values in register order as
/// (register, value), then the closed registers in order. The prose (`trust`,
/// `what`) is left out, so rewording a manifest does not change it.
pub fn uefi_measurement(platform: &UefiPlatform) -> B256 {
    fn put(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    let mut bytes = Vec::new();
    put(&mut bytes, UEFI_MEASUREMENT_DOMAIN);
    put(&mut bytes, platform.platform.as_bytes());
    let prediction = &platform.prediction;
    put(&mut bytes, &(prediction.events.len() as u32).to_be_bytes());
    for event in &prediction.events {
        put(&mut bytes, event.register.to_string().as_bytes());
        put(&mut bytes, event.event_type.to_string().as_bytes());
        put(&mut bytes, event.digest_alg.to_string().as_bytes());
        put(&mut bytes, &event.digest);
        put(&mut bytes, &[u8::from(event.optional)]);
    }
    put(&mut bytes, &(prediction.values.len() as u32).to_be_bytes());
    for (register, value) in &prediction.values {
        put(&mut bytes, register.to_string().as_bytes());
        put(&mut bytes, value);
    }
    put(&mut bytes, &(prediction.closed.len() as u32).to_be_bytes());
    for register in &prediction.closed {
        put(&mut bytes, register.to_string().as_bytes());
    }
    keccak256(bytes)
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
/// owner passes to `setMeasurement`): the expected SNP and TDX launches, one per (platform,
/// image) of the image's predicted UEFI boots, and the `none` measurement when the policy
/// allows development evidence.
pub fn allowed_measurements(policy: &Policy) -> Vec<B256> {
    allowed_measurements_named(policy)
        .into_iter()
        .map(|(_, m)| m)
        .collect()
}

/// [`allowed_measurements`], each with what it stands for ("snp", "tdx", "uefi gcp-tdx", …).
pub fn allowed_measurements_named(policy: &Policy) -> Vec<(String, B256)> {
    let expected = &policy.expected;
    let snp = expected
        .snp
        .iter()
        .map(|m| ("snp".to_owned(), snp_measurement(&m.launch_digest)));
    let tdx = expected
        .tdx
        .iter()
        .map(|m| ("tdx".to_owned(), tdx_measurement(m)));
    let uefi = expected
        .uefi
        .iter()
        .map(|p| (format!("uefi {}", p.platform), uefi_measurement(p)));
    let none = policy
        .allow_insecure_dev
        .then(|| ("none (development)".to_owned(), none_measurement()));
    snp.chain(tdx).chain(uefi).chain(none).collect()
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

    fn platform(name: &str, digest_byte: u8) -> UefiPlatform {
        let prediction: attest::eventlog::PlatformPrediction =
            serde_json::from_value(serde_json::json!({
                "trust": "the firmware's word",
                "events": [{
                    "register": "PCR4",
                    "event_type": "EV_EFI_BOOT_SERVICES_APPLICATION",
                    "digest_alg": "sha256",
                    "digest": hex::encode([digest_byte; 32]),
                    "what": "the UKI"
                }],
                "values": { "PCR4": hex::encode([7u8; 32]) }
            }))
            .unwrap();
        UefiPlatform {
            platform: name.to_owned(),
            prediction,
        }
    }

    #[test]
    fn each_cloud_and_image_gets_its_own_onchain_measurement_and_prose_does_not_count() {
        let a = platform("gcp-tdx", 1);
        let base = uefi_measurement(&a);
        // Another cloud, same image: another measurement.
        assert_ne!(uefi_measurement(&platform("azure-vtpm", 1)), base);
        // Another image (one byte of the UKI's digest), same cloud: another measurement.
        assert_ne!(uefi_measurement(&platform("gcp-tdx", 2)), base);
        // A predicted register value changed: another measurement.
        let mut value = a.clone();
        value.prediction.values.values_mut().for_each(|v| v[0] ^= 1);
        assert_ne!(uefi_measurement(&value), base);
        // An event made optional, or a register closed: another policy, another measurement.
        let mut optional = a.clone();
        optional.prediction.events[0].optional = true;
        assert_ne!(uefi_measurement(&optional), base);
        let mut closed = a.clone();
        closed
            .prediction
            .closed
            .insert(attest::eventlog::MeasuredRegister::Pcr(4));
        assert_ne!(uefi_measurement(&closed), base);
        // Rewording the manifest's prose changes nothing.
        let mut reworded = a.clone();
        reworded.prediction.trust = "other words".into();
        reworded.prediction.events[0].what = "the kernel image".into();
        assert_eq!(uefi_measurement(&reworded), base);
        // The verifier lists one per platform, named.
        let policy = Policy {
            expected: ExpectedMeasurements {
                uefi: vec![a.clone(), platform("azure-vtpm", 1)],
                ..ExpectedMeasurements::default()
            },
            ..Policy::default()
        };
        let named = allowed_measurements_named(&policy);
        assert_eq!(
            named,
            vec![
                ("uefi gcp-tdx".to_owned(), base),
                (
                    "uefi azure-vtpm".to_owned(),
                    uefi_measurement(&platform("azure-vtpm", 1))
                )
            ]
        );
    }

    #[test]
    fn a_boot_accepted_by_its_event_log_is_signed_as_its_platform_not_its_firmware() {
        let a = platform("qemu-ovmf-tpm", 1);
        let policy = Policy {
            allow_insecure_dev: true,
            expected: ExpectedMeasurements {
                uefi: vec![a.clone()],
                ..ExpectedMeasurements::default()
            },
            ..Policy::default()
        };
        let tpm = attest::VerifiedTpm {
            ak_name: attest::AkName(vec![0; 34]),
            ak_trust: attest::AkTrust::InsecureDev,
            pcrs: Default::default(),
            event_log_replayed: true,
            uefi_platform: Some("qemu-ovmf-tpm".into()),
            ak_certificate_subject: None,
        };
        let mut verified = Verified {
            tee: attest::Tee::None,
            insecure: true,
            report_data: [0; 64],
            measurements: Measurements::None,
            tcb: attest::Tcb::None,
            snp: None,
            tdx: None,
            tpm: Some(tpm),
        };
        assert_eq!(
            verified_measurement(&verified, &policy),
            uefi_measurement(&a)
        );
        // Without an identified platform, the launch measurements as before.
        verified.tpm.as_mut().unwrap().uefi_platform = None;
        assert_eq!(verified_measurement(&verified, &policy), none_measurement());
    }
}
