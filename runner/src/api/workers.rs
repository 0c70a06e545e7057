//! Worker resources: list, status, logs, run now, delete.
//!
//! Listing and status are public but show little; with the worker's
//! management token (or the admin token) status shows everything, and only
//! then may the caller read logs, run tasks or delete.

use axum::extract::Path;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;
use serde_json::Value;

use super::auth;
use super::ApiError;
use super::AppState;
use crate::ownership::Access;
use crate::worker::WorkerId;

pub async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "workers": state.pool.list() }))
}

pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = WorkerId::from(id);
    // Whether a worker exists is public (it is listed): a missing one is 404 for everyone.
    let public = state.pool.get_public(&id)?;
    let view = match auth::optional(&state, &headers, &id)? {
        Access::Owner | Access::Admin => serde_json::to_value(state.pool.get(&id)?),
        Access::Anonymous | Access::Denied => serde_json::to_value(public),
    };
    view.map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = WorkerId::from(id);
    auth::authorize(&state, &headers, &id)?;
    state.pool.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn run_tasks(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = WorkerId::from(id);
    auth::authorize(&state, &headers, &id)?;
    state.pool.run_tasks(&id).await?;
    Ok(Json(json!({ "ok": true })))
}

pub async fn logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = WorkerId::from(id);
    auth::authorize(&state, &headers, &id)?;
    let lines = state.pool.logs(&id)?;
    Ok(Json(json!({ "lines": lines })))
}
