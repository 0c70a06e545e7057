//! `GET /attestation?nonce=<hex>`: fresh evidence from this machine's TEE
//! whose report_data binds the runner's identity key, the nonce and a context.

use axum::extract::Query;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::ApiError;
use super::AppState;
use crate::attestation::AttestationDocument;
use crate::attestation::AttestationError;

#[derive(Deserialize)]
pub struct AttestationQuery {
    nonce: Option<String>,
}

pub async fn attestation(
    State(state): State<AppState>,
    Query(query): Query<AttestationQuery>,
) -> Result<Json<AttestationDocument>, ApiError> {
    let nonce = match query.nonce.as_deref() {
        None | Some("") => Vec::new(),
        Some(text) => hex::decode(text)
            .map_err(|e| ApiError::bad_request(format!("nonce must be hex: {e}")))?,
    };
    let document = state
        .attestor
        .runner_document(&nonce)
        .await
        .map_err(|error| {
            let status = match error {
                AttestationError::NonceTooLong(_) => StatusCode::BAD_REQUEST,
                AttestationError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                AttestationError::Evidence(_) => StatusCode::SERVICE_UNAVAILABLE,
                AttestationError::Task(_) | AttestationError::Encoding(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            ApiError::new(status, error.to_string())
        })?;
    Ok(Json(document))
}
