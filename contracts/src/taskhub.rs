//! A watcher of `TasksAvailable` logs (issue 8): polls `eth_getLogs` block range by block
//! range, behind a confirmation depth, and resumes from a block the caller saved. Two hubs
//! ([`HubKind`]): ours (`TaskHub.TasksAvailable(uint256 indexed hubId, address indexed app,
//! bytes payload)`) and Escrin's (`TasksAvailable(address indexed generator, bytes32 indexed
//! context)`, issue 17).
//!
//! Delivery: every log in blocks `[next_block, head - confirmations]` is returned once per
//! watcher, in chain order, then `next_block` moves past that range. Persist
//! [`TaskHubWatcher::next_block`] after handling a batch and pass it back as
//! [`WatchConfig::from_block`] after a restart to neither miss nor repeat events. Reorganisations
//! deeper than `confirmations` are not detected (on Sapphire blocks are final at once).

use std::future::IntoFuture;
use std::time::Duration;

pub use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use alloy::transports::{RpcError, TransportErrorKind};
use tokio::sync::mpsc;

use crate::bindings::{EscrinTaskHub, TaskHub};

/// Which contract's `TasksAvailable` event is watched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HubKind {
    /// Ours (`contracts/sol/TaskHub.sol`): `TasksAvailable(uint256 indexed hubId, address
    /// indexed app, bytes payload)`.
    #[default]
    SmartWorker,
    /// Escrin's `ITaskHub` (and `contracts/sol/EscrinTaskHub.sol`): `TasksAvailable(address
    /// indexed generator, bytes32 indexed context)`, emitted by `notify()` (context zero) and
    /// `notify(bytes32)`; anyone may notify, the generator is the caller.
    Escrin,
}

impl HubKind {
    /// The event's topic 0.
    pub fn signature_hash(self) -> B256 {
        match self {
            HubKind::SmartWorker => TaskHub::TasksAvailable::SIGNATURE_HASH,
            HubKind::Escrin => EscrinTaskHub::TasksAvailable::SIGNATURE_HASH,
        }
    }
}

/// One `TasksAvailable` log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskEvent {
    /// The block it is in.
    pub block_number: u64,
    /// The transaction that emitted it.
    pub tx_hash: B256,
    /// Its index in the block.
    pub log_index: u64,
    /// The event's own fields.
    pub data: EventData,
}

/// The fields of a `TasksAvailable` log, by hub kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventData {
    /// Ours.
    SmartWorker {
        /// The hub.
        hub_id: U256,
        /// The hub's owner that rang it.
        app: Address,
        /// The app's payload (opaque).
        payload: Bytes,
    },
    /// Escrin's.
    Escrin {
        /// The account or contract that called `notify` (e.g. NFTrout's contract).
        generator: Address,
        /// Its context (zero from `notify()`).
        context: B256,
    },
}

/// What to watch and how.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// JSON-RPC URL.
    pub rpc_url: String,
    /// The hub contract.
    pub hub: Address,
    /// Its kind. Default: ours.
    pub kind: HubKind,
    /// Ours only: only this hub's events (`None`: every hub of the contract).
    pub hub_id: Option<U256>,
    /// Escrin's only: only events of this generator (`None`: every generator).
    pub generator: Option<Address>,
    /// Escrin's only: only events with this context (`None`: any).
    pub context: Option<B256>,
    /// Blocks on top of a log's block before it is delivered (0: at the head). Default 1.
    pub confirmations: u64,
    /// Where to start: a saved [`TaskHubWatcher::next_block`], or `None` for "from now on".
    pub from_block: Option<u64>,
    /// Pause between polls in [`TaskHubWatcher::run`]. Default 2 s.
    pub poll_interval: Duration,
    /// Largest block range per `eth_getLogs` (nodes cap it). Default 1000.
    pub max_block_range: u64,
    /// Limit for each RPC request. Default 30 s.
    pub rpc_timeout: Duration,
}

impl WatchConfig {
    /// A configuration with the defaults above, starting from now.
    pub fn new(rpc_url: impl Into<String>, hub: Address) -> Self {
        WatchConfig {
            rpc_url: rpc_url.into(),
            hub,
            kind: HubKind::SmartWorker,
            hub_id: None,
            generator: None,
            context: None,
            confirmations: 1,
            from_block: None,
            poll_interval: Duration::from_secs(2),
            max_block_range: 1000,
            rpc_timeout: Duration::from_secs(30),
        }
    }
}

/// Why watching failed.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The configuration is wrong.
    #[error("bad TaskHub watcher configuration: {0}")]
    BadConfig(String),
    /// The RPC node cannot be reached.
    #[error("RPC node unreachable: {0}")]
    Unreachable(String),
    /// An RPC request took longer than `rpc_timeout`.
    #[error("RPC timed out after {0:?}")]
    Timeout(Duration),
    /// The node answered with an error, or a log did not decode.
    #[error("RPC error: {0}")]
    Rpc(String),
}

/// What [`TaskHubWatcher::probe`] found out about the node and the hub address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubProbe {
    /// The chain id the node answers.
    pub chain_id: u64,
    /// Its head block number.
    pub head: u64,
    /// Whether there is code at the hub address.
    pub has_code: bool,
    /// `hubCount()` of the contract there, when it answers that call (our `TaskHub` does,
    /// Escrin's does not).
    pub hub_count: Option<U256>,
}

/// Polls a `TaskHub` for `TasksAvailable` logs.
pub struct TaskHubWatcher {
    config: WatchConfig,
    provider: DynProvider,
    next_block: Option<u64>,
}

impl TaskHubWatcher {
    /// A watcher (no request is made yet).
    pub fn new(config: WatchConfig) -> Result<Self, WatchError> {
        if config.hub == Address::ZERO {
            return Err(WatchError::BadConfig("the hub address is zero".into()));
        }
        match config.kind {
            HubKind::SmartWorker if config.generator.is_some() || config.context.is_some() => {
                return Err(WatchError::BadConfig(
                    "generator and context filter Escrin's hubs only".into(),
                ))
            }
            HubKind::Escrin if config.hub_id.is_some() => {
                return Err(WatchError::BadConfig(
                    "Escrin's hubs have no hub ids (filter by generator or context)".into(),
                ))
            }
            _ => {}
        }
        if config.max_block_range == 0 {
            return Err(WatchError::BadConfig(
                "max_block_range must be positive".into(),
            ));
        }
        let url = config
            .rpc_url
            .parse()
            .map_err(|e| WatchError::BadConfig(format!("RPC URL {:?}: {e}", config.rpc_url)))?;
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_http(url)
            .erased();
        Ok(TaskHubWatcher {
            next_block: config.from_block,
            config,
            provider,
        })
    }

    /// The first block not yet looked at: save it to resume after a restart. `None` until the
    /// first poll of a watcher started "from now on".
    pub fn next_block(&self) -> Option<u64> {
        self.next_block
    }

    /// Checks the node and the address before watching: chain id, head, code at the address
    /// and whether the contract answers `hubCount()`. Fails only when the node does not answer
    /// (`Unreachable`, `Timeout`, `Rpc`); what it found is for the caller to judge.
    pub async fn probe(&self) -> Result<HubProbe, WatchError> {
        let chain_id = self.request(self.provider.get_chain_id()).await?;
        let head = self.request(self.provider.get_block_number()).await?;
        let code = self
            .request(self.provider.get_code_at(self.config.hub).into_future())
            .await?;
        let hub_count = if code.is_empty() {
            None
        } else {
            let hub = TaskHub::new(self.config.hub, &self.provider);
            // A revert or undecodable answer: not a TaskHub (the node itself answered).
            match tokio::time::timeout(self.config.rpc_timeout, hub.hubCount().call()).await {
                Err(_) => return Err(WatchError::Timeout(self.config.rpc_timeout)),
                Ok(Ok(count)) => Some(count),
                Ok(Err(alloy::contract::Error::TransportError(RpcError::Transport(kind)))) => {
                    return Err(WatchError::Unreachable(kind.to_string()))
                }
                Ok(Err(_)) => None,
            }
        };
        Ok(HubProbe {
            chain_id,
            head,
            has_code: !code.is_empty(),
            hub_count,
        })
    }

    /// One round: every new log up to the confirmed head, in chain order.
    pub async fn poll(&mut self) -> Result<Vec<TaskEvent>, WatchError> {
        let head = self.request(self.provider.get_block_number()).await?;
        // "From now on": blocks after the head of the first poll.
        let mut from = *self.next_block.get_or_insert(head + 1);
        let safe = match head.checked_sub(self.config.confirmations) {
            Some(safe) => safe,
            None => return Ok(Vec::new()),
        };
        let mut events = Vec::new();
        while from <= safe {
            let to = safe.min(from + self.config.max_block_range - 1);
            let filter = self.filter().from_block(from).to_block(to);
            let logs = self.request(self.provider.get_logs(&filter)).await?;
            for log in logs {
                events.push(TaskEvent {
                    block_number: log.block_number.unwrap_or(0),
                    tx_hash: log.transaction_hash.unwrap_or_default(),
                    log_index: log.log_index.unwrap_or(0),
                    data: decode(self.config.kind, &log)?,
                });
            }
            from = to + 1;
        }
        self.next_block = Some(from);
        Ok(events)
    }

    /// The address, the event and the configured topic filters.
    fn filter(&self) -> Filter {
        let mut filter = Filter::new()
            .address(self.config.hub)
            .event_signature(self.config.kind.signature_hash());
        if let Some(id) = self.config.hub_id {
            filter = filter.topic1(B256::from(id));
        }
        if let Some(generator) = self.config.generator {
            filter = filter.topic1(generator.into_word());
        }
        if let Some(context) = self.config.context {
            filter = filter.topic2(context);
        }
        filter
    }

    /// Polls every `poll_interval` and sends each event to `events` until the receiver is
    /// dropped. RPC failures are logged and retried at the next interval (the position does not
    /// move on a failed poll). To resume after a restart, persist the last handled event's
    /// block and log index, start from that block and skip events up to that log index.
    pub async fn run(mut self, events: mpsc::Sender<TaskEvent>) {
        loop {
            match self.poll().await {
                Ok(batch) => {
                    for event in batch {
                        if events.send(event).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => tracing::warn!(hub = %self.config.hub, "TaskHub watcher: {e}"),
            }
            tokio::select! {
                _ = events.closed() => return,
                _ = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
    }

    async fn request<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, RpcError<TransportErrorKind>>>,
    ) -> Result<T, WatchError> {
        match tokio::time::timeout(self.config.rpc_timeout, fut).await {
            Err(_) => Err(WatchError::Timeout(self.config.rpc_timeout)),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(RpcError::Transport(kind))) => Err(WatchError::Unreachable(kind.to_string())),
            Ok(Err(e)) => Err(WatchError::Rpc(e.to_string())),
        }
    }
}

/// A log's fields for a hub of `kind` (the filter already matched its topic 0).
fn decode(kind: HubKind, log: &alloy::rpc::types::Log) -> Result<EventData, WatchError> {
    let undecodable = |e: alloy::sol_types::Error| {
        WatchError::Rpc(format!("undecodable TasksAvailable log: {e}"))
    };
    Ok(match kind {
        HubKind::SmartWorker => {
            let event = log
                .log_decode::<TaskHub::TasksAvailable>()
                .map_err(undecodable)?
                .inner
                .data;
            EventData::SmartWorker {
                hub_id: event.hubId,
                app: event.app,
                payload: event.payload,
            }
        }
        HubKind::Escrin => {
            let event = log
                .log_decode::<EscrinTaskHub::TasksAvailable>()
                .map_err(undecodable)?
                .inner
                .data;
            EventData::Escrin {
                generator: event.generator,
                context: event.context,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The event Escrin's hub emits, as Escrin declares it, and ours: distinct topics.
    #[test]
    fn escrin_event_signature_is_tasks_available_address_bytes32() {
        assert_eq!(
            HubKind::Escrin.signature_hash(),
            alloy::primitives::keccak256("TasksAvailable(address,bytes32)")
        );
        assert_eq!(
            HubKind::SmartWorker.signature_hash(),
            alloy::primitives::keccak256("TasksAvailable(uint256,address,bytes)")
        );
    }

    #[test]
    fn filters_belong_to_their_hub_kind() {
        let hub = Address::repeat_byte(1);
        let mut config = WatchConfig::new("http://127.0.0.1:9/", hub);
        config.generator = Some(Address::repeat_byte(2));
        assert!(matches!(
            TaskHubWatcher::new(config.clone()),
            Err(WatchError::BadConfig(_))
        ));
        config.kind = HubKind::Escrin;
        assert!(TaskHubWatcher::new(config.clone()).is_ok());
        config.hub_id = Some(U256::from(1));
        assert!(matches!(
            TaskHubWatcher::new(config),
            Err(WatchError::BadConfig(_))
        ));
    }
}
