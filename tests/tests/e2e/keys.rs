//! Omni Keys (issue 5): `rnr.getOmniKey(store)` in real workers.
//!
//! - `local`: a non-extractable HKDF `CryptoKey`, the same for the same code (also after a
//!   restart with the same `--state-dir`), another for other code; `exportKey`, `encrypt` and
//!   `sign` fail with it; the bytes never pass through JavaScript (spies on every JS import path
//!   see nothing); an unknown store rejects naming the valid ones.
//! - `sapphire-localnet` on a real hardhat node (`contracts::devchain`) with `runner verifier`
//!   (dev evidence): the worker's NFTrout bits equal an independent Rust HKDF over the key read
//!   through `contracts::keys`; other code gets another key; the permitter's refusals reach the
//!   worker as rejections and are not cached; an RPC that never answers times out and the worker
//!   keeps running; Escrin's `env.iam` route (network by chain id) gives the same key, also for
//!   HKDF-SHA-512-256. Without node or hardhat these parts say `SKIPPED` and pass.

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use alloy::providers::DynProvider;
use alloy::signers::local::PrivateKeySigner;
use contracts::bindings::{IdentityRegistry, VerifierPermitter};
use contracts::devchain::{self, mined, Deployment, DevChain};
use contracts::keys::{ChainConfig, Confidentiality, EvidenceProvider, KeyClient};
use contracts::verifier::{self, Verifier};
use e2e::{json, runner_bin, runner_command, tag, worker_path, Runner, Value};

/// A fetch worker that answers `?store=S&hash=H` with its Omni Key's NFTrout bits (HKDF-H, empty
/// salt, info `nftrout/encryption/nfts`, 256 bits) and what it can and cannot do with the key.
fn key_worker(marker: &str) -> String {
    format!(
        r#"// {marker}
const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
const info = new TextEncoder().encode("nftrout/encryption/nfts");
const fails = async (f) => {{ try {{ await f(); return null; }} catch (e) {{ return e.name + ": " + e.message; }} }};
// Escrin's route (`env.iam`, as @escrin/worker calls it): the network by chain id, the key as hex.
const iamKey = async (env, chainId) => {{
  const params = {{ keyId: "omni", network: {{ chainId: Number(chainId) }}, identity: {{ registry: "0x" + "00".repeat(20), id: "0x" + "00".repeat(32) }} }};
  const res = await env.iam.fetch("http://escrin", {{ method: "POST", headers: {{ "content-type": "application/json" }},
    body: JSON.stringify({{ method: "get-key", params }}) }});
  const body = await res.json();
  if (!res.ok) throw new Error(body.error);
  const bytes = Uint8Array.from(body.key.slice(2).match(/../g), (h) => parseInt(h, 16));
  return crypto.subtle.importKey("raw", bytes, "HKDF", false, ["deriveKey", "deriveBits"]);
}};
export default {{
  async fetch(request, rnr) {{
    const url = new URL(request.url);
    const store = url.searchParams.get("store") ?? "local";
    const hash = url.searchParams.get("hash") ?? "SHA-512";
    let key;
    try {{
      key = url.searchParams.get("via") === "iam" ? await iamKey(rnr, store) : await rnr.getOmniKey(store);
    }} catch (e) {{
      return Response.json({{ ok: false, name: e.name, message: e.message }});
    }}
    const bits = await crypto.subtle.deriveBits({{ name: "HKDF", hash, salt: new Uint8Array(), info }}, key, 256);
    const report = {{ ok: true, bits: hex(bits) }};
    if (url.searchParams.has("probe")) {{
      const aes = await crypto.subtle.deriveKey(
        {{ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(), info }}, key,
        {{ name: "AES-GCM", length: 256 }}, false, ["encrypt"]);
      const iv = new Uint8Array(12);
      report.derivedKeyEncrypts = (await crypto.subtle.encrypt({{ name: "AES-GCM", iv }}, aes, new Uint8Array(4))).byteLength;
      report.isCryptoKey = key instanceof CryptoKey;
      report.type = key.type;
      report.extractable = key.extractable;
      report.algorithm = key.algorithm.name;
      report.usages = [...key.usages].sort();
      report.exportRaw = await fails(() => crypto.subtle.exportKey("raw", key));
      report.exportJwk = await fails(() => crypto.subtle.exportKey("jwk", key));
      report.encrypt = await fails(() => crypto.subtle.encrypt({{ name: "AES-GCM", iv }}, key, new Uint8Array(4)));
      report.sign = await fails(() => crypto.subtle.sign("HMAC", key, new Uint8Array(4)));
      report.ownKeys = Object.getOwnPropertyNames(key);
    }}
    return Response.json(report);
  }},
}};
"#
    )
}

/// `GET /w/{id}/?{query}` → the worker's JSON report.
async fn ask(runner: &Runner, id: &str, query: &str) -> Value {
    runner
        .get(&format!("/w/{id}/?{query}"))
        .await
        .assert_status(200)
        .json()
}

/// The worker's NFTrout bits from `store`; panics with the worker's error otherwise.
async fn bits(runner: &Runner, id: &str, store: &str) -> String {
    let report = ask(runner, id, &format!("store={store}")).await;
    assert_eq!(report["ok"], true, "{report}");
    report["bits"].as_str().expect("bits").to_owned()
}

async fn create(runner: &Runner, script: &str) -> String {
    runner.create(&json!({ "script": script })).await
}

#[tokio::test(flavor = "multi_thread")]
async fn local_key_is_a_non_extractable_hkdf_key_of_the_code() {
    let runner = Runner::start(&[]).await;
    let marker = tag("local-key");
    let a = create(&runner, &key_worker(&marker)).await;
    let a_again = create(&runner, &key_worker(&marker)).await;
    let b = create(&runner, &key_worker(&tag("other-code"))).await;

    let probe = ask(&runner, &a, "store=local&probe").await;
    assert_eq!(probe["ok"], true, "{probe}");
    assert_eq!(probe["isCryptoKey"], true, "{probe}");
    assert_eq!(probe["type"], "secret");
    assert_eq!(probe["extractable"], false);
    assert_eq!(probe["algorithm"], "HKDF");
    assert_eq!(probe["usages"], json!(["deriveBits", "deriveKey"]));
    assert_eq!(
        probe["ownKeys"],
        json!([]),
        "nothing readable on the key object"
    );
    assert_eq!(probe["derivedKeyEncrypts"], 4 + 16);
    for refused in ["exportRaw", "exportJwk", "encrypt", "sign"] {
        let error = probe[refused]
            .as_str()
            .unwrap_or_else(|| panic!("{refused} worked: {probe}"));
        assert!(
            error.starts_with("InvalidAccessError") || error.starts_with("NotSupportedError"),
            "{refused}: {error}"
        );
    }

    let first = probe["bits"].as_str().unwrap().to_owned();
    assert_eq!(first.len(), 64);
    assert_eq!(
        bits(&runner, &a, "local").await,
        first,
        "the same key twice"
    );
    assert_eq!(
        bits(&runner, &a_again, "local").await,
        first,
        "the same code in another worker"
    );
    assert_ne!(
        bits(&runner, &b, "local").await,
        first,
        "other code, other key"
    );
    let sha256 = ask(&runner, &a, "store=local&hash=SHA-256").await;
    assert_ne!(sha256["bits"], first.as_str(), "HKDF with another hash");
}

#[tokio::test(flavor = "multi_thread")]
async fn local_keys_survive_a_restart_with_the_same_state_dir() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap();
    let script = key_worker(&tag("restart"));

    let first = Runner::start(&["--state-dir", dir]).await;
    let id = create(&first, &script).await;
    let before = bits(&first, &id, "local").await;
    let log = first.kill();
    assert!(
        log.contains("local key store: root sealed in the state directory"),
        "{log}"
    );

    let second = Runner::start(&["--state-dir", dir]).await;
    let fresh = create(&second, &script).await;
    assert_eq!(
        bits(&second, &fresh, "local").await,
        before,
        "a new worker with the same code"
    );
    drop(second);

    // Without a state directory the root is random: other keys, and a loud warning.
    let stateless = Runner::start(&[]).await;
    let id = create(&stateless, &script).await;
    assert_ne!(bits(&stateless, &id, "local").await, before);
    assert!(
        stateless.logs().contains("CHANGE AT EVERY RESTART"),
        "{}",
        stateless.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_or_unconfigured_store_rejects_and_the_worker_keeps_running() {
    let runner = Runner::start(&[]).await;
    let id = create(&runner, &key_worker(&tag("unknown-store"))).await;

    let unknown = ask(&runner, &id, "store=nope").await;
    assert_eq!(unknown["ok"], false, "{unknown}");
    assert_eq!(unknown["name"], "TypeError", "{unknown}");
    let message = unknown["message"].as_str().unwrap();
    for store in [
        "local",
        "sapphire-mainnet",
        "sapphire-testnet",
        "sapphire-localnet",
    ] {
        assert!(message.contains(&format!("\"{store}\"")), "{message}");
    }

    let absent = ask(&runner, &id, "store=sapphire-mainnet").await;
    assert_eq!(absent["ok"], false, "{absent}");
    assert_eq!(absent["name"], "Error", "{absent}");
    assert!(
        absent["message"]
            .as_str()
            .unwrap()
            .contains("not configured"),
        "{absent}"
    );

    // The worker is fine and the valid store works.
    bits(&runner, &id, "local").await;
    assert_eq!(runner.worker(&id).await["state"], "ready");
}

/// A worker cannot make the runner ask a Sapphire store (and spend its gas wallet) in a loop:
/// past `--key-requests-per-minute` its `getOmniKey` rejects with a clear error before anything
/// reaches the store (here an RPC URL that refuses connections, so every request fails and
/// nothing is cached).
#[tokio::test(flavor = "multi_thread")]
async fn key_requests_past_the_workers_rate_limit_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key-stores.json");
    let dead = "http://127.0.0.1:1/";
    let stores = json!({
        "verifier_url": dead,
        "stores": { "sapphire-testnet": {
            "rpc_url": dead,
            "registry": "0x1111111111111111111111111111111111111111",
            "key_store": "0x2222222222222222222222222222222222222222",
            "permitter": "0x3333333333333333333333333333333333333333",
        } },
    });
    std::fs::write(&file, stores.to_string()).unwrap();
    let state = dir.path().join("state");
    let runner = Runner::start(&[
        "--key-stores",
        file.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--key-requests-per-minute",
        "2",
    ])
    .await;
    let id = create(&runner, &key_worker(&tag("rate-limited"))).await;
    for _ in 0..2 {
        let failed = ask(&runner, &id, "store=sapphire-testnet").await;
        assert_eq!(failed["ok"], false, "{failed}");
        assert!(
            !failed["message"].as_str().unwrap().contains("too many"),
            "{failed}"
        );
    }
    let limited = ask(&runner, &id, "store=sapphire-testnet").await;
    assert_eq!(limited["ok"], false, "{limited}");
    assert_eq!(limited["name"], "Error", "{limited}");
    let message = limited["message"].as_str().unwrap();
    assert!(
        message.contains("sapphire-testnet")
            && message.contains("too many key requests from this worker")
            && message.contains("2 a minute"),
        "{message}"
    );
    // The local store costs nothing and is not limited; the worker keeps running.
    for _ in 0..3 {
        bits(&runner, &id, "local").await;
    }
    assert_eq!(runner.worker(&id).await["state"], "ready");
}

/// Worker code that replaces every JavaScript way in (importKey, CryptoKey.importSync,
/// Promise.prototype.then, typed array constructors) before asking for its key: none of them
/// ever sees the key bytes, because the CryptoKey is made natively.
#[tokio::test(flavor = "multi_thread")]
async fn the_key_bytes_never_pass_through_javascript() {
    let runner = Runner::start(&[]).await;
    let script = format!(
        r#"// {marker}
const seen = [];
const note = (where, args) => {{
  for (const a of args) {{
    if (a instanceof ArrayBuffer || ArrayBuffer.isView(a)) seen.push(where + ":" + (a.byteLength ?? 0));
  }}
}};
const wrap = (obj, name, where) => {{
  const orig = obj[name];
  try {{
    obj[name] = function (...args) {{ note(where, args); return orig.apply(this, args); }};
  }} catch {{
    seen.push("cannot wrap " + where);
  }}
}};
wrap(SubtleCrypto.prototype, "importKey", "importKey");
wrap(crypto.subtle, "importKey", "subtle.importKey");
if (typeof CryptoKey.importSync === "function") wrap(CryptoKey, "importSync", "importSync");
const then = Promise.prototype.then;
Promise.prototype.then = function (ok, err) {{
  return then.call(this, (v) => {{ note("then", [v]); return ok ? ok(v) : v; }}, err);
}};
export default {{
  async fetch(request, rnr) {{
    const key = await rnr.getOmniKey("local");
    // 128 bits: any 32-byte buffer a spy sees would be key material.
    const bits = await crypto.subtle.deriveBits({{ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(), info: new Uint8Array() }}, key, 128);
    return Response.json({{ seen: [...seen], bits: bits.byteLength }});
  }},
}};
"#,
        marker = tag("spies")
    );
    let id = create(&runner, &script).await;
    let report = ask(&runner, &id, "").await;
    assert_eq!(report["bits"], 16, "{report}");
    let seen: Vec<String> = report["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(
        seen.iter().all(|s| !s.starts_with("importKey")
            && !s.starts_with("subtle")
            && !s.starts_with("importSync")
            && !s.ends_with(":32")),
        "JavaScript saw key bytes: {seen:?}"
    );
}

// ----- sapphire-localnet on a hardhat node -----

/// `runner verifier --allow-insecure-dev` on a free port, with a signing key the test made.
struct VerifierService {
    child: Child,
    url: String,
    signer: Address,
    /// The on-chain measurements it printed for the permitter's owner to allow.
    measurements: Vec<B256>,
    _dir: tempfile::TempDir,
}

impl VerifierService {
    async fn start() -> VerifierService {
        let dir = tempfile::tempdir().unwrap();
        let key = PrivateKeySigner::random();
        let key_file = dir.path().join("verifier.key");
        std::fs::write(&key_file, alloy::hex::encode(key.to_bytes())).unwrap();
        let addr_file = dir.path().join("addr");
        let log = std::fs::File::create(dir.path().join("verifier.log")).unwrap();
        let child = runner_command(&runner_bin())
            .args([
                "verifier",
                "--allow-insecure-dev",
                "--listen",
                "127.0.0.1:0",
            ])
            .arg("--key-file")
            .arg(&key_file)
            .arg("--addr-file")
            .arg(&addr_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start runner verifier");
        let mut service = VerifierService {
            child,
            url: String::new(),
            signer: key.address(),
            measurements: Vec::new(),
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file) {
                if !addr.trim().is_empty() {
                    service.url = format!("http://{}", addr.trim());
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "runner verifier did not start"
            );
            assert!(
                service.child.try_wait().unwrap().is_none(),
                "runner verifier exited"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // It prints its signer address and the measurements it accepts (with
        // --allow-insecure-dev, the `none` one), to be allowed in the permitter.
        let stdout = service.child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
            line
        })
        .await
        .unwrap();
        let printed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            printed["signer"].as_str().unwrap().to_lowercase(),
            service.signer.to_string().to_lowercase()
        );
        service.measurements = printed["measurements"]
            .as_array()
            .expect("a list of measurements")
            .iter()
            .map(|m| m.as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(service.measurements, [verifier::none_measurement()]);
        service
    }
}

impl Drop for VerifierService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A hardhat node with the contracts; the permitter allows the verifier service's signer and
/// the `none` (development) measurement.
struct Chain {
    chain: DevChain,
    d: Deployment,
    owner: DynProvider,
    verifier: VerifierService,
}

impl Chain {
    async fn start(test: &str) -> Option<Chain> {
        let chain = DevChain::start_or_skip(test).await?;
        let d = devchain::deploy(&chain.rpc_url(), DevChain::account(0), 3600)
            .await
            .unwrap();
        let owner = devchain::wallet_provider(&chain.rpc_url(), DevChain::account(0));
        let verifier = VerifierService::start().await;
        let permitter = VerifierPermitter::new(d.permitter, owner.clone());
        mined(permitter.setVerifier(verifier.signer, true).send()).await;
        for measurement in &verifier.measurements {
            mined(permitter.setMeasurement(*measurement, true).send()).await;
        }
        Some(Chain {
            chain,
            d,
            owner,
            verifier,
        })
    }

    /// The `sapphire-localnet` entry for this chain (hardhat: chain id 31337, clear-text reads).
    fn localnet(&self, extra: Value) -> Value {
        let mut store = json!({
            "rpc_url": self.chain.rpc_url(),
            "chain_id": devchain::HARDHAT_CHAIN_ID,
            "insecure_dev_chain": true,
            "registry": self.d.registry.to_string(),
            "key_store": self.d.key_store.to_string(),
            "permitter": self.d.permitter.to_string(),
        });
        for (k, v) in extra.as_object().unwrap() {
            store[k] = v.clone();
        }
        store
    }

    /// A runner whose `--key-stores` file is `stores`, the gas wallet hardhat's account 1.
    async fn runner(&self, dir: &Path, stores: Value, extra_args: &[&str]) -> Runner {
        let file = dir.join(format!("{}.json", tag("key-stores")));
        let config = json!({ "verifier_url": self.verifier.url, "stores": stores });
        std::fs::write(&file, config.to_string()).unwrap();
        let mut args = vec!["--key-stores", file.to_str().unwrap()];
        args.extend_from_slice(extra_args);
        Runner::start_with_env(
            &args,
            &[("RUNNER_GAS_WALLET_KEY", devchain::HARDHAT_KEYS[1])],
        )
        .await
    }

    /// The key of `code_hash`, read independently of the runner: another gas wallet, an
    /// in-process verifier (allowed for this), `none` evidence.
    async fn key_of(&self, code_hash: B256, identity: Option<B256>) -> [u8; 32] {
        let verifier = Arc::new(Verifier::new(
            attest::Verifier::new(attest::Policy {
                allow_insecure_dev: true,
                ..attest::Policy::default()
            }),
            PrivateKeySigner::random(),
        ));
        mined(
            VerifierPermitter::new(self.d.permitter, self.owner.clone())
                .setVerifier(verifier.address(), true)
                .send(),
        )
        .await;
        let config = ChainConfig::new(
            self.chain.rpc_url(),
            devchain::HARDHAT_CHAIN_ID,
            self.d.registry,
            self.d.key_store,
            self.d.permitter,
            Confidentiality::InsecureDevChain,
        );
        let attester = Arc::new(attest::Attester::detect_at(
            tempfile::tempdir().unwrap().path().join("no-tee"),
        ));
        let evidence: EvidenceProvider = Arc::new(move |rd| {
            attester
                .evidence(rd)
                .map(|e| e.to_json().into_bytes())
                .map_err(|e| e.to_string())
        });
        let client = KeyClient::connect(config, DevChain::account(2), evidence, verifier)
            .await
            .unwrap();
        let key = match identity {
            Some(id) => {
                let permit = client.acquire_identity(id, code_hash).await.unwrap();
                client.read_key(&permit).await.unwrap()
            }
            None => client.get_key(code_hash).await.unwrap(),
        };
        *key.as_bytes()
    }
}

/// NFTrout's derivation in Rust: HKDF-SHA512, empty salt, info `nftrout/encryption/nfts`.
fn nftrout_bits(key: &[u8; 32]) -> String {
    let hk = hkdf::Hkdf::<sha2::Sha512>::new(Some(&[]), key);
    let mut out = [0u8; 32];
    hk.expand(b"nftrout/encryption/nfts", &mut out).unwrap();
    alloy::hex::encode(out)
}

async fn code_hash(runner: &Runner, id: &str) -> B256 {
    let worker = runner.get(&worker_path(id)).await.assert_status(200).json();
    worker["code_hash"]
        .as_str()
        .unwrap_or_else(|| panic!("no code_hash: {worker}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sapphire_localnet_keys_on_a_hardhat_chain() {
    let test = "sapphire_localnet_keys_on_a_hardhat_chain";
    let Some(chain) = Chain::start(test).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let stores = json!({ "sapphire-localnet": chain.localnet(json!({})) });
    let runner = chain.runner(dir.path(), stores.clone(), &[]).await;

    let script_a = key_worker(&tag("sapphire-a"));
    let a = create(&runner, &script_a).await;
    let started = std::time::Instant::now();
    let first = bits(&runner, &a, "sapphire-localnet").await;
    let fetched = started.elapsed();
    let started = std::time::Instant::now();
    assert_eq!(bits(&runner, &a, "sapphire-localnet").await, first, "twice");
    eprintln!(
        "{test}: first getOmniKey (register, evidence, verifier, acquire, provision, read) {fetched:?}; cached {:?}",
        started.elapsed()
    );

    // Escrin's `env.iam` names the store by chain id (hardhat's is sapphire-localnet's here):
    // the same key, also with SHA-512-256 (native Omni Key against imported bytes).
    let iam = ask(
        &runner,
        &a,
        &format!("via=iam&store={}", devchain::HARDHAT_CHAIN_ID),
    )
    .await;
    assert_eq!(iam["bits"], first.as_str(), "{iam}");
    let native_256 = ask(&runner, &a, "store=sapphire-localnet&hash=SHA-512-256").await;
    let iam_256 = ask(
        &runner,
        &a,
        &format!(
            "via=iam&store={}&hash=SHA-512-256",
            devchain::HARDHAT_CHAIN_ID
        ),
    )
    .await;
    assert_eq!(native_256["ok"], true, "{native_256}");
    assert_eq!(native_256["bits"], iam_256["bits"], "{iam_256}");
    assert_ne!(native_256["bits"], first.as_str());

    // NFTrout's bits in the worker = a Rust HKDF over the key read independently.
    let hash_a = code_hash(&runner, &a).await;
    let key_a = chain.key_of(hash_a, None).await;
    assert_eq!(first, nftrout_bits(&key_a));

    // The same code in another worker (a fresh requester account, the same identity).
    let a2 = create(&runner, &script_a).await;
    assert_eq!(bits(&runner, &a2, "sapphire-localnet").await, first);
    // Other code: another identity, another key; `local` is another key again.
    let b = create(&runner, &key_worker(&tag("sapphire-b"))).await;
    let b_bits = bits(&runner, &b, "sapphire-localnet").await;
    assert_ne!(b_bits, first);
    assert_ne!(bits(&runner, &a, "local").await, first);

    // A refusal from the permitter (the owner withdraws the dev measurement): a rejection in
    // the worker, which keeps running; a cached key is still served; nothing is cached for
    // the failure: once allowed again, the same worker gets its key.
    let permitter = VerifierPermitter::new(chain.d.permitter, chain.owner.clone());
    mined(
        permitter
            .setMeasurement(verifier::none_measurement(), false)
            .send(),
    )
    .await;
    let c = create(&runner, &key_worker(&tag("sapphire-c"))).await;
    let refused = ask(&runner, &c, "store=sapphire-localnet").await;
    assert_eq!(refused["ok"], false, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("MeasurementNotAllowed"), "{message}");
    assert!(message.contains("sapphire-localnet"), "{message}");
    assert_eq!(runner.worker(&c).await["state"], "ready");
    assert_eq!(
        bits(&runner, &a, "sapphire-localnet").await,
        first,
        "cached"
    );
    mined(
        permitter
            .setMeasurement(verifier::none_measurement(), true)
            .send(),
    )
    .await;
    let c_bits = bits(&runner, &c, "sapphire-localnet").await;
    assert_ne!(c_bits, first);

    // After a restart: the same code gets the same key from the chain.
    drop(runner);
    let restarted = chain.runner(dir.path(), stores, &[]).await;
    let again = create(&restarted, &script_a).await;
    assert_eq!(bits(&restarted, &again, "sapphire-localnet").await, first);
}

/// A policy that allows one code hash only (a fixed identity whose permitter names one code),
/// and an RPC node that never answers.
#[tokio::test(flavor = "multi_thread")]
async fn one_code_policy_refuses_other_code_and_a_silent_rpc_times_out() {
    let test = "one_code_policy_refuses_other_code_and_a_silent_rpc_times_out";
    let Some(chain) = Chain::start(test).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Learn worker A's code hash from a runner with only `local`.
    let script_a = key_worker(&tag("one-code-a"));
    let probe = Runner::start(&[]).await;
    let probe_id = create(&probe, &script_a).await;
    let hash_a = code_hash(&probe, &probe_id).await;
    drop(probe);

    // A random identity under the permitter, allowed for code A only.
    let registry = IdentityRegistry::new(chain.d.registry, chain.owner.clone());
    let receipt = mined(
        registry
            .createIdentity(chain.d.permitter, b"one-code".to_vec().into())
            .send(),
    )
    .await;
    let identity = receipt
        .inner
        .logs()
        .iter()
        .find_map(|log| log.log_decode::<IdentityRegistry::IdentityCreated>().ok())
        .expect("an IdentityCreated log")
        .inner
        .data
        .id;
    let permitter = VerifierPermitter::new(chain.d.permitter, chain.owner.clone());
    mined(permitter.setCodeHash(identity, hash_a).send()).await;

    // An RPC "node" that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });

    let stores = json!({
        "sapphire-localnet": chain.localnet(json!({ "identity": identity.to_string() })),
        "sapphire-testnet": {
            "rpc_url": silent_url,
            "registry": chain.d.registry.to_string(),
            "key_store": chain.d.key_store.to_string(),
            "permitter": chain.d.permitter.to_string(),
        },
    });
    let runner = chain
        .runner(dir.path(), stores, &["--key-timeout-ms", "8000"])
        .await;

    let a = create(&runner, &script_a).await;
    let a_bits = bits(&runner, &a, "sapphire-localnet").await;
    assert_eq!(
        a_bits,
        nftrout_bits(&chain.key_of(hash_a, Some(identity)).await)
    );

    let b = create(&runner, &key_worker(&tag("one-code-b"))).await;
    let refused = ask(&runner, &b, "store=sapphire-localnet").await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("CodeHashNotAllowed"),
        "{refused}"
    );
    assert_eq!(runner.worker(&b).await["state"], "ready");

    let started = std::time::Instant::now();
    let timed_out = ask(&runner, &a, "store=sapphire-testnet").await;
    assert_eq!(timed_out["ok"], false, "{timed_out}");
    let message = timed_out["message"].as_str().unwrap();
    assert!(
        message.contains("did not answer within 8000 ms"),
        "{message}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // The worker keeps running: its other store still answers, from the cache.
    assert_eq!(bits(&runner, &a, "sapphire-localnet").await, a_bits);
    assert_eq!(runner.worker(&a).await["state"], "ready");
    held.abort();
}
