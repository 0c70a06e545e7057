//! Builders for the worker scripts the tests send.

/// `value` as a JavaScript string literal (JSON strings are valid JavaScript).
pub fn lit(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

/// A module worker whose `tasks(rnr, ctx)` handler runs `body`.
pub fn module_tasks(body: &str) -> String {
    format!("export default {{\n  async tasks(rnr, ctx) {{\n{body}\n  }},\n}};\n")
}

/// A classic (service-worker style) worker whose `tasks` listener runs `body` inside
/// `event.waitUntil`, with `rnr` bound to `event.rnr`.
pub fn classic_tasks(body: &str) -> String {
    format!(
        "addEventListener('tasks', (event) => {{\n  event.waitUntil((async (rnr) => {{\n{body}\n  }})(event.rnr));\n}});\n"
    )
}

/// Statements that GET `url` and wait for the whole response.
pub fn hit(url: &str) -> String {
    format!("await (await fetch({})).text();", lit(url))
}

/// Statements that POST `JSON.stringify(<expr>)` to `url` and wait for the whole response.
pub fn post_json(url: &str, expr: &str) -> String {
    format!(
        "await (await fetch({}, {{ method: 'POST', headers: {{ 'content-type': 'application/json' }}, body: JSON.stringify({expr}) }})).text();",
        lit(url)
    )
}

/// A module worker whose `tasks()` posts `await rnr.getConfig()` to `url`.
pub fn config_reporter(url: &str) -> String {
    module_tasks(&post_json(url, "await rnr.getConfig()"))
}

/// The npm directory `scripts/setup.sh` fills with the packages test workers import
/// (`tests/npm/package.json`): `$WORKER_NPM_DIR`, else `~/.cache/smart-worker/worker-npm`.
pub fn worker_npm_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("WORKER_NPM_DIR") {
        return dir.into();
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    std::path::Path::new(&home).join(".cache/smart-worker/worker-npm")
}

/// `source` bundled as its users bundle it (`esbuild --bundle --format=esm`), its imports
/// resolved from [`worker_npm_dir`]'s `node_modules`. Panics naming `scripts/setup.sh` when
/// the packages are missing.
pub fn esbuild_bundle(source: &str) -> String {
    use std::io::Write;
    let dir = worker_npm_dir();
    let esbuild = dir.join("node_modules/.bin/esbuild");
    assert!(
        esbuild.exists(),
        "{} is missing: run scripts/setup.sh",
        esbuild.display()
    );
    let mut child = std::process::Command::new(&esbuild)
        .args(["--bundle", "--format=esm", "--log-level=warning"])
        .arg("--sourcefile=worker.js")
        // Standard input's imports resolve from the working directory.
        .current_dir(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("esbuild starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(source.as_bytes())
        .expect("source written to esbuild");
    let output = child.wait_with_output().expect("esbuild ends");
    assert!(
        output.status.success(),
        "esbuild failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("esbuild writes UTF-8")
}
