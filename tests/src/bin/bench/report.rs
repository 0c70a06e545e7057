//! BENCHMARKS.md: the figures as Markdown tables, with how and where they were measured.

use std::fmt::{self, Write};
use std::path::{Component, Path, PathBuf};

use crate::deno::DenoFigures;
use crate::http::{HttpFigures, Load, WrkFigures, FETCH_MODULE, WARM_UP};
use crate::measure::{CreateLatency, CronJitter, Durability, IdleMemory, Tick};
use crate::stats::Summary;
use crate::system::{Machine, KIB_PER_MIB};
use crate::taskhub::TaskHubFigures;
use crate::wrk::{self, WrkLoad};
use crate::{Plan, Section};

/// Everything BENCHMARKS.md shows.
pub struct Report {
    /// When the run started (RFC 3339, UTC).
    pub date: String,
    pub machine: Machine,
    pub runner: PathBuf,
    /// What `runner --version` says.
    pub runner_version: String,
    /// The command line that produced the report, shell-quoted.
    pub command: String,
    pub plan: Plan,
    /// `--only`: the one section measured; the others are `None` (or empty).
    pub only: Option<Section>,
    pub create: Option<CreateLatency>,
    pub durability: Option<Durability>,
    pub memory: Vec<IdleMemory>,
    pub cron: Option<CronJitter>,
    pub deno: DenoFigures,
    pub http: HttpFigures,
    pub taskhub: Option<TaskHubFigures>,
}

impl Report {
    /// The whole Markdown file.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out)
            .expect("writing to a String cannot fail");
        out
    }

    fn write(&self, out: &mut String) -> fmt::Result {
        self.header(out)?;
        self.setup(out)?;
        if let Some(create) = &self.create {
            self.create_section(out, create)?;
            if let Some(durability) = &self.durability {
                self.durability_section(out, create, durability)?;
            }
        }
        if !self.memory.is_empty() {
            self.memory_section(out)?;
        }
        if let Some(cron) = &self.cron {
            self.cron_section(out, cron)?;
        }
        self.http_section(out)?;
        if let Some(taskhub) = &self.taskhub {
            self.taskhub_section(out, taskhub)?;
        }
        method(out)
    }

    fn header(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "# Benchmarks\n")?;
        writeln!(
            out,
            "Measured on {} by `bench` (`tests/src/bin/bench`; `scripts/bench.sh` builds and runs it):\n",
            self.date
        )?;
        writeln!(out, "```sh\n{}\n```\n", self.command)?;
        if build_profile(&self.runner) == "debug" {
            writeln!(
                out,
                "> **Debug build of the runner**: unoptimised, so these figures are not \
                 representative; `scripts/bench.sh` measures the release build.\n"
            )?;
        }
        if self.plan.quick {
            writeln!(out, "> **`--quick`**: reduced counts, a sanity run.\n")?;
        }
        if let Some(section) = self.only {
            writeln!(
                out,
                "> **`--only {}`**: this section alone was measured.\n",
                format!("{section:?}").to_lowercase()
            )?;
        }
        Ok(())
    }

    fn setup(&self, out: &mut String) -> fmt::Result {
        let machine = &self.machine;
        let memory = machine.mem_total_kib.map_or("unknown".to_owned(), |kib| {
            format!("{:.1} GiB", kib as f64 / KIB_PER_MIB / 1024.0)
        });
        writeln!(out, "## Machine and binaries\n")?;
        writeln!(out, "| | |\n|---|---|")?;
        writeln!(out, "| CPUs (`nproc`) | {} |", machine.cpus)?;
        writeln!(out, "| CPU | {} |", machine.cpu_model)?;
        writeln!(out, "| memory | {memory} |")?;
        writeln!(out, "| kernel | {} |", machine.kernel)?;
        writeln!(
            out,
            "| runner | `{}` ({} build; `{}`) |",
            self.runner.display(),
            build_profile(&self.runner),
            self.runner_version
        )?;
        match &self.deno {
            DenoFigures::Measured { deno, .. } => writeln!(
                out,
                "| deno | `{}` ({}) |",
                deno.path.display(),
                deno.version
            )?,
            DenoFigures::Unavailable(reason) => {
                writeln!(out, "| deno | not measured: {} |", table_cell(reason))?
            }
        }
        match &self.http.wrk {
            Ok(figures) => writeln!(
                out,
                "| wrk | `{}` ({}) |",
                figures.wrk.path.display(),
                figures.wrk.version
            )?,
            Err(reason) => writeln!(out, "| wrk | not used: {} |", table_cell(reason))?,
        }
        writeln!(out)
    }

    fn create_section(&self, out: &mut String, create: &CreateLatency) -> fmt::Result {
        writeln!(out, "## Create → ready\n")?;
        writeln!(
            out,
            "runner: {} workers created one after the other with `POST /` (JSON; a module worker \
             with an empty `tasks()`, made unique by a comment), each deleted right after. The \
             runner answers `201` only once the script is evaluated, so the round trip is the \
             create→ready latency.",
            create.samples_ms.len()
        )?;
        if let DenoFigures::Measured { cold_start_ms, .. } = &self.deno {
            writeln!(
                out,
                "deno: `deno run --quiet <file>` of the same module (a new file each run), from \
                 spawn to exit, {} runs after one untimed run.",
                cold_start_ms.len()
            )?;
        }
        writeln!(out)?;
        summary_header(out, "runs", "ms")?;
        summary_row(out, "runner: `POST /` → `201`", &create.samples_ms, 1)?;
        if let DenoFigures::Measured { cold_start_ms, .. } = &self.deno {
            summary_row(out, "deno: `deno run` spawn → exit", cold_start_ms, 1)?;
        }
        writeln!(
            out,
            "\nThe runner's RSS: {} MiB before the first create, {} MiB after the last delete.\n",
            mib(create.rss_before_kib as f64),
            mib(create.rss_after_kib as f64)
        )
    }

    fn durability_section(
        &self,
        out: &mut String,
        create: &CreateLatency,
        d: &Durability,
    ) -> fmt::Result {
        writeln!(out, "## Durable state (`--state-dir`)\n")?;
        writeln!(
            out,
            "Create → ready as above, side by side: without a state directory (the section above) \
             and with one, where `201` waits until the sealed record is on disk (temporary file, \
             fsync, rename, fsync of the directory; no TEE here, so the dev key). Start-up: from \
             spawning the runner to the first `200` from `/healthz`, which answers only once every \
             stored worker is back (each re-evaluated in its own isolate).\n"
        )?;
        summary_header(out, "runs", "ms")?;
        summary_row(out, "`POST /` → `201`, stateless", &create.samples_ms, 1)?;
        summary_row(out, "`POST /` → `201`, durable", &d.durable_create_ms, 1)?;
        summary_row(
            out,
            "start-up, empty state directory",
            &d.empty_startup_ms,
            0,
        )?;
        summary_row(
            out,
            &format!("start-up restoring {} workers", d.stored),
            &d.restore_startup_ms,
            0,
        )?;
        writeln!(
            out,
            "\nRSS with the {} restored workers: {} MiB.\n",
            d.stored,
            mib(d.restored_rss_kib as f64)
        )
    }

    fn memory_section(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "## Idle memory and CPU\n")?;
        writeln!(
            out,
            "`VmRSS` (from `/proc/<pid>/status`) of a fresh runner before any worker (RSS(0)) and \
             after creating N idle workers (no schedule) and waiting for their creation runs to \
             finish (RSS(N)). Per worker: (RSS(N) − RSS(0)) / N; at small N it includes what the \
             first worker initialises once for all. CPU(0) and CPU(N): the runner's `utime + \
             stime` (from `/proc/<pid>/stat`) over 5 s at those two moments, in % of one core: \
             what idle workers cost while nothing is asked of them."
        )?;
        if matches!(self.deno, DenoFigures::Measured { .. }) {
            writeln!(
                out,
                "deno: one `deno run` process of the same module plus a timer that keeps it \
                 alive, read after 1 s."
            )?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "| workers | RSS(0) (MiB) | RSS(N) (MiB) | per worker (MiB) | CPU(0) (%) | CPU(N) (%) |\n\
             |---:|---:|---:|---:|---:|---:|"
        )?;
        let percent = |share: f64| format!("{:.2}", share * 100.0);
        for point in &self.memory {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                point.workers,
                mib(point.base_kib as f64),
                mib(point.total_kib as f64),
                mib(point.per_worker_kib()),
                percent(point.base_cpu),
                percent(point.total_cpu)
            )?;
        }
        if let DenoFigures::Measured { idle_rss_kib, .. } = &self.deno {
            let rss = mib(*idle_rss_kib as f64);
            writeln!(out, "| deno: 1 process | – | {rss} | {rss} | – | – |")?;
        }
        writeln!(out)
    }

    fn cron_section(&self, out: &mut String, cron: &CronJitter) -> fmt::Result {
        let seconds = cron.window.as_secs_f64();
        writeln!(out, "## Cron trigger jitter\n")?;
        writeln!(
            out,
            "{} workers scheduled `* * * * * *` (every second), each `tasks()` reporting to a \
             loopback sink `Date.now()` at its start and `ctx.scheduledTime` (when the runner's \
             scheduler fired). Only runs with `ctx.source === \"cron\"` count, during {seconds:.0} s \
             after the creation runs. Lags are in ms after the whole second, the nominal fire \
             time (modulo 1 s: a run over a second late would wrap around).\n",
            cron.workers
        )?;
        let handler: Vec<f64> = cron.ticks.iter().map(Tick::handler_lag_ms).collect();
        let fired: Vec<f64> = cron.ticks.iter().filter_map(Tick::fire_lag_ms).collect();
        let dispatch: Vec<f64> = cron.ticks.iter().filter_map(Tick::dispatch_ms).collect();
        summary_header(out, "ticks", "ms")?;
        summary_row(out, "handler start: `Date.now() % 1000`", &handler, 0)?;
        summary_row(
            out,
            "scheduler fired: `ctx.scheduledTime % 1000`",
            &fired,
            0,
        )?;
        summary_row(
            out,
            "dispatch: handler start − `ctx.scheduledTime`",
            &dispatch,
            0,
        )?;
        writeln!(
            out,
            "\nTicks seen: {} of about {:.0} expected ({} workers × {seconds:.0} s); ticks the runner \
             skipped because the previous run was still going: {}.\n",
            cron.ticks.len(),
            cron.workers as f64 * seconds,
            cron.workers,
            cron.skipped
        )
    }

    fn http_section(&self, out: &mut String) -> fmt::Result {
        let HttpFigures { runner, deno, wrk } = &self.http;
        writeln!(out, "## HTTP trigger: a worker's `fetch` vs `deno serve`\n")?;
        writeln!(
            out,
            "The same module in both: the runner's worker reached at `/w/{{id}}/hello` (its HTTP \
             trigger), and `deno serve --host 127.0.0.1 --port <free> worker.js` (one process, \
             one isolate):\n\n```js\n{FETCH_MODULE}```\n\n\
             The load comes from `bench` itself (reqwest, HTTP/1.1 keep-alive, loopback), the \
             same for both and on the same {cpus} CPUs as the server: {warm_up} untimed \
             requests, {sequential} one at a time over one connection, then {connections} \
             connections sending back to back for {window:.0?}. Only `200` with the expected \
             body counts; anything else is an error.\n",
            cpus = self.machine.cpus,
            warm_up = WARM_UP,
            sequential = self.plan.http.sequential,
            connections = self.plan.http.connections,
            window = self.plan.http.window,
        )?;
        summary_header(out, "requests", "ms")?;
        let loaded = |name: &str, load: &Load| format!("{name}: {} connections", load.connections);
        summary_row(out, "runner: one at a time", &runner.sequential_ms, 2)?;
        if let Ok(deno) = deno {
            summary_row(out, "deno serve: one at a time", &deno.sequential_ms, 2)?;
        }
        summary_row(out, &loaded("runner", runner), &runner.loaded_ms, 2)?;
        if let Ok(deno) = deno {
            summary_row(out, &loaded("deno serve", deno), &deno.loaded_ms, 2)?;
        }
        writeln!(
            out,
            "\n| | connections | requests/s | errors |\n|---|---:|---:|---:|"
        )?;
        throughput_row(out, "runner", runner)?;
        match deno {
            Ok(deno) => throughput_row(out, "deno serve", deno)?,
            Err(why) => writeln!(
                out,
                "| deno serve | – | not measured: {} | – |",
                table_cell(why)
            )?,
        }
        if let Ok(deno) = deno {
            writeln!(
                out,
                "\nrunner ÷ deno serve, requests/s with the bench's client: {:.2}×.",
                runner.requests_per_second() / deno.requests_per_second()
            )?;
        }
        writeln!(out)?;
        match wrk {
            Ok(figures) => self.wrk_part(out, figures),
            Err(why) => writeln!(out, "Not measured with `wrk`: {}.\n", table_cell(why)),
        }
    }

    /// The same two servers under `wrk`.
    fn wrk_part(&self, out: &mut String, figures: &WrkFigures) -> fmt::Result {
        let plan = self.plan.http.wrk;
        writeln!(
            out,
            "The same servers under `{}` (an external client in C, one event loop per thread: it \
             takes less of the {cpus} CPUs from the server than the bench's client does; it \
             checks the status only, an answer other than 2xx/3xx or a socket error is an \
             error), each after an untimed one-second `wrk` run:\n",
            wrk::command_line(&figures.wrk.path, plan),
            cpus = self.machine.cpus,
        )?;
        writeln!(
            out,
            "| `wrk` | requests | requests/s | p50 (ms) | p99 (ms) | errors |\n\
             |---|---:|---:|---:|---:|---:|"
        )?;
        wrk_row(out, "runner", &figures.runner)?;
        wrk_row(out, "deno serve", &figures.deno)?;
        if let (Ok(runner), Ok(deno)) = (&figures.runner, &figures.deno) {
            writeln!(
                out,
                "\nrunner ÷ deno serve, requests/s with `wrk`: {:.2}×.",
                runner.requests_per_second / deno.requests_per_second
            )?;
        }
        writeln!(out)
    }

    fn taskhub_section(&self, out: &mut String, taskhub: &TaskHubFigures) -> fmt::Result {
        writeln!(out, "## TaskHub trigger: event → `tasks()`\n")?;
        let TaskHubFigures::Measured {
            poll_interval_ms,
            latency_ms,
            sent,
            missed,
            duplicates,
        } = taskhub
        else {
            if let TaskHubFigures::Unavailable(why) = taskhub {
                writeln!(out, "Not measured: {}.\n", table_cell(why))?;
            }
            return Ok(());
        };
        writeln!(
            out,
            "A hardhat node (`contracts::devchain`; it mines a block per transaction) on loopback, \
             the runner's chain configured with `confirmations: 0` and \
             **`poll_interval_ms: {poll_interval_ms}`** (`bench --taskhub-poll-ms`; the default \
             for a chain is 2000), one worker watching hub 1. {sent} `notify` transactions, one \
             at a time, each after a pause of a pseudo-random fraction of the poll interval. \
             Latency: from the node's answer to `eth_sendTransaction` (the log is mined by then) \
             to `performance.timeOrigin + performance.now()` at the top of `tasks()`. It is \
             dominated by the wait for the next poll (uniform over one interval).\n"
        )?;
        summary_header(out, "events", "ms")?;
        summary_row(out, "`notify` answered → `tasks()` starts", latency_ms, 1)?;
        writeln!(
            out,
            "\nMissed (not seen within 10 s): {missed}; delivered more than once: {duplicates}.\n"
        )
    }
}

fn method(out: &mut String) -> fmt::Result {
    writeln!(out, "## Method\n")?;
    writeln!(
        out,
        "- Percentiles are nearest-rank: the pth percentile of n samples is the sample of rank \
         ⌈p·n/100⌉ in ascending order (always a measured value; with fewer than 100 samples p99 \
         is the maximum).\n\
         - Every measurement starts its own runner (`--listen 127.0.0.1:0 --max-workers 10000`, \
         other settings at their defaults); all traffic stays on 127.0.0.1.\n\
         - MiB = 1024 × 1024 bytes."
    )
}

/// A row of the `wrk` table.
fn wrk_row(out: &mut String, label: &str, load: &Result<WrkLoad, String>) -> fmt::Result {
    match load {
        Ok(load) => writeln!(
            out,
            "| {label} | {} | {:.0} | {:.2} | {:.2} | {} |",
            load.requests, load.requests_per_second, load.p50_ms, load.p99_ms, load.errors
        ),
        Err(why) => writeln!(
            out,
            "| {label} | – | not measured: {} | – | – | – |",
            table_cell(why)
        ),
    }
}

/// A row of the HTTP throughput table.
fn throughput_row(out: &mut String, label: &str, load: &Load) -> fmt::Result {
    writeln!(
        out,
        "| {label} | {} | {:.0} | {} |",
        load.connections,
        load.requests_per_second(),
        load.errors
    )
}

fn summary_header(out: &mut String, count: &str, unit: &str) -> fmt::Result {
    writeln!(
        out,
        "| | {count} | p50 ({unit}) | p99 ({unit}) | max ({unit}) | mean ({unit}) |\n\
         |---|---:|---:|---:|---:|---:|"
    )
}

/// A table row of `samples`' summary with `decimals` digits after the point.
fn summary_row(out: &mut String, label: &str, samples: &[f64], decimals: usize) -> fmt::Result {
    match Summary::of(samples) {
        Some(s) => writeln!(
            out,
            "| {label} | {} | {:.decimals$} | {:.decimals$} | {:.decimals$} | {:.decimals$} |",
            s.n, s.p50, s.p99, s.max, s.mean
        ),
        None => writeln!(out, "| {label} | 0 | – | – | – | – |"),
    }
}

/// KiB as MiB with one decimal.
fn mib(kib: f64) -> String {
    format!("{:.1}", kib / KIB_PER_MIB)
}

/// `text` on one line, safe inside a Markdown table cell.
fn table_cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// `release` or `debug` from the binary's path (`…/release/runner`), else `unknown`.
pub fn build_profile(binary: &Path) -> &'static str {
    let dirs: Vec<Component> = binary.components().collect();
    if dirs.contains(&Component::Normal("release".as_ref())) {
        "release"
    } else if dirs.contains(&Component::Normal("debug".as_ref())) {
        "debug"
    } else {
        "unknown"
    }
}

/// `args` as one shell command line, quoting what the shell would interpret.
pub fn shell_command(args: impl IntoIterator<Item = String>) -> String {
    args.into_iter()
        .map(|arg| shell_quote(&arg))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_the_build_profile() {
        assert_eq!(build_profile(Path::new("/t/release/runner")), "release");
        assert_eq!(build_profile(Path::new("/t/debug/runner")), "debug");
        assert_eq!(build_profile(Path::new("/usr/bin/runner")), "unknown");
    }

    #[test]
    fn quotes_for_the_shell() {
        let args = ["bench", "--out", "/tmp/a b.md", "it's"].map(String::from);
        assert_eq!(shell_command(args), r"bench --out '/tmp/a b.md' 'it'\''s'");
    }
}
