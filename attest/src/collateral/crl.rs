//! Certificate revocation lists: signature by the issuer, thisUpdate ≤ now ≤ nextUpdate, and
//! whether a serial is listed.

use x509_cert::crl::CertificateList;
use x509_cert::der::{Decode as _, Encode as _};

use super::error::CollateralError;
use super::x509;

/// Who signs a CRL.
pub(crate) enum Signer<'a> {
    /// RSA-PSS/SHA-384 by this key (DER SubjectPublicKeyInfo): AMD's ARK.
    RsaPss(&'a [u8]),
    /// ECDSA P-256 by this key (SEC1 point): Intel's PCK platform/processor CA or root CA.
    P256(&'a [u8]),
}

/// A checked CRL.
#[derive(Debug)]
pub(crate) struct Crl {
    /// nextUpdate, unix seconds.
    pub(crate) next_update: u64,
    revoked: Vec<Vec<u8>>,
}

fn strip(serial: &[u8]) -> &[u8] {
    let zeros = serial.iter().take_while(|b| **b == 0).count();
    &serial[zeros.min(serial.len().saturating_sub(1))..]
}

/// Parses `der`, checks its signature by `signer` and its window at `now`.
pub(crate) fn check(
    der: &[u8],
    signer: Signer<'_>,
    now: u64,
    what: &str,
) -> Result<Crl, CollateralError> {
    let crl = CertificateList::from_der(der).map_err(|e| CollateralError::malformed(what, e))?;
    let tbs = crl
        .tbs_cert_list
        .to_der()
        .map_err(|e| CollateralError::malformed(what, e))?;
    let signature = crl
        .signature
        .as_bytes()
        .ok_or_else(|| CollateralError::malformed(what, "signature is not whole bytes"))?;
    match signer {
        Signer::RsaPss(spki) => x509::verify_rsa_pss_sha384(spki, &tbs, signature, what)?,
        Signer::P256(key) => x509::verify_p256(key, &tbs, signature, true, what)?,
    }
    let this_update = crl.tbs_cert_list.this_update.to_unix_duration().as_secs();
    let next_update = crl
        .tbs_cert_list
        .next_update
        .ok_or_else(|| CollateralError::malformed(what, "no nextUpdate"))?
        .to_unix_duration()
        .as_secs();
    if now < this_update || now > next_update {
        return Err(CollateralError::Stale {
            what: what.into(),
            next_update,
            now,
        });
    }
    let revoked = crl
        .tbs_cert_list
        .revoked_certificates
        .iter()
        .flatten()
        .map(|r| strip(r.serial_number.as_bytes()).to_vec())
        .collect();
    Ok(Crl {
        next_update,
        revoked,
    })
}

impl Crl {
    /// Refuses `serial` (big-endian bytes) if the CRL lists it.
    pub(crate) fn check_not_revoked(
        &self,
        serial: &[u8],
        what: &str,
    ) -> Result<(), CollateralError> {
        let serial = strip(serial);
        if self.revoked.iter().any(|r| r == serial) {
            return Err(CollateralError::Revoked {
                serial: hex::encode(serial),
                what: what.into(),
            });
        }
        Ok(())
    }
}
