//! The attested certificate: made at boot, read back by verifiers.

use der::asn1::OctetString;
use der::Decode;
use der::Encode;
use rcgen::CertificateParams;
use rcgen::CustomExtension;
use rcgen::KeyPair;
use rcgen::PublicKeyData;
use x509_parser::prelude::FromDer;
use x509_parser::prelude::X509Certificate;

/// `tcg-dice-conceptual-message-wrapper`.
pub const EVIDENCE_OID: [u64; 6] = [2, 23, 133, 5, 4, 9];
/// The same OID in dotted form, as x509-parser prints it.
const EVIDENCE_OID_DOTTED: &str = "2.23.133.5.4.9";
pub use super::cmw::{EVIDENCE_MEDIA_TYPE, EVIDENCE_MEDIA_TYPE_DEFLATE};
/// The report_data context of the TLS key binding.
pub const TLS_CONTEXT: &[u8] = b"smart-worker/runner/tls/v1";
/// Algorithm name of the bound key.
pub const TLS_KEY_ALGORITHM: &str = "p256-spki";
/// The certificate's names; clients pin the key, not the name.
pub const CERT_NAMES: [&str; 2] = ["smart-worker-runner", "localhost"];

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("making the TLS key or certificate: {0}")]
    Make(#[from] rcgen::Error),
    #[error("getting evidence for the TLS key: {0}")]
    Evidence(#[from] attest::Error),
    #[error("encoding the evidence extension: {0}")]
    Encode(der::Error),
    #[error("the certificate is not valid X.509: {0}")]
    Parse(String),
    #[error("the certificate carries no evidence extension ({EVIDENCE_OID_DOTTED})")]
    NoEvidence,
    #[error("the evidence extension is malformed: {0}")]
    BadExtension(String),
}

/// The runner's TLS identity: certificate and private key (DER), and the evidence inside.
pub struct AttestedCert {
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
    pub evidence: attest::Evidence,
}

/// report_data binding a TLS public key (its SubjectPublicKeyInfo DER).
pub fn report_data_for_spki(spki_der: &[u8]) -> [u8; 64] {
    let keys = [attest::BoundKey {
        algorithm: TLS_KEY_ALGORITHM,
        public_key: spki_der,
    }];
    attest::report_data_for(&keys, &[], TLS_CONTEXT)
}

/// Makes a new key pair and an attested certificate for it.
pub fn make(attester: &attest::Attester) -> Result<AttestedCert, CertError> {
    make_with(|report_data| attester.evidence(report_data))
}

/// [`make`] with the evidence from `evidence` (given the report_data binding the new key).
pub fn make_with(
    evidence: impl FnOnce([u8; 64]) -> Result<attest::Evidence, attest::Error>,
) -> Result<AttestedCert, CertError> {
    let key = KeyPair::generate()?;
    let evidence = evidence(report_data_for_spki(&key.subject_public_key_info()))?;
    let mut params = CertificateParams::new(CERT_NAMES.map(String::from).to_vec())?;
    params
        .custom_extensions
        .push(CustomExtension::from_oid_content(
            &EVIDENCE_OID,
            extension_value(&evidence)?,
        ));
    let cert = params.self_signed(&key)?;
    Ok(AttestedCert {
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
        evidence,
    })
}

/// The extension's value: OCTET STRING of the CBOR CMW record (compressed evidence JSON).
fn extension_value(evidence: &attest::Evidence) -> Result<Vec<u8>, CertError> {
    OctetString::new(super::cmw::encode(evidence.to_json().as_bytes()))
        .and_then(|octets| octets.to_der())
        .map_err(CertError::Encode)
}

/// What a verifier reads from a certificate: the evidence and the key it must bind.
pub struct CertEvidence {
    pub evidence: attest::Evidence,
    pub spki_der: Vec<u8>,
}

/// Reads the evidence and the public key out of a certificate.
pub fn read(cert_der: &[u8]) -> Result<CertEvidence, CertError> {
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|e| CertError::Parse(e.to_string()))?;
    let spki_der = cert.public_key().raw.to_vec();
    let extension = cert
        .extensions()
        .iter()
        .find(|ext| ext.oid.to_id_string() == EVIDENCE_OID_DOTTED)
        .ok_or(CertError::NoEvidence)?;
    let octets = OctetString::from_der(extension.value)
        .map_err(|e| CertError::BadExtension(e.to_string()))?;
    let json = super::cmw::decode(octets.as_bytes()).map_err(CertError::BadExtension)?;
    let json = String::from_utf8(json).map_err(|e| CertError::BadExtension(e.to_string()))?;
    let evidence =
        attest::Evidence::from_json(&json).map_err(|e| CertError::BadExtension(e.to_string()))?;
    Ok(CertEvidence { evidence, spki_der })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev_attester() -> attest::Attester {
        attest::Attester::detect_at(std::env::temp_dir().join("no-such-tee-root"))
    }

    #[test]
    fn the_certificate_carries_evidence_binding_its_own_key() {
        let made = make(&dev_attester()).unwrap();
        let read = read(&made.cert_der).unwrap();
        assert_eq!(read.evidence, made.evidence);
        let policy = attest::Policy {
            allow_insecure_dev: true,
            expected_report_data: Some(report_data_for_spki(&read.spki_der)),
            ..Default::default()
        };
        assert!(attest::verify(&read.evidence, &policy, std::time::SystemTime::now()).is_ok());
    }

    #[test]
    fn evidence_from_another_certificate_does_not_bind_this_key() {
        let attester = dev_attester();
        let a = read(&make(&attester).unwrap().cert_der).unwrap();
        let b = read(&make(&attester).unwrap().cert_der).unwrap();
        let policy = attest::Policy {
            allow_insecure_dev: true,
            expected_report_data: Some(report_data_for_spki(&a.spki_der)),
            ..Default::default()
        };
        assert!(attest::verify(&b.evidence, &policy, std::time::SystemTime::now()).is_err());
    }

    #[test]
    fn a_certificate_without_the_extension_is_refused() {
        let key = KeyPair::generate().unwrap();
        let plain = CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(matches!(read(plain.der()), Err(CertError::NoEvidence)));
    }
}

/// Certificates carrying a TPM quote with a firmware event log of realistic size (a cloud vTPM's
/// is 30–60 KB: Google's N2D log in attest/testdata is 45 KB) still go through a TLS handshake.
#[cfg(test)]
mod size_tests {
    use std::sync::Arc;

    use super::*;

    /// Recorded public TPM event logs (attest/testdata/eventlog, Apache-2.0): Google Cloud N2D
    /// (45 300 bytes) and a laptop's.
    const GCE_LOG: &[u8] =
        include_bytes!("../../../attest/testdata/eventlog/gce_ubuntu2404_sevsnp_tpm.bin");
    const LAPTOP_LOG: &[u8] =
        include_bytes!("../../../attest/testdata/eventlog/glinux_laptop_locality3_tpm.bin");

    /// `none` evidence with a TPM part whose event log is `log_len` bytes of real logs.
    fn evidence_with_log(report_data: [u8; 64], log_len: usize) -> attest::Evidence {
        let log: Vec<u8> = GCE_LOG
            .iter()
            .chain(LAPTOP_LOG)
            .copied()
            .take(log_len)
            .collect();
        let tpm = attest::tpm::TpmEvidence {
            ak_public: vec![1; 90],
            quote: vec![2; 145],
            signature: vec![3; 72],
            pcrs: (0..16).map(|i| (i, "00".repeat(32))).collect(),
            event_log: Some(log),
            ak_cert: None,
        };
        attest::Evidence::None(attest::NoneEvidence {
            report_data,
            tpm: Some(tpm),
        })
    }

    /// A TLS 1.3 handshake with the attested verifier over an in-memory pipe; the verifier's
    /// outcome (a TPM part that is not a real quote is refused *after* the certificate arrived).
    async fn handshake(cert: &AttestedCert) -> Result<(), String> {
        let server = Arc::new(super::super::listener::server_config(cert).unwrap());
        let policy = attest::Policy {
            allow_insecure_dev: true,
            ..Default::default()
        };
        let verifier = Arc::new(super::super::verify::AttestedServerVerifier::new(
            attest::Verifier::new(policy),
        ));
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
        let (c, s) = tokio::io::duplex(1 << 20);
        let accept = tokio::spawn(async move {
            let _ = tokio_rustls::TlsAcceptor::from(server).accept(s).await;
        });
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let result = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, c)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        accept.abort();
        result
    }

    #[tokio::test]
    async fn a_certificate_with_a_60_kb_event_log_reaches_the_verifier() {
        for log_len in [30_000, 45_300, 60_000] {
            let cert = make_with(|rd| Ok(evidence_with_log(rd, log_len))).unwrap();
            let read = read(&cert.cert_der).unwrap();
            let tpm = read.evidence.tpm().unwrap();
            assert_eq!(tpm.event_log.as_ref().unwrap().len(), log_len);
            let err = handshake(&cert).await.unwrap_err();
            eprintln!(
                "{log_len}-byte log: certificate {} bytes: {err}",
                cert.cert_der.len()
            );
            assert!(
                err.contains("attestation refused: TPM quote refused"),
                "{log_len}-byte log, certificate {} bytes: {err}",
                cert.cert_der.len()
            );
        }
    }
}
