//! The accept loop both listeners share (plain HTTP and attested TLS): a cap on open
//! connections, a TLS handshake timeout, a request-head timeout that is also the idle
//! keep-alive timeout, and back-off on accept errors.
//!
//! - **Cap**: one semaphore for both listeners ([`Listeners`]). A loop takes a permit *before*
//!   it accepts, so past the cap new connections wait in the kernel's listen backlog
//!   ([`accept::BACKLOG`]; once that is full, their SYNs are dropped and clients retry) rather
//!   than being accepted and closed: a client queued behind idle connections is served as soon as the head timeout
//!   frees a slot. The cap is kept below the open-files limit ([`fd_limit`]).
//! - **Handshake**: a TLS client has `handshake_timeout` to finish its handshake.
//! - **Head / idle**: a connection with no request in progress is closed once it has been so
//!   for `header_timeout` — right after it connects (it sent nothing, or half a head), between
//!   keep-alive requests, and before the HTTP version is known ([`activity`]). HTTP/1's own
//!   header-read timer gives the same bound to a head that trickles in.
//! - **Accept errors** ([`accept`]): per-connection ones are skipped; others (`EMFILE`,
//!   `ENFILE`, `ENOBUFS`, …) pause the loop briefly and are logged once in a while.
//!
//! HTTP/1.1 with keep-alive, and HTTP/2 with prior knowledge (as before; never advertised by
//! ALPN). On shutdown the loops stop accepting, every connection finishes its requests in
//! progress and closes, and [`Listeners::drained`] returns when all are closed.

pub mod accept;
pub mod activity;
mod connection;
pub mod fd_limit;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::sync::watch;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

pub use accept::Accept;

/// The limits every connection lives under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once, over both listeners.
    pub max_connections: usize,
    /// Time to finish a TLS handshake.
    pub handshake_timeout: Duration,
    /// Time without a request in progress before a connection is closed.
    pub header_timeout: Duration,
}

/// What runs on an accepted connection before HTTP.
#[derive(Clone)]
pub enum Transport {
    Plain,
    Tls(TlsAcceptor),
}

impl Transport {
    fn name(&self) -> &'static str {
        match self {
            Transport::Plain => "HTTP",
            Transport::Tls(_) => "HTTPS",
        }
    }
}

/// Tells the loops and connections to stop: send `true`.
pub type Stop = watch::Receiver<bool>;

/// The listeners' shared connection budget.
#[derive(Clone)]
pub struct Listeners {
    limits: Limits,
    permits: Arc<Semaphore>,
}

impl Listeners {
    /// `limits.max_connections` is used as given (see [`fd_limit::connection_cap`] to fit it
    /// under the open-files limit first); at least one connection is allowed.
    pub fn new(limits: Limits) -> Self {
        let limits = Limits {
            max_connections: limits.max_connections.clamp(1, u32::MAX as usize),
            ..limits
        };
        Self {
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Connections open now, over every loop of these listeners.
    pub fn open_connections(&self) -> usize {
        self.limits.max_connections - self.permits.available_permits()
    }

    /// Accepts on `listener` and serves `router` on each connection until `stop` turns true
    /// (or its sender is gone); connections then finish on their own (see [`Self::drained`]).
    pub async fn run<A: Accept>(
        &self,
        mut listener: A,
        transport: Transport,
        router: Router,
        mut stop: Stop,
    ) {
        let name = transport.name();
        let mut errors = accept::AcceptErrors::new(name);
        let mut at_cap = accept::Throttle::new(accept::LOG_EVERY);
        loop {
            let permit = match self.permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    if at_cap.ready(std::time::Instant::now()) {
                        tracing::warn!(
                            listener = name,
                            max_connections = self.limits.max_connections,
                            "connection cap reached: new connections wait in the listen backlog"
                        );
                    }
                    tokio::select! {
                        permit = self.permits.clone().acquire_owned() => match permit {
                            Ok(permit) => permit,
                            Err(_) => return,
                        },
                        _ = stop.wait_for(|stop| *stop) => return,
                    }
                }
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            match accepted {
                Ok((io, peer)) => {
                    tokio::spawn(connection::serve(
                        io,
                        peer,
                        transport.clone(),
                        router.clone(),
                        self.limits,
                        permit,
                        stop.clone(),
                    ));
                }
                Err(error) => {
                    drop(permit);
                    if let Some(pause) = errors.on_error(&error, std::time::Instant::now()) {
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        }
    }

    /// Returns once every connection of these listeners is closed.
    pub async fn drained(&self) {
        let all = u32::try_from(self.limits.max_connections).unwrap_or(u32::MAX);
        // The semaphore is never closed; an error would mean it was, and then nothing is open.
        let _ = self.permits.acquire_many(all).await;
    }
}
