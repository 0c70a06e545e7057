//! Typed TPM errors: talking to a TPM (transport, response codes) and checking a quote, one
//! variant per failed check.

use std::fmt;
use std::io;

/// A TPM 2.0 response code, decoded to the condition it names (TPM 2.0 Part 2, 6.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseCode {
    /// TPM_RC_INITIALIZE: the TPM is already started (Startup twice) or not started yet.
    Initialize,
    /// TPM_RC_FAILURE: the TPM is in failure mode.
    Failure,
    /// TPM_RC_COMMAND_CODE: the TPM does not implement the command.
    CommandCode,
    /// TPM_RC_VALUE: a parameter value is out of range.
    Value,
    /// TPM_RC_SIZE: a size is wrong.
    Size,
    /// TPM_RC_HANDLE: the handle does not exist (no such object, PCR or NV index).
    Handle,
    /// TPM_RC_ATTRIBUTES: the object or NV index does not allow this.
    Attributes,
    /// TPM_RC_SCHEME: the signing scheme does not fit the key.
    Scheme,
    /// TPM_RC_AUTH_FAIL / TPM_RC_BAD_AUTH: the authorization was refused.
    AuthFail,
    /// TPM_RC_AUTH_MISSING / TPM_RC_NV_AUTHORIZATION: the wrong or no authorization was given.
    AuthMissing,
    /// TPM_RC_NV_RANGE: read or write outside an NV index.
    NvRange,
    /// TPM_RC_NV_UNINITIALIZED: the NV index was never written.
    NvUninitialized,
    /// TPM_RC_NV_DEFINED: the NV index already exists.
    NvDefined,
    /// TPM_RC_OBJECT_MEMORY: no room for another loaded object (flush some).
    ObjectMemory,
    /// TPM_RC_RETRY / TPM_RC_TESTING / TPM_RC_YIELDED: transient, the command may be sent again.
    Retry,
    /// TPM_RC_LOCKOUT: dictionary-attack lockout.
    Lockout,
    /// Any other code (the raw value is in [`TpmError::Command`]).
    Other,
}

impl ResponseCode {
    /// Classifies a raw response code (layer bits, handle/parameter/session numbers ignored).
    pub fn from_raw(rc: u32) -> Self {
        let rc = rc & 0xffff;
        let base = if rc & 0x80 != 0 {
            // Format 1: error number in bits 0..5, the rest names a handle/parameter/session.
            (rc & 0x3f) | 0x80
        } else {
            rc & 0xfff
        };
        match base {
            0x100 => Self::Initialize,
            0x101 => Self::Failure,
            0x143 => Self::CommandCode,
            0x084 => Self::Value,
            0x095 | 0x087 => Self::Size,
            0x08b => Self::Handle,
            0x082 => Self::Attributes,
            0x092 => Self::Scheme,
            0x08e | 0x0a2 => Self::AuthFail,
            0x125 | 0x149 => Self::AuthMissing,
            0x146 => Self::NvRange,
            0x14a => Self::NvUninitialized,
            0x14c => Self::NvDefined,
            0x902..=0x904 => Self::ObjectMemory,
            0x922 | 0x90a | 0x908 => Self::Retry,
            0x921 => Self::Lockout,
            _ => Self::Other,
        }
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Initialize => "TPM_RC_INITIALIZE",
            Self::Failure => "TPM_RC_FAILURE",
            Self::CommandCode => "TPM_RC_COMMAND_CODE",
            Self::Value => "TPM_RC_VALUE",
            Self::Size => "TPM_RC_SIZE",
            Self::Handle => "TPM_RC_HANDLE",
            Self::Attributes => "TPM_RC_ATTRIBUTES",
            Self::Scheme => "TPM_RC_SCHEME",
            Self::AuthFail => "authorization failed",
            Self::AuthMissing => "authorization missing or wrong",
            Self::NvRange => "TPM_RC_NV_RANGE",
            Self::NvUninitialized => "TPM_RC_NV_UNINITIALIZED",
            Self::NvDefined => "TPM_RC_NV_DEFINED",
            Self::ObjectMemory => "TPM_RC_OBJECT_MEMORY",
            Self::Retry => "retry (TPM busy or testing)",
            Self::Lockout => "TPM_RC_LOCKOUT",
            Self::Other => "TPM error",
        })
    }
}

/// Talking to a TPM, or checking what one produced, failed.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// The TPM device or socket could not be opened, written or read.
    #[error("TPM transport ({what}): {source}")]
    Transport {
        /// What was being done ("open /dev/tpmrm0", "write command").
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The TPM answered a command with an error code.
    #[error("TPM2_{command} failed: {code} (0x{raw:08x})")]
    Command {
        /// The command, e.g. "Quote".
        command: &'static str,
        /// The decoded code.
        code: ResponseCode,
        /// The raw response code.
        raw: u32,
    },
    /// Bytes (a response, a TPMS_ATTEST, a TPM2B_PUBLIC, a signature) do not parse.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was parsed.
        what: &'static str,
        /// Why it does not parse.
        reason: String,
    },
    /// A value is too large for its TPM field.
    #[error("{what} of {len} bytes exceeds {max}")]
    TooLarge {
        /// The field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The attestation structure does not start with TPM_GENERATED_VALUE: the TPM did not make it.
    #[error("TPMS_ATTEST magic 0x{0:08x} is not TPM_GENERATED_VALUE (0xff544347)")]
    BadMagic(u32),
    /// The attestation structure is not a quote (another TPM_ST_ATTEST_* type).
    #[error("TPMS_ATTEST type 0x{0:04x} is not TPM_ST_ATTEST_QUOTE (0x8018)")]
    NotAQuote(u16),
    /// An algorithm (key type, curve, scheme, hash, PCR bank) this verifier does not take.
    #[error("unsupported {what}: TPM algorithm 0x{alg:04x}")]
    UnsupportedAlgorithm {
        /// Which field ("signature scheme", "PCR bank", …).
        what: &'static str,
        /// The TPM_ALG_ID or TPM_ECC_CURVE value.
        alg: u16,
    },
    /// The attestation key is not a fixed, restricted signing key, so a TPMS_ATTEST it signs
    /// need not come from the TPM.
    #[error("the attestation key is not a restricted signing key fixed to its TPM (objectAttributes 0x{0:08x})")]
    NotAnAttestationKey(u32),
    /// The public key in the TPM2B_PUBLIC is not a valid P-256 point or RSA key.
    #[error("invalid attestation key public area: {0}")]
    BadPublicKey(String),
    /// The signature's algorithm does not fit the key (e.g. ECDSA with an RSA key).
    #[error("signature algorithm 0x{sig_alg:04x} does not fit the attestation key")]
    SignatureKeyMismatch {
        /// TPMT_SIGNATURE.sigAlg.
        sig_alg: u16,
    },
    /// The signature does not verify over the attestation structure with the key.
    #[error("the quote signature does not verify with the attestation key")]
    BadSignature,
    /// The quote's extraData is not the nonce derived from the expected report_data.
    #[error("quote nonce {got} differs from the expected {expected}")]
    NonceMismatch {
        /// Expected, hex.
        expected: String,
        /// Found in the quote, hex.
        got: String,
    },
    /// SHA-256 over the given PCR values is not the quote's pcrDigest.
    #[error("the PCR values do not hash to the quote's pcrDigest {quoted}")]
    PcrDigestMismatch {
        /// The quote's pcrDigest, hex.
        quoted: String,
    },
    /// The quote selects a PCR for which the evidence gives no value.
    #[error("PCR {0} is quoted but no value is given")]
    PcrMissing(u32),
    /// The evidence gives a value for a PCR the quote does not cover.
    #[error("PCR {0} has a value but is not in the quote's selection")]
    PcrNotQuoted(u32),
    /// A PCR value is not 32 bytes of hex.
    #[error("PCR {index} value is not 32 bytes of hex: {reason}")]
    BadPcrValue {
        /// The PCR.
        index: u32,
        /// Why.
        reason: String,
    },
    /// A PCR index outside 0..=23.
    #[error("PCR index {0} is out of range (0..=23)")]
    PcrOutOfRange(u32),
    /// Azure's HCL report does not parse or does not bind its runtime data.
    #[error(transparent)]
    Hcl(#[from] super::azure_hcl::HclError),
    /// The quote's AK is not the key the HCL report's runtime data names ("HCLAkPub").
    #[error("the quote's attestation key is not the HCL report's HCLAkPub")]
    AkNotInHclReport,
    /// The HCL report's user-data is not the expected report_data.
    #[error("HCL report user-data {got:?} differs from the expected report_data {expected}")]
    UserDataMismatch {
        /// Expected, hex.
        expected: String,
        /// Found (hex), or `None` when the runtime data has none.
        got: Option<String>,
    },
    /// A base64 field of TPM evidence does not decode.
    #[error("TPM evidence field {field}: {reason}")]
    BadEncoding {
        /// The JSON field.
        field: &'static str,
        /// The decoder's message.
        reason: String,
    },
}

impl TpmError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Transport {
            what: what.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_format_zero_and_format_one_codes() {
        assert_eq!(ResponseCode::from_raw(0x100), ResponseCode::Initialize);
        assert_eq!(ResponseCode::from_raw(0x14c), ResponseCode::NvDefined);
        assert_eq!(ResponseCode::from_raw(0x922), ResponseCode::Retry);
        // TPM_RC_HANDLE for handle 1 (0x100 = handle number 1).
        assert_eq!(ResponseCode::from_raw(0x18b), ResponseCode::Handle);
        // TPM_RC_VALUE for parameter 1 (bit 6 set, number in bits 8..11).
        assert_eq!(ResponseCode::from_raw(0x1c4), ResponseCode::Value);
        // TPM_RC_AUTH_FAIL for session 1 (0x900 | 0x8e).
        assert_eq!(ResponseCode::from_raw(0x98e), ResponseCode::AuthFail);
        // A resource-manager layer code keeps its TPM meaning.
        assert_eq!(
            ResponseCode::from_raw(0x000b_0902),
            ResponseCode::ObjectMemory
        );
        assert_eq!(ResponseCode::from_raw(0x12f), ResponseCode::Other);
    }
}
