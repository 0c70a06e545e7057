//! Per-worker limits: a runaway or memory-hungry worker is terminated, with the reason recorded,
//! while the runner and the other workers carry on.

use e2e::{js, json, start, Runner, Sink, Value};

/// Creates a healthy worker that hits `/healthy` on every run and waits for its first run.
async fn healthy_worker(runner: &Runner, sink: &Sink) -> String {
    let id = runner
        .create(&json!({ "script": js::module_tasks(&js::hit(&sink.url("/healthy"))) }))
        .await;
    sink.wait_for_hits("/healthy", 1).await;
    runner.wait_until_idle(&id, 1).await;
    id
}

/// Asserts that the healthy worker runs on demand (its `n`th run) and the runner is healthy.
async fn assert_still_working(runner: &Runner, sink: &Sink, id: &str, n: usize) {
    runner.run_tasks(id).await.assert_status(200);
    sink.wait_for_hits("/healthy", n).await;
    runner.get("/healthz").await.assert_status(200);
}

/// Waits until worker `id` is terminated and asserts that its reason mentions one of `words`.
async fn assert_terminated(runner: &Runner, id: &str, words: &[&str]) -> Value {
    let worker = runner
        .wait_for_worker(id, "terminated", |w| w["state"] == "terminated")
        .await;
    let reason = worker["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("a terminated worker has a \"reason\": {worker}"));
    let explanation = format!("{reason} {}", worker["last_error"]).to_lowercase();
    assert!(
        words.iter().any(|word| explanation.contains(word)),
        "the reason should mention one of {words:?}: {worker}"
    );
    // A terminated worker runs nothing any more.
    let reply = runner.run_tasks(id).await;
    assert!(
        !reply.status.is_success(),
        "a terminated worker still runs: {reply}"
    );
    worker
}

#[tokio::test(flavor = "multi_thread")]
async fn runaway_worker_is_terminated_while_others_keep_working() {
    let (runner, sink) = start(&["--wall-limit-ms", "2000"]).await;
    let healthy = healthy_worker(&runner, &sink).await;
    let script = js::module_tasks(&format!(
        "{}\nwhile (true) {{}}",
        js::hit(&sink.url("/spinning"))
    ));

    let runaway = runner.create(&json!({ "script": script })).await;

    sink.wait_for_hits("/spinning", 1).await;
    // While the runaway spins, the healthy worker still answers.
    assert_still_working(&runner, &sink, &healthy, 2).await;
    assert_terminated(&runner, &runaway, &["time", "wall", "deadline"]).await;
    assert_still_working(&runner, &sink, &healthy, 3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn heap_bomb_is_terminated_while_others_keep_working() {
    let (runner, sink) = start(&["--heap-limit-mb", "64"]).await;
    let healthy = healthy_worker(&runner, &sink).await;
    // Each array holds 1 Mi doubles (8 MiB); the global keeps them all reachable.
    let script = js::module_tasks(&format!(
        "{}\n\
         globalThis.hog = [];\n\
         for (;;) {{ globalThis.hog.push(new Array(1 << 20).fill(Math.random())); }}",
        js::hit(&sink.url("/bomb"))
    ));

    let bomb = runner.create(&json!({ "script": script })).await;

    sink.wait_for_hits("/bomb", 1).await;
    assert_terminated(&runner, &bomb, &["heap", "memory"]).await;
    assert_still_working(&runner, &sink, &healthy, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cpu_hog_is_terminated_by_the_cpu_limit_before_the_wall_limit() {
    let (runner, sink) = start(&["--cpu-limit-ms", "1000", "--wall-limit-ms", "600000"]).await;
    let healthy = healthy_worker(&runner, &sink).await;
    let script = js::module_tasks(&format!(
        "{}\nwhile (true) {{}}",
        js::hit(&sink.url("/hog"))
    ));

    let hog = runner.create(&json!({ "script": script })).await;

    sink.wait_for_hits("/hog", 1).await;
    let worker = assert_terminated(&runner, &hog, &["cpu"]).await;
    assert!(
        !worker["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("wall"),
        "the CPU limit, not the wall limit, should stop it: {worker}"
    );
    assert_still_working(&runner, &sink, &healthy, 2).await;
}
