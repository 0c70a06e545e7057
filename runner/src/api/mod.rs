//! The creation and management API (axum).

mod attestation;
mod create;
mod error;
mod invoke;
mod workers;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::any;
use axum::routing::get;
use axum::routing::post;
use axum::Router;

pub use create::CreateLimits;
pub use error::ApiError;

use crate::identity::Identity;
use crate::pool::Pool;

#[derive(Clone)]
pub struct AppState {
    pub pool: Arc<Pool>,
    pub create_limits: CreateLimits,
    pub identity: Arc<Identity>,
    pub attester: Arc<attest::Attester>,
}

pub fn router(state: AppState) -> Router {
    // The body may be a little larger than the script: form framing and config.
    let body_limit = state.create_limits.max_body_bytes();
    Router::new()
        .route("/", post(create::create_worker))
        .route("/healthz", get(|| async { "ok" }))
        .route("/attestation", get(attestation::attestation))
        .route("/workers", get(workers::list))
        .route("/workers/{id}", get(workers::get).delete(workers::delete))
        .route("/workers/{id}/tasks", post(workers::run_tasks))
        .route("/workers/{id}/logs", get(workers::logs))
        .route("/w/{id}", any(invoke::worker_root))
        .route("/w/{id}/", any(invoke::worker_root))
        .route("/w/{id}/{*path}", any(invoke::worker_path))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            invoke::by_hostname,
        ))
        .with_state(state)
}
