//! What a worker can reach: the web platform of a `WorkerGlobalScope`, and nothing of Deno's.

use e2e::{js, json, start, Value};

/// Probes run inside the worker; each records its value, or `"threw: <error>"`.
const PROBES: &str = r#"
const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
const probes = {
  deno: () => typeof Deno,
  process: () => typeof process,
  require: () => typeof require,
  // Removed: deno allocates their memory outside any worker limit (issue 21).
  imageData: () => typeof ImageData,
  createImageBitmap: () => typeof createImageBitmap,
  offscreenCanvas: () => typeof OffscreenCanvas,
  // Removed: WebGPU runs on the machine's adapter, outside the worker's limits.
  gpu: () => typeof navigator.gpu,
  gpuBuffer: () => typeof GPUBuffer,
  // Removed: one lock table for the whole process.
  locks: () => typeof navigator.locks,
  lockManager: () => typeof LockManager,
  workerGlobalScope: () => typeof WorkerGlobalScope !== 'undefined' && self instanceof WorkerGlobalScope,
  sha256: async () => hex(await crypto.subtle.digest('SHA-256', new TextEncoder().encode('abc'))),
  randomValues: () => crypto.getRandomValues(new Uint8Array(8)).length,
  url: () => new URL('../c?d=1#e', 'https://example.com/a/b').href,
  textEncoder: () => Array.from(new TextEncoder().encode('hé')),
  textDecoder: () => new TextDecoder().decode(new Uint8Array([104, 195, 169])),
  setTimeout: () => new Promise((resolve) => setTimeout(() => resolve('fired'), 20)),
  readableStream: async () => {
    const reader = new ReadableStream({
      start(controller) { controller.enqueue('a'); controller.enqueue('b'); controller.close(); },
    }).getReader();
    let text = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return text;
      text += value;
    }
  },
  fileFetch: () => fetch('file:///etc/passwd').then((r) => r.text()).then(() => 'read', () => 'refused'),
};
const report = {};
for (const [name, probe] of Object.entries(probes)) {
  try { report[name] = await probe(); } catch (error) { report[name] = `threw: ${error}`; }
}
"#;

fn assert_sandboxed(report: &Value) {
    let expected = json!({
        "deno": "undefined",
        "process": "undefined",
        "require": "undefined",
        "imageData": "undefined",
        "createImageBitmap": "undefined",
        "offscreenCanvas": "undefined",
        "gpu": "undefined",
        "gpuBuffer": "undefined",
        "locks": "undefined",
        "lockManager": "undefined",
        "workerGlobalScope": true,
        "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "randomValues": 8,
        "url": "https://example.com/c?d=1#e",
        "textEncoder": [104, 195, 169],
        "textDecoder": "hé",
        "setTimeout": "fired",
        "readableStream": "ab",
        "fileFetch": "refused",
    });
    for (name, value) in expected.as_object().expect("an object") {
        assert_eq!(&report[name], value, "probe {name}; whole report: {report}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn module_worker_sees_web_apis_and_no_deno() {
    let (runner, sink) = start(&[]).await;
    let script = js::module_tasks(&format!(
        "{PROBES}\n{}",
        js::post_json(&sink.url("/report"), "report")
    ));

    runner.create(&json!({ "script": script })).await;

    assert_sandboxed(&sink.first_json("/report").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn classic_worker_sees_web_apis_and_no_deno() {
    let (runner, sink) = start(&[]).await;
    let script = js::classic_tasks(&format!(
        "{PROBES}\n{}",
        js::post_json(&sink.url("/report"), "report")
    ));

    runner
        .create(&json!({ "script": script, "type": "classic" }))
        .await;

    assert_sandboxed(&sink.first_json("/report").await);
}

/// Own property names of what a worker's code can reach first, as the worker sees them (symbols as
/// `Symbol(description)`), each sorted. A new deno version that adds a global, a static or a
/// prototype member changes one of these lists and fails
/// [`global_scope_and_webcrypto_match_the_allow_list`]: review what it gives workers, then update
/// the list (or remove the name in `runner/src/worker/js/rnr.js`).
const SURFACE: &str = r#"
const names = (o) => Reflect.ownKeys(o).map((k) => typeof k === "symbol" ? `Symbol(${k.description ?? ""})` : k).sort();
const chain = [];
for (let p = Object.getPrototypeOf(globalThis); p !== null; p = Object.getPrototypeOf(p)) chain.push(names(p));
const surface = {
  global: names(globalThis),
  globalPrototypes: chain,
  CryptoKey: names(CryptoKey),
  CryptoKeyPrototype: names(CryptoKey.prototype),
  Crypto: names(Crypto),
  CryptoPrototype: names(Crypto.prototype),
  crypto: names(crypto),
  SubtleCrypto: names(SubtleCrypto),
  SubtleCryptoPrototype: names(SubtleCrypto.prototype),
  subtle: names(crypto.subtle),
  WorkerNavigatorPrototype: names(WorkerNavigator.prototype),
  omniKey: names(await rnr.getOmniKey("local")),
  generatedKey: names(await crypto.subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, false, ["sign"])),
  importedKey: names(await crypto.subtle.importKey("raw", new Uint8Array(16), "AES-GCM", false, ["encrypt"])),
};
"#;

#[rustfmt::skip]
const GLOBAL: &[&str] = &[
    "AbortController", "AbortSignal", "AggregateError", "Array", "ArrayBuffer",
    "AsyncDisposableStack", "Atomics", "BigInt", "BigInt64Array", "BigUint64Array", "Blob",
    "Boolean", "BroadcastChannel", "ByteLengthQueuingStrategy", "Cache", "CacheStorage",
    "CloseEvent", "CompressionStream", "CountQueuingStrategy", "Crypto", "CryptoKey",
    "CustomEvent", "DOMException", "DOMMatrix", "DOMMatrixReadOnly", "DOMPoint",
    "DOMPointReadOnly", "DOMQuad", "DOMRect", "DOMRectReadOnly", "DataView", "Date",
    "DecompressionStream", "DedicatedWorkerGlobalScope", "DisposableStack", "Error", "ErrorEvent",
    "EvalError", "Event", "EventSource", "EventTarget", "File", "FileReader",
    "FinalizationRegistry", "Float16Array", "Float32Array", "Float64Array", "FormData", "Function",
    "Headers", "Infinity", "Int16Array", "Int32Array", "Int8Array", "Intl", "Iterator", "JSON",
    "Map", "Math", "MessageChannel", "MessageEvent", "MessagePort", "NaN", "NavigatorUAData",
    "Number", "Object", "Performance", "PerformanceEntry", "PerformanceMark", "PerformanceMeasure",
    "PerformanceObserver", "PerformanceObserverEntryList", "ProgressEvent", "Promise",
    "PromiseRejectionEvent", "Proxy", "QuotaExceededError", "RangeError",
    "ReadableByteStreamController", "ReadableStream", "ReadableStreamBYOBReader",
    "ReadableStreamBYOBRequest", "ReadableStreamDefaultController", "ReadableStreamDefaultReader",
    "ReferenceError", "Reflect", "RegExp", "Request", "Response", "Set", "SharedArrayBuffer",
    "String", "SubtleCrypto", "SuppressedError", "Symbol", "Symbol()", "Symbol([[webidl.brand]])",
    "SyntaxError", "Temporal", "TextDecoder", "TextDecoderStream", "TextEncoder",
    "TextEncoderStream", "TransformStream", "TransformStreamDefaultController", "TypeError",
    "URIError", "URL", "URLPattern", "URLSearchParams", "Uint16Array", "Uint32Array", "Uint8Array",
    "Uint8ClampedArray", "WeakMap", "WeakRef", "WeakSet", "WebAssembly", "WebSocket",
    "WorkerGlobalScope", "WorkerLocation", "WorkerNavigator", "WritableStream",
    "WritableStreamDefaultController", "WritableStreamDefaultWriter", "addEventListener", "atob",
    "btoa", "caches", "clearInterval", "clearTimeout", "close", "console", "crypto", "decodeURI",
    "decodeURIComponent", "encodeURI", "encodeURIComponent", "escape", "eval", "fetch",
    "globalThis", "isFinite", "isNaN", "location", "name", "navigator", "onerror", "onmessage",
    "onunhandledrejection", "parseFloat", "parseInt", "performance", "postMessage",
    "queueMicrotask", "reportError", "self", "setInterval", "setTimeout", "structuredClone",
    "undefined", "unescape",
];

/// `DedicatedWorkerGlobalScope.prototype`, `WorkerGlobalScope.prototype`, `EventTarget.prototype`,
/// `Object.prototype`.
#[rustfmt::skip]
const GLOBAL_PROTOTYPES: &[&[&str]] = &[
    &["Symbol(Symbol.toStringTag)", "constructor"],
    &["Symbol(Symbol.toStringTag)", "constructor"],
    &[
        "Symbol(Deno.privateCustomInspect)", "Symbol(Symbol.toStringTag)", "addEventListener",
        "constructor", "dispatchEvent", "getParent", "removeEventListener",
    ],
    &[
        "__defineGetter__", "__defineSetter__", "__lookupGetter__", "__lookupSetter__", "__proto__",
        "constructor", "hasOwnProperty", "isPrototypeOf", "propertyIsEnumerable", "toLocaleString",
        "toString", "valueOf",
    ],
];

/// The WebCrypto objects: no Node.js interop statics, no own properties on keys, and the
/// runner's clone refusal (`Deno.core.hostObject`) on `CryptoKey.prototype`.
#[rustfmt::skip]
const WEBCRYPTO: &[(&str, &[&str])] = &[
    ("CryptoKey", &["length", "name", "prototype"]),
    (
        "CryptoKeyPrototype",
        &[
            "Symbol(Deno.core.hostObject)", "Symbol(Deno.privateCustomInspect)",
            "Symbol(Symbol.toStringTag)", "algorithm", "constructor", "extractable", "type",
            "usages",
        ],
    ),
    ("Crypto", &["length", "name", "prototype"]),
    (
        "CryptoPrototype",
        &[
            "Symbol(Deno.privateCustomInspect)", "Symbol(Symbol.toStringTag)", "constructor",
            "getRandomValues", "randomUUID", "subtle",
        ],
    ),
    ("crypto", &["Symbol([[webidl.brand]])"]),
    ("SubtleCrypto", &["length", "name", "prototype", "supports"]),
    (
        "SubtleCryptoPrototype",
        &[
            "Symbol(Deno.privateCustomInspect)", "Symbol(Symbol.toStringTag)", "constructor",
            "decapsulateBits", "decapsulateKey", "decrypt", "deriveBits", "deriveKey", "digest",
            "encapsulateBits", "encapsulateKey", "encrypt", "exportKey", "generateKey",
            "getPublicKey", "importKey", "sign", "unwrapKey", "verify", "wrapKey",
        ],
    ),
    ("subtle", &["Symbol([[webidl.brand]])"]),
    (
        "WorkerNavigatorPrototype",
        &[
            "Symbol(Deno.privateCustomInspect)", "constructor", "hardwareConcurrency",
            "language", "languages", "platform", "userAgent", "userAgentData",
        ],
    ),
    ("omniKey", &[]),
    ("generatedKey", &[]),
    ("importedKey", &[]),
];

/// Asserts that `actual` (a JSON array of names) is exactly `allowed`, naming the differences.
fn assert_names(what: &str, actual: &Value, allowed: &[&str]) {
    let actual: Vec<&str> = actual
        .as_array()
        .unwrap_or_else(|| panic!("{what}: not a list: {actual}"))
        .iter()
        .map(|name| name.as_str().expect("a name"))
        .collect();
    let unexpected: Vec<&&str> = actual.iter().filter(|n| !allowed.contains(n)).collect();
    let missing: Vec<&&str> = allowed.iter().filter(|n| !actual.contains(n)).collect();
    assert!(
        unexpected.is_empty() && missing.is_empty(),
        "{what}: not on the allow-list: {unexpected:?}; gone: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn global_scope_and_webcrypto_match_the_allow_list() {
    let (runner, sink) = start(&[]).await;
    let script = js::module_tasks(&format!(
        "{SURFACE}\n{}",
        js::post_json(&sink.url("/surface"), "surface")
    ));

    runner.create(&json!({ "script": script })).await;

    let surface = sink.first_json("/surface").await;
    assert_names("globalThis", &surface["global"], GLOBAL);
    let prototypes = surface["globalPrototypes"].as_array().expect("a list");
    assert_eq!(prototypes.len(), GLOBAL_PROTOTYPES.len(), "{surface}");
    for (n, (actual, allowed)) in prototypes.iter().zip(GLOBAL_PROTOTYPES).enumerate() {
        assert_names(&format!("global prototype {n}"), actual, allowed);
    }
    for (what, allowed) in WEBCRYPTO {
        assert_names(what, &surface[*what], allowed);
    }
}
