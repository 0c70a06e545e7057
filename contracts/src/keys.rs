//! The Omni Key client: gets the 32-byte key of a worker's code-derived identity from
//! `OmniKeyStore`, proving with TEE evidence that this appliance may hold it (Escrin's flow with
//! real attestation).
//!
//! [`KeyClient::get_key`] for code hash `c`:
//! 1. `identity = keccak256(abi.encode(c, permitter))` (a `bytes32`, as Escrin's identities);
//!    `registerCodeIdentity` if the registry does not know it yet (gas wallet).
//! 2. A fresh secp256k1 requester account and a random 32-byte nonce;
//!    `binding = keccak256(abi.encode(chainId, registry, identity, requester, c, nonce))`.
//! 3. Evidence with `report_data = attest::report_data_for(&[], binding, KEY_ACQUIRE_CONTEXT)`
//!    from the [`EvidenceProvider`], turned into an authorization by an [`EvidenceVerifier`]
//!    (the verifier's EIP-712 signature over measurement, binding, time).
//! 4. `permitter.acquireIdentity(identity, requester, duration, abi.encode(c, nonce),
//!    authorization)` from the gas wallet; the receipt is awaited.
//! 5. (The store makes an identity's key when it is created or registered, as Escrin's does;
//!    `provisionKey(identity)` is sent only if `getKey` answers `KeyNotProvisioned`.)
//! 6. The requester signs the EIP-712 `KeyRequest(uint256 identity,address requester,uint256
//!    expiry)` (the type string Escrin's store checks; the identity's 32 bytes encode the same
//!    as `bytes32`) and `getKey` is read
//!    with `eth_call`: through the Sapphire envelope on Sapphire, in clear text only on a chain
//!    the configuration explicitly calls an insecure development chain.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::network::EthereumWallet;
use alloy::primitives::{keccak256, Address, Bytes, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use alloy::sol_types::{eip712_domain, SolCall, SolInterface, SolStruct, SolValue};
use alloy::transports::{RpcError, TransportErrorKind};
use zeroize::Zeroizing;

use crate::bindings::{IdentityRegistry, OmniKeyStore, TaskHub, VerifierPermitter};
use crate::sapphire::{self, CallSession, EnvelopeError};

/// The attest context of key-acquisition evidence (see [`AuthorizationRequest::report_data`]).
pub const KEY_ACQUIRE_CONTEXT: &[u8] = b"smart-worker/keys/acquire/v1";

/// How a key read is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confidentiality {
    /// Oasis Sapphire: `getKey` goes through the encrypted envelope. The chain id must be a
    /// Sapphire one.
    Sapphire,
    /// A plain EVM development chain (hardhat): `getKey` is read in clear text, and the keys
    /// are public on chain anyway. Never for anything that matters; refused on Sapphire.
    InsecureDevChain,
}

/// Where the contracts are and how to talk to the chain.
#[derive(Clone, Debug)]
pub struct ChainConfig {
    /// JSON-RPC URL (http or https).
    pub rpc_url: String,
    /// The chain id the node must report.
    pub chain_id: u64,
    /// `IdentityRegistry`.
    pub registry: Address,
    /// `OmniKeyStore`.
    pub key_store: Address,
    /// `VerifierPermitter`.
    pub permitter: Address,
    /// How `getKey` is protected.
    pub confidentiality: Confidentiality,
    /// Requested permit lifetime (at most the permitter's `maxDuration`). Default 1 hour.
    pub permit_duration: Duration,
    /// Lifetime of a signed key request. Default 2 minutes.
    pub key_request_ttl: Duration,
    /// Confirmations to wait for after each transaction. Default 1.
    pub confirmations: u64,
    /// Limit for each RPC step (a call, a transaction and its receipt). Default 60 s.
    pub rpc_timeout: Duration,
}

impl ChainConfig {
    /// A configuration with the defaults above.
    pub fn new(
        rpc_url: impl Into<String>,
        chain_id: u64,
        registry: Address,
        key_store: Address,
        permitter: Address,
        confidentiality: Confidentiality,
    ) -> Self {
        ChainConfig {
            rpc_url: rpc_url.into(),
            chain_id,
            registry,
            key_store,
            permitter,
            confidentiality,
            permit_duration: Duration::from_secs(3600),
            key_request_ttl: Duration::from_secs(120),
            confirmations: 1,
            rpc_timeout: Duration::from_secs(60),
        }
    }

    /// Checks the configuration on its own (not against the chain).
    pub fn validate(&self) -> Result<(), KeyError> {
        let bad = |m: String| Err(KeyError::BadConfig(m));
        match (self.confidentiality, sapphire::is_sapphire(self.chain_id)) {
            (Confidentiality::Sapphire, false) => {
                return bad(format!(
                    "chain id {} is not a Sapphire chain, so keys cannot be read confidentially",
                    self.chain_id
                ))
            }
            (Confidentiality::InsecureDevChain, true) => {
                return bad(format!(
                    "chain id {:#x} is Sapphire: key reads must use the encrypted envelope",
                    self.chain_id
                ))
            }
            _ => {}
        }
        for (name, a) in [
            ("registry", self.registry),
            ("key store", self.key_store),
            ("permitter", self.permitter),
        ] {
            if a == Address::ZERO {
                return bad(format!("the {name} address is zero"));
            }
        }
        if self.permit_duration.is_zero() || self.key_request_ttl.is_zero() {
            return bad("permit duration and key request lifetime must be positive".into());
        }
        Ok(())
    }
}

/// What the TEE's evidence must bind, and what the verifier signs for. Its JSON (hex strings
/// for addresses and words) is what the verifier service receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationRequest {
    /// The chain id.
    pub chain_id: u64,
    /// `IdentityRegistry`.
    pub registry: Address,
    /// `VerifierPermitter` (the EIP-712 verifying contract of the verifier's signature).
    pub permitter: Address,
    /// The identity asked for.
    pub identity: B256,
    /// The account that will hold the permit.
    pub requester: Address,
    /// The worker's code hash.
    pub code_hash: B256,
    /// A single-use nonce.
    pub nonce: B256,
}

impl AuthorizationRequest {
    /// `keccak256(abi.encode(chainId, registry, identity, requester, codeHash, nonce))`, as the
    /// permitter's `bindingFor` computes it.
    pub fn binding(&self) -> B256 {
        keccak256(
            (
                U256::from(self.chain_id),
                self.registry,
                self.identity,
                self.requester,
                self.code_hash,
                self.nonce,
            )
                .abi_encode_params(),
        )
    }

    /// The evidence's report_data: `attest::report_data_for(&[], binding, KEY_ACQUIRE_CONTEXT)`.
    pub fn report_data(&self) -> [u8; 64] {
        attest::report_data_for(&[], self.binding().as_slice(), KEY_ACQUIRE_CONTEXT)
    }

    /// The permitter's `context`: `abi.encode(codeHash, nonce)`.
    pub fn context(&self) -> Bytes {
        (self.code_hash, self.nonce).abi_encode_params().into()
    }
}

/// A verifier's answer: the permitter's `authorization` argument (and the verifier service's
/// JSON answer).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Authorization {
    /// The attested measurement in its 32-byte form (see `verifier`).
    pub measurement: B256,
    /// When the verifier checked the evidence (unix seconds).
    pub verified_at: u64,
    /// The verifier's EIP-712 signature over `VerifiedEvidence` (65 bytes).
    pub signature: Bytes,
}

impl Authorization {
    /// `abi.encode(measurement, verifiedAt, signature)`.
    pub fn encode(&self) -> Bytes {
        (self.measurement, self.verified_at, self.signature.clone())
            .abi_encode_params()
            .into()
    }
}

/// A boxed future (so [`EvidenceVerifier`] stays object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Turns evidence into an authorization: the in-process [`crate::verifier::Verifier`], or a
/// client of a remote verifier service.
pub trait EvidenceVerifier: Send + Sync {
    /// Verifies `evidence` for `request`; `Err` carries the reason for refusing.
    fn authorize<'a>(
        &'a self,
        request: &'a AuthorizationRequest,
        evidence: &'a [u8],
    ) -> BoxFuture<'a, Result<Authorization, String>>;
}

/// Gets evidence for a report_data (e.g. `attest::Attester::evidence(rd)` as JSON bytes). It
/// may block (device I/O): it runs on the blocking pool.
pub type EvidenceProvider = Arc<dyn Fn([u8; 64]) -> Result<Vec<u8>, String> + Send + Sync>;

/// A permit held by a fresh requester account.
#[derive(Clone)]
pub struct Permit {
    /// The identity.
    pub identity: B256,
    /// The code hash it was acquired for.
    pub code_hash: B256,
    /// Expiry (unix seconds) as granted.
    pub expiry: u64,
    requester: PrivateKeySigner,
}

impl Permit {
    /// The requester account holding the permit.
    pub fn requester(&self) -> Address {
        self.requester.address()
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("identity", &self.identity)
            .field("code_hash", &self.code_hash)
            .field("expiry", &self.expiry)
            .field("requester", &self.requester.address())
            .finish()
    }
}

/// An Omni Key: 32 bytes, zeroised on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct OmniKey(Zeroizing<[u8; 32]>);

impl OmniKey {
    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for OmniKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OmniKey(..)")
    }
}

/// A decoded custom error from one of our contracts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revert {
    /// The error's name, e.g. `CodeHashNotAllowed`.
    pub name: String,
    /// The decoded error with its arguments (Debug form).
    pub details: String,
}

/// Decodes revert data against every custom error of our contracts.
pub fn decode_revert(data: &[u8]) -> Option<Revert> {
    fn try_one<E: SolInterface + std::fmt::Debug>(
        data: &[u8],
        name: fn([u8; 4]) -> Option<&'static str>,
    ) -> Option<Revert> {
        let decoded = E::abi_decode(data).ok()?;
        let selector: [u8; 4] = data.get(..4)?.try_into().ok()?;
        Some(Revert {
            name: name(selector).unwrap_or("?").to_owned(),
            details: format!("{decoded:?}"),
        })
    }
    try_one::<VerifierPermitter::VerifierPermitterErrors>(
        data,
        VerifierPermitter::VerifierPermitterErrors::name_by_selector,
    )
    .or_else(|| {
        try_one::<OmniKeyStore::OmniKeyStoreErrors>(
            data,
            OmniKeyStore::OmniKeyStoreErrors::name_by_selector,
        )
    })
    .or_else(|| {
        try_one::<IdentityRegistry::IdentityRegistryErrors>(
            data,
            IdentityRegistry::IdentityRegistryErrors::name_by_selector,
        )
    })
    .or_else(|| try_one::<TaskHub::TaskHubErrors>(data, TaskHub::TaskHubErrors::name_by_selector))
}

/// Why a key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The configuration is wrong (or the node is on another chain).
    #[error("bad key configuration: {0}")]
    BadConfig(String),
    /// The RPC node cannot be reached (connection, DNS, HTTP status).
    #[error("RPC node unreachable during {during}: {message}")]
    Unreachable {
        /// The step.
        during: &'static str,
        /// The transport's error.
        message: String,
    },
    /// An RPC step took longer than `rpc_timeout`.
    #[error("RPC timed out after {after:?} during {during}")]
    Timeout {
        /// The step.
        during: &'static str,
        /// The limit.
        after: Duration,
    },
    /// The permitter refused the grant; `error` names the failed check (e.g.
    /// `CodeHashNotAllowed`, `VerifierNotAllowed`, `MeasurementNotAllowed`, `NonceAlreadyUsed`).
    #[error("the permitter refused: {error} ({details})")]
    PermitterRefused {
        /// The custom error's name (`unknown` when it could not be decoded).
        error: String,
        /// The decoded error with its arguments, or the raw revert data.
        details: String,
    },
    /// The key store refused to give the key (`NoPermit`, `KeyRequestExpired`, …).
    #[error("the key store refused: {error} ({details})")]
    KeyStoreRefused {
        /// The custom error's name.
        error: String,
        /// The decoded error with its arguments, or the raw revert data.
        details: String,
    },
    /// Another contract call reverted.
    #[error("{during} reverted: {error} ({details})")]
    Reverted {
        /// The step.
        during: &'static str,
        /// The custom error's name.
        error: String,
        /// Details.
        details: String,
    },
    /// The evidence provider failed.
    #[error("cannot get evidence: {0}")]
    Evidence(String),
    /// The verifier refused the evidence.
    #[error("the verifier refused the evidence: {0}")]
    VerifierRefused(String),
    /// The Sapphire envelope failed (key fetch, decryption).
    #[error(transparent)]
    Envelope(EnvelopeError),
    /// Any other JSON-RPC error.
    #[error("RPC error during {during}: {message}")]
    Rpc {
        /// The step.
        during: &'static str,
        /// The node's message.
        message: String,
    },
}

/// The Omni Key client. Cheap to share (`Arc` it); one per chain configuration.
pub struct KeyClient {
    config: ChainConfig,
    provider: DynProvider,
    evidence: EvidenceProvider,
    verifier: Arc<dyn EvidenceVerifier>,
    /// One transaction at a time from the gas wallet, sent to receipt (nonces stay in order).
    tx_lock: tokio::sync::Mutex<()>,
}

impl KeyClient {
    /// Connects to `config.rpc_url` and checks that the node is on `config.chain_id`.
    /// `gas_wallet` pays for registration, acquisition and provisioning transactions.
    pub async fn connect(
        config: ChainConfig,
        gas_wallet: PrivateKeySigner,
        evidence: EvidenceProvider,
        verifier: Arc<dyn EvidenceVerifier>,
    ) -> Result<KeyClient, KeyError> {
        config.validate()?;
        let url = config
            .rpc_url
            .parse()
            .map_err(|e| KeyError::BadConfig(format!("RPC URL {:?}: {e}", config.rpc_url)))?;
        // The nonce is asked of the node for every transaction (not cached): a refused
        // transaction must not leave a gap, and other clients may share the gas wallet.
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .fetch_chain_id()
            .wallet(EthereumWallet::from(gas_wallet))
            .connect_http(url)
            .erased();
        let client = KeyClient {
            config,
            provider,
            evidence,
            verifier,
            tx_lock: tokio::sync::Mutex::new(()),
        };
        let chain_id = client
            .step("eth_chainId", async {
                client.provider.get_chain_id().await.map_err(Into::into)
            })
            .await?;
        if chain_id != client.config.chain_id {
            return Err(KeyError::BadConfig(format!(
                "the RPC node is on chain {chain_id}, the configuration says {}",
                client.config.chain_id
            )));
        }
        Ok(client)
    }

    /// The configuration.
    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    /// The code-derived identity of `code_hash` under the configured permitter.
    pub fn identity_for_code(&self, code_hash: B256) -> B256 {
        identity_for_code(code_hash, self.config.permitter)
    }

    /// The whole flow: acquire the identity of `code_hash` for a fresh account, then read its
    /// key.
    pub async fn get_key(&self, code_hash: B256) -> Result<OmniKey, KeyError> {
        let permit = self.acquire(code_hash).await?;
        self.read_key(&permit).await
    }

    /// Registers the code-derived identity of `code_hash` if needed and acquires it for a fresh
    /// requester account.
    pub async fn acquire(&self, code_hash: B256) -> Result<Permit, KeyError> {
        let identity = self.identity_for_code(code_hash);
        let registry = IdentityRegistry::new(self.config.registry, self.provider.clone());
        let permitter = self
            .step("getPermitter", async {
                Ok(registry.getPermitter(identity).call().await?)
            })
            .await?;
        if permitter.is_zero() {
            let call = registry.registerCodeIdentity(code_hash, self.config.permitter);
            self.transact("registerCodeIdentity", call.send()).await?;
        }
        self.acquire_identity(identity, code_hash).await
    }

    /// Acquires `identity` (code-derived, or random with `code_hash` set by the permitter's
    /// owner) for a fresh requester account, proving with evidence that it runs `code_hash`.
    pub async fn acquire_identity(
        &self,
        identity: B256,
        code_hash: B256,
    ) -> Result<Permit, KeyError> {
        let requester = PrivateKeySigner::random();
        let request = AuthorizationRequest {
            chain_id: self.config.chain_id,
            registry: self.config.registry,
            permitter: self.config.permitter,
            identity,
            requester: requester.address(),
            code_hash,
            nonce: random_b256(),
        };
        let report_data = request.report_data();
        let provider = self.evidence.clone();
        let evidence = tokio::task::spawn_blocking(move || provider(report_data))
            .await
            .map_err(|e| KeyError::Evidence(format!("evidence task: {e}")))?
            .map_err(KeyError::Evidence)?;
        let authorization = self
            .verifier
            .authorize(&request, &evidence)
            .await
            .map_err(KeyError::VerifierRefused)?;

        let duration = self.config.permit_duration.as_secs();
        let permitter = VerifierPermitter::new(self.config.permitter, self.provider.clone());
        let call = permitter.acquireIdentity(
            identity,
            request.requester,
            duration,
            request.context(),
            authorization.encode(),
        );
        self.transact("acquireIdentity", call.send()).await?;

        let registry = IdentityRegistry::new(self.config.registry, self.provider.clone());
        let permit = self
            .step("readPermit", async {
                Ok(registry
                    .readPermit(request.requester, identity)
                    .call()
                    .await?)
            })
            .await?;
        Ok(Permit {
            identity,
            code_hash,
            expiry: permit.expiry,
            requester,
        })
    }

    /// Reads the key of `permit.identity` with a request valid for `key_request_ttl`,
    /// provisioning the identity's key if the store answers `KeyNotProvisioned`.
    pub async fn read_key(&self, permit: &Permit) -> Result<OmniKey, KeyError> {
        let expiry = unix_now() + self.config.key_request_ttl.as_secs();
        self.read_key_with_request_expiry(permit, expiry).await
    }

    /// [`KeyClient::read_key`] with an explicit request expiry (unix seconds).
    pub async fn read_key_with_request_expiry(
        &self,
        permit: &Permit,
        request_expiry: u64,
    ) -> Result<OmniKey, KeyError> {
        match self.get_key_call(permit, request_expiry).await {
            // Only identities from before the store made keys at creation have none; Escrin's
            // store has no `provisionKey` (its identities always have a key), so it is asked
            // for only when the store says so.
            Err(KeyError::KeyStoreRefused { error, .. }) if error == "KeyNotProvisioned" => {
                let store = OmniKeyStore::new(self.config.key_store, self.provider.clone());
                self.transact("provisionKey", store.provisionKey(permit.identity).send())
                    .await?;
                self.get_key_call(permit, request_expiry).await
            }
            other => other,
        }
    }

    /// One signed `getKey` read.
    async fn get_key_call(
        &self,
        permit: &Permit,
        request_expiry: u64,
    ) -> Result<OmniKey, KeyError> {
        let req = OmniKeyStore::KeyRequest {
            identity: permit.identity,
            requester: permit.requester.address(),
            expiry: U256::from(request_expiry),
        };
        let signature = permit
            .requester
            .sign_hash_sync(&key_request_signing_hash(
                &req,
                self.config.chain_id,
                self.config.key_store,
            ))
            .map_err(|e| KeyError::BadConfig(format!("signing the key request: {e}")))?;
        let calldata = OmniKeyStore::getKeyCall {
            signedKeyReq: OmniKeyStore::SignedKeyRequest {
                req,
                sig: signature.as_bytes().to_vec().into(),
            },
        }
        .abi_encode();
        let output = match self.config.confidentiality {
            Confidentiality::InsecureDevChain => self.plain_call(calldata).await?,
            Confidentiality::Sapphire => self.sapphire_call(calldata).await?,
        };
        let key =
            OmniKeyStore::getKeyCall::abi_decode_returns(&output).map_err(|e| KeyError::Rpc {
                during: "getKey",
                message: format!("undecodable answer: {e}"),
            })?;
        Ok(OmniKey(Zeroizing::new(key.0)))
    }

    async fn plain_call(&self, calldata: Vec<u8>) -> Result<Bytes, KeyError> {
        let tx = TransactionRequest::default()
            .to(self.config.key_store)
            .input(calldata.into());
        self.step("getKey", async { Ok(self.provider.call(tx).await?) })
            .await
    }

    async fn sapphire_call(&self, calldata: Vec<u8>) -> Result<Bytes, KeyError> {
        let runtime_key = self
            .step("Sapphire call-data public key", async {
                sapphire::fetch_runtime_public_key(&self.provider)
                    .await
                    .map_err(StepError::Envelope)
            })
            .await?;
        let session = CallSession::new(&runtime_key).map_err(KeyError::Envelope)?;
        let tx = TransactionRequest::default()
            .to(self.config.key_store)
            .input(session.encrypt_call(&calldata).into());
        let sealed = self
            .step("getKey", async { Ok(self.provider.call(tx).await?) })
            .await?;
        session
            .decrypt_result(&sealed)
            .map(Bytes::from)
            .map_err(|e| match e {
                EnvelopeError::CallFailed {
                    revert_data: Some(data),
                    ..
                } => refused("getKey", &data),
                other => KeyError::Envelope(other),
            })
    }

    /// Sends a transaction and waits for its receipt; a revert (at estimation or in the
    /// receipt) becomes the step's refusal.
    async fn transact<F>(&self, during: &'static str, send: F) -> Result<(), KeyError>
    where
        F: Future<
            Output = Result<
                alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>,
                alloy::contract::Error,
            >,
        >,
    {
        let _one_at_a_time = self.tx_lock.lock().await;
        let receipt = self
            .step(during, async {
                let pending = send.await?;
                pending
                    .with_required_confirmations(self.config.confirmations)
                    .get_receipt()
                    .await
                    .map_err(|e| match e {
                        alloy::providers::PendingTransactionError::TransportError(t) => {
                            StepError::Transport(t)
                        }
                        other => StepError::Other(other.to_string()),
                    })
            })
            .await?;
        if !receipt.status() {
            return Err(refused(during, &[]));
        }
        Ok(())
    }

    async fn step<T>(
        &self,
        during: &'static str,
        fut: impl Future<Output = Result<T, StepError>>,
    ) -> Result<T, KeyError> {
        match tokio::time::timeout(self.config.rpc_timeout, fut).await {
            Err(_) => Err(KeyError::Timeout {
                during,
                after: self.config.rpc_timeout,
            }),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.classify(during)),
        }
    }
}

/// `keccak256(abi.encode(codeHash, permitter))`, as `IdentityRegistry.identityForCode`.
pub fn identity_for_code(code_hash: B256, permitter: Address) -> B256 {
    keccak256((code_hash, permitter).abi_encode_params())
}

/// The EIP-712 digest a requester signs for `req`, in the domain ("OmniKeyStore", "1",
/// `chain_id`, `key_store`).
pub fn key_request_signing_hash(
    req: &OmniKeyStore::KeyRequest,
    chain_id: u64,
    key_store: Address,
) -> B256 {
    let typed = typed::KeyRequest {
        identity: req.identity.into(),
        requester: req.requester,
        expiry: req.expiry,
    };
    typed.eip712_signing_hash(&eip712_domain! {
        name: "OmniKeyStore",
        version: "1",
        chain_id: chain_id,
        verifying_contract: key_store,
    })
}

pub(crate) mod typed {
    //! The EIP-712 types, by their exact Solidity type strings.
    alloy::sol! {
        struct KeyRequest { uint256 identity; address requester; uint256 expiry; }
        struct VerifiedEvidence { bytes32 measurement; bytes32 binding; uint64 verifiedAt; }
    }
}

fn random_b256() -> B256 {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    B256::from(bytes)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn refused(during: &'static str, data: &[u8]) -> KeyError {
    let (error, details) = match decode_revert(data) {
        Some(r) => (r.name, r.details),
        None if data.is_empty() => ("unknown".to_owned(), "no revert data".to_owned()),
        None => (
            "unknown".to_owned(),
            format!("revert data 0x{}", hex::encode(data)),
        ),
    };
    match during {
        "acquireIdentity" => KeyError::PermitterRefused { error, details },
        "getKey" => KeyError::KeyStoreRefused { error, details },
        _ => KeyError::Reverted {
            during,
            error,
            details,
        },
    }
}

/// An RPC step's failure before classification.
enum StepError {
    Contract(alloy::contract::Error),
    Transport(RpcError<TransportErrorKind>),
    Envelope(EnvelopeError),
    Other(String),
}

impl From<alloy::contract::Error> for StepError {
    fn from(e: alloy::contract::Error) -> Self {
        StepError::Contract(e)
    }
}

impl From<RpcError<TransportErrorKind>> for StepError {
    fn from(e: RpcError<TransportErrorKind>) -> Self {
        StepError::Transport(e)
    }
}

impl StepError {
    fn classify(self, during: &'static str) -> KeyError {
        let rpc = match self {
            StepError::Contract(alloy::contract::Error::TransportError(e)) => e,
            StepError::Contract(other) => {
                return KeyError::Rpc {
                    during,
                    message: other.to_string(),
                }
            }
            StepError::Transport(e) => e,
            StepError::Envelope(e) => return KeyError::Envelope(e),
            StepError::Other(message) => return KeyError::Rpc { during, message },
        };
        match &rpc {
            RpcError::ErrorResp(payload) => match payload.as_revert_data() {
                Some(data) => refused(during, &data),
                None if payload.message.contains("revert") => refused(during, &[]),
                None => KeyError::Rpc {
                    during,
                    message: payload.to_string(),
                },
            },
            RpcError::Transport(kind) => KeyError::Unreachable {
                during,
                message: kind.to_string(),
            },
            other => KeyError::Rpc {
                during,
                message: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::address;

    fn config(chain_id: u64, c: Confidentiality) -> ChainConfig {
        ChainConfig::new(
            "http://127.0.0.1:1/",
            chain_id,
            address!("0000000000000000000000000000000000000001"),
            address!("0000000000000000000000000000000000000002"),
            address!("0000000000000000000000000000000000000003"),
            c,
        )
    }

    #[test]
    fn confidentiality_must_match_the_chain() {
        assert!(config(0x5afe, Confidentiality::Sapphire).validate().is_ok());
        assert!(config(31337, Confidentiality::InsecureDevChain)
            .validate()
            .is_ok());
        for bad in [
            config(1, Confidentiality::Sapphire),
            config(31337, Confidentiality::Sapphire),
            config(0x5aff, Confidentiality::InsecureDevChain),
            config(0x5afd, Confidentiality::InsecureDevChain),
        ] {
            assert!(
                matches!(bad.validate(), Err(KeyError::BadConfig(_))),
                "{bad:?}"
            );
        }
        let mut zero = config(31337, Confidentiality::InsecureDevChain);
        zero.permitter = Address::ZERO;
        assert!(matches!(zero.validate(), Err(KeyError::BadConfig(_))));
    }

    #[test]
    fn identity_for_code_is_the_abi_encoding_hash() {
        let code = B256::repeat_byte(0xab);
        let permitter = address!("00000000000000000000000000000000000000ff");
        let mut encoded = [0u8; 64];
        encoded[..32].copy_from_slice(code.as_slice());
        encoded[63] = 0xff;
        assert_eq!(identity_for_code(code, permitter), keccak256(encoded));
    }

    #[test]
    fn revert_data_decodes_to_the_error_name() {
        let err = VerifierPermitter::CodeHashNotAllowed {
            identity: B256::with_last_byte(7),
            codeHash: B256::repeat_byte(1),
        };
        let data = alloy::sol_types::SolError::abi_encode(&err);
        let r = decode_revert(&data).unwrap();
        assert_eq!(r.name, "CodeHashNotAllowed");
        assert!(r.details.contains("identity"), "{}", r.details);
        assert!(decode_revert(&[1, 2, 3, 4]).is_none());
        match refused("acquireIdentity", &data) {
            KeyError::PermitterRefused { error, .. } => assert_eq!(error, "CodeHashNotAllowed"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn unreachable_node_is_reported_as_such() {
        let verifier: Arc<dyn EvidenceVerifier> = Arc::new(Refuse);
        let evidence: EvidenceProvider = Arc::new(|_| Err("none".into()));
        let wallet = PrivateKeySigner::random();
        // Port 1 on loopback: nothing listens there.
        let err = KeyClient::connect(
            config(31337, Confidentiality::InsecureDevChain),
            wallet,
            evidence,
            verifier,
        )
        .await
        .err()
        .unwrap();
        assert!(
            matches!(
                err,
                KeyError::Unreachable {
                    during: "eth_chainId",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    struct Refuse;
    impl EvidenceVerifier for Refuse {
        fn authorize<'a>(
            &'a self,
            _: &'a AuthorizationRequest,
            _: &'a [u8],
        ) -> BoxFuture<'a, Result<Authorization, String>> {
            Box::pin(async { Err("no".to_owned()) })
        }
    }
}
