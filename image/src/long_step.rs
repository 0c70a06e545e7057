//! Long build steps (the kernel's `make`, the firmware's edk2 build): their output goes to a log
//! file, a progress line is printed every so often, and a step that fails reports the log's
//! last lines.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::util::ToolError;

/// How many lines of the log a failed step reports.
pub const TAIL_LINES: usize = 40;
/// How much of the log's end is read for those lines.
const TAIL_BYTES: u64 = 64 * 1024;
/// How often a running step is looked at.
const POLL: Duration = Duration::from_millis(250);

/// A step that exited unsuccessfully.
#[derive(Debug, thiserror::Error)]
#[error("{what} failed ({status}); the last lines of {log}:\n{tail}")]
pub struct StepFailed {
    pub what: String,
    pub status: ExitStatus,
    pub log: PathBuf,
    pub tail: String,
}

/// Follows a build's output and says how far it got.
pub trait Progress {
    /// Sees one line of output.
    fn line(&mut self, line: &str);
    /// How far the build got, e.g. `412 steps (last: CC kernel/fork.o)`.
    fn summary(&self) -> String;
}

/// Progress lines for one step: `{label}: {summary} in {elapsed}` every `every`.
pub struct Report<'a> {
    pub label: &'a str,
    /// When the build began (the elapsed time printed counts from here).
    pub started: Instant,
    pub every: Duration,
    pub progress: &'a mut dyn Progress,
}

/// Runs `command` to its end with its standard output and error appended to `log` (created if
/// missing). With `report`, prints progress while it runs.
pub fn run<E: From<ToolError> + From<StepFailed>>(
    command: &mut Command,
    what: &str,
    log: &Path,
    mut report: Option<Report<'_>>,
) -> Result<(), E> {
    let stdout = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| ToolError::io(log, e))?;
    let stderr = stdout.try_clone().map_err(|e| ToolError::io(log, e))?;
    // Progress reads only what this step adds.
    let mut follower = LogFollower {
        offset: stdout.metadata().map_err(|e| ToolError::io(log, e))?.len(),
        partial: Vec::new(),
    };
    let spawn_error = |source| ToolError::Spawn {
        what: what.to_owned(),
        source,
    };
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .spawn()
        .map_err(spawn_error)?;
    let mut next_report = Instant::now() + report.as_ref().map_or(Duration::ZERO, |r| r.every);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(spawn_error)? {
            break status;
        }
        std::thread::sleep(POLL);
        if let Some(report) = report.as_mut() {
            if Instant::now() >= next_report {
                next_report = Instant::now() + report.every;
                // Best effort: progress is for people, the log stays whole either way.
                let _ = follower.feed(log, report.progress);
                crate::progress!(
                    "{}: {} in {:.0?}",
                    report.label,
                    report.progress.summary(),
                    report.started.elapsed()
                );
            }
        }
    };
    if !status.success() {
        return Err(StepFailed {
            what: what.to_owned(),
            status,
            log: log.to_owned(),
            tail: tail(log),
        }
        .into());
    }
    Ok(())
}

/// Reads a growing log from where it last stopped, a whole line at a time.
struct LogFollower {
    offset: u64,
    partial: Vec<u8>,
}

impl LogFollower {
    fn feed(&mut self, log: &Path, progress: &mut dyn Progress) -> std::io::Result<()> {
        let mut file = std::fs::File::open(log)?;
        file.seek(SeekFrom::Start(self.offset))?;
        let read = file.read_to_end(&mut self.partial)?;
        self.offset += read as u64;
        let complete = match self.partial.iter().rposition(|&b| b == b'\n') {
            Some(end) => end + 1,
            None => return Ok(()),
        };
        let lines: Vec<u8> = self.partial.drain(..complete).collect();
        for line in String::from_utf8_lossy(&lines).lines() {
            progress.line(line);
        }
        Ok(())
    }
}

/// The last [`TAIL_LINES`] lines of `log` (empty if it cannot be read).
fn tail(log: &Path) -> String {
    let mut end = Vec::new();
    if let Ok(mut file) = std::fs::File::open(log) {
        let length = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file
            .seek(SeekFrom::Start(length.saturating_sub(TAIL_BYTES)))
            .and_then(|_| file.read_to_end(&mut end));
    }
    let text = String::from_utf8_lossy(&end);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum TestError {
        #[error(transparent)]
        Tool(#[from] ToolError),
        #[error(transparent)]
        Step(#[from] StepFailed),
    }

    #[derive(Default)]
    struct Lines(Vec<String>);

    impl Progress for Lines {
        fn line(&mut self, line: &str) {
            self.0.push(line.to_owned());
        }
        fn summary(&self) -> String {
            format!("{} lines", self.0.len())
        }
    }

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn output_is_appended_to_the_log_and_progress_sees_only_this_steps_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("build.log");
        std::fs::write(&log, "earlier step\n").unwrap();
        let mut lines = Lines::default();
        let report = Report {
            label: "test",
            started: Instant::now(),
            every: Duration::ZERO,
            progress: &mut lines,
        };
        run::<TestError>(
            &mut sh("echo '  CC a.o'; sleep 0.6; echo warning >&2; sleep 0.6; printf 'no newline'"),
            "ok",
            &log,
            Some(report),
        )
        .unwrap();
        assert_eq!(lines.0, ["  CC a.o", "warning"]);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "earlier step\n  CC a.o\nwarning\nno newline"
        );
    }

    #[test]
    fn a_failed_step_reports_the_logs_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("build.log");
        let many: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, many).unwrap();
        let error = run::<TestError>(
            &mut sh("echo 'x.c:1: error: no' >&2; exit 2"),
            "failing",
            &log,
            None,
        )
        .unwrap_err();
        let TestError::Step(failed) = &error else {
            panic!("not a failed step: {error}")
        };
        assert_eq!(failed.what, "failing");
        assert_eq!(failed.status.code(), Some(2));
        let tail: Vec<&str> = failed.tail.lines().collect();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail[0], "line 61");
        assert_eq!(tail[TAIL_LINES - 1], "x.c:1: error: no");
        assert!(error.to_string().contains("build.log"), "{error}");
    }

    #[test]
    fn a_missing_program_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let error = run::<TestError>(
            &mut Command::new("/nonexistent/make"),
            "make bzImage",
            &dir.path().join("log"),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(&error, TestError::Tool(ToolError::Spawn { what, .. }) if what == "make bzImage"),
            "{error}"
        );
    }
}
