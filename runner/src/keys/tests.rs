use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use attest::sealing::SealingRoot;
use zeroize::Zeroizing;

use super::local::LocalStore;
use super::local::RootSource;
use super::*;
use crate::state::KeySource;
use crate::state::StateDir;
use crate::worker::ScriptKind;

fn code(script: &str) -> CodeIdentity {
    CodeIdentity::of(ScriptKind::Module, script)
}

/// A store that counts its calls, waits `delay`, and answers from `answers` in turn (the last
/// one repeats): `Ok(byte)` → 32 × byte, `Err` → that message.
struct Fake {
    calls: AtomicUsize,
    delay: Duration,
    answers: Vec<Result<u8, &'static str>>,
}

impl Fake {
    fn new(delay: Duration, answers: Vec<Result<u8, &'static str>>) -> Arc<Fake> {
        Arc::new(Fake {
            calls: AtomicUsize::new(0),
            delay,
            answers,
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl KeyStore for Fake {
    fn get(&self, _identity: CodeIdentity) -> BoxFuture<'_, Result<KeyBytes, String>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = self.answers[n.min(self.answers.len() - 1)];
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            answer
                .map(|b| Zeroizing::new([b; 32]))
                .map_err(|m| m.to_owned())
        })
    }
}

fn stores_with(name: &str, store: Arc<dyn KeyStore>, policy: KeyPolicy) -> Arc<KeyStores> {
    let mut stores: BTreeMap<String, Arc<dyn KeyStore>> = BTreeMap::new();
    stores.insert(name.to_owned(), store);
    Arc::new(KeyStores::new(
        stores,
        policy,
        tokio::runtime::Handle::current(),
    ))
}

fn worker(stores: &Arc<KeyStores>, script: &str) -> WorkerKeys {
    stores.for_worker(WorkerId::new_random(), code(script))
}

#[test]
fn local_derivation_is_hkdf_sha256_of_root_and_identity() {
    // Computed independently (Python hmac/hashlib: RFC 5869 extract + one expand block).
    let expected = "07cc0af56cb9baf765e81fbe76a74f944d32bb1112ba6efbe85cc67d21967ed0";
    assert_eq!(hex::encode(*local::derive(&[7; 32], &[9; 32])), expected);

    let store = LocalStore::new(SealingRoot::from_bytes([7; 32]), RootSource::Ephemeral);
    let a = store.derive(code("a"));
    assert_eq!(a, store.derive(code("a")));
    assert_ne!(a, store.derive(code("b")));
    assert_ne!(
        a,
        store.derive(CodeIdentity::of(ScriptKind::Classic, "a")),
        "the script kind is part of the identity"
    );
    let other_root = LocalStore::new(SealingRoot::from_bytes([8; 32]), RootSource::Ephemeral);
    assert_ne!(a, other_root.derive(code("a")));
}

#[tokio::test]
async fn local_root_is_kept_in_the_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let no_tee = Arc::new(attest::Attester::detect_at(dir.path().join("no-tee")));
    assert_eq!(no_tee.tee(), attest::Tee::None);
    let state_path = dir.path().join("state");
    let open = || {
        Arc::new(
            StateDir::open(
                &state_path,
                KeySource::Key(SealingRoot::from_bytes([1; 32])),
            )
            .unwrap(),
        )
    };

    let state = open();
    let first = LocalStore::open(&no_tee, Some(&state)).await.unwrap();
    assert_eq!(first.source(), RootSource::StateDir);
    let key = first.derive(code("w"));
    drop(state);

    // A restart: the same directory gives the same keys.
    let state = open();
    let again = LocalStore::open(&no_tee, Some(&state)).await.unwrap();
    assert_eq!(again.derive(code("w")), key);

    // No directory: a random root, other keys each time.
    let ephemeral = LocalStore::open(&no_tee, None).await.unwrap();
    assert_eq!(ephemeral.source(), RootSource::Ephemeral);
    assert_ne!(ephemeral.derive(code("w")), key);
    let ephemeral2 = LocalStore::open(&no_tee, None).await.unwrap();
    assert_ne!(ephemeral.derive(code("w")), ephemeral2.derive(code("w")));
}

#[tokio::test]
async fn concurrent_first_calls_share_one_fetch_and_the_key_is_cached() {
    let fake = Fake::new(Duration::from_millis(100), vec![Ok(5)]);
    let stores = stores_with("local", fake.clone(), KeyPolicy::default());
    let keys = worker(&stores, "w");

    let calls: Vec<_> = (0..8).map(|_| keys.get("local")).collect();
    let results = futures_util::future::join_all(calls).await;
    for result in results {
        assert_eq!(*result.unwrap(), [5; 32]);
    }
    assert_eq!(
        fake.calls(),
        1,
        "one fetch for eight concurrent first calls"
    );

    assert_eq!(*keys.get("local").await.unwrap(), [5; 32]);
    assert_eq!(fake.calls(), 1, "served from the cache");

    // Another worker (even with the same code) has its own cache.
    let other = worker(&stores, "w");
    other.get("local").await.unwrap();
    assert_eq!(fake.calls(), 2);
}

#[tokio::test]
async fn a_failed_fetch_is_shared_by_its_waiters_but_not_cached() {
    let fake = Fake::new(
        Duration::from_millis(50),
        vec![Err("the permitter refused: MeasurementNotAllowed"), Ok(3)],
    );
    let stores = stores_with("sapphire-localnet", fake.clone(), KeyPolicy::default());
    let keys = worker(&stores, "w");

    let (a, b) = tokio::join!(keys.get("sapphire-localnet"), keys.get("sapphire-localnet"));
    for result in [a, b] {
        match result {
            Err(KeyError::Failed { store, message }) => {
                assert_eq!(store, "sapphire-localnet");
                assert!(message.contains("MeasurementNotAllowed"), "{message}");
            }
            Ok(_) => panic!("expected the refusal"),
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(fake.calls(), 1);

    // The next call asks the store again, and that success is cached.
    assert_eq!(*keys.get("sapphire-localnet").await.unwrap(), [3; 32]);
    assert_eq!(*keys.get("sapphire-localnet").await.unwrap(), [3; 32]);
    assert_eq!(fake.calls(), 2);
}

#[tokio::test]
async fn a_store_over_the_timeout_is_a_timeout_error_and_not_cached() {
    let fake = Fake::new(Duration::from_secs(3600), vec![Ok(1)]);
    let policy = KeyPolicy {
        timeout: Duration::from_millis(50),
        ..KeyPolicy::default()
    };
    let stores = stores_with("sapphire-testnet", fake.clone(), policy);
    let keys = worker(&stores, "w");
    let error = keys.get("sapphire-testnet").await.unwrap_err();
    assert_eq!(
        error,
        KeyError::Timeout {
            store: "sapphire-testnet".into(),
            after: Duration::from_millis(50)
        }
    );
    assert!(
        error.to_string().contains("did not answer within 50 ms"),
        "{error}"
    );
    keys.get("sapphire-testnet").await.unwrap_err();
    assert_eq!(fake.calls(), 2, "a timeout is not cached");
}

#[tokio::test]
async fn cached_keys_expire() {
    let fake = Fake::new(Duration::ZERO, vec![Ok(1), Ok(2)]);
    let policy = KeyPolicy {
        cache_for: Duration::from_millis(50),
        ..KeyPolicy::default()
    };
    let stores = stores_with("local", fake.clone(), policy);
    let keys = worker(&stores, "w");
    assert_eq!(*keys.get("local").await.unwrap(), [1; 32]);
    assert_eq!(*keys.get("local").await.unwrap(), [1; 32]);
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(*keys.get("local").await.unwrap(), [2; 32]);
    assert_eq!(fake.calls(), 2);
}

#[tokio::test]
async fn unknown_and_unconfigured_stores_are_named() {
    let fake = Fake::new(Duration::ZERO, vec![Ok(1)]);
    let stores = stores_with("local", fake.clone(), KeyPolicy::default());
    let keys = worker(&stores, "w");

    let unknown = keys.get("nope").await.unwrap_err().to_string();
    for name in STORE_NAMES {
        assert!(unknown.contains(&format!("{name:?}")), "{unknown}");
    }
    assert!(
        unknown.starts_with("unknown key store \"nope\""),
        "{unknown}"
    );

    let absent = keys.get("sapphire-mainnet").await.unwrap_err();
    assert!(
        matches!(absent, KeyError::NotConfigured { .. }),
        "{absent:?}"
    );
    let absent = absent.to_string();
    assert!(absent.contains("not configured"), "{absent}");
    assert!(absent.contains("\"local\""), "{absent}");
    assert_eq!(fake.calls(), 0);
}

#[tokio::test]
async fn fetches_run_on_the_runners_runtime_not_the_callers() {
    // The caller's runtime is a current-thread runtime on another thread (as an isolate's);
    // the fetch runs on the runtime the stores were made on, even when the caller's runtime
    // stops polling it.
    let fake = Fake::new(Duration::from_millis(20), vec![Ok(9)]);
    let stores = stores_with("local", fake.clone(), KeyPolicy::default());
    let keys = Arc::new(worker(&stores, "w"));
    let on_other_thread = {
        let keys = keys.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(keys.get("local")).map(|k| *k)
        })
    };
    let result = tokio::task::spawn_blocking(move || on_other_thread.join().unwrap())
        .await
        .unwrap();
    assert_eq!(result.unwrap(), [9; 32]);
}

/// Escrin's key store is its registry: without `registry` the store's address is used; a fixed
/// identity is a `bytes32` (`0x` + 64 hex digits), a number is refused.
#[test]
fn the_registry_defaults_to_the_key_store_and_identities_are_bytes32() {
    let identity = format!("0x{}", "ab".repeat(32));
    let specs = config::parse(&format!(
        r#"{{ "verifier_url": "http://127.0.0.1:9/", "stores": {{ "sapphire-testnet": {{
             "key_store": "0x0000000000000000000000000000000000000002",
             "permitter": "0x0000000000000000000000000000000000000003",
             "identity": "{identity}" }} }} }}"#
    ))
    .unwrap();
    let store = &specs[0];
    assert_eq!(store.chain.registry, store.chain.key_store);
    assert_eq!(
        store.identity,
        Some(alloy::primitives::B256::repeat_byte(0xab))
    );
    for bad in [r#""42""#, "42", r#""0xab""#] {
        let error = config::parse(&format!(
            r#"{{ "verifier_url": "http://x", "stores": {{ "sapphire-testnet": {{
                 "key_store": "0x0000000000000000000000000000000000000002",
                 "permitter": "0x0000000000000000000000000000000000000003",
                 "identity": {bad} }} }} }}"#
        ))
        .unwrap_err();
        assert!(
            error.contains("identity") || error.contains("invalid"),
            "{bad}: {error}"
        );
    }
}

#[test]
fn the_config_file_fills_public_defaults_and_guards_dev_chains() {
    let addresses = r#""registry": "0x0000000000000000000000000000000000000001",
        "key_store": "0x0000000000000000000000000000000000000002",
        "permitter": "0x0000000000000000000000000000000000000003""#;
    let specs = config::parse(&format!(
        r#"{{ "verifier_url": "http://127.0.0.1:9/",
             "stores": {{ "sapphire-testnet": {{ {addresses} }},
                          "sapphire-localnet": {{ {addresses}, "rpc_url": "http://127.0.0.1:8545",
                              "chain_id": 31337, "insecure_dev_chain": true,
                              "verifier_url": "http://127.0.0.1:10" }} }} }}"#
    ))
    .unwrap();
    assert_eq!(specs.len(), 2);
    let localnet = specs.iter().find(|s| s.name == SAPPHIRE_LOCALNET).unwrap();
    assert_eq!(localnet.chain.chain_id, 31337);
    assert_eq!(
        localnet.chain.confidentiality,
        contracts::keys::Confidentiality::InsecureDevChain
    );
    assert_eq!(localnet.verifier_url, "http://127.0.0.1:10");
    let testnet = specs.iter().find(|s| s.name == SAPPHIRE_TESTNET).unwrap();
    assert_eq!(testnet.chain.chain_id, 0x5aff);
    assert_eq!(testnet.chain.rpc_url, "https://testnet.sapphire.oasis.io");
    assert_eq!(
        testnet.chain.confidentiality,
        contracts::keys::Confidentiality::Sapphire
    );
    assert_eq!(testnet.verifier_url, "http://127.0.0.1:9/");

    let refused = |text: String, mentions: &str| {
        let error = config::parse(&text).unwrap_err();
        assert!(error.contains(mentions), "{error}");
    };
    let v = r#""verifier_url": "http://x""#;
    // A chain id override outside localnet; a dev chain outside localnet.
    refused(
        format!(
            r#"{{ {v}, "stores": {{ "sapphire-mainnet": {{ {addresses}, "chain_id": 31337 }} }} }}"#
        ),
        "only for sapphire-localnet",
    );
    refused(
        format!(
            r#"{{ {v}, "stores": {{ "sapphire-testnet": {{ {addresses}, "insecure_dev_chain": true }} }} }}"#
        ),
        "only for sapphire-localnet",
    );
    // A plain EVM chain id without saying it is an insecure dev chain; clear text on 0x5afd.
    refused(
        format!(
            r#"{{ {v}, "stores": {{ "sapphire-localnet": {{ {addresses}, "chain_id": 31337 }} }} }}"#
        ),
        "not a Sapphire chain",
    );
    refused(
        format!(
            r#"{{ {v}, "stores": {{ "sapphire-localnet": {{ {addresses}, "insecure_dev_chain": true }} }} }}"#
        ),
        "encrypted envelope",
    );
    // No verifier; a store name that is not one; a missing address; an unknown field.
    refused(
        format!(r#"{{ "stores": {{ "sapphire-testnet": {{ {addresses} }} }} }}"#),
        "verifier_url",
    );
    refused(
        format!(r#"{{ {v}, "stores": {{ "ethereum": {{ {addresses} }} }} }}"#),
        "not a Sapphire store name",
    );
    refused(
        format!(
            r#"{{ {v}, "stores": {{ "sapphire-testnet": {{ "registry": "0x0000000000000000000000000000000000000001" }} }} }}"#
        ),
        "missing field",
    );
    refused(
        format!(r#"{{ {v}, "stores": {{ "sapphire-testnet": {{ {addresses}, "rpc": "x" }} }} }}"#),
        "unknown field",
    );
}

fn limited(per_worker: u32, per_runner: u32) -> KeyPolicy {
    KeyPolicy {
        per_worker: limit::RateLimit::per_minute(per_worker),
        per_runner: limit::RateLimit::per_minute(per_runner),
        ..KeyPolicy::default()
    }
}

/// A worker whose store keeps refusing (nothing cached) cannot make it spend gas in a loop:
/// past its limit the request never reaches the store and `getOmniKey` gets a typed refusal.
#[tokio::test]
async fn a_worker_past_its_rate_limit_is_refused_before_the_store() {
    let fake = Fake::new(Duration::ZERO, vec![Err("the permitter refused")]);
    let stores = stores_with("sapphire-testnet", fake.clone(), limited(2, 100));
    let keys = worker(&stores, "looping");
    for _ in 0..2 {
        assert!(matches!(
            keys.get("sapphire-testnet").await,
            Err(KeyError::Failed { .. })
        ));
    }
    let Err(refused) = keys.get("sapphire-testnet").await else {
        panic!("the third request was not refused");
    };
    match &refused {
        KeyError::RateLimited {
            store,
            scope,
            per_minute,
            retry_after,
        } => {
            assert_eq!(store, "sapphire-testnet");
            assert_eq!((*scope, *per_minute), (limit::Scope::Worker, 2));
            assert!(*retry_after <= Duration::from_secs(30) && *retry_after > Duration::ZERO);
        }
        other => panic!("{other:?}"),
    }
    let message = refused.to_string();
    assert!(
        message.contains("too many key requests from this worker")
            && message.contains("2 a minute"),
        "{message}"
    );
    assert_eq!(
        fake.calls(),
        2,
        "the refused request never reached the store"
    );
    // Another worker has its own allowance.
    assert!(matches!(
        worker(&stores, "other").get("sapphire-testnet").await,
        Err(KeyError::Failed { .. })
    ));
    assert_eq!(fake.calls(), 3);
}

#[tokio::test]
async fn cached_keys_and_shared_fetches_are_not_requests() {
    let fake = Fake::new(Duration::from_millis(20), vec![Ok(4)]);
    let stores = stores_with("sapphire-testnet", fake.clone(), limited(1, 1));
    let keys = worker(&stores, "w");
    let (a, b) = tokio::join!(keys.get("sapphire-testnet"), keys.get("sapphire-testnet"));
    assert_eq!((*a.unwrap(), *b.unwrap()), ([4; 32], [4; 32]));
    for _ in 0..10 {
        assert_eq!(*keys.get("sapphire-testnet").await.unwrap(), [4; 32]);
    }
    assert_eq!(fake.calls(), 1);
}

/// Many workers (anyone may create one) share the runner's limit.
#[tokio::test]
async fn all_workers_together_are_held_to_the_runners_limit() {
    let fake = Fake::new(Duration::ZERO, vec![Ok(5)]);
    let stores = stores_with("sapphire-testnet", fake.clone(), limited(5, 3));
    for n in 0..3 {
        let keys = worker(&stores, &format!("w{n}"));
        assert!(keys.get("sapphire-testnet").await.is_ok());
    }
    let refused = worker(&stores, "w3").get("sapphire-testnet").await;
    assert!(
        matches!(
            refused,
            Err(KeyError::RateLimited {
                scope: limit::Scope::Runner,
                per_minute: 3,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(fake.calls(), 3);
}

#[tokio::test]
async fn the_local_store_is_not_metered() {
    let store = Arc::new(LocalStore::new(
        SealingRoot::from_bytes([1; 32]),
        RootSource::Ephemeral,
    ));
    let stores = stores_with(LOCAL, store, limited(0, 0));
    assert!(worker(&stores, "w").get(LOCAL).await.is_ok());
}
