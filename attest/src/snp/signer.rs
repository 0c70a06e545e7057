//! Which AMD key signed a report, and that key's certificate checked up to AMD's roots.
//!
//! KEY_INFO.SIGNING_KEY selects it: 0 the chip's VCEK (from the verifier or the evidence's
//! certificate table; signed by the generation's ASK; bound to CHIP_ID), 1 a cloud provider's
//! VLEK (from the evidence's table only; signed by the generation's ASVK; not chip-bound, so
//! CHIP_ID is not compared), 7 none. Either certificate must certify the report's REPORTED_TCB
//! and be valid at `now`, as must its ASK/ASVK and the ARK.

use serde::{Deserialize, Serialize};
use sev::certs::snp::{Certificate, Verifiable};
use sev::firmware::guest::AttestationReport;
use x509_cert::der::Decode;

use super::{roots, vcek};
use crate::error::{CertName, SnpError};
use crate::evidence::{CertKind, SnpEvidence};

/// The AMD key that signed a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnpSigningKey {
    /// Versioned Chip Endorsement Key (per chip and TCB), under AMD's ASK.
    Vcek,
    /// Versioned Loaded Endorsement Key (per cloud provider), under AMD's ASVK.
    Vlek,
}

/// The checked signing certificate and the roots it chains to.
pub(crate) struct Endorser {
    pub(crate) key: SnpSigningKey,
    pub(crate) cert: x509_cert::Certificate,
    pub(crate) roots: &'static roots::Roots,
}

/// The signing key the report names (signature algorithm ECDSA P-384 only).
fn signing_key(report: &AttestationReport) -> Result<SnpSigningKey, SnpError> {
    if report.sig_algo != 1 {
        return Err(SnpError::UnsupportedSignatureAlgorithm(report.sig_algo));
    }
    if report.key_info.mask_chip_key() {
        return Err(SnpError::Unsigned);
    }
    match report.key_info.signing_key() {
        0 => Ok(SnpSigningKey::Vcek),
        1 => Ok(SnpSigningKey::Vlek),
        7 => Err(SnpError::Unsigned),
        other => Err(SnpError::UnsupportedSigningKey(other)),
    }
}

fn parse(der: &[u8], name: CertName) -> Result<x509_cert::Certificate, SnpError> {
    x509_cert::Certificate::from_der(der).map_err(|e| SnpError::MalformedCertificate {
        cert: name,
        reason: e.to_string(),
    })
}

/// The report's signing certificate, checked. `vcek_override` (the verifier's VCEK) replaces
/// the evidence's VCEK; a VLEK comes from the evidence only.
pub(crate) fn endorser(
    report: &AttestationReport,
    evidence: &SnpEvidence,
    vcek_override: Option<&[u8]>,
    now: u64,
) -> Result<Endorser, SnpError> {
    let key = signing_key(report)?;
    let (cert, roots, intermediate, name) = match key {
        SnpSigningKey::Vcek => {
            let der = vcek_override
                .or_else(|| evidence.cert(&CertKind::Vcek))
                .ok_or(SnpError::MissingVcek)?;
            let cert = parse(der, CertName::Vcek)?;
            let roots = issuer(&cert, |r| &r.chain.ask).ok_or(SnpError::VcekNotSignedByAmd)?;
            (cert, roots, roots.ask.clone(), CertName::Vcek)
        }
        SnpSigningKey::Vlek => {
            let der = evidence
                .cert(&CertKind::Vlek)
                .ok_or(SnpError::MissingVlek)?;
            let cert = parse(der, CertName::Vlek)?;
            let roots = issuer(&cert, |r| &r.asvk).ok_or(SnpError::VlekNotSignedByAmd)?;
            (cert, roots, roots.asvk.clone().into(), CertName::Vlek)
        }
    };
    let intermediate_name = match key {
        SnpSigningKey::Vcek => CertName::Ask,
        SnpSigningKey::Vlek => CertName::Asvk,
    };
    vcek::check_validity(CertName::Ark, &roots.ark, now)?;
    vcek::check_validity(intermediate_name, &intermediate, now)?;
    vcek::check_validity(name, &cert, now)?;
    vcek::check_tcb(&cert, &report.reported_tcb)?;
    if key == SnpSigningKey::Vcek {
        vcek::check_chip_id(&cert, &report.chip_id)?;
    }
    Ok(Endorser { key, cert, roots })
}

/// The built-in generation whose ASK (or ASVK) signs `cert` (RSA-PSS, checked by `sev`).
pub(crate) fn issuer(
    cert: &x509_cert::Certificate,
    intermediate: impl Fn(&roots::Roots) -> &Certificate,
) -> Option<&'static roots::Roots> {
    let cert = Certificate::from(cert.clone());
    roots::all()
        .ok()?
        .iter()
        .find(|r| (intermediate(r), &cert).verify().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::SnpCert;
    use crate::testing::vectors::*;

    /// The recorded Milan report with KEY_INFO.SIGNING_KEY set to 1 (VLEK): the key selection and
    /// the refusals (the signature would fail too, the bytes changed). A real VLEK-signed report
    /// (AWS) is accepted in `aws_tests.rs`.
    fn vlek_report() -> AttestationReport {
        let mut raw = milan_report();
        raw[0x48] = (raw[0x48] & !0x1c) | (1 << 2);
        super::super::verify::parse(&raw).unwrap()
    }

    fn evidence(certs: Vec<(CertKind, &[u8])>) -> SnpEvidence {
        SnpEvidence {
            report: milan_report(),
            certs: certs
                .into_iter()
                .map(|(kind, der)| SnpCert {
                    kind,
                    der: der.to_vec(),
                })
                .collect(),
            tpm: None,
        }
    }

    fn now() -> u64 {
        snp_now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn a_vlek_signed_report_needs_a_vlek_under_amds_asvk() {
        let report = vlek_report();
        // Only a VCEK (in the table, or from the verifier): not the key that signed.
        let e = evidence(vec![(CertKind::Vcek, MILAN_VCEK)]);
        assert_eq!(
            endorser(&report, &e, Some(MILAN_VCEK), now()).err(),
            Some(SnpError::MissingVlek)
        );
        // A VCEK presented as the VLEK: the ASK signed it, no ASVK did.
        let e = evidence(vec![(CertKind::Vlek, MILAN_VCEK)]);
        assert_eq!(
            endorser(&report, &e, None, now()).err(),
            Some(SnpError::VlekNotSignedByAmd)
        );
    }

    #[test]
    fn a_vcek_signed_report_is_not_endorsed_by_a_vlek_entry() {
        let report = super::super::verify::parse(&milan_report()).unwrap();
        let e = evidence(vec![(CertKind::Vlek, MILAN_VCEK)]);
        assert_eq!(
            endorser(&report, &e, None, now()).err(),
            Some(SnpError::MissingVcek)
        );
        let e = evidence(vec![(CertKind::Vcek, MILAN_VCEK)]);
        let found = endorser(&report, &e, None, now()).ok().unwrap();
        assert_eq!(
            (found.key, found.roots.generation),
            (SnpSigningKey::Vcek, "Milan")
        );
    }
}
