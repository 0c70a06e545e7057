//! A `runner` process started for a measurement, and its HTTP API.
//!
//! Unlike the test harness's `e2e::Runner`, this keeps the process id: the memory figures read
//! the runner's `/proc/<pid>/status`.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use e2e::{json, Value};
use reqwest::{Client, StatusCode};
use tempfile::TempDir;
use tokio::time::{sleep, Instant};

use crate::system;

/// How long the runner may take to listen and answer `GET /healthz`.
const STARTUP: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);
/// Lines of the runner's log shown with an error.
const LOG_TAIL_LINES: usize = 40;

/// A running `runner` on an ephemeral loopback port; killed on drop.
pub struct Host {
    child: Child,
    base: String,
    client: Client,
    dir: TempDir,
    /// Management tokens of the workers created here, by id.
    tokens: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl Host {
    /// Starts `bin --listen 127.0.0.1:0 --addr-file <tmp> --max-workers <max_workers>` with the
    /// runner's defaults otherwise, and waits until it answers `GET /healthz`.
    pub async fn start(bin: &Path, max_workers: usize) -> Result<Host> {
        Host::start_with(bin, max_workers, &[]).await
    }

    /// Like [`Host::start`], with `extra` arguments after the harness's own.
    pub async fn start_with(bin: &Path, max_workers: usize, extra: &[&str]) -> Result<Host> {
        let dir = tempfile::tempdir().context("create a temp dir for the runner")?;
        let addr_file = dir.path().join("addr");
        let log = File::create(dir.path().join("runner.log")).context("create the runner log")?;
        let child = e2e::runner_command(bin)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--no-tls")
            .arg("--addr-file")
            .arg(&addr_file)
            .arg("--max-workers")
            .arg(max_workers.to_string())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let client = Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        let mut host = Host {
            child,
            base: String::new(),
            client,
            dir,
            tokens: Default::default(),
        };
        let addr = host.wait_for_addr(&addr_file).await?;
        host.base = format!("http://{addr}");
        host.wait_until_healthy().await?;
        Ok(host)
    }

    /// The runner's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The runner's resident set size, in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        system::rss_kib(self.pid())
    }

    /// `POST /` with a module worker `script` (and `schedule`, if any); returns the new
    /// worker's id once the runner answers `201`, i.e. once the script is evaluated.
    pub async fn create(&self, script: &str, schedule: Option<&str>) -> Result<String> {
        let mut body = json!({ "script": script, "type": "module" });
        if let Some(schedule) = schedule {
            body["schedule"] = json!(schedule);
        }
        self.create_body(body).await
    }

    /// `POST /` with the JSON `body` as is; the new worker's id once the runner answers `201`.
    pub async fn create_body(&self, body: Value) -> Result<String> {
        let (status, reply) = self
            .send(self.client.post(self.url("/")).json(&body))
            .await?;
        self.expect(StatusCode::CREATED, status, &reply, "POST /")?;
        let created = serde_json::from_str::<Value>(&reply).ok();
        let field = |name: &str| {
            created
                .as_ref()
                .and_then(|v| v[name].as_str().map(str::to_owned))
                .with_context(|| format!("201 without a {name:?}: {reply}"))
        };
        let id = field("id")?;
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), field("token")?);
        Ok(id)
    }

    /// The management token of worker `id` (empty if it was not created here).
    fn token(&self, id: &str) -> String {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    /// `DELETE /workers/{id}`, expecting `204`.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let request = self
            .client
            .delete(self.url(&format!("/workers/{id}")))
            .bearer_auth(self.token(id));
        let (status, reply) = self.send(request).await?;
        self.expect(StatusCode::NO_CONTENT, status, &reply, "DELETE")
    }

    /// `GET /workers/{id}`, expecting `200`.
    pub async fn worker(&self, id: &str) -> Result<Value> {
        let request = self
            .client
            .get(self.url(&format!("/workers/{id}")))
            .bearer_auth(self.token(id));
        let (status, reply) = self.send(request).await?;
        self.expect(StatusCode::OK, status, &reply, "GET /workers/{id}")?;
        Ok(serde_json::from_str(&reply)?)
    }

    /// `path` on the runner's API (`http://127.0.0.1:<port><path>`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(StatusCode, String)> {
        let response = request
            .send()
            .await
            .with_context(|| format!("request to the runner failed\n{}", self.log_tail()))?;
        let status = response.status();
        Ok((status, response.text().await?))
    }

    fn expect(&self, want: StatusCode, got: StatusCode, reply: &str, what: &str) -> Result<()> {
        ensure!(
            got == want,
            "{what}: expected {want}, got {got} {reply}\n{}",
            self.log_tail()
        );
        Ok(())
    }

    async fn wait_for_addr(&mut self, addr_file: &Path) -> Result<SocketAddr> {
        let deadline = Instant::now() + STARTUP;
        loop {
            self.ensure_alive()?;
            let addr = fs::read_to_string(addr_file)
                .ok()
                .and_then(|text| text.trim().parse().ok());
            if let Some(addr) = addr {
                return Ok(addr);
            }
            ensure!(
                Instant::now() < deadline,
                "the runner wrote no address within {STARTUP:?}\n{}",
                self.log_tail()
            );
            sleep(POLL).await;
        }
    }

    async fn wait_until_healthy(&mut self) -> Result<()> {
        let deadline = Instant::now() + STARTUP;
        loop {
            self.ensure_alive()?;
            let response = self.client.get(self.url("/healthz")).send().await;
            if response.is_ok_and(|r| r.status() == StatusCode::OK) {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the runner never answered GET /healthz within {STARTUP:?}\n{}",
                self.log_tail()
            );
            sleep(POLL).await;
        }
    }

    fn ensure_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the runner exited early ({status})\n{}", self.log_tail());
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let log = fs::read(self.dir.path().join("runner.log")).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        format!("--- the runner's log (tail) ---\n{}", tail.join("\n"))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Best effort: the process may already be gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
