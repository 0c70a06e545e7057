//! The collateral clients against a real loopback HTTP server (axum on its own thread) that
//! serves recorded public KDS / PCS answers, errors and slow answers, and counts requests.

mod amd;
mod google;
mod intel;
mod limit;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::{CollateralClient, CollateralConfig};

/// One canned answer.
#[derive(Clone, Debug)]
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
    pub(super) headers: Vec<(String, String)>,
    pub(super) delay: Duration,
}

impl Reply {
    pub(super) fn ok(body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status: 200,
            body: body.into(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub(super) fn status(status: u16) -> Self {
        Reply {
            status,
            ..Reply::ok("error")
        }
    }

    /// Adds a header, URL-encoded as Intel sends issuer chains.
    pub(super) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), url_encode(value)));
        self
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Default)]
struct Shared {
    routes: Mutex<HashMap<String, Reply>>,
    hits: AtomicUsize,
    /// Requests per `path?query`.
    by_path: Mutex<HashMap<String, usize>>,
}

/// A loopback server answering `path?query` from its routes (404 otherwise).
pub(super) struct Server {
    pub(super) url: String,
    shared: Arc<Shared>,
}

impl Server {
    pub(super) fn start(routes: HashMap<String, Reply>) -> Server {
        let shared = Arc::new(Shared {
            routes: Mutex::new(routes),
            hits: AtomicUsize::new(0),
            by_path: Mutex::default(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = shared.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(answer).with_state(state);
                axum::serve(listener, app).await.unwrap();
            });
        });
        Server { url, shared }
    }

    /// Requests served so far.
    pub(super) fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Requests served so far for `path` (with its query).
    pub(super) fn hits_for(&self, path: &str) -> usize {
        let by_path = self.shared.by_path.lock().unwrap();
        by_path.get(path).copied().unwrap_or(0)
    }

    pub(super) fn set(&self, key: &str, reply: Reply) {
        self.shared.routes.lock().unwrap().insert(key.into(), reply);
    }
}

async fn answer(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    shared.hits.fetch_add(1, Ordering::SeqCst);
    let key = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
    *shared
        .by_path
        .lock()
        .unwrap()
        .entry(key.into())
        .or_default() += 1;
    let reply = shared.routes.lock().unwrap().get(key).cloned();
    let Some(reply) = reply else {
        return (StatusCode::NOT_FOUND, "no such answer").into_response();
    };
    tokio::time::sleep(reply.delay).await;
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap(),
        reply.body.clone(),
    )
        .into_response();
    for (name, value) in &reply.headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    response
}

/// A client for `server` (both services on it), 2 s timeout.
pub(super) fn client(server: &Server) -> CollateralClient {
    client_with(CollateralConfig {
        amd_url: server.url.clone(),
        intel_url: server.url.clone(),
        timeout: Duration::from_secs(2),
        ..CollateralConfig::default()
    })
}

pub(super) fn client_with(config: CollateralConfig) -> CollateralClient {
    let mut client = CollateralClient::new(config).unwrap();
    client.amd_crl_signer = Some(amd::test_ark_spki());
    client
}

pub(super) fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

pub(super) fn unix(t: SystemTime) -> u64 {
    super::unix(t)
}
