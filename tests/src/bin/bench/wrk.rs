//! The HTTP trigger under an external load generator, `wrk` (Debian's package; `scripts/setup.sh`
//! installs it): written in C with one event loop per thread, it takes far less CPU than the
//! bench's own client, so on a small machine it leaves more to the server it measures. Only the
//! status is checked (a non-2xx answer or a socket error is an error); the bench's own client
//! checks every body.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::Command;

/// How `wrk` loads each server.
#[derive(Debug, Clone, Copy)]
pub struct WrkPlan {
    /// `-t`: threads (event loops).
    pub threads: usize,
    /// `-c`: connections, shared by the threads.
    pub connections: usize,
    /// `-d`: how long, whole seconds.
    pub duration: Duration,
}

/// `wrk` found on `PATH`, and what `wrk --version` says of it.
pub struct Wrk {
    pub path: PathBuf,
    pub version: String,
}

/// What one `wrk` run reports.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkLoad {
    /// `Requests/sec:`, every answer counted.
    pub requests_per_second: f64,
    /// `N requests in …`.
    pub requests: u64,
    /// The latency distribution's 50th and 99th percentiles, ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Non-2xx/3xx answers plus socket errors (connect, read, write, timeout).
    pub errors: u64,
}

impl Wrk {
    /// `wrk` on `PATH`, or why there is none.
    pub async fn locate() -> Result<Wrk> {
        let path = crate::deno::on_path("wrk")
            .context("no wrk on PATH (scripts/setup.sh installs Debian's wrk)")?;
        // `wrk --version` prints its banner and the usage, and exits 1.
        let output = Command::new(&path)
            .arg("--version")
            .output()
            .await
            .with_context(|| format!("run {} --version", path.display()))?;
        let version = String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .map(|line| {
                line.split_once(" Copyright")
                    .map_or(line, |(banner, _)| banner)
            })
            .map(|banner| banner.trim().to_owned())
            .filter(|line| line.starts_with("wrk"))
            .with_context(|| format!("{} --version printed no wrk banner", path.display()))?;
        Ok(Wrk { path, version })
    }

    /// Loads `url` for the plan's duration (after a one-second untimed run that opens the
    /// connections and warms the server) and returns wrk's figures.
    pub async fn load(&self, what: &str, url: &str, plan: WrkPlan) -> Result<WrkLoad> {
        self.run(url, plan, Duration::from_secs(1)).await?;
        eprintln!(
            "{what}: wrk -t{} -c{} -d{}s",
            plan.threads,
            plan.connections,
            plan.duration.as_secs()
        );
        let text = self.run(url, plan, plan.duration).await?;
        parse(&text).with_context(|| format!("wrk's output for {url}:\n{text}"))
    }

    async fn run(&self, url: &str, plan: WrkPlan, duration: Duration) -> Result<String> {
        let output = Command::new(&self.path)
            .arg(format!("-t{}", plan.threads))
            .arg(format!("-c{}", plan.connections))
            .arg(format!("-d{}s", duration.as_secs().max(1)))
            .arg("--latency")
            .arg(url)
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("run {}", self.path.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "wrk failed ({}): {}{}",
                output.status,
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(stdout)
    }
}

/// Reads wrk 4's report (`--latency`).
pub fn parse(text: &str) -> Result<WrkLoad> {
    let mut requests_per_second = None;
    let mut requests = None;
    let mut p50_ms = None;
    let mut p99_ms = None;
    let mut errors = 0;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", value] => requests_per_second = Some(value.parse::<f64>()?),
            [count, "requests", "in", ..] => requests = Some(count.parse::<u64>()?),
            ["50%", value] => p50_ms = Some(time_ms(value)?),
            ["99%", value] => p99_ms = Some(time_ms(value)?),
            ["Non-2xx", "or", "3xx", "responses:", count] => errors += count.parse::<u64>()?,
            ["Socket", "errors:", rest @ ..] => {
                // `connect 0, read 0, write 0, timeout 0`
                for count in rest.iter().skip(1).step_by(2) {
                    errors += count.trim_end_matches(',').parse::<u64>()?;
                }
            }
            _ => {}
        }
    }
    Ok(WrkLoad {
        requests_per_second: requests_per_second.context("no Requests/sec line")?,
        requests: requests.context("no `N requests in` line")?,
        p50_ms: p50_ms.context("no 50% line (was --latency given?)")?,
        p99_ms: p99_ms.context("no 99% line")?,
        errors,
    })
}

/// One of wrk's times (`221.00us`, `1.23ms`, `1.00s`, `2.00m`) in ms.
fn time_ms(text: &str) -> Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .with_context(|| format!("not a number: {text:?}"))?;
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        other => bail!("unknown unit {other:?} in {text:?}"),
    };
    Ok(value * scale)
}

/// The command line the report shows, e.g. `wrk -t1 -c32 -d10s --latency URL`.
pub fn command_line(path: &Path, plan: WrkPlan) -> String {
    format!(
        "{} -t{} -c{} -d{}s --latency URL",
        path.file_name()
            .unwrap_or(path.as_os_str())
            .to_string_lossy(),
        plan.threads,
        plan.connections,
        plan.duration.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// wrk 4.1.0's report of a server that answered everything with 404, and lost connections.
    const REPORT: &str = "Running 1s test @ http://127.0.0.1:18777/nonexist
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.04ms    4.92ms  18.19ms   59.13%
    Req/Sec   704.60    236.71     1.09k    70.00%
  Latency Distribution
     50%  221.00us
     75%   10.07ms
     90%   13.08ms
     99%    1.02s
  702 requests in 1.00s, 356.67KB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 702
Requests/sec:    699.74
Transfer/sec:    355.52KB
";

    #[test]
    fn reads_rate_percentiles_and_every_kind_of_error() {
        let load = parse(REPORT).unwrap();
        assert_eq!(load.requests_per_second, 699.74);
        assert_eq!(load.requests, 702);
        assert!((load.p50_ms - 0.221).abs() < 1e-9, "{load:?}");
        assert_eq!(load.p99_ms, 1020.0);
        assert_eq!(load.errors, 702 + 1 + 2 + 3 + 4);
    }

    #[test]
    fn a_report_without_latency_distribution_is_refused() {
        let without: String = REPORT
            .lines()
            .filter(|line| !line.trim_end().ends_with('s') || !line.contains('%'))
            .map(|line| format!("{line}\n"))
            .collect();
        let error = parse(&without).unwrap_err().to_string();
        assert!(error.contains("50%"), "{error}");
    }

    #[test]
    fn times_in_every_unit() {
        assert_eq!(time_ms("250.00us").unwrap(), 0.25);
        assert_eq!(time_ms("1.50ms").unwrap(), 1.5);
        assert_eq!(time_ms("2.00s").unwrap(), 2000.0);
        assert!(time_ms("3.00x").is_err());
        assert!(time_ms("12").is_err());
    }
}
