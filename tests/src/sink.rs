//! A loopback HTTP server that records every request: workers `fetch` it to show that they ran
//! and what they saw.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, Uri};
use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};

use crate::PATIENCE;

/// One request the sink received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    pub body: String,
}

impl Recorded {
    /// The body parsed as JSON; panics (showing the request) if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("expected a JSON body ({e}) in {self}"))
    }
}

impl fmt::Display for Recorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if let Some(query) = &self.query {
            write!(f, "?{query}")?;
        }
        write!(f, " {:?}", self.body)
    }
}

/// Every request so far; each change wakes the waiters.
type Log = Arc<watch::Sender<Vec<Recorded>>>;

/// The recording server; stops on drop.
pub struct Sink {
    addr: SocketAddr,
    log: Log,
    server: JoinHandle<()>,
}

impl Sink {
    /// Starts the sink on `127.0.0.1:0`. Every request is answered `200 ok`.
    pub async fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the sink on loopback");
        let addr = listener.local_addr().expect("the sink's address");
        let log: Log = Arc::new(watch::Sender::new(Vec::new()));
        let app = Router::new().fallback(record).with_state(log.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("run the sink");
        });
        Sink { addr, log, server }
    }

    /// The sink's URL for `path` (which starts with `/` and may carry a query).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.borrow().clone()
    }

    /// The requests received so far for `path` (query ignored).
    pub fn hits(&self, path: &str) -> Vec<Recorded> {
        matching(&self.log.borrow(), path)
    }

    /// Waits until the requests received satisfy `predicate` and returns them all; panics after
    /// `timeout` listing what was received.
    pub async fn wait_for(
        &self,
        predicate: impl Fn(&[Recorded]) -> bool,
        timeout: Duration,
    ) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        let mut updates = self.log.subscribe();
        loop {
            {
                let requests = updates.borrow_and_update();
                if predicate(&requests) {
                    return requests.clone();
                }
            }
            if timeout_at(deadline, updates.changed()).await.is_err() {
                panic!(
                    "the sink did not see the expected requests within {timeout:?}; it saw:\n{}",
                    describe(&self.requests())
                );
            }
        }
    }

    /// Waits (up to `PATIENCE`) until `path` was requested at least `n` times; returns those
    /// requests.
    pub async fn wait_for_hits(&self, path: &str, n: usize) -> Vec<Recorded> {
        let all = self
            .wait_for(|requests| matching(requests, path).len() >= n, PATIENCE)
            .await;
        matching(&all, path)
    }

    /// Waits for the first request to `path` and returns its body parsed as JSON.
    pub async fn first_json(&self, path: &str) -> Value {
        self.wait_for_hits(path, 1).await[0].json()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Records the request and answers `200 ok` — except `/redirect?<url>`, answered with a
/// `302` to `<url>` (to test what a worker's fetch does on a redirect).
async fn record(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let request = Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    log.send_modify(|requests| requests.push(request));
    match (uri.path(), uri.query()) {
        ("/redirect", Some(target)) => (
            axum::http::StatusCode::FOUND,
            [(axum::http::header::LOCATION, target.to_owned())],
        )
            .into_response(),
        _ => "ok".into_response(),
    }
}

fn matching(requests: &[Recorded], path: &str) -> Vec<Recorded> {
    requests
        .iter()
        .filter(|r| r.path == path)
        .cloned()
        .collect()
}

fn describe(requests: &[Recorded]) -> String {
    if requests.is_empty() {
        return "(nothing)".to_owned();
    }
    requests
        .iter()
        .map(|r| format!("  {r}"))
        .collect::<Vec<_>>()
        .join("\n")
}
