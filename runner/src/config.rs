//! The runner's configuration: command-line flags (each also settable from
//! the environment) with the defaults a laptop or the appliance wants.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use clap::ValueEnum;

use crate::api::CreateLimits;
use crate::worker::egress::EgressMode;
use crate::worker::Limits;

/// A secret from the command line or environment: never shown by `Debug`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().len() < 16 {
            return Err("the admin token must be at least 16 characters".into());
        }
        Ok(Self(text.trim().to_owned()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Runs Smart Workers: JavaScript workers in their own V8 isolates, created over HTTP.
#[derive(Debug, Clone, Parser)]
#[command(name = "runner", version, about, long_about = None)]
pub struct Config {
    /// Address of the creation API.
    #[arg(long, env = "RUNNER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the HTTPS listener (TLS 1.3 under the attested certificate; same routes).
    #[arg(long, env = "RUNNER_TLS_LISTEN", default_value = "127.0.0.1:8443")]
    pub tls_listen: SocketAddr,

    /// Serve no HTTPS.
    #[arg(long, env = "RUNNER_NO_TLS")]
    pub no_tls: bool,

    /// Write the HTTPS address actually bound to this file once listening.
    #[arg(long, env = "RUNNER_TLS_ADDR_FILE")]
    pub tls_addr_file: Option<PathBuf>,

    /// Write the address actually bound (useful with port 0) to this file once listening.
    #[arg(long, env = "RUNNER_ADDR_FILE")]
    pub addr_file: Option<PathBuf>,

    /// Most connections open at once over both listeners; past it new ones wait in the listen
    /// backlog. Lowered at start to fit under the open-files limit (ARCHITECTURE.md, limits).
    #[arg(long, env = "RUNNER_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Time a client has to finish the TLS handshake, in milliseconds.
    #[arg(long, env = "RUNNER_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000)]
    pub handshake_timeout_ms: u64,

    /// Time a connection may go without a request in progress — to send its first request's
    /// head, or the next one on a kept-alive connection — before it is closed, in milliseconds.
    #[arg(long, env = "RUNNER_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,

    /// Largest accepted worker script, in bytes.
    #[arg(long, env = "RUNNER_MAX_SCRIPT_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub max_script_bytes: usize,

    /// Most workers alive at once.
    #[arg(long, env = "RUNNER_MAX_WORKERS", default_value_t = 128)]
    pub max_workers: usize,

    /// V8 heap limit per worker, in MiB; a worker over it is terminated.
    #[arg(long, env = "RUNNER_HEAP_LIMIT_MB", default_value_t = 128)]
    pub heap_limit_mb: usize,

    /// Memory of a worker's array buffers (ArrayBuffers, typed arrays: outside the V8 heap), in
    /// MiB; a worker over it is terminated.
    #[arg(long, env = "RUNNER_ARRAY_BUFFER_LIMIT_MB", default_value_t = 128)]
    pub array_buffer_limit_mb: usize,

    /// Memory all workers together may use (their heaps and array buffers), in MiB; past it
    /// allocations fail and new workers are refused (503). Default: 70 % of the machine's
    /// memory (or of the runner's cgroup limit, when lower).
    #[arg(long, env = "RUNNER_MEMORY_BUDGET_MB")]
    pub memory_budget_mb: Option<usize>,

    /// Wall time limit per invocation (and for evaluating a script), in milliseconds;
    /// a worker over it is terminated.
    #[arg(long, env = "RUNNER_WALL_LIMIT_MS", default_value_t = 30_000)]
    pub wall_limit_ms: u64,

    /// CPU time limit per invocation, in milliseconds; a worker over it is terminated.
    #[arg(long, env = "RUNNER_CPU_LIMIT_MS", default_value_t = 10_000)]
    pub cpu_limit_ms: u64,

    /// Recent log lines kept per worker for `GET /workers/{id}/logs`.
    #[arg(long, env = "RUNNER_LOG_LINES", default_value_t = 200)]
    pub log_lines: usize,

    /// Level at which the runner logs workers' console lines (target `worker`; `off`: never).
    /// The owner reads them at GET /workers/{id}/logs; the image sets `debug` (hidden at the
    /// default RUNNER_LOG=info: the runner's log is the host's serial console there).
    #[arg(long, env = "RUNNER_WORKER_LOG_LEVEL", value_enum, default_value_t)]
    pub worker_log_level: crate::worker::console::WorkerLogLevel,

    /// Refuse to start without a TEE (SEV-SNP or TDX); the confidential image sets this.
    #[arg(long, env = "RUNNER_REQUIRE_TEE")]
    pub require_tee: bool,

    /// Where workers' fetch/WebSocket may connect: `allow-all`, `public-only` (no loopback,
    /// private or link-local addresses; the appliance's default) or `allow:HOST[,HOST...]`.
    /// The runner's own ports and cloud metadata endpoints are refused under every policy.
    #[arg(long, env = "RUNNER_EGRESS", default_value = "allow-all")]
    pub egress: EgressMode,

    /// A token that manages every worker (delete, logs, run), besides each worker's own.
    /// Prefer the environment variable: command lines are visible to other local users.
    #[arg(long, env = "RUNNER_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// Refuse worker creation on plain HTTP: only the attested HTTPS listener creates
    /// (a worker's config would otherwise cross the network in the clear).
    #[arg(long, env = "RUNNER_CREATION_TLS_ONLY")]
    pub creation_tls_only: bool,

    /// Keep workers across restarts: their records, sealed (SNP: measurement-bound key; no TEE:
    /// a dev key file beside them, insecure), in this directory. Without it the runner is
    /// stateless.
    #[arg(long, env = "RUNNER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// When the state directory cannot be opened (e.g. sealed by another image, or damaged),
    /// run stateless with an error instead of refusing to start (the appliance's state disk).
    #[arg(long, env = "RUNNER_STATE_DIR_OPTIONAL")]
    pub state_dir_optional: bool,

    /// Omni Keys: the key stores behind `rnr.getOmniKey` (issue 5).
    #[command(flatten)]
    pub keys: crate::keys::KeyArgs,

    /// EVM chains for on-chain triggers: a JSON file, name → {rpc_url, chain_id?,
    /// confirmations?, poll_interval_ms?, max_backoff_ms?, rpc_timeout_ms?}.
    #[arg(long, env = "RUNNER_CHAINS")]
    pub chains: Option<PathBuf>,

    /// An EVM chain as NAME=RPC_URL (default settings; repeatable; replaces a --chains entry of
    /// the same name). The environment variable takes a comma-separated list.
    #[arg(long = "chain", env = "RUNNER_CHAIN", value_delimiter = ',')]
    pub chain: Vec<String>,

    /// Lets workers claim host names under this DNS domain (`hostname` at creation, e.g.
    /// `app.DOMAIN`): requests whose `Host` is such a name go to that worker, every path. Without
    /// it no worker has a host name. Names outside it always reach the API.
    #[arg(long, env = "RUNNER_WORKER_DOMAIN")]
    pub worker_domain: Option<String>,

    /// A name the API is reached by (repeatable; the environment variable takes a
    /// comma-separated list): never claimable by a worker, even under --worker-domain.
    /// `localhost` and IP addresses are always the API's.
    #[arg(long = "api-host", env = "RUNNER_API_HOST", value_delimiter = ',')]
    pub api_hosts: Vec<String>,

    /// Format of the runner's own log (on standard error).
    #[arg(long, env = "RUNNER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Config {
    pub fn worker_limits(&self) -> Limits {
        Limits {
            heap_limit_mb: self.heap_limit_mb.max(16),
            array_buffer_limit_mb: self.array_buffer_limit_mb.max(1),
            wall_limit: Duration::from_millis(self.wall_limit_ms.max(1)),
            cpu_limit: Duration::from_millis(self.cpu_limit_ms.max(1)),
            log_lines: self.log_lines,
            worker_log_level: self.worker_log_level,
        }
    }

    /// The memory budget of all workers, in MiB.
    pub fn memory_budget_mb(&self) -> usize {
        self.memory_budget_mb
            .unwrap_or_else(crate::worker::memory::MemoryBudget::default_limit_mb)
            .max(16)
    }

    pub fn create_limits(&self) -> CreateLimits {
        CreateLimits {
            max_script_bytes: self.max_script_bytes,
        }
    }

    /// The listeners' limits, before the cap is fitted under the open-files limit.
    pub fn listen_limits(&self) -> crate::listen::Limits {
        crate::listen::Limits {
            max_connections: self.max_connections,
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms.max(1)),
            header_timeout: Duration::from_millis(self.header_timeout_ms.max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_a_laptop() {
        let config = Config::parse_from(["runner"]);
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.worker_limits().wall_limit, Duration::from_secs(30));
        assert_eq!(config.egress, EgressMode::AllowAll);
        assert!(config.admin_token.is_none());
        let listen = config.listen_limits();
        assert_eq!(listen.max_connections, 1024);
        assert_eq!(listen.handshake_timeout, Duration::from_secs(10));
        assert_eq!(listen.header_timeout, Duration::from_secs(10));
    }

    #[test]
    fn the_admin_token_is_never_shown() {
        let config = Config::parse_from([
            "runner",
            "--admin-token",
            "a-long-admin-secret-42",
            "--egress",
            "public-only",
        ]);
        assert!(!format!("{config:?}").contains("a-long-admin-secret-42"));
        assert_eq!(
            config.admin_token.as_ref().map(Secret::expose),
            Some("a-long-admin-secret-42")
        );
        assert_eq!(config.egress, EgressMode::PublicOnly);
        assert!(Config::try_parse_from(["runner", "--admin-token", "short"]).is_err());
        assert!(Config::try_parse_from(["runner", "--egress", "everything"]).is_err());
    }

    #[test]
    fn flags_override_defaults() {
        let config = Config::parse_from([
            "runner",
            "--listen",
            "0.0.0.0:9000",
            "--heap-limit-mb",
            "64",
        ]);
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.worker_limits().heap_limit_mb, 64);
    }
}
