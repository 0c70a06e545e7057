//! The endorsement's two signatures: its signing certificate's, by the pinned root, and the
//! golden measurement's, by the signing key (RSA-PSS/SHA-256).

use rsa::pkcs8::DecodePublicKey as _;
use rsa::signature::Verifier as _;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::Certificate;

use super::EndorsementError;
use crate::collateral::x509;

const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
const SHA384_WITH_RSA: &str = "1.2.840.113549.1.1.12";
const RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
const ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
const ECDSA_WITH_SHA384: &str = "1.2.840.10045.4.3.3";
const BASIC_CONSTRAINTS: &str = "2.5.29.19";
const KEY_USAGE: &str = "2.5.29.15";

fn parse(der: &[u8], what: &'static str) -> Result<Certificate, EndorsementError> {
    Certificate::from_der(der).map_err(|e| EndorsementError::Certificate {
        what,
        reason: e.to_string(),
    })
}

fn check_validity(
    cert: &Certificate,
    now: u64,
    what: &'static str,
) -> Result<(), EndorsementError> {
    let v = &cert.tbs_certificate.validity;
    let not_before = v.not_before.to_unix_duration().as_secs();
    let not_after = v.not_after.to_unix_duration().as_secs();
    if now < not_before || now > not_after {
        return Err(EndorsementError::NotValidAt {
            what,
            now,
            not_before,
            not_after,
        });
    }
    Ok(())
}

/// The signing certificate's key and until when the chain is valid.
pub(super) struct SigningKey {
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// The earlier of the two certificates' notAfter (Unix seconds).
    pub valid_until: u64,
}

/// Checks the signing certificate `cert_der` against the pinned root at `now`; returns its key
/// and the end of the chain's validity.
pub(super) fn signing_certificate(
    cert_der: &[u8],
    root_der: &[u8],
    now: u64,
) -> Result<SigningKey, EndorsementError> {
    let root = parse(root_der, "root")?;
    let leaf = parse(cert_der, "signing")?;
    if leaf.tbs_certificate.issuer != root.tbs_certificate.subject {
        return Err(EndorsementError::NotIssuedByRoot(
            "its issuer is not the root's subject",
        ));
    }
    let tbs = leaf
        .tbs_certificate
        .to_der()
        .map_err(|_| EndorsementError::NotIssuedByRoot("its body does not re-encode"))?;
    let signature = leaf
        .signature
        .as_bytes()
        .ok_or(EndorsementError::NotIssuedByRoot(
            "its signature is not whole bytes",
        ))?;
    let algorithm = leaf.signature_algorithm.oid.to_string();
    if leaf.tbs_certificate.signature.oid != leaf.signature_algorithm.oid {
        return Err(EndorsementError::NotIssuedByRoot(
            "its two signature algorithms differ",
        ));
    }
    let root_spki = x509::spki_der(&root, "root")
        .map_err(|_| EndorsementError::NotIssuedByRoot("the root's key does not encode"))?;
    if !root_signed(&root, &root_spki, &algorithm, &tbs, signature) {
        return Err(EndorsementError::NotIssuedByRoot(
            "the root's signature does not verify",
        ));
    }
    check_validity(&root, now, "root")?;
    check_validity(&leaf, now, "signing")?;
    for ext in leaf.tbs_certificate.extensions.iter().flatten() {
        let value = ext.extn_value.as_bytes();
        match ext.extn_id.to_string().as_str() {
            BASIC_CONSTRAINTS => {
                let bc = BasicConstraints::from_der(value).map_err(|_| {
                    EndorsementError::NotASigningCertificate("bad basicConstraints")
                })?;
                if bc.ca {
                    return Err(EndorsementError::NotASigningCertificate("it is a CA"));
                }
            }
            KEY_USAGE => {
                let usage = KeyUsage::from_der(value)
                    .map_err(|_| EndorsementError::NotASigningCertificate("bad keyUsage"))?;
                if !usage.digital_signature() {
                    return Err(EndorsementError::NotASigningCertificate(
                        "keyUsage lacks digitalSignature",
                    ));
                }
            }
            _ if ext.critical => {
                return Err(EndorsementError::NotASigningCertificate(
                    "an unknown critical extension",
                ))
            }
            _ => {}
        }
    }
    let spki = x509::spki_der(&leaf, "signing").map_err(|e| EndorsementError::Certificate {
        what: "signing",
        reason: e.to_string(),
    })?;
    let not_after = |c: &Certificate| {
        c.tbs_certificate
            .validity
            .not_after
            .to_unix_duration()
            .as_secs()
    };
    Ok(SigningKey {
        spki,
        valid_until: not_after(&leaf).min(not_after(&root)),
    })
}

/// Whether `signature` over `tbs` verifies with the root's key under `algorithm`.
fn root_signed(
    root: &Certificate,
    root_spki: &[u8],
    algorithm: &str,
    tbs: &[u8],
    signature: &[u8],
) -> bool {
    let rsa = || rsa::RsaPublicKey::from_public_key_der(root_spki).ok();
    match algorithm {
        SHA256_WITH_RSA | SHA384_WITH_RSA => {
            let (Some(key), Ok(sig)) = (rsa(), rsa::pkcs1v15::Signature::try_from(signature))
            else {
                return false;
            };
            if algorithm == SHA256_WITH_RSA {
                rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key).verify(tbs, &sig)
            } else {
                rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(key).verify(tbs, &sig)
            }
            .is_ok()
        }
        // The salt is the hash's length, as both OpenSSL and Google's KMS sign.
        RSASSA_PSS => {
            let (Some(key), Ok(sig)) = (rsa(), rsa::pss::Signature::try_from(signature)) else {
                return false;
            };
            rsa::pss::VerifyingKey::<sha2::Sha256>::new(key.clone())
                .verify(tbs, &sig)
                .is_ok()
                || rsa::pss::VerifyingKey::<sha2::Sha384>::new(key)
                    .verify(tbs, &sig)
                    .is_ok()
        }
        ECDSA_WITH_SHA256 => {
            x509::verify_p256(x509::public_key_bytes(root), tbs, signature, true, "root").is_ok()
        }
        ECDSA_WITH_SHA384 => {
            use p384::ecdsa::signature::Verifier as _;
            let Ok(key) = p384::ecdsa::VerifyingKey::from_sec1_bytes(x509::public_key_bytes(root))
            else {
                return false;
            };
            p384::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| key.verify(tbs, &sig).is_ok())
        }
        _ => false,
    }
}

/// RSA-PSS/SHA-256 (32-byte salt) over `signed` by the key `spki_der`.
pub(super) fn signature(
    spki_der: &[u8],
    signed: &[u8],
    signature: &[u8],
) -> Result<(), EndorsementError> {
    let key = rsa::RsaPublicKey::from_public_key_der(spki_der)
        .map_err(|_| EndorsementError::BadSignature)?;
    let signature =
        rsa::pss::Signature::try_from(signature).map_err(|_| EndorsementError::BadSignature)?;
    rsa::pss::VerifyingKey::<sha2::Sha256>::new(key)
        .verify(signed, &signature)
        .map_err(|_| EndorsementError::BadSignature)
}
