//! `rnr.getConfig()`, and the promise that config values never leave the worker.

use e2e::{js, json, start, tag, worker_path, Runner, Sink, PATIENCE};

#[tokio::test(flavor = "multi_thread")]
async fn get_config_resolves_to_the_config() {
    let (runner, sink) = start(&[]).await;
    let config = json!({
        "string": "text",
        "number": 1.5,
        "bool": true,
        "null": null,
        "list": [1, "two", { "three": 3 }],
        "nested": { "deeper": { "key": "value" } },
    });
    let script = js::module_tasks(&format!(
        "const pending = rnr.getConfig();\n{}",
        js::post_json(
            &sink.url("/report"),
            "{ isPromise: pending instanceof Promise, config: await pending }"
        )
    ));

    runner
        .create(&json!({ "script": script, "config": config }))
        .await;

    let report = sink.first_json("/report").await;
    assert_eq!(report["isPromise"], true, "{report}");
    assert_eq!(report["config"], config);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_config_returns_a_fresh_copy_each_call() {
    let (runner, sink) = start(&[]).await;
    let config = json!({ "a": 1, "s": "keep", "nested": { "list": [1, 2] } });
    let script = js::module_tasks(&format!(
        "const first = await rnr.getConfig();\n\
         first.a = 999;\n\
         delete first.s;\n\
         first.nested.list.push(3);\n\
         first.added = true;\n\
         const second = await rnr.getConfig();\n\
         {}",
        js::post_json(
            &sink.url("/report"),
            "{ first, second, same: first === second }"
        )
    ));

    runner
        .create(&json!({ "script": script, "config": config }))
        .await;

    let report = sink.first_json("/report").await;
    assert_eq!(report["second"], config, "mutations leaked: {report}");
    assert_eq!(report["first"]["a"], 999, "{report}");
    assert_eq!(report["same"], false, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn get_config_without_config_is_an_empty_object() {
    let (runner, sink) = start(&[]).await;

    runner
        .create(&json!({ "script": js::config_reporter(&sink.url("/config")) }))
        .await;

    assert_eq!(sink.first_json("/config").await, json!({}));
}

/// Asserts that `secret` appears nowhere in the runner's API answers about worker `id`.
async fn assert_secret_not_served(runner: &Runner, id: &str, secret: &str) {
    let path = worker_path(id);
    for path in ["/workers".to_owned(), path.clone(), format!("{path}/logs")] {
        let reply = runner.get(&path).await;
        reply.assert_status(200);
        assert!(
            !reply.body.contains(secret),
            "GET {path} reveals the config secret: {reply}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn config_secret_is_never_listed_or_logged() {
    // Log as much as the runner's own code can, so that a stray `debug!(?request)` shows up.
    let (runner, sink) = tokio::join!(
        Runner::start_with_env(&[], &[("RUST_LOG", "runner=trace,info")]),
        Sink::start()
    );
    let secret = tag("sEcReT-do-not-log");
    let config = json!({ "apiKey": secret, "public": "fine" });
    let script = js::module_tasks(&format!(
        "const config = await rnr.getConfig();\n\
         console.log('worker has keys', Object.keys(config).join(','));\n\
         {}",
        js::post_json(&sink.url("/config"), "config")
    ));

    let id = runner
        .create(&json!({ "script": script, "config": config, "schedule": "*/5 * * * *" }))
        .await;

    // The worker did receive the secret, so its absence below means something.
    assert_eq!(sink.first_json("/config").await["apiKey"], secret);
    runner.wait_until_idle(&id, 1).await;
    runner
        .wait_for_logs("the worker's console.log line", PATIENCE, |logs| {
            logs.contains("worker has keys")
        })
        .await;
    assert_secret_not_served(&runner, &id, &secret).await;
    assert!(
        !runner.logs().contains(&secret),
        "the runner's log reveals the config secret:\n{}",
        runner.logs()
    );
}
