//! Intel PCS (API v4) / PCCS client: the DCAP collateral of a TDX quote, assembled into the
//! [`TdxCollateral`] that `attest`'s TDX verification takes.
//!
//! Requests: `GET /sgx/certification/v4/pckcrl?ca=platform|processor&encoding=der` (header
//! `SGX-PCK-CRL-Issuer-Chain`), `GET /tdx/certification/v4/tcb?fmspc=…` (`TCB-Info-Issuer-Chain`),
//! `GET /tdx/certification/v4/qe/identity` (`SGX-Enclave-Identity-Issuer-Chain`), and the root
//! CA CRL (Intel's certificate host for PCS, `/sgx/certification/v4/rootcacrl` on a PCCS).
//! Checks: each issuer chain ends at the pinned Intel SGX root CA and verifies, each signature
//! (CRLs, TCB info, QE identity) by its chain's leaf, each answer current at `now` (its
//! nextUpdate / issueDate), the TCB info for the quote's FMSPC, and no issuing CA revoked by
//! the root CA CRL.

use dcap_qvl::quote::Quote;

use super::crl::{self, Crl, Signer};
use super::error::CollateralError;
use super::store::Entry;
use super::{x509, CollateralClient, INTEL_PCS_URL, INTEL_ROOT_CA_CRL_URL};
use crate::evidence::TdxCollateral;

const PCK_CRL_CHAIN: &str = "SGX-PCK-CRL-Issuer-Chain";
const TCB_INFO_CHAIN: &str = "TCB-Info-Issuer-Chain";
const TCB_INFO_CHAIN_SGX: &str = "SGX-TCB-Info-Issuer-Chain";
const QE_IDENTITY_CHAIN: &str = "SGX-Enclave-Identity-Issuer-Chain";
/// Certification data type 5: the PCK chain is inside the quote.
const PCK_CERT_CHAIN_IN_QUOTE: u16 = 5;

/// A signed JSON answer (TCB info, QE identity) after its checks.
struct Signed {
    chain: String,
    body: String,
    signature: Vec<u8>,
}

impl CollateralClient {
    fn intel(&self, path: &str) -> (String, String) {
        (
            format!("intel:{path}"),
            format!("{}{path}", self.config.intel_url.trim_end_matches('/')),
        )
    }

    /// The DCAP collateral for `quote` (a TDX DCAP quote carrying its PCK chain), every part
    /// checked at `now`.
    pub async fn tdx_collateral(
        &self,
        quote: &[u8],
        now: u64,
    ) -> Result<TdxCollateral, CollateralError> {
        let parsed = Quote::parse(quote).map_err(|e| CollateralError::malformed("quote", e))?;
        if parsed.inner_cert_type() != PCK_CERT_CHAIN_IN_QUOTE {
            return Err(CollateralError::Unsupported(format!(
                "certification data type {} (fetching the PCK certificate by encrypted PPID is \
                 not implemented; type 5 carries it)",
                parsed.inner_cert_type()
            )));
        }
        let fmspc = dcap_qvl::intel::quote_fmspc(&parsed)
            .map_err(|e| CollateralError::malformed("quote PCK certificate (FMSPC)", e))?;
        let ca = dcap_qvl::intel::quote_ca(&parsed)
            .map_err(|e| CollateralError::malformed("quote PCK certificate (CA)", e))?
            .as_id_str();
        let fmspc = hex::encode_upper(fmspc);

        let root_crl = self.intel_root_ca_crl(now).await?;
        let (pck_crl_issuer_chain, pck_crl) = self.intel_pck_crl(ca, &root_crl, now).await?;
        let tcb = self
            .intel_signed(
                &format!("/tdx/certification/v4/tcb?fmspc={fmspc}"),
                &[TCB_INFO_CHAIN, TCB_INFO_CHAIN_SGX],
                "tcbInfo",
                Some(&fmspc),
                &root_crl,
                now,
            )
            .await?;
        let qe = self
            .intel_signed(
                "/tdx/certification/v4/qe/identity",
                &[QE_IDENTITY_CHAIN],
                "enclaveIdentity",
                None,
                &root_crl,
                now,
            )
            .await?;
        Ok(TdxCollateral {
            pck_crl_issuer_chain,
            root_ca_crl: root_crl.1,
            pck_crl,
            tcb_info_issuer_chain: tcb.chain,
            tcb_info: tcb.body,
            tcb_info_signature: tcb.signature,
            qe_identity_issuer_chain: qe.chain,
            qe_identity: qe.body,
            qe_identity_signature: qe.signature,
            pck_certificate_chain: None,
        })
    }

    /// The Intel SGX root CA's CRL (DER), signed by the pinned root, current at `now`.
    async fn intel_root_ca_crl(&self, now: u64) -> Result<(Crl, Vec<u8>), CollateralError> {
        const PATH: &str = "/sgx/certification/v4/rootcacrl";
        let (key, mut url) = self.intel(PATH);
        if self.config.intel_url.trim_end_matches('/') == INTEL_PCS_URL {
            url = INTEL_ROOT_CA_CRL_URL.into();
        }
        let root = x509::parse_certificate(x509::INTEL_SGX_ROOT_CA, "Intel SGX root CA")?;
        let what = "Intel root CA CRL";
        let check = |entry: &Entry| -> Result<(Crl, Vec<u8>), CollateralError> {
            // A PCCS sends it hex-encoded, Intel DER.
            let der = std::str::from_utf8(&entry.body)
                .ok()
                .and_then(|t| hex::decode(t.trim()).ok())
                .unwrap_or_else(|| entry.body.clone());
            let crl = crl::check(&der, Signer::P256(x509::public_key_bytes(&root)), now, what)?;
            Ok((crl, der))
        };
        let entry = self
            .answer(key, url, &[], now, |e| {
                check(e).map(|c| Some(c.0.next_update))
            })
            .await?;
        check(&entry)
    }

    /// The PCK CRL of `ca` with its issuer chain.
    async fn intel_pck_crl(
        &self,
        ca: &str,
        root_crl: &(Crl, Vec<u8>),
        now: u64,
    ) -> Result<(String, Vec<u8>), CollateralError> {
        let (key, url) = self.intel(&format!(
            "/sgx/certification/v4/pckcrl?ca={ca}&encoding=der"
        ));
        let what = format!("PCK CRL ({ca})");
        let check = |entry: &Entry| -> Result<(String, Crl), CollateralError> {
            let chain = entry.header(PCK_CRL_CHAIN).ok_or_else(|| {
                CollateralError::malformed(&what, format!("no {PCK_CRL_CHAIN} header"))
            })?;
            let certs = x509::verify_intel_chain(chain, now, &what)?;
            not_revoked(&certs, &root_crl.0, &what)?;
            let crl = crl::check(
                &entry.body,
                Signer::P256(x509::public_key_bytes(&certs[0])),
                now,
                &what,
            )?;
            Ok((chain.to_owned(), crl))
        };
        let entry = self
            .answer(key, url, &[PCK_CRL_CHAIN], now, |e| {
                check(e).map(|c| Some(c.1.next_update))
            })
            .await?;
        Ok((check(&entry)?.0, entry.body))
    }

    /// A signed JSON answer: `{"<member>": {…}, "signature": "<hex r‖s>"}` with its issuer
    /// chain in one of `headers`.
    async fn intel_signed(
        &self,
        path: &str,
        headers: &[&str],
        member: &str,
        fmspc: Option<&str>,
        root_crl: &(Crl, Vec<u8>),
        now: u64,
    ) -> Result<Signed, CollateralError> {
        let (key, url) = self.intel(path);
        let what = member.to_owned();
        let check = |entry: &Entry| -> Result<(Signed, u64), CollateralError> {
            let chain = headers
                .iter()
                .find_map(|h| entry.header(h))
                .ok_or_else(|| {
                    CollateralError::malformed(&what, format!("no {} header", headers[0]))
                })?;
            let certs = x509::verify_intel_chain(chain, now, &what)?;
            not_revoked(&certs, &root_crl.0, &what)?;
            let text = std::str::from_utf8(&entry.body)
                .map_err(|e| CollateralError::malformed(&what, e))?;
            let (body, signature) = split_signed(text, member)?;
            x509::verify_p256(
                x509::public_key_bytes(&certs[0]),
                body.as_bytes(),
                &signature,
                false,
                &what,
            )?;
            let fields: serde_json::Value =
                serde_json::from_str(body).map_err(|e| CollateralError::malformed(&what, e))?;
            let date = |name: &str| {
                fields
                    .get(name)
                    .and_then(|v| v.as_str())
                    .and_then(parse_rfc3339)
                    .ok_or_else(|| CollateralError::malformed(&what, format!("no valid {name}")))
            };
            let (issue, next_update) = (date("issueDate")?, date("nextUpdate")?);
            if now < issue || now > next_update {
                return Err(CollateralError::Stale {
                    what: what.clone(),
                    next_update,
                    now,
                });
            }
            if let Some(expected) = fmspc {
                let got = fields.get("fmspc").and_then(|v| v.as_str()).unwrap_or("");
                if !got.eq_ignore_ascii_case(expected) {
                    return Err(CollateralError::malformed(
                        &what,
                        format!("for FMSPC {got:?}, not {expected}"),
                    ));
                }
            }
            let signed = Signed {
                chain: chain.to_owned(),
                body: body.to_owned(),
                signature,
            };
            Ok((signed, next_update))
        };
        let entry = self
            .answer(key, url, headers, now, |e| check(e).map(|c| Some(c.1)))
            .await?;
        Ok(check(&entry)?.0)
    }
}

/// No certificate of an issuer chain but the root is in the root CA's CRL.
fn not_revoked(
    certs: &[x509_cert::Certificate],
    root_crl: &Crl,
    what: &str,
) -> Result<(), CollateralError> {
    for cert in &certs[..certs.len().saturating_sub(1)] {
        root_crl.check_not_revoked(
            cert.tbs_certificate.serial_number.as_bytes(),
            &format!("{what} issuer"),
        )?;
    }
    Ok(())
}

/// The exact text of `member`'s value (what Intel signed) and the decoded `signature`.
fn split_signed<'a>(text: &'a str, member: &str) -> Result<(&'a str, Vec<u8>), CollateralError> {
    let bad = |reason: &str| CollateralError::malformed(member, reason);
    let whole: serde_json::Value =
        serde_json::from_str(text).map_err(|e| CollateralError::malformed(member, e))?;
    let signature = whole
        .get("signature")
        .and_then(|s| s.as_str())
        .and_then(|s| hex::decode(s).ok())
        .ok_or_else(|| bad("no hex signature"))?;
    let quoted = format!("\"{member}\"");
    let at = text.find(&quoted).ok_or_else(|| bad("member not found"))?;
    let rest = text[at + quoted.len()..].trim_start();
    let rest = rest
        .strip_prefix(':')
        .ok_or_else(|| bad("no ':'"))?
        .trim_start();
    let start = text.len() - rest.len();
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
    let value = stream
        .next()
        .ok_or_else(|| bad("no value"))?
        .map_err(|e| CollateralError::malformed(member, e))?;
    // The text found must be the member's value, not a look-alike elsewhere.
    if whole.get(member) != Some(&value) {
        return Err(bad("member text does not match its parsed value"));
    }
    Ok((&text[start..start + stream.byte_offset()], signature))
}

/// `YYYY-MM-DDTHH:MM:SSZ` (what Intel sends) → unix seconds.
pub(crate) fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_like_intel_writes_them() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2025-07-19T10:01:18Z"), Some(1_752_919_278));
        assert_eq!(parse_rfc3339("2024-02-29T12:00:00Z"), Some(1_709_208_000));
        assert_eq!(parse_rfc3339("2025-07-19 10:01:18"), None);
    }

    #[test]
    fn the_signed_member_is_taken_verbatim() {
        let text = r#"{"tcbInfo":{"a": 1,"b":"x"} ,"signature":"0aff"}"#;
        let (body, sig) = split_signed(text, "tcbInfo").unwrap();
        assert_eq!(body, r#"{"a": 1,"b":"x"}"#);
        assert_eq!(sig, vec![0x0a, 0xff]);
        // A nested look-alike before the member is refused, not taken.
        let text = r#"{"signature":"00","x":{"tcbInfo":{}},"tcbInfo":{"a":2}}"#;
        assert!(split_signed(text, "tcbInfo").is_err());
    }
}
