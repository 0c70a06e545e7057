//! Evidence: what a TEE says about this machine, in a stable, serialisable form.
//!
//! JSON format, version 1 (see README.md, "Evidence format"): an object with `"version": 1`,
//! `"tee"` (`"snp"`, `"tdx"`, `"none"`, or `"azure-vtpm"` for Azure's vTPM evidence) and the
//! fields of that kind; `snp`, `tdx` and `none` may carry a TPM quote beside them (`"tpm"`). Variable-length binary
//! (reports, quotes, certificates) is standard base64 with padding; fixed-size digests and
//! report_data are lowercase hex; TDX collateral keeps the field names and encodings of Intel's
//! PCCS / dcap-qvl collateral JSON (strings as-is, binary as hex).

use serde::{Deserialize, Serialize};

use crate::encoding::{b64, b64_opt, hex_array, hex_vec};
use crate::tpm::{AzureVtpmEvidence, HclReport, HclReportKind, TpmEvidence};
use crate::Tee;

/// The evidence format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Attestation evidence from one TEE.
// One value per attestation; boxing the TDX variant (its collateral) would only add an allocation
// and change every constructor.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Envelope", try_from = "Envelope")]
pub enum Evidence {
    /// AMD SEV-SNP: a signed attestation report and the certificates the host supplied.
    Snp(SnpEvidence),
    /// Intel TDX: a DCAP quote (v4 or v5), optionally with collateral.
    Tdx(TdxEvidence),
    /// No TEE (QEMU without SEV/TDX, a laptop): nothing vouches for anything. Always insecure.
    None(NoneEvidence),
    /// Azure confidential VM: the vTPM's HCL report (the hardware report inside, binding the
    /// vTPM's attestation key) and a quote by that key. The guest has no SNP/TDX device of its
    /// own there: the paravisor holds it.
    AzureVtpm(AzureVtpmEvidence),
}

impl Evidence {
    /// The TEE this evidence comes from.
    pub fn tee(&self) -> Tee {
        match self {
            Evidence::Snp(_) => Tee::Snp,
            Evidence::Tdx(_) => Tee::Tdx,
            Evidence::None(_) => Tee::None,
            Evidence::AzureVtpm(a) => match HclReport::parse(&a.hcl_report).map(|h| h.kind) {
                Ok(HclReportKind::Snp) => Tee::Snp,
                Ok(HclReportKind::Tdx) => Tee::Tdx,
                // Unparsable: verification refuses it; it vouches for nothing.
                Err(_) => Tee::None,
            },
        }
    }

    /// The TPM evidence this evidence carries (beside the hardware evidence, or Azure's).
    pub fn tpm(&self) -> Option<&TpmEvidence> {
        match self {
            Evidence::Snp(e) => e.tpm.as_ref(),
            Evidence::Tdx(e) => e.tpm.as_ref(),
            Evidence::None(e) => e.tpm.as_ref(),
            Evidence::AzureVtpm(a) => Some(&a.tpm),
        }
    }

    /// True for `none` evidence: it proves nothing and verifiers refuse it unless told to
    /// allow dev mode.
    pub fn is_insecure(&self) -> bool {
        matches!(self, Evidence::None(_))
    }

    /// The JSON form (format version 1).
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: every field is a string, number or list.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses the JSON form.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// SEV-SNP evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpEvidence {
    /// The raw 1184-byte attestation report, exactly as the firmware signed it.
    #[serde(with = "b64")]
    pub report: Vec<u8>,
    /// The host-supplied certificate table (configfs-tsm auxblob or the extended report),
    /// possibly empty. Untrusted: the verifier uses AMD's built-in roots and checks the VCEK.
    #[serde(default)]
    pub certs: Vec<SnpCert>,
    /// A TPM quote bound to the same report_data, with its event log (a vTPM outside the TEE:
    /// Google's on N2D, AWS's NitroTPM). Trusted only as the policy says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmEvidence>,
}

impl SnpEvidence {
    /// The first certificate of the given kind.
    pub fn cert(&self, kind: &CertKind) -> Option<&[u8]> {
        self.certs
            .iter()
            .find(|c| &c.kind == kind)
            .map(|c| c.der.as_slice())
    }
}

/// One entry of the SNP certificate table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpCert {
    /// What the entry holds.
    pub kind: CertKind,
    /// The certificate, DER (or a CRL for `crl`).
    #[serde(with = "b64")]
    pub der: Vec<u8>,
}

/// The kind of an SNP certificate-table entry, by the GUIDs of the GHCB specification.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    /// Versioned Chip Endorsement Key, `63da758d-e664-4564-adc5-f4b93be8accd`.
    Vcek,
    /// Versioned Loaded Endorsement Key, `a8074bc2-a25a-483e-aae6-39c045a0b8a1`.
    Vlek,
    /// AMD SEV Key, `4ab7b379-bbac-4fe4-a02f-05aef327c782`.
    Ask,
    /// AMD Root Key, `c0b406a4-a803-4952-9743-3fb6014cd0ae`.
    Ark,
    /// Certificate revocation list, `92f81bc3-5811-4d3d-97ff-d19f88dc67ea`.
    Crl,
    /// Any other GUID, written as `{"other": "<guid>"}`.
    Other(String),
}

impl CertKind {
    pub(crate) const KNOWN: [(CertKind, &'static str); 5] = [
        (CertKind::Vcek, "63da758d-e664-4564-adc5-f4b93be8accd"),
        (CertKind::Vlek, "a8074bc2-a25a-483e-aae6-39c045a0b8a1"),
        (CertKind::Ask, "4ab7b379-bbac-4fe4-a02f-05aef327c782"),
        (CertKind::Ark, "c0b406a4-a803-4952-9743-3fb6014cd0ae"),
        (CertKind::Crl, "92f81bc3-5811-4d3d-97ff-d19f88dc67ea"),
    ];

    /// The kind for a GUID in its canonical text form (lower-case, dashed).
    pub fn from_guid(guid: &str) -> CertKind {
        let guid = guid.to_ascii_lowercase();
        Self::KNOWN
            .iter()
            .find(|(_, g)| *g == guid)
            .map(|(k, _)| k.clone())
            .unwrap_or(CertKind::Other(guid))
    }

    /// The GUID in canonical text form.
    pub fn guid(&self) -> String {
        match self {
            CertKind::Other(g) => g.clone(),
            known => Self::KNOWN
                .iter()
                .find(|(k, _)| k == known)
                .map(|(_, g)| (*g).to_owned())
                .unwrap_or_default(),
        }
    }
}

/// Intel TDX evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdxEvidence {
    /// The raw DCAP quote (v4 or v5), with its PCK certificate chain inside.
    #[serde(with = "b64")]
    pub quote: Vec<u8>,
    /// Collateral, when the attester fetched it. Untrusted: it is signed by Intel and checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collateral: Option<TdxCollateral>,
    /// The boot event log the firmware left in the CCEL ACPI table (its log area, as read), when
    /// the TD booted through UEFI firmware that measures the boot (e.g. Google Cloud C3).
    /// Untrusted: the verifier replays it against the quote's RTMRs.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64_opt")]
    pub event_log: Option<Vec<u8>>,
    /// A TPM quote bound to the same report_data, with its event log (a vTPM outside the TEE).
    /// Trusted only as the policy says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmEvidence>,
}

/// DCAP collateral for a quote: CRLs, TCB info and QE identity with their issuer chains, as a
/// PCCS serves them. Field names and encodings follow Intel's / dcap-qvl's collateral JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdxCollateral {
    /// PEM chain of the PCK CRL issuer.
    pub pck_crl_issuer_chain: String,
    /// Intel root CA CRL, DER (hex).
    #[serde(with = "hex_vec")]
    pub root_ca_crl: Vec<u8>,
    /// PCK CRL, DER (hex).
    #[serde(with = "hex_vec")]
    pub pck_crl: Vec<u8>,
    /// PEM chain of the TCB info signer.
    pub tcb_info_issuer_chain: String,
    /// TCB info JSON, exactly as signed.
    pub tcb_info: String,
    /// Signature over `tcb_info` (raw r‖s, hex).
    #[serde(with = "hex_vec")]
    pub tcb_info_signature: Vec<u8>,
    /// PEM chain of the QE identity signer.
    pub qe_identity_issuer_chain: String,
    /// QE identity JSON, exactly as signed.
    pub qe_identity: String,
    /// Signature over `qe_identity` (raw r‖s, hex).
    #[serde(with = "hex_vec")]
    pub qe_identity_signature: Vec<u8>,
    /// PCK certificate chain (PEM), when not taken from the quote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pck_certificate_chain: Option<String>,
}

/// Evidence from no TEE: the report_data the runner would have bound, and a TPM quote when the
/// machine has a TPM (swtpm under QEMU, a laptop's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoneEvidence {
    /// The report_data requested. Nothing vouches for it.
    pub report_data: [u8; 64],
    /// A TPM quote bound to `report_data`, with its event log. Trusted only by a pinned AK
    /// (`trusted_tpm_aks`) or in dev mode.
    pub tpm: Option<TpmEvidence>,
}

// ---- wire form -------------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Envelope {
    version: u32,
    #[serde(flatten)]
    body: Body,
}

#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize)]
#[serde(tag = "tee", rename_all = "lowercase")]
enum Body {
    Snp(SnpEvidence),
    Tdx(TdxEvidence),
    None(NoneWire),
    #[serde(rename = "azure-vtpm")]
    AzureVtpm(AzureVtpmEvidence),
}

#[derive(Serialize, Deserialize)]
struct NoneWire {
    /// Always `true`: a reader must not mistake this for attested evidence.
    insecure: bool,
    #[serde(with = "hex_array")]
    report_data: [u8; 64],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tpm: Option<TpmEvidence>,
}

impl From<Evidence> for Envelope {
    fn from(e: Evidence) -> Self {
        let body = match e {
            Evidence::Snp(s) => Body::Snp(s),
            Evidence::Tdx(t) => Body::Tdx(t),
            Evidence::None(n) => Body::None(NoneWire {
                insecure: true,
                report_data: n.report_data,
                tpm: n.tpm,
            }),
            Evidence::AzureVtpm(a) => Body::AzureVtpm(a),
        };
        Envelope {
            version: FORMAT_VERSION,
            body,
        }
    }
}

impl TryFrom<Envelope> for Evidence {
    type Error = String;

    fn try_from(e: Envelope) -> Result<Self, String> {
        if e.version != FORMAT_VERSION {
            return Err(format!(
                "evidence format version {} is not supported (expected {FORMAT_VERSION})",
                e.version
            ));
        }
        Ok(match e.body {
            Body::Snp(s) => Evidence::Snp(s),
            Body::Tdx(t) => Evidence::Tdx(t),
            Body::None(n) => {
                if !n.insecure {
                    return Err("`none` evidence must say \"insecure\": true".into());
                }
                Evidence::None(NoneEvidence {
                    report_data: n.report_data,
                    tpm: n.tpm,
                })
            }
            Body::AzureVtpm(a) => Evidence::AzureVtpm(a),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_evidence_json_is_marked_insecure_and_round_trips() {
        let e = Evidence::None(NoneEvidence {
            report_data: [7; 64],
            tpm: None,
        });
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["tee"], "none");
        assert_eq!(v["insecure"], true);
        assert_eq!(v["report_data"], "07".repeat(64));
        assert_eq!(Evidence::from_json(&e.to_json()).unwrap(), e);
        assert!(e.is_insecure());
        assert_eq!(e.tee(), Tee::None);
    }

    #[test]
    fn none_evidence_claiming_to_be_secure_is_rejected() {
        let json = format!(
            r#"{{"version":1,"tee":"none","insecure":false,"report_data":"{}"}}"#,
            "00".repeat(64)
        );
        let err = Evidence::from_json(&json).unwrap_err().to_string();
        assert!(err.contains("insecure"), "{err}");
    }

    #[test]
    fn unknown_version_is_rejected() {
        let json = format!(
            r#"{{"version":2,"tee":"none","insecure":true,"report_data":"{}"}}"#,
            "00".repeat(64)
        );
        assert!(Evidence::from_json(&json).is_err());
    }

    #[test]
    fn snp_evidence_json_uses_base64_and_cert_kinds() {
        let e = Evidence::Snp(SnpEvidence {
            report: vec![0xff, 0x00, 0x10],
            certs: vec![
                SnpCert {
                    kind: CertKind::Vcek,
                    der: vec![1, 2, 3],
                },
                SnpCert {
                    kind: CertKind::Other("01234567-89ab-cdef-0123-456789abcdef".into()),
                    der: vec![4],
                },
            ],
            tpm: None,
        });
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["tee"], "snp");
        assert_eq!(v["report"], "/wAQ");
        assert_eq!(v["certs"][0]["kind"], "vcek");
        assert_eq!(v["certs"][0]["der"], "AQID");
        assert_eq!(
            v["certs"][1]["kind"]["other"],
            "01234567-89ab-cdef-0123-456789abcdef"
        );
        assert_eq!(Evidence::from_json(&e.to_json()).unwrap(), e);
    }

    #[test]
    fn cert_kind_guids_round_trip() {
        for (kind, guid) in CertKind::KNOWN {
            assert_eq!(CertKind::from_guid(guid), kind);
            assert_eq!(CertKind::from_guid(&guid.to_uppercase()), kind);
            assert_eq!(kind.guid(), guid);
        }
        let other = CertKind::from_guid("00000000-0000-0000-0000-000000000001");
        assert_eq!(
            other,
            CertKind::Other("00000000-0000-0000-0000-000000000001".into())
        );
    }
}
