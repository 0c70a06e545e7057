//! Host-name routing cannot capture the API (issue 21): only names under the operator's
//! `--worker-domain` can be claimed, and every other `Host` reaches the API whatever the path.

use e2e::{json, start, tag, Runner};

/// A worker that records whatever reaches it and answers like the creation API would.
fn capturing_script() -> String {
    format!(
        "// {}\nexport default {{ async fetch(r) {{ console.log('CAPTURED', await r.text()); \
         return Response.json({{ id: 'x', token: 'swt_x' }}, {{ status: 201 }}); }} }}",
        tag("capture")
    )
}

/// `POST /` with `Host: host` carrying a victim's secret config; returns (status, body).
async fn create_as_victim(runner: &Runner, host: &str) -> (u16, String) {
    let response = runner
        .http_client()
        .post(runner.url("/"))
        .header("host", host)
        .json(&json!({ "script": format!("// {}\nexport default {{}}", tag("victim")), "config": { "s": "victim-secret" } }))
        .send()
        .await
        .expect("the victim's creation request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_worker_domain_no_worker_can_claim_a_host_name() {
    let (runner, _sink) = start(&[]).await;
    // The attack from the issue, verbatim: claim 127.0.0.1, then wait for a victim's creation.
    let claim = runner
        .post_json(
            "/",
            &json!({ "hostname": "127.0.0.1", "script": capturing_script() }),
        )
        .await;
    claim.expect_error(400, &["--worker-domain"]);
    for name in ["app.example.com", "localhost"] {
        runner
            .post_json(
                "/",
                &json!({ "hostname": name, "script": capturing_script() }),
            )
            .await
            .expect_error(400, &["--worker-domain"]);
    }
    let (status, body) = create_as_victim(&runner, "127.0.0.1").await;
    assert_eq!(status, 201, "{body}");
    assert!(
        !body.contains("swt_x"),
        "the victim talked to a worker: {body}"
    );
    assert!(!runner.logs().contains("victim-secret"));
}

#[tokio::test(flavor = "multi_thread")]
async fn only_names_under_the_worker_domain_reach_workers_and_never_the_apis_own() {
    let (runner, _sink) = start(&[
        "--worker-domain",
        "workers.test",
        "--api-host",
        "api.workers.test",
    ])
    .await;
    for (name, why) in [
        ("127.0.0.1", "IP address"),
        ("[::1]", "IP address"),
        ("localhost", "own names"),
        ("api.workers.test", "own names"),
        ("workers.test", "not under"),
        ("evil.example.com", "not under"),
    ] {
        runner
            .post_json(
                "/",
                &json!({ "hostname": name, "script": capturing_script() }),
            )
            .await
            .expect_error(400, &["hostname", why]);
    }
    let app = format!("{}.workers.test", tag("app").to_lowercase());
    runner
        .create(&json!({ "hostname": app, "script": capturing_script() }))
        .await;

    // The API's names and addresses reach the API, with the worker holding a name next door.
    for host in [
        "127.0.0.1",
        "api.workers.test",
        "workers.test",
        "localhost:8080",
    ] {
        let (status, body) = create_as_victim(&runner, host).await;
        assert_eq!(status, 201, "{host}: {body}");
        assert!(
            !body.contains("swt_x"),
            "{host}: the victim talked to a worker: {body}"
        );
    }
    // The worker's own name reaches the worker, every path (it answered the creation-like POST).
    let (status, body) = create_as_victim(&runner, &app).await;
    assert_eq!((status, body.contains("swt_x")), (201, true), "{body}");
    // A free name under the domain is nobody's: 404, not the API.
    let (status, body) = create_as_victim(&runner, "nobody.workers.test").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no worker answers"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_domain_that_is_an_address_or_local_name_is_refused_at_start() {
    for domain in ["127.0.0.1", "localhost"] {
        let output = std::process::Command::new(e2e::runner_bin())
            .args([
                "--worker-domain",
                domain,
                "--listen",
                "127.0.0.1:0",
                "--no-tls",
            ])
            .output()
            .expect("run the runner");
        assert!(!output.status.success(), "{domain}: the runner started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--worker-domain"), "{domain}: {stderr}");
    }
}
