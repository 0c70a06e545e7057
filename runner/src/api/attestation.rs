//! `GET /attestation?nonce=<hex>`: fresh evidence from this machine's TEE
//! whose report_data binds the runner's identity key, the nonce and a context.

use std::sync::Arc;

use axum::extract::Query;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use serde_json::Value;

use super::ApiError;
use super::AppState;
use crate::identity::ATTESTATION_CONTEXT;
use crate::identity::IDENTITY_ALGORITHM;

/// Longest nonce accepted, in bytes.
const MAX_NONCE_BYTES: usize = 64;

#[derive(Deserialize)]
pub struct AttestationQuery {
    nonce: Option<String>,
}

pub async fn attestation(
    State(state): State<AppState>,
    Query(query): Query<AttestationQuery>,
) -> Result<Json<Value>, ApiError> {
    let nonce = match query.nonce.as_deref() {
        None | Some("") => Vec::new(),
        Some(text) => hex::decode(text)
            .map_err(|e| ApiError::bad_request(format!("nonce must be hex: {e}")))?,
    };
    if nonce.len() > MAX_NONCE_BYTES {
        return Err(ApiError::bad_request(format!(
            "nonce is {} bytes, more than {MAX_NONCE_BYTES}",
            nonce.len()
        )));
    }
    let identity = state.identity.clone();
    let report_data = identity.report_data(&nonce, ATTESTATION_CONTEXT);
    let attester = Arc::clone(&state.attester);
    // Getting a report talks to the TEE's firmware: keep it off the async workers.
    let evidence = tokio::task::spawn_blocking(move || attester.evidence(report_data))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("evidence task failed: {e}"),
            )
        })?
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no evidence from the TEE: {e}"),
            )
        })?;
    let evidence: Value = serde_json::from_str(&evidence.to_json()).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("evidence encoding: {e}"),
        )
    })?;
    Ok(Json(json!({
        "tee": state.attester.tee(),
        "insecure": state.attester.tee() == attest::Tee::None,
        "keys": [{
            "algorithm": IDENTITY_ALGORITHM,
            "public_key": hex::encode(identity.public_key().as_bytes()),
        }],
        "nonce": hex::encode(&nonce),
        "context": String::from_utf8_lossy(ATTESTATION_CONTEXT),
        "report_data": hex::encode(report_data),
        "evidence": evidence,
    })))
}
