//! Starts the runner: cron trigger, worker pool, and the HTTP API.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api;
use crate::config::Config;
use crate::identity::Identity;
use crate::pool::Pool;
use crate::triggers::cron::CronTrigger;

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
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
}

/// Runs until SIGINT/SIGTERM.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let attester = Arc::new(attest::Attester::detect());
    if attester.tee() == attest::Tee::None {
        if config.require_tee {
            return Err(ServeError::NoTee);
        }
        tracing::warn!(
            "TEE: none — INSECURE DEVELOPMENT MODE: no attestation; worker secrets are NOT protected from the host"
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
    let cron = CronTrigger::new();
    let pool = Pool::new(config.worker_limits(), config.max_workers, cron);
    let state = api::AppState {
        pool: pool.clone(),
        create_limits: config.create_limits(),
        identity,
        attester,
    };
    let (listener, local) = bind(config.listen, config.addr_file.as_deref()).await?;
    tracing::info!(addr = %local, "creation API listening on http://{local}");
    let router = api::router(state);
    if let Some(tls) = tls {
        let (listener, local) = bind(config.tls_listen, config.tls_addr_file.as_deref()).await?;
        tracing::info!(addr = %local, "HTTPS (attested TLS) listening on https://{local}");
        tokio::spawn(crate::tls::listener::serve(listener, tls, router.clone()));
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal(pool))
        .await
        .map_err(ServeError::Http)
}

/// Binds `addr` and, when asked, writes the address actually bound to `addr_file`.
async fn bind(
    addr: SocketAddr,
    addr_file: Option<&Path>,
) -> Result<(TcpListener, SocketAddr), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
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
