//! Worker resources: list, status, logs, run now, delete.

use axum::extract::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;
use serde_json::Value;

use super::ApiError;
use super::AppState;
use crate::pool::WorkerInfo;
use crate::worker::WorkerId;

pub async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "workers": state.pool.list() }))
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WorkerInfo>, ApiError> {
    Ok(Json(state.pool.get(&WorkerId::from(id))?))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.pool.delete(&WorkerId::from(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn run_tasks(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.pool.run_tasks(&WorkerId::from(id)).await?;
    Ok(Json(json!({ "ok": true })))
}

pub async fn logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let lines = state.pool.logs(&WorkerId::from(id))?;
    Ok(Json(json!({ "lines": lines })))
}
