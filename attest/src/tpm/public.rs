//! The attestation key's public area (TPMT_PUBLIC / TPM2B_PUBLIC): the fixed template we create
//! the AK from, parsing what a TPM returns, the key it carries, and its TPM "name".

use sha2::{Digest, Sha256, Sha384, Sha512};

use super::error::TpmError;
use super::marshal::{Reader, Writer};
use super::types::{
    ALG_ECC, ALG_ECDAA, ALG_ECDSA, ALG_NULL, ALG_RSA, ALG_RSASSA, ALG_SHA256, ALG_SHA384,
    ALG_SHA512, ECC_NIST_P256,
};

/// TPMA_OBJECT.fixedTPM: the key cannot leave this TPM.
pub const ATTR_FIXED_TPM: u32 = 1 << 1;
/// TPMA_OBJECT.fixedParent.
pub const ATTR_FIXED_PARENT: u32 = 1 << 4;
/// TPMA_OBJECT.sensitiveDataOrigin: the TPM generated the private key.
pub const ATTR_SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
/// TPMA_OBJECT.userWithAuth.
pub const ATTR_USER_WITH_AUTH: u32 = 1 << 6;
/// TPMA_OBJECT.restricted: signs only digests the TPM computed itself, so a TPMS_ATTEST it
/// signs (starting with TPM_GENERATED_VALUE) was made by the TPM.
pub const ATTR_RESTRICTED: u32 = 1 << 16;
/// TPMA_OBJECT.sign.
pub const ATTR_SIGN: u32 = 1 << 18;

/// The attributes of the AK template: a restricted signing key fixed to this TPM.
pub const AK_ATTRIBUTES: u32 = ATTR_FIXED_TPM
    | ATTR_FIXED_PARENT
    | ATTR_SENSITIVE_DATA_ORIGIN
    | ATTR_USER_WITH_AUTH
    | ATTR_RESTRICTED
    | ATTR_SIGN;

/// The key an attestation key's public area carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// NIST P-256 point, affine coordinates, big-endian.
    EccP256 {
        /// x.
        x: [u8; 32],
        /// y.
        y: [u8; 32],
    },
    /// RSA modulus (big-endian) and public exponent.
    Rsa {
        /// n.
        modulus: Vec<u8>,
        /// e (the TPM's 0 already replaced by 65537).
        exponent: u32,
    },
}

/// A parsed TPMT_PUBLIC, keeping its exact bytes (the name is a digest over them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AkPublic {
    tpmt: Vec<u8>,
    /// TPMT_PUBLIC.nameAlg.
    pub name_alg: u16,
    /// TPMT_PUBLIC.objectAttributes (TPMA_OBJECT).
    pub attributes: u32,
    /// The key.
    pub key: PublicKey,
}

/// The TPMT_PUBLIC template of an attestation key: restricted signing, nameAlg SHA-256, empty
/// auth policy, no symmetric algorithm. Fixed, so a TPM derives the same primary key from it
/// every time (CreatePrimary is deterministic per hierarchy seed and template).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AkTemplate {
    /// ECC NIST P-256, ECDSA with SHA-256: ours.
    #[default]
    EccP256,
    /// RSA-2048, RSASSA-PKCS1-v1_5 with SHA-256: the shape of Azure's vTPM AK.
    Rsa2048,
}

impl AkTemplate {
    /// The TPMT_PUBLIC bytes.
    pub fn to_bytes(self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Self::EccP256 => {
                w.u16(ALG_ECC).u16(ALG_SHA256).u32(AK_ATTRIBUTES);
                w.u16(0); // authPolicy: empty
                w.u16(ALG_NULL); // symmetric: none (a signing key)
                w.u16(ALG_ECDSA).u16(ALG_SHA256); // scheme
                w.u16(ECC_NIST_P256);
                w.u16(ALG_NULL); // kdf
                w.u16(0).u16(0); // unique: empty x, y
            }
            Self::Rsa2048 => {
                w.u16(ALG_RSA).u16(ALG_SHA256).u32(AK_ATTRIBUTES);
                w.u16(0);
                w.u16(ALG_NULL);
                w.u16(ALG_RSASSA).u16(ALG_SHA256);
                w.u16(2048).u32(0); // key bits, exponent 65537
                w.u16(0); // unique: empty modulus
            }
        }
        w.into_bytes()
    }
}

/// Our attestation key's template ([`AkTemplate::EccP256`]).
pub fn ak_template() -> Vec<u8> {
    AkTemplate::EccP256.to_bytes()
}

impl AkPublic {
    /// Parses a TPM2B_PUBLIC (u16 size, then TPMT_PUBLIC) that fills `bytes` exactly.
    pub fn from_tpm2b(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes, "TPM2B_PUBLIC");
        let tpmt = r.tpm2b()?;
        r.finish()?;
        Self::from_tpmt(tpmt)
    }

    /// Parses a TPMT_PUBLIC that fills `bytes` exactly. Only ECC P-256 and RSA keys parse.
    pub fn from_tpmt(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes, "TPMT_PUBLIC");
        let kind = r.u16()?;
        let name_alg = r.u16()?;
        let attributes = r.u32()?;
        let _auth_policy = r.tpm2b()?;
        read_symmetric(&mut r)?;
        let key = match kind {
            ALG_ECC => {
                read_scheme(&mut r)?;
                let curve = r.u16()?;
                if curve != ECC_NIST_P256 {
                    return Err(TpmError::UnsupportedAlgorithm {
                        what: "ECC curve",
                        alg: curve,
                    });
                }
                read_scheme(&mut r)?; // kdf
                let x = coordinate(r.tpm2b()?)?;
                let y = coordinate(r.tpm2b()?)?;
                PublicKey::EccP256 { x, y }
            }
            ALG_RSA => {
                read_scheme(&mut r)?;
                let _key_bits = r.u16()?;
                let exponent = match r.u32()? {
                    0 => 65537,
                    e => e,
                };
                let modulus = r.tpm2b()?.to_vec();
                PublicKey::Rsa { modulus, exponent }
            }
            other => {
                return Err(TpmError::UnsupportedAlgorithm {
                    what: "key type",
                    alg: other,
                })
            }
        };
        r.finish()?;
        Ok(Self {
            tpmt: bytes.to_vec(),
            name_alg,
            attributes,
            key,
        })
    }

    /// The TPMT_PUBLIC bytes.
    pub fn tpmt_bytes(&self) -> &[u8] {
        &self.tpmt
    }

    /// The TPM2B_PUBLIC bytes (as ReadPublic returns them, and as evidence carries them).
    pub fn to_tpm2b(&self) -> Result<Vec<u8>, TpmError> {
        let mut w = Writer::new();
        w.tpm2b(&self.tpmt)?;
        Ok(w.into_bytes())
    }

    /// The key's TPM name: nameAlg (u16) ‖ nameAlg-digest of the TPMT_PUBLIC. This is what a
    /// policy pins to trust one AK (e.g. a dev policy trusting one swtpm's key).
    pub fn name(&self) -> Result<Vec<u8>, TpmError> {
        let digest = match self.name_alg {
            ALG_SHA256 => Sha256::digest(&self.tpmt).to_vec(),
            ALG_SHA384 => Sha384::digest(&self.tpmt).to_vec(),
            ALG_SHA512 => Sha512::digest(&self.tpmt).to_vec(),
            other => {
                return Err(TpmError::UnsupportedAlgorithm {
                    what: "name algorithm",
                    alg: other,
                })
            }
        };
        let mut name = self.name_alg.to_be_bytes().to_vec();
        name.extend_from_slice(&digest);
        Ok(name)
    }

    /// Fails unless the key is a restricted signing key fixed to its TPM: only such a key
    /// guarantees that a TPMS_ATTEST it signed was produced by the TPM.
    pub fn check_attestation_key(&self) -> Result<(), TpmError> {
        let needed = ATTR_FIXED_TPM | ATTR_RESTRICTED | ATTR_SIGN;
        if self.attributes & needed == needed {
            Ok(())
        } else {
            Err(TpmError::NotAnAttestationKey(self.attributes))
        }
    }
}

/// A P-256 coordinate: at most 32 bytes, left-padded (a TPM may drop leading zeros).
fn coordinate(bytes: &[u8]) -> Result<[u8; 32], TpmError> {
    if bytes.len() > 32 {
        return Err(TpmError::BadPublicKey(format!(
            "P-256 coordinate of {} bytes",
            bytes.len()
        )));
    }
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(bytes);
    Ok(out)
}

/// TPMT_SYM_DEF_OBJECT: algorithm, then key bits and mode unless NULL.
fn read_symmetric(r: &mut Reader<'_>) -> Result<(), TpmError> {
    if r.u16()? != ALG_NULL {
        r.u16()?;
        r.u16()?;
    }
    Ok(())
}

/// TPMT_{RSA,ECC}_SCHEME or TPMT_KDF_SCHEME: algorithm, then its hash (and ECDAA's count)
/// unless NULL.
fn read_scheme(r: &mut Reader<'_>) -> Result<(), TpmError> {
    match r.u16()? {
        ALG_NULL => {}
        ALG_ECDAA => {
            r.u16()?;
            r.u16()?;
        }
        _ => {
            r.u16()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ecc_public(attributes: u32) -> Vec<u8> {
        let mut w = Writer::new();
        w.u16(ALG_ECC).u16(ALG_SHA256).u32(attributes).u16(0);
        w.u16(ALG_NULL)
            .u16(ALG_ECDSA)
            .u16(ALG_SHA256)
            .u16(ECC_NIST_P256);
        w.u16(ALG_NULL);
        w.tpm2b(&[0x11; 32]).unwrap();
        w.tpm2b(&[0x22; 31]).unwrap();
        w.into_bytes()
    }

    #[test]
    fn template_parses_as_an_attestation_key() {
        let t = AkPublic::from_tpmt(&ak_template()).unwrap();
        assert_eq!(t.attributes, 0x0005_0072);
        t.check_attestation_key().unwrap();
        assert_eq!(
            t.key,
            PublicKey::EccP256 {
                x: [0; 32],
                y: [0; 32]
            }
        );
    }

    #[test]
    fn rsa_template_parses_as_an_attestation_key() {
        let t = AkPublic::from_tpmt(&AkTemplate::Rsa2048.to_bytes()).unwrap();
        t.check_attestation_key().unwrap();
        assert_eq!(
            t.key,
            PublicKey::Rsa {
                modulus: vec![],
                exponent: 65537
            }
        );
    }

    #[test]
    fn parses_ecc_and_computes_the_name() {
        let tpmt = ecc_public(AK_ATTRIBUTES);
        let mut w = Writer::new();
        w.tpm2b(&tpmt).unwrap();
        let ak = AkPublic::from_tpm2b(&w.into_bytes()).unwrap();
        let PublicKey::EccP256 { x, y } = ak.key else {
            panic!("not ECC")
        };
        assert_eq!(x, [0x11; 32]);
        assert_eq!(y[0], 0);
        assert_eq!(y[1..], [0x22; 31]);
        let name = ak.name().unwrap();
        assert_eq!(&name[..2], &[0x00, 0x0b]);
        assert_eq!(&name[2..], Sha256::digest(&tpmt).as_slice());
    }

    #[test]
    fn unrestricted_key_is_not_an_attestation_key() {
        let ak = AkPublic::from_tpmt(&ecc_public(AK_ATTRIBUTES & !ATTR_RESTRICTED)).unwrap();
        assert!(matches!(
            ak.check_attestation_key(),
            Err(TpmError::NotAnAttestationKey(_))
        ));
    }

    #[test]
    fn parses_rsa_with_default_exponent() {
        let mut w = Writer::new();
        w.u16(ALG_RSA).u16(ALG_SHA256).u32(AK_ATTRIBUTES).u16(0);
        w.u16(ALG_NULL).u16(0x0014).u16(ALG_SHA256).u16(2048).u32(0);
        w.tpm2b(&[0xab; 256]).unwrap();
        let ak = AkPublic::from_tpmt(&w.into_bytes()).unwrap();
        assert_eq!(
            ak.key,
            PublicKey::Rsa {
                modulus: vec![0xab; 256],
                exponent: 65537
            }
        );
    }

    #[test]
    fn other_curves_and_trailing_bytes_are_refused() {
        let mut tpmt = ecc_public(AK_ATTRIBUTES);
        tpmt[17] = 0x04; // curve P-384
        assert!(matches!(
            AkPublic::from_tpmt(&tpmt),
            Err(TpmError::UnsupportedAlgorithm {
                what: "ECC curve",
                ..
            })
        ));
        let mut tpmt = ecc_public(AK_ATTRIBUTES);
        tpmt.push(0);
        assert!(matches!(
            AkPublic::from_tpmt(&tpmt),
            Err(TpmError::Malformed { .. })
        ));
    }
}
