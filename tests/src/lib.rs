//! End-to-end test harness for the Smart Worker runner.
//!
//! [`Runner`] starts the real `runner` binary on an ephemeral loopback port and drives it over
//! HTTP; [`Sink`] is a loopback HTTP server that records what workers `fetch`, which is how a test
//! observes that a worker ran and what it saw. [`js`] builds the worker scripts.
//!
//! This crate deliberately does not depend on the runner crate (or on deno): it only needs the
//! built binary, found through `RUNNER_BIN` (see [`Runner::start`]).

pub mod js;
mod reply;
mod runner;
mod sink;
pub mod swtpm;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use reply::Reply;
pub use reqwest::multipart::{Form, Part};
pub use reqwest::StatusCode;
pub use runner::{count, runner_bin, runner_command, worker_path, Runner};
pub use serde_json::{json, Value};
pub use sink::{Recorded, Sink};

/// How long to wait for anything the runner does asynchronously: a worker run, a state change,
/// a log line. Generous on purpose: tests assert behaviour, never speed.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Starts a runner with `args` and a fresh sink, side by side.
pub async fn start(args: &[&str]) -> (Runner, Sink) {
    tokio::join!(Runner::start(args), Sink::start())
}

/// A string unique within this test process, starting with `name`: use it in scripts so that no two
/// workers share a script (the runner may derive a worker's identity from its script) and in
/// messages that a test looks for.
pub fn tag(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{name}-{}-{n}", std::process::id())
}
