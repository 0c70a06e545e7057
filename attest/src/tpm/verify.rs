//! Checking a TPM quote: a pure function of (attestation bytes, signature, key, nonce, PCR
//! values); no TPM needed. Each failed check is its own [`TpmError`].

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::attest::QuoteInfo;
use super::error::TpmError;
use super::public::PublicKey;
use super::types::{TpmSignature, ALG_SHA256};

/// What a verified quote says: the PCR values the TPM vouched for, and the quote's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotedPcrs {
    /// SHA-256 bank values of the quoted PCRs (exactly the quote's selection).
    pub pcrs: BTreeMap<u32, [u8; 32]>,
    /// The parsed quote (signer, clock, firmware version, selection, digest).
    pub quote: QuoteInfo,
}

/// Verifies a quote, in this order: the attestation structure parses and is a TPM-generated
/// quote; `signature` over it verifies with `key` (ECDSA P-256 or RSASSA-PKCS1-v1_5, both with
/// SHA-256); its extraData equals `nonce`; its selection is the SHA-256 bank; and SHA-256 over
/// `pcrs` in selection order equals its pcrDigest. `pcrs` must hold exactly the quoted PCRs.
///
/// Whether `key` is trusted (bound to hardware evidence, or pinned by a policy) is the caller's
/// decision; so is what the PCR values must be.
pub fn verify_quote(
    attest: &[u8],
    signature: &TpmSignature,
    key: &PublicKey,
    nonce: &[u8],
    pcrs: &BTreeMap<u32, [u8; 32]>,
) -> Result<QuotedPcrs, TpmError> {
    let quote = QuoteInfo::parse(attest)?;
    verify_signature(attest, signature, key)?;
    if quote.extra_data != nonce {
        return Err(TpmError::NonceMismatch {
            expected: hex::encode(nonce),
            got: hex::encode(&quote.extra_data),
        });
    }
    let mut hasher = Sha256::new();
    let mut quoted = BTreeMap::new();
    for bank in &quote.pcr_select {
        if bank.hash != ALG_SHA256 {
            return Err(TpmError::UnsupportedAlgorithm {
                what: "PCR bank",
                alg: bank.hash,
            });
        }
        for &index in &bank.pcrs {
            let value = pcrs.get(&index).ok_or(TpmError::PcrMissing(index))?;
            hasher.update(value);
            quoted.insert(index, *value);
        }
    }
    if let Some(&extra) = pcrs.keys().find(|i| !quoted.contains_key(i)) {
        return Err(TpmError::PcrNotQuoted(extra));
    }
    if hasher.finalize().as_slice() != quote.pcr_digest.as_slice() {
        return Err(TpmError::PcrDigestMismatch {
            quoted: hex::encode(&quote.pcr_digest),
        });
    }
    Ok(QuotedPcrs {
        pcrs: quoted,
        quote,
    })
}

/// Verifies `signature` over `message` with `key`.
pub fn verify_signature(
    message: &[u8],
    signature: &TpmSignature,
    key: &PublicKey,
) -> Result<(), TpmError> {
    match (key, signature) {
        (PublicKey::EccP256 { x, y }, TpmSignature::Ecdsa { hash, r, s }) => {
            require_sha256(*hash)?;
            verify_ecdsa(message, x, y, r, s)
        }
        (PublicKey::Rsa { modulus, exponent }, TpmSignature::RsaSsa { hash, sig }) => {
            require_sha256(*hash)?;
            verify_rsassa(message, modulus, *exponent, sig)
        }
        (_, sig) => Err(TpmError::SignatureKeyMismatch {
            sig_alg: sig.sig_alg(),
        }),
    }
}

fn require_sha256(hash: u16) -> Result<(), TpmError> {
    if hash == ALG_SHA256 {
        Ok(())
    } else {
        Err(TpmError::UnsupportedAlgorithm {
            what: "signature hash",
            alg: hash,
        })
    }
}

fn verify_ecdsa(
    message: &[u8],
    x: &[u8; 32],
    y: &[u8; 32],
    r: &[u8],
    s: &[u8],
) -> Result<(), TpmError> {
    use p256::ecdsa::signature::Verifier as _;
    use p256::ecdsa::{Signature, VerifyingKey};

    let point = p256::EncodedPoint::from_affine_coordinates(x.into(), y.into(), false);
    let key = VerifyingKey::from_encoded_point(&point)
        .map_err(|e| TpmError::BadPublicKey(format!("P-256 point: {e}")))?;
    let (Some(r), Some(s)) = (scalar(r), scalar(s)) else {
        return Err(TpmError::BadSignature);
    };
    let sig = Signature::from_scalars(r, s).map_err(|_| TpmError::BadSignature)?;
    key.verify(message, &sig)
        .map_err(|_| TpmError::BadSignature)
}

/// An ECDSA scalar left-padded to 32 bytes, or `None` when longer.
fn scalar(bytes: &[u8]) -> Option<[u8; 32]> {
    if bytes.len() > 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(bytes);
    Some(out)
}

fn verify_rsassa(
    message: &[u8],
    modulus: &[u8],
    exponent: u32,
    sig: &[u8],
) -> Result<(), TpmError> {
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier as _;
    use rsa::{BigUint, RsaPublicKey};

    let key = RsaPublicKey::new(BigUint::from_bytes_be(modulus), BigUint::from(exponent))
        .map_err(|e| TpmError::BadPublicKey(format!("RSA: {e}")))?;
    let sig = Signature::try_from(sig).map_err(|_| TpmError::BadSignature)?;
    VerifyingKey::<Sha256>::new(key)
        .verify(message, &sig)
        .map_err(|_| TpmError::BadSignature)
}
