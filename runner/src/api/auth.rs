//! Who may manage a worker: its creator's token, or the runner's admin token.

use axum::http::header;
use axum::http::HeaderMap;
use axum::http::StatusCode;

use super::ApiError;
use super::AppState;
use crate::ownership::access;
use crate::ownership::Access;
use crate::worker::WorkerId;

/// The token of an `Authorization: Bearer <token>` header, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Admits a request to manage worker `id`: `401` without a token, `403` with a wrong one
/// (whether or not the worker exists), the access granted otherwise.
pub fn authorize(state: &AppState, headers: &HeaderMap, id: &WorkerId) -> Result<Access, ApiError> {
    let owner = state.pool.token_hash(id);
    match access(bearer(headers), owner.as_ref(), state.admin_token.as_ref()) {
        Access::Anonymous => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this needs the worker's management token: Authorization: Bearer <token> (it was returned when the worker was created)",
        )),
        Access::Denied => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the token does not manage this worker",
        )),
        granted => Ok(granted),
    }
}

/// Like [`authorize`], but a request without a token is let through as anonymous (for
/// routes that show less to anonymous callers); a wrong token is still refused.
pub fn optional(state: &AppState, headers: &HeaderMap, id: &WorkerId) -> Result<Access, ApiError> {
    if bearer(headers).is_none() {
        return Ok(Access::Anonymous);
    }
    authorize(state, headers, id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YTpi"),
        );
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&headers), None);
    }
}
