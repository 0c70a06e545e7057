//! Azure TDX: the quote for the HCL report's TDREPORT, from Azure's instance metadata service
//! (IMDS). A TDREPORT is MAC'd with a key only this CPU holds, so no verifier can check it; on
//! an Azure TDX CVM the guest posts it to IMDS, whose host-side quoting enclave checks the MAC
//! and signs the same TD report body as a DCAP quote (Azure's `az-tdx-vtpm` does the same):
//!
//! ```text
//! POST http://169.254.169.254/acc/tdquote
//! Metadata: true
//! Content-Type: application/json
//! {"report": "<TDREPORT, base64url>"}
//! → 200 {"quote": "<DCAP TD quote, base64url>"}
//! ```
//!
//! IMDS is the host's: as untrusted as any answer from outside the TEE. Its quote is only
//! carried in the evidence (the verifier checks it against Intel's chain and the HCL report);
//! here the answer is bounded (time, size) and must be a quote of this very TDREPORT (same
//! REPORTDATA), so a wrong answer fails at the guest with its reason rather than at a verifier.
//! Plain HTTP to the link-local address, no proxy (`RUNNER_AZURE_IMDS` points it elsewhere, for
//! tests); used only when the vTPM's HCL report says TDX, i.e. only on Azure.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;

/// Azure's instance metadata service, its fixed link-local address.
pub const IMDS: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(169, 254, 169, 254), 80));
/// Overrides [`IMDS`] (`address:port`), for tests.
pub const IMDS_SETTING: &str = "RUNNER_AZURE_IMDS";
/// The path that turns a TDREPORT into a quote.
pub const TD_QUOTE_PATH: &str = "/acc/tdquote";
/// A TD quote with its PCK chain is about 5 KiB (7 KiB in base64 JSON); more is refused.
pub const MAX_ANSWER: usize = 64 << 10;
/// IMDS answers within a second or two; this bounds a host that does not.
pub const IMDS_TIMEOUT: Duration = Duration::from_secs(10);
/// A TDREPORT's size.
pub const TD_REPORT_LEN: usize = 1024;
/// REPORTDATA in a TDREPORT (after REPORTMACSTRUCT's type, reserved, CPUSVN, two hashes).
const TD_REPORT_DATA: std::ops::Range<usize> = 128..192;
/// REPORTDATA in a DCAP TD quote (48-byte header, then the TD report body; REPORTDATA last).
const QUOTE_REPORT_DATA: std::ops::Range<usize> = 568..632;

/// Getting the TD quote from IMDS failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImdsError {
    /// The TDREPORT to send is not 1024 bytes.
    #[error("a TDREPORT is {TD_REPORT_LEN} bytes, not {0}")]
    BadTdReport(usize),
    /// No answer: connection refused, reset, or the client could not be built.
    #[error("Azure IMDS {server}: {reason}")]
    Unreachable {
        /// The address asked.
        server: SocketAddr,
        /// The cause.
        reason: String,
    },
    /// No (complete) answer within the timeout.
    #[error("Azure IMDS {server} did not answer within {timeout:?}")]
    Timeout {
        /// The address asked.
        server: SocketAddr,
        /// The limit.
        timeout: Duration,
    },
    /// An HTTP status other than 200.
    #[error("Azure IMDS {server} answered HTTP {status} to the TD quote request")]
    Status {
        /// The address asked.
        server: SocketAddr,
        /// The status.
        status: u16,
    },
    /// The answer exceeds [`MAX_ANSWER`].
    #[error("Azure IMDS answer exceeds {MAX_ANSWER} bytes")]
    TooLarge,
    /// The answer is not `{"quote": "<base64url>"}`.
    #[error("Azure IMDS answer is not {{\"quote\": \"…\"}}: {0}")]
    BadJson(String),
    /// The quote is not base64url.
    #[error("Azure IMDS quote is not base64url: {0}")]
    BadBase64(String),
    /// The quote is too short for a TD quote, or carries another REPORTDATA than the TDREPORT
    /// sent: it is not this report's quote.
    #[error("Azure IMDS returned a quote that is not this TDREPORT's ({0})")]
    NotThisReport(String),
}

/// Where and how long to ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imds {
    /// IMDS's address ([`IMDS`] unless overridden).
    pub server: SocketAddr,
    /// The whole exchange's limit.
    pub timeout: Duration,
}

impl Default for Imds {
    fn default() -> Self {
        Imds {
            server: IMDS,
            timeout: IMDS_TIMEOUT,
        }
    }
}

#[derive(Deserialize)]
struct QuoteAnswer {
    quote: String,
}

impl Imds {
    /// Azure's IMDS, or the `address:port` in `RUNNER_AZURE_IMDS` (an unparsable value is
    /// ignored with a warning).
    pub fn from_env() -> Self {
        let mut imds = Imds::default();
        if let Ok(text) = std::env::var(IMDS_SETTING) {
            match text.trim().parse() {
                Ok(server) => imds.server = server,
                Err(e) => {
                    tracing::warn!(value = %text, error = %e, "{IMDS_SETTING} is not address:port; using Azure's IMDS")
                }
            }
        }
        imds
    }

    /// The DCAP quote IMDS makes of `td_report` (1024 bytes), checked to carry the same
    /// REPORTDATA. Blocking: runs on a thread and runtime of its own, so it may be called from
    /// async code too.
    pub fn td_quote(&self, td_report: &[u8]) -> Result<Vec<u8>, ImdsError> {
        if td_report.len() != TD_REPORT_LEN {
            return Err(ImdsError::BadTdReport(td_report.len()));
        }
        let body = serde_json::json!({ "report": URL_SAFE_NO_PAD.encode(td_report) }).to_string();
        let answer = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| self.unreachable(format!("cannot start a runtime: {e}")))?;
                    runtime.block_on(self.post(body))
                })
                .join()
                .unwrap_or_else(|_| Err(self.unreachable("the request thread panicked".into())))
        })?;
        let quote = decode_answer(&answer)?;
        check_quote(&quote, td_report)?;
        tracing::info!(server = %self.server, bytes = quote.len(), "TD quote from Azure IMDS");
        Ok(quote)
    }

    fn unreachable(&self, reason: String) -> ImdsError {
        ImdsError::Unreachable {
            server: self.server,
            reason,
        }
    }

    async fn post(&self, body: String) -> Result<Vec<u8>, ImdsError> {
        let timeout = || ImdsError::Timeout {
            server: self.server,
            timeout: self.timeout,
        };
        let map = |e: reqwest::Error| {
            if e.is_timeout() {
                timeout()
            } else {
                self.unreachable(e.to_string())
            }
        };
        // No proxy: the link-local address must be reached directly, whatever HTTP_PROXY says.
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .build()
            .map_err(|e| self.unreachable(format!("cannot build the HTTP client: {e}")))?;
        let url = format!("http://{}{TD_QUOTE_PATH}", self.server);
        let exchange = async {
            let mut response = client
                .post(&url)
                .header("Metadata", "true")
                // Exactly this: IMDS answers 415 to "application/json; charset=utf-8".
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .body(body)
                .send()
                .await
                .map_err(map)?;
            let status = response.status().as_u16();
            if status != 200 {
                return Err(ImdsError::Status {
                    server: self.server,
                    status,
                });
            }
            if response
                .content_length()
                .is_some_and(|n| n > MAX_ANSWER as u64)
            {
                return Err(ImdsError::TooLarge);
            }
            let mut answer = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(map)? {
                if answer.len() + chunk.len() > MAX_ANSWER {
                    return Err(ImdsError::TooLarge);
                }
                answer.extend_from_slice(&chunk);
            }
            Ok(answer)
        };
        // reqwest's timeout covers the body too; this one also covers a slow body stream.
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(timeout()))
    }
}

/// The quote in IMDS's answer: base64url, with or without padding (the standard alphabet's
/// `+` and `/` accepted too).
fn decode_answer(answer: &[u8]) -> Result<Vec<u8>, ImdsError> {
    let parsed: QuoteAnswer =
        serde_json::from_slice(answer).map_err(|e| ImdsError::BadJson(e.to_string()))?;
    let text: String = parsed
        .quote
        .trim()
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD
        .decode(text.as_bytes())
        .map_err(|e| ImdsError::BadBase64(e.to_string()))
}

/// `quote` is long enough for a TD quote and carries `td_report`'s REPORTDATA.
fn check_quote(quote: &[u8], td_report: &[u8]) -> Result<(), ImdsError> {
    let Some(got) = quote.get(QUOTE_REPORT_DATA) else {
        return Err(ImdsError::NotThisReport(format!(
            "{} bytes, shorter than a TD quote's header and report body",
            quote.len()
        )));
    };
    if got != &td_report[TD_REPORT_DATA] {
        return Err(ImdsError::NotThisReport("another REPORTDATA".into()));
    }
    Ok(())
}
