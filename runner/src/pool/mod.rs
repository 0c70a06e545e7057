//! The pool owns every worker: it admits new ones within the configured
//! limits, wires their triggers, keeps their records (with a state directory)
//! and brings them back at start-up, and removes them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::time::SystemTime;

use uuid::Uuid;

mod restore;
mod views;

pub use views::PublicWorkerInfo;
pub use views::RestoreSummary;
pub use views::Restored;
pub use views::WorkerInfo;

use crate::ownership::TokenHash;
use crate::records::to_millis;
use crate::records::Records;
use crate::records::RecordsError;
use crate::records::WorkerRecord;
use crate::records::RECORD_VERSION;
use crate::triggers::cron::CronTrigger;
use crate::triggers::cron::Schedule;
use crate::triggers::taskhub::TaskHubJob;
use crate::triggers::taskhub::TaskHubSpec;
use crate::triggers::taskhub::TaskHubTrigger;
use crate::worker::CreateError;
use crate::worker::Limits;
use crate::worker::RunError;
use crate::worker::ScriptKind;
use crate::worker::Services;
use crate::worker::StatusView;
use crate::worker::TerminationReason;
use crate::worker::TriggerInfo;
use crate::worker::WorkerHandle;
use crate::worker::WorkerId;
use crate::worker::WorkerSpec;

/// A request to create a worker, already validated.
#[derive(Debug)]
pub struct NewWorker {
    pub kind: ScriptKind,
    pub script: String,
    /// JSON object text; `{}` when none was given.
    pub config_json: String,
    pub schedule: Option<Schedule>,
    /// A host name whose requests go to this worker's fetch handler.
    pub hostname: Option<String>,
    /// The hash of the management token handed to the creator.
    pub token_hash: TokenHash,
    /// A TaskHub trigger (prepared: its start block set).
    pub taskhub: Option<TaskHubSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the runner already hosts its maximum of {0} workers")]
    Full(usize),
    #[error("the runner's memory budget for workers ({0} MiB) is used up; try again later")]
    MemoryBudget(usize),
    #[error(transparent)]
    Create(#[from] CreateError),
    #[error("hostname {0} already belongs to another worker")]
    HostnameTaken(String),
    #[error("hostname {0}: the worker has no fetch handler to answer it")]
    HostnameWithoutFetch(String),
    #[error("no worker with id {0}")]
    NotFound(WorkerId),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("the worker could not be stored durably: {0}")]
    Persist(#[from] RecordsError),
    #[error("worker {0} could not be brought back at start-up: {1}")]
    NotRestored(WorkerId, String),
}

struct Entry {
    handle: Arc<WorkerHandle>,
    schedule: Option<Schedule>,
    hostname: Option<String>,
    created: SystemTime,
    cron_job: Option<Uuid>,
    taskhub: Option<TaskHubJob>,
    token_hash: TokenHash,
    restored: Option<Restored>,
}

/// A stored worker that could not be started again at start-up: kept (with its record) and
/// shown as failed until deleted.
struct Failed {
    kind: ScriptKind,
    schedule: Option<String>,
    hostname: Option<String>,
    code_hash: String,
    created: SystemTime,
    token_hash: TokenHash,
    error: String,
    restored: Restored,
}

impl Failed {
    fn public_info(&self, id: &WorkerId) -> PublicWorkerInfo {
        PublicWorkerInfo {
            id: id.clone(),
            kind: self.kind,
            schedule: self.schedule.clone(),
            state: crate::worker::State::Failed,
            created: self.created,
            last_run: None,
        }
    }

    fn info(&self, id: &WorkerId) -> WorkerInfo {
        WorkerInfo {
            id: id.clone(),
            kind: self.kind,
            schedule: self.schedule.clone(),
            hostname: self.hostname.clone(),
            code_hash: self.code_hash.clone(),
            created: self.created,
            status: StatusView {
                state: crate::worker::State::Failed,
                reason: Some(format!("not restored: {}", self.error)),
                last_run: None,
                last_error: Some(self.error.clone()),
                runs: 0,
                errors: 0,
                skipped: 0,
            },
            restored: Some(self.restored),
            taskhub: None,
        }
    }
}

impl Entry {
    fn public_info(&self) -> PublicWorkerInfo {
        let status = self.handle.status().view();
        PublicWorkerInfo {
            id: self.handle.status().id().clone(),
            kind: self.handle.kind(),
            schedule: self.schedule.as_ref().map(|s| s.as_str().to_string()),
            state: status.state,
            created: self.created,
            last_run: status.last_run,
        }
    }

    fn info(&self) -> WorkerInfo {
        WorkerInfo {
            id: self.handle.status().id().clone(),
            kind: self.handle.kind(),
            schedule: self.schedule.as_ref().map(|s| s.as_str().to_string()),
            hostname: self.hostname.clone(),
            code_hash: self.handle.identity().to_string(),
            created: self.created,
            status: self.handle.status().view(),
            restored: self.restored,
            taskhub: self.taskhub.as_ref().map(TaskHubJob::view),
        }
    }
}

#[derive(Default)]
struct Slots {
    entries: BTreeMap<WorkerId, Entry>,
    failed: BTreeMap<WorkerId, Failed>,
    /// Admitted but still starting: they count against the maximum.
    starting: usize,
}

/// A worker the pool knows: running, or kept from a record that could not start again.
enum Known<'a> {
    Live(&'a Entry),
    Failed(&'a Failed),
}

impl Slots {
    fn find(&self, id: &WorkerId) -> Option<Known<'_>> {
        match self.entries.get(id) {
            Some(entry) => Some(Known::Live(entry)),
            None => self.failed.get(id).map(Known::Failed),
        }
    }

    fn by_hostname(&self, name: &str) -> Option<&Entry> {
        self.entries
            .values()
            .find(|e| e.hostname.as_deref() == Some(name))
    }

    fn alive(&self) -> usize {
        self.starting
            + self
                .entries
                .values()
                .filter(|e| e.handle.status().state().is_alive())
                .count()
    }
}

/// All workers of this runner.
pub struct Pool {
    limits: Limits,
    services: Arc<Services>,
    max_workers: usize,
    cron: CronTrigger,
    taskhub: TaskHubTrigger,
    /// The workers' durable records; `None` runs stateless.
    records: Option<Records>,
    slots: RwLock<Slots>,
}

impl Pool {
    pub fn new(
        limits: Limits,
        services: Arc<Services>,
        max_workers: usize,
        cron: CronTrigger,
        taskhub: TaskHubTrigger,
        records: Option<Records>,
    ) -> Arc<Self> {
        Arc::new(Self {
            limits,
            services,
            max_workers,
            cron,
            taskhub,
            records,
            slots: RwLock::new(Slots::default()),
        })
    }

    /// The TaskHub trigger (creation checks a requested trigger against its chain).
    pub fn taskhub(&self) -> &TaskHubTrigger {
        &self.taskhub
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Slots> {
        self.slots.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Slots> {
        self.slots.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a worker: evaluates its script, registers its schedule, stores its record
    /// (durably, when the runner has a state directory), and runs its tasks handler once in
    /// the background (as Escrin did).
    pub async fn create(self: &Arc<Self>, new: NewWorker) -> Result<WorkerId, PoolError> {
        {
            let mut slots = self.write();
            self.check_room(&slots)?;
            if let Some(name) = &new.hostname {
                if slots.by_hostname(name).is_some() {
                    return Err(PoolError::HostnameTaken(name.clone()));
                }
            }
            slots.starting += 1;
        }
        let id = WorkerId::new_random();
        let created = SystemTime::now();
        let record = self.records.as_ref().map(|_| WorkerRecord {
            version: RECORD_VERSION,
            id: id.clone(),
            kind: new.kind,
            script: new.script.clone(),
            config_json: new.config_json.clone(),
            schedule: new.schedule.as_ref().map(|s| s.as_str().to_owned()),
            hostname: new.hostname.clone(),
            token_hash: new.token_hash,
            created_ms: to_millis(created),
            taskhub: new.taskhub.as_ref().map(TaskHubSpec::to_record),
        });
        let result = self.admit(id.clone(), new, created, record).await;
        self.write().starting -= 1;
        let entry = result?;
        let handle = entry.handle.clone();
        let rejected = {
            let mut slots = self.write();
            let taken = entry
                .hostname
                .clone()
                .filter(|name| slots.by_hostname(name).is_some());
            match taken {
                Some(name) => Some((name, entry)),
                None => {
                    slots.entries.insert(id.clone(), entry);
                    None
                }
            }
        };
        if let Some((name, entry)) = rejected {
            self.discard(&id, &entry).await;
            return Err(PoolError::HostnameTaken(name));
        }
        tracing::info!(worker = %id, kind = handle.kind().as_str(), code = %handle.identity(), durable = self.records.is_some(), "worker created");
        if handle.has_tasks() {
            tokio::spawn(async move {
                run_logged(&handle, TriggerInfo::now("created", None)).await;
            });
        }
        Ok(id)
    }

    /// Whether one more worker may start: fewer than the maximum are alive (or starting) and
    /// the memory budget has room.
    fn check_room(&self, slots: &Slots) -> Result<(), PoolError> {
        if slots.alive() >= self.max_workers {
            return Err(PoolError::Full(self.max_workers));
        }
        if !self.services.memory.has_room() {
            return Err(PoolError::MemoryBudget(self.services.memory.limit_mb()));
        }
        Ok(())
    }

    /// Starts the worker and, when there is a record to keep, stores it before anyone hears
    /// of the worker; a worker whose record could not be stored is stopped again.
    async fn admit(
        self: &Arc<Self>,
        id: WorkerId,
        new: NewWorker,
        created: SystemTime,
        record: Option<WorkerRecord>,
    ) -> Result<Entry, PoolError> {
        let entry = self.start(id.clone(), new, created, None).await?;
        if let (Some(records), Some(record)) = (&self.records, record) {
            if let Err(error) = records.put(&record).await {
                tracing::error!(worker = %id, %error, "the worker's record could not be stored: creation refused");
                self.stop_entry(&entry);
                return Err(error.into());
            }
        }
        Ok(entry)
    }

    /// Undoes a creation that lost a race: stops the worker and removes its record.
    async fn discard(&self, id: &WorkerId, entry: &Entry) {
        self.stop_entry(entry);
        if let Some(records) = &self.records {
            if let Err(error) = records.delete(id).await {
                tracing::error!(worker = %id, %error, "the record of a refused worker could not be removed");
            }
        }
    }

    fn stop_entry(&self, entry: &Entry) {
        if let Some(job) = entry.cron_job {
            self.cron.remove(job);
        }
        if let Some(job) = &entry.taskhub {
            job.stop();
        }
        entry.handle.stop(TerminationReason::Deleted);
    }

    async fn start(
        self: &Arc<Self>,
        id: WorkerId,
        new: NewWorker,
        created: SystemTime,
        restored: Option<Restored>,
    ) -> Result<Entry, PoolError> {
        let spec = WorkerSpec {
            id: id.clone(),
            kind: new.kind,
            script: new.script,
            config_json: new.config_json,
        };
        let handle = Arc::new(
            WorkerHandle::start(
                spec,
                self.limits,
                self.services.clone(),
                new.schedule.is_some() || new.taskhub.is_some(),
            )
            .await?,
        );
        if let Some(name) = &new.hostname {
            if !handle.has_fetch() {
                handle.stop(TerminationReason::Deleted);
                return Err(PoolError::HostnameWithoutFetch(name.clone()));
            }
        }
        let cron_job = match &new.schedule {
            Some(schedule) => {
                let weak = Arc::downgrade(&handle);
                let cron = schedule.to_string();
                Some(self.cron.add(schedule, move || {
                    let weak = weak.clone();
                    let cron = cron.clone();
                    async move {
                        if let Some(handle) = weak.upgrade() {
                            run_logged(&handle, TriggerInfo::now("cron", Some(cron))).await;
                        }
                    }
                }))
            }
            None => None,
        };
        let taskhub = match &new.taskhub {
            Some(spec) => Some(
                self.taskhub
                    .start(
                        id.clone(),
                        Arc::downgrade(&handle),
                        spec,
                        self.records.clone(),
                        restored.is_some(),
                    )
                    .await,
            ),
            None => None,
        };
        Ok(Entry {
            handle,
            schedule: new.schedule,
            hostname: new.hostname,
            created,
            cron_job,
            taskhub,
            token_hash: new.token_hash,
            restored,
        })
    }

    pub fn list(&self) -> Vec<PublicWorkerInfo> {
        let slots = self.read();
        let mut list: Vec<PublicWorkerInfo> =
            slots.entries.values().map(Entry::public_info).collect();
        list.extend(slots.failed.iter().map(|(id, f)| f.public_info(id)));
        list
    }

    pub fn get_public(&self, id: &WorkerId) -> Result<PublicWorkerInfo, PoolError> {
        match self.read().find(id) {
            Some(Known::Live(entry)) => Ok(entry.public_info()),
            Some(Known::Failed(failed)) => Ok(failed.public_info(id)),
            None => Err(PoolError::NotFound(id.clone())),
        }
    }

    /// The hash of the worker's management token, if the worker exists.
    pub fn token_hash(&self, id: &WorkerId) -> Option<TokenHash> {
        match self.read().find(id)? {
            Known::Live(entry) => Some(entry.token_hash),
            Known::Failed(failed) => Some(failed.token_hash),
        }
    }

    pub fn get(&self, id: &WorkerId) -> Result<WorkerInfo, PoolError> {
        match self.read().find(id) {
            Some(Known::Live(entry)) => Ok(entry.info()),
            Some(Known::Failed(failed)) => Ok(failed.info(id)),
            None => Err(PoolError::NotFound(id.clone())),
        }
    }

    pub fn logs(&self, id: &WorkerId) -> Result<Vec<crate::worker::status::LogLine>, PoolError> {
        self.handle(id).map(|h| h.status().logs())
    }

    /// The worker that answers for host name `name`.
    pub fn by_hostname(&self, name: &str) -> Option<WorkerId> {
        self.read()
            .by_hostname(name)
            .map(|e| e.handle.status().id().clone())
    }

    pub fn handle(&self, id: &WorkerId) -> Result<Arc<WorkerHandle>, PoolError> {
        match self.read().find(id) {
            Some(Known::Live(entry)) => Ok(entry.handle.clone()),
            Some(Known::Failed(failed)) => {
                Err(PoolError::NotRestored(id.clone(), failed.error.clone()))
            }
            None => Err(PoolError::NotFound(id.clone())),
        }
    }

    /// Runs the worker's tasks handler now and waits for the outcome.
    pub async fn run_tasks(&self, id: &WorkerId) -> Result<(), PoolError> {
        let handle = self.handle(id)?;
        Ok(handle.run_tasks(TriggerInfo::now("manual", None)).await?)
    }

    /// Removes the worker's record (durably, before answering), terminates it and forgets it.
    pub async fn delete(&self, id: &WorkerId) -> Result<(), PoolError> {
        if self.read().find(id).is_none() {
            return Err(PoolError::NotFound(id.clone()));
        }
        if let Some(records) = &self.records {
            records.delete(id).await?;
        }
        let (entry, failed) = {
            let mut slots = self.write();
            (slots.entries.remove(id), slots.failed.remove(id))
        };
        match (entry, failed) {
            (Some(entry), _) => self.stop_entry(&entry),
            (None, Some(_)) => {}
            (None, None) => return Err(PoolError::NotFound(id.clone())),
        }
        if let Some(records) = &self.records {
            // After the trigger stopped; a left-over position without its worker is ignored.
            if let Err(error) = records.delete_taskhub_cursor(id).await {
                tracing::warn!(worker = %id, %error, "the TaskHub position of a deleted worker could not be removed");
            }
        }
        tracing::info!(worker = %id, "worker deleted");
        Ok(())
    }

    /// Stops every worker (runner shutdown).
    pub fn shutdown(&self) {
        for entry in self.read().entries.values() {
            entry.handle.stop(TerminationReason::RunnerShutdown);
        }
    }
}

/// Runs tasks from a trigger with nobody waiting for the answer: log the outcome.
async fn run_logged(handle: &WorkerHandle, info: TriggerInfo) {
    let source = info.source;
    let id = handle.status().id().clone();
    match handle.run_tasks(info).await {
        Ok(()) => tracing::debug!(worker = %id, source, "tasks() finished"),
        Err(RunError::Busy) => {
            tracing::warn!(worker = %id, source, "tasks() still running from an earlier trigger: this run is skipped")
        }
        Err(error) => tracing::warn!(worker = %id, source, %error, "tasks() failed"),
    }
}
