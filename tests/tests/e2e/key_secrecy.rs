//! The `local` Omni Key's bytes never reach a worker's JavaScript (issue 21): every route deno's
//! Node.js interop opened to a CryptoKey's bytes is tried in a real worker, and whatever each
//! route hands back is searched for bytes that reproduce the key.

use e2e::{tag, Runner, Value};

/// A fetch worker that tries each route to its Omni Key's bytes and answers, per route, with its
/// error (if it threw) and whether anything it returned reproduces the key (`leaked`).
///
/// A candidate reproduces the key when, imported as an HKDF key, it derives the same bits as the
/// Omni Key. The `control` route runs the same search on a key whose bytes it hands back itself,
/// so a search that could never succeed fails the test.
fn routes_worker(marker: &str) -> String {
    format!(
        r#"// {marker}
const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
const info = new TextEncoder().encode("key-secrecy");
const bitsOf = async (key) =>
  hex(await crypto.subtle.deriveBits({{ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(), info }}, key, 256));
const hkdf = (bytes, extractable = false) =>
  crypto.subtle.importKey("raw", bytes, "HKDF", extractable, ["deriveBits"]);

// Every byte sequence in a value (typed arrays, ArrayBuffers, hex strings), a few levels deep.
function candidates(value, out = [], depth = 0) {{
  if (depth > 6 || value === null || value === undefined) return out;
  if (value instanceof ArrayBuffer) out.push(new Uint8Array(value));
  else if (ArrayBuffer.isView(value)) out.push(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
  else if (typeof value === "string" && /^[0-9a-f]{{64}}$/i.test(value)) {{
    out.push(Uint8Array.from(value.match(/../g), (h) => parseInt(h, 16)));
  }} else if (typeof value === "object" || typeof value === "function") {{
    for (const key of Reflect.ownKeys(value)) {{
      let inner;
      try {{ inner = value[key]; }} catch {{ continue; }}
      candidates(inner, out, depth + 1);
    }}
  }}
  return out;
}}

async function reproduces(value, bits) {{
  for (const bytes of candidates(value)) {{
    try {{
      if (await bitsOf(await hkdf(bytes)) === bits) return true;
    }} catch {{}}
  }}
  return false;
}}

const routes = {{
  // deno_crypto's Node.js interop: any key's bytes, `extractable` unchecked.
  exportNodeMaterial: (key) => CryptoKey.exportNodeMaterial(key),
  // What deno stamped on keys: node's `kKeyObject` (the bytes) and the clone brand.
  ownProperties: (key) => Reflect.ownKeys(key).map((k) => key[k]),
  hostObjectBrand: (key) => key[Symbol.for("Deno.core.hostObject")](),
  // Structured clone hands the brand's snapshot to `CryptoKey.fromCloneData`.
  structuredClone: (key) => structuredClone(key),
  replacedFromCloneData: (key) => {{
    let seen;
    try {{ CryptoKey.fromCloneData = (data) => {{ seen = data; return data; }}; }} catch {{}}
    try {{ Object.defineProperty(CryptoKey, "fromCloneData", {{ value: (data) => {{ seen = data; return data; }} }}); }} catch {{}}
    try {{ structuredClone(key); }} catch (error) {{ return {{ seen, error: `${{error.name}}: ${{error.message}}` }}; }}
    return {{ seen }};
  }},
  messageChannel: async (key) => {{
    const {{ port1, port2 }} = new MessageChannel();
    try {{
      const received = new Promise((resolve) => {{ port2.onmessage = (event) => resolve(event.data); }});
      port1.postMessage(key);
      return await received;
    }} finally {{
      port1.close();
      port2.close();
    }}
  }},
  broadcastChannel: (key) => {{
    const channel = new BroadcastChannel("key-secrecy");
    try {{ channel.postMessage(key); }} finally {{ channel.close(); }}
  }},
  // Re-register deno_crypto's symbols with ones the worker knows, then get a fresh Omni Key.
  registerSymbols: async (key, rnr) => {{
    const brand = Symbol("brand"), keyObject = Symbol("keyObject");
    Crypto.registerSymbols(brand, keyObject);
    const fresh = await rnr.getOmniKey("local");
    return [fresh[keyObject], fresh[Symbol.for("Deno.core.hostObject")]?.()];
  }},
  // A fresh key passes through promise resolution, which reads its `then`: catch it there.
  thenGetter: async (key, rnr) => {{
    const caught = [];
    Object.defineProperty(Object.prototype, "then", {{
      configurable: true,
      get() {{ caught.push(this); return undefined; }},
    }});
    try {{
      await rnr.getOmniKey("local");
    }} finally {{
      delete Object.prototype.then;
    }}
    return caught.filter((o) => o instanceof CryptoKey).map((k) => Reflect.ownKeys(k).map((p) => k[p]));
  }},
  // Escrin's mid-2023 protocol: the runner answers a posted getOmniKey with the CryptoKey itself.
  postMessageProtocol: async () => {{
    const answer = new Promise((resolve) => addEventListener("message", (event) => resolve(event.data), {{ once: true }}));
    postMessage({{ id: "probe", type: "APPLY", path: ["getOmniKey"], argumentList: [{{ type: "RAW", value: "local" }}] }});
    const data = await answer;
    return [data, Reflect.ownKeys(data.value).map((k) => data.value[k])];
  }},
  wrapKey: async (key) => {{
    const kek = await crypto.subtle.generateKey({{ name: "AES-KW", length: 256 }}, false, ["wrapKey"]);
    return crypto.subtle.wrapKey("raw", key, kek, "AES-KW");
  }},
}};

export default {{
  async fetch(request, rnr) {{
    // deno stamps keys with their bytes once `crypto.subtle` has been read: read it first.
    void crypto.subtle;
    const key = await rnr.getOmniKey("local");
    const bits = await bitsOf(key);
    const report = {{ bitsLength: bits.length }};
    for (const [name, route] of Object.entries(routes)) {{
      let value, error = null;
      try {{ value = await route(key, rnr); }} catch (e) {{ error = `${{e.name}}: ${{e.message}}`; }}
      report[name] = {{ error, leaked: await reproduces(value, bits) }};
    }}
    const known = crypto.getRandomValues(new Uint8Array(32));
    report.control = {{ leaked: await reproduces({{ nested: [known] }}, await bitsOf(await hkdf(known))) }};
    return Response.json(report);
  }},
}};
"#
    )
}

fn error_of<'a>(report: &'a Value, route: &str) -> &'a str {
    report[route]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("route {route} did not throw: {report}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn no_route_hands_out_the_omni_keys_bytes() {
    let runner = Runner::start(&[]).await;
    let id = runner
        .create(&serde_json::json!({ "script": routes_worker(&tag("key-secrecy")) }))
        .await;

    let report = runner
        .get(&format!("/w/{id}/"))
        .await
        .assert_status(200)
        .json();

    assert_eq!(report["bitsLength"], 64, "the Omni Key works: {report}");
    assert_eq!(
        report["control"]["leaked"], true,
        "the search finds bytes it is given: {report}"
    );
    let routes = [
        "exportNodeMaterial",
        "ownProperties",
        "hostObjectBrand",
        "structuredClone",
        "replacedFromCloneData",
        "messageChannel",
        "broadcastChannel",
        "registerSymbols",
        "thenGetter",
        "postMessageProtocol",
        "wrapKey",
    ];
    for route in routes {
        assert_eq!(
            report[route]["leaked"], false,
            "route {route} handed out the key's bytes: {report}"
        );
    }
    assert_eq!(
        report["postMessageProtocol"]["error"],
        Value::Null,
        "the runner answered with the key: {report}"
    );
    for route in ["exportNodeMaterial", "registerSymbols"] {
        assert!(
            error_of(&report, route).contains("is not a function"),
            "{route}: {report}"
        );
    }
    for route in [
        "hostObjectBrand",
        "structuredClone",
        "messageChannel",
        "broadcastChannel",
    ] {
        assert!(
            error_of(&report, route).starts_with("DataCloneError"),
            "{route}: {report}"
        );
    }
    assert!(
        error_of(&report, "wrapKey").starts_with("InvalidAccessError"),
        "{report}"
    );
}
