//! Google Compute Engine's certificate for its vTPM attestation key (AK): the leaf (from NV
//! index 0x01c10000 / 0x01c10002 of the guest's vTPM) chained through an intermediate (carried
//! in the evidence, or one of Google's published ones kept here) to a pinned Google root, each
//! certificate valid at the verification time, and the leaf's key equal to the quoting AK.
//!
//! What it proves: Google made this AK in the vTPM of a GCE instance (the leaf names the
//! project, zone and instance). Not that the host cannot forge the vTPM's quotes: the vTPM runs
//! outside the TEE, so it is Google's word (see [`super::AkTrust::CloudCertified`]).
//!
//! The pinned certificates and their origin: `gce_ca/README.md`.

use rsa::pkcs8::DecodePublicKey as _;
use rsa::signature::Verifier as _;
use rsa::traits::PublicKeyParts as _;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::Certificate;

use crate::tpm::{AkCertificate, AkPublic, PublicKey};

/// Google's "EK/AK CA Root" (Google Cloud, 2022–2122): the root of current AK certificates.
pub const GOOGLE_EK_AK_ROOT: &[u8] = include_bytes!("gce_ca/gcp_ek_ak_ca_root.der");
/// Google's older vTPM root, "tpm_ek_v1_cloud_host_root" (2018–2118): AK certificates of
/// instances created before the move to the EK/AK CA.
pub const GOOGLE_TPM_EK_ROOT_1: &[u8] = include_bytes!("gce_ca/tpm_ek_root_1.der");

/// The pinned roots: a chain must end at one of these (compared by subject and checked by
/// signature; their self-signatures are checked by the tests).
const ROOTS: [&[u8]; 2] = [GOOGLE_EK_AK_ROOT, GOOGLE_TPM_EK_ROOT_1];

/// Google's published intermediates (what a leaf's AIA URL serves). Not trusted by themselves:
/// like the evidence's, each must chain to a pinned root. Kept so a guest that cannot fetch the
/// AIA URL still gives a verifiable chain.
const KNOWN_INTERMEDIATES: [&[u8]; 3] = [
    include_bytes!("gce_ca/gcp_ek_ak_ca_intermediate_v3.der"),
    include_bytes!("gce_ca/tpm_ek_intermediate_2.der"),
    include_bytes!("gce_ca/tpm_ek_intermediate_3.der"),
];

/// Longest chain followed (leaf, intermediates, root).
const MAX_DEPTH: usize = 5;

const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
const SHA384_WITH_RSA: &str = "1.2.840.113549.1.1.12";
const ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
const ECDSA_WITH_SHA384: &str = "1.2.840.10045.4.3.3";
const BASIC_CONSTRAINTS: &str = "2.5.29.19";
const KEY_USAGE: &str = "2.5.29.15";

/// Why a Google AK certificate was refused. Each check its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GceAkError {
    /// A certificate does not parse as DER X.509.
    #[error("the {what} certificate of the AK chain does not parse: {reason}")]
    Malformed {
        /// `leaf`, `intermediate` or `root`.
        what: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// No pinned Google root (nor a certificate chaining to one) issued the chain.
    #[error("the AK certificate does not chain to a pinned Google root (EK/AK CA Root, tpm_ek_root_1): no issuer found for {issuer}")]
    UnknownRoot {
        /// The issuer name the chain stopped at.
        issuer: String,
    },
    /// The issuer's signature over a certificate does not verify (a changed byte, or another
    /// key under the same name).
    #[error("the {what} certificate's signature does not verify with its issuer's key ({issuer})")]
    BadSignature {
        /// `leaf` or `intermediate`.
        what: &'static str,
        /// The issuer's name.
        issuer: String,
    },
    /// A certificate of the chain is not valid at the verification time.
    #[error("the {what} certificate of the AK chain is not valid at {now} (valid {not_before} … {not_after}, Unix seconds)")]
    NotValidAt {
        /// `leaf`, `intermediate` or `root`.
        what: &'static str,
        /// The verification time.
        now: u64,
        /// notBefore.
        not_before: u64,
        /// notAfter.
        not_after: u64,
    },
    /// The leaf is not a signing certificate (a CA, or keyUsage without digitalSignature), or an
    /// issuer is not a CA allowed to sign certificates.
    #[error("the {what} certificate may not be used so: {reason}")]
    KeyUsage {
        /// `leaf` or `intermediate`.
        what: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The certified key is not the key that signed the quote.
    #[error("the AK certificate certifies another key than the quoting AK")]
    AkMismatch,
}

/// A certificate with where it sits in the chain (for errors).
struct Cert {
    cert: Certificate,
    what: &'static str,
}

fn parse(der: &[u8], what: &'static str) -> Result<Cert, GceAkError> {
    Certificate::from_der(der)
        .map(|cert| Cert { cert, what })
        .map_err(|e| GceAkError::Malformed {
            what,
            reason: e.to_string(),
        })
}

/// The roots a chain may end at: the pinned ones, and under `cfg(test)` a test's own root
/// ([`tests_support::trust_test_root`]) so swtpm can play a certified vTPM.
fn roots() -> Vec<Vec<u8>> {
    #[allow(unused_mut)]
    let mut roots: Vec<Vec<u8>> = ROOTS.iter().map(|r| r.to_vec()).collect();
    #[cfg(test)]
    tests_support::TEST_ROOTS.with(|t| roots.extend(t.borrow().iter().cloned()));
    roots
}

/// Verifies `cert` (leaf and intermediates from the evidence) at `now` for the quoting `ak`:
/// the chain to a pinned Google root, validity, key usage, and the leaf's key equal to the AK's.
/// Returns the leaf's subject (project, zone and instance, when Google names them).
pub fn verify_ak_certificate(
    cert: &AkCertificate,
    ak: &AkPublic,
    now: u64,
) -> Result<String, GceAkError> {
    verify_with_roots(cert, ak, now, &roots())
}

fn verify_with_roots(
    cert: &AkCertificate,
    ak: &AkPublic,
    now: u64,
    roots: &[Vec<u8>],
) -> Result<String, GceAkError> {
    let leaf = parse(&cert.certificate, "leaf")?;
    let mut pool = Vec::new();
    for der in &cert.intermediates {
        pool.push(parse(der, "intermediate")?);
    }
    for der in KNOWN_INTERMEDIATES {
        pool.push(parse(der, "intermediate")?);
    }
    let roots = roots
        .iter()
        .map(|r| parse(r, "root"))
        .collect::<Result<Vec<_>, _>>()?;
    check_leaf_usage(&leaf.cert)?;
    check_validity(&leaf, now)?;
    let mut current = &leaf;
    for _ in 0..MAX_DEPTH {
        let issuer_name = &current.cert.tbs_certificate.issuer;
        if let Some(root) = roots
            .iter()
            .find(|r| &r.cert.tbs_certificate.subject == issuer_name)
        {
            check_signed_by(current, root)?;
            check_validity(root, now)?;
            if !same_key(&leaf.cert, ak)? {
                return Err(GceAkError::AkMismatch);
            }
            return Ok(leaf.cert.tbs_certificate.subject.to_string());
        }
        let Some(issuer) = pool
            .iter()
            .find(|c| &c.cert.tbs_certificate.subject == issuer_name && !std::ptr::eq(*c, current))
        else {
            break;
        };
        check_signed_by(current, issuer)?;
        check_ca_usage(&issuer.cert)?;
        check_validity(issuer, now)?;
        current = issuer;
    }
    Err(GceAkError::UnknownRoot {
        issuer: current.cert.tbs_certificate.issuer.to_string(),
    })
}

fn check_validity(c: &Cert, now: u64) -> Result<(), GceAkError> {
    let v = &c.cert.tbs_certificate.validity;
    let not_before = v.not_before.to_unix_duration().as_secs();
    let not_after = v.not_after.to_unix_duration().as_secs();
    if now < not_before || now > not_after {
        return Err(GceAkError::NotValidAt {
            what: c.what,
            now,
            not_before,
            not_after,
        });
    }
    Ok(())
}

fn extension<T: for<'a> x509_cert::der::Decode<'a>>(
    cert: &Certificate,
    oid: &str,
) -> Result<Option<T>, ()> {
    for ext in cert.tbs_certificate.extensions.iter().flatten() {
        if ext.extn_id.to_string() == oid {
            return T::from_der(ext.extn_value.as_bytes())
                .map(Some)
                .map_err(|_| ());
        }
    }
    Ok(None)
}

/// The leaf: not a CA; keyUsage, when present, has digitalSignature (the AK signs quotes).
fn check_leaf_usage(cert: &Certificate) -> Result<(), GceAkError> {
    let bad = |reason| GceAkError::KeyUsage {
        what: "leaf",
        reason,
    };
    let bc = extension::<BasicConstraints>(cert, BASIC_CONSTRAINTS)
        .map_err(|()| bad("basicConstraints does not parse"))?;
    if bc.is_some_and(|bc| bc.ca) {
        return Err(bad("it is a CA certificate"));
    }
    let ku = extension::<KeyUsage>(cert, KEY_USAGE).map_err(|()| bad("keyUsage does not parse"))?;
    if ku.is_some_and(|ku| !ku.digital_signature()) {
        return Err(bad("keyUsage lacks digitalSignature"));
    }
    Ok(())
}

/// An intermediate: a CA (basicConstraints) whose keyUsage, when present, has keyCertSign.
fn check_ca_usage(cert: &Certificate) -> Result<(), GceAkError> {
    let bad = |reason| GceAkError::KeyUsage {
        what: "intermediate",
        reason,
    };
    let bc = extension::<BasicConstraints>(cert, BASIC_CONSTRAINTS)
        .map_err(|()| bad("basicConstraints does not parse"))?;
    if !bc.is_some_and(|bc| bc.ca) {
        return Err(bad("it is not a CA certificate"));
    }
    let ku = extension::<KeyUsage>(cert, KEY_USAGE).map_err(|()| bad("keyUsage does not parse"))?;
    if ku.is_some_and(|ku| !ku.key_cert_sign()) {
        return Err(bad("keyUsage lacks keyCertSign"));
    }
    Ok(())
}

/// `subject`'s signature verifies with `issuer`'s key.
fn check_signed_by(subject: &Cert, issuer: &Cert) -> Result<(), GceAkError> {
    let bad = || GceAkError::BadSignature {
        what: subject.what,
        issuer: issuer.cert.tbs_certificate.subject.to_string(),
    };
    let c = &subject.cert;
    if c.tbs_certificate.signature.oid != c.signature_algorithm.oid {
        return Err(bad());
    }
    let tbs = c.tbs_certificate.to_der().map_err(|_| bad())?;
    let signature = c.signature.as_bytes().ok_or_else(bad)?;
    let spki = &issuer.cert.tbs_certificate.subject_public_key_info;
    let spki_der = spki.to_der().map_err(|_| bad())?;
    let key_bytes = spki.subject_public_key.raw_bytes();
    let ok = match c.signature_algorithm.oid.to_string().as_str() {
        alg @ (SHA256_WITH_RSA | SHA384_WITH_RSA) => {
            let key = rsa::RsaPublicKey::from_public_key_der(&spki_der).map_err(|_| bad())?;
            let sig = rsa::pkcs1v15::Signature::try_from(signature).map_err(|_| bad())?;
            if alg == SHA256_WITH_RSA {
                rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key).verify(&tbs, &sig)
            } else {
                rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(key).verify(&tbs, &sig)
            }
            .is_ok()
        }
        ECDSA_WITH_SHA256 => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes).map_err(|_| bad())?;
            p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| key.verify(&tbs, &sig).is_ok())
        }
        ECDSA_WITH_SHA384 => {
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes).map_err(|_| bad())?;
            p384::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| key.verify(&tbs, &sig).is_ok())
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Whether the leaf certifies exactly the AK's key (RSA modulus and exponent, or the P-256
/// point).
fn same_key(leaf: &Certificate, ak: &AkPublic) -> Result<bool, GceAkError> {
    let spki = &leaf.tbs_certificate.subject_public_key_info;
    Ok(match &ak.key {
        PublicKey::Rsa { modulus, exponent } => {
            let der = spki.to_der().map_err(|e| GceAkError::Malformed {
                what: "leaf",
                reason: e.to_string(),
            })?;
            match rsa::RsaPublicKey::from_public_key_der(&der) {
                Ok(key) => {
                    key.n().to_bytes_be() == strip_zeros(modulus)
                        && key.e() == &rsa::BigUint::from(*exponent)
                }
                Err(_) => false,
            }
        }
        PublicKey::EccP256 { x, y } => {
            let mut point = vec![0x04];
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            spki.algorithm.oid.to_string() == "1.2.840.10045.2.1"
                && spki.subject_public_key.raw_bytes() == point.as_slice()
        }
    })
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

#[cfg(test)]
pub(crate) mod tests_support {
    use std::cell::RefCell;

    thread_local! {
        /// Roots a test trusts beside the pinned ones (this thread only).
        pub(crate) static TEST_ROOTS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    /// Trusts `root` (DER) as a Google root on this test's thread.
    pub(crate) fn trust_test_root(root: &[u8]) {
        TEST_ROOTS.with(|t| t.borrow_mut().push(root.to_vec()));
    }

    /// Checks `der`'s signature with its own key.
    pub(crate) fn self_signed(der: &[u8]) -> Result<(), super::GceAkError> {
        let cert = super::parse(der, "root")?;
        super::check_signed_by(&cert, &cert)
    }

    pub(crate) fn verify_with_roots(
        cert: &crate::tpm::AkCertificate,
        ak: &crate::tpm::AkPublic,
        now: u64,
        roots: &[Vec<u8>],
    ) -> Result<String, super::GceAkError> {
        super::verify_with_roots(cert, ak, now, roots)
    }
}
