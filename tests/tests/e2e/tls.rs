//! Attested TLS: the runner serves HTTPS under a certificate carrying its evidence, and
//! `runner verify` sends a request only after that evidence checks out.

use std::process::Output;

use e2e::{js, json, start, tag, Runner, Sink};

fn verify(args: &[&str]) -> Output {
    std::process::Command::new(e2e::runner_bin())
        .arg("verify")
        .args(args)
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .expect("run `runner verify`")
}

/// A worker whose fetch handler records each request at the sink and answers with a marker.
async fn fetch_worker(runner: &Runner, sink: &Sink, marker: &str) -> String {
    let script = format!(
        "export default {{ async fetch(request) {{\n\
           {hit}\n\
           return new Response({marker} + ' ' + new URL(request.url).pathname);\n\
         }} }}",
        hit = js::hit(&sink.url("/served")),
        marker = js::lit(marker)
    );
    runner.create(&json!({ "script": script })).await
}

fn https_url(runner: &Runner, path: &str) -> String {
    format!(
        "https://{}{path}",
        runner.tls_addr().expect("the runner serves HTTPS")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_talks_to_a_dev_runner_only_when_insecure_dev_is_allowed() {
    let (runner, sink) = start(&[]).await;
    let marker = tag("attested");
    let id = fetch_worker(&runner, &sink, &marker).await;
    let url = https_url(&runner, &format!("/w/{id}/hello"));

    let refused = verify(&[&url]);
    assert!(
        !refused.status.success(),
        "none evidence was accepted by default"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("insecure"),
        "the refusal says why: {stderr}"
    );
    // Refused before any request was sent: the worker never saw one.
    assert!(
        sink.hits("/served").is_empty(),
        "a request reached the worker anyway"
    );

    let allowed = verify(&["--allow-insecure-dev", &url]);
    assert!(
        allowed.status.success(),
        "verify failed: {}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&allowed.stdout),
        format!("{marker} /hello")
    );
    assert!(String::from_utf8_lossy(&allowed.stderr).contains("INSECURE"));
    sink.wait_for_hits("/served", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_creation_api_is_served_over_attested_tls_too() {
    let (runner, _sink) = start(&[]).await;
    let url = https_url(&runner, "/healthz");

    let answer = verify(&["--allow-insecure-dev", &url]);

    assert!(
        answer.status.success(),
        "{}",
        String::from_utf8_lossy(&answer.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&answer.stdout), "ok");
}

#[test]
fn verify_refuses_plain_http_urls() {
    let answer = verify(&["--allow-insecure-dev", "http://127.0.0.1:1/"]);
    assert!(!answer.status.success());
    assert!(String::from_utf8_lossy(&answer.stderr).contains("https"));
}

fn deploy(args: &[&str]) -> Output {
    std::process::Command::new(e2e::runner_bin())
        .arg("deploy")
        .args(args)
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .expect("run `runner deploy`")
}

/// `runner deploy` sends a script and its config only to a runner whose evidence checks out,
/// and `--creation-tls-only` leaves it the only way in.
#[tokio::test(flavor = "multi_thread")]
async fn deploy_creates_only_on_a_verified_runner_and_tls_only_refuses_plain_http() {
    let (runner, sink) = start(&["--creation-tls-only"]).await;
    let secret = tag("deployed-secret");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("w.js");
    std::fs::write(&script, js::config_reporter(&sink.url("/config"))).unwrap();
    let config = format!(r#"{{"secret":"{secret}"}}"#);
    let url = format!("https://{}", runner.tls_addr().expect("HTTPS"));
    let args = [
        "--url",
        &url,
        "--script",
        script.to_str().unwrap(),
        "--config",
        &config,
        "--schedule",
        "0 0 1 1 *",
    ];

    // Plain HTTP creation is off: the config would cross the network in the clear.
    let plain = runner
        .post_json(
            "/",
            &json!({ "script": "export default {}", "config": {"a": 1} }),
        )
        .await;
    plain.expect_error(403, &["tls", "https"]);

    // `none` evidence is refused before anything is sent.
    let refused = deploy(&args);
    assert!(
        !refused.status.success(),
        "deployed to an unattested runner"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("insecure"));
    assert!(
        runner.workers().await.is_empty(),
        "a worker was created anyway"
    );

    let mut insecure_ok = args.to_vec();
    insecure_ok.push("--allow-insecure-dev");
    let deployed = deploy(&insecure_ok);
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    let printed: e2e::Value = serde_json::from_slice(&deployed.stdout).expect("JSON on stdout");
    let id = printed["id"].as_str().expect("the worker id");
    let token = printed["token"].as_str().expect("the management token");
    assert_eq!(
        sink.first_json("/config").await,
        json!({ "secret": secret }),
        "the worker runs with the config sent over attested TLS"
    );
    // The printed token manages the worker.
    runner
        .request_as("GET", &format!("/workers/{id}/logs"), Some(token))
        .await
        .assert_status(200);
    assert_eq!(runner.workers().await.len(), 1);
    assert!(!runner.logs().contains(&secret));
}

/// Management over the verified connection: `runner verify -H 'Authorization: Bearer …'` reads
/// a worker's status and logs and deletes it; without the header the API refuses.
#[tokio::test(flavor = "multi_thread")]
async fn verify_sends_headers_so_a_worker_is_managed_over_attested_tls() {
    let (runner, sink) = start(&[]).await;
    let id = fetch_worker(&runner, &sink, &tag("managed")).await;
    let token = runner.token(&id).expect("the creation's token");
    let bearer = format!("Authorization: Bearer {token}");
    let status_url = https_url(&runner, &format!("/workers/{id}"));

    let status = |args: &[&str]| -> e2e::Value {
        let answer = verify(args);
        assert!(
            answer.status.success(),
            "{}",
            String::from_utf8_lossy(&answer.stderr)
        );
        serde_json::from_slice(&answer.stdout).expect("JSON status")
    };
    let public = status(&["--allow-insecure-dev", &status_url]);
    let full = status(&["--allow-insecure-dev", "-H", &bearer, &status_url]);
    assert_eq!(full["id"], id.as_str());
    let fields = |v: &e2e::Value| v.as_object().map_or(0, |o| o.len());
    assert!(
        fields(&full) > fields(&public),
        "the token shows the full status: {full} vs {public}"
    );
    let logs_url = https_url(&runner, &format!("/workers/{id}/logs"));
    let refused = verify(&["--allow-insecure-dev", &logs_url]);
    assert!(!refused.status.success(), "logs without the token");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("HTTP 401"));

    let logs = verify(&["--allow-insecure-dev", "-H", &bearer, &logs_url]);
    assert!(
        logs.status.success(),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    let logs: e2e::Value = serde_json::from_slice(&logs.stdout).expect("JSON logs");
    assert!(logs["lines"].is_array(), "{logs}");

    let deleted = verify(&[
        "--allow-insecure-dev",
        "-X",
        "DELETE",
        "--header",
        &bearer,
        &status_url,
    ]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert!(
        runner
            .workers()
            .await
            .iter()
            .all(|w| w["id"] != id.as_str()),
        "the worker is gone"
    );
    // The token never reaches the runner's log.
    assert!(!runner.logs().contains(&token));
}
