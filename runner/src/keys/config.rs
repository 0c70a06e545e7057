//! Key store configuration: the runner's flags and the `--key-stores` JSON file.
//!
//! ```json
//! {
//!   "verifier_url": "https://verifier.example:8090",
//!   "stores": {
//!     "sapphire-testnet": {
//!       "registry": "0x…", "key_store": "0x…", "permitter": "0x…"
//!     },
//!     "sapphire-localnet": {
//!       "rpc_url": "http://127.0.0.1:8545",
//!       "registry": "0x…", "key_store": "0x…", "permitter": "0x…",
//!       "chain_id": 31337, "insecure_dev_chain": true
//!     }
//!   }
//! }
//! ```
//!
//! Per store: `rpc_url` (default: `https://sapphire.oasis.io`, `https://testnet.sapphire.oasis.io`,
//! `http://localhost:8545` for localnet), the contract addresses `key_store` and `permitter`
//! (required) and `registry` (default: the key store, which is a registry itself, as Escrin's
//! `OmniKeyStore` is), `verifier_url` (else the top-level one; one of them is required), and
//! optionally `identity` (a fixed `bytes32` identity, `0x` + 64 hex digits, e.g. one made with
//! Escrin's `createIdentity`, instead of each code's own), `confirmations`, `permit_duration_secs`,
//! `rpc_timeout_ms`. Only `sapphire-localnet` may set `chain_id` (another chain behind that
//! name) and `insecure_dev_chain: true` (keys read in clear text from a plain EVM chain such as
//! hardhat — public on chain; development only); a Sapphire chain id always goes through the
//! encrypted envelope.

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;
use contracts::keys::ChainConfig;
use contracts::keys::Confidentiality;
use contracts::keys::EvidenceProvider;
use serde::Deserialize;

use super::limit::RateLimit;
use super::local::LocalStore;
use super::sapphire::SapphireStore;
use super::verifier_client::HttpVerifier;
use super::KeyPolicy;
use super::KeyStore;
use super::KeyStores;
use super::LOCAL;
use super::SAPPHIRE_LOCALNET;
use super::SAPPHIRE_MAINNET;
use super::SAPPHIRE_TESTNET;
use crate::state::StateDir;

/// Omni Key flags of the runner.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// JSON file configuring the Sapphire key stores (see README, "Omni keys"). Without it
    /// workers have the `local` store only.
    #[arg(long, env = "RUNNER_KEY_STORES")]
    pub key_stores: Option<PathBuf>,

    /// File with the gas wallet's secp256k1 private key (hex): it pays for the transactions of
    /// Sapphire key stores. Or set RUNNER_GAS_WALLET_KEY. Never logged.
    #[arg(long, env = "RUNNER_GAS_WALLET_KEY_FILE")]
    pub gas_wallet_key_file: Option<PathBuf>,

    /// The gas wallet key itself (hex); prefer the environment variable or the file.
    #[arg(
        long,
        env = "RUNNER_GAS_WALLET_KEY",
        hide = true,
        hide_env_values = true
    )]
    pub gas_wallet_key: Option<HexKey>,

    /// How long a worker keeps an Omni Key it fetched before asking its store again, seconds.
    #[arg(long, env = "RUNNER_KEY_CACHE_SECS", default_value_t = 3600)]
    pub key_cache_secs: u64,

    /// Longest a key store may take to give one key, ms; past it `getOmniKey` rejects (keep it
    /// below --wall-limit-ms, or the worker is terminated first).
    #[arg(long, env = "RUNNER_KEY_TIMEOUT_MS", default_value_t = 20_000)]
    pub key_timeout_ms: u64,

    /// Key requests one worker may send to Sapphire stores per minute (as many at once); past
    /// it `getOmniKey` rejects. A cached key is not a request. Each costs the gas wallet.
    #[arg(long, env = "RUNNER_KEY_REQUESTS_PER_MINUTE", default_value_t = 6)]
    pub key_requests_per_minute: u32,

    /// Key requests all workers together may send to Sapphire stores per minute.
    #[arg(
        long,
        env = "RUNNER_KEY_REQUESTS_PER_MINUTE_TOTAL",
        default_value_t = 60
    )]
    pub key_requests_per_minute_total: u32,
}

impl KeyArgs {
    pub fn policy(&self) -> KeyPolicy {
        KeyPolicy {
            cache_for: Duration::from_secs(self.key_cache_secs),
            timeout: Duration::from_millis(self.key_timeout_ms.max(1)),
            per_worker: RateLimit::per_minute(self.key_requests_per_minute),
            per_runner: RateLimit::per_minute(self.key_requests_per_minute_total),
        }
    }
}

/// A hex private key from the command line or environment: `Debug` never shows it.
#[derive(Clone)]
pub struct HexKey(zeroize::Zeroizing<String>);

impl std::fmt::Debug for HexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HexKey(…)")
    }
}

impl std::str::FromStr for HexKey {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(HexKey(zeroize::Zeroizing::new(text.trim().to_owned())))
    }
}

/// Why the key stores could not be set up (the runner does not start).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("key store configuration {path}: {reason}")]
    File { path: String, reason: String },
    #[error("key store {store:?}: {reason}")]
    Store { store: String, reason: String },
    #[error("the gas wallet key: {0}")]
    GasWallet(String),
    #[error("the local key store's root: {0}")]
    LocalRoot(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    verifier_url: Option<String>,
    #[serde(default)]
    stores: BTreeMap<String, StoreFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    #[serde(default)]
    rpc_url: Option<String>,
    /// Default: the key store (ours and Escrin's key stores are registries themselves).
    #[serde(default)]
    registry: Option<Address>,
    key_store: Address,
    permitter: Address,
    #[serde(default)]
    verifier_url: Option<String>,
    #[serde(default)]
    chain_id: Option<u64>,
    #[serde(default)]
    insecure_dev_chain: bool,
    #[serde(default)]
    identity: Option<B256>,
    #[serde(default)]
    confirmations: Option<u64>,
    #[serde(default)]
    permit_duration_secs: Option<u64>,
    #[serde(default)]
    rpc_timeout_ms: Option<u64>,
}

/// One Sapphire store as configured.
#[derive(Debug, Clone)]
pub struct StoreSpec {
    pub name: String,
    pub chain: ChainConfig,
    pub verifier_url: String,
    pub identity: Option<B256>,
}

/// The public defaults per store name: (chain id, RPC URL).
pub fn defaults(name: &str) -> Option<(u64, &'static str)> {
    match name {
        SAPPHIRE_MAINNET => Some((0x5afe, "https://sapphire.oasis.io")),
        SAPPHIRE_TESTNET => Some((0x5aff, "https://testnet.sapphire.oasis.io")),
        SAPPHIRE_LOCALNET => Some((0x5afd, "http://localhost:8545")),
        _ => None,
    }
}

/// Parses and checks a `--key-stores` file's text.
pub fn parse(text: &str) -> Result<Vec<StoreSpec>, String> {
    let file: FileConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut specs = Vec::new();
    for (name, store) in file.stores {
        let bad = |reason: String| format!("store {name:?}: {reason}");
        let Some((default_chain, default_rpc)) = defaults(&name) else {
            return Err(bad(format!(
                "not a Sapphire store name (valid: {SAPPHIRE_MAINNET}, {SAPPHIRE_TESTNET}, {SAPPHIRE_LOCALNET}; `{LOCAL}` needs no configuration)"
            )));
        };
        if name != SAPPHIRE_LOCALNET && (store.chain_id.is_some() || store.insecure_dev_chain) {
            return Err(bad(format!(
                "`chain_id` and `insecure_dev_chain` are allowed only for {SAPPHIRE_LOCALNET}"
            )));
        }
        let chain_id = store.chain_id.unwrap_or(default_chain);
        let confidentiality = if store.insecure_dev_chain {
            Confidentiality::InsecureDevChain
        } else {
            Confidentiality::Sapphire
        };
        let verifier_url = store
            .verifier_url
            .clone()
            .or_else(|| file.verifier_url.clone())
            .ok_or_else(|| {
                bad("no `verifier_url` (per store or at the top level): the attestation verifier service".into())
            })?;
        let mut chain = ChainConfig::new(
            store.rpc_url.unwrap_or_else(|| default_rpc.to_owned()),
            chain_id,
            store.registry.unwrap_or(store.key_store),
            store.key_store,
            store.permitter,
            confidentiality,
        );
        if let Some(n) = store.confirmations {
            chain.confirmations = n;
        }
        if let Some(secs) = store.permit_duration_secs {
            chain.permit_duration = Duration::from_secs(secs);
        }
        if let Some(ms) = store.rpc_timeout_ms {
            chain.rpc_timeout = Duration::from_millis(ms);
        }
        chain.validate().map_err(|e| bad(e.to_string()))?;
        specs.push(StoreSpec {
            name,
            chain,
            verifier_url,
            identity: store.identity,
        });
    }
    Ok(specs)
}

fn read_file(path: &Path) -> Result<Vec<StoreSpec>, SetupError> {
    let fail = |reason: String| SetupError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    parse(&text).map_err(fail)
}

/// The name of the gas wallet's secret in the state directory.
const GAS_WALLET_SECRET: &str = "gas-wallet";

/// The gas wallet: the configured key; else, with a state directory, a key the runner made
/// itself and keeps sealed there (the appliance's way: no key on the measured command line or
/// from the host — the operator funds the logged address).
fn gas_wallet(
    args: &KeyArgs,
    state: Option<&Arc<StateDir>>,
) -> Result<PrivateKeySigner, SetupError> {
    let text = match (&args.gas_wallet_key, &args.gas_wallet_key_file, state) {
        (Some(key), _, _) => key.0.clone(),
        (None, Some(path), _) => zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(
            |e| SetupError::GasWallet(format!("reading {}: {e}", path.display())),
        )?),
        (None, None, Some(state)) => {
            let secret = state
                .get_or_create_secret(GAS_WALLET_SECRET)
                .map_err(|e| SetupError::GasWallet(format!("the state directory: {e}")))?;
            let wallet = PrivateKeySigner::from_bytes(&(*secret.as_bytes()).into())
                .map_err(|_| SetupError::GasWallet("the sealed gas wallet key is not a valid secp256k1 key".into()))?;
            tracing::warn!(
                gas_wallet = %wallet.address(),
                "the gas wallet was made by this runner and is kept sealed in the state directory: fund this address for Sapphire key stores"
            );
            return Ok(wallet);
        }
        (None, None, None) => {
            return Err(SetupError::GasWallet(
                "Sapphire key stores are configured but no gas wallet key is (--gas-wallet-key-file or RUNNER_GAS_WALLET_KEY, or a --state-dir where the runner keeps one it makes)".into(),
            ))
        }
    };
    let hex = text.trim();
    let hex = hex.strip_prefix("0x").unwrap_or(hex);
    // The parse error could echo the input: say only what is wrong in general.
    hex.parse::<PrivateKeySigner>().map_err(|_| {
        SetupError::GasWallet("not a secp256k1 private key in hex (64 hex digits)".into())
    })
}

/// The runner's key stores: `local` always, and every Sapphire store of `--key-stores`.
/// `wall_limit` is the workers' limit per run (a key timeout above it is pointless: logged).
pub async fn build(
    args: &KeyArgs,
    attester: &Arc<attest::Attester>,
    state: Option<&Arc<StateDir>>,
    wall_limit: Duration,
) -> Result<Arc<KeyStores>, SetupError> {
    let policy = args.policy();
    let mut stores: BTreeMap<String, Arc<dyn KeyStore>> = BTreeMap::new();
    let local = LocalStore::open(attester, state).await?;
    let local_source = local.source();
    stores.insert(LOCAL.to_owned(), Arc::new(local));

    let specs = match &args.key_stores {
        Some(path) => read_file(path)?,
        None => Vec::new(),
    };
    if !specs.is_empty() {
        let wallet = gas_wallet(args, state)?;
        tracing::info!(gas_wallet = %wallet.address(), "Sapphire key stores: gas wallet");
        let evidence: EvidenceProvider = {
            let attester = attester.clone();
            Arc::new(move |report_data| {
                attester
                    .evidence(report_data)
                    .map(|e| e.to_json().into_bytes())
                    .map_err(|e| e.to_string())
            })
        };
        for spec in specs {
            let verifier =
                HttpVerifier::new(&spec.verifier_url, policy.timeout).map_err(|reason| {
                    SetupError::Store {
                        store: spec.name.clone(),
                        reason,
                    }
                })?;
            let insecure = spec.chain.confidentiality == Confidentiality::InsecureDevChain;
            if insecure {
                tracing::warn!(
                    store = %spec.name,
                    chain_id = spec.chain.chain_id,
                    "key store on an INSECURE development chain: keys are read in clear text and are public on chain"
                );
            }
            tracing::info!(
                store = %spec.name,
                chain_id = spec.chain.chain_id,
                rpc = %spec.chain.rpc_url,
                verifier = %verifier.url(),
                "Sapphire key store configured"
            );
            let store = SapphireStore::new(
                spec.chain,
                spec.identity,
                wallet.clone(),
                evidence.clone(),
                Arc::new(verifier),
            );
            stores.insert(spec.name, Arc::new(store));
        }
    }
    if policy.timeout >= wall_limit {
        tracing::warn!(
            key_timeout_ms = policy.timeout.as_millis() as u64,
            wall_limit_ms = wall_limit.as_millis() as u64,
            "the key timeout is not below the wall-time limit: a slow key store terminates the worker instead of rejecting getOmniKey"
        );
    }
    let keys = KeyStores::new(stores, policy, tokio::runtime::Handle::current());
    tracing::info!(stores = ?keys.names(), local_root = ?local_source, "Omni Key stores");
    Ok(Arc::new(keys))
}

#[cfg(test)]
mod gas_wallet_tests {
    use clap::Parser;

    use super::*;
    use crate::state::KeySource;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        keys: KeyArgs,
    }

    fn args() -> KeyArgs {
        Cli::parse_from(["runner"]).keys
    }

    #[test]
    fn without_a_key_the_runner_keeps_its_own_wallet_in_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let state = Arc::new(StateDir::open(dir.path().join("s"), KeySource::DevFile).unwrap());
            gas_wallet(&args(), Some(&state)).unwrap().address()
        };
        let state = Arc::new(StateDir::open(dir.path().join("s"), KeySource::DevFile).unwrap());
        assert_eq!(gas_wallet(&args(), Some(&state)).unwrap().address(), first);
        let other = tempfile::tempdir().unwrap();
        let elsewhere = Arc::new(StateDir::open(other.path(), KeySource::DevFile).unwrap());
        assert_ne!(
            gas_wallet(&args(), Some(&elsewhere)).unwrap().address(),
            first
        );
        let error = gas_wallet(&args(), None).unwrap_err();
        assert!(error.to_string().contains("--state-dir"), "{error}");
    }

    #[test]
    fn a_configured_key_wins_over_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(StateDir::open(dir.path(), KeySource::DevFile).unwrap());
        let file = dir.path().join("gas.key");
        let signer = PrivateKeySigner::random();
        std::fs::write(&file, hex::encode(signer.to_bytes())).unwrap();
        let mut args = args();
        args.gas_wallet_key_file = Some(file);
        assert_eq!(
            gas_wallet(&args, Some(&state)).unwrap().address(),
            signer.address()
        );
    }
}
