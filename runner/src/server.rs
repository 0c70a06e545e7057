//! Starts the runner: cron trigger, worker pool, and the HTTP API.

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api;
use crate::config::Config;
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
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
}

/// Runs until SIGINT/SIGTERM.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    tracing::warn!("TEE: none — development mode, no attestation: secrets here are NOT protected from the host");
    let cron = CronTrigger::new();
    let pool = Pool::new(config.worker_limits(), config.max_workers, cron);
    let state = api::AppState {
        pool: pool.clone(),
        create_limits: config.create_limits(),
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(ServeError::Http)?;
    if let Some(path) = &config.addr_file {
        std::fs::write(path, local.to_string()).map_err(|source| ServeError::AddrFile {
            path: path.display().to_string(),
            source,
        })?;
    }
    tracing::info!(addr = %local, "creation API listening on http://{local}");
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown_signal(pool))
        .await
        .map_err(ServeError::Http)
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
