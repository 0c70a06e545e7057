//! TPM 2.0 structures this crate reads and writes: algorithm IDs, PCR selections, and
//! signatures (TPM 2.0 Part 2). Public areas are in [`super::public`].

use super::error::TpmError;
use super::marshal::{Reader, Writer};

/// TPM_ALG_RSA.
pub const ALG_RSA: u16 = 0x0001;
/// TPM_ALG_SHA256.
pub const ALG_SHA256: u16 = 0x000b;
/// TPM_ALG_SHA384.
pub const ALG_SHA384: u16 = 0x000c;
/// TPM_ALG_SHA512.
pub const ALG_SHA512: u16 = 0x000d;
/// TPM_ALG_NULL.
pub const ALG_NULL: u16 = 0x0010;
/// TPM_ALG_RSASSA (PKCS#1 v1.5).
pub const ALG_RSASSA: u16 = 0x0014;
/// TPM_ALG_RSAPSS.
pub const ALG_RSAPSS: u16 = 0x0016;
/// TPM_ALG_ECDSA.
pub const ALG_ECDSA: u16 = 0x0018;
/// TPM_ALG_ECDAA.
pub const ALG_ECDAA: u16 = 0x001a;
/// TPM_ALG_ECC.
pub const ALG_ECC: u16 = 0x0023;
/// TPM_ECC_NIST_P256.
pub const ECC_NIST_P256: u16 = 0x0003;

/// Number of PCRs in a PC Client TPM (0..=23).
pub const PCR_COUNT: u32 = 24;

/// One bank's selected PCRs (TPMS_PCR_SELECTION): a hash algorithm and PCR indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcrSelection {
    /// The bank's hash algorithm (TPM_ALG_SHA256 for everything this crate verifies).
    pub hash: u16,
    /// Selected PCR indices, ascending, each below [`PCR_COUNT`].
    pub pcrs: Vec<u32>,
}

impl PcrSelection {
    /// The SHA-256 bank with the given PCRs (sorted and deduplicated).
    pub fn sha256(pcrs: impl IntoIterator<Item = u32>) -> Result<Self, TpmError> {
        let mut pcrs: Vec<u32> = pcrs.into_iter().collect();
        pcrs.sort_unstable();
        pcrs.dedup();
        if let Some(&bad) = pcrs.iter().find(|&&p| p >= PCR_COUNT) {
            return Err(TpmError::PcrOutOfRange(bad));
        }
        Ok(Self {
            hash: ALG_SHA256,
            pcrs,
        })
    }

    /// Writes a TPML_PCR_SELECTION with this one bank (three select bytes: PCRs 0..=23).
    pub(crate) fn write_list(&self, w: &mut Writer) {
        w.u32(1);
        self.write_one(w);
    }

    pub(crate) fn write_one(&self, w: &mut Writer) {
        let mut bits = [0u8; 3];
        for &p in &self.pcrs {
            bits[(p / 8) as usize] |= 1 << (p % 8);
        }
        w.u16(self.hash).u8(3).bytes(&bits);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, TpmError> {
        let hash = r.u16()?;
        let size = r.u8()?;
        let bits = r.take(usize::from(size))?;
        let mut pcrs = Vec::new();
        for (byte_index, byte) in bits.iter().enumerate() {
            for bit in 0..8u32 {
                if byte & (1 << bit) != 0 {
                    pcrs.push(byte_index as u32 * 8 + bit);
                }
            }
        }
        Ok(Self { hash, pcrs })
    }

    /// Reads a TPML_PCR_SELECTION: the banks in the order the TPM gave them.
    pub(crate) fn read_list(r: &mut Reader<'_>) -> Result<Vec<Self>, TpmError> {
        let count = r.u32()?;
        if count > 16 {
            return Err(TpmError::Malformed {
                what: "TPML_PCR_SELECTION",
                reason: format!("{count} banks"),
            });
        }
        (0..count).map(|_| Self::read(r)).collect()
    }
}

/// A signature as the TPM returns it (TPMT_SIGNATURE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TpmSignature {
    /// TPM_ALG_ECDSA: hash algorithm, r and s (big-endian).
    Ecdsa {
        /// The hash the TPM signed with.
        hash: u16,
        /// r.
        r: Vec<u8>,
        /// s.
        s: Vec<u8>,
    },
    /// TPM_ALG_RSASSA (PKCS#1 v1.5): hash algorithm and the signature.
    RsaSsa {
        /// The hash the TPM signed with.
        hash: u16,
        /// The signature, as long as the modulus.
        sig: Vec<u8>,
    },
}

impl TpmSignature {
    /// Parses a TPMT_SIGNATURE that fills `bytes` exactly.
    pub fn parse(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes, "TPMT_SIGNATURE");
        let sig = Self::read(&mut r)?;
        r.finish()?;
        Ok(sig)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, TpmError> {
        let sig_alg = r.u16()?;
        Ok(match sig_alg {
            ALG_ECDSA => {
                let hash = r.u16()?;
                let r_ = r.tpm2b()?.to_vec();
                let s = r.tpm2b()?.to_vec();
                Self::Ecdsa { hash, r: r_, s }
            }
            ALG_RSASSA => {
                let hash = r.u16()?;
                let sig = r.tpm2b()?.to_vec();
                Self::RsaSsa { hash, sig }
            }
            other => {
                return Err(TpmError::UnsupportedAlgorithm {
                    what: "signature scheme",
                    alg: other,
                })
            }
        })
    }

    /// The signature's TPM_ALG_ID (TPMT_SIGNATURE.sigAlg).
    pub fn sig_alg(&self) -> u16 {
        match self {
            Self::Ecdsa { .. } => ALG_ECDSA,
            Self::RsaSsa { .. } => ALG_RSASSA,
        }
    }

    /// The TPMT_SIGNATURE bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, TpmError> {
        let mut w = Writer::new();
        match self {
            Self::Ecdsa { hash, r, s } => {
                w.u16(ALG_ECDSA).u16(*hash);
                w.tpm2b(r)?;
                w.tpm2b(s)?;
            }
            Self::RsaSsa { hash, sig } => {
                w.u16(ALG_RSASSA).u16(*hash);
                w.tpm2b(sig)?;
            }
        }
        Ok(w.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_selection_marshals_as_a_bitmap() {
        let sel = PcrSelection::sha256([0, 7, 23, 7, 9]).unwrap();
        assert_eq!(sel.pcrs, vec![0, 7, 9, 23]);
        let mut w = Writer::new();
        sel.write_list(&mut w);
        let bytes = w.into_bytes();
        assert_eq!(bytes, [0, 0, 0, 1, 0x00, 0x0b, 3, 0x81, 0x02, 0x80]);
        let mut r = Reader::new(&bytes, "t");
        assert_eq!(PcrSelection::read_list(&mut r).unwrap(), vec![sel]);
    }

    #[test]
    fn pcr_out_of_range_is_refused() {
        assert!(matches!(
            PcrSelection::sha256([24]),
            Err(TpmError::PcrOutOfRange(24))
        ));
    }

    #[test]
    fn signatures_round_trip_and_unknown_schemes_are_named() {
        let ecdsa = TpmSignature::Ecdsa {
            hash: ALG_SHA256,
            r: vec![1; 32],
            s: vec![2; 32],
        };
        assert_eq!(
            TpmSignature::parse(&ecdsa.to_bytes().unwrap()).unwrap(),
            ecdsa
        );
        let rsa = TpmSignature::RsaSsa {
            hash: ALG_SHA256,
            sig: vec![3; 256],
        };
        assert_eq!(TpmSignature::parse(&rsa.to_bytes().unwrap()).unwrap(), rsa);
        assert!(matches!(
            TpmSignature::parse(&[0x00, 0x16, 0, 0x0b, 0, 0]),
            Err(TpmError::UnsupportedAlgorithm {
                alg: ALG_RSAPSS,
                ..
            })
        ));
    }
}
