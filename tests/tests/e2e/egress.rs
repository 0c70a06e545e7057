//! Worker egress: a worker's fetch/WebSocket can never reach the runner's own ports or cloud
//! metadata endpoints, and under `public-only` no loopback, private or link-local address —
//! checked after DNS resolution and on every redirect hop. Refusals reach JavaScript as a
//! TypeError naming the rule, and are logged.

use e2e::{js, json, tag, Runner, Sink, PATIENCE};

/// A module worker whose tasks() tries each target (`fetch` of a URL, or `ws:` URLs through
/// `WebSocket`) and logs one line per target: `<tag> <n> ok <status>` or
/// `<tag> <n> <ErrorName>: <message>`.
fn prober(tag: &str, targets: &[String]) -> String {
    let list = serde_json::to_string(targets).unwrap();
    js::module_tasks(&format!(
        "const targets = {list};\n\
         for (const [n, url] of targets.entries()) {{\n\
           try {{\n\
             if (url.startsWith('ws:')) {{ new WebSocket(url); console.log({tag}, n, 'ok', 'ws'); continue; }}\n\
             const response = await fetch(url);\n\
             await response.text();\n\
             console.log({tag}, n, 'ok', response.status);\n\
           }} catch (error) {{\n\
             console.log({tag}, n, `${{error.name}}: ${{error.message}}`);\n\
           }}\n\
         }}\n\
         console.log({tag}, 'done');",
        tag = js::lit(tag)
    ))
}

/// Creates the prober, waits for its first run, and returns its outcome line per target.
async fn probe(runner: &Runner, targets: &[String]) -> Vec<String> {
    let tag = tag("probe");
    let id = runner
        .create(&json!({ "script": prober(&tag, targets) }))
        .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let lines: Vec<String> = runner
            .worker_logs(&id)
            .await
            .iter()
            .filter_map(|line| line["message"].as_str().map(str::to_owned))
            .filter(|message| message.starts_with(&tag))
            .collect();
        if lines.iter().any(|l| l.ends_with(" done")) {
            return (0..targets.len())
                .map(|n| {
                    let prefix = format!("{tag} {n} ");
                    lines
                        .iter()
                        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
                        .unwrap_or_else(|| panic!("no outcome for target {n}: {lines:?}"))
                })
                .collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the prober never finished: {lines:?}\n{}",
            runner.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn assert_refused(outcome: &str, rule: &str) {
    assert!(
        outcome.starts_with("TypeError: ") && outcome.contains(rule),
        "expected a TypeError naming {rule:?}, got {outcome:?}"
    );
}

fn api_port(runner: &Runner) -> u16 {
    runner
        .url("/")
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the runner's port")
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_cannot_reach_the_runner_itself_by_any_name() {
    let (runner, sink) = tokio::join!(Runner::start(&[]), Sink::start());
    let port = api_port(&runner);
    let tls_port = runner
        .tls_addr()
        .and_then(|a| a.rsplit(':').next())
        .expect("the HTTPS port")
        .to_owned();
    let targets = vec![
        format!("http://127.0.0.1:{port}/workers"),
        format!("http://localhost:{port}/workers"),
        format!("http://[::1]:{port}/workers"),
        format!("https://127.0.0.1:{tls_port}/healthz"),
        // A redirect from an allowed server to the runner: refused at the second hop.
        sink.url(&format!("/redirect?http://127.0.0.1:{port}/workers")),
        format!("ws://127.0.0.1:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        sink.url("/allowed"),
    ];

    let outcomes = probe(&runner, &targets).await;

    for outcome in &outcomes[..6] {
        assert_refused(outcome, "runner's own API or HTTPS ports");
    }
    assert_refused(&outcomes[6], "cloud metadata");
    assert_eq!(
        outcomes[7], "ok 200",
        "allow-all lets other local servers be reached"
    );
    assert_eq!(sink.hits("/allowed").len(), 1);
    // The redirect's first hop was allowed (the sink saw it); the second never connected.
    assert_eq!(sink.hits("/redirect").len(), 1);
    let logs = runner.logs();
    assert!(
        logs.contains("refused") && logs.contains(&format!("127.0.0.1:{port}")),
        "refusals are logged by the runner:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn public_only_refuses_loopback_and_private_addresses() {
    let (runner, sink) = tokio::join!(Runner::start(&["--egress", "public-only"]), Sink::start());
    let sink_port = sink
        .url("/")
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let targets = vec![
        sink.url("/private"),
        format!("http://localhost:{sink_port}/private"),
        format!("http://[::1]:{sink_port}/private"),
        "http://10.0.0.1/".to_owned(),
        "http://192.168.1.1/".to_owned(),
        "http://[fe80::1]/".to_owned(),
    ];

    let outcomes = probe(&runner, &targets).await;

    for outcome in &outcomes {
        assert_refused(outcome, "public-only");
    }
    assert!(
        sink.requests().is_empty(),
        "a request got through: {:?}",
        sink.requests()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allow_list_admits_only_its_hosts() {
    let sink = Sink::start().await;
    let allowed = sink
        .url("/")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let runner = Runner::start(&["--egress", &format!("allow:{allowed}")]).await;
    let targets = vec![
        sink.url("/listed"),
        format!(
            "http://localhost:{}/other-name",
            allowed.rsplit(':').next().unwrap()
        ),
    ];

    let outcomes = probe(&runner, &targets).await;

    assert_eq!(outcomes[0], "ok 200");
    assert_refused(&outcomes[1], "allow-list");
    assert_eq!(sink.hits("/listed").len(), 1);
    assert!(sink.hits("/other-name").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_egress_policy_stops_the_runner_with_a_clear_error() {
    let output = e2e::runner_command(&e2e::runner_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-tls",
            "--egress",
            "block-everything",
        ])
        .output()
        .expect("run the runner");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("public-only"),
        "the error lists the choices: {stderr}"
    );
}
