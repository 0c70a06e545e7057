//! TPM evidence: a quote over PCRs whose nonce is bound to the runner's 64-byte report_data,
//! the AK that signed it, the PCR values and (optionally) the TPM event log to replay them.
//! Collecting it needs a TPM; verifying it is a pure function.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::client::{Hierarchy, Tpm};
use super::error::TpmError;
use super::public::AkPublic;
use super::transport::Transport;
use super::types::{PcrSelection, TpmSignature};
use super::verify::{verify_quote, QuotedPcrs};
use crate::encoding::b64;

/// Domain of the quote nonce: `nonce = SHA-256(TPM_NONCE_DOMAIN ‖ report_data)`.
pub const TPM_NONCE_DOMAIN: &[u8] = b"smart-worker/attest/tpm-nonce/v1";

/// The quote's qualifyingData for a report_data. A TPM's qualifyingData holds at most one
/// digest of its largest hash (32 bytes on SHA-256-only TPMs), so the 64-byte report_data is
/// hashed; the domain keeps this hash apart from any other use of report_data.
pub fn tpm_nonce(report_data: &[u8; 64]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(TPM_NONCE_DOMAIN);
    h.update(report_data);
    h.finalize().into()
}

/// Where the attestation key comes from when collecting evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AkSource {
    /// Our fixed ECC P-256 template, created as a primary key under a hierarchy (flushed after).
    Primary(Hierarchy),
    /// A persistent key (Azure's vTPM AK at [`super::AZURE_AK_HANDLE`]).
    Persistent(u32),
    /// A primary key under the endorsement hierarchy from the TPMT_PUBLIC template in this
    /// (owner-readable) NV index: Google's AK ([`super::GCE_AK_TEMPLATE_INDEX_ECC`] / `_RSA`).
    NvTemplate(u32),
}

/// TPM evidence, as JSON (binary fields standard base64, PCR values lowercase hex).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmEvidence {
    /// The attestation key's TPM2B_PUBLIC.
    #[serde(with = "b64")]
    pub ak_public: Vec<u8>,
    /// The TPMS_ATTEST the TPM signed.
    #[serde(with = "b64")]
    pub quote: Vec<u8>,
    /// The TPMT_SIGNATURE over `quote`.
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
    /// SHA-256 bank values of the quoted PCRs: index → 64 hex digits.
    #[serde(with = "pcr_map")]
    pub pcrs: BTreeMap<u32, String>,
    /// The TPM event log (TCG PC Client, crypto-agile), raw bytes, when the platform has one.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64_opt")]
    pub event_log: Option<Vec<u8>>,
    /// The cloud's certificate for the AK, when the vTPM has one (Google Compute Engine: NV
    /// index 0x01c10000 / 0x01c10002), with the intermediates the guest has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ak_cert: Option<AkCertificate>,
}

/// A certificate for the attestation key and intermediates towards its issuer's root (DER,
/// standard base64 in JSON). Verified by the verifier against roots it pins, never these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AkCertificate {
    /// The AK's certificate.
    #[serde(with = "b64")]
    pub certificate: Vec<u8>,
    /// Intermediates, leaf's issuer first (may be empty: the verifier also knows the cloud's
    /// published intermediates).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "b64_vec")]
    pub intermediates: Vec<Vec<u8>>,
}

/// What a verified TPM quote vouches for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedTpmQuote {
    /// The attestation key (the caller decides whether it is trusted).
    pub ak: AkPublic,
    /// Its TPM name (nameAlg ‖ digest of the public area): what a policy pins.
    pub ak_name: Vec<u8>,
    /// The quoted PCR values and the quote's fields.
    pub quoted: QuotedPcrs,
}

impl TpmEvidence {
    /// Collects evidence from a TPM: the AK from `ak`, a quote over `selection` (SHA-256 bank)
    /// with [`tpm_nonce`]`(report_data)`, and the PCR values. PCR values are read after the
    /// quote; if a PCR was extended in between (they no longer hash to the quote's digest), it
    /// tries again, up to three times.
    pub fn collect<T: Transport>(
        tpm: &mut Tpm<T>,
        ak: AkSource,
        report_data: &[u8; 64],
        selection: &PcrSelection,
        event_log: Option<Vec<u8>>,
    ) -> Result<Self, TpmError> {
        let (handle, public, transient) = match ak {
            AkSource::Primary(h) => {
                let (handle, public) = tpm.create_primary_ak(h)?;
                (handle, public, true)
            }
            AkSource::Persistent(handle) => (handle, tpm.read_public(handle)?, false),
            AkSource::NvTemplate(index) => {
                let template = tpm.nv_read(super::NvAuth::Owner, index)?;
                let (handle, public) =
                    tpm.create_primary_from(Hierarchy::Endorsement, &template)?;
                (handle, public, true)
            }
        };
        let result = Self::quote_with(tpm, handle, &public, report_data, selection, event_log);
        if transient {
            let flushed = tpm.flush_context(handle);
            let evidence = result?;
            flushed?;
            Ok(evidence)
        } else {
            result
        }
    }

    fn quote_with<T: Transport>(
        tpm: &mut Tpm<T>,
        handle: u32,
        public: &AkPublic,
        report_data: &[u8; 64],
        selection: &PcrSelection,
        event_log: Option<Vec<u8>>,
    ) -> Result<Self, TpmError> {
        let nonce = tpm_nonce(report_data);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (attest, signature) = tpm.quote(handle, &nonce, selection)?;
            let pcrs = tpm.pcr_read(selection)?;
            match verify_quote(&attest, &signature, &public.key, &nonce, &pcrs) {
                Err(TpmError::PcrDigestMismatch { .. }) if attempt < 3 => continue,
                Err(e) => return Err(e),
                Ok(_) => {
                    return Ok(Self {
                        ak_public: public.to_tpm2b()?,
                        quote: attest,
                        signature: signature.to_bytes()?,
                        pcrs: pcrs.iter().map(|(i, v)| (*i, hex::encode(v))).collect(),
                        event_log,
                        ak_cert: None,
                    })
                }
            }
        }
    }

    /// The PCR values as bytes.
    pub fn pcr_values(&self) -> Result<BTreeMap<u32, [u8; 32]>, TpmError> {
        self.pcrs
            .iter()
            .map(|(&index, text)| {
                crate::encoding::parse::<32>(text)
                    .map(|v| (index, v))
                    .map_err(|reason| TpmError::BadPcrValue { index, reason })
            })
            .collect()
    }
}

/// Verifies TPM evidence against the report_data the verifier expects (the same binding of
/// keys, nonce and context as the hardware evidence): the AK is a restricted signing key, its
/// signature over the quote verifies, the quote's nonce is [`tpm_nonce`]`(expected)`, and the PCR
/// values hash to the quoted digest. Does not decide whether the AK is trusted, nor replay the
/// event log: see attest/README.md, "TPM evidence".
pub fn verify_tpm_quote(
    evidence: &TpmEvidence,
    expected_report_data: &[u8; 64],
) -> Result<VerifiedTpmQuote, TpmError> {
    let ak = AkPublic::from_tpm2b(&evidence.ak_public)?;
    ak.check_attestation_key()?;
    let signature = TpmSignature::parse(&evidence.signature)?;
    let pcrs = evidence.pcr_values()?;
    let nonce = tpm_nonce(expected_report_data);
    let quoted = verify_quote(&evidence.quote, &signature, &ak.key, &nonce, &pcrs)?;
    Ok(VerifiedTpmQuote {
        ak_name: ak.name()?,
        ak,
        quoted,
    })
}

/// PCR index → value, the indexes as JSON object keys (strings). Read through string keys so the
/// map also parses where serde buffers it (inside the evidence envelope's tagged, flattened
/// body, where keys stay strings).
mod pcr_map {
    use std::collections::BTreeMap;

    use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<u32, String>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        map.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<u32, String>, D::Error> {
        BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| {
                k.parse::<u32>()
                    .map(|k| (k, v))
                    .map_err(|_| D::Error::custom(format!("PCR index {k:?} is not a number")))
            })
            .collect()
    }
}

/// `Vec<Vec<u8>>` as a list of standard base64 strings.
mod b64_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Wrap(#[serde(with = "crate::encoding::b64")] Vec<u8>);

    pub(super) fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|b| Wrap(b.clone()))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Ok(Vec::<Wrap>::deserialize(d)?
            .into_iter()
            .map(|Wrap(v)| v)
            .collect())
    }
}

/// `Option<Vec<u8>>` as standard base64 (absent when `None`).
mod b64_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => crate::encoding::b64::serialize(bytes, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "crate::encoding::b64")] Vec<u8>);
        Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(v)| v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_is_domain_separated_sha256_of_report_data() {
        let rd = [7u8; 64];
        let mut h = Sha256::new();
        h.update(b"smart-worker/attest/tpm-nonce/v1");
        h.update([7u8; 64]);
        let expected: [u8; 32] = h.finalize().into();
        assert_eq!(tpm_nonce(&rd), expected);
        assert_ne!(tpm_nonce(&rd), tpm_nonce(&[8u8; 64]));
    }

    #[test]
    fn json_uses_base64_and_hex_and_omits_a_missing_log() {
        let e = TpmEvidence {
            ak_public: vec![1, 2],
            quote: vec![3],
            signature: vec![4],
            pcrs: BTreeMap::from([(4, "ab".repeat(32))]),
            event_log: None,
            ak_cert: None,
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"ak_public":"AQI=","quote":"Aw==","signature":"BA==","pcrs":{{"4":"{}"}}}}"#,
                "ab".repeat(32)
            )
        );
        assert_eq!(serde_json::from_str::<TpmEvidence>(&json).unwrap(), e);
        let with_log = TpmEvidence {
            event_log: Some(vec![5, 6]),
            ..e
        };
        let json = serde_json::to_string(&with_log).unwrap();
        assert!(json.contains(r#""event_log":"BQY=""#));
        assert_eq!(
            serde_json::from_str::<TpmEvidence>(&json).unwrap(),
            with_log
        );
    }

    #[test]
    fn a_pcr_value_that_is_not_32_bytes_of_hex_is_refused() {
        let e = TpmEvidence {
            ak_public: vec![],
            quote: vec![],
            signature: vec![],
            pcrs: BTreeMap::from([(7, "abcd".into())]),
            event_log: None,
            ak_cert: None,
        };
        assert!(matches!(
            e.pcr_values(),
            Err(TpmError::BadPcrValue { index: 7, .. })
        ));
    }
}
