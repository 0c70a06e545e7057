//! The TaskHub trigger (issue 8): a worker created with `taskhub: {chain, address, hub_id?}`
//! runs `tasks(rnr, ctx)` once for every `TasksAvailable` log of that contract (and hub), with
//! `ctx.source == "taskhub"` and the log in `ctx.event`. With `kind: "escrin"` (issue 17) the
//! contract is Escrin's TaskHub and the log its `TasksAvailable(address indexed generator,
//! bytes32 indexed context)`, optionally filtered by `generator` and `context`.
//!
//! - One watcher task per worker ([`TaskHubTrigger::start`]), polling with
//!   `contracts::taskhub::TaskHubWatcher` behind the chain's confirmation depth. It starts at the
//!   block after the head seen when the worker was created ([`TaskHubTrigger::prepare`]): events
//!   before creation are not delivered.
//! - Events are delivered one at a time, in chain order. Like cron, runs never overlap; unlike a
//!   cron tick, an event that finds the worker busy (a cron, manual or creation run) waits for it
//!   and is not skipped: an event is data, and skipping it would lose it.
//! - A failed poll (node down, timeout) is retried with exponential backoff from the poll
//!   interval up to the chain's `max_backoff`; the watcher's position does not move, so a
//!   reconnect resumes where it stopped: nothing lost, nothing repeated. The owner's status view
//!   shows `state: "retrying"` and the last error meanwhile.
//! - With a state directory the position is kept in a small sealed record (kind `taskhub`, the
//!   worker's id): written after every delivered event (its block and log index) and after each
//!   batch (the next block). After a restart delivery resumes there. Guarantee: exactly once
//!   across outages of the node and clean restarts; at least once across a crash — the one event
//!   whose `tasks()` was running (or had just finished, its position not yet written) is
//!   delivered again.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::Weak;
use std::time::Duration;
use std::time::Instant;

use contracts::taskhub::Address;
use contracts::taskhub::EventData;
use contracts::taskhub::HubKind;
use contracts::taskhub::TaskEvent;
use contracts::taskhub::TaskHubWatcher;
use contracts::taskhub::WatchConfig;
use contracts::taskhub::U256;
use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use super::taskhub_spec::kind_name;
pub use super::taskhub_spec::TaskHubRecord;
pub use super::taskhub_spec::TaskHubSpec;
use super::taskhub_spec::KIND_ESCRIN;
use super::taskhub_spec::KIND_SMART_WORKER;
use crate::chains::Chain;
use crate::chains::Chains;
use crate::records::Records;
use crate::worker::RunError;
use crate::worker::TriggerInfo;
use crate::worker::WorkerHandle;
use crate::worker::WorkerId;

/// Largest block range per `eth_getLogs`.
const MAX_BLOCK_RANGE: u64 = 1000;
/// Without events, the position is written at most this often (re-reading empty blocks after
/// a crash costs nothing).
const IDLE_SAVE_EVERY: Duration = Duration::from_secs(30);
/// How often a queued event looks whether the busy worker is free.
const BUSY_POLL: Duration = Duration::from_millis(5);

/// Why a TaskHub trigger could not be set up at creation.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("taskhub.chain {name:?} is not configured on this runner (configured: {known})")]
    UnknownChain { name: String, known: String },
    #[error("taskhub.address {address} has no contract on chain {chain:?}")]
    NoContract { chain: String, address: String },
    #[error("taskhub.address {address} on chain {chain:?} is not a TaskHub (it does not answer hubCount()); for Escrin's TaskHub add \"kind\": \"escrin\"")]
    NotATaskHub { chain: String, address: String },
    #[error("taskhub.address {address} on chain {chain:?} is a Smart Worker TaskHub (it answers hubCount()), not Escrin's: leave out \"kind\": \"escrin\"")]
    NotEscrinsTaskHub { chain: String, address: String },
    #[error("taskhub.hub_id {hub_id} is not registered at {address} (hubs: 1 to {count})")]
    NoSuchHub {
        hub_id: U256,
        address: String,
        count: U256,
    },
    #[error("chain {chain:?}: the RPC node answers chain id {actual}, but the runner is configured for {expected}")]
    WrongChain {
        chain: String,
        expected: u64,
        actual: u64,
    },
    #[error("chain {chain:?}: the RPC node did not answer, try again later: {reason}")]
    Unavailable { chain: String, reason: String },
}

impl PrepareError {
    /// The runner's side (node down or misconfigured: `503`), not the request's (`400`).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::WrongChain { .. } | Self::Unavailable { .. })
    }
}

/// The shared part of every worker's TaskHub trigger: the configured chains.
#[derive(Debug, Clone, Default)]
pub struct TaskHubTrigger {
    chains: Chains,
}

impl TaskHubTrigger {
    pub fn new(chains: Chains) -> Self {
        Self { chains }
    }

    /// Checks a requested trigger against the chain before the worker is created: the chain is
    /// configured, its node answers (and with the configured chain id), a TaskHub is at the
    /// address, the hub exists. Sets `start_block` to the block after the current head.
    pub async fn prepare(&self, spec: &mut TaskHubSpec) -> Result<(), PrepareError> {
        let chain = self.chain(&spec.chain)?;
        let unavailable = |reason: String| PrepareError::Unavailable {
            chain: chain.name.clone(),
            reason: chain.redact(&reason),
        };
        let watcher = TaskHubWatcher::new(watch_config(chain, spec, None))
            .map_err(|e| unavailable(e.to_string()))?;
        let probe = watcher
            .probe()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if let Some(expected) = chain.chain_id {
            if probe.chain_id != expected {
                return Err(PrepareError::WrongChain {
                    chain: chain.name.clone(),
                    expected,
                    actual: probe.chain_id,
                });
            }
        }
        let address = spec.address.to_checksum(None);
        if !probe.has_code {
            return Err(PrepareError::NoContract {
                chain: chain.name.clone(),
                address,
            });
        }
        if spec.kind == HubKind::Escrin {
            // Escrin's hubs have no common probe (their ERC-165 interface id changed across
            // versions); a contract that answers hubCount() is ours.
            if probe.hub_count.is_some() {
                return Err(PrepareError::NotEscrinsTaskHub {
                    chain: chain.name.clone(),
                    address,
                });
            }
            spec.start_block = Some(probe.head + 1);
            return Ok(());
        }
        let Some(count) = probe.hub_count else {
            return Err(PrepareError::NotATaskHub {
                chain: chain.name.clone(),
                address,
            });
        };
        if let Some(hub_id) = spec.hub_id {
            if hub_id > count {
                return Err(PrepareError::NoSuchHub {
                    hub_id,
                    address,
                    count,
                });
            }
        }
        spec.start_block = Some(probe.head + 1);
        Ok(())
    }

    fn chain(&self, name: &str) -> Result<&Chain, PrepareError> {
        self.chains
            .get(name)
            .ok_or_else(|| PrepareError::UnknownChain {
                name: name.to_owned(),
                known: match self.chains.names() {
                    names if names.is_empty() => "none; see --chains and --chain".into(),
                    names => names.join(", "),
                },
            })
    }

    /// Starts watching for worker `id` (whose handle is `handle`). With `records`, the saved
    /// position is loaded first (`resume`: a restored worker) and kept up to date.
    pub async fn start(
        &self,
        id: WorkerId,
        handle: Weak<WorkerHandle>,
        spec: &TaskHubSpec,
        records: Option<Records>,
        resume: bool,
    ) -> TaskHubJob {
        let status = Arc::new(Mutex::new(TaskHubView::new(spec)));
        let store = records.map(|records| CursorStore {
            records,
            id: id.clone(),
        });
        let mut cursor = spec.start_block.map(Cursor::at);
        if resume {
            if let Some(store) = &store {
                match store.load().await {
                    Ok(Some(saved)) => cursor = Some(saved),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(worker = %id, %error, "the TaskHub position could not be read: resuming from the creation block")
                    }
                }
            }
        }
        let Some(chain) = self.chains.get(&spec.chain).cloned() else {
            let error = format!(
                "chain {:?} is not configured on this runner any more: not watching",
                spec.chain
            );
            tracing::error!(worker = %id, "TaskHub trigger: {error}");
            status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .stopped(error);
            return TaskHubJob { status, task: None };
        };
        let watch = Watch {
            id,
            handle,
            chain,
            spec: spec.clone(),
            cursor,
            store,
            status: status.clone(),
        };
        let task = tokio::spawn(watch.run()).abort_handle();
        TaskHubJob {
            status,
            task: Some(task),
        }
    }
}

fn watch_config(chain: &Chain, spec: &TaskHubSpec, from_block: Option<u64>) -> WatchConfig {
    WatchConfig {
        kind: spec.kind,
        hub_id: spec.hub_id,
        generator: spec.generator,
        context: spec.context,
        confirmations: chain.confirmations,
        from_block,
        poll_interval: chain.poll_interval,
        max_block_range: MAX_BLOCK_RANGE,
        rpc_timeout: chain.rpc_timeout,
        ..WatchConfig::new(chain.rpc_url.clone(), spec.address)
    }
}

/// A worker's running trigger; stops watching when stopped or dropped.
#[derive(Debug)]
pub struct TaskHubJob {
    status: Arc<Mutex<TaskHubView>>,
    task: Option<tokio::task::AbortHandle>,
}

impl TaskHubJob {
    /// The trigger's state for the owner's status view.
    pub fn view(&self) -> TaskHubView {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn stop(&self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Drop for TaskHubJob {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the owner sees of a worker's TaskHub trigger.
#[derive(Debug, Clone, Serialize)]
pub struct TaskHubView {
    pub chain: String,
    pub address: String,
    /// `smart-worker` or `escrin`.
    pub kind: &'static str,
    pub hub_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// `starting` (no poll answered yet), `connected`, `retrying` (the last poll failed) or
    /// `stopped` (the worker is gone, or the chain is no longer configured).
    pub state: &'static str,
    pub last_error: Option<String>,
    /// The first block not yet looked at.
    pub next_block: Option<u64>,
    /// Events handed to `tasks()`.
    pub events: u64,
    /// Events that waited for a run in progress.
    pub waited: u64,
    /// Failed polls since the last success.
    pub failures: u32,
    /// When retrying: the pause before the next attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
}

impl TaskHubView {
    fn new(spec: &TaskHubSpec) -> Self {
        Self {
            chain: spec.chain.clone(),
            address: spec.address.to_checksum(None),
            kind: kind_name(spec.kind),
            hub_id: spec.hub_id.map(|id| id.to_string()),
            generator: spec.generator.map(|a| a.to_checksum(None)),
            context: spec.context.map(|c| c.to_string()),
            state: "starting",
            last_error: None,
            next_block: spec.start_block,
            events: 0,
            waited: 0,
            failures: 0,
            retry_in_ms: None,
        }
    }

    fn stopped(&mut self, error: String) {
        self.state = "stopped";
        self.last_error = Some(error);
        self.retry_in_ms = None;
    }
}

/// Where delivery stands: every event at or after `block` not yet delivered, except those of
/// `block` up to log index `after_log` (delivered before a crash or restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub block: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_log: Option<u64>,
}

impl Cursor {
    pub fn at(block: u64) -> Self {
        Self {
            block,
            after_log: None,
        }
    }

    /// Right after `event`.
    pub fn after(event: &TaskEvent) -> Self {
        Self {
            block: event.block_number,
            after_log: Some(event.log_index),
        }
    }

    /// Whether `event` is still to be delivered.
    pub fn admits(&self, event: &TaskEvent) -> bool {
        match self.after_log {
            _ if event.block_number > self.block => true,
            Some(after) => event.block_number == self.block && event.log_index > after,
            None => event.block_number == self.block,
        }
    }
}

/// Exponential backoff after failed polls: the poll interval, doubled per consecutive failure,
/// capped.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            failures: 0,
        }
    }

    /// Counts a failure; the pause before the next attempt.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let factor = 1u32 << (self.failures - 1).min(20);
        self.base.saturating_mul(factor).min(self.max)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A worker's saved position in the state directory.
struct CursorStore {
    records: Records,
    id: WorkerId,
}

impl CursorStore {
    async fn load(&self) -> Result<Option<Cursor>, String> {
        let Some(bytes) = self
            .records
            .taskhub_cursor(&self.id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("undecodable position: {e}"))
    }

    async fn save(&self, cursor: Cursor) {
        let bytes = serde_json::to_vec(&cursor).unwrap_or_default();
        if let Err(error) = self.records.put_taskhub_cursor(&self.id, &bytes).await {
            tracing::error!(worker = %self.id, %error, "the TaskHub position could not be saved: after a restart some events may be delivered again");
        }
    }
}

/// One worker's watcher task.
struct Watch {
    id: WorkerId,
    handle: Weak<WorkerHandle>,
    chain: Chain,
    spec: TaskHubSpec,
    cursor: Option<Cursor>,
    store: Option<CursorStore>,
    status: Arc<Mutex<TaskHubView>>,
}

/// What became of one event.
enum Delivery {
    Delivered,
    WorkerGone,
}

impl Watch {
    fn status(&self) -> std::sync::MutexGuard<'_, TaskHubView> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn run(mut self) {
        let from = self.cursor.map(|c| c.block);
        let mut watcher = match TaskHubWatcher::new(watch_config(&self.chain, &self.spec, from)) {
            Ok(watcher) => watcher,
            Err(error) => {
                let error = self.chain.redact(&error.to_string());
                tracing::error!(worker = %self.id, "TaskHub trigger: {error}");
                self.status().stopped(error);
                return;
            }
        };
        let mut backoff = Backoff::new(self.chain.poll_interval, self.chain.max_backoff);
        let mut saved_at = Instant::now();
        tracing::info!(worker = %self.id, chain = %self.chain.name, hub = %self.spec.address, from_block = ?from, "TaskHub trigger watching");
        loop {
            if self.handle.strong_count() == 0 {
                return;
            }
            let events = match watcher.poll().await {
                Ok(events) => events,
                Err(error) => {
                    let pause = backoff.failed();
                    let error = self.chain.redact(&error.to_string());
                    tracing::warn!(worker = %self.id, chain = %self.chain.name, failures = backoff.failures(), retry_in_ms = pause.as_millis() as u64, "TaskHub trigger: {error}");
                    {
                        let mut status = self.status();
                        status.state = "retrying";
                        status.last_error = Some(error);
                        status.failures = backoff.failures();
                        status.retry_in_ms = Some(pause.as_millis() as u64);
                    }
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            if backoff.failures() > 0 {
                tracing::info!(worker = %self.id, chain = %self.chain.name, "TaskHub trigger: the node answers again; resuming");
            }
            backoff.reset();
            {
                let mut status = self.status();
                status.state = "connected";
                status.failures = 0;
                status.retry_in_ms = None;
            }
            let mut delivered = false;
            for event in events {
                if self.cursor.is_some_and(|c| !c.admits(&event)) {
                    continue;
                }
                match self.deliver(&event).await {
                    Delivery::Delivered => {}
                    Delivery::WorkerGone => {
                        self.status()
                            .stopped("the worker is no longer running".into());
                        return;
                    }
                }
                let cursor = Cursor::after(&event);
                self.cursor = Some(cursor);
                if let Some(store) = &self.store {
                    store.save(cursor).await;
                }
                delivered = true;
            }
            if let Some(next) = watcher.next_block() {
                let cursor = Cursor::at(next);
                let moved = self.cursor != Some(cursor);
                self.cursor = Some(cursor);
                if let Some(store) = &self.store {
                    if moved && (delivered || saved_at.elapsed() >= IDLE_SAVE_EVERY) {
                        store.save(cursor).await;
                        saved_at = Instant::now();
                    }
                }
                // Shown once saved: a status past an event means its position is on disk.
                self.status().next_block = Some(next);
            }
            tokio::time::sleep(self.chain.poll_interval).await;
        }
    }

    /// Runs `tasks()` for `event` once the worker is free.
    async fn deliver(&self, event: &TaskEvent) -> Delivery {
        let Some(handle) = self.handle.upgrade() else {
            return Delivery::WorkerGone;
        };
        let info = TriggerInfo::with_event("taskhub", self.event_json(event));
        let (outcome, waited) = handle.run_tasks_when_free(info, BUSY_POLL).await;
        let delivery = match outcome {
            Ok(()) => {
                tracing::debug!(worker = %self.id, block = event.block_number, log = event.log_index, "TaskHub event delivered");
                Delivery::Delivered
            }
            // Delivered; the handler's failure is the worker's (logged and counted there).
            Err(RunError::Handler(error)) => {
                tracing::warn!(worker = %self.id, block = event.block_number, %error, "tasks() failed on a TaskHub event");
                Delivery::Delivered
            }
            Err(error) => {
                tracing::warn!(worker = %self.id, block = event.block_number, %error, "a TaskHub event could not be delivered: the worker is gone");
                Delivery::WorkerGone
            }
        };
        let mut status = self.status();
        status.waited += u64::from(waited);
        if matches!(delivery, Delivery::Delivered) {
            status.events += 1;
        }
        delivery
    }

    fn event_json(&self, event: &TaskEvent) -> Value {
        event_json(&self.chain.name, self.spec.address, event)
    }
}

/// `ctx.event`: numbers that fit JavaScript's as numbers, the hub id as a decimal string,
/// hashes, addresses (checksummed), the payload and Escrin's context as `0x` hex.
pub fn event_json(chain: &str, address: Address, event: &TaskEvent) -> Value {
    let mut value = json!({
        "chain": chain,
        "address": address.to_checksum(None),
        "blockNumber": event.block_number,
        "txHash": event.tx_hash.to_string(),
        "logIndex": event.log_index,
    });
    let fields = match &event.data {
        EventData::SmartWorker {
            hub_id,
            app,
            payload,
        } => json!({
            "kind": KIND_SMART_WORKER,
            "hubId": hub_id.to_string(),
            "app": app.to_checksum(None),
            "payload": format!("0x{}", hex::encode(payload)),
        }),
        EventData::Escrin { generator, context } => json!({
            "kind": KIND_ESCRIN,
            "generator": generator.to_checksum(None),
            "context": context.to_string(),
        }),
    };
    if let (Value::Object(value), Value::Object(fields)) = (&mut value, fields) {
        value.extend(fields);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::taskhub::{Bytes, B256};

    fn event(block: u64, log: u64) -> TaskEvent {
        TaskEvent {
            block_number: block,
            tx_hash: B256::repeat_byte(0xab),
            log_index: log,
            data: EventData::SmartWorker {
                hub_id: U256::from(7),
                app: Address::repeat_byte(0x11),
                payload: Bytes::from_static(b"\x01\x02"),
            },
        }
    }

    #[test]
    fn a_cursor_admits_only_what_was_not_delivered() {
        let start = Cursor::at(10);
        assert!(!start.admits(&event(9, 5)));
        assert!(start.admits(&event(10, 0)));
        assert!(start.admits(&event(11, 0)));
        // After a crash mid-block: the same block resumes after the last delivered log.
        let mid = Cursor::after(&event(10, 3));
        assert!(!mid.admits(&event(10, 2)));
        assert!(!mid.admits(&event(10, 3)));
        assert!(mid.admits(&event(10, 4)));
        assert!(mid.admits(&event(12, 0)));
        assert!(!mid.admits(&event(9, 9)));
        let text = serde_json::to_string(&mid).unwrap();
        assert_eq!(serde_json::from_str::<Cursor>(&text).unwrap(), mid);
        assert_eq!(
            serde_json::from_str::<Cursor>(r#"{"block":4}"#).unwrap(),
            Cursor::at(4)
        );
    }

    #[test]
    fn backoff_doubles_from_the_poll_interval_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let pauses: Vec<u64> = (0..6)
            .map(|_| backoff.failed().as_millis() as u64)
            .collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.failures(), 6);
        backoff.reset();
        assert_eq!(backoff.failed(), Duration::from_millis(100));
        // Many failures never overflow.
        let mut long = Backoff::new(Duration::from_secs(2), Duration::from_secs(30));
        for _ in 0..100 {
            assert!(long.failed() <= Duration::from_secs(30));
        }
    }

    #[test]
    fn events_reach_javascript_as_hex_and_safe_numbers() {
        let value = event_json("local", Address::repeat_byte(0x22), &event(5, 1));
        assert_eq!(value["blockNumber"], 5);
        assert_eq!(value["logIndex"], 1);
        assert_eq!(value["hubId"], "7");
        assert_eq!(value["payload"], "0x0102");
        assert_eq!(value["txHash"], format!("0x{}", "ab".repeat(32)));
        assert_eq!(value["chain"], "local");
        assert!(value["app"].as_str().unwrap().starts_with("0x1111"));
        assert_eq!(value["kind"], "smart-worker");

        let escrin = TaskEvent {
            data: EventData::Escrin {
                generator: Address::repeat_byte(0x33),
                context: B256::repeat_byte(0x44),
            },
            ..event(6, 2)
        };
        let value = event_json("local", Address::repeat_byte(0x22), &escrin);
        assert_eq!(value["kind"], "escrin");
        assert_eq!(value["blockNumber"], 6);
        assert_eq!(value["logIndex"], 2);
        assert_eq!(value["context"], format!("0x{}", "44".repeat(32)));
        assert_eq!(
            value["generator"],
            Address::repeat_byte(0x33).to_checksum(None)
        );
        assert!(value.get("hubId").is_none() && value.get("payload").is_none());
    }

    #[tokio::test]
    async fn unknown_chains_and_dead_nodes_are_refused_at_creation() {
        let trigger =
            TaskHubTrigger::new(Chains::load(None, &["local=http://127.0.0.1:9/".into()]).unwrap());
        let mut spec = TaskHubSpec::parse(&json!({
            "chain": "nope",
            "address": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
        }))
        .unwrap();
        let err = trigger.prepare(&mut spec).await.unwrap_err();
        assert!(!err.is_unavailable());
        assert!(err.to_string().contains("configured: local"), "{err}");
        spec.chain = "local".into();
        let err = trigger.prepare(&mut spec).await.unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        assert!(!err.to_string().contains("127.0.0.1:9"), "{err}");
        assert_eq!(spec.start_block, None);
    }
}
