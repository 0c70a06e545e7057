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
