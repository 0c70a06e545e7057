//! AMD Key Distribution Service client (AMD "VCEK Certificate and KDS Interface Specification"
//! #57230): the VCEK of a chip at a TCB, the ASK/ASVK + ARK chain and the CRL of a product.
//!
//! Checks: a VCEK is signed by the product's built-in ASK and certifies the requested hwID and
//! TCB; a chain is byte for byte the built-in ARK and ASK/ASVK; the CRL is
//! signed (RSA-PSS) by the built-in ARK, current at `now`, and lists neither the ASK nor the
//! VCEK.

use sev::certs::snp::{Certificate as SevCertificate, Verifiable};
use sev::firmware::host::TcbVersion;
use x509_cert::der::Encode as _;

use super::crl::{self, Crl, Signer};
use super::error::CollateralError;
use super::{x509, CollateralClient};
use crate::snp::roots;
use crate::snp::SnpTcb;

/// An AMD EPYC generation, as KDS names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AmdProduct {
    /// EPYC 7003.
    Milan,
    /// EPYC 9004/8004.
    Genoa,
    /// EPYC 9005.
    Turin,
}

impl AmdProduct {
    /// KDS's name.
    pub fn name(self) -> &'static str {
        match self {
            AmdProduct::Milan => "Milan",
            AmdProduct::Genoa => "Genoa",
            AmdProduct::Turin => "Turin",
        }
    }

    fn roots(self) -> Result<&'static roots::Roots, CollateralError> {
        roots::all()
            .map_err(|e| CollateralError::Unsupported(e.to_string()))?
            .iter()
            .find(|r| r.generation == self.name())
            .ok_or_else(|| CollateralError::Unsupported(format!("no AMD roots for {self:?}")))
    }

    /// The products a report may come from: from CPUID family/model (report version 3 and
    /// later), else from CHIP_ID's form (Turin's 8 bytes) or Milan then Genoa.
    fn candidates(report: &sev::firmware::guest::AttestationReport) -> Vec<AmdProduct> {
        if let (Some(family), Some(model)) = (report.cpuid_fam_id, report.cpuid_mod_id) {
            return match sev::Generation::identify_cpu(family, model) {
                Ok(sev::Generation::Milan) => vec![AmdProduct::Milan],
                Ok(sev::Generation::Genoa) => vec![AmdProduct::Genoa],
                Ok(sev::Generation::Turin) => vec![AmdProduct::Turin],
                _ => Vec::new(),
            };
        }
        if report.chip_id[8..].iter().all(|b| *b == 0) {
            vec![AmdProduct::Turin]
        } else {
            vec![AmdProduct::Milan, AmdProduct::Genoa]
        }
    }
}

/// Which AMD signing chain: the VCEK's (ASK) or the VLEK's (ASVK).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmdSigningKey {
    /// Versioned Chip Endorsement Key, signed by the ASK.
    Vcek,
    /// Versioned Loaded Endorsement Key (cloud providers), signed by the ASVK.
    Vlek,
}

impl AmdSigningKey {
    fn path(self) -> &'static str {
        match self {
            AmdSigningKey::Vcek => "vcek",
            AmdSigningKey::Vlek => "vlek",
        }
    }
}

/// A checked ASK (or ASVK) + ARK pair as KDS serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmdCertChain {
    /// The ASK or ASVK (DER).
    pub ask: Vec<u8>,
    /// The ARK (DER), identical to the built-in one.
    pub ark: Vec<u8>,
}

fn hwid(product: AmdProduct, chip_id: &[u8; 64]) -> String {
    match product {
        AmdProduct::Turin => hex::encode(&chip_id[..8]),
        _ => hex::encode(chip_id),
    }
}

fn tcb_query(product: AmdProduct, tcb: &SnpTcb) -> String {
    let common = format!(
        "blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
        tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode
    );
    match product {
        AmdProduct::Turin => format!("fmcSPL={:02}&{common}", tcb.fmc.unwrap_or(0)),
        _ => common,
    }
}

fn serial(cert: &x509_cert::Certificate) -> &[u8] {
    cert.tbs_certificate.serial_number.as_bytes()
}

impl CollateralClient {
    fn amd(&self, path: &str) -> (String, String) {
        (
            format!("amd:{path}"),
            format!("{}{path}", self.config.amd_url.trim_end_matches('/')),
        )
    }

    /// The VCEK (DER) of `chip_id` at `tcb` for `product`, checked: signed by the product's
    /// built-in ASK, valid at `now`, certifying exactly this hwID and TCB. Cached for ever.
    pub async fn vcek(
        &self,
        product: AmdProduct,
        chip_id: &[u8; 64],
        tcb: &SnpTcb,
        now: u64,
    ) -> Result<Vec<u8>, CollateralError> {
        let roots = product.roots()?;
        let path = format!(
            "/vcek/v1/{}/{}?{}",
            product.name(),
            hwid(product, chip_id),
            tcb_query(product, tcb)
        );
        let (key, url) = self.amd(&path);
        let reported = TcbVersion {
            fmc: tcb.fmc,
            bootloader: tcb.bootloader,
            tee: tcb.tee,
            snp: tcb.snp,
            microcode: tcb.microcode,
        };
        let what = format!("{} VCEK", product.name());
        let entry = self
            .answer(key, url, &[], now, |entry| {
                let cert = x509::parse_certificate(&entry.body, &what)?;
                (&roots.chain.ask, &SevCertificate::from(cert.clone()))
                    .verify()
                    .map_err(|_| CollateralError::bad_signature(&what))?;
                x509::check_validity(&cert, now, &what)?;
                crate::snp::vcek::check_tcb(&cert, &reported)
                    .and_then(|()| crate::snp::vcek::check_chip_id(&cert, chip_id))
                    .map_err(|e| CollateralError::malformed(&what, e))?;
                Ok(None)
            })
            .await?;
        Ok(entry.body)
    }

    /// The ASK (or ASVK) + ARK chain of `product` as KDS serves it: both certificates must be
    /// byte for byte the built-in ones (the ASVKs are AMD's published certificates, see
    /// `snp/asvk/`), so a mirror cannot swap in another chain, nor the VCEK chain for the VLEK's.
    pub async fn amd_cert_chain(
        &self,
        product: AmdProduct,
        key_kind: AmdSigningKey,
        now: u64,
    ) -> Result<AmdCertChain, CollateralError> {
        let roots = product.roots()?;
        let path = format!("/{}/v1/{}/cert_chain", key_kind.path(), product.name());
        let (key, url) = self.amd(&path);
        let what = format!("{} {} cert_chain", product.name(), key_kind.path());
        let der = |cert: &x509_cert::Certificate| {
            cert.to_der()
                .map_err(|e| CollateralError::Unsupported(e.to_string()))
        };
        let builtin_ark = der(&roots.ark)?;
        let builtin_ask = match key_kind {
            AmdSigningKey::Vcek => der(&roots.ask)?,
            AmdSigningKey::Vlek => der(&roots.asvk.clone().into())?,
        };
        let check = |entry: &super::Entry| -> Result<AmdCertChain, CollateralError> {
            let pem = std::str::from_utf8(&entry.body)
                .map_err(|e| CollateralError::malformed(&what, e))?;
            let ders = x509::pem_certificates(pem, &what)?;
            let [ask, ark] = ders.as_slice() else {
                return Err(CollateralError::malformed(
                    &what,
                    "expected two certificates",
                ));
            };
            if *ark != builtin_ark || *ask != builtin_ask {
                return Err(CollateralError::bad_signature(format!(
                    "{what} (not AMD's built-in certificates)"
                )));
            }
            Ok(AmdCertChain {
                ask: ask.clone(),
                ark: ark.clone(),
            })
        };
        let entry = self
            .answer(key, url, &[], now, |e| check(e).map(|_| None))
            .await?;
        check(&entry)
    }

    /// The CRL of `product`'s ARK, checked: RSA-PSS signature by the built-in ARK, current at
    /// `now`. Cached until its nextUpdate.
    pub(crate) async fn amd_crl(
        &self,
        product: AmdProduct,
        now: u64,
    ) -> Result<Crl, CollateralError> {
        let roots = product.roots()?;
        let signer = self.amd_crl_signer_spki(roots)?;
        let path = format!("/vcek/v1/{}/crl", product.name());
        let (key, url) = self.amd(&path);
        let what = format!("{} CRL", product.name());
        let entry = self
            .answer(key, url, &[], now, |entry| {
                crl::check(&entry.body, Signer::RsaPss(&signer), now, &what)
                    .map(|c| Some(c.next_update))
            })
            .await?;
        crl::check(&entry.body, Signer::RsaPss(&signer), now, &what)
    }

    fn amd_crl_signer_spki(&self, roots: &roots::Roots) -> Result<Vec<u8>, CollateralError> {
        #[cfg(test)]
        if let Some(spki) = &self.amd_crl_signer {
            return Ok(spki.clone());
        }
        x509::spki_der(&roots.ark, "AMD ARK")
    }

    /// The VCEK for a raw SNP report: its chip, REPORTED_TCB and product; then the product's
    /// CRL, which must list neither the built-in ASK nor the VCEK.
    pub(crate) async fn vcek_for_report(
        &self,
        raw: &[u8],
        now: u64,
    ) -> Result<Vec<u8>, CollateralError> {
        let report = crate::snp::verify::parse(raw)
            .map_err(|e| CollateralError::malformed("SNP report", e))?;
        if report.key_info.signing_key() != 0 {
            return Err(CollateralError::Unsupported(
                "the report is not signed by a VCEK (a VLEK comes with the evidence)".into(),
            ));
        }
        let tcb = SnpTcb::from(report.reported_tcb);
        let mut last = CollateralError::Unsupported("unknown processor generation".into());
        for product in AmdProduct::candidates(&report) {
            match self.vcek(product, &report.chip_id, &tcb, now).await {
                Ok(vcek) => {
                    let crl = self.amd_crl(product, now).await?;
                    crl.check_not_revoked(serial(&product.roots()?.ask), "ASK")?;
                    let cert = x509::parse_certificate(&vcek, "VCEK")?;
                    crl.check_not_revoked(serial(&cert), "VCEK")?;
                    return Ok(vcek);
                }
                // Milan or Genoa, for a v2 report: KDS answers 404/400 for the other one.
                Err(
                    e @ (CollateralError::NotFound { .. }
                    | CollateralError::Http { status: 400, .. }),
                ) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }
}
