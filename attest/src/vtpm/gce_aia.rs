//! The guest's fetch of its Google AK certificate's issuer (the intermediate), as go-tpm-tools
//! does with the leaf's Authority Information Access URL: Google issues AK certificates from
//! several "EK/AK CA Intermediate"s, and the vTPM's NV holds only the leaf. Done once when the
//! TPM is probed; only from Google's hosts; whatever comes back is checked by the verifier to
//! its pinned roots, like any certificate in evidence. A failure leaves the evidence without
//! it (the verifier also knows Google's published intermediates).

use std::time::Duration;

use x509_cert::der::Decode as _;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::AuthorityInfoAccessSyntax;
use x509_cert::Certificate;

/// id-pe-authorityInfoAccess.
const AIA: &str = "1.3.6.1.5.5.7.1.1";
/// id-ad-caIssuers.
const CA_ISSUERS: &str = "1.3.6.1.5.5.7.48.2";
/// A certificate is a few KiB; a larger answer is refused.
const MAX_BODY: usize = 64 << 10;
/// The fetch happens at start-up: it must not hold it up for long.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The caIssuers URL of the certificate `der`, if it has one.
pub(crate) fn issuer_url(der: &[u8]) -> Option<String> {
    let cert = Certificate::from_der(der).ok()?;
    let ext = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id.to_string() == AIA)?;
    let aia = AuthorityInfoAccessSyntax::from_der(ext.extn_value.as_bytes()).ok()?;
    aia.0.iter().find_map(|d| match &d.access_location {
        GeneralName::UniformResourceIdentifier(uri)
            if d.access_method.to_string() == CA_ISSUERS =>
        {
            Some(uri.as_str().to_owned())
        }
        _ => None,
    })
}

/// Whether `url` is one of Google's certificate hosts: `pki.goog` (the older CA) or a Google
/// Private CA content bucket (`privateca-content-….storage.googleapis.com`), on the default
/// port, without credentials.
pub(crate) fn is_google_ca_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    if rest.len() == host.len() || host.contains(['@', ':']) {
        return false;
    }
    host == "pki.goog"
        || host
            .strip_prefix("privateca-content-")
            .and_then(|h| h.strip_suffix(".storage.googleapis.com"))
            .is_some_and(|id| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
}

/// The DER certificate(s) of an answer: DER as is, or the certificates of a PEM text.
fn certificates(body: Vec<u8>) -> Result<Vec<Vec<u8>>, String> {
    if body.starts_with(b"-----BEGIN") {
        let text = String::from_utf8(body).map_err(|_| "a PEM answer that is not UTF-8")?;
        crate::collateral::x509::pem_certificates(&text, "issuer certificate")
            .map_err(|e| e.to_string())
    } else {
        Certificate::from_der(&body).map_err(|e| format!("not a DER certificate: {e}"))?;
        Ok(vec![body])
    }
}

/// GETs `url` (any host: the caller checks it) on its own thread and runtime, so it works
/// whether or not the caller is inside a Tokio runtime.
pub(crate) fn fetch(url: &str) -> Result<Vec<Vec<u8>>, String> {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let client = reqwest::Client::builder()
                .timeout(TIMEOUT)
                .connect_timeout(TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| e.to_string())?;
            let mut response = client.get(&url).send().await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status().as_u16()));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_BODY {
                    return Err(format!("an answer over {MAX_BODY} bytes"));
                }
            }
            certificates(body)
        })
    })
    .join()
    .map_err(|_| "the fetch thread panicked".to_owned())?
}

/// The intermediates for the AK certificate `leaf`: its issuer fetched from its AIA URL when
/// that is Google's; none (with a warning) otherwise.
pub(crate) fn intermediates(leaf: &[u8]) -> Vec<Vec<u8>> {
    let Some(url) = issuer_url(leaf) else {
        return Vec::new();
    };
    if !is_google_ca_url(&url) {
        tracing::warn!(%url, "the AK certificate's issuer URL is not Google's: not fetched");
        return Vec::new();
    }
    match fetch(&url) {
        Ok(certs) => {
            tracing::info!(%url, count = certs.len(), "fetched the AK certificate's issuer");
            certs
        }
        Err(error) => {
            tracing::warn!(%url, %error, "could not fetch the AK certificate's issuer: the verifier must know it");
            Vec::new()
        }
    }
}
