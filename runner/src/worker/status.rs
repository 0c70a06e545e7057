//! What the runner knows about one worker, shared between its isolate thread,
//! its supervisor and the API: lifecycle state, counters, and recent log lines.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::time::SystemTime;

use serde::Serialize;

use super::console;
use super::console::WorkerLogLevel;
use super::WorkerId;

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The isolate is being created and the script evaluated.
    Starting,
    /// Evaluated and waiting for triggers.
    Ready,
    /// A trigger is being handled.
    Running,
    /// Stopped by the runner: deleted, or over one of its limits.
    Terminated,
    /// The script could not be evaluated, or the isolate died.
    Failed,
}

impl State {
    pub fn is_alive(self) -> bool {
        matches!(self, State::Starting | State::Ready | State::Running)
    }
}

/// Why the runner stopped a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminationReason {
    Deleted,
    WallTimeLimit {
        limit_ms: u64,
    },
    CpuTimeLimit {
        limit_ms: u64,
    },
    HeapLimit {
        limit_mb: usize,
    },
    /// Its array buffers (outside the V8 heap) went over the worker's limit.
    ArrayBufferLimit {
        limit_mb: usize,
    },
    /// Work outside any call (timers, unawaited promises) used more CPU than it may.
    BackgroundCpuLimit {
        limit_ms: u64,
    },
    RunnerShutdown,
}

impl std::fmt::Display for TerminationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Deleted => write!(f, "deleted"),
            Self::WallTimeLimit { limit_ms } => {
                write!(
                    f,
                    "exceeded the wall time limit of {limit_ms} ms per invocation"
                )
            }
            Self::CpuTimeLimit { limit_ms } => {
                write!(
                    f,
                    "exceeded the CPU time limit of {limit_ms} ms per invocation"
                )
            }
            Self::HeapLimit { limit_mb } => {
                write!(f, "exceeded the heap memory limit of {limit_mb} MiB")
            }
            Self::ArrayBufferLimit { limit_mb } => write!(
                f,
                "exceeded the limit of {limit_mb} MiB on memory outside the heap (ArrayBuffers, typed arrays, WebAssembly memories)"
            ),
            Self::BackgroundCpuLimit { limit_ms } => write!(
                f,
                "used more than {limit_ms} ms of CPU outside any call (timers or promises left running after a handler returned)"
            ),
            Self::RunnerShutdown => write!(f, "runner shut down"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The level's name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }

    /// The numbering the isolate's console shim uses.
    pub fn from_js(level: u32) -> Self {
        match level {
            0 => Self::Debug,
            1 => Self::Info,
            2 => Self::Warn,
            _ => Self::Error,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    #[serde(with = "humantime_serde_compat")]
    pub time: SystemTime,
    pub level: LogLevel,
    pub message: String,
}

/// A serialisable snapshot of a worker's status (never its config or keys).
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(with = "humantime_serde_compat::option")]
    pub last_run: Option<SystemTime>,
    pub last_error: Option<String>,
    pub runs: u64,
    pub errors: u64,
    pub skipped: u64,
}

#[derive(Debug)]
struct Inner {
    state: State,
    reason: Option<TerminationReason>,
    last_run: Option<SystemTime>,
    last_error: Option<String>,
    runs: u64,
    errors: u64,
    skipped: u64,
    logs: VecDeque<LogLine>,
}

/// The shared, lock-protected status of one worker.
#[derive(Debug)]
pub struct WorkerStatus {
    id: WorkerId,
    log_capacity: usize,
    runner_log_level: WorkerLogLevel,
    inner: Mutex<Inner>,
}

impl WorkerStatus {
    /// `log_capacity` lines are kept; the runner logs each at `runner_log_level`.
    pub fn new(id: WorkerId, log_capacity: usize, runner_log_level: WorkerLogLevel) -> Self {
        Self {
            id,
            log_capacity,
            runner_log_level,
            inner: Mutex::new(Inner {
                state: State::Starting,
                reason: None,
                last_run: None,
                last_error: None,
                runs: 0,
                errors: 0,
                skipped: 0,
                logs: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind: keep using it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn id(&self) -> &WorkerId {
        &self.id
    }

    pub fn state(&self) -> State {
        self.lock().state
    }

    pub fn view(&self) -> StatusView {
        let inner = self.lock();
        StatusView {
            state: inner.state,
            reason: inner.reason.as_ref().map(ToString::to_string),
            last_run: inner.last_run,
            last_error: inner.last_error.clone(),
            runs: inner.runs,
            errors: inner.errors,
            skipped: inner.skipped,
        }
    }

    pub fn set_ready(&self) {
        let mut inner = self.lock();
        if inner.state.is_alive() {
            inner.state = State::Ready;
        }
    }

    /// Marks the start of a run; false when the worker is busy or gone, in
    /// which case the run is counted as skipped.
    pub fn try_begin_run(&self) -> bool {
        let mut inner = self.lock();
        if inner.state != State::Ready {
            inner.skipped += 1;
            return false;
        }
        inner.state = State::Running;
        inner.last_run = Some(SystemTime::now());
        inner.runs += 1;
        true
    }

    /// Marks the start of a run that waits instead of being skipped: `Some(true)` started,
    /// `Some(false)` busy (not counted as skipped: the caller tries again), `None` gone.
    pub fn try_begin_queued_run(&self) -> Option<bool> {
        let mut inner = self.lock();
        match inner.state {
            State::Ready => {
                inner.state = State::Running;
                inner.last_run = Some(SystemTime::now());
                inner.runs += 1;
                Some(true)
            }
            State::Starting | State::Running => Some(false),
            State::Terminated | State::Failed => None,
        }
    }

    pub fn end_run(&self, error: Option<String>) {
        let mut inner = self.lock();
        if inner.state == State::Running {
            inner.state = State::Ready;
        }
        if let Some(error) = error {
            inner.errors += 1;
            inner.last_error = Some(error);
        }
    }

    /// An error outside any handler's promise: logged and counted, the worker stays.
    pub fn record_uncaught(&self, message: String) {
        {
            let mut inner = self.lock();
            inner.errors += 1;
            inner.last_error = Some(message.clone());
        }
        self.log(LogLevel::Error, message);
    }

    /// Records a terminal stop. The first reason wins.
    pub fn terminate(&self, reason: TerminationReason) {
        let mut inner = self.lock();
        if !inner.state.is_alive() {
            return;
        }
        inner.state = State::Terminated;
        if !matches!(reason, TerminationReason::Deleted) {
            inner.last_error = Some(reason.to_string());
        }
        inner.reason = Some(reason);
    }

    pub fn fail(&self, error: String) {
        let mut inner = self.lock();
        if !inner.state.is_alive() {
            return;
        }
        inner.state = State::Failed;
        inner.errors += 1;
        inner.last_error = Some(error);
    }

    pub fn termination_reason(&self) -> Option<TerminationReason> {
        self.lock().reason.clone()
    }

    /// Appends a line of the worker's own output, cut to [`console::MAX_LINE_BYTES`], and
    /// forwards it to the runner's log at the configured level (see [`console`]).
    pub fn log(&self, level: LogLevel, message: String) {
        let message = console::cap(message);
        console::emit(self.runner_log_level, &self.id, level, &message);
        if self.log_capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.logs.len() == self.log_capacity {
            inner.logs.pop_front();
        }
        inner.logs.push_back(LogLine {
            time: SystemTime::now(),
            level,
            message,
        });
    }

    pub fn logs(&self) -> Vec<LogLine> {
        self.lock().logs.iter().cloned().collect()
    }
}

/// RFC 3339 timestamps for `SystemTime` fields.
pub(crate) mod humantime_serde_compat {
    use std::time::SystemTime;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_rfc3339_millis(*time).to_string())
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            time: &Option<SystemTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match time {
                Some(time) => super::serialize(time, s),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> WorkerStatus {
        WorkerStatus::new(WorkerId::new_random(), 2, WorkerLogLevel::Info)
    }

    #[test]
    fn a_busy_worker_skips_overlapping_runs() {
        let status = status();
        status.set_ready();
        assert!(status.try_begin_run());
        assert!(!status.try_begin_run());
        status.end_run(None);
        assert!(status.try_begin_run());
        let view = status.view();
        assert_eq!((view.runs, view.skipped), (2, 1));
    }

    #[test]
    fn a_queued_run_waits_without_counting_a_skip() {
        let status = status();
        assert_eq!(status.try_begin_queued_run(), Some(false));
        status.set_ready();
        assert!(status.try_begin_run());
        assert_eq!(status.try_begin_queued_run(), Some(false));
        status.end_run(None);
        assert_eq!(status.try_begin_queued_run(), Some(true));
        let view = status.view();
        assert_eq!((view.runs, view.skipped), (2, 0));
        status.terminate(TerminationReason::Deleted);
        assert_eq!(status.try_begin_queued_run(), None);
    }

    #[test]
    fn the_first_termination_reason_wins() {
        let status = status();
        status.set_ready();
        status.terminate(TerminationReason::HeapLimit { limit_mb: 64 });
        status.terminate(TerminationReason::Deleted);
        let view = status.view();
        assert_eq!(view.state, State::Terminated);
        assert!(view.reason.unwrap().contains("heap"));
        assert!(!status.try_begin_run());
    }

    #[test]
    fn logs_keep_only_the_newest_lines() {
        let status = status();
        for n in 0..5 {
            status.log(LogLevel::Info, format!("line {n}"));
        }
        let lines: Vec<_> = status.logs().into_iter().map(|l| l.message).collect();
        assert_eq!(lines, ["line 3", "line 4"]);
    }

    #[test]
    fn a_huge_line_is_cut_in_the_log_ring() {
        let status = status();
        status.log(LogLevel::Info, "z".repeat(1 << 20));
        let line = &status.logs()[0].message;
        assert!(line.len() < console::MAX_LINE_BYTES + 64, "{}", line.len());
        assert!(line.ends_with("more bytes cut]"));
    }

    #[test]
    fn errors_are_counted_and_the_worker_stays_ready() {
        let status = status();
        status.set_ready();
        assert!(status.try_begin_run());
        status.end_run(Some("boom".into()));
        let view = status.view();
        assert_eq!(view.state, State::Ready);
        assert_eq!(view.errors, 1);
        assert_eq!(view.last_error.as_deref(), Some("boom"));
    }
}
