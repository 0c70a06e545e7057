//! What a worker may import (issue 21): deno's built-in modules (`node:`, `ext:`) and package
//! specifiers (`npm:`, `jsr:`) are refused when loading, naming the specifier, whether imported
//! statically (creation answers `400`) or with `import()` (a TypeError). `node:path` loaded
//! before the fix: deno_core falls back to its embedded source when the loader refuses to
//! resolve a specifier. Other URLs are treated as before: nothing but the script itself loads.

use e2e::{js, json, tag, Runner, Value};

/// Specifiers that must be refused, one of each scheme (`node:path` and `node:net` load from
/// deno's embedded polyfills when nothing stops them; `NODE:` is the same scheme).
const REFUSED: [&str; 7] = [
    "node:path",
    "node:net",
    "NODE:path",
    "ext:deno_web/00_url.js",
    "ext:rnr/rnr.js",
    "npm:left-pad",
    "jsr:@std/path",
];

/// Specifiers the runner has no module for, refused as they were before (with "Module not found").
const NOT_FOUND: [&str; 3] = [
    "data:text/javascript,export default 1",
    "https://example.com/module.js",
    "./other.js",
];

/// The refusal names the specifier as resolved (a scheme in lower case).
fn named(specifier: &str) -> String {
    match specifier.strip_prefix("NODE:") {
        Some(rest) => format!("\"node:{rest}\""),
        None => format!("\"{specifier}\""),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn static_imports_of_deno_modules_and_packages_fail_creation() {
    let runner = Runner::start(&[]).await;
    for specifier in REFUSED {
        let script = format!(
            "import * as m from {};\nexport default {{ fetch() {{ return new Response(String(m)); }} }};\n",
            js::lit(specifier)
        );
        let reply = runner.post_json("/", &json!({ "script": script })).await;
        let message = reply.expect_error(400, &["refused"]);
        assert!(
            message.contains(&named(specifier)),
            "{specifier}: {message}"
        );
    }
    for specifier in NOT_FOUND {
        let script = format!("import {};\nexport default {{}};\n", js::lit(specifier));
        let reply = runner.post_json("/", &json!({ "script": script })).await;
        reply.expect_error(400, &["Module not found"]);
    }
    assert!(runner.workers().await.is_empty(), "no worker was created");
}

/// JavaScript that imports each specifier of `specifiers` and records its outcome.
fn import_each(specifiers: &[&str]) -> String {
    format!(
        r#"const outcomes = {{}};
for (const specifier of {list}) {{
  try {{
    const m = await import(specifier);
    outcomes[specifier] = {{ loaded: Object.keys(m).length }};
  }} catch (error) {{
    outcomes[specifier] = {{ name: error.name, message: error.message }};
  }}
}}"#,
        list = serde_json::to_string(specifiers).expect("strings serialize")
    )
}

fn assert_dynamic_outcomes(outcomes: &Value) {
    for specifier in REFUSED {
        let outcome = &outcomes[specifier];
        assert_eq!(outcome["name"], "TypeError", "{specifier}: {outcomes}");
        let message = outcome["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("refused") && message.contains(&named(specifier)),
            "{specifier}: {outcomes}"
        );
    }
    for specifier in NOT_FOUND {
        assert_eq!(
            outcomes[specifier]["message"], "Module not found",
            "{specifier}: {outcomes}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamic_imports_of_deno_modules_and_packages_reject_in_a_module_worker() {
    let runner = Runner::start(&[]).await;
    let all: Vec<&str> = REFUSED.iter().chain(NOT_FOUND.iter()).copied().collect();
    let script = format!(
        r#"// {marker}
export default {{
  async fetch() {{
{imports}
    let resolved;
    try {{ resolved = import.meta.resolve("node:path"); }} catch (error) {{ resolved = `${{error.name}}: ${{error.message}}`; }}
    return Response.json({{ outcomes, resolved }});
  }},
}};
"#,
        marker = tag("dynamic-imports"),
        imports = import_each(&all)
    );
    let id = runner.create(&json!({ "script": script })).await;

    let report = runner
        .get(&format!("/w/{id}/"))
        .await
        .assert_status(200)
        .json();

    assert_dynamic_outcomes(&report["outcomes"]);
    let resolved = report["resolved"].as_str().unwrap_or_default();
    assert!(
        resolved.starts_with("TypeError") && resolved.contains("\"node:path\""),
        "import.meta.resolve: {report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamic_imports_of_deno_modules_and_packages_reject_in_a_classic_worker() {
    let runner = Runner::start(&[]).await;
    let all: Vec<&str> = REFUSED.iter().chain(NOT_FOUND.iter()).copied().collect();
    let script = format!(
        r#"// {marker}
addEventListener("fetch", (event) => {{
  event.respondWith((async () => {{
{imports}
    return Response.json(outcomes);
  }})());
}});
"#,
        marker = tag("classic-dynamic-imports"),
        imports = import_each(&all)
    );
    let id = runner
        .create(&json!({ "script": script, "type": "classic" }))
        .await;

    let outcomes = runner
        .get(&format!("/w/{id}/"))
        .await
        .assert_status(200)
        .json();

    assert_dynamic_outcomes(&outcomes);
}
