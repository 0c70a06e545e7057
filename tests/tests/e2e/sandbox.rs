//! What a worker can reach: the web platform of a `WorkerGlobalScope`, and nothing of Deno's.

use e2e::{js, json, start, Value};

/// Probes run inside the worker; each records its value, or `"threw: <error>"`.
const PROBES: &str = r#"
const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
const probes = {
  deno: () => typeof Deno,
  process: () => typeof process,
  require: () => typeof require,
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
