//! Accepting connections, and what to do when that fails.
//!
//! An error about one connection (the client reset it before we took it: `ECONNABORTED`,
//! `ECONNRESET`, …) is skipped at once: pausing on it would let a client slow the loop down.
//! Any other error — out of file descriptors (`EMFILE`, `ENFILE`), buffers or memory — will
//! fail again on the next call, so the loop pauses [`PAUSE`] before retrying instead of
//! spinning, and logs it at most once per [`LOG_EVERY`] with the number of errors in between.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use std::time::Instant;

use tokio::io::AsyncRead;
use tokio::io::AsyncWrite;
use tokio::net::TcpListener;
use tokio::net::TcpSocket;
use tokio::net::TcpStream;

/// Connections the kernel holds for us beyond the cap (or a burst) before it drops SYNs; it
/// clamps this to `net.core.somaxconn` (4,096 by default). The standard library's is 128.
pub const BACKLOG: u32 = 1024;

/// How long the loop waits after an error that is not about one connection.
pub const PAUSE: Duration = Duration::from_millis(100);
/// At most one log line per this long, per listener and kind of event.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A source of connections (a TCP listener; a fake one in tests).
pub trait Accept: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, SocketAddr)>> + Send;
}

impl Accept for TcpListener {
    type Io = TcpStream;

    fn accept(&mut self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

/// A listening socket on `addr` with a backlog of [`BACKLOG`] (and `SO_REUSEADDR`, as the
/// standard library sets it).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Whether `error` concerns one connection only (the next accept may well succeed).
pub fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    ) || matches!(
        error.raw_os_error(),
        // accept(2) passes these on from the new socket: they are about that connection.
        Some(
            libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

/// Lets an event through at most once per period, counting the ones held back.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            held_back: 0,
        }
    }

    /// True when an event at `now` should be reported.
    pub fn ready(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.held_back += 1;
                false
            }
            _ => {
                self.last = Some(now);
                true
            }
        }
    }

    /// Events held back since the last one reported; resets the count.
    pub fn take_held_back(&mut self) -> u64 {
        std::mem::take(&mut self.held_back)
    }
}

/// One listener's accept errors: what to log, how long to pause.
#[derive(Debug)]
pub struct AcceptErrors {
    listener: &'static str,
    log: Throttle,
}

impl AcceptErrors {
    pub fn new(listener: &'static str) -> Self {
        Self {
            listener,
            log: Throttle::new(LOG_EVERY),
        }
    }

    /// Handles a failed accept at `now`: returns how long to pause before the next one.
    pub fn on_error(&mut self, error: &io::Error, now: Instant) -> Option<Duration> {
        if is_connection_error(error) {
            tracing::debug!(listener = self.listener, %error, "a connection failed before it was accepted");
            return None;
        }
        if self.log.ready(now) {
            let more = self.log.take_held_back();
            tracing::error!(
                listener = self.listener,
                %error,
                errors_since_last_report = more,
                pause_ms = PAUSE.as_millis() as u64,
                "cannot accept connections; pausing before retrying"
            );
        }
        Some(PAUSE)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use super::*;
    use crate::listen::Limits;
    use crate::listen::Listeners;
    use crate::listen::Transport;

    /// A listener whose every accept fails with `errno` (after yielding, as a real one would
    /// after a wake-up), counting the calls.
    struct Failing {
        errno: i32,
        calls: Arc<AtomicUsize>,
        limit: usize,
    }

    impl Accept for Failing {
        type Io = TcpStream;

        async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
            tokio::task::yield_now().await;
            if self.calls.fetch_add(1, Ordering::SeqCst) >= self.limit {
                std::future::pending::<()>().await;
            }
            Err(io::Error::from_raw_os_error(self.errno))
        }
    }

    fn listeners() -> Listeners {
        Listeners::new(Limits {
            max_connections: 4,
            handshake_timeout: Duration::from_secs(1),
            header_timeout: Duration::from_secs(1),
        })
    }

    /// Runs the accept loop on a listener failing with `errno` for `time`; returns the calls.
    async fn accepts_within(errno: i32, limit: usize, time: Duration) -> usize {
        let calls = Arc::new(AtomicUsize::new(0));
        let listener = Failing {
            errno,
            calls: calls.clone(),
            limit,
        };
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let listeners = listeners();
        let run = listeners.run(listener, Transport::Plain, axum::Router::new(), stop);
        let _ = tokio::time::timeout(time, run).await;
        calls.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn out_of_file_descriptors_pauses_the_loop_instead_of_spinning() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS] {
            let calls = accepts_within(errno, usize::MAX, Duration::from_millis(550)).await;
            // A pause of 100 ms after each: 6 calls in 550 ms (a spinning loop makes millions).
            assert!(
                (2..=8).contains(&calls),
                "errno {errno}: {calls} accept calls in 550 ms"
            );
        }
    }

    #[tokio::test]
    async fn an_aborted_connection_does_not_pause_the_loop() {
        let calls = accepts_within(libc::ECONNABORTED, 1_000, Duration::from_secs(2)).await;
        // All 1,000 aborted connections skipped (a pause each would take 100 s); then pending.
        assert_eq!(calls, 1_001);
    }

    #[test]
    fn errors_are_logged_once_per_period_with_the_count_in_between() {
        let start = Instant::now();
        let mut throttle = Throttle::new(LOG_EVERY);
        assert!(throttle.ready(start));
        for ms in [1, 50, 9_000] {
            assert!(!throttle.ready(start + Duration::from_millis(ms)));
        }
        assert_eq!(throttle.take_held_back(), 3);
        assert!(throttle.ready(start + LOG_EVERY));
        assert_eq!(throttle.take_held_back(), 0);

        let mut errors = AcceptErrors::new("test");
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(errors.on_error(&emfile, start), Some(PAUSE));
        let aborted = io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert_eq!(errors.on_error(&aborted, start), None);
    }
}
