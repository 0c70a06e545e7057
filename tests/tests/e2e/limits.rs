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

/// The API log lines of worker `id` once one starts with `prefix`.
async fn api_line(runner: &Runner, id: &str, prefix: &str) -> String {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let logs = runner
            .get(&format!("/workers/{id}/logs"))
            .await
            .assert_status(200)
            .json();
        let found = logs["lines"].as_array().and_then(|lines| {
            lines
                .iter()
                .filter_map(|l| l["message"].as_str())
                .find(|m| m.starts_with(prefix))
                .map(str::to_owned)
        });
        if let Some(line) = found {
            return line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no line {prefix:?} in the API log: {logs}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A worker printing a 1 MiB line: its API log keeps the first 8 KiB and says how much was cut.
/// At the image's setting (`RUNNER_WORKER_LOG_LEVEL=debug`, default `RUNNER_LOG`) the runner's
/// own log (the appliance's serial console) carries no worker line at all; at the default
/// level it carries the line, cut the same way.
#[tokio::test(flavor = "multi_thread")]
async fn console_lines_are_capped_and_kept_off_the_runner_log_at_the_images_level() {
    const SCRIPT: &str = "console.log('HUGE-' + 'x'.repeat(1 << 20));\n\
                          console.error('LOUD-' + 'an error line');\n\
                          export default {};\n";
    let image = Runner::start_with_env(&[], &[("RUNNER_WORKER_LOG_LEVEL", "debug")]).await;
    let dev = Runner::start(&[]).await;
    for runner in [&image, &dev] {
        let id = runner.create(&json!({ "script": SCRIPT })).await;
        let huge = api_line(runner, &id, "HUGE-").await;
        assert!(huge.len() <= 8 * 1024 + 64, "{} bytes kept", huge.len());
        assert!(
            huge.ends_with(&format!("… [{} more bytes cut]", 5 + (1 << 20) - 8 * 1024)),
            "{}",
            &huge[huge.len() - 40..]
        );
        api_line(runner, &id, "LOUD-").await;
    }

    let quiet = image.logs();
    assert!(
        !quiet.contains("HUGE-") && !quiet.contains("LOUD-"),
        "worker output reached the runner's log at the image's level:\n{}",
        &quiet[..quiet.len().min(4000)]
    );
    let loud = dev.logs();
    let line = loud
        .lines()
        .find(|l| l.contains("HUGE-"))
        .unwrap_or_else(|| panic!("the default level logs worker lines:\n{loud}"));
    assert!(
        line.len() < 9 * 1024,
        "{} bytes in one runner log line",
        line.len()
    );
    assert!(line.contains("more bytes cut"));
    // console.error does not become an ERROR of the runner: the configured level (info) holds.
    let error_line = loud.lines().find(|l| l.contains("LOUD-")).unwrap();
    assert!(error_line.contains("INFO"), "{error_line}");
}
