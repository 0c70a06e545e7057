//! `runner verifier`: the attestation verifier service that `VerifierPermitter` trusts.
//!
//! `POST /authorize` with `{request, evidence}` (see `keys::wire`): the evidence is checked by
//! `contracts::verifier::Verifier` (attest: signatures, certificate chain, policy, the launch
//! measurements of `--expect`, and report_data = the request's binding) and, only then, the
//! answer is the verifier key's EIP-712 signature over the attested measurement and the
//! binding. `GET /signer` gives the signer's address (the permitter's owner allows it with
//! `setVerifier`). The service holds no secret but its signing key and keeps no state.

use std::net::IpAddr;
use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use alloy::signers::local::PrivateKeySigner;
use axum::extract::ConnectInfo;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use axum::routing::post;
use axum::Json;
use axum::Router;
use contracts::keys::AuthorizationRequest;
use contracts::verifier::Verifier;
use contracts::verifier::VerifierError;

use crate::keys::wire;

/// `runner verifier` options.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifierArgs {
    /// File with the signing key (secp256k1, hex). Created with a random key (mode 0600) when
    /// it does not exist.
    #[arg(long)]
    pub key_file: PathBuf,
    /// What to trust (with `--allow-insecure-dev` the permitter must also allow the `none`
    /// measurement).
    #[command(flatten)]
    pub policy: crate::tls::verify::PolicyArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Write the address actually bound (useful with port 0) to this file once listening.
    #[arg(long)]
    pub addr_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifierServiceError {
    #[error("give --expect (the image manifest) or, for development, --allow-insecure-dev")]
    NoPolicy,
    #[error(transparent)]
    Policy(#[from] crate::tls::verify::VerifyCommandError),
    #[error("the key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the address file {path}: {source}")]
    AddrFile {
        path: String,
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
}

/// Reads the signing key, or creates it (random, 0600) when the file does not exist.
pub fn load_or_create_key(path: &Path) -> Result<PrivateKeySigner, VerifierServiceError> {
    let fail = |reason: String| VerifierServiceError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = zeroize::Zeroizing::new(text);
            let hex = text.trim();
            let hex = hex.strip_prefix("0x").unwrap_or(hex);
            hex.parse::<PrivateKeySigner>()
                .map_err(|_| fail("not a secp256k1 private key in hex (64 hex digits)".into()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let signer = PrivateKeySigner::random();
            let hex = zeroize::Zeroizing::new(hex::encode(signer.to_bytes()));
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| fail(e.to_string()))?;
            file.write_all(hex.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| fail(e.to_string()))?;
            tracing::info!(path = %path.display(), address = %signer.address(), "created a new verifier signing key");
            Ok(signer)
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// The service's router around `verifier`.
pub fn router(verifier: Arc<Verifier>) -> Router {
    Router::new()
        .route(wire::AUTHORIZE_PATH, post(authorize))
        .route("/signer", get(signer))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(verifier)
}

/// Runs the service until SIGINT/SIGTERM.
pub async fn run(args: &VerifierArgs) -> Result<(), VerifierServiceError> {
    if args.policy.expect.is_none() && !args.policy.allow_insecure_dev {
        return Err(VerifierServiceError::NoPolicy);
    }
    let attest_verifier = args.policy.verifier()?;
    let attest_collateral = attest_verifier
        .collateral
        .as_ref()
        .map(|c| c.config().clone());
    // What the permitter's owner allows (setMeasurement).
    let measurements = contracts::verifier::allowed_measurements_named(&attest_verifier.policy);
    for (what, measurement) in &measurements {
        tracing::info!(%measurement, what, "on-chain measurement this verifier signs for");
    }
    let signer = load_or_create_key(&args.key_file)?;
    let verifier = Arc::new(Verifier::new(attest_verifier, signer));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| VerifierServiceError::Bind {
            addr: args.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(VerifierServiceError::Http)?;
    if let Some(path) = &args.addr_file {
        std::fs::write(path, local.to_string()).map_err(|source| {
            VerifierServiceError::AddrFile {
                path: path.display().to_string(),
                source,
            }
        })?;
    }
    if args.policy.allow_insecure_dev {
        tracing::warn!(
            "verifier accepts `none` evidence (--allow-insecure-dev): INSECURE, development only"
        );
    }
    match &attest_collateral {
        Some(config) => tracing::info!(
            amd = %config.amd_url,
            intel = %config.intel_url,
            offline = ?config.offline,
            cache = ?config.cache_dir,
            max_per_minute = config.max_fetches_per_minute,
            google_endorsements = config.google_root.is_some(),
            "collateral the evidence lacks is fetched (VCEK, TDX collateral; Google launch endorsements with --gce-root), within a budget of requests per minute"
        ),
        None => tracing::info!("collateral fetching is off: evidence must carry its own"),
    }
    tracing::info!(addr = %local, signer = %verifier.address(), "attestation verifier listening");
    println!(
        "{}",
        serde_json::json!({
            "signer": verifier.address().to_string(),
            "listen": local.to_string(),
            "measurements": measurements.iter().map(|(_, m)| m.to_string()).collect::<Vec<_>>(),
            // What each of `measurements` stands for, in the same order: "snp", "tdx",
            // "uefi <platform>" (one per cloud the image's manifest predicts), "none (development)".
            "measured": measurements.iter().map(|(what, _)| what.as_str()).collect::<Vec<_>>(),
        })
    );
    axum::serve(
        listener,
        router(verifier).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown())
    .await
    .map_err(VerifierServiceError::Http)
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn signer(State(verifier): State<Arc<Verifier>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "signer": verifier.address().to_string() }))
}

/// For a refusal because a collateral budget is spent: the status (`429` when the client's own
/// share is spent, `503` when everybody's is) and seconds until a retry may succeed.
fn retry_after(refusal: &VerifierError) -> Option<(StatusCode, u64)> {
    use attest::collateral::CollateralError;
    match refusal {
        VerifierError::Refused(attest::VerifyError::Collateral(e)) => {
            let status = match e {
                CollateralError::RequesterRateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            Some((status, e.retry_after()?))
        }
        _ => None,
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(wire::ErrorResponse { error: message })).into_response()
}

/// Whose collateral budget a client spends: its IPv4 address, or its IPv6 /64 (one host
/// commonly holds a whole /64).
fn requester(client: IpAddr) -> String {
    match client {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

async fn authorize(
    State(verifier): State<Arc<Verifier>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    let body: wire::AuthorizeRequest = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("malformed request: {e}")),
    };
    let request: AuthorizationRequest = body.request;
    let evidence = body.evidence;
    // Certificate chains and signatures: CPU work, off the async workers.
    let checked = {
        let verifier = verifier.clone();
        let requester = requester(client.ip());
        tokio::task::spawn_blocking(move || {
            attest::collateral::as_requester(&requester, || {
                verifier.authorize_at(&request, evidence.as_bytes(), SystemTime::now())
            })
        })
        .await
    };
    let outcome = match checked {
        Ok(outcome) => outcome,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match outcome {
        Ok(authorization) => {
            tracing::info!(
                chain_id = request.chain_id,
                identity = %request.identity,
                requester = %request.requester,
                code_hash = %request.code_hash,
                measurement = %authorization.measurement,
                "evidence verified: authorization signed"
            );
            Json(&authorization).into_response()
        }
        Err(refusal) => {
            tracing::warn!(
                chain_id = request.chain_id,
                requester = %request.requester,
                code_hash = %request.code_hash,
                %refusal,
                "evidence refused"
            );
            if let Some((status, seconds)) = retry_after(&refusal) {
                // Not a verdict on the evidence: the budget of requests to AMD, Intel and Google
                // is spent for now (the client's share, or everybody's).
                let mut response = error(status, refusal.to_string());
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, seconds.into());
                return response;
            }
            let status = match refusal {
                VerifierError::Malformed(_) => StatusCode::BAD_REQUEST,
                VerifierError::Refused(_) => StatusCode::FORBIDDEN,
                VerifierError::Sign(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, refusal.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::verify::PolicyArgs;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        policy: PolicyArgs,
    }

    /// The recorded Milan report (attest's test vector) without its VCEK.
    fn snp_evidence_without_vcek() -> String {
        let hex = include_str!("../../attest/testdata/snp/report_milan.hex");
        attest::Evidence::Snp(attest::SnpEvidence {
            report: hex::decode(hex.trim()).unwrap(),
            certs: Vec::new(),
            tpm: None,
        })
        .to_json()
    }

    /// Serves the verifier built from `args` on a loopback port and posts SNP evidence that
    /// lacks its VCEK; returns the status and error message.
    async fn authorize_with(args: &[&str]) -> (u16, String) {
        let (status, error, _) = authorize_with_retry(args).await;
        (status, error)
    }

    /// The same, with the Retry-After header's seconds.
    async fn authorize_with_retry(args: &[&str]) -> (u16, String, Option<u64>) {
        post_evidence(&serve(args).await).await
    }

    /// Serves the verifier built from `args` on a loopback port; its authorize URL.
    async fn serve(args: &[&str]) -> String {
        let cli =
            Cli::try_parse_from(std::iter::once("verifier").chain(args.iter().copied())).unwrap();
        let verifier = Arc::new(Verifier::new(
            cli.policy.verifier().unwrap(),
            PrivateKeySigner::random(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}{}",
            listener.local_addr().unwrap(),
            wire::AUTHORIZE_PATH
        );
        tokio::spawn(async move {
            axum::serve(
                listener,
                router(verifier).into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        url
    }

    /// Posts SNP evidence that lacks its VCEK to `url`: the status, error message and
    /// Retry-After seconds.
    async fn post_evidence(url: &str) -> (u16, String, Option<u64>) {
        post(url, snp_evidence_without_vcek(), [127, 0, 0, 1]).await
    }

    /// Posts `evidence` to `url` from the loopback address `from`: the status, error message
    /// and Retry-After seconds.
    async fn post(url: &str, evidence: String, from: [u8; 4]) -> (u16, String, Option<u64>) {
        let body = wire::AuthorizeRequest {
            request: AuthorizationRequest {
                chain_id: 31337,
                registry: alloy::primitives::Address::repeat_byte(1),
                permitter: alloy::primitives::Address::repeat_byte(3),
                identity: alloy::primitives::B256::repeat_byte(42),
                requester: alloy::primitives::Address::repeat_byte(0xaa),
                code_hash: alloy::primitives::B256::repeat_byte(0xc0),
                nonce: alloy::primitives::B256::repeat_byte(0x0e),
            },
            evidence,
        };
        let response = reqwest::Client::builder()
            .local_address(IpAddr::from(from))
            .build()
            .unwrap()
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let retry = response
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let answer: serde_json::Value = response.json().await.unwrap();
        (
            status,
            answer["error"].as_str().unwrap_or("").to_owned(),
            retry,
        )
    }

    /// A loopback KDS answering 404 to everything: its URL and how many requests it got.
    async fn kds_that_knows_no_chip() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let kds = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let kds_url = format!("http://{}", kds.local_addr().unwrap());
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = asked.clone();
        let app = axum::Router::new().fallback(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { StatusCode::NOT_FOUND }
        });
        tokio::spawn(async move { axum::serve(kds, app).await });
        (kds_url, asked)
    }

    #[tokio::test]
    async fn missing_collateral_is_fetched_by_default_and_refusals_name_it() {
        // A KDS that knows no chip: the verifier asked it (Milan, then Genoa) and refuses.
        let (kds_url, asked) = kds_that_knows_no_chip().await;
        let (status, error) = authorize_with(&["--collateral-url-amd", &kds_url]).await;
        assert_eq!(status, 403, "{error}");
        assert!(
            error.contains("not found") && error.contains("/vcek/v1/Genoa/"),
            "{error}"
        );
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2);

        // Offline, from a bundle without the answer.
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle.json");
        std::fs::write(&bundle, r#"{"version":1,"answers":[]}"#).unwrap();
        let (status, error) =
            authorize_with(&["--collateral-offline", bundle.to_str().unwrap()]).await;
        assert_eq!(status, 403);
        assert!(
            error.contains("offline") && error.contains("amd:/vcek/v1/Milan/"),
            "{error}"
        );

        // Opted out: the evidence itself must carry the VCEK.
        let (status, error) = authorize_with(&["--no-collateral-fetch"]).await;
        assert_eq!(status, 403);
        assert!(error.contains("no VCEK"), "{error}");
    }

    #[tokio::test]
    async fn a_spent_collateral_budget_is_503_with_retry_after_not_a_refusal() {
        let (kds_url, asked) = kds_that_knows_no_chip().await;
        // One request a minute: Milan is asked (404), Genoa is not.
        let (status, error, retry) = authorize_with_retry(&[
            "--collateral-url-amd",
            &kds_url,
            "--collateral-max-fetches-per-minute",
            "1",
        ])
        .await;
        assert_eq!(status, 503, "{error}");
        assert!(error.contains("budget"), "{error}");
        assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "{retry:?}");
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_client_that_spent_its_share_of_the_budget_is_429_and_others_are_still_served() {
        let (kds_url, asked) = kds_that_knows_no_chip().await;
        // Two requests a minute per client: the first evidence costs Milan and Genoa (404).
        let url = serve(&[
            "--collateral-url-amd",
            &kds_url,
            "--collateral-max-fetches-per-requester",
            "2",
        ])
        .await;
        let (status, error, _) = post_evidence(&url).await;
        assert_eq!(status, 403, "{error}");
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2);
        // The 404s are remembered, so the same evidence costs nothing; another chip would.
        let mut other_chip =
            hex::decode(include_str!("../../attest/testdata/snp/report_milan.hex").trim()).unwrap();
        other_chip[0x1A0] ^= 0xff;
        let evidence = attest::Evidence::Snp(attest::SnpEvidence {
            report: other_chip,
            certs: Vec::new(),
            tpm: None,
        })
        .to_json();
        let (status, error, retry) = post(&url, evidence.clone(), [127, 0, 0, 1]).await;
        assert_eq!(status, 429, "{error}");
        assert!(retry.is_some_and(|s| (1..=30).contains(&s)), "{retry:?}");
        assert!(error.contains("127.0.0.1"), "names the requester: {error}");
        assert_eq!(
            asked.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "KDS not asked"
        );
        // Another client (another loopback address) has its own share: KDS is asked for it.
        let (status, error, _) = post(&url, evidence, [127, 0, 0, 2]).await;
        assert_eq!(status, 403, "{error}");
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 4);
    }

    #[test]
    fn a_requester_is_an_ipv4_address_or_an_ipv6_64() {
        let v6: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert_eq!(requester(v6), "2001:db8:1:2::/64");
        assert_eq!(requester(v6), requester(same_64));
        assert_eq!(requester("10.1.2.3".parse().unwrap()), "10.1.2.3");
        assert_eq!(requester("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.3");
    }
}
