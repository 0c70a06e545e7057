//! Azure's HCL report (vTPM NV index 0x01400001): the paravisor's hardware report (an SNP
//! attestation report or a TDX TDREPORT) and the runtime data it binds, which carries the vTPM's
//! attestation key. Layout from Microsoft's `az-cvm-vtpm` (src/hcl/mod.rs), little-endian:
//!
//! ```text
//! 0     header: "HCLA" (u32 0x414c4348), version, report_size, request_type, status, 3 reserved
//! 32    hardware report, 1184 bytes reserved (SNP: 1184; TDX TDREPORT: 1024)
//! 1216  IGVM request data: data_size, version, report_type (2 SNP, 4 TDX), hash_type
//!       (1 SHA-256, 2 SHA-384, 3 SHA-512), variable_data_size
//! 1236  runtime data (JSON: {"keys":[{"kid":"HCLAkPub","kty":"RSA","n":…,"e":…}, …],
//!       "vm-configuration":{…}, "user-data":"<hex>"})
//! ```
//!
//! The hardware report's report_data starts with hash_type's digest of the runtime data (the
//! rest zero). Parsing checks that binding; verifying the hardware report itself (the SNP report
//! against the VCEK; a TDREPORT needs Azure's quote) is the caller's.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::public::PublicKey;

/// "HCLA", little-endian.
pub const HCL_MAGIC: u32 = 0x414c_4348;
const HW_REPORT_OFFSET: usize = 32;
const HW_REPORT_SPACE: usize = 1184;
const IGVM_OFFSET: usize = HW_REPORT_OFFSET + HW_REPORT_SPACE;
const RUNTIME_DATA_OFFSET: usize = IGVM_OFFSET + 20;
const SNP_REPORT_LEN: usize = 1184;
const TD_REPORT_LEN: usize = 1024;
/// report_data's offset in an SNP attestation report.
const SNP_REPORT_DATA_OFFSET: usize = 0x50;
/// REPORTDATA's offset in a TDREPORT (after REPORTMACSTRUCT's type, reserved, CPUSVN and two
/// 48-byte hashes).
const TD_REPORT_DATA_OFFSET: usize = 128;
/// The runtime data's key id of the vTPM attestation key.
pub const HCL_AK_KID: &str = "HCLAkPub";

/// An HCL report does not parse or does not bind its runtime data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HclError {
    /// Shorter than its fixed part or than the sizes it announces.
    #[error("malformed HCL report: {0}")]
    Malformed(String),
    /// Does not start with "HCLA".
    #[error("HCL report magic 0x{0:08x} is not \"HCLA\"")]
    BadMagic(u32),
    /// The hardware report is neither SNP (2) nor TDX (4).
    #[error("HCL report type {0} is neither SNP (2) nor TDX (4)")]
    UnknownReportType(u32),
    /// The runtime data is hashed with an unknown algorithm.
    #[error("HCL runtime data hash type {0} is not SHA-256/384/512 (1/2/3)")]
    UnsupportedHashType(u32),
    /// The hardware report's report_data is not the digest of the runtime data.
    #[error("the hardware report's report_data does not bind the HCL runtime data")]
    RuntimeDataNotBound,
    /// The runtime data is not the expected JSON.
    #[error("HCL runtime data is not valid JSON: {0}")]
    BadRuntimeData(String),
    /// The runtime data has no usable "HCLAkPub" RSA key.
    #[error("HCL runtime data has no usable {HCL_AK_KID} key: {0}")]
    NoAk(String),
}

/// Which TEE produced the hardware report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HclReportKind {
    /// AMD SEV-SNP attestation report (1184 bytes).
    Snp,
    /// Intel TDX TDREPORT (1024 bytes).
    Tdx,
}

/// A parsed HCL report whose runtime data is bound by its hardware report's report_data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HclReport {
    /// The TEE.
    pub kind: HclReportKind,
    /// The hardware report (to verify with the SNP or TDX verifier).
    pub hw_report: Vec<u8>,
    /// The runtime data (JSON bytes) bound by the hardware report.
    pub runtime_data: Vec<u8>,
    /// The hardware report's report_data: the runtime data's digest, then zeros (checked). The
    /// report_data to expect when verifying `hw_report`.
    pub report_data: [u8; 64],
}

#[derive(Deserialize)]
struct RuntimeData {
    keys: Vec<Jwk>,
    #[serde(rename = "user-data")]
    user_data: Option<String>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: Option<String>,
    kty: String,
    n: Option<String>,
    e: Option<String>,
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

impl HclReport {
    /// Parses an HCL report and checks that the hardware report's report_data starts with the
    /// digest of the runtime data and is zero after it.
    pub fn parse(bytes: &[u8]) -> Result<Self, HclError> {
        if bytes.len() < RUNTIME_DATA_OFFSET {
            return Err(HclError::Malformed(format!(
                "{} bytes, the fixed part is {RUNTIME_DATA_OFFSET}",
                bytes.len()
            )));
        }
        let magic = le_u32(bytes, 0);
        if magic != HCL_MAGIC {
            return Err(HclError::BadMagic(magic));
        }
        let (kind, hw_len, rd_offset) = match le_u32(bytes, IGVM_OFFSET + 8) {
            2 => (HclReportKind::Snp, SNP_REPORT_LEN, SNP_REPORT_DATA_OFFSET),
            4 => (HclReportKind::Tdx, TD_REPORT_LEN, TD_REPORT_DATA_OFFSET),
            other => return Err(HclError::UnknownReportType(other)),
        };
        let hash_type = le_u32(bytes, IGVM_OFFSET + 12);
        let var_len = le_u32(bytes, IGVM_OFFSET + 16) as usize;
        let runtime_data = bytes
            .get(RUNTIME_DATA_OFFSET..RUNTIME_DATA_OFFSET.saturating_add(var_len))
            .ok_or_else(|| {
                HclError::Malformed(format!(
                    "runtime data of {var_len} bytes exceeds the report's {}",
                    bytes.len()
                ))
            })?;
        let digest = match hash_type {
            1 => Sha256::digest(runtime_data).to_vec(),
            2 => Sha384::digest(runtime_data).to_vec(),
            3 => Sha512::digest(runtime_data).to_vec(),
            other => return Err(HclError::UnsupportedHashType(other)),
        };
        let hw_report = &bytes[HW_REPORT_OFFSET..HW_REPORT_OFFSET + hw_len];
        let mut report_data = [0u8; 64];
        report_data.copy_from_slice(&hw_report[rd_offset..rd_offset + 64]);
        if report_data[..digest.len()] != digest[..]
            || report_data[digest.len()..].iter().any(|&b| b != 0)
        {
            return Err(HclError::RuntimeDataNotBound);
        }
        Ok(Self {
            kind,
            hw_report: hw_report.to_vec(),
            runtime_data: runtime_data.to_vec(),
            report_data,
        })
    }

    fn runtime(&self) -> Result<RuntimeData, HclError> {
        serde_json::from_slice(&self.runtime_data)
            .map_err(|e| HclError::BadRuntimeData(e.to_string()))
    }

    /// The vTPM attestation key ("HCLAkPub", RSA) the runtime data carries: the key a quote
    /// from this VM's vTPM must verify with.
    pub fn ak(&self) -> Result<PublicKey, HclError> {
        let jwk = self
            .runtime()?
            .keys
            .into_iter()
            .find(|k| k.kid.as_deref() == Some(HCL_AK_KID))
            .ok_or_else(|| HclError::NoAk("absent".into()))?;
        if jwk.kty != "RSA" {
            return Err(HclError::NoAk(format!("kty {}", jwk.kty)));
        }
        let field = |v: Option<String>, name: &str| {
            let text = v.ok_or_else(|| HclError::NoAk(format!("no {name}")))?;
            URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .map_err(|e| HclError::NoAk(format!("{name}: {e}")))
        };
        let modulus = field(jwk.n, "n")?;
        let e = field(jwk.e, "e")?;
        if e.is_empty() || e.len() > 4 {
            return Err(HclError::NoAk(format!("exponent of {} bytes", e.len())));
        }
        let exponent = e.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b));
        Ok(PublicKey::Rsa { modulus, exponent })
    }

    /// The runtime data's "user-data" (what was written to NV index 0x01400002 before the
    /// report was made), if any.
    pub fn user_data(&self) -> Result<Option<Vec<u8>>, HclError> {
        self.runtime()?
            .user_data
            .map(|hex_text| {
                hex::decode(hex_text.trim())
                    .map_err(|e| HclError::BadRuntimeData(format!("user-data: {e}")))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNP: &[u8] = include_bytes!("../../testdata/azure/hcl-report-snp.bin");
    const TDX: &[u8] = include_bytes!("../../testdata/azure/hcl-report-tdx.bin");

    #[test]
    fn snp_and_tdx_reports_bind_their_runtime_data_and_carry_the_ak() {
        let snp = HclReport::parse(SNP).unwrap();
        assert_eq!(snp.kind, HclReportKind::Snp);
        assert_eq!(snp.hw_report.len(), 1184);
        assert_eq!(snp.runtime_data.len(), 583);
        assert_eq!(snp.user_data().unwrap(), None);
        let PublicKey::Rsa { modulus, exponent } = snp.ak().unwrap() else {
            panic!("not RSA")
        };
        assert_eq!((modulus.len(), exponent), (256, 65537));
        // "tYVBpgAB…" base64url.
        assert_eq!(&modulus[..4], &[0xb5, 0x85, 0x41, 0xa6]);

        let tdx = HclReport::parse(TDX).unwrap();
        assert_eq!(tdx.kind, HclReportKind::Tdx);
        assert_eq!(tdx.hw_report.len(), 1024);
        assert_eq!(tdx.user_data().unwrap(), Some(vec![0; 64]));
        assert!(matches!(tdx.ak().unwrap(), PublicKey::Rsa { .. }));
    }

    #[test]
    fn tampered_hcl_reports_are_refused() {
        // A byte of the runtime data (inside the AK's modulus).
        let mut t = SNP.to_vec();
        t[RUNTIME_DATA_OFFSET + 80] ^= 1;
        assert_eq!(HclReport::parse(&t), Err(HclError::RuntimeDataNotBound));
        // A byte of the hardware report's report_data, in the digest and after it.
        for at in [SNP_REPORT_DATA_OFFSET, SNP_REPORT_DATA_OFFSET + 40] {
            let mut t = SNP.to_vec();
            t[HW_REPORT_OFFSET + at] ^= 1;
            assert_eq!(HclReport::parse(&t), Err(HclError::RuntimeDataNotBound));
        }
        let mut t = TDX.to_vec();
        t[HW_REPORT_OFFSET + TD_REPORT_DATA_OFFSET + 5] ^= 1;
        assert_eq!(HclReport::parse(&t), Err(HclError::RuntimeDataNotBound));

        let mut t = SNP.to_vec();
        t[0] = b'X';
        assert!(matches!(HclReport::parse(&t), Err(HclError::BadMagic(_))));
        let mut t = SNP.to_vec();
        t[IGVM_OFFSET + 8] = 3;
        assert_eq!(HclReport::parse(&t), Err(HclError::UnknownReportType(3)));
        let mut t = SNP.to_vec();
        t[IGVM_OFFSET + 12] = 9;
        assert_eq!(HclReport::parse(&t), Err(HclError::UnsupportedHashType(9)));
        let mut t = SNP.to_vec();
        t[IGVM_OFFSET + 17] = 0x40; // runtime data size 16 KiB + 583
        assert!(matches!(HclReport::parse(&t), Err(HclError::Malformed(_))));
        assert!(matches!(
            HclReport::parse(&SNP[..1000]),
            Err(HclError::Malformed(_))
        ));
    }
}
