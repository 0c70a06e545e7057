//! The creation and management API (axum).

mod attestation;
mod auth;
mod create;
mod error;
pub mod hosts;
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

use crate::ownership::TokenHash;
use crate::pool::Pool;

#[derive(Clone)]
pub struct AppState {
    pub pool: Arc<Pool>,
    pub create_limits: CreateLimits,
    /// The runner's attestation documents (`GET /attestation`).
    pub attestor: Arc<crate::attestation::Attestor>,
    /// The hash of the runner's admin token, when one is configured.
    pub admin_token: Option<TokenHash>,
    /// Which `Host` names reach a worker rather than the API.
    pub hosts: Arc<hosts::HostRouting>,
}

/// Which listener a router serves: creation may be refused on plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Http,
    Https,
}

/// The API's routes. With `creation_tls_only`, the plain-HTTP router refuses `POST /`: a
/// worker's config would otherwise cross the host's network in the clear.
pub fn router(state: AppState, listener: Listener, creation_tls_only: bool) -> Router {
    // The body may be a little larger than the script: form framing and config.
    let body_limit = state.create_limits.max_body_bytes();
    let create = if listener == Listener::Http && creation_tls_only {
        post(create::refuse_plain_http)
    } else {
        post(create::create_worker)
    };
    Router::new()
        .route("/", create)
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
