//! What the API shows of workers, and what start-up made of the stored records.

use std::time::SystemTime;

use serde::Serialize;

use crate::triggers::taskhub::TaskHubView;
use crate::worker::ScriptKind;
use crate::worker::StatusView;
use crate::worker::WorkerId;

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
    /// Set when the worker was brought back from its record at start-up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored: Option<Restored>,
    /// The TaskHub trigger's state (owner only, like the rest of this view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taskhub: Option<TaskHubView>,
}

/// A worker brought back from its record: when, and since when the runner was down (its last
/// sign of life before the restart; runs missed in between are not replayed).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Restored {
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
    #[serde(with = "crate::worker::status::humantime_serde_compat::option")]
    pub down_since: Option<SystemTime>,
}

/// What start-up made of the stored records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RestoreSummary {
    pub restored: usize,
    /// Genuine records whose worker could not be started again: kept, listed as failed.
    pub failed: usize,
    /// Records refused (tampered, truncated, foreign, unreadable): left on disk, reported.
    pub refused: usize,
}

fn rfc3339<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_rfc3339_millis(*time).to_string())
}
