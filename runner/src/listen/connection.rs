//! One accepted connection: the TLS handshake (if any) under its timeout, then HTTP until the
//! client leaves, the connection idles past the head timeout, or the runner stops.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioExecutor;
use hyper_util::rt::TokioIo;
use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncRead;
use tokio::io::AsyncWrite;
use tokio::sync::OwnedSemaphorePermit;

use super::activity::Activity;
use super::activity::Tracked;
use super::Limits;
use super::Stop;
use super::Transport;

/// After an idle connection is asked to close (HTTP/2: GOAWAY), how long it may take.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Serves one connection; `_permit` holds its place under the connection cap until it ends.
pub(super) async fn serve<I>(
    io: I,
    peer: SocketAddr,
    transport: Transport,
    router: Router,
    limits: Limits,
    _permit: OwnedSemaphorePermit,
    mut stop: Stop,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match transport {
        Transport::Plain => serve_http(io, peer, router, limits, stop).await,
        Transport::Tls(acceptor) => {
            let handshake = tokio::select! {
                handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(io)) => handshake,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            match handshake {
                Ok(Ok(stream)) => serve_http(stream, peer, router, limits, stop).await,
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(
                    %peer,
                    timeout_ms = limits.handshake_timeout.as_millis() as u64,
                    "TLS handshake timed out"
                ),
            }
        }
    }
}

async fn serve_http<I>(io: I, peer: SocketAddr, router: Router, limits: Limits, mut stop: Stop)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let service = TowerToHyperService::new(Tracked::new(router, activity.clone()));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    // Once asked to close: by the runner stopping (requests in progress finish, with no
    // deadline, as before; a connection without one closes at once) or for idling (a short
    // deadline).
    let mut closing = false;
    let mut deadline = None;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop), if !closing => {
                if activity.in_progress() == 0 {
                    // Idle, or half a head: nothing to finish.
                    return;
                }
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = activity.idle_for(limits.header_timeout), if !closing => {
                tracing::debug!(%peer, "closing a connection with no request for the head timeout");
                closing = true;
                deadline = Some(tokio::time::Instant::now() + IDLE_CLOSE_GRACE);
                connection.as_mut().graceful_shutdown();
            }
            _ = sleep_until(deadline), if deadline.is_some() => return,
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
