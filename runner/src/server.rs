//! Starts the runner: cron trigger, worker pool, and the HTTP API on both listeners.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api;
use crate::attestation::Attestor;
use crate::config::Config;
use crate::identity::Identity;
use crate::listen::fd_limit;
use crate::listen::Listeners;
use crate::listen::Transport;
use crate::ownership::TokenHash;
use crate::pool::Pool;
use crate::records::Records;
use crate::state::KeySource;
use crate::state::StateDir;
use crate::triggers::cron::CronTrigger;
use crate::worker::egress::EgressPolicy;
use crate::worker::Services;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write the address file {path}: {source}")]
    AddrFile {
        path: String,
        source: std::io::Error,
    },
    #[error("--require-tee is set but no TEE was found (no configfs-tsm provider, /dev/sev-guest or /dev/tdx_guest)")]
    NoTee,
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error(transparent)]
    Cert(#[from] crate::tls::cert::CertError),
    #[error("the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("--creation-tls-only needs the HTTPS listener (it cannot be combined with --no-tls)")]
    CreationTlsOnlyWithoutTls,
    #[error(transparent)]
    Egress(#[from] crate::worker::egress::EgressError),
    #[error("the state directory: {0}")]
    State(String),
    #[error("restoring workers: {0}")]
    Restore(#[from] crate::records::RecordsError),
    #[error(transparent)]
    Keys(#[from] crate::keys::SetupError),
    #[error(transparent)]
    Chains(#[from] crate::chains::ChainsError),
    #[error(transparent)]
    HostRouting(#[from] crate::api::hosts::HostRoutingError),
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
}

/// Runs until SIGINT/SIGTERM.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    // First: workers, state files and connections all need descriptors.
    let open_files = raise_open_files();
    let attester = Arc::new(attest::Attester::detect());
    if attester.tee() == attest::Tee::None {
        if config.require_tee {
            return Err(ServeError::NoTee);
        }
        tracing::warn!(
            "TEE: none — INSECURE DEVELOPMENT MODE: no attestation; worker secrets are NOT protected from the host"
        );
    }
    let hosts = Arc::new(crate::api::hosts::HostRouting::new(
        config.worker_domain.as_deref(),
        &config.api_hosts,
    )?);
    if let Some(domain) = hosts.worker_domain() {
        tracing::info!(
            domain,
            "workers may claim host names under the worker domain"
        );
    }
    let identity = Arc::new(Identity::generate()?);
    tracing::info!(
        tee = %attester.tee(),
        identity = %hex::encode(identity.public_key().as_bytes()),
        "runner identity key generated"
    );
    let tls = if config.no_tls {
        None
    } else {
        let cert = crate::tls::cert::make(&attester)?;
        tracing::info!(
            tee = %attester.tee(),
            insecure = cert.evidence.is_insecure(),
            "TLS key generated; its certificate carries attestation evidence"
        );
        Some(crate::tls::listener::server_config(&cert)?)
    };
    // Bind first: workers must be kept off the ports actually bound.
    let (listener, local) = bind(config.listen, config.addr_file.as_deref()).await?;
    let tls_listener = match tls {
        Some(tls) => Some((
            bind(config.tls_listen, config.tls_addr_file.as_deref()).await?,
            tls,
        )),
        None => None,
    };
    let mut own = vec![local];
    own.extend(tls_listener.as_ref().map(|((_, addr), _)| *addr));
    let egress = EgressPolicy::new(config.egress.clone(), &own)?;
    tracing::info!(policy = %egress.mode(), "worker egress policy");
    let state_dir = match open_state(config.state_dir.as_deref(), attester.tee()).await {
        Err(error) if config.state_dir_optional => {
            tracing::error!(
                %error,
                "the state directory cannot be used: running STATELESS (workers are NOT kept across restarts); its files are left untouched"
            );
            None
        }
        other => other?,
    };
    let records = state_dir.clone().map(Records::new);
    let cron = CronTrigger::new();
    let chains = crate::chains::Chains::load(config.chains.as_deref(), &config.chain)?;
    if !chains.is_empty() {
        tracing::info!(chains = ?chains.names(), "chains configured for on-chain triggers");
    }
    let taskhub = crate::triggers::taskhub::TaskHubTrigger::new(chains);
    // Omni Keys (issue 5): `local` always, Sapphire stores from --key-stores.
    let keys = crate::keys::config::build(
        &config.keys,
        &attester,
        state_dir.as_ref(),
        config.worker_limits().wall_limit,
    )
    .await?;
    let memory = Arc::new(crate::worker::memory::MemoryBudget::new(
        config.memory_budget_mb(),
    ));
    tracing::info!(
        budget_mb = memory.limit_mb(),
        heap_limit_mb = config.heap_limit_mb,
        array_buffer_limit_mb = config.array_buffer_limit_mb,
        "workers' memory: per-worker limits and the budget of all workers together"
    );
    let attestor = Arc::new(Attestor::new(attester, identity));
    let services = Arc::new(Services {
        egress,
        keys,
        memory,
        attestor: attestor.clone(),
    });
    let pool = Pool::new(
        config.worker_limits(),
        services,
        config.max_workers,
        cron,
        taskhub,
        records.clone(),
    );
    // Every stored worker is back before the API answers (healthz included).
    if let Some(records) = records {
        let started = std::time::Instant::now();
        let summary = pool.restore().await?;
        tracing::info!(
            restored = summary.restored,
            failed = summary.failed,
            refused = summary.refused,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "workers restored from the state directory"
        );
        tokio::spawn(heartbeat(records));
    }
    let state = api::AppState {
        pool: pool.clone(),
        create_limits: config.create_limits(),
        attestor,
        admin_token: config
            .admin_token
            .as_ref()
            .map(|token| TokenHash::of(token.expose())),
        hosts,
    };
    if config.creation_tls_only {
        if tls_listener.is_none() {
            return Err(ServeError::CreationTlsOnlyWithoutTls);
        }
        tracing::info!(addr = %local, "API listening on http://{local} (creation only over HTTPS)");
    } else {
        tracing::warn!(
            addr = %local,
            "creation API listening on plain http://{local}: worker configs sent here cross the network in the clear (use --creation-tls-only and `runner deploy` where that matters)"
        );
    }
    let listeners = Listeners::new(listen_limits(&config, open_files));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let tls_loop = tls_listener.map(|((listener, local), tls)| {
        tracing::info!(addr = %local, "HTTPS (attested TLS) listening on https://{local}");
        let router = api::router(
            state.clone(),
            api::Listener::Https,
            config.creation_tls_only,
        );
        let transport = Transport::Tls(tokio_rustls::TlsAcceptor::from(Arc::new(tls)));
        let (listeners, stop) = (listeners.clone(), stop.clone());
        tokio::spawn(async move { listeners.run(listener, transport, router, stop).await })
    });
    let router = api::router(state, api::Listener::Http, config.creation_tls_only);
    let stopping = async move {
        shutdown_signal(pool).await;
        let _ = stop_tx.send(true);
    };
    tokio::join!(
        listeners.run(listener, Transport::Plain, router, stop),
        stopping
    );
    if let Some(tls_loop) = tls_loop {
        let _ = tls_loop.await;
    }
    // As before: requests in progress finish, idle connections close at once.
    listeners.drained().await;
    Ok(())
}

/// Raises the open-files limit to the hard limit (logged); returns the soft limit now.
fn raise_open_files() -> Option<u64> {
    match fd_limit::raise() {
        Ok(limit) => {
            tracing::info!(
                before = limit.before,
                soft = limit.soft,
                hard = limit.hard,
                "open-files limit (RLIMIT_NOFILE) raised to the hard limit"
            );
            Some(limit.soft)
        }
        Err(error) => {
            tracing::warn!(%error, "cannot raise the open-files limit (RLIMIT_NOFILE)");
            None
        }
    }
}

/// The listeners' limits, the connection cap fitted under the open-files limit.
fn listen_limits(config: &Config, open_files: Option<u64>) -> crate::listen::Limits {
    let mut limits = config.listen_limits();
    if let Some(soft) = open_files {
        let cap = fd_limit::connection_cap(limits.max_connections, soft, config.max_workers);
        if cap != limits.max_connections {
            tracing::warn!(
                wanted = limits.max_connections,
                cap,
                open_files = soft,
                reserved = fd_limit::reserved(config.max_workers),
                "--max-connections lowered to fit under the open-files limit"
            );
        }
        limits.max_connections = cap;
    }
    tracing::info!(
        max_connections = limits.max_connections,
        handshake_timeout_ms = limits.handshake_timeout.as_millis() as u64,
        header_timeout_ms = limits.header_timeout.as_millis() as u64,
        "connection limits"
    );
    limits
}

/// Opens the state directory with the sealing key this TEE offers: SNP's measurement-bound
/// derived key; none in TDX (stateless until a key store can release one); a dev key file
/// without a TEE. No directory configured → stateless.
async fn open_state(
    dir: Option<&Path>,
    tee: attest::Tee,
) -> Result<Option<Arc<StateDir>>, ServeError> {
    let Some(dir) = dir else {
        tracing::warn!("no --state-dir: workers are NOT kept across restarts (stateless)");
        return Ok(None);
    };
    let key = match tee {
        attest::Tee::Snp => KeySource::Snp,
        attest::Tee::Tdx => {
            tracing::warn!(
                dir = %dir.display(),
                "TDX has no measurement-bound sealing key: running stateless (workers are NOT kept across restarts)"
            );
            return Ok(None);
        }
        attest::Tee::None => KeySource::DevFile,
    };
    let path = dir.to_owned();
    let state = tokio::task::spawn_blocking(move || StateDir::open(path, key))
        .await
        .map_err(|e| ServeError::State(e.to_string()))?
        .map_err(|e| ServeError::State(format!("{}: {e}", dir.display())))?;
    tracing::info!(dir = %dir.display(), "state directory open: workers are kept across restarts");
    Ok(Some(Arc::new(state)))
}

/// Records now and then that the runner is alive, so that after a restart each worker's
/// status can show since when it was down.
async fn heartbeat(records: Records) {
    loop {
        if let Err(error) = records.heartbeat().await {
            tracing::warn!(%error, "could not record the runner's heartbeat in the state directory");
        }
        tokio::time::sleep(crate::records::HEARTBEAT_EVERY).await;
    }
}

/// Binds `addr` and, when asked, writes the address actually bound to `addr_file`.
async fn bind(
    addr: SocketAddr,
    addr_file: Option<&Path>,
) -> Result<(TcpListener, SocketAddr), ServeError> {
    let listener =
        crate::listen::accept::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(ServeError::Http)?;
    if let Some(path) = addr_file {
        std::fs::write(path, local.to_string()).map_err(|source| ServeError::AddrFile {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok((listener, local))
}

async fn shutdown_signal(pool: Arc<Pool>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
    pool.shutdown();
}
