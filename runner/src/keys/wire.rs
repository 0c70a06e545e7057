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

use contracts::keys::AuthorizationRequest;
use serde::Deserialize;
use serde::Serialize;

/// The path the service answers on.
pub const AUTHORIZE_PATH: &str = "/authorize";

/// `POST /authorize` body. The answer on success is a `contracts::keys::Authorization`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    pub request: AuthorizationRequest,
    /// The evidence JSON (`attest::Evidence::to_json`), verbatim.
    pub evidence: String,
}

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
}
