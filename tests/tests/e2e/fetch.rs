//! The HTTP trigger: requests to `/w/{id}/...` reach the worker's fetch handler (module
//! `fetch(request, env, ctx)` or classic `respondWith`), with bodies streaming both ways.

use e2e::{js, json, start, tag, Runner, Value, PATIENCE};

/// Creates a worker from `script` (module unless `kind` says otherwise) and returns its id.
async fn worker(runner: &Runner, script: &str, kind: &str) -> String {
    runner
        .create(&json!({ "script": script, "type": kind, "config": { "greeting": "hi" } }))
        .await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .expect("an HTTP client")
}

#[tokio::test(flavor = "multi_thread")]
async fn module_fetch_sees_method_path_query_headers_body_and_env() {
    let (runner, _sink) = start(&[]).await;
    let marker = tag("fetch");
    let script = format!(
        "export default {{ async fetch(request, env, ctx) {{\n\
           const url = new URL(request.url);\n\
           const report = {{ marker: {marker}, method: request.method, path: url.pathname,\n\
             search: url.search, header: request.headers.get('x-test'), body: await request.text(),\n\
             config: await env.getConfig(), ctx: typeof ctx.waitUntil }};\n\
           return new Response(JSON.stringify(report), {{ status: 202, headers: {{ 'x-worker': 'yes' }} }});\n\
         }} }}",
        marker = js::lit(&marker)
    );
    let id = worker(&runner, &script, "module").await;

    let response = client()
        .post(runner.url(&format!("/w/{id}/a/b?x=1")))
        .header("x-test", "42")
        .body("payload")
        .send()
        .await
        .expect("request to the worker");

    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["x-worker"], "yes");
    let report: Value = response.json().await.expect("a JSON body");
    assert_eq!(report["marker"], marker.as_str());
    assert_eq!(report["method"], "POST");
    assert_eq!(report["path"], "/a/b", "the /w/{{id}} prefix is removed");
    assert_eq!(report["search"], "?x=1");
    assert_eq!(report["header"], "42");
    assert_eq!(report["body"], "payload");
    assert_eq!(report["config"], json!({ "greeting": "hi" }));
    assert_eq!(report["ctx"], "function");
}

#[tokio::test(flavor = "multi_thread")]
async fn classic_fetch_listener_responds_with() {
    let (runner, _sink) = start(&[]).await;
    let marker = tag("classic-fetch");
    let script = format!(
        "addEventListener('fetch', (event) => event.respondWith((async () =>\n\
           new Response({marker} + ' ' + event.request.method + ' ' + new URL(event.request.url).pathname))()));",
        marker = js::lit(&marker)
    );
    let id = worker(&runner, &script, "classic").await;

    let response = client()
        .put(runner.url(&format!("/w/{id}/thing")))
        .send()
        .await
        .expect("request to the worker");

    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        format!("{marker} PUT /thing")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_body_streams_through_the_worker_unchanged() {
    let (runner, _sink) = start(&[]).await;
    let script = format!(
        "// {}\nexport default {{ fetch(request) {{ return new Response(request.body); }} }}",
        tag("echo")
    );
    let id = worker(&runner, &script, "module").await;
    // 3 MiB of varied bytes: many chunks in both directions.
    let body: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();

    let response = client()
        .post(runner.url(&format!("/w/{id}/")))
        .body(body.clone())
        .send()
        .await
        .expect("request to the worker");

    assert_eq!(response.status(), 200);
    let echoed = response.bytes().await.expect("the echoed body");
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "the echoed bytes differ");
}

/// The response streams: its first chunk reaches the client while the worker is still waiting
/// to write the rest — which only a second, concurrent request to the same worker releases. A
/// runner that buffered responses, or handled one request at a time, would never finish this.
#[tokio::test(flavor = "multi_thread")]
async fn responses_stream_and_requests_interleave_in_one_worker() {
    let (runner, _sink) = start(&[]).await;
    let script = format!(
        "// {}\n\
         let release;\n\
         const released = new Promise((resolve) => {{ release = resolve; }});\n\
         export default {{ fetch(request) {{\n\
           if (new URL(request.url).pathname === '/release') {{ release(); return new Response('released'); }}\n\
           const encoder = new TextEncoder();\n\
           const body = new ReadableStream({{ async start(controller) {{\n\
             controller.enqueue(encoder.encode('first;'));\n\
             await released;\n\
             controller.enqueue(encoder.encode('second'));\n\
             controller.close();\n\
           }} }});\n\
           return new Response(body);\n\
         }} }}",
        tag("stream")
    );
    let id = worker(&runner, &script, "module").await;
    let client = client();

    let mut streaming = client
        .get(runner.url(&format!("/w/{id}/stream")))
        .send()
        .await
        .expect("the streaming request");
    let first = streaming
        .chunk()
        .await
        .expect("a first chunk")
        .expect("the body is not over");
    assert_eq!(&first[..], b"first;");

    let release = client
        .get(runner.url(&format!("/w/{id}/release")))
        .send()
        .await
        .expect("the release request");
    assert_eq!(release.text().await.unwrap(), "released");

    let mut rest = Vec::new();
    while let Some(chunk) = streaming.chunk().await.expect("the rest of the body") {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"second");
}

/// A client that leaves in the middle of a streamed response cancels the stream: the body's
/// source hears of it (its `cancel()` runs), as in Cloudflare Workers and Deno, and stops
/// producing; the worker stays and answers the next request.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_cancels_the_response_stream() {
    let (runner, sink) = start(&[]).await;
    let script = format!(
        "// {}\n\
         export default {{ fetch(request) {{\n\
           if (new URL(request.url).pathname === '/ok') return new Response('ok');\n\
           const chunk = new TextEncoder().encode('x'.repeat(16384));\n\
           return new Response(new ReadableStream({{\n\
             pull(controller) {{ controller.enqueue(chunk); }},\n\
             async cancel(reason) {{ {} }},\n\
           }}));\n\
         }} }}",
        tag("cancel"),
        js::hit(&sink.url("/cancelled"))
    );
    let id = worker(&runner, &script, "module").await;
    let client = client();

    let mut endless = client
        .get(runner.url(&format!("/w/{id}/endless")))
        .send()
        .await
        .expect("the streaming request");
    let first = endless.chunk().await.expect("a first chunk");
    assert!(first.is_some_and(|chunk| !chunk.is_empty()));
    assert!(sink.hits("/cancelled").is_empty(), "cancelled too early");
    drop(endless);
    drop(client);

    sink.wait_for_hits("/cancelled", 1).await;
    let answer = reqwest::get(runner.url(&format!("/w/{id}/ok")))
        .await
        .expect("a request after the cancel");
    assert_eq!(answer.text().await.unwrap(), "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throwing_handler_is_a_500_without_its_stack_and_the_worker_stays() {
    let (runner, _sink) = start(&[]).await;
    let secret = tag("internal-detail");
    let script = format!(
        "export default {{ fetch(request) {{\n\
           if (new URL(request.url).pathname === '/ok') return new Response('fine');\n\
           throw new Error({secret});\n\
         }} }}",
        secret = js::lit(&secret)
    );
    let id = worker(&runner, &script, "module").await;

    let failed = runner.get(&format!("/w/{id}/boom")).await;
    failed.expect_error(500, &["fetch handler"]);
    assert!(
        !failed.body.contains(&secret),
        "the error leaked to the client: {failed}"
    );

    let lines = runner.worker_logs(&id).await;
    assert!(
        lines
            .iter()
            .any(|l| l["message"].as_str().unwrap_or_default().contains(&secret)),
        "the error is in the worker's logs: {lines:?}"
    );
    let ok = runner.get(&format!("/w/{id}/ok")).await;
    ok.assert_status(200);
    assert_eq!(ok.body, "fine");
    let status = runner.worker(&id).await;
    assert_eq!(status["state"], "ready");
    assert!(e2e::count(&status, "errors") >= 1, "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_until_work_finishes_after_the_response() {
    let (runner, sink) = start(&[]).await;
    let script = format!(
        "export default {{ fetch(request, env, ctx) {{\n\
           ctx.waitUntil((async () => {{ await new Promise((r) => setTimeout(r, 50)); {hit} }})());\n\
           return new Response('early');\n\
         }} }}",
        hit = js::hit(&sink.url("/after-response"))
    );
    let id = worker(&runner, &script, "module").await;

    let reply = runner.get(&format!("/w/{id}/")).await;

    reply.assert_status(200);
    assert_eq!(reply.body, "early");
    sink.wait_for_hits("/after-response", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_a_fetch_handler_or_worker_are_refused_clearly() {
    let (runner, _sink) = start(&[]).await;
    let id = runner
        .create(&json!({ "script": js::module_tasks(&format!("// {}", tag("tasks-only"))) }))
        .await;

    runner
        .get(&format!("/w/{id}/"))
        .await
        .expect_error(501, &["fetch handler"]);
    runner
        .get("/w/00000000-0000-0000-0000-000000000000/x")
        .await
        .expect_error(404, &["no worker"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_over_its_time_limit_is_a_503_and_the_worker_is_terminated() {
    let (runner, _sink) = start(&["--wall-limit-ms", "1500"]).await;
    let script = format!(
        "// {}\nexport default {{ fetch() {{ while (true) {{}} }} }}",
        tag("spin")
    );
    let id = worker(&runner, &script, "module").await;

    runner
        .get(&format!("/w/{id}/"))
        .await
        .expect_error(503, &["limit"]);

    let status = runner.worker(&id).await;
    assert_eq!(status["state"], "terminated", "{status}");
    runner.get("/healthz").await.assert_status(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_with_a_hostname_answers_every_path_of_that_host() {
    let (runner, _sink) = start(&["--worker-domain", "example.test"]).await;
    let host = format!("{}.example.test", tag("app").to_lowercase());
    let script = format!(
        "// {}\nexport default {{ fetch(request) {{ return new Response('host ' + new URL(request.url).pathname); }} }}",
        tag("by-host")
    );
    let id = runner
        .create(&json!({ "script": script, "hostname": host.to_uppercase() }))
        .await;
    assert_eq!(runner.worker(&id).await["hostname"], host.as_str());

    let answer = client()
        .get(runner.url("/workers/anything"))
        .header("host", format!("{host}:8080"))
        .send()
        .await
        .expect("request by host name");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "host /workers/anything");

    // Other hosts still reach the API.
    runner
        .get(&format!("/workers/{id}"))
        .await
        .assert_status(200);
    // A host name has one owner, and only a worker with a fetch handler may claim one.
    let taken = runner
        .post_json(
            "/",
            &json!({ "script": format!("// {}\n{script}", tag("second")), "hostname": host }),
        )
        .await;
    taken.expect_error(409, &["hostname"]);
    let tasks_only = runner
        .post_json(
            "/",
            &json!({ "script": js::module_tasks(&format!("// {}", tag("no-fetch"))), "hostname": "other.example.test" }),
        )
        .await;
    tasks_only.expect_error(400, &["fetch handler"]);
}
