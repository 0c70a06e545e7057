//! The attested certificate: made at boot, read back by verifiers.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
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
/// Media type of the wrapped evidence.
pub const EVIDENCE_MEDIA_TYPE: &str = "application/vnd.smart-worker.evidence+json";
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
    let key = KeyPair::generate()?;
    let evidence = attester.evidence(report_data_for_spki(&key.subject_public_key_info()))?;
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

/// The extension's value: OCTET STRING of the JSON CMW record.
fn extension_value(evidence: &attest::Evidence) -> Result<Vec<u8>, CertError> {
    let record = serde_json::json!([
        EVIDENCE_MEDIA_TYPE,
        URL_SAFE_NO_PAD.encode(evidence.to_json())
    ]);
    OctetString::new(record.to_string().into_bytes())
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
    let record: (String, String) = serde_json::from_slice(octets.as_bytes())
        .map_err(|e| CertError::BadExtension(e.to_string()))?;
    if record.0 != EVIDENCE_MEDIA_TYPE {
        return Err(CertError::BadExtension(format!(
            "unknown media type {:?}",
            record.0
        )));
    }
    let json = URL_SAFE_NO_PAD
        .decode(record.1.as_bytes())
        .map_err(|e| CertError::BadExtension(e.to_string()))?;
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
