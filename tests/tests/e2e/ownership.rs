//! Ownership: creating a worker returns a management token, shown once; only that token (or
//! the runner's admin token) may delete the worker, read its logs or run it. Listing and status
//! stay public but show little.

use e2e::{js, json, start, tag, worker_path, Runner, Value};

const ADMIN_TOKEN: &str = "admin-token-for-the-e2e-tests-0123456789";

/// `method path` without a token, with another worker's, and with the worker's own.
async fn assert_guarded(
    runner: &Runner,
    method: &str,
    path: &str,
    own: &str,
    other: &str,
    ok: u16,
) {
    let reply = runner.request_as(method, path, None).await;
    reply.expect_error(401, &["token"]);
    assert!(
        reply
            .header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer")),
        "a 401 carries a Bearer challenge: {reply:?}",
        reply = reply.headers
    );
    runner
        .request_as(method, path, Some(other))
        .await
        .expect_error(403, &["token"]);
    runner
        .request_as(method, path, Some(&format!("{own}x")))
        .await
        .expect_error(403, &[]);
    runner
        .request_as(method, path, Some(own))
        .await
        .assert_status(ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_creators_token_manages_a_worker() {
    let (runner, sink) = start(&[]).await;
    let script = |name: &str| js::module_tasks(&js::hit(&sink.url(&format!("/{name}"))));
    let reply = runner
        .post_json("/", &json!({ "script": script("a") }))
        .await;
    let id = reply.created_id();
    let token = reply.json()["token"].as_str().expect("a token").to_owned();
    assert!(token.starts_with("swt_") && token.len() > 40, "{token}");
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let other_id = runner.create(&json!({ "script": script("b") })).await;
    let other = runner.token(&other_id).expect("the other worker's token");
    assert_ne!(token, other);
    let path = worker_path(&id);
    // Creation runs `tasks()` once; a second run while that one is going would be refused
    // (409), which is not what this test is about.
    runner.wait_until_idle(&id, 1).await;

    assert_guarded(&runner, "GET", &format!("{path}/logs"), &token, &other, 200).await;
    assert_guarded(
        &runner,
        "POST",
        &format!("{path}/tasks"),
        &token,
        &other,
        200,
    )
    .await;
    assert_guarded(&runner, "DELETE", &path, &token, &other, 204).await;

    runner.get(&path).await.expect_error(404, &[]);
    // The other worker was never touched.
    runner.worker(&other_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_details_only_to_the_owner_and_tokens_are_never_shown_again() {
    let (runner, sink) = start(&["--worker-domain", "example"]).await;
    let id = runner
        .create(&json!({
            "script": format!(
                "export default {{ async tasks() {{ {} }}, fetch() {{ return new Response('ok'); }} }};",
                js::hit(&sink.url("/ran"))
            ),
            "schedule": "0 0 1 1 *",
            "hostname": format!("{}.example", tag("owned")),
        }))
        .await;
    let token = runner.token(&id).unwrap();
    runner.wait_until_idle(&id, 1).await;
    let path = worker_path(&id);

    let public = runner
        .request_as("GET", &path, None)
        .await
        .assert_status(200)
        .json();
    let mut fields: Vec<&str> = public
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        ["created", "id", "last_run", "schedule", "state", "type"],
        "{public}"
    );
    assert_eq!(public["state"], "ready");

    let full = runner
        .request_as("GET", &path, Some(&token))
        .await
        .assert_status(200)
        .json();
    assert!(full["code_hash"].is_string() && full["runs"] == 1, "{full}");
    runner
        .request_as("GET", &path, Some("swt_not-this-workers"))
        .await
        .expect_error(403, &[]);

    for entry in runner.workers().await {
        assert!(
            entry.get("code_hash").is_none() && entry.get("runs").is_none(),
            "{entry}"
        );
    }
    for listing in [
        runner.get("/workers").await.body,
        runner.request_as("GET", &path, Some(&token)).await.body,
        runner.logs(),
    ] {
        assert!(
            !listing.contains(&token),
            "the token is shown again: {listing}"
        );
        assert!(!listing.contains(&token["swt_".len()..]));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_token_manages_every_worker() {
    let (runner, sink) = tokio::join!(
        Runner::start_with_env(
            &[],
            &[
                ("RUNNER_ADMIN_TOKEN", ADMIN_TOKEN),
                ("RUST_LOG", "runner=trace,info")
            ]
        ),
        e2e::Sink::start()
    );
    let id = runner
        .create(&json!({ "script": js::module_tasks(&js::hit(&sink.url("/ran"))) }))
        .await;
    let path = worker_path(&id);
    runner.wait_until_idle(&id, 1).await;

    runner
        .request_as("GET", &format!("{path}/logs"), Some(ADMIN_TOKEN))
        .await
        .assert_status(200);
    runner
        .request_as("POST", &format!("{path}/tasks"), Some(ADMIN_TOKEN))
        .await
        .assert_status(200);
    let full: Value = runner
        .request_as("GET", &path, Some(ADMIN_TOKEN))
        .await
        .assert_status(200)
        .json();
    assert!(full["runs"].as_u64().unwrap_or(0) >= 1, "{full}");
    runner
        .request_as("DELETE", &path, Some(ADMIN_TOKEN))
        .await
        .assert_status(204);

    // An unknown id: 401 without a token, 403 with a wrong one (as for a known id), 404 only
    // for the admin.
    let unknown = worker_path("00000000-0000-4000-8000-000000000000");
    runner
        .request_as("DELETE", &unknown, None)
        .await
        .expect_error(401, &[]);
    runner
        .request_as("DELETE", &unknown, Some("swt_guess"))
        .await
        .expect_error(403, &[]);
    runner
        .request_as("DELETE", &unknown, Some(ADMIN_TOKEN))
        .await
        .expect_error(404, &[]);
    assert!(
        !runner.logs().contains(ADMIN_TOKEN),
        "the admin token was logged"
    );
}
