//! The HTTP trigger: requests to a worker's `fetch` handler (`/w/{id}/…`), and the same module
//! under `deno serve`, side by side in one run.
//!
//! Both servers get the same load from this process over loopback: first one request at a time
//! over one kept-alive connection (latency), then several connections sending back to back for
//! a fixed window (throughput, and latency under that load). Client and server share the
//! machine's CPUs, for both alike. Every answer is checked: a wrong status or body is counted as
//! an error, not as a request served. Then `wrk` (`wrk.rs`), where installed, loads each server
//! the same way: an external client that takes less of the CPUs from the server.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use reqwest::Client;
use tokio::process::Child;
use tokio::time::{sleep, Instant};

use crate::deno::Deno;
use crate::host::Host;
use crate::measure::{millis, progress};
use crate::wrk::{Wrk, WrkLoad, WrkPlan};

/// The worker both servers run: a module whose default export has a `fetch` handler, which is
/// what the runner's HTTP trigger and `deno serve` both call.
pub const FETCH_MODULE: &str = r#"export default {
  fetch(request) {
    return new Response(`hello from ${new URL(request.url).pathname}\n`, {
      headers: { "content-type": "text/plain" },
    });
  },
};
"#;

/// The path requested (after the runner's `/w/{id}` prefix) and the answer it must get.
const PATH: &str = "/hello";
const EXPECTED_BODY: &str = "hello from /hello\n";
/// Requests sent before any is timed: connections opened, code paths warm.
pub const WARM_UP: usize = 200;
/// How long `deno serve` may take to answer its first request.
const STARTUP: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How much load each server gets.
#[derive(Debug, Clone, Copy)]
pub struct HttpPlan {
    /// Requests sent one at a time.
    pub sequential: usize,
    /// Connections sending back to back, and for how long.
    pub connections: usize,
    pub window: Duration,
    /// The same servers under `wrk`.
    pub wrk: WrkPlan,
}

/// One server's figures.
pub struct Load {
    /// Round trip of each request sent one at a time.
    pub sequential_ms: Vec<f64>,
    pub connections: usize,
    pub window: Duration,
    /// Round trip of each request answered correctly during the window.
    pub loaded_ms: Vec<f64>,
    /// Requests that failed or got a wrong answer (in both phases).
    pub errors: usize,
}

impl Load {
    /// Correct answers per second during the window.
    pub fn requests_per_second(&self) -> f64 {
        self.loaded_ms.len() as f64 / self.window.as_secs_f64()
    }
}

/// What the HTTP section shows.
pub struct HttpFigures {
    pub runner: Load,
    /// `deno serve`'s figures, or why there are none.
    pub deno: std::result::Result<Load, String>,
    /// Both servers under `wrk`, or why not.
    pub wrk: std::result::Result<WrkFigures, String>,
}

/// `wrk`'s figures for each server, or why there are none.
pub struct WrkFigures {
    pub wrk: Wrk,
    pub runner: std::result::Result<WrkLoad, String>,
    pub deno: std::result::Result<WrkLoad, String>,
}

/// Measures a runner worker's `fetch` handler, then `deno serve` with the same module (when
/// there is a deno binary; its problems become the reason it is missing, not an error), each
/// with the bench's own client and then with `wrk` (when installed; likewise).
pub async fn measure(runner: &Path, deno: Option<&Deno>, plan: HttpPlan) -> Result<HttpFigures> {
    let wrk = Wrk::locate().await.map_err(|error| {
        eprintln!("wrk: skipped: {error:#}");
        format!("{error:#}")
    });
    let (runner_load, runner_wrk) = {
        let host = Host::start(runner, 1).await?;
        let id = host.create(FETCH_MODULE, None).await?;
        let url = host.url(&format!("/w/{id}{PATH}"));
        let own = drive("runner fetch", &url, plan).await?;
        (own, with_wrk(&wrk, "runner fetch", &url, plan.wrk).await)
    };
    let (deno_load, deno_wrk) = match deno {
        None => {
            let why = "no deno binary (see the deno row above)".to_owned();
            (Err(why.clone()), Err(why))
        }
        Some(deno) => match DenoServe::start(deno).await {
            Ok(server) => {
                let url = server.url(PATH);
                let own = drive("deno serve", &url, plan).await.map_err(|error| {
                    eprintln!("deno serve: skipped: {error:#}");
                    format!("{error:#}")
                });
                (own, with_wrk(&wrk, "deno serve", &url, plan.wrk).await)
            }
            Err(error) => {
                eprintln!("deno serve: skipped: {error:#}");
                (Err(format!("{error:#}")), Err(format!("{error:#}")))
            }
        },
    };
    Ok(HttpFigures {
        runner: runner_load,
        deno: deno_load,
        wrk: wrk.map(|wrk| WrkFigures {
            wrk,
            runner: runner_wrk,
            deno: deno_wrk,
        }),
    })
}

/// `wrk`'s figures for `url`, or why there are none.
async fn with_wrk(
    wrk: &std::result::Result<Wrk, String>,
    what: &str,
    url: &str,
    plan: WrkPlan,
) -> std::result::Result<WrkLoad, String> {
    let wrk = wrk.as_ref().map_err(|why| why.clone())?;
    wrk.load(what, url, plan).await.map_err(|error| {
        eprintln!("{what}: wrk: {error:#}");
        format!("{error:#}")
    })
}

/// `deno serve` of [`FETCH_MODULE`] on a free loopback port; killed on drop.
struct DenoServe {
    _dir: tempfile::TempDir,
    _child: Child,
    base: String,
}

impl DenoServe {
    async fn start(deno: &Deno) -> Result<DenoServe> {
        let dir = tempfile::tempdir().context("create a temp dir for deno serve")?;
        let script: PathBuf = dir.path().join("worker.js");
        std::fs::write(&script, FETCH_MODULE).context("write the deno serve module")?;
        let port = free_port()?;
        // Its messages go to a file: a pipe nobody reads while the load runs could fill up.
        let log_path = dir.path().join("deno-serve.log");
        let log = std::fs::File::create(&log_path).context("create the deno serve log")?;
        let mut child = deno
            .command(&dir.path().join("deno-dir"))
            .arg("serve")
            .arg("--quiet")
            .arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(port.to_string())
            .arg(&script)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start deno serve")?;
        let base = format!("http://127.0.0.1:{port}");
        let client = keep_alive_client()?;
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = child.try_wait()? {
                let messages = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("deno serve exited ({status}): {}", messages.trim());
            }
            if let Ok(response) = client.get(format!("{base}{PATH}")).send().await {
                if response.status().is_success() {
                    break;
                }
            }
            ensure!(
                Instant::now() < deadline,
                "deno serve did not answer within {STARTUP:?}"
            );
            sleep(Duration::from_millis(50)).await;
        }
        Ok(DenoServe {
            _dir: dir,
            _child: child,
            base,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// A loopback port nobody listens on (the kernel's choice; free again once this returns).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// An HTTP/1.1 client that keeps its connections alive.
fn keep_alive_client() -> Result<Client> {
    Ok(Client::builder()
        .no_proxy()
        .http1_only()
        .timeout(REQUEST_TIMEOUT)
        .build()?)
}

/// Sends `url` the plan's load: warm-up, sequential requests, then the loaded window.
async fn drive(what: &str, url: &str, plan: HttpPlan) -> Result<Load> {
    let client = keep_alive_client()?;
    for _ in 0..WARM_UP {
        ensure!(
            request(&client, url).await.is_some(),
            "{what}: a warm-up request to {url} failed or got a wrong answer"
        );
    }
    let mut errors = 0;
    let mut sequential_ms = Vec::with_capacity(plan.sequential);
    for i in 1..=plan.sequential {
        match request(&client, url).await {
            Some(ms) => sequential_ms.push(ms),
            None => errors += 1,
        }
        progress(&format!("{what}: one at a time"), i, plan.sequential);
    }

    eprintln!(
        "{what}: {} connections for {:?}",
        plan.connections, plan.window
    );
    let deadline = Instant::now() + plan.window;
    let mut tasks = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        let client = keep_alive_client()?;
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            let mut failed = 0;
            while Instant::now() < deadline {
                match request(&client, &url).await {
                    Some(ms) => answered.push(ms),
                    None => failed += 1,
                }
            }
            (answered, failed)
        }));
    }
    let mut loaded_ms = Vec::new();
    for task in tasks {
        let (answered, failed) = task.await.context("a load task panicked")?;
        loaded_ms.extend(answered);
        errors += failed;
    }
    Ok(Load {
        sequential_ms,
        connections: plan.connections,
        window: plan.window,
        loaded_ms,
        errors,
    })
}

/// One `GET url`: its round trip in ms if it was answered `200` with [`EXPECTED_BODY`].
async fn request(client: &Client, url: &str) -> Option<f64> {
    let started = Instant::now();
    let response = client.get(url).send().await.ok()?;
    let ok = response.status().is_success();
    let body = response.text().await.ok()?;
    let elapsed = millis(started.elapsed());
    (ok && body == EXPECTED_BODY).then_some(elapsed)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A server that answers correctly, except every fourth request after the warm-up.
    async fn flaky_server() -> String {
        let count = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().route(
            PATH,
            axum::routing::get(move || {
                let n = count.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n >= WARM_UP && n.is_multiple_of(4) {
                        "wrong\n"
                    } else {
                        EXPECTED_BODY
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}{PATH}")
    }

    #[tokio::test]
    async fn wrong_answers_are_errors_not_requests_served() {
        let url = flaky_server().await;
        let plan = HttpPlan {
            sequential: 40,
            connections: 2,
            window: Duration::from_millis(300),
            wrk: WrkPlan {
                threads: 1,
                connections: 2,
                duration: Duration::from_secs(1),
            },
        };
        let load = drive("test", &url, plan).await.unwrap();
        // Requests 200..240: ten of them are multiples of four.
        assert_eq!(load.sequential_ms.len(), 30);
        let loaded_errors = load.errors - 10;
        assert!(!load.loaded_ms.is_empty());
        // One in four of the loaded requests got the wrong answer (give or take the ends).
        assert!(
            (3 * loaded_errors).abs_diff(load.loaded_ms.len()) <= 6,
            "{} answered, {loaded_errors} wrong",
            load.loaded_ms.len()
        );
        assert_eq!(
            load.requests_per_second(),
            load.loaded_ms.len() as f64 / 0.3
        );
    }
}
