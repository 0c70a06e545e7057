//! The `local` key store: keys derived on this runner, for development and single-appliance use.
//!
//! `key = HKDF-SHA256(salt = "smart-worker/omni-key/local/v1", ikm = root, info = code identity)`
//! (32 bytes), where the root is, by what the machine offers:
//!
//! 1. SEV-SNP: the secure processor's derived key for purpose `smart-worker/local-keys/v1`
//!    (`attest::sealing`: VCEK-rooted, mixes in the launch measurement and the guest policy).
//!    The same image on the same chip gets the same keys after a reboot; another image cannot.
//! 2. Otherwise, with a state directory: the 32-byte secret `local-keys` sealed in it (created at
//!    random once). Same keys after a restart with the same directory. Without a TEE the
//!    directory's own key lies next to it: **not protected from the host** (dev mode).
//! 3. Otherwise: a random root in memory. Keys change at every restart (dev only; logged).
//!
//! Keys stay on this runner: another appliance derives different ones (use a Sapphire store for
//! keys shared by every appliance running the same code).

use std::sync::Arc;

use attest::sealing::SealingRoot;
use hkdf::Hkdf;
use sha2_010::Sha256;
use zeroize::Zeroizing;

use super::BoxFuture;
use super::KeyBytes;
use super::KeyStore;
use super::SetupError;
use crate::state::StateDir;
use crate::worker::CodeIdentity;

/// HKDF salt of local Omni Keys. Changing it changes every local key.
pub const LOCAL_KEY_SALT: &[u8] = b"smart-worker/omni-key/local/v1";

/// The name of the state directory's secret holding the root (no SNP).
pub const STATE_SECRET: &str = "local-keys";

/// Where the root came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootSource {
    /// The SNP derived key: bound to the image's measurement and the chip.
    Snp,
    /// A secret sealed in the state directory.
    StateDir,
    /// Random, in memory: keys change at every restart.
    Ephemeral,
}

/// HKDF over a root this runner keeps.
pub struct LocalStore {
    root: SealingRoot,
    source: RootSource,
}

impl LocalStore {
    pub fn new(root: SealingRoot, source: RootSource) -> Self {
        LocalStore { root, source }
    }

    /// The root this machine offers (see the module documentation), with loud warnings where
    /// it protects nothing. Blocking calls (ioctl, state files) run on the blocking pool.
    pub async fn open(
        attester: &Arc<attest::Attester>,
        state: Option<&Arc<StateDir>>,
    ) -> Result<LocalStore, SetupError> {
        // Not on Azure: its paravisor holds the SEV guest device (no derived key for the guest).
        if attester.has_snp_derived_key() {
            let attester = attester.clone();
            let root = tokio::task::spawn_blocking(move || {
                attester.sealing_root(attest::sealing::PURPOSE_LOCAL_KEYS)
            })
            .await
            .map_err(|e| SetupError::LocalRoot(e.to_string()))?
            .map_err(|e| SetupError::LocalRoot(e.to_string()))?;
            tracing::info!("local key store: root is the SNP measurement-bound derived key");
            return Ok(LocalStore::new(root, RootSource::Snp));
        }
        if let Some(state) = state {
            let state = state.clone();
            let root =
                tokio::task::spawn_blocking(move || state.get_or_create_secret(STATE_SECRET))
                    .await
                    .map_err(|e| SetupError::LocalRoot(e.to_string()))?
                    .map_err(|e| SetupError::LocalRoot(e.to_string()))?;
            if attester.tee() == attest::Tee::None {
                tracing::warn!(
                    "local key store: root sealed in the state directory under a development key — INSECURE: the host can read every local Omni Key"
                );
            } else {
                tracing::info!("local key store: root sealed in the state directory");
            }
            return Ok(LocalStore::new(root, RootSource::StateDir));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).map_err(|e| SetupError::LocalRoot(e.to_string()))?;
        tracing::warn!(
            "local key store: random in-memory root (no SNP, no --state-dir) — local Omni Keys CHANGE AT EVERY RESTART (development only)"
        );
        Ok(LocalStore::new(
            SealingRoot::from_bytes(*bytes),
            RootSource::Ephemeral,
        ))
    }

    pub fn source(&self) -> RootSource {
        self.source
    }

    /// The key of `identity`.
    pub fn derive(&self, identity: CodeIdentity) -> KeyBytes {
        derive(self.root.as_bytes(), identity.as_bytes())
    }
}

/// `HKDF-SHA256(salt = LOCAL_KEY_SALT, ikm = root, info = identity)`, 32 bytes.
pub fn derive(root: &[u8; 32], identity: &[u8; 32]) -> KeyBytes {
    let hk = Hkdf::<Sha256>::new(Some(LOCAL_KEY_SALT), root);
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    hk.expand(identity, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    key
}

impl KeyStore for LocalStore {
    fn get(&self, identity: CodeIdentity) -> BoxFuture<'_, Result<KeyBytes, String>> {
        let key = self.derive(identity);
        Box::pin(std::future::ready(Ok(key)))
    }

    /// A derivation costs nothing and spends no gas.
    fn metered(&self) -> bool {
        false
    }
}
