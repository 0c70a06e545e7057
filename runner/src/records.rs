//! Durable worker records: what the runner keeps of each worker so that it comes back after a
//! restart, sealed in the [`StateDir`](crate::state::StateDir) (see `state/` for the sealing,
//! the crash safety and what they do not prevent).
//!
//! A record holds everything needed to recreate the worker — id, type, script, config,
//! schedule, host name, management token hash, creation time — and nothing else. Writes and
//! deletes are durable when they return; the API answers only after that.

use std::sync::Arc;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use serde::Deserialize;
use serde::Serialize;

use crate::ownership::TokenHash;
use crate::state::RecordError;
use crate::state::StateDir;
use crate::state::StateError;
use crate::worker::ScriptKind;
use crate::worker::WorkerId;

/// The record kind of workers in the state directory.
const WORKERS: &str = "workers";
/// The runner's own bookkeeping (its last sign of life).
const META: &str = "meta";
const HEARTBEAT: &str = "heartbeat";
/// Each TaskHub trigger's delivery position, by worker id (see `triggers/taskhub.rs`).
const TASKHUB: &str = "taskhub";
/// How often the runner records that it is alive, to report the gap after a restart.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);

/// Version 1 of a worker's record (JSON inside the sealed envelope).
#[derive(Clone, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub version: u32,
    pub id: WorkerId,
    #[serde(rename = "type")]
    pub kind: ScriptKind,
    pub script: String,
    pub config_json: String,
    pub schedule: Option<String>,
    pub hostname: Option<String>,
    pub token_hash: TokenHash,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The TaskHub trigger (absent in records written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taskhub: Option<crate::triggers::taskhub::TaskHubRecord>,
}

impl std::fmt::Debug for WorkerRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the config (the worker's secrets) nor the script.
        f.debug_struct("WorkerRecord")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

pub const RECORD_VERSION: u32 = 1;

pub fn to_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the record could not be encoded: {0}")]
    Encode(serde_json::Error),
    #[error("the state directory's worker thread failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A stored record that could not be used at start-up.
#[derive(Debug)]
pub enum Unusable {
    /// Refused by the state directory: tampered, truncated, foreign, misplaced…
    Refused(RecordError),
    /// Genuine, but not a record this runner understands (e.g. a newer version).
    Undecodable { name: String, reason: String },
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Refused(error) => write!(f, "{error}"),
            Unusable::Undecodable { name, reason } => {
                write!(
                    f,
                    "record {name}: not a worker record this runner can read: {reason}"
                )
            }
        }
    }
}

/// The workers' records in a state directory; every call runs on a blocking thread.
#[derive(Clone)]
pub struct Records {
    state: Arc<StateDir>,
}

impl Records {
    pub fn new(state: Arc<StateDir>) -> Self {
        Self { state }
    }

    /// Stores `record` durably (returns once it is on disk).
    pub async fn put(&self, record: &WorkerRecord) -> Result<(), RecordsError> {
        let bytes = serde_json::to_vec(record).map_err(RecordsError::Encode)?;
        let state = self.state.clone();
        let name = record.id.as_str().to_owned();
        tokio::task::spawn_blocking(move || state.put(WORKERS, &name, &bytes)).await??;
        Ok(())
    }

    /// Removes worker `id`'s record durably; `false` if there was none.
    pub async fn delete(&self, id: &WorkerId) -> Result<bool, RecordsError> {
        let state = self.state.clone();
        let name = id.as_str().to_owned();
        Ok(tokio::task::spawn_blocking(move || state.delete(WORKERS, &name)).await??)
    }

    /// Every stored record, or why it cannot be used.
    pub async fn load_all(&self) -> Result<Vec<Result<WorkerRecord, Unusable>>, RecordsError> {
        let state = self.state.clone();
        let loaded = tokio::task::spawn_blocking(move || state.load_all(WORKERS)).await??;
        Ok(loaded
            .into_iter()
            .map(|entry| match entry {
                Err(refused) => Err(Unusable::Refused(refused)),
                Ok((name, bytes)) => decode(&name, &bytes),
            })
            .collect())
    }

    /// When the runner that last used this directory was last known alive.
    pub async fn last_alive(&self) -> Option<SystemTime> {
        let state = self.state.clone();
        let bytes = tokio::task::spawn_blocking(move || state.get(META, HEARTBEAT))
            .await
            .ok()?
            .ok()??;
        let ms: u64 = std::str::from_utf8(&bytes).ok()?.trim().parse().ok()?;
        Some(from_millis(ms))
    }

    /// Stores worker `id`'s TaskHub position durably.
    pub async fn put_taskhub_cursor(
        &self,
        id: &WorkerId,
        bytes: &[u8],
    ) -> Result<(), RecordsError> {
        let state = self.state.clone();
        let name = id.as_str().to_owned();
        let bytes = bytes.to_vec();
        tokio::task::spawn_blocking(move || state.put(TASKHUB, &name, &bytes)).await??;
        Ok(())
    }

    /// Worker `id`'s saved TaskHub position, if any.
    pub async fn taskhub_cursor(&self, id: &WorkerId) -> Result<Option<Vec<u8>>, RecordsError> {
        let state = self.state.clone();
        let name = id.as_str().to_owned();
        Ok(tokio::task::spawn_blocking(move || state.get(TASKHUB, &name)).await??)
    }

    /// Removes worker `id`'s TaskHub position; `false` if there was none.
    pub async fn delete_taskhub_cursor(&self, id: &WorkerId) -> Result<bool, RecordsError> {
        let state = self.state.clone();
        let name = id.as_str().to_owned();
        Ok(tokio::task::spawn_blocking(move || state.delete(TASKHUB, &name)).await??)
    }

    /// Records that the runner is alive now.
    pub async fn heartbeat(&self) -> Result<(), RecordsError> {
        let state = self.state.clone();
        let now = to_millis(SystemTime::now()).to_string();
        tokio::task::spawn_blocking(move || state.put(META, HEARTBEAT, now.as_bytes())).await??;
        Ok(())
    }
}

fn decode(name: &str, bytes: &[u8]) -> Result<WorkerRecord, Unusable> {
    let undecodable = |reason: String| Unusable::Undecodable {
        name: name.to_owned(),
        reason,
    };
    let record: WorkerRecord =
        serde_json::from_slice(bytes).map_err(|e| undecodable(e.to_string()))?;
    if record.version != RECORD_VERSION {
        return Err(undecodable(format!(
            "version {} (this runner reads version {RECORD_VERSION})",
            record.version
        )));
    }
    if record.id.as_str() != name {
        return Err(undecodable(format!(
            "it names worker {} but is stored as {name}",
            record.id
        )));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::KeySource;

    fn record(id: &str) -> WorkerRecord {
        WorkerRecord {
            version: RECORD_VERSION,
            id: WorkerId::from(id.to_owned()),
            kind: ScriptKind::Module,
            script: "export default {}".into(),
            config_json: r#"{"secret":"hunter2"}"#.into(),
            schedule: Some("* * * * * *".into()),
            hostname: None,
            token_hash: TokenHash::of("t"),
            created_ms: 1_700_000_000_000,
            taskhub: None,
        }
    }

    #[test]
    fn records_without_a_taskhub_field_still_decode() {
        // A version 1 record as written before the TaskHub trigger existed.
        let token = serde_json::to_value(TokenHash::of("t")).unwrap();
        let old = r#"{"version":1,"id":"a","type":"module","script":"x","config_json":"{}",
            "schedule":null,"hostname":null,"token_hash":"TOKEN","created_ms":5}"#
            .replace("TOKEN", token.as_str().unwrap());
        let record = decode("a", old.as_bytes()).unwrap();
        assert!(record.taskhub.is_none());
        let mut with = record.clone();
        with.taskhub = Some(crate::triggers::taskhub::TaskHubRecord {
            chain: "local".into(),
            address: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
            hub_id: Some("1".into()),
            start_block: Some(9),
            ..Default::default()
        });
        let bytes = serde_json::to_vec(&with).unwrap();
        assert_eq!(decode("a", &bytes).unwrap().taskhub, with.taskhub);
        // Without a trigger, the field is not written at all (older runners read the record).
        let bytes = serde_json::to_vec(&record).unwrap();
        assert!(!String::from_utf8(bytes).unwrap().contains("taskhub"));
    }

    #[tokio::test]
    async fn taskhub_positions_are_kept_per_worker() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().join("s"), KeySource::DevFile).unwrap();
        let records = Records::new(Arc::new(state));
        let id = WorkerId::from("w1".to_owned());
        assert!(records.taskhub_cursor(&id).await.unwrap().is_none());
        records
            .put_taskhub_cursor(&id, b"{\"block\":7}")
            .await
            .unwrap();
        records
            .put_taskhub_cursor(&id, b"{\"block\":8}")
            .await
            .unwrap();
        assert_eq!(
            records.taskhub_cursor(&id).await.unwrap().unwrap(),
            b"{\"block\":8}"
        );
        assert!(records.delete_taskhub_cursor(&id).await.unwrap());
        assert!(records.taskhub_cursor(&id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn records_roundtrip_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().join("s"), KeySource::DevFile).unwrap();
        let records = Records::new(Arc::new(state));
        records.put(&record("a")).await.unwrap();
        records.put(&record("b")).await.unwrap();
        assert!(records
            .delete(&WorkerId::from("b".to_owned()))
            .await
            .unwrap());
        let loaded = records.load_all().await.unwrap();
        assert_eq!(loaded.len(), 1);
        let back = loaded.into_iter().next().unwrap().unwrap();
        assert_eq!(back.id.as_str(), "a");
        assert_eq!(back.config_json, r#"{"secret":"hunter2"}"#);
        assert!(back.token_hash == TokenHash::of("t"));
        assert!(!format!("{back:?}").contains("hunter2"));
        assert!(records.last_alive().await.is_none());
        records.heartbeat().await.unwrap();
        let alive = records.last_alive().await.unwrap();
        assert!(SystemTime::now().duration_since(alive).unwrap() < Duration::from_secs(60));
    }

    #[test]
    fn other_versions_and_misnamed_records_are_undecodable() {
        let mut newer = record("a");
        newer.version = 2;
        let bytes = serde_json::to_vec(&newer).unwrap();
        assert!(matches!(
            decode("a", &bytes),
            Err(Unusable::Undecodable { .. })
        ));
        let bytes = serde_json::to_vec(&record("a")).unwrap();
        assert!(matches!(
            decode("b", &bytes),
            Err(Unusable::Undecodable { .. })
        ));
        assert!(decode("a", &bytes).is_ok());
        assert!(matches!(
            decode("a", b"{oops"),
            Err(Unusable::Undecodable { .. })
        ));
    }
}
