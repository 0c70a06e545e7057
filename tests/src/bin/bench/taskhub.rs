//! The TaskHub trigger's latency: from a `notify` transaction mined on a local hardhat node to
//! the start of the worker's `tasks()` run for it.
//!
//! Hardhat mines a block as soon as a transaction arrives, so the log exists when the node
//! answers `eth_sendTransaction`: that answer is the start. The worker reports
//! `performance.timeOrigin + performance.now()` at the top of `tasks()` to a loopback sink: that
//! is the end (same machine, same clock). Events are sent one at a time, each after a pause of a
//! pseudo-random fraction of the poll interval, so that they land at every phase of the
//! watcher's polling.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use contracts::bindings::TaskHub;
use contracts::devchain::{self, DevChain, DevChainError};
use contracts::taskhub::U256;
use e2e::{json, Sink};

use crate::host::Host;
use crate::measure::progress;

/// How long one event may take to reach `tasks()` before it counts as missed.
const DEADLINE: Duration = Duration::from_secs(10);

/// What the TaskHub section shows.
pub enum TaskHubFigures {
    Measured {
        /// The chain's `poll_interval_ms` in the runner's `--chains` file.
        poll_interval_ms: u64,
        /// `notify` answered → `tasks()` started, per event delivered.
        latency_ms: Vec<f64>,
        /// Events sent.
        sent: usize,
        /// Events not seen within [`DEADLINE`], and events seen more than once.
        missed: usize,
        duplicates: usize,
    },
    /// No node or hardhat: why.
    Unavailable(String),
}

/// Sends `events` notifications, one at a time, to a worker watching with `poll_interval`.
pub async fn measure(
    runner: &Path,
    events: usize,
    poll_interval: Duration,
) -> Result<TaskHubFigures> {
    let chain = match DevChain::start().await {
        Ok(chain) => chain,
        Err(DevChainError::Unavailable(why)) => {
            eprintln!("taskhub: skipped: {why}");
            return Ok(TaskHubFigures::Unavailable(why));
        }
        Err(e) => return Err(e).context("start the hardhat node"),
    };
    let url = chain.rpc_url();
    let deployment = devchain::deploy(&url, DevChain::account(0), 3600).await?;
    let hub = TaskHub::new(
        deployment.task_hub,
        devchain::wallet_provider(&url, DevChain::account(2)),
    );
    hub.registerHub().send().await?.get_receipt().await?;

    let dir = tempfile::tempdir()?;
    let chains = dir.path().join("chains.json");
    let poll_interval_ms = poll_interval.as_millis() as u64;
    let config = json!({ "local": {
        "rpc_url": url,
        "chain_id": devchain::HARDHAT_CHAIN_ID,
        "confirmations": 0,
        "poll_interval_ms": poll_interval_ms,
    }});
    std::fs::write(&chains, config.to_string())?;
    let chains = chains.to_str().context("a UTF-8 temp path")?;
    let host = Host::start_with(runner, 10, &["--chains", chains]).await?;
    let sink = Sink::start().await;
    let script = format!(
        "export default {{ async tasks(rnr, ctx) {{\n\
           const start = performance.timeOrigin + performance.now();\n\
           if (ctx.source !== 'taskhub') return;\n\
           await (await fetch({}, {{ method: 'POST', body: JSON.stringify({{ start, tx: ctx.event.txHash }}) }})).text();\n\
         }} }};\n",
        e2e::js::lit(&sink.url("/event"))
    );
    let taskhub =
        json!({ "chain": "local", "address": deployment.task_hub.to_string(), "hub_id": 1 });
    host.create_body(json!({ "script": script, "taskhub": taskhub }))
        .await?;

    let mut latency_ms = Vec::with_capacity(events);
    let mut missed = 0;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(std::process::id());
    for i in 1..=events {
        let fraction = xorshift(&mut seed) as f64 / u64::MAX as f64;
        tokio::time::sleep(poll_interval.mul_f64(fraction)).await;
        let payload = format!("event {i}").into_bytes();
        let pending = hub.notify(U256::from(1), payload.into()).send().await?;
        let sent_ms = epoch_ms();
        let tx = pending.tx_hash().to_string();
        let seen = tokio::time::timeout(
            DEADLINE,
            sink.wait_for(
                |hits| hits.iter().any(|h| h.body.contains(&tx)),
                DEADLINE * 2,
            ),
        )
        .await;
        let Ok(hits) = seen else {
            missed += 1;
            continue;
        };
        let hit = hits
            .iter()
            .find(|h| h.body.contains(&tx))
            .context("the hit")?;
        let start = hit.json()["start"].as_f64().context("a start time")?;
        latency_ms.push(start - sent_ms);
        progress("taskhub event→tasks()", i, events);
    }
    // Let stragglers arrive, then count repeats.
    tokio::time::sleep(poll_interval * 3).await;
    let seen = sink.hits("/event").len();
    let duplicates = seen.saturating_sub(latency_ms.len());
    Ok(TaskHubFigures::Measured {
        poll_interval_ms,
        latency_ms,
        sent: events,
        missed,
        duplicates,
    })
}

fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or_default()
}

/// A small pseudo-random sequence (xorshift64): spreads the pauses, nothing more.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
