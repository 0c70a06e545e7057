//! Handler conventions (module `tasks`/`scheduled`, classic `tasks`/`scheduled` listeners), cron
//! triggers, and handlers that fail.

use e2e::{count, js, json, start, tag, Runner, Sink, Value};

/// Waits for worker `id`'s first run to finish, triggers it again and waits for the sink to have
/// seen `path` twice.
async fn assert_runs_again_on_demand(runner: &Runner, sink: &Sink, id: &str, path: &str) {
    runner.wait_until_idle(id, 1).await;
    let reply = runner.run_tasks(id).await;
    reply.assert_status(200);
    assert_eq!(reply.json()["ok"], true, "{reply}");
    sink.wait_for_hits(path, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn classic_tasks_listener_gets_config_from_event_rnr() {
    let (runner, sink) = start(&[]).await;
    let config = json!({ "greeting": "hello", "n": 7 });
    let url = js::lit(&sink.url("/config"));
    let script = format!(
        "addEventListener('tasks', (event) => {{\n\
           event.waitUntil((async () => {{\n\
             const config = await event.rnr.getConfig();\n\
             await (await fetch({url}, {{ method: 'POST', body: JSON.stringify(config) }})).text();\n\
           }})());\n\
         }});\n"
    );

    let id = runner
        .create(&json!({ "script": script, "type": "classic", "config": config }))
        .await;

    assert_eq!(sink.first_json("/config").await, config);
    assert_eq!(runner.worker(&id).await["type"], "classic");
}

#[tokio::test(flavor = "multi_thread")]
async fn classic_scheduled_listener_is_triggered() {
    let (runner, sink) = start(&[]).await;
    let url = js::lit(&sink.url("/scheduled"));
    let script = format!(
        "addEventListener('scheduled', (event) => {{\n\
           event.waitUntil(fetch({url}).then((r) => r.text()));\n\
         }});\n"
    );

    let id = runner
        .create(&json!({ "script": script, "type": "classic", "schedule": "*/5 * * * *" }))
        .await;

    sink.wait_for_hits("/scheduled", 1).await;
    assert_runs_again_on_demand(&runner, &sink, &id, "/scheduled").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn module_scheduled_handler_is_triggered() {
    let (runner, sink) = start(&[]).await;
    let script = format!(
        "export default {{\n  async scheduled(event, env, ctx) {{\n    {}\n  }},\n}};\n",
        js::hit(&sink.url("/scheduled"))
    );

    let id = runner
        .create(&json!({ "script": script, "type": "module", "schedule": "*/5 * * * *" }))
        .await;

    sink.wait_for_hits("/scheduled", 1).await;
    assert_runs_again_on_demand(&runner, &sink, &id, "/scheduled").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn module_tasks_gets_rnr_with_get_config() {
    let (runner, sink) = start(&[]).await;
    let script = js::module_tasks(&js::post_json(
        &sink.url("/report"),
        "{ getConfig: typeof rnr.getConfig, ctx: typeof ctx }",
    ));

    runner.create(&json!({ "script": script })).await;

    let report = sink.first_json("/report").await;
    assert_eq!(report["getConfig"], "function", "{report}");
    assert_eq!(report["ctx"], "object", "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_second_schedule_fires_repeatedly() {
    let (runner, sink) = start(&[]).await;
    let script = js::module_tasks(&js::hit(&sink.url("/tick")));

    let id = runner
        .create(&json!({ "script": script, "schedule": "* * * * * *" }))
        .await;

    // The run right after creation plus at least two cron firings.
    sink.wait_for_hits("/tick", 3).await;
    runner
        .wait_for_worker(&id, "counted 3 runs", |w| count(w, "runs") >= 3)
        .await;
}

/// Asserts that worker `id`, whose handler hits `path` and then fails with `message`, is kept:
/// the failure is recorded and counted, and the next trigger runs again.
async fn assert_failure_recorded_and_worker_kept(
    runner: &Runner,
    sink: &Sink,
    id: &str,
    path: &str,
    message: &str,
) {
    sink.wait_for_hits(path, 1).await;
    let worker = runner
        .wait_for_worker(id, "ready with 1 error", |w| {
            w["state"] == "ready" && count(w, "errors") >= 1
        })
        .await;
    assert_last_error_mentions(&worker, message);

    let reply = runner.run_tasks(id).await;
    assert!(
        reply.status == 500 || reply.status == 503,
        "a failed run answers 500/503: {reply}"
    );
    assert!(reply.json()["error"].is_string(), "{reply}");
    sink.wait_for_hits(path, 2).await;
    let worker = runner
        .wait_for_worker(id, "ready with 2 errors", |w| {
            w["state"] == "ready" && count(w, "errors") >= 2
        })
        .await;
    assert_last_error_mentions(&worker, message);
}

fn assert_last_error_mentions(worker: &Value, message: &str) {
    let last_error = worker["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error.contains(message),
        "last_error should contain {message:?}: {worker}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn module_handler_that_throws_keeps_the_worker() {
    let (runner, sink) = start(&[]).await;
    let message = tag("thrown-from-tasks");
    let script = js::module_tasks(&format!(
        "{}\nthrow new Error({});",
        js::hit(&sink.url("/ran")),
        js::lit(&message)
    ));

    let id = runner.create(&json!({ "script": script })).await;

    assert_failure_recorded_and_worker_kept(&runner, &sink, &id, "/ran", &message).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn classic_wait_until_rejection_keeps_the_worker() {
    let (runner, sink) = start(&[]).await;
    let message = tag("rejected-in-wait-until");
    let url = js::lit(&sink.url("/ran"));
    let message_lit = js::lit(&message);
    let script = format!(
        "addEventListener('tasks', (event) => {{\n\
           event.waitUntil(fetch({url})\n\
             .then((r) => r.text())\n\
             .then(() => Promise.reject(new Error({message_lit}))));\n\
         }});\n"
    );

    let id = runner
        .create(&json!({ "script": script, "type": "classic" }))
        .await;

    assert_failure_recorded_and_worker_kept(&runner, &sink, &id, "/ran", &message).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unhandled_rejection_keeps_the_worker() {
    let (runner, sink) = start(&[]).await;
    let message = tag("unhandled-rejection");
    // The handler itself succeeds; the rejected promise it leaves behind is nobody's.
    let script = js::module_tasks(&format!(
        "Promise.reject(new Error({}));\n{}",
        js::lit(&message),
        js::hit(&sink.url("/ran"))
    ));

    let id = runner.create(&json!({ "script": script })).await;

    sink.wait_for_hits("/ran", 1).await;
    let worker = runner
        .wait_for_worker(&id, "counting the unhandled rejection", |w| {
            count(w, "errors") >= 1
        })
        .await;
    assert_last_error_mentions(&worker, &message);
    runner.wait_until_idle(&id, 1).await;
    runner.run_tasks(&id).await;
    sink.wait_for_hits("/ran", 2).await;
    let state = runner.worker(&id).await["state"].clone();
    assert!(
        state == "ready" || state == "running",
        "worker kept: {state}"
    );
}
