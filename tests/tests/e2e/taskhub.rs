//! The TaskHub trigger (issue 8) against a real hardhat node (`contracts::devchain`): a worker
//! created with `taskhub` runs `tasks()` once per `TasksAvailable` log, with the log in
//! `ctx.event`; an RPC outage is retried and resumed without loss or duplicates; with
//! `--state-dir` a runner restart resumes too. Without node or hardhat the node-backed parts say
//! `SKIPPED` and pass.
//!
//! Outages: a hardhat node keeps its chain in memory only (it has no state file: a restarted
//! node is a new chain with the contract gone and block numbers from 0), so "the node is down"
//! is a TCP proxy between the runner and the node that refuses and cuts connections while the
//! test sends transactions to the node directly.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use alloy::providers::DynProvider;
use contracts::bindings::TaskHub;
use contracts::devchain::{self, mined, DevChain};
use contracts::taskhub::{Address, U256};
use e2e::{js, json, tag, Recorded, Runner, Sink, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A node with the contracts, hub 1 registered by the app (account 2) and hub 2 by someone
/// else (account 0).
struct Hub {
    chain: DevChain,
    address: Address,
    app: TaskHub::TaskHubInstance<DynProvider>,
    other: TaskHub::TaskHubInstance<DynProvider>,
}

/// What the test knows of a `notify` it sent.
#[derive(Debug, Clone)]
struct Sent {
    block: u64,
    tx: String,
    log_index: u64,
    payload: String,
}

impl Hub {
    async fn deploy(chain: DevChain) -> Hub {
        let url = chain.rpc_url();
        let d = devchain::deploy(&url, DevChain::account(0), 3600)
            .await
            .expect("deploy the contracts");
        let app = TaskHub::new(
            d.task_hub,
            devchain::wallet_provider(&url, DevChain::account(2)),
        );
        let other = TaskHub::new(
            d.task_hub,
            devchain::wallet_provider(&url, DevChain::account(0)),
        );
        for hub in [&app, &other] {
            mined(hub.registerHub().send()).await;
        }
        Hub {
            chain,
            address: d.task_hub,
            app,
            other,
        }
    }

    /// `notify(hub_id, payload)` from the hub's owner, mined (hardhat mines on submission).
    async fn notify(&self, hub_id: u64, payload: &[u8]) -> Sent {
        let hub = if hub_id == 1 { &self.app } else { &self.other };
        let receipt = mined(
            hub.notify(U256::from(hub_id), payload.to_vec().into())
                .send(),
        )
        .await;
        Sent {
            block: receipt.block_number.unwrap(),
            tx: receipt.transaction_hash.to_string(),
            log_index: receipt.inner.logs()[0].log_index.unwrap(),
            payload: format!("0x{}", hex(payload)),
        }
    }

    fn port(&self) -> u16 {
        let url = self.chain.rpc_url();
        let port = url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok());
        port.expect("a port in the RPC URL")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A TCP proxy to the node that can be taken down: while down it accepts and drops every
/// connection and cuts the open ones.
struct Proxy {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Proxy {
    async fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, _) = watch::channel(true);
        let state = up.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut state = state.clone();
                if !*state.borrow_and_update() {
                    drop(inbound);
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = state.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { addr, up, task }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `--chains` file with chain `local` at `rpc_url`: hardhat's chain id, no confirmation depth
/// (hardhat mines a block per transaction and none otherwise), quick polls and retries.
fn chains_file(dir: &Path, rpc_url: &str) -> String {
    chains_file_with(dir, rpc_url, json!({}))
}

/// [`chains_file`] with `extra` chains.
fn chains_file_with(dir: &Path, rpc_url: &str, extra: Value) -> String {
    let path = dir.join("chains.json");
    let mut chains = json!({
        "local": {
            "rpc_url": rpc_url,
            "chain_id": devchain::HARDHAT_CHAIN_ID,
            "confirmations": 0,
            "poll_interval_ms": 100,
            "max_backoff_ms": 800,
            "rpc_timeout_ms": 2000,
        }
    });
    for (name, chain) in extra.as_object().expect("an object of chains") {
        chains[name] = chain.clone();
    }
    std::fs::write(&path, chains.to_string()).unwrap();
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// A module worker that posts `ctx.event` to `/event` on each TaskHub run; its creation run
/// takes `busy_ms` (events meanwhile must wait, not be skipped).
fn event_poster(sink: &Sink, busy_ms: u64) -> String {
    let post = js::post_json(&sink.url("/event"), "ctx.event");
    js::module_tasks(&format!(
        "// {}\nif (ctx.source === 'taskhub') {{ {post} }}\nelse if (ctx.source === 'created') {{ await new Promise((r) => setTimeout(r, {busy_ms})); }}",
        tag("taskhub")
    ))
}

fn taskhub_field(address: Address) -> Value {
    json!({ "chain": "local", "address": address.to_string(), "hub_id": 1 })
}

/// Asserts that the sink saw exactly `sent` (in order), each once, as `ctx.event`.
#[track_caller]
fn assert_delivered(seen: &[Recorded], sent: &[Sent], app: Address, address: Address) {
    let events: Vec<Value> = seen.iter().map(Recorded::json).collect();
    assert_eq!(
        events.len(),
        sent.len(),
        "expected each event once: {events:#?}\nsent: {sent:#?}"
    );
    for (event, sent) in events.iter().zip(sent) {
        assert_eq!(event["blockNumber"], json!(sent.block), "{event}");
        assert_eq!(event["txHash"], json!(sent.tx), "{event}");
        assert_eq!(event["logIndex"], json!(sent.log_index), "{event}");
        assert_eq!(event["payload"], json!(sent.payload), "{event}");
        assert_eq!(event["hubId"], "1", "{event}");
        assert_eq!(event["chain"], "local", "{event}");
        assert_eq!(event["app"], json!(app.to_checksum(None)), "{event}");
        assert_eq!(
            event["address"],
            json!(address.to_checksum(None)),
            "{event}"
        );
    }
}

/// Waits (up to `PATIENCE`) until the owner's view of the trigger satisfies `predicate`.
async fn wait_for_trigger(
    runner: &Runner,
    id: &str,
    what: &str,
    predicate: impl Fn(&Value) -> bool,
) -> Value {
    runner
        .wait_for_worker(id, what, |w| predicate(&w["taskhub"]))
        .await
}

/// Lets a few polls pass, then checks nothing more arrived.
async fn settle(sink: &Sink, expected: usize) -> Vec<Recorded> {
    tokio::time::sleep(Duration::from_millis(800)).await;
    let seen = sink.hits("/event");
    assert_eq!(seen.len(), expected, "{seen:#?}");
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn taskhub_events_run_tasks_once_each_and_survive_an_rpc_outage() {
    let test = "taskhub_events_run_tasks_once_each_and_survive_an_rpc_outage";
    let Some(chain) = DevChain::start_or_skip(test).await else {
        return;
    };
    let hub = Hub::deploy(chain).await;
    let proxy = Proxy::start(hub.port()).await;
    let dir = tempfile::tempdir().unwrap();
    let chains = chains_file(dir.path(), &proxy.url());
    let sink = Sink::start().await;
    let runner = Runner::start(&["--chains", &chains]).await;
    // Before the worker: never delivered.
    hub.notify(1, b"before creation").await;
    let id = runner
        .create(&json!({
            "script": event_poster(&sink, 1500),
            "taskhub": taskhub_field(hub.address),
        }))
        .await;
    // During the creation run: waits for it.
    let mut sent = vec![hub.notify(1, b"first").await];
    hub.notify(2, b"another hub: filtered out").await;
    sent.push(hub.notify(1, b"").await);
    sent.push(hub.notify(1, &[0xff; 300]).await);
    let app = DevChain::account(2).address();
    let seen = sink.wait_for_hits("/event", 3).await;
    assert_delivered(&seen, &sent, app, hub.address);
    let worker = wait_for_trigger(&runner, &id, "connected", |t| t["events"] == 3).await;
    let trigger = &worker["taskhub"];
    assert_eq!(trigger["state"], "connected", "{worker}");
    assert!(trigger["waited"].as_u64().unwrap() >= 1, "{worker}");
    assert_eq!(
        worker["skipped"], 0,
        "events wait, they are not skipped: {worker}"
    );
    assert_eq!(trigger["address"], json!(hub.address.to_checksum(None)));
    // Not in the public view.
    let public = runner
        .request_as("GET", &format!("/workers/{id}"), None)
        .await
        .json();
    assert!(public.get("taskhub").is_none(), "{public}");

    // The node goes away: the trigger retries with backoff, the owner sees it.
    proxy.set_up(false);
    let worker = wait_for_trigger(&runner, &id, "retrying", |t| {
        t["state"] == "retrying" && t["failures"].as_u64() >= Some(2)
    })
    .await;
    let trigger = &worker["taskhub"];
    assert!(trigger["last_error"].is_string(), "{worker}");
    assert!(
        !trigger["last_error"]
            .as_str()
            .unwrap()
            .contains(&proxy.addr.to_string()),
        "the RPC URL is not shown: {worker}"
    );
    assert!(trigger["retry_in_ms"].as_u64().unwrap() <= 800, "{worker}");
    // Events while it is away are delivered once it is back, once each.
    sent.push(hub.notify(1, b"during the outage 1").await);
    sent.push(hub.notify(1, b"during the outage 2").await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.hits("/event").len(), 3);
    proxy.set_up(true);
    let seen = sink.wait_for_hits("/event", 5).await;
    assert_delivered(&seen, &sent, app, hub.address);
    wait_for_trigger(&runner, &id, "connected again", |t| {
        t["state"] == "connected"
    })
    .await;
    sent.push(hub.notify(1, b"after the outage").await);
    sink.wait_for_hits("/event", 6).await;
    let seen = settle(&sink, 6).await;
    assert_delivered(&seen, &sent, app, hub.address);
    let worker = runner.worker(&id).await;
    assert_eq!(worker["taskhub"]["events"], 6, "{worker}");
    assert_eq!(worker["errors"], 0, "{worker}");
}

#[tokio::test(flavor = "multi_thread")]
async fn taskhub_position_survives_a_runner_restart() {
    let test = "taskhub_position_survives_a_runner_restart";
    let Some(chain) = DevChain::start_or_skip(test).await else {
        return;
    };
    let hub = Hub::deploy(chain).await;
    let dir = tempfile::tempdir().unwrap();
    let chains = chains_file(dir.path(), &hub.chain.rpc_url());
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let args = ["--chains", chains.as_str(), "--state-dir", state];
    let sink = Sink::start().await;
    let first = Runner::start(&args).await;
    // A classic worker this time: the same event as `event.event`.
    let post = js::post_json(&sink.url("/event"), "event.event");
    let script = js::classic_tasks(&format!(
        "// {}\nif (event.source === 'taskhub') {{ {post} }}",
        tag("classic")
    ));
    let id = first
        .create(&json!({
            "script": script,
            "type": "classic",
            "taskhub": taskhub_field(hub.address),
        }))
        .await;
    let token = first.token(&id).unwrap();
    let mut sent = vec![hub.notify(1, b"one").await, hub.notify(1, b"two").await];
    sink.wait_for_hits("/event", 2).await;
    // Once the position is past the second event it is on disk.
    let last = sent[1].block;
    wait_for_trigger(&first, &id, "past the second event", |t| {
        t["next_block"].as_u64() > Some(last)
    })
    .await;
    first.kill();

    // While the runner is down.
    sent.push(hub.notify(1, b"three").await);
    sent.push(hub.notify(1, b"four").await);
    let second = Runner::start(&args).await;
    second.remember(&id, &token);
    let seen = sink.wait_for_hits("/event", 4).await;
    assert_delivered(&seen, &sent, DevChain::account(2).address(), hub.address);
    sent.push(hub.notify(1, b"five").await);
    sink.wait_for_hits("/event", 5).await;
    let seen = settle(&sink, 5).await;
    assert_delivered(&seen, &sent, DevChain::account(2).address(), hub.address);
    let worker = second.worker(&id).await;
    assert!(worker["restored"]["at"].is_string(), "{worker}");
    assert_eq!(worker["taskhub"]["events"], 3, "{worker}");

    // Deleted: its position goes too, and nothing more runs.
    second
        .delete(&format!("/workers/{id}"))
        .await
        .assert_status(204);
    let positions = Path::new(state).join("records").join("taskhub");
    let left: Vec<_> = std::fs::read_dir(&positions)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        left.iter()
            .all(|p| p.extension().is_none_or(|x| x != "rec")),
        "{left:?}"
    );
    hub.notify(1, b"after delete").await;
    settle(&sink, 5).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn taskhub_bad_input_is_refused_with_400_or_503() {
    let test = "taskhub_bad_input_is_refused_with_400_or_503";
    // A port nothing listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = format!("down=http://{closed}/");
    let address = "0x5fbdb2315678afecb367f032d93f642f64180aa3";
    let chain = DevChain::start_or_skip(test).await;
    let hub = match chain {
        Some(chain) => Some(Hub::deploy(chain).await),
        None => None,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--chain".to_owned(), down.clone()];
    if let Some(hub) = &hub {
        // `wrong`: the same node, configured with another chain id.
        let wrong = json!({ "wrong": { "rpc_url": hub.chain.rpc_url(), "chain_id": 1 } });
        args.push("--chains".into());
        args.push(chains_file_with(dir.path(), &hub.chain.rpc_url(), wrong));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let runner = Runner::start(&args).await;
    let script = js::module_tasks("");
    let create = |taskhub: Value| {
        let script = script.clone();
        let runner = &runner;
        async move {
            runner
                .post_json("/", &json!({ "script": script, "taskhub": taskhub }))
                .await
        }
    };

    let reply = create(json!({ "chain": "mainnet", "address": address })).await;
    let message = reply.expect_error(400, &["taskhub.chain", "mainnet", "down"]);
    assert!(message.contains("configured: down"), "{message}");
    for bad in [
        "0x1234",
        "5fbdb2315678afecb367f032d93f642f64180aa3",
        "0xZZbdb2315678afecb367f032d93f642f64180aa3",
    ] {
        create(json!({ "chain": "down", "address": bad }))
            .await
            .expect_error(400, &["taskhub.address", "not an address"]);
    }
    create(json!({ "chain": "down", "address": "0x5FBdb2315678afecb367f032d93F642f64180aa3" }))
        .await
        .expect_error(400, &["checksum"]);
    create(json!({ "chain": "down" }))
        .await
        .expect_error(400, &["taskhub.address"]);
    create(json!("down")).await.expect_error(400, &["taskhub"]);
    let form = runner
        .post_form("/", &[("script", &script), ("taskhub", "{not json")])
        .await;
    form.expect_error(400, &["taskhub is not valid JSON"]);
    // The node does not answer: the runner's side, 503, without the URL.
    let reply = create(json!({ "chain": "down", "address": address })).await;
    let message = reply.expect_error(503, &["down", "did not answer"]);
    assert!(!message.contains(&closed.to_string()), "{message}");

    let Some(hub) = hub else {
        eprintln!("SKIPPED the node-backed part of {test}: no hardhat");
        return;
    };
    let hub_address = hub.address.to_string();
    // Checks against the chain: no contract, not a TaskHub, no such hub, wrong chain id.
    create(json!({ "chain": "local", "address": format!("0x{}", "12".repeat(20)) }))
        .await
        .expect_error(400, &["no contract"]);
    create(json!({ "chain": "local", "address": hub_address, "hub_id": 9 }))
        .await
        .expect_error(400, &["hub_id 9", "not registered"]);
    create(json!({ "chain": "wrong", "address": hub_address }))
        .await
        .expect_error(503, &["answers chain id 31337"]);
    // A worker without a tasks handler cannot have the trigger.
    runner
        .post_json(
            "/",
            &json!({
                "script": "export default { fetch() { return new Response('x'); } };",
                "taskhub": { "chain": "local", "address": hub_address },
            }),
        )
        .await
        .expect_error(400, &["tasks"]);
    // In a form the field is JSON text; every hub of the contract when no hub id is given.
    let field = json!({ "chain": "local", "address": hub_address }).to_string();
    let reply = runner
        .post_form("/", &[("script", script.as_str()), ("taskhub", &field)])
        .await;
    let id = reply.created_id();
    let worker = runner.worker(&id).await;
    assert_eq!(worker["taskhub"]["hub_id"], Value::Null, "{worker}");
    assert_eq!(worker["taskhub"]["chain"], "local", "{worker}");
}

/// Issue 17: a worker watching Escrin's TaskHub (`kind: "escrin"`, our `EscrinTaskHub`, which
/// emits Escrin's `TasksAvailable(address indexed generator, bytes32 indexed context)` the way
/// Escrin's hub does) runs once per log with the generator and context in `ctx.event`; a
/// `generator` filter leaves other callers' logs out; our own hub's logs are not taken for
/// Escrin's; our hub named as Escrin's (and Escrin's as ours) is refused at creation.
#[tokio::test(flavor = "multi_thread")]
async fn escrin_tasks_available_logs_run_tasks_with_generator_and_context() {
    use contracts::bindings::EscrinTaskHub;
    use contracts::taskhub::B256;

    let test = "escrin_tasks_available_logs_run_tasks_with_generator_and_context";
    let Some(chain) = DevChain::start_or_skip(test).await else {
        return;
    };
    let hub = Hub::deploy(chain).await;
    let url = hub.chain.rpc_url();
    let escrin = devchain::deploy(&url, DevChain::account(0), 3600)
        .await
        .expect("a second deployment")
        .escrin_task_hub;
    // The generator: NFTrout's contract calls notify() itself; here an account does. Accounts
    // other than the hub's app (2): one provider per account keeps its nonces.
    let generator = DevChain::account(1);
    let as_generator =
        EscrinTaskHub::new(escrin, devchain::wallet_provider(&url, generator.clone()));
    let as_other = EscrinTaskHub::new(
        escrin,
        devchain::wallet_provider(&url, DevChain::account(0)),
    );
    let dir = tempfile::tempdir().unwrap();
    let chains = chains_file(dir.path(), &url);
    let sink = Sink::start().await;
    let runner = Runner::start(&["--chains", &chains]).await;

    // Refused at creation: our hub as Escrin's, Escrin's as ours, a hub id for Escrin's.
    let script = js::module_tasks("");
    let refused = |taskhub: Value| {
        let script = script.clone();
        let runner = &runner;
        async move {
            runner
                .post_json("/", &json!({ "script": script, "taskhub": taskhub }))
                .await
        }
    };
    refused(json!({ "chain": "local", "address": hub.address.to_string(), "kind": "escrin" }))
        .await
        .expect_error(400, &["Smart Worker TaskHub", "not Escrin's"]);
    refused(json!({ "chain": "local", "address": escrin.to_string() }))
        .await
        .expect_error(400, &["not a TaskHub", "\"kind\": \"escrin\""]);
    refused(
        json!({ "chain": "local", "address": escrin.to_string(), "kind": "escrin", "hub_id": 1 }),
    )
    .await
    .expect_error(400, &["no hub ids"]);

    let worker = |path: &str| {
        js::module_tasks(&format!(
            "// {}\nif (ctx.source === 'taskhub') {{ {} }}",
            tag("escrin-taskhub"),
            js::post_json(&sink.url(path), "ctx.event")
        ))
    };
    let every = runner
        .create(&json!({
            "script": worker("/event"),
            "taskhub": { "chain": "local", "address": escrin.to_string(), "kind": "escrin" },
        }))
        .await;
    let filtered = runner
        .create(&json!({
            "script": worker("/filtered"),
            "taskhub": {
                "chain": "local", "address": escrin.to_string(), "kind": "escrin",
                "generator": generator.address().to_string(),
            },
        }))
        .await;
    let view = runner.worker(&filtered).await;
    assert_eq!(view["taskhub"]["kind"], "escrin", "{view}");
    assert_eq!(
        view["taskhub"]["generator"],
        json!(generator.address().to_checksum(None)),
        "{view}"
    );

    let context = B256::repeat_byte(0x5a);
    let mut sent = Vec::new();
    // notify(): context zero (Escrin's `TaskHubNotifier` modifier).
    sent.push((
        mined(as_generator.notify_1().send()).await,
        generator.address(),
        B256::ZERO,
    ));
    // Our hub in between: a different event, not delivered to Escrin-kind workers.
    hub.notify(1, b"ours").await;
    sent.push((
        mined(as_other.notify_0(context).send()).await,
        DevChain::account(0).address(),
        context,
    ));
    sent.push((
        mined(as_generator.notify_0(context).send()).await,
        generator.address(),
        context,
    ));

    let seen = sink.wait_for_hits("/event", 3).await;
    let filtered_seen = sink.wait_for_hits("/filtered", 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sink.hits("/event").len(), 3);
    assert_eq!(sink.hits("/filtered").len(), 2);
    let check =
        |event: &Value,
         (receipt, from, ctx): &(alloy::rpc::types::TransactionReceipt, Address, B256)| {
            assert_eq!(event["kind"], "escrin", "{event}");
            assert_eq!(event["chain"], "local", "{event}");
            assert_eq!(event["address"], json!(escrin.to_checksum(None)), "{event}");
            assert_eq!(event["generator"], json!(from.to_checksum(None)), "{event}");
            assert_eq!(event["context"], json!(ctx.to_string()), "{event}");
            assert_eq!(
                event["blockNumber"],
                json!(receipt.block_number.unwrap()),
                "{event}"
            );
            assert_eq!(
                event["txHash"],
                json!(receipt.transaction_hash.to_string()),
                "{event}"
            );
            assert_eq!(
                event["logIndex"],
                json!(receipt.inner.logs()[0].log_index.unwrap()),
                "{event}"
            );
            assert!(
                event.get("hubId").is_none() && event.get("payload").is_none(),
                "{event}"
            );
        };
    for (event, sent) in seen.iter().map(Recorded::json).zip(&sent) {
        check(&event, sent);
    }
    let mine: Vec<_> = sent.iter().filter(|s| s.1 == generator.address()).collect();
    for (event, sent) in filtered_seen.iter().map(Recorded::json).zip(mine) {
        check(&event, sent);
    }
    let view = runner.worker(&every).await;
    assert_eq!(view["taskhub"]["events"], 3, "{view}");
    assert_eq!(view["errors"], 0, "{view}");
}
