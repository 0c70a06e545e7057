//! `bench`: measures the Smart Worker runner, and deno side by side, and writes BENCHMARKS.md.
//!
//! ```sh
//! bench --runner target/release/runner [--deno PATH] [--out BENCHMARKS.md] [--quick] [--only http]
//! ```
//!
//! The figures: create→ready latency of `POST /`, durable state, idle memory per worker and idle CPU, cron
//! trigger jitter, the HTTP trigger's latency and throughput (with the bench's own client and
//! with `wrk`), the TaskHub trigger's latency; and deno's cold start, idle memory and
//! `deno serve` for comparison. Progress goes to standard error.
//! `scripts/bench.sh` builds the release binaries and runs this.

mod deno;
mod host;
mod http;
mod measure;
mod report;
mod stats;
mod system;
mod taskhub;
mod wrk;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use clap::{Parser, ValueEnum};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::report::Report;

/// Everything after this line of the output file (figures other tools measured, history) is kept
/// as it is when the bench rewrites its own part above it.
const KEPT_MARKER: &str =
    "<!-- bench: everything below this line is kept when bench rewrites the file -->";

/// Measures a Smart Worker runner (and deno, side by side) and writes the figures as Markdown.
///
/// An option given twice takes its last value, so a wrapper's defaults can be overridden.
#[derive(Debug, Parser)]
#[command(args_override_self = true)]
struct Cli {
    /// The runner binary to measure.
    #[arg(long)]
    runner: PathBuf,
    /// The deno binary to compare with [default: `deno` on PATH, else the npm package installed
    /// into ~/.cache/smart-worker/bench-npm]. Without deno the comparison is skipped.
    #[arg(long)]
    deno: Option<PathBuf>,
    /// Where to write the report (overwritten).
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Fewer samples: a quick sanity run, not figures to keep.
    #[arg(long)]
    quick: bool,
    /// The TaskHub section: the chain's poll interval (`poll_interval_ms`), ms.
    #[arg(long, default_value_t = 100)]
    taskhub_poll_ms: u64,
    /// Measure only this section (with the machine, the binaries and deno's figures it needs);
    /// the report says so. Write it elsewhere than BENCHMARKS.md (`--out`).
    #[arg(long, value_enum)]
    only: Option<Section>,
}

/// A section that can be measured on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Section {
    /// The HTTP trigger against `deno serve`, with the bench's client and with `wrk`.
    Http,
}

/// How many samples each measurement takes.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub quick: bool,
    /// Sequential creates timed.
    pub creates: usize,
    /// Worker counts whose idle memory is measured, each in a fresh runner.
    pub idle_workers: &'static [usize],
    /// Workers scheduled every second, and how long their ticks are collected.
    pub cron_workers: usize,
    pub cron_window: Duration,
    /// `deno run` cold starts timed.
    pub deno_runs: usize,
    /// Workers stored before the restore start-ups, and how many start-ups are timed.
    pub stored_workers: usize,
    pub restarts: usize,
    /// TaskHub events sent (one at a time).
    pub taskhub_events: usize,
    /// The HTTP trigger's load, the same for the runner and `deno serve`.
    pub http: http::HttpPlan,
}

impl Plan {
    const FULL: Plan = Plan {
        quick: false,
        creates: 200,
        idle_workers: &[1, 10, 100],
        cron_workers: 10,
        cron_window: Duration::from_secs(20),
        deno_runs: 30,
        stored_workers: 1000,
        restarts: 3,
        taskhub_events: 200,
        http: http::HttpPlan {
            sequential: 2000,
            connections: 16,
            window: Duration::from_secs(10),
            wrk: wrk::WrkPlan {
                threads: 1,
                connections: 32,
                duration: Duration::from_secs(10),
            },
        },
    };

    const QUICK: Plan = Plan {
        quick: true,
        creates: 20,
        idle_workers: &[1, 10],
        cron_workers: 3,
        cron_window: Duration::from_secs(5),
        deno_runs: 5,
        stored_workers: 50,
        restarts: 2,
        taskhub_events: 20,
        http: http::HttpPlan {
            sequential: 200,
            connections: 4,
            window: Duration::from_secs(2),
            wrk: wrk::WrkPlan {
                threads: 1,
                connections: 32,
                duration: Duration::from_secs(2),
            },
        },
    };
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    ensure!(
        cli.runner.is_file(),
        "no runner binary at {} (build it: cargo build --release -p runner)",
        cli.runner.display()
    );
    let plan = if cli.quick { Plan::QUICK } else { Plan::FULL };
    let date = OffsetDateTime::now_utc()
        .replace_nanosecond(0)?
        .format(&Rfc3339)?;
    let runner_version = version_of(&cli.runner)?;
    eprintln!("bench: {runner_version} at {}", cli.runner.display());

    let all = cli.only.is_none();
    let (mut create, mut durability, mut memory, mut cron) = (None, None, Vec::new(), None);
    if all {
        let latency = measure::create_latency(&cli.runner, plan.creates).await?;
        durability = Some(
            measure::durability(
                &cli.runner,
                plan.creates,
                plan.stored_workers,
                plan.restarts,
            )
            .await?,
        );
        create = Some(latency);
        for &workers in plan.idle_workers {
            memory.push(measure::idle_memory(&cli.runner, workers).await?);
        }
        cron = Some(measure::cron_jitter(&cli.runner, plan.cron_workers, plan.cron_window).await?);
    }
    let deno = deno::measure(cli.deno.as_deref(), plan.deno_runs).await;
    let http = http::measure(&cli.runner, deno.binary(), plan.http).await?;
    let mut taskhub = None;
    if all {
        let poll = Duration::from_millis(cli.taskhub_poll_ms.max(1));
        taskhub = Some(taskhub::measure(&cli.runner, plan.taskhub_events, poll).await?);
    }

    let report = Report {
        date,
        machine: system::Machine::describe(),
        runner: cli.runner,
        runner_version,
        command: report::shell_command(std::env::args()),
        plan,
        only: cli.only,
        create,
        durability,
        memory,
        cron,
        deno,
        http,
        taskhub,
    };
    let kept = fs::read_to_string(&cli.out)
        .ok()
        .and_then(|old| old.split_once(KEPT_MARKER).map(|(_, kept)| kept.to_owned()))
        .unwrap_or_else(|| "\n".to_owned());
    let text = format!("{}\n{KEPT_MARKER}{kept}", report.render());
    fs::write(&cli.out, text).with_context(|| format!("write {}", cli.out.display()))?;
    eprintln!("bench: wrote {}", cli.out.display());
    Ok(())
}

/// The first line `binary --version` prints.
fn version_of(binary: &Path) -> Result<String> {
    let output = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("run {} --version", binary.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(stdout
        .lines()
        .next()
        .unwrap_or("unknown version")
        .trim()
        .to_owned())
}
