//! Management tokens: who may manage a worker.
//!
//! Creating a worker mints a token of 256 random bits, shown to the creator
//! once. The runner keeps only its SHA-256 and compares hashes in constant
//! time; a runner-wide admin token (from configuration) is kept the same way.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde::Serialize;
use sha2::Digest;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Token prefix: makes a leaked token easy to recognise (and to scan for).
const PREFIX: &str = "swt_";

/// A freshly minted token, to hand to the creator exactly once.
pub struct ManagementToken(String);

impl ManagementToken {
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(Self(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))))
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }

    /// The token text, for the creation response only.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ManagementToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ManagementToken(…)")
    }
}

/// What the runner keeps of a token.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenHash(#[serde(with = "hex_bytes")] [u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `presented` is the token this hash was made from, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let presented = Self::of(presented);
        bool::from(self.0.ct_eq(&presented.0))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(…)")
    }
}

mod hex_bytes {
    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(text).map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("a token hash is 32 bytes"))
    }
}

/// Who a request proves to be, for one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No `Authorization: Bearer` token at all.
    Anonymous,
    /// A token that is neither the worker's nor the admin's.
    Denied,
    Owner,
    Admin,
}

/// Decides a request's access to a worker whose token hash is `owner` (`None` when no such
/// worker exists: the answer for a wrong token must not tell whether the id exists).
pub fn access(
    presented: Option<&str>,
    owner: Option<&TokenHash>,
    admin: Option<&TokenHash>,
) -> Access {
    let Some(presented) = presented else {
        return Access::Anonymous;
    };
    // Compare against a hash even when the worker is unknown, so both paths cost the same.
    let unknown = TokenHash([0u8; 32]);
    let is_owner = owner.unwrap_or(&unknown).matches(presented) && owner.is_some();
    let is_admin = admin.is_some_and(|admin| admin.matches(presented));
    if is_owner {
        Access::Owner
    } else if is_admin {
        Access::Admin
    } else {
        Access::Denied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let a = ManagementToken::generate().unwrap();
        let b = ManagementToken::generate().unwrap();
        assert_ne!(a.reveal(), b.reveal());
        assert!(a.reveal().starts_with(PREFIX));
        // 32 bytes in unpadded base64url.
        assert_eq!(a.reveal().len(), PREFIX.len() + 43);
        assert!(a.hash().matches(a.reveal()));
        assert!(!a.hash().matches(b.reveal()));
        assert!(!format!("{a:?}{:?}", a.hash()).contains(&a.reveal()[PREFIX.len()..]));
    }

    #[test]
    fn access_decisions() {
        let owner = ManagementToken::generate().unwrap();
        let other = ManagementToken::generate().unwrap();
        let admin = TokenHash::of("admin-secret");
        let hash = owner.hash();
        assert_eq!(access(None, Some(&hash), Some(&admin)), Access::Anonymous);
        assert_eq!(
            access(Some(owner.reveal()), Some(&hash), None),
            Access::Owner
        );
        assert_eq!(
            access(Some(other.reveal()), Some(&hash), None),
            Access::Denied
        );
        assert_eq!(access(Some(""), Some(&hash), None), Access::Denied);
        assert_eq!(
            access(Some("admin-secret"), Some(&hash), Some(&admin)),
            Access::Admin
        );
        assert_eq!(
            access(Some("admin-secret"), None, Some(&admin)),
            Access::Admin
        );
        assert_eq!(
            access(Some(owner.reveal()), None, Some(&admin)),
            Access::Denied
        );
    }

    #[test]
    fn hashes_roundtrip_through_json() {
        let hash = TokenHash::of("x");
        let json = serde_json::to_string(&hash).unwrap();
        let back: TokenHash = serde_json::from_str(&json).unwrap();
        assert!(back == hash);
    }
}
