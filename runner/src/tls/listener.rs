//! The HTTPS listener's TLS: 1.3 only, under the attested certificate. Its accept loop (the
//! same routes as the plain listener, the same limits) is `crate::listen`.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::ServerConfig;

use super::cert::AttestedCert;

/// The rustls configuration for the attested certificate.
pub fn server_config(cert: &AttestedCert) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone()));
    ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.cert_der.clone())], key)
}
