//! The Sapphire key stores (`sapphire-mainnet`, `sapphire-testnet`, `sapphire-localnet`): a
//! `contracts::keys::KeyClient` per configured store.
//!
//! For a worker with code identity `c` the client registers the code-derived identity of `c`
//! (or uses the store's configured `identity`), gets TEE evidence binding the request from the
//! runner's attester, has the verifier service sign it, acquires the identity for a fresh
//! requester account (gas wallet pays), then reads the key with an EIP-712 signed request —
//! through the Sapphire envelope, or in clear text on an explicitly configured dev chain.

use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;
use contracts::keys::ChainConfig;
use contracts::keys::EvidenceProvider;
use contracts::keys::EvidenceVerifier;
use contracts::keys::KeyClient;
use std::sync::Arc;
use zeroize::Zeroizing;

use super::BoxFuture;
use super::KeyBytes;
use super::KeyStore;
use crate::worker::CodeIdentity;

/// One Sapphire store. Connects on first use (a node down at boot is not fatal: the worker's
/// call fails, the next one tries again).
pub struct SapphireStore {
    chain: ChainConfig,
    /// A fixed identity for every worker (its permitter must allow each code hash) instead of
    /// each code's own identity.
    identity: Option<B256>,
    gas_wallet: PrivateKeySigner,
    evidence: EvidenceProvider,
    verifier: Arc<dyn EvidenceVerifier>,
    client: tokio::sync::OnceCell<KeyClient>,
}

impl SapphireStore {
    pub fn new(
        chain: ChainConfig,
        identity: Option<B256>,
        gas_wallet: PrivateKeySigner,
        evidence: EvidenceProvider,
        verifier: Arc<dyn EvidenceVerifier>,
    ) -> Self {
        SapphireStore {
            chain,
            identity,
            gas_wallet,
            evidence,
            verifier,
            client: tokio::sync::OnceCell::new(),
        }
    }

    async fn key(&self, identity: CodeIdentity) -> Result<KeyBytes, contracts::keys::KeyError> {
        let client = self
            .client
            .get_or_try_init(|| {
                KeyClient::connect(
                    self.chain.clone(),
                    self.gas_wallet.clone(),
                    self.evidence.clone(),
                    self.verifier.clone(),
                )
            })
            .await?;
        let code_hash = B256::from(*identity.as_bytes());
        let key = match self.identity {
            Some(id) => {
                let permit = client.acquire_identity(id, code_hash).await?;
                client.read_key(&permit).await?
            }
            None => client.get_key(code_hash).await?,
        };
        Ok(Zeroizing::new(*key.as_bytes()))
    }
}

impl KeyStore for SapphireStore {
    fn get(&self, identity: CodeIdentity) -> BoxFuture<'_, Result<KeyBytes, String>> {
        Box::pin(async move { self.key(identity).await.map_err(|e| e.to_string()) })
    }
}
