//! Workers survive restarts: with `--state-dir`, every worker's record is sealed on disk before
//! `201`, restored before `/healthz` answers after a restart (also after `kill -9`), and a
//! tampered, truncated or foreign record is refused without stopping the others.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{js, json, tag, worker_path, Runner, Sink, Value, PATIENCE};

async fn start_on(dir: &Path) -> Runner {
    Runner::start(&["--state-dir", dir.to_str().expect("a UTF-8 path")]).await
}

/// The files of the stored worker records.
fn record_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("records").join("workers"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "rec"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn record_of(dir: &Path, id: &str) -> std::path::PathBuf {
    dir.join("records")
        .join("workers")
        .join(format!("{id}.rec"))
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_come_back_after_kill_9_and_deleted_ones_stay_gone() {
    let state = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    let first = start_on(state.path()).await;
    let secret = tag("kept-config");
    let with_config = first
        .create(&json!({
            "script": js::config_reporter(&sink.url("/config")),
            "config": { "secret": secret },
        }))
        .await;
    let scheduled = first
        .create(&json!({
            "script": js::module_tasks(&js::hit(&sink.url("/tick"))),
            "schedule": "* * * * * *",
        }))
        .await;
    let answering = first
        .create(&json!({
            "script": format!("// {}\nexport default {{ fetch() {{ return new Response('still here'); }} }};", tag("fetch")),
        }))
        .await;
    let tokens = first.tokens();
    sink.wait_for_hits("/config", 1).await;
    let log = first.kill();
    assert!(!log.contains(&secret), "the config was logged");
    for file in record_files(state.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&secret),
            "the record holds the config in clear: {}",
            file.display()
        );
    }

    let second = start_on(state.path()).await;
    for (id, token) in &tokens {
        second.remember(id, token);
    }
    let mut listed: Vec<String> = second
        .workers()
        .await
        .iter()
        .map(|w| w["id"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let mut expected = vec![with_config.clone(), scheduled.clone(), answering.clone()];
    expected.sort();
    assert_eq!(
        listed, expected,
        "every worker is back, before /healthz answered"
    );

    // The schedule fires again; the config is the same; the fetch handler answers.
    let ticks = sink.hits("/tick").len();
    sink.wait_for_hits("/tick", ticks + 2).await;
    second.run_tasks(&with_config).await.assert_status(200);
    let configs = sink.hits("/config");
    assert_eq!(configs.len(), 2, "{configs:?}");
    assert_eq!(configs[1].json(), json!({ "secret": secret }));
    let answer = second.get(&format!("/w/{answering}/")).await;
    answer.assert_status(200);
    assert_eq!(answer.body, "still here");
    // The management tokens still work, and the status says the worker was restored.
    let status = second.worker(&scheduled).await;
    assert!(status["restored"]["at"].is_string(), "{status}");
    assert!(status["restored"]["down_since"].is_string(), "{status}");

    second
        .delete(&worker_path(&answering))
        .await
        .assert_status(204);
    assert!(!record_of(state.path(), &answering).exists());
    second.kill();

    let third = start_on(state.path()).await;
    let ids: Vec<Value> = third
        .workers()
        .await
        .iter()
        .map(|w| w["id"].clone())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(
        !ids.contains(&json!(answering)),
        "a deleted worker came back"
    );
}

/// Kills the runner at arbitrary moments during bursts of creations: after each restart every
/// worker that got `201` exists, and start-up never fails.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_during_a_burst_of_creations_loses_nothing_acknowledged() {
    let state = tempfile::tempdir().unwrap();
    let mut acknowledged: Vec<String> = Vec::new();
    // A small deterministic generator: kill delays differ per round, reproducibly.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..3 {
        let runner = start_on(state.path()).await;
        let listed: Vec<String> = runner
            .workers()
            .await
            .iter()
            .map(|w| w["id"].as_str().unwrap().to_owned())
            .collect();
        for id in &acknowledged {
            assert!(
                listed.contains(id),
                "round {round}: worker {id} got 201 but did not come back"
            );
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let kill_after = Duration::from_millis(50 + (seed >> 33) % 400);
        let answered: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut burst = tokio::task::JoinSet::new();
        for n in 0..8 {
            let request = runner.http_client().post(runner.url("/")).json(&json!({
                "script": js::module_tasks(&format!("// {}", tag(&format!("burst-{round}-{n}")))),
            }));
            let answered = answered.clone();
            burst.spawn(async move {
                let Ok(response) = request.send().await else {
                    return;
                };
                if response.status() != 201 {
                    return;
                }
                if let Ok(body) = response.json::<Value>().await {
                    if let Some(id) = body["id"].as_str() {
                        answered.lock().unwrap().push(id.to_owned());
                    }
                }
            });
        }
        tokio::time::sleep(kill_after).await;
        runner.kill();
        while burst.join_next().await.is_some() {}
        // Every 201 that reached the client was acknowledged: it must survive. Requests cut
        // off by the kill may or may not have created a worker.
        acknowledged.extend(answered.lock().unwrap().drain(..));
    }
    let runner = start_on(state.path()).await;
    let listed: Vec<Value> = runner
        .workers()
        .await
        .iter()
        .map(|w| w["id"].clone())
        .collect();
    for id in &acknowledged {
        assert!(
            listed.contains(&json!(id)),
            "{id} was acknowledged but is gone"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_truncated_and_foreign_records_are_refused_and_the_rest_load() {
    let state = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let runner = start_on(state.path()).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let script = js::module_tasks(&format!("// {}", tag(&format!("kept-{n}"))));
        ids.push(runner.create(&json!({ "script": script })).await);
    }
    runner.kill();
    let foreign_runner = start_on(other.path()).await;
    let foreign = foreign_runner
        .create(&json!({ "script": js::module_tasks("// foreign") }))
        .await;
    foreign_runner.kill();

    // Flip one byte in the middle of a record, cut another short, remove the middle of a
    // third (so it names the right worker but its body is gone), and bring in a record
    // sealed by another state directory.
    let flipped = record_of(state.path(), &ids[0]);
    let mut bytes = std::fs::read(&flipped).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&flipped, bytes).unwrap();
    let truncated = record_of(state.path(), &ids[1]);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 7]).unwrap();
    std::fs::copy(
        record_of(other.path(), &foreign),
        record_of(state.path(), &foreign),
    )
    .unwrap();

    let restarted = start_on(state.path()).await;
    let listed: Vec<Value> = restarted
        .workers()
        .await
        .iter()
        .map(|w| w["id"].clone())
        .collect();
    assert_eq!(
        listed.len(),
        2,
        "only the untouched records load: {listed:?}"
    );
    assert!(listed.contains(&json!(ids[2])) && listed.contains(&json!(ids[3])));
    let log = restarted.logs();
    let refusals = log
        .lines()
        .filter(|l| l.contains("record was refused"))
        .collect::<Vec<_>>();
    assert_eq!(refusals.len(), 3, "each refusal is reported:\n{log}");
    assert!(log.contains("refused=3"), "{log}");
    // Refused records are left on disk for inspection, not deleted.
    assert!(flipped.exists() && truncated.exists());
}

/// A genuine record whose worker no longer starts (here: its module's top-level await fails
/// once the server it needs is gone) is kept and listed as failed, and can be deleted.
#[tokio::test(flavor = "multi_thread")]
async fn a_record_that_no_longer_evaluates_is_kept_as_failed() {
    let state = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    let runner = start_on(state.path()).await;
    let script = format!(
        "// {}\nawait (await fetch({})).text();\nexport default {{ tasks() {{}} }};",
        tag("needs-the-sink"),
        js::lit(&sink.url("/needed"))
    );
    let id = runner.create(&json!({ "script": script })).await;
    let token = runner.token(&id).unwrap();
    runner.kill();
    drop(sink);

    let restarted = start_on(state.path()).await;
    restarted.remember(&id, &token);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let status = loop {
        let status = restarted.worker(&id).await;
        if status["state"] == "failed" || tokio::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status["state"], "failed", "{status}");
    assert!(
        status["reason"]
            .as_str()
            .unwrap_or("")
            .contains("not restored"),
        "{status}"
    );
    restarted
        .run_tasks(&id)
        .await
        .expect_error(503, &["brought back"]);
    restarted.delete(&worker_path(&id)).await.assert_status(204);
    assert!(!record_of(state.path(), &id).exists());
}

/// A state directory the runner cannot open (here: its dev key replaced, as if sealed by
/// another image) stops a runner told to keep state — unless the directory is optional (the
/// appliance's state disk), where it runs stateless, says so, and leaves the files alone.
#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_state_dir_is_fatal_unless_optional() {
    let state = tempfile::tempdir().unwrap();
    let runner = start_on(state.path()).await;
    let id = runner
        .create(&json!({ "script": js::module_tasks(&format!("// {}", tag("sealed"))) }))
        .await;
    runner.kill();
    std::fs::write(state.path().join("dev-root.key"), [7u8; 32]).unwrap();
    let record = std::fs::read(record_of(state.path(), &id)).unwrap();

    let output = e2e::runner_command(&e2e::runner_bin())
        .args(["--listen", "127.0.0.1:0", "--no-tls", "--state-dir"])
        .arg(state.path())
        .output()
        .expect("run the runner");
    assert!(
        !output.status.success(),
        "started on a state dir it cannot read"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("state directory"), "{stderr}");

    let optional = Runner::start(&[
        "--state-dir",
        state.path().to_str().unwrap(),
        "--state-dir-optional",
    ])
    .await;
    assert!(optional.workers().await.is_empty());
    assert!(optional.logs().contains("STATELESS"), "{}", optional.logs());
    drop(optional);
    assert_eq!(
        std::fs::read(record_of(state.path(), &id)).unwrap(),
        record,
        "the record was changed"
    );
}
