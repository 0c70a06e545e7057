//! The JSON of the attestation verifier service (`runner verifier`, `POST /authorize`), shared
//! by the service and its client.
//!
//! ```text
//! → {"request": {"chain_id": 31337, "registry": "0x…", "permitter": "0x…", "identity": "0x…",
//!                "requester": "0x…", "code_hash": "0x…", "nonce": "0x…"},
//!    "evidence": "<attest evidence JSON, as a string>"}
//! ← 200 {"measurement": "0x…", "verified_at": 1700000000, "signature": "0x…"}
//! ← 403 {"error": "evidence refused: …"}   (nothing signed)   · 400 malformed request
//! ```

use alloy::primitives::Address;
use alloy::primitives::Bytes;
use alloy::primitives::B256;
use alloy::primitives::U256;
use contracts::keys::Authorization;
use contracts::keys::AuthorizationRequest;
use serde::Deserialize;
use serde::Serialize;

/// The path the service answers on.
pub const AUTHORIZE_PATH: &str = "/authorize";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireRequest {
    pub chain_id: u64,
    pub registry: Address,
    pub permitter: Address,
    pub identity: U256,
    pub requester: Address,
    pub code_hash: B256,
    pub nonce: B256,
}

impl From<&AuthorizationRequest> for WireRequest {
    fn from(r: &AuthorizationRequest) -> Self {
        WireRequest {
            chain_id: r.chain_id,
            registry: r.registry,
            permitter: r.permitter,
            identity: r.identity,
            requester: r.requester,
            code_hash: r.code_hash,
            nonce: r.nonce,
        }
    }
}

impl From<WireRequest> for AuthorizationRequest {
    fn from(r: WireRequest) -> Self {
        AuthorizationRequest {
            chain_id: r.chain_id,
            registry: r.registry,
            permitter: r.permitter,
            identity: r.identity,
            requester: r.requester,
            code_hash: r.code_hash,
            nonce: r.nonce,
        }
    }
}

/// `POST /authorize` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    pub request: WireRequest,
    /// The evidence JSON (`attest::Evidence::to_json`), verbatim.
    pub evidence: String,
}

/// `POST /authorize` answer on success.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorizeResponse {
    pub measurement: B256,
    pub verified_at: u64,
    pub signature: Bytes,
}

impl From<&Authorization> for AuthorizeResponse {
    fn from(a: &Authorization) -> Self {
        AuthorizeResponse {
            measurement: a.measurement,
            verified_at: a.verified_at,
            signature: a.signature.clone(),
        }
    }
}

impl From<AuthorizeResponse> for Authorization {
    fn from(a: AuthorizeResponse) -> Self {
        Authorization {
            measurement: a.measurement,
            verified_at: a.verified_at,
            signature: a.signature,
        }
    }
}

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
}
