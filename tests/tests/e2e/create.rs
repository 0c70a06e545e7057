//! Creating workers: `POST /` in every encoding and spelling the reference and Escrin use.

use std::path::Path;
use std::process::Stdio;

use e2e::{js, json, start, tag, Form, Part, Reply, Runner, Sink, Value};

/// The reference's schedule, as curl sends it after stripping the shell quotes.
const EVERY_FIVE_MINUTES: &str = "*/5 * * * *";

/// A file part as curl sends `-F 'name=@file'`: a file name and `application/octet-stream`.
fn file_part(file_name: &str, contents: &str) -> Part {
    Part::text(contents.to_owned())
        .file_name(file_name.to_owned())
        .mime_str("application/octet-stream")
        .expect("a valid MIME type")
}

/// Asserts that the worker created by `reply` ran and received `config`, and that its schedule is
/// listed without quotes.
async fn assert_created_with_config(runner: &Runner, sink: &Sink, reply: &Reply, config: Value) {
    let id = reply.created_id();
    assert_eq!(sink.first_json("/config").await, config);
    let worker = runner.worker(&id).await;
    assert_eq!(worker["schedule"], EVERY_FIVE_MINUTES, "{worker}");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_creation_answers_201_with_id_and_location_and_runs_tasks_once() {
    let (runner, sink) = start(&[]).await;
    let script = js::module_tasks(&js::hit(&sink.url("/ran?json")));

    let reply = runner
        .post_json("/", &json!({ "script": script, "type": "module" }))
        .await;

    let id = reply.created_id();
    let location = format!("/workers/{id}");
    assert_eq!(reply.header("location"), Some(location.as_str()), "{reply}");
    let hits = sink.wait_for_hits("/ran", 1).await;
    assert_eq!(hits[0].query.as_deref(), Some("json"));
    let worker = runner.wait_until_idle(&id, 1).await;
    assert_eq!(
        worker["runs"], 1,
        "exactly one run after creation: {worker}"
    );
    assert_eq!(sink.hits("/ran").len(), 1, "{:?}", sink.requests());
    runner.get(&location).await.assert_status(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn type_defaults_to_module() {
    let (runner, sink) = start(&[]).await;
    let id = runner
        .create(&json!({ "script": js::module_tasks(&js::hit(&sink.url("/ran"))) }))
        .await;

    sink.wait_for_hits("/ran", 1).await;
    assert_eq!(runner.worker(&id).await["type"], "module");
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_multipart_with_quoted_schedule_and_text_config() {
    let (runner, sink) = start(&[]).await;
    let form = Form::new()
        .part(
            "script",
            file_part("w.js", &js::config_reporter(&sink.url("/config"))),
        )
        .text("type", "module")
        .text("schedule", format!("\"{EVERY_FIVE_MINUTES}\""))
        .text("config", r#"{"a":1}"#);

    let reply = runner.post_multipart("/", form).await;

    assert_created_with_config(&runner, &sink, &reply, json!({ "a": 1 })).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_multipart_with_unquoted_schedule() {
    let (runner, sink) = start(&[]).await;
    let form = Form::new()
        .part(
            "script",
            file_part("w.js", &js::config_reporter(&sink.url("/config"))),
        )
        .text("type", "module")
        .text("schedule", EVERY_FIVE_MINUTES)
        .text("config", r#"{"a":1}"#);

    let reply = runner.post_multipart("/", form).await;

    assert_created_with_config(&runner, &sink, &reply, json!({ "a": 1 })).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_config_as_file_part() {
    let (runner, sink) = start(&[]).await;
    let config = json!({ "a": 1, "nested": { "list": [1, "two", null] } });
    let form = Form::new()
        .part(
            "script",
            file_part("w.js", &js::config_reporter(&sink.url("/config"))),
        )
        .text("type", "module")
        .text("schedule", format!("\"{EVERY_FIVE_MINUTES}\""))
        .part("config", file_part("config.json", &config.to_string()));

    let reply = runner.post_multipart("/", form).await;

    assert_created_with_config(&runner, &sink, &reply, config).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_script_as_text_part() {
    let (runner, sink) = start(&[]).await;
    let form = Form::new()
        .text("script", js::module_tasks(&js::hit(&sink.url("/ran"))))
        .text("type", "module");

    runner.post_multipart("/", form).await.created_id();

    sink.wait_for_hits("/ran", 1).await;
}

/// Runs `curl` with `args` in `dir` (proxies from the environment removed, so it reaches loopback
/// directly) and returns its output; `None` when curl is not installed.
async fn curl(dir: &Path, args: &[&str]) -> Option<String> {
    let output = tokio::process::Command::new("curl")
        .args(args)
        .current_dir(dir)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .stdin(Stdio::null())
        .output()
        .await;
    match output {
        Ok(output) => {
            assert!(output.status.success(), "curl failed: {output:?}");
            Some(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("run curl: {e}"),
    }
}

/// Asserts that `curl -i` output is a `201` and returns the created worker's id.
fn curl_created_id(output: &str) -> String {
    let status_line = output.lines().next().unwrap_or_default();
    assert!(
        status_line.contains(" 201"),
        "expected 201 from curl:\n{output}"
    );
    let body = output
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or_else(|| panic!("no body in curl's output:\n{output}"));
    let created: Value = serde_json::from_str(body.trim())
        .unwrap_or_else(|e| panic!("curl's body is not JSON ({e}):\n{output}"));
    created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in curl's body:\n{output}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_curl_command_verbatim() {
    let (runner, sink) = start(&[]).await;
    let dir = tempfile::tempdir().expect("a temp dir for w.js");
    std::fs::write(
        dir.path().join("w.js"),
        js::config_reporter(&sink.url("/config")),
    )
    .expect("write w.js");
    let url = runner.url("/");

    let args = [
        "-isS",
        url.as_str(),
        "-F",
        "script=@w.js",
        "-F",
        "type=module",
        "-F",
        "schedule=\"*/5 * * * *\"",
        "-F",
        r#"config={"a":1}"#,
    ];
    let Some(output) = curl(dir.path(), &args).await else {
        eprintln!("curl is not installed: skipping the verbatim curl check");
        return;
    };

    let id = curl_created_id(&output);
    assert_eq!(sink.first_json("/config").await, json!({ "a": 1 }));
    assert_eq!(runner.worker(&id).await["schedule"], EVERY_FIVE_MINUTES);
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_with_config_file_part() {
    let (runner, sink) = start(&[]).await;
    let dir = tempfile::tempdir().expect("a temp dir for the files");
    std::fs::write(
        dir.path().join("w.js"),
        js::config_reporter(&sink.url("/config")),
    )
    .expect("write w.js");
    std::fs::write(dir.path().join("config.json"), r#"{"a":1,"b":"two"}"#)
        .expect("write config.json");
    let url = runner.url("/");

    let args = [
        "-isS",
        url.as_str(),
        "-F",
        "script=@w.js",
        "-F",
        "type=module",
        "-F",
        "schedule=\"*/5 * * * *\"",
        "-F",
        "config=@config.json",
    ];
    let Some(output) = curl(dir.path(), &args).await else {
        eprintln!("curl is not installed: skipping the curl config file check");
        return;
    };

    curl_created_id(&output);
    assert_eq!(
        sink.first_json("/config").await,
        json!({ "a": 1, "b": "two" })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn urlencoded_form_creation() {
    let (runner, sink) = start(&[]).await;
    let script = js::config_reporter(&sink.url("/config"));
    let schedule = format!("\"{EVERY_FIVE_MINUTES}\"");
    let fields = [
        ("script", script.as_str()),
        ("type", "module"),
        ("schedule", schedule.as_str()),
        ("config", r#"{"a":1}"#),
    ];

    let reply = runner.post_form("/", &fields).await;

    assert_created_with_config(&runner, &sink, &reply, json!({ "a": 1 })).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_without_content_type() {
    let (runner, sink) = start(&[]).await;
    let body = json!({ "script": js::module_tasks(&js::hit(&sink.url("/ran"))), "type": "module" });

    runner
        .post_raw("/", None, body.to_string())
        .await
        .created_id();

    sink.wait_for_hits("/ran", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn escrin_code_spelling_for_module() {
    let (runner, sink) = start(&[]).await;
    let id = runner
        .create(&json!({ "code": js::module_tasks(&js::hit(&sink.url("/ran"))), "type": "module" }))
        .await;

    sink.wait_for_hits("/ran", 1).await;
    assert_eq!(runner.worker(&id).await["type"], "module");
}

/// A classic script that reports whether it was really run as a classic script: only there is
/// top-level `this` the global object (in a module it is `undefined`).
fn kind_reporter(sink: &Sink) -> String {
    let url = js::lit(&sink.url("/kind"));
    format!(
        "const kind = this === globalThis ? 'classic' : 'module';\n\
         addEventListener('tasks', (event) => {{\n\
           event.waitUntil(fetch({url} + '?' + kind).then((r) => r.text()));\n\
         }});\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn escrin_code_and_sw_spelling_for_classic() {
    let (runner, sink) = start(&[]).await;
    runner
        .create(&json!({ "code": kind_reporter(&sink), "type": "sw" }))
        .await;

    let hits = sink.wait_for_hits("/kind", 1).await;
    assert_eq!(hits[0].query.as_deref(), Some("classic"));
}

#[tokio::test(flavor = "multi_thread")]
async fn classic_type_runs_as_classic_script() {
    let (runner, sink) = start(&[]).await;
    let id = runner
        .create(&json!({ "script": kind_reporter(&sink), "type": "classic" }))
        .await;

    let hits = sink.wait_for_hits("/kind", 1).await;
    assert_eq!(hits[0].query.as_deref(), Some("classic"));
    assert_eq!(runner.worker(&id).await["type"], "classic");
}

#[tokio::test(flavor = "multi_thread")]
async fn standard_cron_expressions_are_accepted() {
    let runner = Runner::start(&[]).await;
    let schedules = [
        "*/5 * * * *",
        "0 3 * * 1-5",
        "15,45 */2 1 * *",
        "30 4 1,15 * 5",
        "*/10 * * * * *",
    ];
    for schedule in schedules {
        // A `tasks` handler that does nothing; the tag keeps each script unique.
        let script = js::module_tasks(&format!("// {}", tag("cron")));
        let id = runner
            .create(&json!({ "script": script, "schedule": schedule }))
            .await;
        assert_eq!(runner.worker(&id).await["schedule"], schedule);
    }
    assert_eq!(runner.workers().await.len(), schedules.len());
}
