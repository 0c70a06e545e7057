//! Binding the runner's keys to evidence: the 64-byte report_data.
//!
//! ```text
//! report_data = SHA-512( enc(DOMAIN)
//!                        ‖ u64be(number of keys)
//!                        ‖ for each key, in order: enc(algorithm) ‖ enc(public key)
//!                        ‖ enc(nonce)
//!                        ‖ enc(context) )
//! enc(x)      = u64be(len(x)) ‖ x
//! DOMAIN      = "smart-worker/attest/report-data/v1"
//! ```
//!
//! Every field is length-prefixed, so no two different inputs encode to the same bytes (moving a
//! byte from the nonce to the context changes the hash), and the domain string keeps this hash
//! apart from any other SHA-512 the appliance computes. SHA-512's 64 bytes fill report_data
//! exactly (SNP REPORT_DATA and TDX REPORTDATA are both 64 bytes).

use sha2::{Digest, Sha512};

/// The domain-separation string, version 1.
pub const REPORT_DATA_DOMAIN: &str = "smart-worker/attest/report-data/v1";

/// A public key bound into report_data, with the name of its algorithm
/// (e.g. `"ed25519"`, `"x25519"`, `"secp256k1"`), so that the same bytes under another
/// algorithm do not match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundKey<'a> {
    /// Algorithm name, as the verifier will spell it.
    pub algorithm: &'a str,
    /// The public key's bytes in that algorithm's usual encoding.
    pub public_key: &'a [u8],
}

/// The report_data that binds `keys` (in order), the verifier's `nonce` and a `context` string
/// (what the evidence is for) to a report or quote.
pub fn report_data_for(keys: &[BoundKey<'_>], nonce: &[u8], context: &[u8]) -> [u8; 64] {
    let mut h = Sha512::new();
    put(&mut h, REPORT_DATA_DOMAIN.as_bytes());
    h.update((keys.len() as u64).to_be_bytes());
    for key in keys {
        put(&mut h, key.algorithm.as_bytes());
        put(&mut h, key.public_key);
    }
    put(&mut h, nonce);
    put(&mut h, context);
    h.finalize().into()
}

fn put(h: &mut Sha512, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: [u8; 32] = {
        let mut k = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            k[i] = i as u8;
            i += 1;
        }
        k
    };
    const X: [u8; 32] = [0xff; 32];

    fn keys() -> [BoundKey<'static>; 2] {
        [
            BoundKey {
                algorithm: "ed25519",
                public_key: &ED,
            },
            BoundKey {
                algorithm: "x25519",
                public_key: &X,
            },
        ]
    }

    const NONCE: [u8; 16] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ];
    const CONTEXT: &[u8] = b"smart-worker runner /attestation";

    /// Known answers computed independently with Python's hashlib from the encoding in the
    /// module documentation (see README.md, "report_data binding").
    #[test]
    fn matches_independent_known_answers() {
        assert_eq!(
            hex::encode(report_data_for(&keys(), &NONCE, CONTEXT)),
            "0f2c5e6c43ec140f61d5b1db3d7c09abee3ecaf89d80f55be41452642170228f\
             05e675da189939e8945ae1917ee3c04258d3aa0f59c05a85a83d50f648267b3f"
        );
        assert_eq!(
            hex::encode(report_data_for(&[], b"", b"")),
            "8fa783efe69da445b8cca400b045e478bfb328a6a654f00f37cd170e174bf2e8\
             978430f7951914d4539474c9d4707b6cd999109183e7a10acd2e581ff68d33b1"
        );
    }

    #[test]
    fn every_input_changes_the_result() {
        let base = report_data_for(&keys(), &NONCE, CONTEXT);
        let mut k = keys();
        k[0].algorithm = "ed448";
        assert_ne!(report_data_for(&k, &NONCE, CONTEXT), base);
        let other = [1u8; 32];
        let mut k = keys();
        k[1].public_key = &other;
        assert_ne!(report_data_for(&k, &NONCE, CONTEXT), base);
        let k = keys();
        assert_ne!(report_data_for(&[k[1], k[0]], &NONCE, CONTEXT), base);
        assert_ne!(report_data_for(&k[..1], &NONCE, CONTEXT), base);
        assert_ne!(report_data_for(&keys(), &NONCE[1..], CONTEXT), base);
        assert_ne!(report_data_for(&keys(), &NONCE, b"other"), base);
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        // The same concatenated bytes split differently between nonce and context.
        assert_ne!(
            report_data_for(&[], b"ab", b"c"),
            report_data_for(&[], b"a", b"bc")
        );
        // Algorithm bytes moved into the key.
        let a = [BoundKey {
            algorithm: "ed",
            public_key: b"25519k",
        }];
        let b = [BoundKey {
            algorithm: "ed25519",
            public_key: b"k",
        }];
        assert_ne!(report_data_for(&a, b"", b""), report_data_for(&b, b"", b""));
    }
}
