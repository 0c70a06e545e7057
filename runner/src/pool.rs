//! The pool owns every worker: it admits new ones within the configured
//! limits, wires their triggers, and removes them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::time::SystemTime;

use serde::Serialize;
use uuid::Uuid;

use crate::ownership::TokenHash;
use crate::triggers::cron::CronTrigger;
use crate::triggers::cron::Schedule;
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
}

/// What anyone may see of a worker: no code hash, host name, errors or counters.
#[derive(Debug, Clone, Serialize)]
pub struct PublicWorkerInfo {
    pub id: WorkerId,
    #[serde(rename = "type")]
    pub kind: ScriptKind,
    pub schedule: Option<String>,
    pub state: crate::worker::State,
    #[serde(serialize_with = "rfc3339")]
    pub created: SystemTime,
    #[serde(with = "crate::worker::status::humantime_serde_compat::option")]
    pub last_run: Option<SystemTime>,
}

/// What the API shows of a worker (never its config).
#[derive(Debug, Clone, Serialize)]
pub struct WorkerInfo {
    pub id: WorkerId,
    #[serde(rename = "type")]
    pub kind: ScriptKind,
    pub schedule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub code_hash: String,
    #[serde(serialize_with = "rfc3339")]
    pub created: SystemTime,
    #[serde(flatten)]
    pub status: StatusView,
}

fn rfc3339<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_rfc3339_millis(*time).to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the runner already hosts its maximum of {0} workers")]
    Full(usize),
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
}

struct Entry {
    handle: Arc<WorkerHandle>,
    schedule: Option<Schedule>,
    hostname: Option<String>,
    created: SystemTime,
    cron_job: Option<Uuid>,
    token_hash: TokenHash,
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
        }
    }
}

#[derive(Default)]
struct Slots {
    entries: BTreeMap<WorkerId, Entry>,
    /// Admitted but still starting: they count against the maximum.
    starting: usize,
}

impl Slots {
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
    slots: RwLock<Slots>,
}

impl Pool {
    pub fn new(
        limits: Limits,
        services: Arc<Services>,
        max_workers: usize,
        cron: CronTrigger,
    ) -> Arc<Self> {
        Arc::new(Self {
            limits,
            services,
            max_workers,
            cron,
            slots: RwLock::new(Slots::default()),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Slots> {
        self.slots.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Slots> {
        self.slots.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a worker: evaluates its script, registers its schedule, and
    /// runs its tasks handler once in the background (as Escrin did).
    pub async fn create(self: &Arc<Self>, new: NewWorker) -> Result<WorkerId, PoolError> {
        {
            let mut slots = self.write();
            if slots.alive() >= self.max_workers {
                return Err(PoolError::Full(self.max_workers));
            }
            if let Some(name) = &new.hostname {
                if slots.by_hostname(name).is_some() {
                    return Err(PoolError::HostnameTaken(name.clone()));
                }
            }
            slots.starting += 1;
        }
        let result = self.start(new).await;
        let mut slots = self.write();
        slots.starting -= 1;
        let (id, entry) = result?;
        if let Some(name) = &entry.hostname {
            if slots.by_hostname(name).is_some() {
                entry.handle.stop(TerminationReason::Deleted);
                return Err(PoolError::HostnameTaken(name.clone()));
            }
        }
        let runs_tasks = entry.handle.has_tasks();
        let handle = entry.handle.clone();
        slots.entries.insert(id.clone(), entry);
        drop(slots);
        tracing::info!(worker = %id, kind = handle.kind().as_str(), code = %handle.identity(), "worker created");
        if runs_tasks {
            tokio::spawn(async move {
                run_logged(&handle, TriggerInfo::now("created", None)).await;
            });
        }
        Ok(id)
    }

    async fn start(self: &Arc<Self>, new: NewWorker) -> Result<(WorkerId, Entry), PoolError> {
        let id = WorkerId::new_random();
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
                new.schedule.is_some(),
            )
            .await?,
        );
        if let Some(name) = &new.hostname {
            if !handle.has_fetch() {
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
        Ok((
            id,
            Entry {
                handle,
                schedule: new.schedule,
                hostname: new.hostname,
                created: SystemTime::now(),
                cron_job,
                token_hash: new.token_hash,
            },
        ))
    }

    pub fn list(&self) -> Vec<PublicWorkerInfo> {
        self.read()
            .entries
            .values()
            .map(Entry::public_info)
            .collect()
    }

    pub fn get_public(&self, id: &WorkerId) -> Result<PublicWorkerInfo, PoolError> {
        self.read()
            .entries
            .get(id)
            .map(Entry::public_info)
            .ok_or_else(|| PoolError::NotFound(id.clone()))
    }

    /// The hash of the worker's management token, if the worker exists.
    pub fn token_hash(&self, id: &WorkerId) -> Option<TokenHash> {
        self.read().entries.get(id).map(|e| e.token_hash)
    }

    pub fn get(&self, id: &WorkerId) -> Result<WorkerInfo, PoolError> {
        self.read()
            .entries
            .get(id)
            .map(Entry::info)
            .ok_or_else(|| PoolError::NotFound(id.clone()))
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
        self.read()
            .entries
            .get(id)
            .map(|e| e.handle.clone())
            .ok_or_else(|| PoolError::NotFound(id.clone()))
    }

    /// Runs the worker's tasks handler now and waits for the outcome.
    pub async fn run_tasks(&self, id: &WorkerId) -> Result<(), PoolError> {
        let handle = self.handle(id)?;
        Ok(handle.run_tasks(TriggerInfo::now("manual", None)).await?)
    }

    /// Terminates a worker and forgets it.
    pub async fn delete(&self, id: &WorkerId) -> Result<(), PoolError> {
        let entry = self
            .write()
            .entries
            .remove(id)
            .ok_or_else(|| PoolError::NotFound(id.clone()))?;
        if let Some(job) = entry.cron_job {
            self.cron.remove(job);
        }
        entry.handle.stop(TerminationReason::Deleted);
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
