//! Omni Keys (issue 5): the key stores behind `rnr.getOmniKey(store)`.
//!
//! A worker's Omni Key is 32 bytes known only to instances of the same code: every store
//! derives or releases it for the worker's [`CodeIdentity`] (SHA-256 of type and script).
//!
//! - [`KeyStore`]: one backend, `get(identity) → 32 bytes`.
//! - [`local`]: HKDF-SHA256 over a root this runner keeps (SNP: the measurement-bound derived
//!   key; else a secret sealed in the state directory; else random, dev only).
//! - [`sapphire`]: `contracts::keys::KeyClient` against an `OmniKeyStore` deployment, proving
//!   with TEE evidence (checked by an attestation verifier service, [`verifier_client`]) that
//!   this appliance runs the worker's code.
//! - [`KeyStores`]: the stores this runner offers, by name, with the cache policy and the
//!   runtime the fetches run on; [`WorkerKeys`]: one worker's view of them, with its cache
//!   (per worker and store, bounded in time; concurrent first calls share one fetch; failures
//!   are not cached).
//!
//! The isolate side (`worker/extension.rs`) turns the bytes into a non-extractable HKDF
//! `CryptoKey` natively: no JavaScript ever holds them.

pub mod config;
pub mod limit;
pub mod local;
pub mod sapphire;
pub mod verifier_client;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use futures_util::future::FutureExt;
use futures_util::future::Shared;
use zeroize::Zeroizing;

use crate::worker::CodeIdentity;
use crate::worker::WorkerId;
use limit::Bucket;
use limit::RateLimit;

pub use config::KeyArgs;
pub use config::SetupError;

/// The name of the store every runner has.
pub const LOCAL: &str = "local";
/// Oasis Sapphire mainnet (chain id 0x5afe).
pub const SAPPHIRE_MAINNET: &str = "sapphire-mainnet";
/// Oasis Sapphire testnet (chain id 0x5aff).
pub const SAPPHIRE_TESTNET: &str = "sapphire-testnet";
/// Oasis Sapphire localnet (chain id 0x5afd; a dev chain only with explicit configuration).
pub const SAPPHIRE_LOCALNET: &str = "sapphire-localnet";

/// Every store name a worker may ask for, in the order error messages list them.
pub const STORE_NAMES: [&str; 4] = [LOCAL, SAPPHIRE_MAINNET, SAPPHIRE_TESTNET, SAPPHIRE_LOCALNET];

/// 32 key bytes, wiped when dropped.
pub type KeyBytes = Zeroizing<[u8; 32]>;

/// A boxed, sendable future (keeps [`KeyStore`] object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a worker got no key. Cloneable: concurrent callers of one fetch all get its outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not a store name at all.
    #[error("unknown key store {store:?}: valid stores are {} (configured on this runner: {})", quoted(&STORE_NAMES), quoted(configured))]
    UnknownStore {
        store: String,
        configured: Vec<String>,
    },
    /// A valid store that this runner has no configuration for.
    #[error(
        "key store {store:?} is not configured on this runner (see --key-stores); configured: {}",
        quoted(configured)
    )]
    NotConfigured {
        store: String,
        configured: Vec<String>,
    },
    /// The store took longer than the runner's key timeout.
    #[error("key store {store:?} did not answer within {} ms", after.as_millis())]
    Timeout { store: String, after: Duration },
    /// The store answered with a refusal or failed.
    #[error("key store {store:?}: {message}")]
    Failed { store: String, message: String },
    /// Too many key requests reached stores lately (a cached key is not a request).
    #[error(
        "key store {store:?}: too many key requests from {scope} (at most {per_minute} a minute); {}",
        retry_text(*retry_after)
    )]
    RateLimited {
        store: String,
        scope: limit::Scope,
        per_minute: u32,
        retry_after: Duration,
    },
}

fn retry_text(after: Duration) -> String {
    if after == Duration::MAX {
        "this runner allows none".to_owned()
    } else {
        format!("try again in {} s", after.as_secs_f64().ceil() as u64)
    }
}

fn quoted<S: AsRef<str>>(names: &[S]) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("{:?}", n.as_ref())).collect();
    names.join(", ")
}

/// One key store backend. `get` may take long (chain transactions); the caller bounds it.
pub trait KeyStore: Send + Sync {
    /// The key of the worker whose code is `identity`. Errors carry the store's own message
    /// (the caller adds the store's name).
    fn get(&self, identity: CodeIdentity) -> BoxFuture<'_, Result<KeyBytes, String>>;

    /// Whether requests to this store are rate-limited ([`limit`]): true unless a request
    /// costs nothing (`local`).
    fn metered(&self) -> bool {
        true
    }
}

/// How keys are cached and bounded.
#[derive(Debug, Clone, Copy)]
pub struct KeyPolicy {
    /// How long a fetched key is served from a worker's cache (Escrin: 1 hour).
    pub cache_for: Duration,
    /// Longest a store may take for one key.
    pub timeout: Duration,
    /// Requests one worker may send to metered stores.
    pub per_worker: RateLimit,
    /// Requests all workers together may send to metered stores.
    pub per_runner: RateLimit,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        KeyPolicy {
            cache_for: Duration::from_secs(3600),
            timeout: Duration::from_secs(20),
            per_worker: RateLimit::per_minute(6),
            per_runner: RateLimit::per_minute(60),
        }
    }
}

/// The key stores a runner offers, by name. Shared by every worker (in `Services`).
pub struct KeyStores {
    stores: BTreeMap<String, Arc<dyn KeyStore>>,
    policy: KeyPolicy,
    /// The runner's runtime: store calls run there, never on an isolate's thread.
    runtime: tokio::runtime::Handle,
    /// Requests to metered stores, all workers together.
    bucket: Mutex<Bucket>,
}

impl fmt::Debug for KeyStores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStores")
            .field("stores", &self.stores.keys().collect::<Vec<_>>())
            .field("policy", &self.policy)
            .finish()
    }
}

impl KeyStores {
    /// Stores by name; fetches run on `runtime`.
    pub fn new(
        stores: BTreeMap<String, Arc<dyn KeyStore>>,
        policy: KeyPolicy,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        KeyStores {
            stores,
            policy,
            runtime,
            bucket: Mutex::new(Bucket::new(policy.per_runner, Instant::now())),
        }
    }

    /// The configured store names, in [`STORE_NAMES`] order (then any other).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = STORE_NAMES
            .iter()
            .filter(|n| self.stores.contains_key(**n))
            .map(|n| n.to_string())
            .collect();
        names.extend(
            self.stores
                .keys()
                .filter(|n| !STORE_NAMES.contains(&n.as_str()))
                .cloned(),
        );
        names
    }

    pub fn policy(&self) -> KeyPolicy {
        self.policy
    }

    fn store(&self, name: &str) -> Result<Arc<dyn KeyStore>, KeyError> {
        if let Some(store) = self.stores.get(name) {
            return Ok(store.clone());
        }
        let configured = self.names();
        Err(if STORE_NAMES.contains(&name) {
            KeyError::NotConfigured {
                store: name.to_owned(),
                configured,
            }
        } else {
            KeyError::UnknownStore {
                store: name.to_owned(),
                configured,
            }
        })
    }

    /// The view of worker `worker` (running code `identity`) on these stores, with its own cache.
    pub fn for_worker(self: &Arc<Self>, worker: WorkerId, identity: CodeIdentity) -> WorkerKeys {
        WorkerKeys {
            stores: self.clone(),
            worker,
            identity,
            cache: Arc::default(),
            bucket: Mutex::new(Bucket::new(self.policy.per_worker, Instant::now())),
        }
    }
}

type Fetch = Shared<BoxFuture<'static, Result<Arc<KeyBytes>, KeyError>>>;

enum Slot {
    /// A fetch in flight: later callers wait for the same one.
    Fetching { fetch: Fetch, generation: u64 },
    /// A key, served until `until`.
    Ready { key: Arc<KeyBytes>, until: Instant },
}

#[derive(Default)]
struct Cache {
    slots: HashMap<String, Slot>,
    generation: u64,
}

/// One worker's keys: its identity, the runner's stores and a cache per store. Dropped with
/// the worker (and its cached keys with it).
pub struct WorkerKeys {
    stores: Arc<KeyStores>,
    worker: WorkerId,
    identity: CodeIdentity,
    cache: Arc<Mutex<Cache>>,
    /// This worker's requests to metered stores.
    bucket: Mutex<Bucket>,
}

impl WorkerKeys {
    /// The worker's key from store `name`: from the cache while fresh, else fetched on the
    /// runner's runtime under the key timeout. Concurrent callers share one fetch and its
    /// outcome; a failure is not kept (the next call fetches again).
    pub fn get(&self, name: &str) -> BoxFuture<'static, Result<KeyBytes, KeyError>> {
        let store = match self.stores.store(name) {
            Ok(store) => store,
            Err(error) => return Box::pin(std::future::ready(Err(error))),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let fetch = match cache.slots.get(name) {
            Some(Slot::Ready { key, until }) if *until > Instant::now() => {
                let key = copy(key);
                return Box::pin(std::future::ready(Ok(key)));
            }
            Some(Slot::Fetching { fetch, .. }) => fetch.clone(),
            _ => {
                if store.metered() {
                    if let Err(error) = self.take_request(name) {
                        return Box::pin(std::future::ready(Err(error)));
                    }
                }
                cache.generation += 1;
                let generation = cache.generation;
                let fetch = self.start_fetch(name, store, generation);
                cache.slots.insert(
                    name.to_owned(),
                    Slot::Fetching {
                        fetch: fetch.clone(),
                        generation,
                    },
                );
                fetch
            }
        };
        Box::pin(async move { fetch.await.map(|key| copy(&key)) })
    }

    /// Counts one request to metered store `name` against the worker's and the runner's
    /// limits, or refuses it.
    fn take_request(&self, name: &str) -> Result<(), KeyError> {
        let mut worker = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let mut runner = self.stores.bucket.lock().unwrap_or_else(|p| p.into_inner());
        limit::take_both(&mut worker, &mut runner, Instant::now()).map_err(
            |(scope, limit, retry_after)| {
                tracing::warn!(worker = %self.worker, store = %name, ?scope, "omni key request refused: rate limit");
                KeyError::RateLimited {
                    store: name.to_owned(),
                    scope,
                    per_minute: limit.per_minute,
                    retry_after,
                }
            },
        )
    }

    /// Spawns the fetch on the runner's runtime; when it ends, it files its outcome in the
    /// cache (a key until it expires; nothing for a failure).
    fn start_fetch(&self, name: &str, store: Arc<dyn KeyStore>, generation: u64) -> Fetch {
        let policy = self.stores.policy;
        let identity = self.identity;
        let worker = self.worker.clone();
        let cache = self.cache.clone();
        let task_name = name.to_owned();
        let task = self.stores.runtime.spawn(async move {
            let name = task_name;
            let started = Instant::now();
            let outcome = match tokio::time::timeout(policy.timeout, store.get(identity)).await {
                Ok(Ok(key)) => Ok(Arc::new(key)),
                Ok(Err(message)) => Err(KeyError::Failed {
                    store: name.clone(),
                    message,
                }),
                Err(_) => Err(KeyError::Timeout {
                    store: name.clone(),
                    after: policy.timeout,
                }),
            };
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
            // File the outcome only over this fetch's own slot.
            let ours = matches!(
                cache.slots.get(&name),
                Some(Slot::Fetching { generation: g, .. }) if *g == generation
            );
            match &outcome {
                Ok(key) => {
                    tracing::info!(%worker, store = %name, %identity, elapsed_ms, "omni key fetched");
                    if ours {
                        cache.slots.insert(
                            name,
                            Slot::Ready {
                                key: key.clone(),
                                until: Instant::now() + policy.cache_for,
                            },
                        );
                    }
                }
                Err(error) => {
                    tracing::warn!(%worker, store = %name, %identity, elapsed_ms, %error, "omni key fetch failed");
                    if ours {
                        cache.slots.remove(&name);
                    }
                }
            }
            outcome
        });
        let store_name = name.to_owned();
        let fetch: BoxFuture<'static, Result<Arc<KeyBytes>, KeyError>> = Box::pin(async move {
            match task.await {
                Ok(outcome) => outcome,
                Err(error) => Err(KeyError::Failed {
                    store: store_name,
                    message: format!("the key fetch stopped: {error}"),
                }),
            }
        });
        fetch.shared()
    }
}

fn copy(key: &KeyBytes) -> KeyBytes {
    Zeroizing::new(**key)
}
