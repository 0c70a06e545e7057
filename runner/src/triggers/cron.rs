//! Cron schedules: standard 5-field cron, or 6 fields with seconds first.
//! Each tick calls the worker's `tasks()` handler.
//!
//! Why not `tokio-cron-scheduler` (the design's first choice, used until the
//! benchmark): it looks for due jobs every 500 ms (hard-coded), so ticks
//! fired 80 to 590 ms late, a different lag each run. Here each schedule is a
//! task that sleeps until its next occurrence, computed by `croner` (the
//! parser that crate uses), so a tick fires within a millisecond or two.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;

use chrono::DateTime;
use chrono::Timelike;
use chrono::Utc;
use croner::parser::CronParser;
use croner::parser::Seconds;
use croner::Cron;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// A validated cron schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// As the user wrote it (quotes and surrounding space removed).
    original: String,
    /// Always six fields (seconds first).
    six_fields: String,
    cron: Cron,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.six_fields == other.six_fields
    }
}

impl Eq for Schedule {}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("schedule is empty")]
    Empty,
    #[error(
        "schedule must have 5 fields (minute hour day month weekday) or 6 (seconds first), not {0}"
    )]
    FieldCount(usize),
    #[error("schedule {schedule:?} is not a valid cron expression: {reason}")]
    Invalid { schedule: String, reason: String },
}

impl Schedule {
    /// Parses a cron string. Double quotes around it are dropped: curl strips
    /// them from `-F 'schedule="*/5 * * * *"'`, other clients send them.
    pub fn parse(input: &str) -> Result<Self, ScheduleError> {
        let trimmed = input.trim();
        let unquoted = trimmed
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(trimmed)
            .trim();
        let fields: Vec<&str> = unquoted.split_whitespace().collect();
        let six_fields = match fields.len() {
            0 => return Err(ScheduleError::Empty),
            5 => format!("0 {}", fields.join(" ")),
            6 => fields.join(" "),
            n => return Err(ScheduleError::FieldCount(n)),
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .build()
            .parse(&six_fields)
            .map_err(|e| ScheduleError::Invalid {
                schedule: unquoted.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            original: fields.join(" "),
            six_fields,
            cron,
        })
    }

    /// The first occurrence strictly after `time`, on a whole second; `None` if there is none.
    pub fn next_after(&self, time: &DateTime<Utc>) -> Option<DateTime<Utc>> {
        // croner keeps the sub-second part of its starting point: start from the whole second.
        let whole_second = time.with_nanosecond(0)?;
        self.cron.find_next_occurrence(&whole_second, false).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.original
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

/// The cron trigger: one task per schedule, sleeping until its next tick.
#[derive(Clone, Default)]
pub struct CronTrigger {
    jobs: Arc<Mutex<HashMap<Uuid, JoinHandle<()>>>>,
}

impl CronTrigger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `on_tick` at every time the schedule names, each call in a task
    /// of its own (a slow run never delays the next tick); returns the job's id.
    pub fn add<F, Fut>(&self, schedule: &Schedule, on_tick: F) -> Uuid
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let schedule = schedule.clone();
        let task = tokio::spawn(async move {
            let mut after = Utc::now();
            while let Some(tick) = schedule.next_after(&after) {
                let wait = (tick - Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(wait).await;
                tokio::spawn(on_tick());
                // Ticks missed while the machine was busy or asleep are skipped.
                after = tick.max(Utc::now());
            }
        });
        let id = Uuid::new_v4();
        self.lock().insert(id, task);
        id
    }

    /// Stops a job; unknown ids are ignored.
    pub fn remove(&self, job: Uuid) {
        if let Some(task) = self.lock().remove(&job) {
            task.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, JoinHandle<()>>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_field_cron_gets_a_zero_seconds_field() {
        let schedule = Schedule::parse("*/5 * * * *").unwrap();
        assert_eq!(schedule.six_fields, "0 */5 * * * *");
        assert_eq!(schedule.as_str(), "*/5 * * * *");
    }

    #[test]
    fn quotes_from_form_clients_are_dropped() {
        assert_eq!(
            Schedule::parse("\"*/5 * * * *\"").unwrap(),
            Schedule::parse("*/5 * * * *").unwrap()
        );
    }

    #[test]
    fn six_fields_keep_their_seconds() {
        assert_eq!(
            Schedule::parse("* * * * * *").unwrap().six_fields,
            "* * * * * *"
        );
        assert!(Schedule::parse("30 0 12 * * MON-FRI").is_ok());
    }

    #[test]
    fn next_occurrences_follow_the_schedule() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let every_five = Schedule::parse("*/5 * * * *").unwrap();
        assert_eq!(
            every_five.next_after(&at("2026-11-25T10:02:30Z")),
            Some(at("2026-11-25T10:05:00Z"))
        );
        // Strictly after: a tick is never returned twice.
        assert_eq!(
            every_five.next_after(&at("2026-11-25T10:05:00Z")),
            Some(at("2026-11-25T10:10:00Z"))
        );
        // Ticks fall on whole seconds, whatever the fraction of the starting point.
        let every_second = Schedule::parse("* * * * * *").unwrap();
        assert_eq!(
            every_second.next_after(&at("2026-11-25T10:02:30.384Z")),
            Some(at("2026-11-25T10:02:31Z"))
        );
        assert_eq!(
            every_five.next_after(&at("2026-11-25T10:04:59.999Z")),
            Some(at("2026-11-25T10:05:00Z"))
        );
        let weekdays_noon = Schedule::parse("0 12 * * MON-FRI").unwrap();
        // 2026-11-28 is a Saturday: the next one is Monday the 30th.
        assert_eq!(
            weekdays_noon.next_after(&at("2026-11-27T12:00:00Z")),
            Some(at("2026-11-30T12:00:00Z"))
        );
    }

    #[tokio::test]
    async fn a_job_ticks_until_removed() {
        let trigger = CronTrigger::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let job = trigger.add(&Schedule::parse("* * * * * *").unwrap(), move || {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Utc::now());
            }
        });
        let first = rx.recv().await.unwrap();
        let second = rx.recv().await.unwrap();
        // Every second: two ticks fall in different seconds.
        assert!(second.timestamp() > first.timestamp());
        trigger.remove(job);
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        while rx.try_recv().is_ok() {}
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        assert!(rx.try_recv().is_err(), "a removed job still ticks");
    }

    #[test]
    fn bad_schedules_are_refused_with_the_reason() {
        assert_eq!(Schedule::parse("  "), Err(ScheduleError::Empty));
        assert_eq!(
            Schedule::parse("not a cron"),
            Err(ScheduleError::FieldCount(3))
        );
        assert!(matches!(
            Schedule::parse("61 * * * *"),
            Err(ScheduleError::Invalid { .. })
        ));
        assert!(matches!(
            Schedule::parse("* * * * bogus"),
            Err(ScheduleError::Invalid { .. })
        ));
    }
}
