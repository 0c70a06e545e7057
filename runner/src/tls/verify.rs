//! The client side of RA-TLS: `runner verify URL` connects to an appliance,
//! checks the evidence in its certificate against a policy (measurements from
//! the image manifest; `none` only with `--allow-insecure-dev`), checks that
//! the evidence binds the key the server proves it holds in the handshake,
//! and only then sends the request over that pinned connection.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;
use deno_core::url::Url;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::header::HeaderName;
use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::client::danger::ServerCertVerified;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::ServerName;
use rustls::pki_types::UnixTime;
use rustls::DigitallySignedStruct;
use rustls::SignatureScheme;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::cert;

/// `runner verify`: talk to an appliance only after verifying its attestation.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The appliance URL, e.g. https://host:8443/w/<id>/
    pub url: String,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// HTTP method.
    #[arg(long, short = 'X', default_value = "GET")]
    pub method: String,
    /// Request body.
    #[arg(long, short = 'd')]
    pub data: Option<String>,
    /// A request header, `Name: value` (repeatable), e.g. `-H 'Authorization: Bearer swt_…'` to
    /// manage a worker over the verified connection. `Host` comes from the URL.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Parses `Name: value` (curl's `-H` form); `Authorization` values are marked sensitive.
pub fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), VerifyCommandError> {
    let bad = |reason: &str| VerifyCommandError::Header(reason.to_owned());
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| bad("expected `Name: value`"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| bad("the name is not an HTTP header name"))?;
    if name == hyper::header::HOST {
        return Err(bad("the Host header comes from the URL"));
    }
    let mut value = HeaderValue::from_str(value.trim())
        .map_err(|_| bad("the value has characters a header cannot carry"))?;
    value.set_sensitive(name == hyper::header::AUTHORIZATION);
    Ok((name, value))
}

/// What a client trusts: the options `runner verify`, `deploy` and `verifier` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PolicyArgs {
    /// Expected measurements: an image build's manifest.json (its SNP launch digest and TDX
    /// registers), or a bare list of expected measurements. Evidence of any other launch is
    /// refused.
    #[arg(long)]
    pub expect: Option<PathBuf>,
    /// TDX RTMR[0] (96 hex digits) of the host's VM, from a known-good boot there. With a
    /// manifest, TDX launches are accepted only with it: RTMR[0] covers the host's ACPI tables
    /// and VM shape, which the image build cannot compute.
    #[arg(long, value_name = "HEX")]
    pub tdx_rtmr0: Option<attest::Digest48>,
    /// Accept `none` evidence (a runner without a TEE). Development only: nothing is attested.
    #[arg(long)]
    pub allow_insecure_dev: bool,
    /// Minimum SEV-SNP REPORTED_TCB, `[milan:|genoa:|turin:]TCB` (repeatable; without a
    /// generation it sets all): TCB is `bootloader=N,tee=N,snp=N,microcode=N[,fmc=N]`
    /// (missing ones 0), a raw TCB_VERSION `0x…` (with a generation) or `none`. Default:
    /// AMD-SB-3019's fix, SNP firmware SPL 0x18 on Milan and 0x17 on Genoa.
    #[arg(long, value_name = "[GEN:]TCB")]
    pub snp_min_tcb: Vec<attest::SnpMinTcbSpec>,
    /// TPM trust and cloud firmware (`--allow-untrusted-vtpm`, `--tpm-ak`, `--tdx-mrtd`, …).
    #[command(flatten)]
    pub tpm: super::tpm_policy::TpmPolicyArgs,
    /// Where collateral the evidence lacks comes from.
    #[command(flatten)]
    pub collateral: super::collateral::CollateralArgs,
}

impl PolicyArgs {
    /// The attestation policy these options describe. What it will refuse for want of a
    /// measurement (e.g. TDX without `--tdx-rtmr0`) is logged as a warning.
    pub fn policy(&self) -> Result<attest::Policy, VerifyCommandError> {
        let mut policy = attest::Policy {
            allow_insecure_dev: self.allow_insecure_dev,
            expected: match &self.expect {
                Some(path) => load_expected(path, self.tdx_rtmr0)?,
                None => attest::ExpectedMeasurements::default(),
            },
            ..Default::default()
        };
        for spec in &self.snp_min_tcb {
            policy.snp.min_tcb.apply(spec);
        }
        self.tpm.apply(&mut policy)?;
        Ok(policy)
    }

    /// The policy with its collateral client (which, given `--gce-root`, also fetches Google's
    /// launch endorsements): what verifies evidence.
    pub fn verifier(&self) -> Result<attest::Verifier, VerifyCommandError> {
        let mut verifier = attest::Verifier::new(self.policy()?);
        let Some(mut config) = self.collateral.config() else {
            if self.tpm.gce_root.is_some() {
                tracing::info!("--no-collateral-fetch: Google launch endorsements are not fetched either (only --gce-endorsement files count)");
            }
            return Ok(verifier);
        };
        self.tpm.fetch_endorsements(&mut config)?;
        match &config.google_root {
            Some(_) => tracing::info!(url = %config.google_url, dir = ?config.google_dir,
                "Google launch endorsements are fetched by measurement, verified under --gce-root"),
            None => tracing::info!("no --gce-root: Google launch endorsements are not fetched"),
        }
        let client = attest::collateral::CollateralClient::new(config)
            .map_err(|e| VerifyCommandError::Collateral(e.to_string()))?;
        verifier.collateral = Some(std::sync::Arc::new(client));
        Ok(verifier)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyCommandError {
    #[error("bad URL {0:?}: {1}")]
    Url(String, String),
    #[error("reading the expected measurements from {path}: {reason}")]
    Expect { path: String, reason: String },
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS with {0}: {1}")]
    Tls(String, std::io::Error),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("bad header: {0}")]
    Header(String),
    #[error("collateral: {0}")]
    Collateral(String),
    #[error(transparent)]
    CloudFirmware(#[from] super::tpm_policy::TpmPolicyError),
}

/// Checks the server's certificate evidence, then its handshake signature.
#[derive(Debug)]
pub struct AttestedServerVerifier {
    verifier: attest::Verifier,
    provider: Arc<CryptoProvider>,
    verified: Mutex<Option<attest::Verified>>,
}

impl AttestedServerVerifier {
    /// Checks certificates with `verifier` (its policy, endorsements and collateral client).
    pub fn new(verifier: attest::Verifier) -> Self {
        Self {
            verifier,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            verified: Mutex::new(None),
        }
    }

    /// What the last accepted certificate's evidence showed.
    pub fn verified(&self) -> Option<attest::Verified> {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ServerCertVerifier for AttestedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let read = cert::read(end_entity).map_err(|e| rustls::Error::General(e.to_string()))?;
        let mut policy = self.verifier.policy.clone();
        policy.expected_report_data = Some(cert::report_data_for_spki(&read.spki_der));
        // Fetching missing collateral blocks this handshake (on its own thread): a CLI's
        // one connection, not a server's.
        let verified = self
            .verifier
            .verify_with_policy(&read.evidence, &policy, SystemTime::now())
            .map_err(|e| rustls::Error::General(format!("attestation refused: {e}")))?;
        *self.verified.lock().unwrap_or_else(|p| p.into_inner()) = Some(verified);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(
            "the appliance speaks TLS 1.3 only".into(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Proves the server holds the private key of the attested public key.
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The expected measurements in `path`: an image build's manifest.json (see
/// [`attest::ExpectedMeasurements::from_image_manifest`]; `tdx_rtmr0` completes its TDX values),
/// or the bare list in [`attest::ExpectedMeasurements`]' own JSON form.
pub fn load_expected(
    path: &std::path::Path,
    tdx_rtmr0: Option<attest::Digest48>,
) -> Result<attest::ExpectedMeasurements, VerifyCommandError> {
    let fail = |reason: String| VerifyCommandError::Expect {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    if value.get("measurements").is_some() {
        let (expected, notes) =
            attest::ExpectedMeasurements::from_image_manifest(&value, tdx_rtmr0)
                .map_err(|e| fail(e.to_string()))?;
        for note in notes {
            tracing::warn!(expect = %path.display(), "{note}");
        }
        return Ok(expected);
    }
    if tdx_rtmr0.is_some() {
        return Err(fail(
            "--tdx-rtmr0 completes an image manifest; a bare list gives RTMR[0] itself".into(),
        ));
    }
    serde_json::from_value(value).map_err(|e| fail(e.to_string()))
}

/// The outcome of `runner verify`: what was verified, and the server's answer.
pub struct VerifiedResponse {
    pub verified: attest::Verified,
    pub status: u16,
    pub body: Bytes,
}

/// Verifies the appliance behind `args.url` and sends the request over the pinned connection.
pub async fn run(args: &VerifyArgs) -> Result<VerifiedResponse, VerifyCommandError> {
    let verifier = args.policy.verifier()?;
    let body = Bytes::from(args.data.clone().unwrap_or_default());
    send_verified(&args.url, verifier, &args.method, &args.headers, body).await
}

/// Connects to `url` (https), verifies the appliance's evidence with `verifier` during the
/// handshake — nothing is sent to an appliance that fails — then sends one request over that
/// pinned connection and reads the answer.
pub async fn send_verified(
    url: &str,
    verifier: attest::Verifier,
    method: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: Bytes,
) -> Result<VerifiedResponse, VerifyCommandError> {
    let parsed =
        Url::parse(url).map_err(|e| VerifyCommandError::Url(url.to_owned(), e.to_string()))?;
    if parsed.scheme() != "https" {
        return Err(VerifyCommandError::Url(
            url.to_owned(),
            "the scheme must be https".into(),
        ));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| VerifyCommandError::Url(url.to_owned(), "no host".into()))?
        .to_owned();
    let port = parsed.port().unwrap_or(443);
    let verifier = Arc::new(AttestedServerVerifier::new(verifier));
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| VerifyCommandError::Http(e.to_string()))?
    .dangerous()
    .with_custom_certificate_verifier(verifier.clone())
    .with_no_client_auth();
    let bare_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let address = format!("{bare_host}:{port}");
    let tcp = TcpStream::connect(&address)
        .await
        .map_err(|e| VerifyCommandError::Connect(address.clone(), e))?;
    let server_name = ServerName::try_from(bare_host)
        .map_err(|e| VerifyCommandError::Url(url.to_owned(), e.to_string()))?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| VerifyCommandError::Tls(address.clone(), e))?;
    let verified = verifier.verified().ok_or_else(|| {
        VerifyCommandError::Http("the handshake finished without a verified certificate".into())
    })?;

    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| VerifyCommandError::Http(e.to_string()))?;
    tokio::spawn(connection);
    let path = match parsed.query() {
        Some(query) => format!("{}?{query}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, parsed.authority());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| VerifyCommandError::Http(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| VerifyCommandError::Http(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| VerifyCommandError::Http(e.to_string()))?
        .to_bytes();
    Ok(VerifiedResponse {
        verified,
        status,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::cert;
    use crate::tls::listener;

    fn dev_attester() -> attest::Attester {
        attest::Attester::detect_at(std::env::temp_dir().join("no-such-tee-root"))
    }

    /// Serves `cert` on a loopback port with a one-route router; returns the port.
    async fn serve(cert: &cert::AttestedCert) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let router =
            axum::Router::new().route("/", axum::routing::get(|| async { "secret answer" }));
        let tls = Arc::new(listener::server_config(cert).unwrap());
        let listeners = crate::listen::Listeners::new(crate::listen::Limits {
            max_connections: 16,
            handshake_timeout: std::time::Duration::from_secs(10),
            header_timeout: std::time::Duration::from_secs(10),
        });
        let transport = crate::listen::Transport::Tls(tokio_rustls::TlsAcceptor::from(tls));
        tokio::spawn(async move {
            // Never stopped: the sender lives as long as the loop.
            let (_stop_tx, stop) = tokio::sync::watch::channel(false);
            listeners.run(listener, transport, router, stop).await
        });
        port
    }

    fn args(port: u16) -> VerifyArgs {
        VerifyArgs {
            url: format!("https://127.0.0.1:{port}/"),
            policy: PolicyArgs {
                allow_insecure_dev: true,
                ..PolicyArgs::default()
            },
            method: "GET".into(),
            data: None,
            headers: Vec::new(),
        }
    }

    #[derive(clap::Parser)]
    struct PolicyCli {
        #[command(flatten)]
        policy: PolicyArgs,
    }

    fn policy_from(args: &[&str]) -> Result<attest::Policy, clap::Error> {
        use clap::Parser;
        let cli = PolicyCli::try_parse_from(std::iter::once("verify").chain(args.iter().copied()))?;
        Ok(cli.policy.policy().unwrap())
    }

    #[test]
    fn snp_min_tcb_defaults_to_the_bulletins_and_can_be_set_per_generation() {
        let default = policy_from(&[]).unwrap();
        assert_eq!(default.snp.min_tcb, attest::SnpMinTcb::default());
        assert_eq!(default.snp.min_tcb.milan.snp, 0x18);

        let set = policy_from(&[
            "--snp-min-tcb",
            "milan:snp=8",
            "--snp-min-tcb",
            "genoa:0xdb1b000000000004",
        ])
        .unwrap();
        assert_eq!(set.snp.min_tcb.milan.snp, 8);
        assert_eq!(
            (set.snp.min_tcb.genoa.snp, set.snp.min_tcb.genoa.microcode),
            (0x1b, 0xdb)
        );
        assert_eq!(set.snp.min_tcb.turin, default.snp.min_tcb.turin);

        let error = policy_from(&["--snp-min-tcb", "milan:snp=999"]).expect_err("refused");
        assert!(error.to_string().contains("0 to 255"), "{error}");
    }

    #[test]
    fn headers_parse_like_curls_and_host_is_refused() {
        let (name, value) = parse_header("Authorization:  Bearer swt_x ").unwrap();
        assert_eq!(name, hyper::header::AUTHORIZATION);
        assert_eq!(value, "Bearer swt_x");
        assert!(value.is_sensitive());
        assert!(!parse_header("x-a: 1").unwrap().1.is_sensitive());
        for bad in [
            "no colon",
            "bad name: 1",
            "Host: evil.example",
            "x-a: a\u{7f}b",
        ] {
            assert!(
                matches!(parse_header(bad), Err(VerifyCommandError::Header(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn an_honest_certificate_is_accepted_and_pinned() {
        let port = serve(&cert::make(&dev_attester()).unwrap()).await;
        let answer = run(&args(port)).await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(&answer.body[..], b"secret answer");
        assert!(answer.verified.insecure);
    }

    /// A server that copies another certificate's (valid) evidence into its own certificate:
    /// the evidence does not bind its key, so nothing is sent.
    #[tokio::test]
    async fn evidence_that_binds_another_key_is_refused() {
        let attester = dev_attester();
        let honest = cert::make(&attester).unwrap();
        let thief_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let stolen = x509_parser::parse_x509_certificate(&honest.cert_der)
            .unwrap()
            .1
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "2.23.133.5.4.9")
            .unwrap()
            .value
            .to_vec();
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &cert::EVIDENCE_OID,
                stolen,
            ));
        let forged = cert::AttestedCert {
            cert_der: params.self_signed(&thief_key).unwrap().der().to_vec(),
            key_der: thief_key.serialize_der(),
            evidence: honest.evidence.clone(),
        };
        let port = serve(&forged).await;

        let error = run(&args(port))
            .await
            .err()
            .expect("the forged certificate is refused");
        assert!(error.to_string().contains("attestation refused"), "{error}");
    }

    #[tokio::test]
    async fn a_certificate_without_evidence_is_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let plain = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let port = serve(&cert::AttestedCert {
            cert_der: plain.der().to_vec(),
            key_der: key.serialize_der(),
            evidence: cert::make(&dev_attester()).unwrap().evidence,
        })
        .await;
        let error = run(&args(port)).await.err().expect("refused");
        assert!(error.to_string().contains("no evidence"), "{error}");
    }
}
