//! Certificate and signature checks the collateral clients need: PEM chains, ECDSA P-256 (Intel's
//! PCS chain, CRLs, TCB info and QE identity) and RSA-PSS/SHA-384 (AMD's ARK signing its CRL),
//! and Intel issuer chains verified up to the pinned Intel SGX root CA.

use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use rsa::pkcs8::DecodePublicKey as _;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::Certificate;

use super::error::CollateralError;

/// Intel SGX Root CA (DER), as dcap-qvl 0.7.1 pins it (`src/TrustedRootCA.der`); SHA-256
/// fingerprint 44a0196b…b674d3, valid 2018-05-21 … 2049-12-31.
pub(crate) const INTEL_SGX_ROOT_CA: &[u8] = include_bytes!("intel_sgx_root_ca.der");

/// The DER certificates of a PEM text, in order.
pub(crate) fn pem_certificates(pem: &str, what: &str) -> Result<Vec<Vec<u8>>, CollateralError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let end = after
            .find(END)
            .ok_or_else(|| CollateralError::malformed(what, "unterminated PEM certificate"))?;
        let b64: String = after[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| CollateralError::malformed(what, e))?;
        out.push(der);
        rest = &after[end + END.len()..];
    }
    if out.is_empty() {
        return Err(CollateralError::malformed(what, "no PEM certificate"));
    }
    Ok(out)
}

pub(crate) fn parse_certificate(der: &[u8], what: &str) -> Result<Certificate, CollateralError> {
    Certificate::from_der(der).map_err(|e| CollateralError::malformed(what, e))
}

/// The raw subject public key bytes (SEC1 point for EC keys).
pub(crate) fn public_key_bytes(cert: &Certificate) -> &[u8] {
    cert.tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes()
}

/// ECDSA P-256/SHA-256 over `message`; `signature` DER (`der = true`) or raw r‖s.
pub(crate) fn verify_p256(
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
    der: bool,
    what: &str,
) -> Result<(), CollateralError> {
    let bad = || CollateralError::bad_signature(what);
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key).map_err(|_| bad())?;
    let signature = if der {
        p256::ecdsa::Signature::from_der(signature)
    } else {
        p256::ecdsa::Signature::from_slice(signature)
    }
    .map_err(|_| bad())?;
    key.verify(message, &signature).map_err(|_| bad())
}

/// RSA-PSS with SHA-384, MGF1-SHA-384 and a 48-byte salt (AMD's ARK and ASK signatures) by the
/// key in `spki_der` (a DER SubjectPublicKeyInfo).
pub(crate) fn verify_rsa_pss_sha384(
    spki_der: &[u8],
    message: &[u8],
    signature: &[u8],
    what: &str,
) -> Result<(), CollateralError> {
    let bad = || CollateralError::bad_signature(what);
    let key = rsa::RsaPublicKey::from_public_key_der(spki_der).map_err(|_| bad())?;
    let verifier = rsa::pss::VerifyingKey::<sha2::Sha384>::new(key);
    let signature = rsa::pss::Signature::try_from(signature).map_err(|_| bad())?;
    verifier.verify(message, &signature).map_err(|_| bad())
}

/// DER SubjectPublicKeyInfo of a certificate.
pub(crate) fn spki_der(cert: &Certificate, what: &str) -> Result<Vec<u8>, CollateralError> {
    cert.tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| CollateralError::malformed(what, e))
}

/// Refuses a certificate outside its validity at `now`.
pub(crate) fn check_validity(
    cert: &Certificate,
    now: u64,
    what: &str,
) -> Result<(), CollateralError> {
    let v = &cert.tbs_certificate.validity;
    let not_before = v.not_before.to_unix_duration().as_secs();
    let not_after = v.not_after.to_unix_duration().as_secs();
    if now < not_before || now > not_after {
        return Err(CollateralError::Stale {
            what: format!("{what} certificate"),
            next_update: not_after,
            now,
        });
    }
    Ok(())
}

/// An Intel issuer chain (PEM, leaf first): each certificate signed by the next (ECDSA
/// P-256), the last one exactly the pinned Intel SGX root CA, all valid at `now`. Returns the
/// parsed chain, leaf first.
pub(crate) fn verify_intel_chain(
    pem: &str,
    now: u64,
    what: &str,
) -> Result<Vec<Certificate>, CollateralError> {
    let ders = pem_certificates(pem, what)?;
    if ders.last().map(Vec::as_slice) != Some(INTEL_SGX_ROOT_CA) {
        return Err(CollateralError::bad_signature(format!(
            "{what} (the chain does not end at the pinned Intel SGX root CA)"
        )));
    }
    let certs = ders
        .iter()
        .map(|d| parse_certificate(d, what))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, cert) in certs.iter().enumerate() {
        check_validity(cert, now, what)?;
        let issuer = certs.get(i + 1).unwrap_or(cert);
        let tbs = cert
            .tbs_certificate
            .to_der()
            .map_err(|e| CollateralError::malformed(what, e))?;
        let signature = cert
            .signature
            .as_bytes()
            .ok_or_else(|| CollateralError::malformed(what, "signature is not whole bytes"))?;
        verify_p256(public_key_bytes(issuer), &tbs, signature, true, what)?;
    }
    Ok(certs)
}
