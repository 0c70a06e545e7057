//! The EVM chains this runner talks to, by name: `--chains FILE` (a JSON object, name →
//! settings) and `--chain NAME=RPC_URL` flags. Workers name a chain (e.g. a TaskHub trigger's
//! `chain`) and never see its RPC URL, which may carry an API key.
//!
//! ```json
//! { "local": { "rpc_url": "http://127.0.0.1:8545", "chain_id": 31337,
//!              "confirmations": 0, "poll_interval_ms": 500 } }
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// Blocks on top of a log before it is delivered, unless configured.
pub const DEFAULT_CONFIRMATIONS: u64 = 1;
/// Pause between polls, unless configured.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Longest pause between retries after RPC failures, unless configured.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Limit for each RPC request, unless configured.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// One chain's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    /// JSON-RPC over HTTP(S). Never shown by the API (it may hold an API key).
    pub rpc_url: String,
    /// When set, the node must answer this chain id (checked at worker creation).
    pub chain_id: Option<u64>,
    pub confirmations: u64,
    pub poll_interval: Duration,
    pub max_backoff: Duration,
    pub rpc_timeout: Duration,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the RPC URL: it may carry an API key.
        f.debug_struct("Chain")
            .field("name", &self.name)
            .field("chain_id", &self.chain_id)
            .field("confirmations", &self.confirmations)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

impl Chain {
    /// A chain with the default settings.
    pub fn new(name: impl Into<String>, rpc_url: impl Into<String>) -> Self {
        Chain {
            name: name.into(),
            rpc_url: rpc_url.into(),
            chain_id: None,
            confirmations: DEFAULT_CONFIRMATIONS,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_backoff: DEFAULT_MAX_BACKOFF,
            rpc_timeout: DEFAULT_RPC_TIMEOUT,
        }
    }

    /// `text` with the RPC URL replaced by `<NAME rpc>`: errors from the HTTP client name the
    /// URL, which must not reach API answers.
    pub fn redact(&self, text: &str) -> String {
        let placeholder = format!("<{} rpc>", self.name);
        let url = self.rpc_url.as_str();
        let mut out = text.replace(url, &placeholder);
        let trimmed = url.trim_end_matches('/');
        if !trimmed.is_empty() && trimmed != url {
            out = out.replace(trimmed, &placeholder);
        }
        out
    }
}

/// A chain's entry in the `--chains` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainEntry {
    rpc_url: String,
    #[serde(default)]
    chain_id: Option<u64>,
    #[serde(default)]
    confirmations: Option<u64>,
    #[serde(default)]
    poll_interval_ms: Option<u64>,
    #[serde(default)]
    max_backoff_ms: Option<u64>,
    #[serde(default)]
    rpc_timeout_ms: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChainsError {
    #[error("--chains {path}: {reason}")]
    File { path: String, reason: String },
    #[error("--chain {0:?}: expected NAME=RPC_URL")]
    Flag(String),
    #[error("chain {name:?}: {reason}")]
    Invalid { name: String, reason: String },
}

/// Every configured chain, by name.
#[derive(Debug, Clone, Default)]
pub struct Chains(Arc<BTreeMap<String, Chain>>);

impl Chains {
    /// The chains of `file` (if any), then those of `flags` (`NAME=RPC_URL`; a flag replaces a
    /// file entry of the same name).
    pub fn load(file: Option<&Path>, flags: &[String]) -> Result<Self, ChainsError> {
        let mut chains = BTreeMap::new();
        if let Some(path) = file {
            let failed = |reason: String| ChainsError::File {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
            for chain in parse_file(&text).map_err(failed)? {
                chains.insert(chain.name.clone(), chain);
            }
        }
        for flag in flags {
            let (name, url) = flag
                .split_once('=')
                .ok_or_else(|| ChainsError::Flag(flag.clone()))?;
            let chain = Chain::new(name.trim(), url.trim());
            chains.insert(chain.name.clone(), chain);
        }
        for chain in chains.values() {
            validate(chain)?;
        }
        Ok(Chains(Arc::new(chains)))
    }

    pub fn get(&self, name: &str) -> Option<&Chain> {
        self.0.get(name)
    }

    /// The configured names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_file(text: &str) -> Result<Vec<Chain>, String> {
    let entries: BTreeMap<String, ChainEntry> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON object of chains: {e}"))?;
    Ok(entries
        .into_iter()
        .map(|(name, entry)| {
            let defaults = Chain::new(name, entry.rpc_url);
            Chain {
                chain_id: entry.chain_id,
                confirmations: entry.confirmations.unwrap_or(defaults.confirmations),
                poll_interval: entry
                    .poll_interval_ms
                    .map(Duration::from_millis)
                    .unwrap_or(defaults.poll_interval),
                max_backoff: entry
                    .max_backoff_ms
                    .map(Duration::from_millis)
                    .unwrap_or(defaults.max_backoff),
                rpc_timeout: entry
                    .rpc_timeout_ms
                    .map(Duration::from_millis)
                    .unwrap_or(defaults.rpc_timeout),
                ..defaults
            }
        })
        .collect())
}

fn validate(chain: &Chain) -> Result<(), ChainsError> {
    let invalid = |reason: &str| ChainsError::Invalid {
        name: chain.name.clone(),
        reason: reason.to_owned(),
    };
    let name_ok = !chain.name.is_empty()
        && chain.name.len() <= 64
        && chain
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !name_ok {
        return Err(invalid(
            "a chain name is 1 to 64 ASCII letters, digits, '-', '_' or '.'",
        ));
    }
    let scheme_ok = ["http://", "https://"]
        .iter()
        .any(|s| chain.rpc_url.len() > s.len() && chain.rpc_url.starts_with(s));
    if !scheme_ok {
        return Err(invalid("rpc_url must be an http:// or https:// URL"));
    }
    if chain.poll_interval.is_zero() || chain.rpc_timeout.is_zero() {
        return Err(invalid(
            "poll_interval_ms and rpc_timeout_ms must be positive",
        ));
    }
    if chain.max_backoff < chain.poll_interval {
        return Err(invalid("max_backoff_ms must be at least poll_interval_ms"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_entries_take_defaults_and_flags_replace_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chains.json");
        std::fs::write(
            &path,
            r#"{"local": {"rpc_url": "http://127.0.0.1:8545", "chain_id": 31337,
                          "confirmations": 0, "poll_interval_ms": 100},
                "main": {"rpc_url": "https://rpc.example/key123"}}"#,
        )
        .unwrap();
        let chains = Chains::load(
            Some(&path),
            &[
                "main=https://other.example/".into(),
                "extra=http://h:1".into(),
            ],
        )
        .unwrap();
        assert_eq!(chains.names(), ["extra", "local", "main"]);
        let local = chains.get("local").unwrap();
        assert_eq!(local.chain_id, Some(31337));
        assert_eq!(local.confirmations, 0);
        assert_eq!(local.poll_interval, Duration::from_millis(100));
        assert_eq!(local.max_backoff, DEFAULT_MAX_BACKOFF);
        let main = chains.get("main").unwrap();
        assert_eq!(main.rpc_url, "https://other.example/");
        assert_eq!(main.confirmations, DEFAULT_CONFIRMATIONS);
        assert!(!format!("{main:?}").contains("other.example"));
    }

    #[test]
    fn bad_configuration_is_refused_naming_it() {
        let err = Chains::load(None, &["nameonly".into()]).unwrap_err();
        assert!(err.to_string().contains("NAME=RPC_URL"), "{err}");
        let err = Chains::load(None, &["x=ftp://h".into()]).unwrap_err();
        assert!(err.to_string().contains("http"), "{err}");
        let err = Chains::load(None, &["a b=http://h".into()]).unwrap_err();
        assert!(err.to_string().contains("chain name"), "{err}");
        assert!(parse_file(r#"{"x": {"rpc_url": "http://h", "colour": 1}}"#).is_err());
        assert!(parse_file("[]").is_err());
        let dir = tempfile::tempdir().unwrap();
        let err = Chains::load(Some(&dir.path().join("missing.json")), &[]).unwrap_err();
        assert!(err.to_string().starts_with("--chains"), "{err}");
    }

    #[test]
    fn rpc_urls_are_redacted_from_messages() {
        let chain = Chain::new("main", "https://rpc.example/v1/secret-key/");
        let text = "error sending request for url (https://rpc.example/v1/secret-key/): refused; \
                    also https://rpc.example/v1/secret-key";
        let redacted = chain.redact(text);
        assert!(!redacted.contains("secret-key"), "{redacted}");
        assert!(redacted.contains("<main rpc>"));
    }
}
