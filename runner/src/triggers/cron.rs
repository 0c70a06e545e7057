//! Cron schedules (`tokio-cron-scheduler`): standard 5-field cron, or 6 fields
//! with seconds first. Each tick calls the worker's `tasks()` handler.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use croner::parser::CronParser;
use croner::parser::Seconds;
use tokio_cron_scheduler::Job;
use tokio_cron_scheduler::JobScheduler;
use uuid::Uuid;

/// A validated cron schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// As the user wrote it (quotes and surrounding space removed).
    original: String,
    /// Always six fields (seconds first), as the scheduler wants it.
    six_fields: String,
}

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
        CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(&six_fields)
            .map_err(|e| ScheduleError::Invalid {
                schedule: unquoted.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            original: fields.join(" "),
            six_fields,
        })
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

#[derive(Debug, thiserror::Error)]
#[error("cron scheduler: {0}")]
pub struct CronError(#[from] tokio_cron_scheduler::JobSchedulerError);

type Tick = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The cron trigger: one scheduler for all workers.
#[derive(Clone)]
pub struct CronTrigger {
    scheduler: JobScheduler,
}

impl CronTrigger {
    pub async fn start() -> Result<Self, CronError> {
        let scheduler = JobScheduler::new().await?;
        scheduler.start().await?;
        Ok(Self { scheduler })
    }

    /// Calls `on_tick` at every time the schedule names; returns the job's id.
    pub async fn add<F, Fut>(&self, schedule: &Schedule, on_tick: F) -> Result<Uuid, CronError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_tick: Tick = Arc::new(move || Box::pin(on_tick()));
        let job = Job::new_async(schedule.six_fields.as_str(), move |_id, _scheduler| {
            let on_tick = on_tick.clone();
            Box::pin(async move { on_tick().await })
        })?;
        Ok(self.scheduler.add(job).await?)
    }

    pub async fn remove(&self, job: Uuid) -> Result<(), CronError> {
        Ok(self.scheduler.remove(&job).await?)
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
