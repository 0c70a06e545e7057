//! The HTTP trigger: `/w/{id}/...` reaches the worker's fetch handler, with
//! the prefix removed from the URL it sees. Bodies stream both ways.

use axum::body::Body;
use axum::extract::Path;
use axum::extract::Request;
use axum::extract::State;
use axum::http::header;
use axum::http::HeaderName;
use axum::http::HeaderValue;
use axum::http::Method;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::ApiError;
use super::AppState;
use crate::pool::PoolError;
use crate::worker::FetchRequest;
use crate::worker::RunError;
use crate::worker::WorkerId;

/// Chunks of a request body buffered on their way into the isolate.
const REQUEST_BODY_CHUNKS: usize = 8;

/// Headers that describe one hop, not the message: never copied from a worker's response.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "content-length",
];

pub async fn worker_root(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    invoke(state, id, String::new(), request).await
}

pub async fn worker_path(
    State(state): State<AppState>,
    Path((id, path)): Path<(String, String)>,
    request: Request,
) -> Response {
    invoke(state, id, path, request).await
}

/// Routes a request whose `Host` is a name under the worker domain to the worker holding that
/// name, whatever the path (`404` when none does); every other request goes on to the API's
/// routes (see [`super::hosts`]: the API's names can never be a worker's).
pub async fn by_hostname(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let name = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| state.hosts.worker_host(h));
    let Some(name) = name else {
        return next.run(request).await;
    };
    let Some(id) = state.pool.by_hostname(&name) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no worker answers for host {name}"),
        )
        .into_response();
    };
    let path = request.uri().path().trim_start_matches('/').to_owned();
    invoke(state, id.to_string(), path, request).await
}

async fn invoke(state: AppState, id: String, path: String, request: Request) -> Response {
    match forward(state, WorkerId::from(id), path, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn forward(
    state: AppState,
    id: WorkerId,
    path: String,
    request: Request,
) -> Result<Response, ApiError> {
    let handle = state.pool.handle(&id)?;
    if !handle.has_fetch() {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("worker {id} has no fetch handler"),
        ));
    }
    let (parts, body) = request.into_parts();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let url = format!("http://{host}/{path}{query}");
    let headers = parts
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let has_body = !matches!(parts.method, Method::GET | Method::HEAD) && !body_is_empty(&body);
    let body = has_body.then(|| stream_in(body));
    let fetch = FetchRequest {
        method: parts.method.to_string(),
        url,
        headers,
        body,
    };
    let response = handle
        .fetch(fetch)
        .await
        .map_err(|error| fetch_error(&id, error))?;
    let mut builder = Response::builder().status(response.status);
    for (name, value) in response.headers {
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            builder = builder.header(name, value);
        }
    }
    builder
        .body(Body::from_stream(ReceiverStream::new(response.body)))
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("the worker's response is not valid HTTP: {e}"),
            )
        })
}

fn body_is_empty(body: &Body) -> bool {
    http_body::Body::size_hint(body).exact() == Some(0)
}

/// Feeds the request body into a channel the isolate reads from.
fn stream_in(body: Body) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(REQUEST_BODY_CHUNKS);
    tokio::spawn(async move {
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if !data.is_empty() && tx.send(data).await.is_err() {
                break;
            }
        }
    });
    rx
}

/// What the client learns when the handler fails: the status and a short
/// reason; the details (stack) stay in the worker's log.
fn fetch_error(id: &WorkerId, error: RunError) -> ApiError {
    match error {
        RunError::Handler(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("worker {id}'s fetch handler failed (details are in its logs)"),
        ),
        RunError::Terminated(reason) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("worker {id} was terminated: {reason}"),
        ),
        other => ApiError::from(PoolError::Run(other)),
    }
}
