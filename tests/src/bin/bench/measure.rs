//! The runner's figures: create→ready latency, idle memory per worker, cron trigger jitter.
//!
//! Every measurement starts its own runner, so that none inherits another's workers or heap.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use e2e::{js, Sink};
use tokio::time::{sleep, Instant};

use crate::host::Host;

/// `--max-workers` for every runner started here: never the limit.
const MAX_WORKERS: usize = 10_000;
/// How long to let the runner settle after the last create: the `tasks()` run the runner starts
/// after each creation (in the background) must finish before memory or ticks are read.
const SETTLE: Duration = Duration::from_millis(1500);
/// How long the CPU time of an idle runner is taken over.
const IDLE_CPU_WINDOW: Duration = Duration::from_secs(5);
/// Every second, on the second (6 fields, seconds first).
const EVERY_SECOND: &str = "* * * * * *";

/// Milliseconds in `duration`, as a float.
pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// A module worker with an empty `tasks()` handler, made unique by a comment so that the
/// runner could not reuse anything from an earlier, identical script.
pub fn idle_script(name: &str) -> String {
    format!("// {}\n{}", e2e::tag(name), js::module_tasks(""))
}

/// The round trips of sequential `POST /` (each answered `201` once the script is evaluated), and
/// the runner's memory before and after them all (every worker deleted after its create).
pub struct CreateLatency {
    pub samples_ms: Vec<f64>,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

/// Creates `n` idle workers one after the other, timing each `POST /`, and deletes each one
/// right after its creation.
pub async fn create_latency(runner: &Path, n: usize) -> Result<CreateLatency> {
    let host = Host::start(runner, MAX_WORKERS).await?;
    let rss_before_kib = host.rss_kib()?;
    let mut samples_ms = Vec::with_capacity(n);
    for i in 1..=n {
        let script = idle_script("create");
        let started = Instant::now();
        let id = host.create(&script, None).await?;
        samples_ms.push(millis(started.elapsed()));
        host.delete(&id).await?;
        progress("create→ready", i, n);
    }
    sleep(SETTLE).await;
    Ok(CreateLatency {
        samples_ms,
        rss_before_kib,
        rss_after_kib: host.rss_kib()?,
    })
}

/// Create latency with and without a state directory, side by side in one run.
pub struct Durability {
    /// `POST /` → `201` with `--state-dir` (the record is fsynced before the answer).
    pub durable_create_ms: Vec<f64>,
    /// Workers stored before the restart.
    pub stored: usize,
    /// Spawn → `/healthz` 200 of a runner on an empty state directory.
    pub empty_startup_ms: Vec<f64>,
    /// Spawn → `/healthz` 200 of a runner restoring `stored` workers.
    pub restore_startup_ms: Vec<f64>,
    /// Its RSS once every stored worker is back.
    pub restored_rss_kib: u64,
}

/// Times `creates` durable creations (each deleted right after, as in [`create_latency`]), then
/// stores `stored` workers, kills the runner and times start-ups: on an empty state directory
/// and restoring them all (`restarts` each).
pub async fn durability(
    runner: &Path,
    creates: usize,
    stored: usize,
    restarts: usize,
) -> Result<Durability> {
    let state = tempfile::tempdir()?;
    let state_arg = state.path().join("state");
    let state_arg = state_arg.to_str().expect("a UTF-8 temp path").to_owned();
    let args = ["--state-dir", state_arg.as_str()];
    let host = Host::start_with(runner, MAX_WORKERS, &args).await?;
    let mut durable_create_ms = Vec::with_capacity(creates);
    for i in 1..=creates {
        let script = idle_script("durable");
        let started = Instant::now();
        let id = host.create(&script, None).await?;
        durable_create_ms.push(millis(started.elapsed()));
        host.delete(&id).await?;
        progress("durable create→ready", i, creates);
    }
    drop(host);

    let empty = tempfile::tempdir()?;
    let mut empty_startup_ms = Vec::with_capacity(restarts);
    for _ in 0..restarts {
        let dir = empty.path().join(format!("s{}", empty_startup_ms.len()));
        let dir = dir.to_str().expect("a UTF-8 temp path").to_owned();
        let started = Instant::now();
        let host = Host::start_with(runner, MAX_WORKERS, &["--state-dir", &dir]).await?;
        empty_startup_ms.push(millis(started.elapsed()));
        drop(host);
    }

    let host = Host::start_with(runner, MAX_WORKERS, &args).await?;
    for i in 1..=stored {
        host.create(&idle_script("stored"), None).await?;
        progress("stored workers", i, stored);
    }
    drop(host);
    let mut restore_startup_ms = Vec::with_capacity(restarts);
    let mut restored_rss_kib = 0;
    for i in 1..=restarts {
        let started = Instant::now();
        let host = Host::start_with(runner, MAX_WORKERS, &args).await?;
        restore_startup_ms.push(millis(started.elapsed()));
        restored_rss_kib = host.rss_kib()?;
        drop(host);
        progress("restarts restoring them", i, restarts);
    }
    Ok(Durability {
        durable_create_ms,
        stored,
        empty_startup_ms,
        restore_startup_ms,
        restored_rss_kib,
    })
}

/// The runner's resident memory with no workers and with `workers` idle workers.
pub struct IdleMemory {
    pub workers: usize,
    pub base_kib: u64,
    pub total_kib: u64,
    /// The share of one core used with no worker, and with the N idle workers.
    pub base_cpu: f64,
    pub total_cpu: f64,
}

impl IdleMemory {
    /// What each worker added on average, in KiB: `(RSS(N) - RSS(0)) / N`.
    pub fn per_worker_kib(&self) -> f64 {
        (self.total_kib as f64 - self.base_kib as f64) / self.workers as f64
    }
}

/// Starts a fresh runner, reads its RSS, creates `workers` idle workers (no schedule), lets their
/// creation runs finish and reads its RSS again.
pub async fn idle_memory(runner: &Path, workers: usize) -> Result<IdleMemory> {
    let host = Host::start(runner, MAX_WORKERS).await?;
    sleep(SETTLE).await;
    let base_kib = host.rss_kib()?;
    let base_cpu = idle_cpu(&host).await?;
    for i in 1..=workers {
        host.create(&idle_script("idle"), None).await?;
        progress(&format!("idle memory, {workers} worker(s)"), i, workers);
    }
    sleep(SETTLE).await;
    Ok(IdleMemory {
        workers,
        base_kib,
        total_kib: host.rss_kib()?,
        base_cpu,
        total_cpu: idle_cpu(&host).await?,
    })
}

/// The share of one core the runner uses while nothing is asked of it, over [`IDLE_CPU_WINDOW`].
async fn idle_cpu(host: &Host) -> Result<f64> {
    let before = crate::system::cpu_seconds(host.pid())?;
    let started = Instant::now();
    sleep(IDLE_CPU_WINDOW).await;
    let used = crate::system::cpu_seconds(host.pid())? - before;
    Ok(used / started.elapsed().as_secs_f64())
}

/// One cron run, as the worker reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// `Date.now()` when the handler started (ms since the epoch).
    pub handler_start: u64,
    /// `ctx.scheduledTime`: when the runner's scheduler fired (ms since the epoch), if given.
    pub fired: Option<u64>,
}

impl Tick {
    /// Parses the query a tick worker sends (`source=..&now=..&fired=..`); `None` unless it
    /// reports a cron run.
    fn parse(query: &str) -> Option<Tick> {
        let field = |name: &str| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        };
        if field("source")? != "cron" {
            return None;
        }
        Some(Tick {
            handler_start: field("now")?.parse().ok()?,
            fired: field("fired").and_then(|t| t.parse().ok()),
        })
    }

    /// How long after the second's boundary (the nominal fire time) the handler started, in ms.
    /// A tick more than a second late would wrap around: the figure is modulo one second.
    pub fn handler_lag_ms(&self) -> f64 {
        (self.handler_start % 1000) as f64
    }

    /// How long after the second's boundary the scheduler fired, in ms.
    pub fn fire_lag_ms(&self) -> Option<f64> {
        self.fired.map(|fired| (fired % 1000) as f64)
    }

    /// From the scheduler firing to the handler starting, in ms.
    pub fn dispatch_ms(&self) -> Option<f64> {
        self.fired
            .map(|fired| self.handler_start.saturating_sub(fired) as f64)
    }
}

/// The cron runs seen in a window, from workers scheduled every second.
pub struct CronJitter {
    pub workers: usize,
    pub window: Duration,
    pub ticks: Vec<Tick>,
    /// Ticks the runner skipped (a run still in progress), over the workers' whole lives.
    pub skipped: u64,
}

/// A module worker that, on every run, reports to `url` its trigger, the time its handler
/// started and when the scheduler fired. `Date.now()` is read first thing.
fn tick_script(url: &str) -> String {
    let body = format!(
        "const now = Date.now();\n\
         const query = `?source=${{ctx.source}}&now=${{now}}&fired=${{ctx.scheduledTime}}`;\n\
         await (await fetch({} + query)).text();",
        js::lit(url)
    );
    format!("// {}\n{}", e2e::tag("tick"), js::module_tasks(&body))
}

/// Creates `workers` workers scheduled every second, lets their creation runs pass, and
/// collects the cron runs they report during `window`.
pub async fn cron_jitter(runner: &Path, workers: usize, window: Duration) -> Result<CronJitter> {
    let (host, sink) = tokio::join!(Host::start(runner, MAX_WORKERS), Sink::start());
    let host = host?;
    let mut ids = Vec::with_capacity(workers);
    for _ in 0..workers {
        ids.push(
            host.create(&tick_script(&sink.url("/tick")), Some(EVERY_SECOND))
                .await?,
        );
    }
    sleep(SETTLE).await;
    let first = sink.hits("/tick").len();
    eprintln!("cron jitter: collecting ticks of {workers} worker(s) for {window:?}");
    sleep(window).await;
    let ticks = sink.hits("/tick")[first..]
        .iter()
        .filter_map(|hit| Tick::parse(hit.query.as_deref()?))
        .collect();
    let mut skipped = 0;
    for id in &ids {
        skipped += e2e::count(&host.worker(id).await?, "skipped");
    }
    Ok(CronJitter {
        workers,
        window,
        ticks,
        skipped,
    })
}

/// Prints `what: done/total` to stderr each time `done` reaches another tenth of `total`.
pub fn progress(what: &str, done: usize, total: usize) {
    if done * 10 / total > (done - 1) * 10 / total {
        eprintln!("{what}: {done}/{total}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cron_ticks_only() {
        let tick = Tick::parse("source=cron&now=1700000000123&fired=1700000000002").unwrap();
        assert_eq!(tick.handler_lag_ms(), 123.0);
        assert_eq!(tick.fire_lag_ms(), Some(2.0));
        assert_eq!(tick.dispatch_ms(), Some(121.0));
        assert_eq!(Tick::parse("source=created&now=1&fired=1"), None);
        let unfired = Tick::parse("source=cron&now=5&fired=undefined").unwrap();
        assert_eq!(unfired.fired, None);
    }
}
