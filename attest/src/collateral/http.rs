//! HTTP GET for the collateral clients (reqwest over rustls), errors mapped to
//! [`CollateralError`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::error::CollateralError;

/// Answers larger than this are refused (a PCK CRL is tens of KiB).
const MAX_BODY: usize = 4 << 20;

#[derive(Debug)]
pub(crate) struct Http {
    client: reqwest::Client,
}

impl Http {
    pub(crate) fn new(timeout: Duration) -> Result<Self, CollateralError> {
        let client = reqwest::Client::builder()
            // No connection kept between requests: `endorsements_blocking` runs each
            // verification's fetches on a runtime of its own, and a pooled connection dies with
            // the runtime that opened it, so the next verification would fail on it ("error
            // sending request"). Fetches are few (cached, budgeted), a new connection each is cheap.
            .pool_max_idle_per_host(0)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| CollateralError::Transport {
                url: String::new(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Http { client })
    }

    /// GETs `url`; returns the body and the wanted `headers` (URL-decoded, as Intel sends
    /// issuer chains).
    pub(crate) async fn get(
        &self,
        url: &str,
        headers: &[&str],
    ) -> Result<(Vec<u8>, BTreeMap<String, String>), CollateralError> {
        let map = |e: reqwest::Error| {
            if e.is_timeout() {
                CollateralError::Timeout { url: url.into() }
            } else {
                CollateralError::Transport {
                    url: url.into(),
                    reason: e.to_string(),
                }
            }
        };
        let response = self.client.get(url).send().await.map_err(map)?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(CollateralError::NotFound { url: url.into() });
        }
        if !status.is_success() {
            return Err(CollateralError::Http {
                status: status.as_u16(),
                url: url.into(),
            });
        }
        let mut found = BTreeMap::new();
        for name in headers {
            if let Some(value) = response.headers().get(*name) {
                let text = value.to_str().map_err(|_| {
                    CollateralError::malformed(format!("{url} header {name}"), "not ASCII")
                })?;
                found.insert((*name).to_owned(), percent_decode(text));
            }
        }
        let body = response.bytes().await.map_err(map)?;
        if body.len() > MAX_BODY {
            return Err(CollateralError::malformed(
                url,
                format!("answer of {} bytes", body.len()),
            ));
        }
        Ok((body.to_vec(), found))
    }
}

/// `%XX` decoding (Intel URL-encodes the PEM issuer chains it sends in headers).
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_restores_pem_line_breaks() {
        assert_eq!(
            percent_decode("-----BEGIN%20CERTIFICATE-----%0AMII%2B%2f"),
            "-----BEGIN CERTIFICATE-----\nMII+/"
        );
        assert_eq!(percent_decode("100%"), "100%");
    }
}
