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
