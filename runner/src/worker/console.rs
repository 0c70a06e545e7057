//! A worker's console lines on their way to its log ring and to the runner's log: each line is
//! capped at [`MAX_LINE_BYTES`], and the runner logs it at one configured level under its own
//! tracing target, [`TARGET`], whatever console method wrote it (a worker cannot raise its
//! output to `error` in the runner's log). In the appliance the runner's log is the host's
//! serial console: the image sets `debug`, which the default `RUNNER_LOG` filter (`info`)
//! hides; the owner reads the lines at `GET /workers/{id}/logs` either way.

use super::status::LogLevel;
use super::WorkerId;

/// The tracing target of workers' console lines (`RUNNER_LOG=info,worker=debug` shows them
/// when logged at `debug`).
pub const TARGET: &str = "worker";

/// The longest console line kept, in bytes (UTF-8); the rest is replaced by a marker.
pub const MAX_LINE_BYTES: usize = 8 * 1024;

/// The level at which the runner logs workers' console lines (`off`: not at all).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkerLogLevel {
    Off,
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

/// `message` cut to at most [`MAX_LINE_BYTES`] (at a character boundary), with a marker
/// saying how many bytes were cut.
pub fn cap(mut message: String) -> String {
    if message.len() <= MAX_LINE_BYTES {
        return message;
    }
    let mut end = MAX_LINE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let cut = message.len() - end;
    message.truncate(end);
    message.push_str(&format!("… [{cut} more bytes cut]"));
    message
}

/// Logs one (already capped) console line of `worker` at `level`.
pub fn emit(level: WorkerLogLevel, worker: &WorkerId, console: LogLevel, message: &str) {
    let console = console.as_str();
    match level {
        WorkerLogLevel::Off => {}
        WorkerLogLevel::Error => {
            tracing::error!(target: TARGET, worker = %worker, console, "{message}")
        }
        WorkerLogLevel::Warn => {
            tracing::warn!(target: TARGET, worker = %worker, console, "{message}")
        }
        WorkerLogLevel::Info => {
            tracing::info!(target: TARGET, worker = %worker, console, "{message}")
        }
        WorkerLogLevel::Debug => {
            tracing::debug!(target: TARGET, worker = %worker, console, "{message}")
        }
        WorkerLogLevel::Trace => {
            tracing::trace!(target: TARGET, worker = %worker, console, "{message}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_cut_with_a_marker() {
        let short = "x".repeat(MAX_LINE_BYTES);
        assert_eq!(cap(short.clone()), short);
        let long = "y".repeat(1 << 20);
        let capped = cap(long);
        assert!(capped.starts_with(&"y".repeat(MAX_LINE_BYTES)));
        assert!(
            capped.ends_with(&format!(
                "… [{} more bytes cut]",
                (1 << 20) - MAX_LINE_BYTES
            )),
            "{}",
            &capped[MAX_LINE_BYTES..]
        );
        assert!(capped.len() < MAX_LINE_BYTES + 64);
    }

    #[test]
    fn the_cut_falls_on_a_character_boundary() {
        // 3-byte characters: 8192 is not a multiple of 3.
        let capped = cap("€".repeat(MAX_LINE_BYTES));
        let kept = capped.split('…').next().unwrap();
        assert_eq!(kept.len(), MAX_LINE_BYTES / 3 * 3);
        assert!(kept.chars().all(|c| c == '€'));
    }
}
