//! Start-up: every stored worker is brought back before the API serves, under the same
//! admission (maximum workers, memory budget) as creation.

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::StreamExt;

use super::Failed;
use super::NewWorker;
use super::Pool;
use super::RestoreSummary;
use super::Restored;
use crate::records::from_millis;
use crate::records::RecordsError;
use crate::records::WorkerRecord;
use crate::triggers::cron::Schedule;
use crate::triggers::taskhub::TaskHubSpec;
use crate::worker::CodeIdentity;
use crate::worker::WorkerId;

impl Pool {
    /// Brings back every stored worker before the API serves: schedules resume from now (runs
    /// missed while the runner was down are not replayed; each worker's status shows the gap).
    /// A genuine record whose worker cannot start again is kept and listed as failed; a refused
    /// record (tampered, truncated, foreign) is reported and left on disk. Neither stops the
    /// others.
    pub async fn restore(self: &Arc<Self>) -> Result<RestoreSummary, RecordsError> {
        let mut summary = RestoreSummary::default();
        let Some(records) = self.records.clone() else {
            return Ok(summary);
        };
        let down_since = records.last_alive().await;
        let restored = Restored {
            at: SystemTime::now(),
            down_since,
        };
        let mut stored = Vec::new();
        for item in records.load_all().await? {
            match item {
                Ok(record) => stored.push(record),
                Err(unusable) => {
                    tracing::error!(%unusable, "a stored worker record was refused and not loaded (left on disk)");
                    summary.refused += 1;
                }
            }
        }
        // Each worker evaluates its script on its own thread: start a few at once.
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        let mut outcomes = futures_util::stream::iter(stored)
            .map(|record| self.restore_one(record, restored))
            .buffer_unordered(parallel);
        while let Some((id, outcome)) = outcomes.next().await {
            match outcome {
                Ok(()) => {
                    tracing::info!(worker = %id, "worker restored from its record");
                    summary.restored += 1;
                }
                Err(failed) => self.keep_failed(id, failed, &mut summary),
            }
        }
        Ok(summary)
    }

    /// Starts the worker of one stored record again and adds it, or says why it cannot be.
    async fn restore_one(
        self: &Arc<Self>,
        record: WorkerRecord,
        restored: Restored,
    ) -> (WorkerId, Result<(), Failed>) {
        let id = record.id.clone();
        let failed = |error: String| Failed {
            kind: record.kind,
            schedule: record.schedule.clone(),
            hostname: record.hostname.clone(),
            code_hash: CodeIdentity::of(record.kind, &record.script).to_string(),
            created: from_millis(record.created_ms),
            token_hash: record.token_hash,
            error,
            restored,
        };
        let schedule = match record.schedule.as_deref().map(Schedule::parse).transpose() {
            Ok(schedule) => schedule,
            Err(error) => return (id, Err(failed(format!("schedule: {error}")))),
        };
        let taskhub = match record
            .taskhub
            .as_ref()
            .map(TaskHubSpec::from_record)
            .transpose()
        {
            Ok(taskhub) => taskhub,
            Err(error) => return (id, Err(failed(error))),
        };
        let new = NewWorker {
            kind: record.kind,
            script: record.script.clone(),
            config_json: record.config_json.clone(),
            schedule,
            hostname: record.hostname.clone(),
            token_hash: record.token_hash,
            taskhub,
        };
        let created = from_millis(record.created_ms);
        // The same admission as creation: a state directory holding more workers than the
        // maximum or the memory budget allows keeps the rest as failed, never runs them.
        {
            let mut slots = self.write();
            if let Err(error) = self.check_room(&slots) {
                return (id, Err(failed(error.to_string())));
            }
            slots.starting += 1;
        }
        let outcome = self.start(id.clone(), new, created, Some(restored)).await;
        let mut slots = self.write();
        slots.starting -= 1;
        match outcome {
            Ok(entry) => {
                slots.entries.insert(id.clone(), entry);
                (id, Ok(()))
            }
            Err(error) => (id, Err(failed(error.to_string()))),
        }
    }

    fn keep_failed(&self, id: WorkerId, failed: Failed, summary: &mut RestoreSummary) {
        tracing::error!(worker = %id, error = %failed.error, "a stored worker could not be started again: kept and listed as failed");
        self.write().failed.insert(id, failed);
        summary.failed += 1;
    }
}
