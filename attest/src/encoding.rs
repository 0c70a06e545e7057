//! Serde helpers for the evidence format: variable-length blobs as standard base64 (with
//! padding), fixed-size digests as lowercase hex.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

/// `Vec<u8>` as standard base64 with padding.
pub(crate) mod b64 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text.as_bytes()).map_err(D::Error::custom)
    }
}

/// `Option<Vec<u8>>` as standard base64 with padding (`None` is skipped or null).
pub(crate) mod b64_opt {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => s.serialize_str(&STANDARD.encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        STANDARD
            .decode(text.as_bytes())
            .map(Some)
            .map_err(D::Error::custom)
    }
}

/// `Vec<u8>` as lowercase hex (upper case accepted on input).
pub(crate) mod hex_vec {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text.trim()).map_err(D::Error::custom)
    }
}

/// `[u8; N]` as lowercase hex of exactly `2 * N` digits.
pub(crate) mod hex_array {
    use super::*;

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(d)?;
        parse::<N>(&text).map_err(D::Error::custom)
    }
}

/// Parses exactly `N` bytes of hex.
pub(crate) fn parse<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let bytes = hex::decode(text.trim()).map_err(|e| format!("invalid hex: {e}"))?;
    <[u8; N]>::try_from(bytes.as_slice())
        .map_err(|_| format!("expected {N} bytes of hex, got {}", bytes.len()))
}
