//! The worker host: one V8 isolate per Smart Worker, each on its own thread,
//! driven through a command channel and watched by a supervisor that enforces
//! the worker's limits.

mod bodies;
mod bootstrap;
pub mod console;
mod cpu_clock;
pub mod egress;
mod extension;
mod isolate;
mod loader;
pub mod memory;
mod spec;
pub mod status;
mod watchdog;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deno_core::v8;
use serde::Deserialize;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::sync::oneshot;

pub use bodies::ResponseChunk;
pub use spec::CodeIdentity;
pub use spec::ScriptKind;
pub use spec::WorkerId;
pub use spec::WorkerSpec;
pub use status::State;
pub use status::StatusView;
pub use status::TerminationReason;
pub use status::WorkerStatus;

/// What the runner lends every worker's isolate: shared by all workers of a runner.
#[derive(Debug)]
pub struct Services {
    /// Where the worker's fetch/WebSocket may connect.
    pub egress: Arc<egress::EgressPolicy>,
    /// The Omni Key stores behind `rnr.getOmniKey(store)`.
    pub keys: Arc<crate::keys::KeyStores>,
    /// What all workers' memory together may use.
    pub memory: Arc<memory::MemoryBudget>,
    /// Attestation documents for Escrin's `env.tpm` `get-attestation`.
    pub attestor: Arc<crate::attestation::Attestor>,
}

/// Per-worker resource limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Maximum V8 heap size of the isolate.
    pub heap_limit_mb: usize,
    /// Maximum memory of the isolate's array buffers (outside the heap).
    pub array_buffer_limit_mb: usize,
    /// Maximum wall time of one invocation (and of the script's evaluation).
    pub wall_limit: Duration,
    /// Maximum CPU time of one invocation.
    pub cpu_limit: Duration,
    /// Number of recent log lines kept per worker.
    pub log_lines: usize,
    /// The level at which the runner logs the worker's console lines.
    pub worker_log_level: console::WorkerLogLevel,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            heap_limit_mb: 128,
            array_buffer_limit_mb: 128,
            wall_limit: Duration::from_secs(30),
            cpu_limit: Duration::from_secs(10),
            log_lines: 200,
            worker_log_level: console::WorkerLogLevel::Info,
        }
    }
}

/// What a trigger tells the handler (becomes `ctx` fields / the scheduled event).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerInfo {
    /// `cron`, `manual`, `created` or `taskhub`.
    pub source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub scheduled_time: u64,
    /// What an event trigger saw (`ctx.event`): the TaskHub log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<serde_json::Value>,
}

impl TriggerInfo {
    pub fn now(source: &'static str, cron: Option<String>) -> Self {
        let scheduled_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        Self {
            source,
            cron,
            scheduled_time,
            event: None,
        }
    }

    /// A trigger carrying an event (`ctx.event`).
    pub fn with_event(source: &'static str, event: serde_json::Value) -> Self {
        Self {
            event: Some(event),
            ..Self::now(source, None)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The script failed to parse or evaluate; the message is JavaScript's.
    #[error("{0}")]
    Script(String),
    #[error(
        "the worker has a schedule or a taskhub trigger but no `tasks` (or `scheduled`) handler"
    )]
    NoTasksHandler,
    #[error("the script did not finish evaluating within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("the worker was stopped while evaluating its script: it {0}")]
    Stopped(TerminationReason),
    #[error("could not start the worker thread: {0}")]
    Thread(#[from] std::io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the worker is busy with a previous run")]
    Busy,
    #[error("the worker is not running ({0})")]
    Gone(String),
    #[error("the handler failed: {0}")]
    Handler(String),
    #[error("the worker was terminated: {0}")]
    Terminated(TerminationReason),
}

/// An HTTP request for a worker's fetch handler.
pub struct FetchRequest {
    pub method: String,
    /// The URL the worker sees (the runner's routing prefix removed).
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// The request body, chunk by chunk; `None` when there is none.
    pub body: Option<mpsc::Receiver<bytes::Bytes>>,
}

/// The head of a worker's response; its body follows on `body`.
pub struct FetchResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: mpsc::Receiver<bodies::ResponseChunk>,
}

/// The response head as the isolate's `dispatch` hook reports it.
#[derive(Deserialize)]
struct ResponseHead {
    status: u16,
    headers: Vec<(String, String)>,
}

/// Chunks of a response body buffered between the isolate and the client.
const RESPONSE_BODY_CHUNKS: usize = 8;

/// Messages from the host to a worker's isolate thread.
enum Command {
    RunTasks {
        info: TriggerInfo,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Fetch {
        info: String,
        request_body: mpsc::Receiver<bytes::Bytes>,
        response_body: mpsc::Sender<bodies::ResponseChunk>,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Stop,
}

/// What the isolate thread reports once the script has been evaluated.
struct Started {
    has_tasks: bool,
    has_fetch: bool,
}

/// The host's handle on a running worker.
pub struct WorkerHandle {
    spec_kind: ScriptKind,
    identity: CodeIdentity,
    has_tasks: bool,
    has_fetch: bool,
    status: Arc<WorkerStatus>,
    commands: mpsc::UnboundedSender<Command>,
    isolate: v8::IsolateHandle,
    cpu_clock: Option<cpu_clock::ThreadCpuClock>,
    limits: Limits,
    /// Calls under supervision (the CPU outside them is the watchdog's).
    calls: Arc<watchdog::Calls>,
}

impl fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("id", self.status.id())
            .field("kind", &self.spec_kind)
            .finish_non_exhaustive()
    }
}

impl WorkerHandle {
    /// Starts the worker's isolate, evaluates its script and returns once it
    /// is ready for triggers. `require_tasks` rejects a script without a tasks
    /// handler (used when the worker has a schedule).
    pub async fn start(
        spec: WorkerSpec,
        limits: Limits,
        services: Arc<Services>,
        require_tasks: bool,
    ) -> Result<Self, CreateError> {
        let status = Arc::new(WorkerStatus::new(
            spec.id.clone(),
            limits.log_lines,
            limits.worker_log_level,
        ));
        let kind = spec.kind;
        let identity = CodeIdentity::of(spec.kind, &spec.script);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (isolate_tx, isolate_rx) = oneshot::channel();
        let (started_tx, started_rx) = oneshot::channel();
        let memory =
            memory::WorkerMemory::new(services.memory.clone(), limits.array_buffer_limit_mb);
        isolate::spawn_thread(isolate::ThreadArgs {
            spec,
            limits,
            services,
            status: status.clone(),
            commands: command_rx,
            memory: memory.clone(),
            isolate_tx,
            started_tx,
        })?;
        let (isolate, cpu_clock) = isolate_rx
            .await
            .map_err(|_| CreateError::Script("the worker's isolate could not be created".into()))?;
        let mut handle = Self {
            spec_kind: kind,
            identity,
            has_tasks: false,
            has_fetch: false,
            status,
            commands,
            isolate,
            cpu_clock,
            limits,
            calls: Arc::default(),
        };
        handle.watch(memory);
        // The evaluation is supervised here (wall limit): not background CPU.
        let evaluating = handle.calls.begin();
        let started = tokio::time::timeout(limits.wall_limit, started_rx).await;
        drop(evaluating);
        match started {
            Ok(Ok(Ok(started))) => {
                if require_tasks && !started.has_tasks {
                    return Err(CreateError::NoTasksHandler);
                }
                handle.has_tasks = started.has_tasks;
                handle.has_fetch = started.has_fetch;
                handle.status.set_ready();
                Ok(handle)
            }
            // A limit that stopped the evaluation says so, rather than the termination's
            // "execution terminated".
            Ok(outcome) => Err(match (handle.status.termination_reason(), outcome) {
                (Some(reason), _) => CreateError::Stopped(reason),
                (None, Ok(Err(message))) => CreateError::Script(message),
                (None, _) => CreateError::Script(
                    "the worker's isolate stopped while evaluating the script".into(),
                ),
            }),
            Err(_) => {
                handle.stop(TerminationReason::WallTimeLimit {
                    limit_ms: limits.wall_limit.as_millis() as u64,
                });
                Err(CreateError::Timeout(limits.wall_limit))
            }
        }
    }

    pub fn status(&self) -> &Arc<WorkerStatus> {
        &self.status
    }

    pub fn kind(&self) -> ScriptKind {
        self.spec_kind
    }

    /// Whether the script has a tasks (or scheduled) handler.
    pub fn has_tasks(&self) -> bool {
        self.has_tasks
    }

    /// Whether the script has a fetch handler.
    pub fn has_fetch(&self) -> bool {
        self.has_fetch
    }

    pub fn identity(&self) -> CodeIdentity {
        self.identity
    }

    /// Runs the worker's tasks handler once, under the wall time limit. A
    /// run that would overlap a previous one is skipped.
    pub async fn run_tasks(&self, info: TriggerInfo) -> Result<(), RunError> {
        if !self.status.state().is_alive() {
            return Err(self.gone());
        }
        if !self.status.try_begin_run() {
            return Err(if self.status.state().is_alive() {
                RunError::Busy
            } else {
                self.gone()
            });
        }
        self.run_begun(info).await
    }

    /// Like [`WorkerHandle::run_tasks`], but a run in progress is waited for (looking every
    /// `poll`) instead of skipped: for events, which must not be lost. Also says whether it
    /// had to wait.
    pub async fn run_tasks_when_free(
        &self,
        info: TriggerInfo,
        poll: Duration,
    ) -> (Result<(), RunError>, bool) {
        let mut waited = false;
        loop {
            match self.status.try_begin_queued_run() {
                Some(true) => return (self.run_begun(info).await, waited),
                Some(false) => {
                    waited = true;
                    tokio::time::sleep(poll).await;
                }
                None => return (Err(self.gone()), waited),
            }
        }
    }

    /// The rest of a tasks run, once the status says it has begun.
    async fn run_begun(&self, info: TriggerInfo) -> Result<(), RunError> {
        let (reply, reply_rx) = oneshot::channel();
        if self
            .commands
            .send(Command::RunTasks { info, reply })
            .is_err()
        {
            self.status.end_run(None);
            return Err(self.gone());
        }
        let outcome = self.supervise(reply_rx).await;
        match &outcome {
            Ok(()) => self.status.end_run(None),
            Err(RunError::Handler(message)) => {
                self.status.log(
                    status::LogLevel::Error,
                    format!("tasks() failed: {message}"),
                );
                self.status.end_run(Some(message.clone()));
            }
            Err(_) => {}
        }
        outcome
    }

    /// Hands an HTTP request to the worker's fetch handler; resolves with the
    /// response head once the handler has answered (under the run limits),
    /// while the body keeps streaming. Requests may overlap.
    pub async fn fetch(&self, request: FetchRequest) -> Result<FetchResponse, RunError> {
        if !self.status.state().is_alive() {
            return Err(self.gone());
        }
        let info = serde_json::json!({
            "method": request.method,
            "url": request.url,
            "headers": request.headers,
            "hasBody": request.body.is_some(),
        })
        .to_string();
        let request_body = request.body.unwrap_or_else(|| mpsc::channel(1).1);
        let (response_body, body) = mpsc::channel(RESPONSE_BODY_CHUNKS);
        let (reply, reply_rx) = oneshot::channel();
        let command = Command::Fetch {
            info,
            request_body,
            response_body,
            reply,
        };
        if self.commands.send(command).is_err() {
            return Err(self.gone());
        }
        match self.supervise(reply_rx).await {
            Ok(head) => {
                let head: ResponseHead = serde_json::from_str(&head).map_err(|e| {
                    RunError::Handler(format!("the response head could not be read: {e}"))
                })?;
                Ok(FetchResponse {
                    status: head.status,
                    headers: head.headers,
                    body,
                })
            }
            Err(RunError::Handler(message)) => {
                self.status
                    .record_uncaught(format!("fetch handler failed: {message}"));
                Err(RunError::Handler(message))
            }
            Err(other) => Err(other),
        }
    }

    /// Waits for the isolate's answer under the wall and CPU limits;
    /// terminates the worker when it goes over one.
    async fn supervise<T>(
        &self,
        reply: oneshot::Receiver<Result<T, String>>,
    ) -> Result<T, RunError> {
        let _supervised = self.calls.begin();
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(self.limits.wall_limit, reply) => outcome,
            reason = self.cpu_limit_reached() => {
                self.stop(reason.clone());
                return Err(RunError::Terminated(reason));
            }
        };
        match outcome {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(message))) => Err(RunError::Handler(message)),
            Ok(Err(_)) => Err(self.gone()),
            Err(_) => {
                let reason = TerminationReason::WallTimeLimit {
                    limit_ms: self.limits.wall_limit.as_millis() as u64,
                };
                self.stop(reason.clone());
                Err(RunError::Terminated(reason))
            }
        }
    }

    /// Resolves when the isolate thread has used more CPU time than one
    /// invocation may, counted from now; never where there is no CPU clock.
    async fn cpu_limit_reached(&self) -> TerminationReason {
        let limit = self.limits.cpu_limit;
        let Some((clock, start)) = self.cpu_clock.and_then(|c| Some((c, c.used()?))) else {
            return std::future::pending().await;
        };
        let every = (limit / 20).clamp(Duration::from_millis(5), Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            match clock.used() {
                Some(now) if now.saturating_sub(start) > limit => {
                    return TerminationReason::CpuTimeLimit {
                        limit_ms: limit.as_millis() as u64,
                    }
                }
                Some(_) => {}
                None => return std::future::pending().await,
            }
        }
    }

    fn gone(&self) -> RunError {
        match self.status.termination_reason() {
            Some(reason) => RunError::Terminated(reason),
            None => RunError::Gone(format!("{:?}", self.status.state()).to_lowercase()),
        }
    }

    /// Stops the worker: interrupts any running JavaScript and ends its thread.
    pub fn stop(&self, reason: TerminationReason) {
        if self.status.state().is_alive() {
            tracing::info!(worker = %self.status.id(), %reason, "stopping worker");
        }
        self.halt(reason);
    }

    fn halt(&self, reason: TerminationReason) {
        halt(&self.status, &self.isolate, &self.commands, reason);
    }

    /// Starts the worker's watchdog ([`watchdog`]): its memory is measured, and it is
    /// terminated when the CPU it uses outside calls goes over its allowance.
    fn watch(&self, memory: Arc<memory::WorkerMemory>) {
        let (calls, status) = (self.calls.clone(), self.status.clone());
        let (isolate, commands) = (self.isolate.clone(), self.commands.clone());
        let (clock, limit) = (self.cpu_clock, self.limits.cpu_limit);
        tokio::spawn(async move {
            let alive = || status.state().is_alive();
            let measure = || memory.request_measure(&isolate);
            if watchdog::watch(clock, calls, limit, alive, measure).await {
                let reason = TerminationReason::BackgroundCpuLimit {
                    limit_ms: limit.as_millis() as u64,
                };
                tracing::warn!(worker = %status.id(), %reason, "stopping worker");
                halt(&status, &isolate, &commands, reason);
            }
        });
    }
}

/// Interrupts any running JavaScript of a worker and ends its thread.
fn halt(
    status: &WorkerStatus,
    isolate: &v8::IsolateHandle,
    commands: &mpsc::UnboundedSender<Command>,
    reason: TerminationReason,
) {
    status.terminate(reason);
    isolate.terminate_execution();
    let _ = commands.send(Command::Stop);
}

impl Drop for WorkerHandle {
    // A handle dropped without `stop` belongs to a worker that never got
    // admitted (its script failed): end its thread quietly.
    fn drop(&mut self) {
        self.halt(TerminationReason::Deleted);
    }
}
