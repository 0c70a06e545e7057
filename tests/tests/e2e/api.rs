//! The worker API around creation: list, get, delete, run now, logs, health.

use std::time::Duration;

use e2e::{js, json, start, tag, worker_path, Runner, Value, PATIENCE};

/// States the contract allows for a worker that is alive.
const ALIVE: [&str; 3] = ["starting", "ready", "running"];

fn is_alive(worker: &Value) -> bool {
    ALIVE.iter().any(|state| worker["state"] == *state)
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_answers_200() {
    let runner = Runner::start(&[]).await;
    runner.get("/healthz").await.assert_status(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_and_get_show_the_worker() {
    let (runner, sink) = start(&[]).await;
    let script = js::module_tasks(&js::hit(&sink.url("/ran")));
    let id = runner
        .create(&json!({ "script": script, "type": "module", "schedule": "\"*/5 * * * *\"" }))
        .await;
    sink.wait_for_hits("/ran", 1).await;
    runner.wait_until_idle(&id, 1).await;

    let workers = runner.workers().await;
    assert_eq!(workers.len(), 1, "{workers:?}");
    let listed = &workers[0];
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["type"], "module");
    assert_eq!(
        listed["schedule"], "*/5 * * * *",
        "quotes stripped: {listed}"
    );
    assert!(is_alive(listed), "{listed}");
    assert!(!listed["created"].is_null(), "{listed}");
    assert!(!listed["last_run"].is_null(), "ran once: {listed}");
    // The list is public: no counters, errors or code hash (see ownership.rs).
    assert!(listed.get("runs").is_none(), "{listed}");

    // With its token (the harness sends it), a worker's status shows everything.
    let worker = runner.worker(&id).await;
    assert_eq!(worker["id"], id.as_str());
    assert_eq!(worker["type"], "module");
    assert_eq!(worker["schedule"], "*/5 * * * *");
    assert!(worker["last_error"].is_null(), "{worker}");
    assert_eq!(worker["runs"], 1, "{worker}");
    assert_eq!(worker["errors"], 0, "{worker}");
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_without_schedule_lists_no_schedule() {
    let (runner, sink) = start(&[]).await;
    let id = runner
        .create(&json!({ "script": js::module_tasks(&js::hit(&sink.url("/ran"))) }))
        .await;

    let worker = runner.worker(&id).await;
    assert!(worker["schedule"].is_null(), "{worker}");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_removes_the_worker_and_stops_its_schedule() {
    let (runner, sink) = start(&[]).await;
    let script = js::module_tasks(&js::hit(&sink.url("/tick")));
    let id = runner
        .create(&json!({ "script": script, "schedule": "* * * * * *" }))
        .await;
    sink.wait_for_hits("/tick", 2).await;

    runner.delete(&worker_path(&id)).await.assert_status(204);

    runner.get(&worker_path(&id)).await.expect_error(404, &[]);
    assert!(runner.workers().await.is_empty());
    // A run that was already under way may still land; after that, nothing more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_delete = sink.hits("/tick").len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sink.hits("/tick").len(),
        after_delete,
        "the schedule kept firing after DELETE"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_tasks_now() {
    let (runner, sink) = start(&[]).await;
    let script = js::module_tasks(&js::hit(&sink.url("/ran")));
    let id = runner.create(&json!({ "script": script })).await;
    sink.wait_for_hits("/ran", 1).await;
    runner.wait_until_idle(&id, 1).await;

    let reply = runner.run_tasks(&id).await;

    reply.assert_status(200);
    assert_eq!(reply.json()["ok"], true, "{reply}");
    // The answer comes after the run, so the sink has already seen it.
    assert_eq!(sink.hits("/ran").len(), 2, "{:?}", sink.requests());
    let worker = runner.wait_until_idle(&id, 2).await;
    assert_eq!(worker["runs"], 2, "{worker}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_worker_is_404_to_status_and_401_to_management_without_a_token() {
    let runner = Runner::start(&[]).await;
    let path = worker_path("00000000-0000-4000-8000-000000000000");

    runner.get(&path).await.expect_error(404, &[]);
    runner.delete(&path).await.expect_error(401, &[]);
    runner
        .post(&format!("{path}/tasks"))
        .await
        .expect_error(401, &[]);
    runner
        .get(&format!("{path}/logs"))
        .await
        .expect_error(401, &[]);
}

/// Once deleted, a worker is gone for everyone; its old token manages nothing (403, the
/// answer for any token that manages no such worker).
#[tokio::test(flavor = "multi_thread")]
async fn deleted_worker_is_gone_everywhere() {
    let (runner, sink) = start(&[]).await;
    let id = runner
        .create(&json!({ "script": js::module_tasks(&js::hit(&sink.url("/ran"))) }))
        .await;
    let path = worker_path(&id);
    runner.delete(&path).await.assert_status(204);

    runner.get(&path).await.expect_error(404, &[]);
    runner.delete(&path).await.expect_error(403, &[]);
    runner
        .post(&format!("{path}/tasks"))
        .await
        .expect_error(403, &[]);
    runner
        .get(&format!("{path}/logs"))
        .await
        .expect_error(403, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn console_output_reaches_the_logs_endpoint_and_the_runner_log() {
    let (runner, sink) = start(&[]).await;
    let message = tag("hello-from-the-worker");
    let script = js::module_tasks(&format!(
        "console.log({});\n{}",
        js::lit(&message),
        js::hit(&sink.url("/ran"))
    ));
    let id = runner.create(&json!({ "script": script })).await;
    sink.wait_for_hits("/ran", 1).await;

    let lines = runner.worker_logs(&id).await;
    let line = lines
        .iter()
        .find(|line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m.contains(&message))
        })
        .unwrap_or_else(|| panic!("no log line with {message:?}: {lines:?}"));
    assert_eq!(line["level"], "info", "{line}");
    assert!(line["time"].is_string(), "{line}");

    runner
        .wait_for_logs(
            "the console.log line tagged with the worker id",
            PATIENCE,
            |logs| {
                logs.lines()
                    .any(|line| line.contains(&message) && line.contains(&id))
            },
        )
        .await;
}
