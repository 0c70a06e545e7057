//! Escrin workers run unchanged (issue 17): the `env` that `@escrin/worker` reads, SHA-512/256
//! in `crypto.subtle`, Escrin's spellings (a config sent as a JSON string, `sapphire-local`,
//! `getKey`) and `self.location`.
//!
//! The alpha.4 worker imports the published `@escrin/worker@1.0.0-alpha.4` and is bundled with
//! esbuild, both from npm (`tests/npm`, installed by `scripts/setup.sh`; the package's
//! `link:../evm` dependency, which npm cannot install, is overridden: its library does not
//! use it). The later generations exist only in Escrin's repository: their workers carry its
//! `worker/src` of 2024 (the `iam` generation; viem's `hexToBytes`/`toHex` written out),
//! de-typed, as their bundles do.

use e2e::{js, json, start, tag, worker_path, Runner, Sink, Value};

/// `rpc.ts` of both generations (alpha.4's `decodeBase64Bytes` kept as it is: it makes a
/// 44-byte key of a 32-byte one, the bytes then 12 zeros).
const ESCRIN_RPC: &str = r#"
class ApiError extends Error {
  constructor(statusCode, message) {
    super(message);
    this.statusCode = statusCode;
    this.name = new.target.name;
    Object.setPrototypeOf(this, new.target.prototype);
  }
}
class ApiResponse extends Response {
  constructor(status, content) {
    if (status === 204) { super(null, { status }); return; }
    super(content ? JSON.stringify(content) : '{}', { status, headers: { 'content-type': 'application/json' } });
  }
}
function wrapFetch(handler) {
  return async (req, env, ctx) => {
    try {
      const result = await handler(req, env, ctx);
      if (result instanceof Response) return result;
      const statusCode = result === null || result === undefined || result === '' ? 204 : 200;
      return new ApiResponse(statusCode, result);
    } catch (e) {
      if (e instanceof ApiError) return new ApiResponse(e.statusCode, { error: e.message });
      throw e;
    }
  };
}
async function decodeRequest(req) {
  if (req.headers.get('content-type') !== 'application/json')
    throw new ApiError(400, 'invalid content-type. application/json is required');
  const bodyJson = await req.json();
  return { method: bodyJson.method, params: bodyJson.params };
}
function decodeBase64Bytes(base64) {
  const binary = atob(base64);
  let bytes = new Uint8Array(base64.length);
  for (let i = 0; i < bytes.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
async function rpc(remote, method, params) {
  const res = await remote.fetch(`http://escrin`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ method, params }),
  });
  if (!res.ok) {
    const resText = await res.text();
    let errorMsg = resText;
    try { errorMsg = JSON.parse(errorMsg).error; } catch {}
    throw new ApiError(res.status, errorMsg);
  }
  if (res.status === 204) return;
  return res.json();
}
"#;

/// `worker/src/index.ts` of escrin/escrin (2024: `env.iam`, `env.tpm`).
const ESCRIN_IAM: &str = r#"
const hexToBytes = (hex) => Uint8Array.from(hex.slice(2).match(/../g) ?? [], (h) => parseInt(h, 16));
const toHex = (bytes) => '0x' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
function escrinWorker(callbacks) {
  return {
    fetch: wrapFetch(async (req, env, ctx) => {
      const { method } = await decodeRequest(req);
      ctx.waitUntil((async () => {
        if (method === 'tasks') await callbacks.tasks(new RunnerInterface(env));
        else throw new ApiError(404, `unrecognized method ${method}`);
      })());
    }),
    scheduled(_event, env, ctx) {
      ctx.waitUntil(callbacks.tasks(new RunnerInterface(env)));
    },
  };
}
class RunnerInterface {
  #config; #iam; #tpm;
  constructor(env) { this.#iam = env.iam; this.#tpm = env.tpm; this.#config = env.config; }
  async getConfig() { return this.#config; }
  async getAttestation(params) {
    if (!this.#tpm) throw new ApiError(404, 'no TPM');
    const { network: networkNameOrNetwork, identity: identityIdOrIdentity } = params;
    const network = getNetwork(networkNameOrNetwork);
    const identity = getIdentity(identityIdOrIdentity, network);
    // The library's userdata is the root of an OpenZeppelin Merkle tree (keccak-256) over
    // (chainId, registry, id, acquire); the runner takes it as opaque bytes, so SHA-256 of
    // the same values stands in for it here.
    const leaf = JSON.stringify([network.chainId, identity.registry, identity.id,
      !params.purpose || params.purpose === 'acquire']);
    const root = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(leaf)));
    const { document } = await rpc(this.#tpm, 'get-attestation', { userdata: root });
    return { document, context: '0x', userdata: toHex(root) };
  }
  async acquireIdentity(params) {
    const { network: networkNameOrNetwork, identity: identityIdOrIdentity, permitter, permitTtl,
      authorization, duration, recipient, ssss } = params;
    const network = getNetwork(networkNameOrNetwork);
    const identity = getIdentity(identityIdOrIdentity, network);
    await rpc(this.#iam, 'acquire-identity', { network, identity, permitTtl, permitter,
      authorization: authorization instanceof Uint8Array ? toHex(authorization) : authorization,
      recipient, duration, ssss });
  }
  async getOmniKey(params) {
    const { network: networkNameOrNetwork, identity: identityIdOrIdentity, ssss } = params;
    const network = getNetwork(networkNameOrNetwork);
    const identity = getIdentity(identityIdOrIdentity, network);
    const { key } = await rpc(this.#iam, 'get-key', { keyId: 'omni', network, identity, ssss });
    return crypto.subtle.importKey('raw', hexToBytes(key), 'HKDF', false, ['deriveKey', 'deriveBits']);
  }
}
function getNetwork(nameOrNetwork) {
  if (typeof nameOrNetwork === 'string')
    throw new Error('unable to infer network parameters, so chainId and rpcUrl are required');
  return nameOrNetwork;
}
function getIdentity(idOrIdentity, _network) {
  if (typeof idOrIdentity === 'string')
    throw new Error('unable to infer identity registry, so id and registry are required');
  return idOrIdentity;
}
"#;

/// Helpers of the workers below: hex, NFTrout's derivation (HKDF, empty salt, its info, 256
/// bits) with a given hash, a failure's `name: message`.
const HELPERS: &str = r#"
const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
const utf8 = (s) => new TextEncoder().encode(s);
const nftrout = async (key, hash) => hex(await crypto.subtle.deriveBits(
  { name: 'HKDF', hash, salt: new Uint8Array(), info: utf8('nftrout/encryption/nfts') }, key, 256));
const failure = async (f) => { try { await f(); return null; } catch (e) { return `${e.name}: ${e.message}`; } };
const hkdfKey = (bytes) => crypto.subtle.importKey('raw', bytes, 'HKDF', false, ['deriveBits', 'deriveKey']);
"#;

const CONFIG: &str = r#"{"nftAddr":"0x0000000000000000000000000000000000000001","greeting":"hi"}"#;

/// Creates `script` with the config as a JSON string (as Escrin's users sent it) and returns
/// the report it posts to `/report`.
async fn run(runner: &Runner, sink: &Sink, script: String) -> Value {
    runner
        .create(&json!({ "code": script, "type": "module", "config": CONFIG }))
        .await;
    sink.first_json("/report").await
}

fn report(sink: &Sink) -> String {
    js::post_json(&sink.url("/report"), "report")
}

fn is_hex(value: &Value, bytes: usize) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == bytes * 2 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alpha4_worker_reads_its_config_and_derives_from_its_omni_key() {
    let (runner, sink) = start(&[]).await;
    let source = format!(
        r#"import escrinWorker from "@escrin/worker";
{ESCRIN_RPC}{HELPERS}
let env; // instrumentation: the same worker's native Omni Key, to compare
const worker = escrinWorker({{
  async tasks(rnr) {{
    const report = {{}};
    report.config = await rnr.getConfig();
    const key = await rnr.getOmniKey('local');
    report.sha512 = await nftrout(key, 'SHA-512');
    report.sha512_256 = await nftrout(key, 'SHA-512-256');
    // What the library imported: the key's 32 bytes and 12 zeros (its base64 decoding).
    const {{ key: b64 }} = await rpc(env.escrin, 'get-key', {{ keyStore: 'local', keyId: 'omni', proof: '' }});
    const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    report.rawLength = raw.length;
    const padded = new Uint8Array(44); padded.set(raw);
    report.paddedSha512 = await nftrout(await hkdfKey(padded), 'SHA-512');
    report.paddedSha512_256 = await nftrout(await hkdfKey(padded), 'SHA-512-256');
    const native = await env.getOmniKey('local');
    report.nativeSha512 = await nftrout(native, 'SHA-512');
    report.rawSha512 = await nftrout(await hkdfKey(raw), 'SHA-512');
    report.nativeSha512_256 = await nftrout(native, 'SHA-512-256');
    report.rawSha512_256 = await nftrout(await hkdfKey(raw), 'SHA-512-256');
    report.getKeySha512 = await nftrout(await env.getKey('local'), 'SHA-512');
    report.alias = await failure(() => rnr.getOmniKey('sapphire-local'));
    report.unknownStore = await failure(() => rnr.getOmniKey('nowhere'));
    report.unknownKeyId = await failure(() => rpc(env.escrin, 'get-key', {{ keyStore: 'local', keyId: 'x' }}));
    report.badContentType = (await env.escrin.fetch('http://escrin', {{ method: 'POST', body: '{{}}' }})).status;
    report.location = self.location.href;
{report}
  }},
}});
export default {{
  scheduled(event, env_, ctx) {{ env = env_; return worker.scheduled(event, env_, ctx); }},
}};
"#,
        report = report(&sink),
    );
    let script = format!(
        "// {}\n{}",
        tag("escrin-alpha4"),
        js::esbuild_bundle(&source)
    );
    assert!(
        script.contains("node_modules/@escrin/worker/dist/lib/index.js"),
        "the published library is in the bundle"
    );
    let report = run(&runner, &sink, script).await;

    assert_eq!(
        report["config"],
        serde_json::from_str::<Value>(CONFIG).unwrap(),
        "{report}"
    );
    assert_eq!(report["rawLength"], 32, "{report}");
    for field in ["sha512", "sha512_256", "nativeSha512", "nativeSha512_256"] {
        assert!(is_hex(&report[field], 32), "{field}: {report}");
    }
    assert_ne!(report["sha512"], report["sha512_256"], "{report}");
    // The library's key is the Omni Key as the library decodes it...
    assert_eq!(report["sha512"], report["paddedSha512"], "{report}");
    assert_eq!(report["sha512_256"], report["paddedSha512_256"], "{report}");
    // ...and the binding's bytes are the native Omni Key's, for both hashes.
    assert_eq!(report["rawSha512"], report["nativeSha512"], "{report}");
    assert_eq!(
        report["rawSha512_256"], report["nativeSha512_256"],
        "{report}"
    );
    assert_eq!(report["getKeySha512"], report["nativeSha512"], "{report}");
    let alias = report["alias"]
        .as_str()
        .expect("sapphire-local rejects here");
    assert!(
        alias.starts_with("ApiError: ")
            && alias.contains("\"sapphire-localnet\" is not configured"),
        "{report}"
    );
    let unknown = report["unknownStore"].as_str().expect("rejects");
    assert!(
        unknown.starts_with("ApiError: unknown key store \"nowhere\""),
        "{report}"
    );
    // Thrown by the test's own `rpc` (esbuild renamed its `ApiError` beside the library's).
    assert!(
        report["unknownKeyId"].as_str().is_some_and(
            |e| e.ends_with("Error2: unknown key id: x") || e == "ApiError: unknown key id: x"
        ),
        "{report}"
    );
    assert_eq!(report["badContentType"], 400, "{report}");
    assert_eq!(report["location"], "file:///worker.js", "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_iam_worker_gets_its_omni_key_and_unsupported_calls_reject() {
    let (runner, sink) = start(&[]).await;
    let script = format!(
        r#"// {tag}
{ESCRIN_RPC}{ESCRIN_IAM}{HELPERS}
const identity = {{ registry: '0x' + '22'.repeat(20), id: '0x' + '11'.repeat(32) }};
let env;
const worker = escrinWorker({{
  async tasks(rnr) {{
    const report = {{}};
    report.config = await rnr.getConfig();
    const key = await rnr.getOmniKey({{ network: {{ name: 'local' }}, identity }});
    report.sha512 = await nftrout(key, 'SHA-512');
    report.sha512_256 = await nftrout(key, 'SHA-512-256');
    const native = await env.getOmniKey('local');
    report.nativeSha512 = await nftrout(native, 'SHA-512');
    report.nativeSha512_256 = await nftrout(native, 'SHA-512-256');
    // The Sep-Dec 2023 generation: the same methods on env.escrin.
    const {{ key: viaEscrin }} = await rpc(env.escrin, 'get-key', {{ keyId: 'omni', network: 'local', identity }});
    report.escrinSha512 = await nftrout(await hkdfKey(hexToBytes(viaEscrin)), 'SHA-512');
    report.acquireLocal = await failure(() => rnr.acquireIdentity({{ network: {{ name: 'local' }}, identity }}));
    report.unknownChain = await failure(() => rnr.getOmniKey({{ network: {{ chainId: 1 }}, identity }}));
    report.testnet = await failure(() => rnr.getOmniKey({{ network: {{ chainId: 0x5aff }}, identity }}));
    const attestation = await rnr.getAttestation({{ network: {{ chainId: 0x5aff }}, identity }});
    report.attestation = JSON.parse(new TextDecoder().decode(new Uint8Array(attestation.document)));
    report.userdata = attestation.userdata;
    report.longUserdata = await failure(() => rpc(env.tpm, 'get-attestation', {{ userdata: Array(65).fill(1) }}));
    report.badUserdata = await failure(() => rpc(env.tpm, 'get-attestation', {{ userdata: 'zz' }}));
    const {{ random }} = await rpc(env.tpm, 'get-random', {{ numBytes: 16 }});
    report.random = random.length;
    report.tooRandom = await failure(() => rpc(env.tpm, 'get-random', {{ numBytes: 129 }}));
    report.account = await failure(() => rpc(env.iam, 'get-account', {{ id: 'ephemeral-account' }}));
    report.unknownMethod = await failure(() => rpc(env.iam, 'nope', {{}}));
{report}
  }},
}});
export default {{
  scheduled(event, env_, ctx) {{ env = env_; return worker.scheduled(event, env_, ctx); }},
}};
"#,
        tag = tag("escrin-iam"),
        report = report(&sink),
    );
    let report = run(&runner, &sink, script.clone()).await;

    assert_eq!(
        report["config"],
        serde_json::from_str::<Value>(CONFIG).unwrap(),
        "{report}"
    );
    assert!(is_hex(&report["sha512"], 32), "{report}");
    assert_eq!(report["sha512"], report["nativeSha512"], "{report}");
    assert_eq!(report["sha512_256"], report["nativeSha512_256"], "{report}");
    assert_eq!(report["escrinSha512"], report["nativeSha512"], "{report}");
    assert_ne!(report["sha512"], report["sha512_256"], "{report}");
    let starts = |field: &str, prefix: &str| {
        let text = report[field].as_str().unwrap_or_default();
        assert!(text.starts_with(prefix), "{field}: {report}");
    };
    starts(
        "acquireLocal",
        "ApiError: the local key store has no identity to acquire",
    );
    starts("unknownChain", "ApiError: no key store serves chain id 1");
    starts(
        "testnet",
        "ApiError: key store \"sapphire-testnet\" is not configured",
    );
    starts(
        "longUserdata",
        "ApiError: userdata is 65 bytes, more than 64",
    );
    starts("badUserdata", "ApiError: invalid userdata");
    starts("tooRandom", "ApiError: too many random bytes requested");
    assert_eq!(report["random"], 16, "{report}");
    check_worker_attestation(&report["attestation"], &report["userdata"], &script);
    starts(
        "account",
        "ApiError: this runner keeps no ephemeral account",
    );
    starts("unknownMethod", "ApiError: unknown method: nope");
}

/// A worker's attestation document (`env.tpm` `get-attestation`): its evidence verifies (dev
/// mode here) and binds exactly the runner's key, this worker's code identity, the userdata
/// and the worker context, as the document states.
fn check_worker_attestation(document: &Value, userdata: &Value, script: &str) {
    use sha2::Digest;
    let field = |name: &str| document[name].as_str().unwrap_or_default().to_owned();
    assert_eq!(document["tee"], "none", "{document}");
    assert_eq!(field("context"), "smart-worker/worker/attestation/v1");
    assert_eq!(
        format!("0x{}", field("nonce")),
        userdata.as_str().unwrap(),
        "{document}"
    );
    let keys = document["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "{document}");
    assert_eq!(keys[1]["algorithm"], "smart-worker/code-identity");
    let mut code = sha2::Sha256::new();
    code.update(b"smart-worker/code/v1\0module\0");
    code.update(script.as_bytes());
    assert_eq!(
        keys[1]["public_key"].as_str().unwrap(),
        hex::encode(code.finalize()),
        "the document binds this worker's code"
    );
    let key_bytes: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| hex::decode(k["public_key"].as_str().unwrap()).unwrap())
        .collect();
    let bound: Vec<attest::BoundKey> = keys
        .iter()
        .zip(&key_bytes)
        .map(|(k, bytes)| attest::BoundKey {
            algorithm: k["algorithm"].as_str().unwrap(),
            public_key: bytes,
        })
        .collect();
    let expected = attest::report_data_for(
        &bound,
        &hex::decode(field("nonce")).unwrap(),
        field("context").as_bytes(),
    );
    let evidence = attest::Evidence::from_json(&document["evidence"].to_string()).unwrap();
    let policy = attest::Policy {
        allow_insecure_dev: true,
        expected_report_data: Some(expected),
        ..attest::Policy::default()
    };
    attest::verify(&evidence, &policy, std::time::SystemTime::now())
        .expect("the evidence carries the document's binding");
}

#[tokio::test(flavor = "multi_thread")]
async fn sha512_256_digest_and_hkdf_match_published_vectors() {
    let (runner, sink) = start(&[]).await;
    let body = format!(
        r#"{HELPERS}
const report = {{}};
const digest = async (text, name = 'SHA-512-256') => hex(await crypto.subtle.digest(name, utf8(text)));
report.abc = await digest('abc');
report.empty = await digest('');
report.twoBlock = await digest('abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu');
report.lowerCase = await digest('abc', {{ name: 'sha-512-256' }});
report.sha512StillDeno = await digest('abc', 'SHA-512');
const ikm = new Uint8Array(22).fill(0x0b);
const salt = Uint8Array.from({{ length: 13 }}, (_, i) => i);
const info = Uint8Array.from({{ length: 10 }}, (_, i) => 0xf0 + i);
const base = await hkdfKey(ikm);
report.case1 = hex(await crypto.subtle.deriveBits({{ name: 'HKDF', hash: 'SHA-512-256', salt, info }}, base, 42 * 8));
report.case3 = hex(await crypto.subtle.deriveBits({{ name: 'HKDF', hash: {{ name: 'SHA-512-256' }}, salt: new Uint8Array(), info: new Uint8Array() }}, base, 42 * 8));
const aes = await crypto.subtle.deriveKey({{ name: 'HKDF', hash: 'SHA-512-256', salt: new Uint8Array(), info: new Uint8Array() }},
  base, {{ name: 'AES-GCM', length: 256 }}, true, ['encrypt']);
report.derivedAes = hex(await crypto.subtle.exportKey('raw', aes));
const hmac = await crypto.subtle.deriveKey({{ name: 'HKDF', hash: 'SHA-512-256', salt: new Uint8Array(), info: new Uint8Array() }},
  base, {{ name: 'HMAC', hash: 'SHA-256' }}, true, ['sign']);
report.derivedHmacBytes = (await crypto.subtle.exportKey('raw', hmac)).byteLength;
const omni = await rnr.getOmniKey('local');
const omniAes = await crypto.subtle.deriveKey({{ name: 'HKDF', hash: 'SHA-512-256', salt: new Uint8Array(), info: utf8('x') }},
  omni, {{ name: 'AES-GCM', length: 256 }}, false, ['encrypt']);
report.omniAesEncrypts = (await crypto.subtle.encrypt({{ name: 'AES-GCM', iv: new Uint8Array(12) }}, omniAes, new Uint8Array(4))).byteLength;
report.oddLength = await failure(() => crypto.subtle.deriveBits({{ name: 'HKDF', hash: 'SHA-512-256', salt, info }}, base, 12));
report.tooLong = await failure(() => crypto.subtle.deriveBits({{ name: 'HKDF', hash: 'SHA-512-256', salt, info }}, base, 256 * 256));
const aesBase = await crypto.subtle.generateKey({{ name: 'AES-GCM', length: 256 }}, false, ['encrypt']);
report.notHkdf = await failure(() => crypto.subtle.deriveBits({{ name: 'HKDF', hash: 'SHA-512-256', salt, info }}, aesBase, 256));
const bitsOnly = await crypto.subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
report.wrongUsage = await failure(() => crypto.subtle.deriveKey({{ name: 'HKDF', hash: 'SHA-512-256', salt, info }},
  bitsOnly, {{ name: 'AES-GCM', length: 256 }}, false, ['encrypt']));
report.names = ['digest', 'importKey', 'deriveBits', 'deriveKey'].map((m) => `${{SubtleCrypto.prototype[m].name}}/${{SubtleCrypto.prototype[m].length}}`);
{report}"#,
        report = report(&sink),
    );
    runner
        .create(
            &json!({ "script": format!("// {}\n{}", tag("sha512-256"), js::module_tasks(&body)) }),
        )
        .await;
    let report = sink.first_json("/report").await;

    // FIPS 180-4 examples (NIST CSRC "SHA512_256.pdf"), and the empty message.
    assert_eq!(
        report["abc"],
        "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
    );
    assert_eq!(
        report["twoBlock"],
        "3928e184fb8690f840da3988121d31be65cb9d3ef83ee6146feac861e19b563a"
    );
    assert_eq!(
        report["empty"],
        "c672b8d1ef56ed28ab87c3622c5114069bdd3ad7b8f9737498d0c01ecef0967a"
    );
    assert_eq!(report["lowerCase"], report["abc"]);
    assert!(is_hex(&report["sha512StillDeno"], 64), "{report}");
    // RFC 5869 test cases 1 and 3 (their inputs) with SHA-512/256, computed with OpenSSL's
    // HMAC-SHA512/256 (Python's hmac/hashlib), independently of the runner's hkdf crate.
    let case3 =
        "fa6ff45b2fc4f0f49883d9c4c9f9edfb53cebb3f9faac571319c7bd17d371a0abca65d85eb3d41495158";
    assert_eq!(
        report["case1"],
        "789a93e567a1861de449342b2d674c0df737fd8adce2a8e1843237c1938ac413044b496ce267a198ebe3"
    );
    assert_eq!(report["case3"], case3);
    assert_eq!(report["derivedAes"], &case3[..64], "{report}");
    assert_eq!(report["derivedHmacBytes"], 64, "{report}");
    assert_eq!(report["omniAesEncrypts"], 20, "{report}");
    let starts = |field: &str, prefix: &str| {
        let text = report[field].as_str().unwrap_or_default();
        assert!(text.starts_with(prefix), "{field}: {report}");
    };
    starts("oddLength", "OperationError");
    starts("tooLong", "OperationError");
    starts("notHkdf", "InvalidAccessError");
    starts("wrongUsage", "InvalidAccessError");
    assert_eq!(
        report["names"],
        json!(["digest/2", "importKey/5", "deriveBits/2", "deriveKey/5"]),
        "{report}"
    );
}

/// Comlink 4.4.1 (`dist/esm/comlink.min.mjs`, Apache-2.0), as the mid-2023 library bundled it.
const COMLINK: &str = include_str!("../../fixtures/comlink-4.4.1.min.mjs");

/// The mid-2023 library (escrin/escrin `runner/src/index.ts`, Jul 2023) over Comlink, bundled
/// as esbuild would: Comlink's module inlined, its exports bound to `Comlink`.
fn comlink_bundle(tasks_body: &str) -> String {
    let export = COMLINK.find("export{").expect("Comlink's export statement");
    let end = export + COMLINK[export..].find('}').expect("its end") + 1;
    format!(
        r#"{comlink}
const Comlink = {{ expose: i, wrap: u }};
function escrinWorker(callbacks) {{
  const rnr = Comlink.wrap(self);
  Comlink.expose({{
    async tasks() {{
      return callbacks.tasks(rnr);
    }},
  }});
}}
escrinWorker({{
  async tasks(rnr) {{
{tasks_body}
  }},
}});
"#,
        comlink = &COMLINK[..export],
    ) + &COMLINK[end..].replace("//# sourceMappingURL=comlink.min.mjs.map", "")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_comlink_worker_runs_on_its_schedule_and_calls_the_runner() {
    let (runner, sink) = start(&[]).await;
    for kind in ["module", "classic"] {
        let path = format!("/report-{kind}");
        let body = format!(
            r#"// {tag}
{HELPERS}
    const report = {{}};
    report.config = await rnr.getConfig();
    const key = await rnr.getOmniKey('local');
    report.isCryptoKey = key instanceof CryptoKey;
    report.sha512 = await nftrout(key, 'SHA-512');
    report.sha512_256 = await nftrout(key, 'SHA-512-256');
    report.legacyGetKey = await nftrout(await rnr.getKey('local'), 'SHA-512');
    report.unknownStore = await failure(() => rnr.getOmniKey('nowhere'));
    report.noSuchMethod = await failure(() => rnr.launchMissiles());
    report.inherited = await failure(() => rnr.hasOwnProperty("getConfig"));
    self.runs = (self.runs ?? 0) + 1;
    report.run = self.runs;
{report}"#,
            tag = tag("escrin-comlink"),
            report = js::post_json(&sink.url(&path), "report"),
        );
        let id = runner
            .create(&json!({
                "code": comlink_bundle(&body),
                "type": kind,
                "config": CONFIG,
                "schedule": "* * * * * *",
            }))
            .await;
        // The run right after creation, then the schedule's: module state persists.
        let reports = sink
            .wait_for_hits(&path, 2)
            .await
            .iter()
            .map(|r| r.json())
            .collect::<Vec<_>>();
        let first = &reports[0];
        assert_eq!(
            first["config"],
            serde_json::from_str::<Value>(CONFIG).unwrap(),
            "{kind}: {first}"
        );
        assert_eq!(first["isCryptoKey"], true, "{kind}: {first}");
        assert!(is_hex(&first["sha512"], 32), "{kind}: {first}");
        assert!(is_hex(&first["sha512_256"], 32), "{kind}: {first}");
        assert_ne!(first["sha512"], first["sha512_256"], "{kind}: {first}");
        assert_eq!(first["legacyGetKey"], first["sha512"], "{kind}: {first}");
        let unknown = first["unknownStore"].as_str().unwrap_or_default();
        assert!(
            unknown.starts_with("TypeError: unknown key store \"nowhere\""),
            "{kind}: {first}"
        );
        let missing = first["noSuchMethod"].as_str().unwrap_or_default();
        assert!(
            missing.contains("the runner has no method launchMissiles"),
            "{kind}: {first}"
        );
        let inherited = first["inherited"].as_str().unwrap_or_default();
        assert!(
            inherited.contains("the runner has no method hasOwnProperty"),
            "{kind}: {first}"
        );
        assert_eq!(reports[1]["run"], 2, "{kind}: {reports:?}");
        runner.delete(&worker_path(&id)).await;
    }
}
