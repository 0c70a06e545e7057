//! A client of the attestation verifier service (`runner verifier`): the
//! `contracts::keys::EvidenceVerifier` the Sapphire stores use. It posts the request and the
//! evidence and reads back the verifier's signed authorization; the permitter checks that
//! signature on chain, so this client needs no trust in the network path (a forged answer is
//! refused by the permitter as `VerifierNotAllowed`).

use std::time::Duration;

use contracts::keys::Authorization;
use contracts::keys::AuthorizationRequest;
use contracts::keys::BoxFuture;
use contracts::keys::EvidenceVerifier;

use super::wire;

/// `EvidenceVerifier` over HTTP(S).
pub struct HttpVerifier {
    url: String,
    client: reqwest::Client,
}

impl HttpVerifier {
    /// A client of the service at `base` (e.g. `http://127.0.0.1:8090`; `/authorize` is
    /// appended unless already there).
    pub fn new(base: &str, timeout: Duration) -> Result<Self, String> {
        let base = base.trim_end_matches('/');
        let url = if base.ends_with(wire::AUTHORIZE_PATH) {
            base.to_owned()
        } else {
            format!("{base}{}", wire::AUTHORIZE_PATH)
        };
        reqwest::Url::parse(&url).map_err(|e| format!("verifier URL {url:?}: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("verifier HTTP client: {e}"))?;
        Ok(HttpVerifier { url, client })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn post(
        &self,
        request: &AuthorizationRequest,
        evidence: &[u8],
    ) -> Result<Authorization, String> {
        let evidence = std::str::from_utf8(evidence)
            .map_err(|_| "the evidence is not UTF-8 JSON".to_owned())?
            .to_owned();
        let body = wire::AuthorizeRequest {
            request: *request,
            evidence,
        };
        let response = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("verifier {} unreachable: {e}", self.url))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("verifier {}: reading the answer: {e}", self.url))?;
        if !status.is_success() {
            let reason = serde_json::from_str::<wire::ErrorResponse>(&text)
                .map(|e| e.error)
                .unwrap_or(text);
            return Err(format!("verifier answered {status}: {reason}"));
        }
        serde_json::from_str::<Authorization>(&text)
            .map_err(|e| format!("verifier {}: unreadable answer: {e}", self.url))
    }
}

impl EvidenceVerifier for HttpVerifier {
    fn authorize<'a>(
        &'a self,
        request: &'a AuthorizationRequest,
        evidence: &'a [u8],
    ) -> BoxFuture<'a, Result<Authorization, String>> {
        Box::pin(self.post(request, evidence))
    }
}
