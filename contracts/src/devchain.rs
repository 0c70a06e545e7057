//! A local development chain for tests: a hardhat node from the npm cache that
//! `scripts/setup.sh` fills (`~/.cache/smart-worker/chain-npm`, or `$CONTRACTS_NPM_DIR`), and
//! the contracts deployed on it.
//!
//! Nothing here is confidential: hardhat is a plain EVM, so keys stored there are public and
//! not even random. Use it with [`crate::keys::Confidentiality::InsecureDevChain`] only.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::network::EthereumWallet;
use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;

use crate::bindings::{EscrinTaskHub, OmniKeyStore, TaskHub, VerifierPermitter};

/// Hardhat's chain id (0x7a69).
pub const HARDHAT_CHAIN_ID: u64 = 31337;

/// The private keys of hardhat's first three default accounts (each funded with 10000 ETH on a
/// fresh node; public knowledge, development only).
pub const HARDHAT_KEYS: [&str; 3] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
];

/// The XDG base directories a node gets inside its own directory, and their names there.
const XDG_DIRS: [(&str, &str); 4] = [
    ("XDG_CONFIG_HOME", "xdg/config"),
    ("XDG_DATA_HOME", "xdg/data"),
    ("XDG_CACHE_HOME", "xdg/cache"),
    ("XDG_STATE_HOME", "xdg/state"),
];

/// Why a development chain could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum DevChainError {
    /// node or an npm package is not installed: tests should skip, saying this.
    #[error("{0}")]
    Unavailable(String),
    /// Starting or talking to the node failed.
    #[error("development chain: {0}")]
    Failed(String),
}

/// The npm directory that `scripts/setup.sh` fills: `$CONTRACTS_NPM_DIR`, else
/// `$HOME/.cache/smart-worker/chain-npm`.
pub fn npm_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CONTRACTS_NPM_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home).join(".cache/smart-worker/chain-npm")
}

/// The `node` binary and the npm directory, when node runs and `package` is installed there;
/// otherwise the reason (for a test's skip message).
pub fn node_with(package: &str) -> Result<(PathBuf, PathBuf), DevChainError> {
    let node = PathBuf::from("node");
    let runs = Command::new(&node)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !runs {
        return Err(DevChainError::Unavailable(
            "node is not installed (scripts/setup.sh installs it)".into(),
        ));
    }
    let dir = npm_dir();
    if !dir.join("node_modules").join(package).is_dir() {
        return Err(DevChainError::Unavailable(format!(
            "npm package {package} is not installed in {} (run scripts/setup.sh)",
            dir.display()
        )));
    }
    Ok((node, dir))
}

/// A hardhat node on 127.0.0.1 and a free port, stopped when dropped.
pub struct DevChain {
    child: Child,
    port: u16,
    chain_id: u64,
    dir: tempfile::TempDir,
}

impl DevChain {
    /// Starts `hardhat node` (chain id 31337) in a temporary project directory and waits until
    /// it answers.
    pub async fn start() -> Result<DevChain, DevChainError> {
        Self::start_with_chain_id(HARDHAT_CHAIN_ID).await
    }

    /// For tests: [`DevChain::start`], or `None` after printing `SKIPPED <test>: <why>` when
    /// node or hardhat is not installed; any other failure panics.
    pub async fn start_or_skip(test: &str) -> Option<DevChain> {
        match DevChain::start().await {
            Ok(chain) => Some(chain),
            Err(DevChainError::Unavailable(why)) => {
                eprintln!("SKIPPED {test}: {why}");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// [`DevChain::start`] with another chain id (e.g. a Sapphire one, for a stand-in: hardhat
    /// has none of Sapphire's precompiles or confidentiality).
    pub async fn start_with_chain_id(chain_id: u64) -> Result<DevChain, DevChainError> {
        let (node, npm) = node_with("hardhat")?;
        let dir = tempfile::tempdir().map_err(|e| DevChainError::Failed(e.to_string()))?;
        let failed = |what: &str, e: std::io::Error| DevChainError::Failed(format!("{what}: {e}"));
        fs::write(
            dir.path().join("hardhat.config.js"),
            format!(
                "module.exports = {{ solidity: \"0.8.28\", networks: {{ hardhat: {{ chainId: {chain_id} }} }} }};\n"
            ),
        )
        .map_err(|e| failed("config", e))?;
        // Hardhat refuses to run from an installation outside the project: link it in.
        std::os::unix::fs::symlink(npm.join("node_modules"), dir.path().join("node_modules"))
            .map_err(|e| failed("node_modules link", e))?;
        let port = free_port().map_err(|e| failed("free port", e))?;
        let log = fs::File::create(dir.path().join("hardhat.log")).map_err(|e| failed("log", e))?;
        let log_err = log.try_clone().map_err(|e| failed("log", e))?;
        // Hardhat keeps global state under the XDG directories (env-paths: `vars.json` and
        // `telemetry-consent.json` in `$XDG_CONFIG_HOME/hardhat-nodejs`, an analytics id in
        // `$XDG_DATA_HOME`, version checks in `$XDG_CACHE_HOME`), creating the files on first
        // use. Nodes started at once on a machine where hardhat never ran raced on them (one read
        // `vars.json` while another was writing it): each node gets its own, in its directory.
        let mut command = Command::new(node);
        for (variable, sub) in XDG_DIRS {
            let path = dir.path().join(sub);
            fs::create_dir_all(&path).map_err(|e| failed("XDG directory", e))?;
            command.env(variable, path);
        }
        let child = command
            .arg("node_modules/hardhat/internal/cli/cli.js")
            .args([
                "node",
                "--hostname",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .current_dir(dir.path())
            .env("HARDHAT_DISABLE_TELEMETRY_PROMPT", "true")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| failed("spawn hardhat", e))?;
        let mut chain = DevChain {
            child,
            port,
            chain_id,
            dir,
        };
        chain.wait_ready(Duration::from_secs(90)).await?;
        Ok(chain)
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<(), DevChainError> {
        let provider = ProviderBuilder::new().connect_http(self.url());
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(DevChainError::Failed(format!(
                    "hardhat exited ({status}): {}",
                    self.log_tail()
                )));
            }
            if let Ok(id) = provider.get_chain_id().await {
                if id == self.chain_id {
                    return Ok(());
                }
            }
            if start.elapsed() > limit {
                return Err(DevChainError::Failed(format!(
                    "hardhat did not answer within {limit:?}: {}",
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The HTTP JSON-RPC URL.
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn url(&self) -> reqwest_url::Url {
        // A literal loopback URL always parses.
        self.rpc_url().parse().expect("loopback URL")
    }

    /// The node's own directory (its config, log and XDG directories).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of the node's log (for error messages).
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("hardhat.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Hardhat's default account `i` (0..3), funded on a fresh node.
    pub fn account(i: usize) -> PrivateKeySigner {
        // The constants are valid keys.
        HARDHAT_KEYS[i].parse().expect("hardhat key")
    }
}

impl Drop for DevChain {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

mod reqwest_url {
    pub use alloy::transports::http::reqwest::Url;
}

/// The addresses of a deployment of every contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// The identity registry: the `OmniKeyStore` (a registry itself, as in Escrin).
    pub registry: Address,
    /// `OmniKeyStore`.
    pub key_store: Address,
    /// `VerifierPermitter` (owned by the deployer).
    pub permitter: Address,
    /// `TaskHub`.
    pub task_hub: Address,
    /// `EscrinTaskHub` (Escrin's `TasksAvailable(address,bytes32)`).
    pub escrin_task_hub: Address,
}

/// For tests: a provider on `url` whose transactions `signer` signs and pays for.
pub fn wallet_provider(url: &str, signer: PrivateKeySigner) -> DynProvider {
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(url.parse().expect("an RPC URL"))
        .erased()
}

/// For tests: waits for the transaction `send` submits to be mined and asserts it succeeded.
pub async fn mined<E: std::fmt::Debug>(
    send: impl std::future::Future<
        Output = Result<alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>, E>,
    >,
) -> alloy::rpc::types::TransactionReceipt {
    let receipt = send
        .await
        .expect("the transaction is accepted")
        .get_receipt()
        .await
        .expect("the transaction is mined");
    assert!(receipt.status(), "the transaction reverted: {receipt:?}");
    receipt
}

/// Deploys every contract from `deployer`; the permitter grants permits of at most
/// `max_duration` seconds.
pub async fn deploy(
    rpc_url: &str,
    deployer: PrivateKeySigner,
    max_duration: u64,
) -> Result<Deployment, DevChainError> {
    let url = rpc_url
        .parse()
        .map_err(|e| DevChainError::Failed(format!("RPC URL: {e}")))?;
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(deployer))
        .connect_http(url);
    let failed = |what: &str, e: alloy::contract::Error| {
        DevChainError::Failed(format!("deploying {what}: {e}"))
    };
    // The key store is the registry, as in Escrin.
    let key_store = *OmniKeyStore::deploy(&provider)
        .await
        .map_err(|e| failed("OmniKeyStore", e))?
        .address();
    let registry = key_store;
    let permitter = *VerifierPermitter::deploy(&provider, registry, max_duration)
        .await
        .map_err(|e| failed("VerifierPermitter", e))?
        .address();
    let task_hub = *TaskHub::deploy(&provider)
        .await
        .map_err(|e| failed("TaskHub", e))?
        .address();
    let escrin_task_hub = *EscrinTaskHub::deploy(&provider)
        .await
        .map_err(|e| failed("EscrinTaskHub", e))?
        .address();
    Ok(Deployment {
        registry,
        key_store,
        permitter,
        task_hub,
        escrin_task_hub,
    })
}
