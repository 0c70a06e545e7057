//! Creation requests the runner must refuse, each with the right status and a JSON
//! `{"error": "..."}` that names what is wrong; and refused requests leave no worker behind.

use e2e::{js, json, Form, Part, Reply, Runner, Value};

/// A valid module script (with a `tasks` handler) that does nothing observable.
fn valid_script() -> String {
    js::module_tasks("// nothing to do")
}

/// Asserts the error reply and that no worker was created.
async fn assert_refused(runner: &Runner, reply: Reply, status: u16, mentions: &[&str]) -> String {
    let message = reply.expect_error(status, mentions);
    let workers = runner.workers().await;
    assert!(
        workers.is_empty(),
        "a refused request left workers: {workers:?}"
    );
    message
}

async fn assert_json_refused(request: Value, mentions: &[&str]) -> String {
    let runner = Runner::start(&[]).await;
    let reply = runner.post_json("/", &request).await;
    assert_refused(&runner, reply, 400, mentions).await
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_body() {
    let runner = Runner::start(&[]).await;
    let reply = runner
        .post_raw(
            "/",
            Some("application/json"),
            r#"{"script": "export default {}"#.to_owned(),
        )
        .await;
    assert_refused(&runner, reply, 400, &["json", "body"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_without_script() {
    assert_json_refused(json!({ "type": "module" }), &["script"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_script_of_the_wrong_type() {
    assert_json_refused(json!({ "script": 42, "type": "module" }), &["script"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_without_script() {
    let runner = Runner::start(&[]).await;
    let form = Form::new()
        .text("type", "module")
        .text("schedule", "*/5 * * * *");
    let reply = runner.post_multipart("/", form).await;
    assert_refused(&runner, reply, 400, &["script"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_type() {
    assert_json_refused(
        json!({ "script": valid_script(), "type": "wasm" }),
        &["type"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_cron() {
    let runner = Runner::start(&[]).await;
    for schedule in ["not a cron", "61 * * * *", "* * *", "\"\""] {
        println!("schedule {schedule:?}"); // shown if the test fails
        let request = json!({ "script": valid_script(), "schedule": schedule });
        let reply = runner.post_json("/", &request).await;
        assert_refused(&runner, reply, 400, &["schedule"]).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_config_not_an_object() {
    let runner = Runner::start(&[]).await;
    for config in [json!([1, 2]), json!("str"), json!(3), json!(true)] {
        println!("config {config}"); // shown if the test fails
        let request = json!({ "script": valid_script(), "config": config });
        let reply = runner.post_json("/", &request).await;
        assert_refused(&runner, reply, 400, &["config"]).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn form_config_not_a_json_object() {
    let runner = Runner::start(&[]).await;
    for config in ["[1,2]", "\"str\"", "{oops"] {
        println!("config {config:?}"); // shown if the test fails
        let form = Form::new()
            .text("script", valid_script())
            .text("type", "module")
            .text("config", config);
        let reply = runner.post_multipart("/", form).await;
        assert_refused(&runner, reply, 400, &["config"]).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn form_config_file_part_not_json() {
    let runner = Runner::start(&[]).await;
    let config = Part::text("not json at all")
        .file_name("config.json")
        .mime_str("application/octet-stream")
        .expect("a valid MIME type");
    let form = Form::new()
        .text("script", valid_script())
        .text("type", "module")
        .part("config", config);
    let reply = runner.post_multipart("/", form).await;
    assert_refused(&runner, reply, 400, &["config"]).await;
}

/// Asserts that a `kind` script with a syntax error on its line 2 is refused with the
/// JavaScript error and its position.
async fn assert_syntax_error_refused(kind: &str, script: &str) {
    let message =
        assert_json_refused(json!({ "script": script, "type": kind }), &["SyntaxError"]).await;
    assert!(
        message.contains(":2:"),
        "the error should give line 2 with a column: {message:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn module_with_a_syntax_error() {
    let script = "export default {\n  async tasks(rnr) { return 1 +; },\n};\n";
    assert_syntax_error_refused("module", script).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn classic_with_a_syntax_error() {
    let script = "addEventListener('tasks', (event) => {\n  event.waitUntil(1 +);\n});\n";
    assert_syntax_error_refused("classic", script).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn module_that_throws_at_top_level() {
    let message = e2e::tag("module-top-level-throw");
    let script = format!(
        "throw new Error({});\nexport default {{ async tasks() {{}} }};\n",
        js::lit(&message)
    );
    assert_json_refused(json!({ "script": script, "type": "module" }), &[&message]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn classic_that_throws_at_top_level() {
    let message = e2e::tag("classic-top-level-throw");
    let script = format!(
        "addEventListener('tasks', () => {{}});\nthrow new Error({});\n",
        js::lit(&message)
    );
    assert_json_refused(json!({ "script": script, "type": "classic" }), &[&message]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn module_with_schedule_but_no_handler() {
    let script = "export default { async fetch() { return new Response('hi'); } };\n";
    let request = json!({ "script": script, "type": "module", "schedule": "*/5 * * * *" });
    assert_json_refused(request, &["schedule", "tasks", "scheduled", "handler"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn classic_with_schedule_but_no_listener() {
    let script = "addEventListener('fetch', () => {});\n";
    let request = json!({ "script": script, "type": "classic", "schedule": "*/5 * * * *" });
    assert_json_refused(
        request,
        &["schedule", "tasks", "scheduled", "handler", "listener"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_content_type() {
    let runner = Runner::start(&[]).await;
    let reply = runner
        .post_raw("/", Some("text/plain"), valid_script())
        .await;
    assert!(
        reply.status == 415 || reply.status == 400,
        "text/plain should be refused with 415 (or 400): {reply}"
    );
    let status = reply.status.as_u16();
    assert_refused(&runner, reply, status, &["content"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversize_script_is_413() {
    let runner = Runner::start(&["--max-script-bytes", "1024"]).await;
    // A valid script just under the limit is accepted...
    let small = js::module_tasks(&format!("// {}", "s".repeat(800)));
    assert!(small.len() < 1024);
    runner.create(&json!({ "script": small })).await;
    // ...a 4 KiB one is not.
    let big = js::module_tasks(&format!("// {}", "b".repeat(4096)));
    let reply = runner.post_json("/", &json!({ "script": big })).await;
    reply.expect_error(413, &["script", "size", "large", "bytes"]);
    assert_eq!(runner.workers().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversize_multipart_script_file_is_413() {
    let runner = Runner::start(&["--max-script-bytes", "1024"]).await;
    let big = js::module_tasks(&format!("// {}", "b".repeat(4096)));
    let script = Part::text(big)
        .file_name("w.js")
        .mime_str("application/octet-stream")
        .expect("a valid MIME type");
    let form = Form::new().part("script", script).text("type", "module");
    let reply = runner.post_multipart("/", form).await;
    assert_refused(&runner, reply, 413, &["script", "size", "large", "bytes"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_workers_is_429_until_one_is_deleted() {
    let runner = Runner::start(&["--max-workers", "1"]).await;
    let first = runner
        .create(&json!({ "script": js::module_tasks("// first") }))
        .await;

    let reply = runner
        .post_json("/", &json!({ "script": js::module_tasks("// second") }))
        .await;
    reply.expect_error(429, &["worker"]);
    assert_eq!(runner.workers().await.len(), 1);

    runner
        .delete(&e2e::worker_path(&first))
        .await
        .assert_status(204);
    runner
        .create(&json!({ "script": js::module_tasks("// third") }))
        .await;
}
