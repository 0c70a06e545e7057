//! API errors: a status code and a JSON body `{"error": "..."}`.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::Json;

use crate::pool::PoolError;
use crate::worker::CreateError;
use crate::worker::RunError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

/// The challenge a `401` carries (RFC 6750).
const BEARER_CHALLENGE: &str = r#"Bearer realm="smart-worker-runner""#;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(BEARER_CHALLENGE),
            );
        }
        response
    }
}

impl From<PoolError> for ApiError {
    fn from(error: PoolError) -> Self {
        let status = match &error {
            PoolError::Full(_) => StatusCode::TOO_MANY_REQUESTS,
            PoolError::MemoryBudget(_) => StatusCode::SERVICE_UNAVAILABLE,
            PoolError::NotFound(_) => StatusCode::NOT_FOUND,
            PoolError::HostnameTaken(_) => StatusCode::CONFLICT,
            PoolError::HostnameWithoutFetch(_) => StatusCode::BAD_REQUEST,
            PoolError::Create(CreateError::Thread(_)) => StatusCode::SERVICE_UNAVAILABLE,
            PoolError::Create(_) => StatusCode::BAD_REQUEST,
            PoolError::Run(RunError::Busy) => StatusCode::CONFLICT,
            PoolError::Run(RunError::Handler(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            PoolError::Run(RunError::Gone(_) | RunError::Terminated(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            PoolError::Persist(_) | PoolError::NotRestored(..) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let message = match &error {
            PoolError::Create(CreateError::Script(js)) => format!("script: {js}"),
            PoolError::Create(other) => format!("script: {other}"),
            other => other.to_string(),
        };
        Self::new(status, message)
    }
}
