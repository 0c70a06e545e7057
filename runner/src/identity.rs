//! The runner's identity: a key pair made at boot, in memory only, whose
//! public half the attestation evidence binds (report_data).

use ed25519_dalek::SigningKey;
use ed25519_dalek::VerifyingKey;

/// Algorithm name of the identity key, as bound into report_data.
pub const IDENTITY_ALGORITHM: &str = "ed25519";

/// The context string bound into `GET /attestation` evidence.
pub const ATTESTATION_CONTEXT: &[u8] = b"smart-worker/runner/attestation/v1";

#[derive(Debug, thiserror::Error)]
#[error("no randomness for the identity key: {0}")]
pub struct IdentityError(getrandom::Error);

/// The runner's identity key pair. Never written anywhere; a new one each boot.
pub struct Identity {
    signing: SigningKey,
}

impl Identity {
    pub fn generate() -> Result<Self, IdentityError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(IdentityError)?;
        let signing = SigningKey::from_bytes(&secret);
        secret.fill(0);
        Ok(Self { signing })
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// report_data binding this identity, a verifier's nonce and a context.
    pub fn report_data(&self, nonce: &[u8], context: &[u8]) -> [u8; 64] {
        let public = self.public_key().to_bytes();
        let keys = [attest::BoundKey {
            algorithm: IDENTITY_ALGORITHM,
            public_key: &public,
        }];
        attest::report_data_for(&keys, nonce, context)
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public_key", &hex::encode(self.public_key().as_bytes()))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_boot_gets_a_new_key_and_the_binding_covers_key_nonce_and_context() {
        let a = Identity::generate().unwrap();
        let b = Identity::generate().unwrap();
        assert_ne!(a.public_key(), b.public_key());
        let bound = a.report_data(b"nonce", ATTESTATION_CONTEXT);
        assert_eq!(bound, a.report_data(b"nonce", ATTESTATION_CONTEXT));
        assert_ne!(bound, b.report_data(b"nonce", ATTESTATION_CONTEXT));
        assert_ne!(bound, a.report_data(b"other", ATTESTATION_CONTEXT));
        assert_ne!(bound, a.report_data(b"nonce", b"another context"));
    }

    #[test]
    fn debug_output_shows_only_the_public_key() {
        let identity = Identity::generate().unwrap();
        let shown = format!("{identity:?}");
        assert!(shown.contains(&hex::encode(identity.public_key().as_bytes())));
        assert!(!shown.contains(&hex::encode(identity.signing.to_bytes())));
    }
}
