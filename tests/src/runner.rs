//! Starting the `runner` binary and talking to its HTTP API.

use std::collections::HashMap;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::multipart::Form;
use reqwest::{Client, RequestBuilder};
use serde_json::Value;
use tempfile::TempDir;
use tokio::time::{sleep, Instant};

use crate::reply::Reply;
use crate::PATIENCE;

/// How long the runner may take to start listening and answer `/healthz`.
const STARTUP: Duration = Duration::from_secs(60);
/// Per-request timeout; `POST /workers/{id}/tasks` answers only after the run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);
/// Lines of the runner's log shown when a test fails.
const LOG_TAIL_LINES: usize = 80;

/// A running `runner` process on an ephemeral loopback port; killed on drop.
pub struct Runner {
    child: Child,
    base: String,
    log_path: PathBuf,
    client: Client,
    tls_addr: Option<String>,
    /// Management tokens of the workers created through this harness, by worker id: sent
    /// automatically on `/workers/{id}…` requests (see [`Runner::request_as`] to choose).
    tokens: Mutex<HashMap<String, String>>,
    _dir: TempDir,
}

impl Runner {
    /// Starts the runner with `--listen 127.0.0.1:0 --addr-file <tmp>/addr` followed by
    /// `extra_args`, and waits until `GET /healthz` answers `200`.
    ///
    /// The binary is `$RUNNER_BIN`, else `<target>/debug/runner` next to this test binary's
    /// `<target>/debug/deps/`. Its stdout and stderr go to a log file ([`Runner::logs`]).
    pub async fn start(extra_args: &[&str]) -> Runner {
        Runner::start_with_env(extra_args, &[]).await
    }

    /// Like [`Runner::start`], with extra environment variables for the runner process. The
    /// harness removes inherited `RUNNER_*` and `RUST_LOG` variables so the runner runs with its
    /// defaults and the test's flags, unless a test sets variables here.
    pub async fn start_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> Runner {
        let bin = runner_bin();
        let dir = tempfile::tempdir().expect("create a temp dir for the runner");
        let addr_file = dir.path().join("addr");
        let tls_addr_file = dir.path().join("tls-addr");
        let log_path = dir.path().join("runner.log");
        let log = File::create(&log_path).expect("create the runner's log file");
        let log_err = log.try_clone().expect("clone the runner's log file handle");
        let child = runner_command(&bin)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--addr-file")
            .arg(&addr_file)
            .arg("--tls-listen")
            .arg("127.0.0.1:0")
            .arg("--tls-addr-file")
            .arg(&tls_addr_file)
            .args(extra_args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let client = Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("build the HTTP client");
        let mut runner = Runner {
            child,
            base: String::new(),
            log_path,
            client,
            tls_addr: None,
            tokens: Mutex::default(),
            _dir: dir,
        };
        let addr = runner.wait_for_addr(&addr_file).await;
        runner.base = format!("http://{addr}");
        runner.wait_until_healthy().await;
        if !extra_args.contains(&"--no-tls") {
            runner.tls_addr = Some(runner.wait_for_addr(&tls_addr_file).await.to_string());
        }
        runner
    }

    /// The HTTPS listener's address (`IP:PORT`), unless started with `--no-tls`.
    pub fn tls_addr(&self) -> Option<&str> {
        self.tls_addr.as_deref()
    }

    /// The runner's URL for `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything the runner has written to stdout and stderr so far.
    pub fn logs(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the runner's log output satisfies `predicate`; returns the log. Panics after
    /// `timeout` showing `what` was expected.
    pub async fn wait_for_logs(
        &self,
        what: &str,
        timeout: Duration,
        predicate: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let logs = self.logs();
            if predicate(&logs) {
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "runner log never showed {what} within {timeout:?}"
            );
            sleep(POLL).await;
        }
    }

    // ----- raw HTTP -----

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.authorized(path, self.client.get(self.url(path))))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.authorized(path, self.client.delete(self.url(path))))
            .await
    }

    /// `POST` with an empty body.
    pub async fn post(&self, path: &str) -> Reply {
        self.send(self.authorized(path, self.client.post(self.url(path))))
            .await
    }

    /// `method path` with exactly the bearer token given (none when `None`), never the one
    /// the harness remembers.
    pub async fn request_as(&self, method: &str, path: &str, token: Option<&str>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    /// Kills the runner with SIGKILL (no shutdown of any kind) and waits for it to be gone;
    /// returns its log.
    /// The runner's resident memory now, in MiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_mib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the runner's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb / 1024)
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// CPU time the runner process has used so far (user + system, all threads).
    pub fn cpu_time(&self) -> Duration {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("the runner's /proc stat");
        // The fields after the command name (which may hold spaces) close with ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after the name.
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no memory-safety preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / per_second)
    }

    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.logs()
    }

    /// The runner's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// File descriptors the runner has open now (from `/proc`; 0 if unreadable).
    pub fn open_fds(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|dir| dir.count())
            .unwrap_or(0)
    }

    /// Sends SIGTERM (a graceful shutdown) and waits up to `within` for the runner to exit;
    /// returns its exit status, `None` if it was still running then.
    pub async fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid");
        // SAFETY: kill(2) with our own child's pid and a valid signal number.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            sleep(POLL).await;
        }
        None
    }

    /// The HTTP client the harness uses (for requests a test drives itself).
    pub fn http_client(&self) -> Client {
        self.client.clone()
    }

    /// Remembers `token` for worker `id` (e.g. one created by an earlier runner).
    pub fn remember(&self, id: &str, token: &str) {
        self.lock_tokens().insert(id.to_owned(), token.to_owned());
    }

    /// Every token this harness remembers, by worker id.
    pub fn tokens(&self) -> HashMap<String, String> {
        self.lock_tokens().clone()
    }

    /// The management token the runner returned when worker `id` was created here.
    pub fn token(&self, id: &str) -> Option<String> {
        self.lock_tokens().get(id).cloned()
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the remembered token of the worker that `path` (`/workers/{id}…`) names.
    fn authorized(&self, path: &str, request: RequestBuilder) -> RequestBuilder {
        let id = path
            .strip_prefix("/workers/")
            .and_then(|rest| rest.split('/').next());
        match id.and_then(|id| self.token(id)) {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// `POST` with a JSON body (`content-type: application/json`).
    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    /// `POST` of `body` as is, with `content_type` if given and no content type otherwise.
    pub async fn post_raw(&self, path: &str, content_type: Option<&str>, body: String) -> Reply {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        self.send(request).await
    }

    /// `POST` as `application/x-www-form-urlencoded`.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        self.send(self.client.post(self.url(path)).form(fields))
            .await
    }

    /// `POST` as `multipart/form-data`.
    pub async fn post_multipart(&self, path: &str, form: Form) -> Reply {
        self.send(self.client.post(self.url(path)).multipart(form))
            .await
    }

    async fn send(&self, request: RequestBuilder) -> Reply {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to the runner failed: {e}\n{}", self.log_tail()));
        let reply = Reply::read(response).await;
        self.remember_token(&reply);
        reply
    }

    /// Keeps the management token of a `201` creation reply.
    fn remember_token(&self, reply: &Reply) {
        if reply.status != 201 {
            return;
        }
        let Ok(body) = serde_json::from_str::<Value>(&reply.body) else {
            return;
        };
        if let (Some(id), Some(token)) = (body["id"].as_str(), body["token"].as_str()) {
            self.lock_tokens().insert(id.to_owned(), token.to_owned());
        }
    }

    // ----- the worker API -----

    /// Creates a worker from a JSON request and returns its id; panics unless `201`.
    pub async fn create(&self, request: &Value) -> String {
        self.post_json("/", request).await.created_id()
    }

    /// `GET /workers/{id}`, asserted `200`.
    pub async fn worker(&self, id: &str) -> Value {
        self.get(&worker_path(id)).await.assert_status(200).json()
    }

    /// The `workers` array of `GET /workers`.
    pub async fn workers(&self) -> Vec<Value> {
        let list = self.get("/workers").await.assert_status(200).json();
        match list.get("workers") {
            Some(Value::Array(workers)) => workers.clone(),
            _ => panic!("GET /workers without a \"workers\" array: {list}"),
        }
    }

    /// `POST /workers/{id}/tasks`.
    pub async fn run_tasks(&self, id: &str) -> Reply {
        self.post(&format!("{}/tasks", worker_path(id))).await
    }

    /// The `lines` array of `GET /workers/{id}/logs`.
    pub async fn worker_logs(&self, id: &str) -> Vec<Value> {
        let logs = self
            .get(&format!("{}/logs", worker_path(id)))
            .await
            .assert_status(200)
            .json();
        match logs.get("lines") {
            Some(Value::Array(lines)) => lines.clone(),
            _ => panic!("GET /workers/{id}/logs without a \"lines\" array: {logs}"),
        }
    }

    /// Polls `GET /workers/{id}` until `predicate` holds; returns that worker. Panics after
    /// `PATIENCE` showing `what` was expected and the last state seen.
    pub async fn wait_for_worker(
        &self,
        id: &str,
        what: &str,
        predicate: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let worker = self.worker(id).await;
            if predicate(&worker) {
                return worker;
            }
            assert!(
                Instant::now() < deadline,
                "worker {id} never became {what} within {PATIENCE:?}; last seen: {worker}"
            );
            sleep(POLL).await;
        }
    }

    /// Waits until worker `id` has finished at least `runs` runs and is not running now.
    pub async fn wait_until_idle(&self, id: &str, runs: u64) -> Value {
        self.wait_for_worker(id, &format!("ready after {runs} run(s)"), |w| {
            w["state"] == "ready" && count(w, "runs") >= runs
        })
        .await
    }

    // ----- start-up -----

    async fn wait_for_addr(&mut self, addr_file: &Path) -> SocketAddr {
        let deadline = Instant::now() + STARTUP;
        loop {
            self.assert_alive();
            let addr = fs::read_to_string(addr_file)
                .ok()
                .and_then(|text| text.trim().parse::<SocketAddr>().ok());
            if let Some(addr) = addr {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "runner wrote no address to {} within {STARTUP:?}\n{}",
                addr_file.display(),
                self.log_tail()
            );
            sleep(POLL).await;
        }
    }

    async fn wait_until_healthy(&mut self) {
        let deadline = Instant::now() + STARTUP;
        loop {
            self.assert_alive();
            let healthy = self
                .client
                .get(self.url("/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if healthy {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "runner at {} never answered GET /healthz with 200 within {STARTUP:?}\n{}",
                self.base,
                self.log_tail()
            );
            sleep(POLL).await;
        }
    }

    fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("runner exited early ({status}); its log:\n{}", self.logs());
        }
    }

    fn log_tail(&self) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        format!(
            "--- last {} line(s) of the runner's log ---\n{}",
            tail.len(),
            tail.join("\n")
        )
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // Best effort: the process may already be gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}

/// `/workers/{id}`.
pub fn worker_path(id: &str) -> String {
    format!("/workers/{id}")
}

/// A worker's counter field (`runs`, `errors`), 0 when absent.
pub fn count(worker: &Value, field: &str) -> u64 {
    worker[field].as_u64().unwrap_or(0)
}

/// The runner binary: `$RUNNER_BIN`, else `<target>/debug/runner` derived from this test binary,
/// which lives in `<target>/debug/deps/`.
/// A command for the runner `bin` in a clean environment: no inherited `RUNNER_*` settings (the
/// runner reads those too: only the caller's flags count), no `RUST_LOG`, and no proxy for
/// loopback (workers fetch loopback sinks).
pub fn runner_command(bin: &Path) -> Command {
    let mut command = Command::new(bin);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RUNNER_") {
            command.env_remove(key);
        }
    }
    command
        .env_remove("RUST_LOG")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    command
}

pub fn runner_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("RUNNER_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "RUNNER_BIN={} does not exist: build it first: cargo build -p runner",
            bin.display()
        );
        return bin;
    }
    let exe = std::env::current_exe().expect("locate the test binary");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile_dir| profile_dir.join(format!("runner{}", std::env::consts::EXE_SUFFIX)));
    match bin {
        Some(bin) if bin.is_file() => bin,
        _ => panic!(
            "no runner binary next to {} (and RUNNER_BIN is unset): build it first: cargo build -p runner",
            exe.display()
        ),
    }
}
