//! The sealed file formats (version 1): pure functions from bytes to bytes, no I/O.
//!
//! Record file (`<kind>/<name>.rec`):
//!
//! ```text
//! "SWSR"  version=1  store_id[16]  kind_len u8  kind  name_len u8  name  ct_len u64 (BE)
//! nonce[24]  ciphertext || tag[16]          (ct_len = plaintext length + 16)
//! ```
//!
//! Store id file (`store-id`):
//!
//! ```text
//! "SWSI"  version=1  nonce[24]  ciphertext(store_id[16]) || tag[16]
//! ```
//!
//! XChaCha20-Poly1305; the associated data is every byte before the nonce, so the magic, the
//! version, the store id, the kind, the name and the length are all authenticated. The header
//! fields are also in clear so a refusal can say *why* (foreign, misplaced, truncated) before the
//! tag check; any refusal is final for that record whatever its reason.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

use super::error::Refused;

/// First bytes of a record file.
pub(crate) const RECORD_MAGIC: &[u8; 4] = b"SWSR";
/// First bytes of the store-id file.
pub(crate) const STORE_ID_MAGIC: &[u8; 4] = b"SWSI";
/// The only format version written and read.
pub(crate) const VERSION: u8 = 1;
/// Random per state directory; bound into every record.
pub(crate) type StoreId = [u8; 16];

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// The AEAD key of one state directory.
pub(crate) struct Sealer {
    aead: XChaCha20Poly1305,
}

/// What a record's header says it is.
pub(crate) struct RecordId<'a> {
    pub store_id: &'a StoreId,
    pub kind: &'a str,
    pub name: &'a str,
}

impl Sealer {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Sealer {
            aead: XChaCha20Poly1305::new(&Key::from(*key)),
        }
    }

    /// A sealed record. Kind and name must already be valid (≤ 255 bytes each).
    pub(crate) fn seal_record(
        &self,
        id: &RecordId<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, getrandom::Error> {
        let ct_len = (plaintext.len() + TAG_LEN) as u64;
        let mut out = Vec::with_capacity(64 + id.kind.len() + id.name.len() + plaintext.len());
        out.extend_from_slice(RECORD_MAGIC);
        out.push(VERSION);
        out.extend_from_slice(id.store_id);
        push_short(&mut out, id.kind);
        push_short(&mut out, id.name);
        out.extend_from_slice(&ct_len.to_be_bytes());
        self.seal_after_header(out, plaintext)
    }

    /// Opens a record file that should be `expected` (store id, kind and name).
    pub(crate) fn open_record(
        &self,
        expected: &RecordId<'_>,
        file: &[u8],
    ) -> Result<Vec<u8>, Refused> {
        let mut r = Reader::new(file);
        check_magic(&mut r, RECORD_MAGIC)?;
        let store_id = r.take(16).ok_or(truncated(file))?;
        let kind = r.short_str().ok_or(truncated(file))?;
        let name = r.short_str().ok_or(truncated(file))?;
        let ct_len = r.take(8).ok_or(truncated(file))?;
        let ct_len = u64::from_be_bytes(ct_len.try_into().map_err(|_| truncated(file))?);
        let header_len = r.pos;
        let expected_len = (header_len as u64)
            .saturating_add(NONCE_LEN as u64)
            .saturating_add(ct_len);
        let found = file.len() as u64;
        if found < expected_len || ct_len < TAG_LEN as u64 {
            return Err(Refused::Truncated {
                expected: expected_len,
                found,
            });
        }
        if found > expected_len {
            // Bytes appended after the ciphertext.
            return Err(Refused::Tampered);
        }
        if store_id != expected.store_id {
            return Err(Refused::Foreign);
        }
        let (Ok(kind), Ok(name)) = (std::str::from_utf8(kind), std::str::from_utf8(name)) else {
            return Err(Refused::Tampered);
        };
        if kind != expected.kind || name != expected.name {
            // Header values are shown in logs: only if they are plain ids.
            if super::validate_name("kind", kind).is_err()
                || super::validate_name("name", name).is_err()
            {
                return Err(Refused::Tampered);
            }
            return Err(Refused::Misplaced {
                kind: kind.to_owned(),
                name: name.to_owned(),
            });
        }
        self.open_after_header(file, header_len)
    }

    /// The sealed store-id file.
    pub(crate) fn seal_store_id(&self, id: &StoreId) -> Result<Vec<u8>, getrandom::Error> {
        let mut out = Vec::with_capacity(5 + NONCE_LEN + 16 + TAG_LEN);
        out.extend_from_slice(STORE_ID_MAGIC);
        out.push(VERSION);
        self.seal_after_header(out, id)
    }

    /// Opens the store-id file.
    pub(crate) fn open_store_id(&self, file: &[u8]) -> Result<StoreId, Refused> {
        let mut r = Reader::new(file);
        check_magic(&mut r, STORE_ID_MAGIC)?;
        let expected = (r.pos + NONCE_LEN + 16 + TAG_LEN) as u64;
        let found = file.len() as u64;
        if found < expected {
            return Err(Refused::Truncated { expected, found });
        }
        if found > expected {
            return Err(Refused::Tampered);
        }
        let id = self.open_after_header(file, r.pos)?;
        id.try_into().map_err(|_| Refused::Tampered)
    }

    /// Appends a fresh random nonce and the ciphertext of `plaintext` with `header` as
    /// associated data.
    fn seal_after_header(
        &self,
        mut header: Vec<u8>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, getrandom::Error> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)?;
        let ct = self
            .aead
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &header,
                },
            )
            // Only fails for messages beyond ChaCha20's 256 GiB per nonce.
            .unwrap_or_else(|_| unreachable!("record larger than XChaCha20 allows"));
        header.extend_from_slice(&nonce);
        header.extend_from_slice(&ct);
        Ok(header)
    }

    fn open_after_header(&self, file: &[u8], header_len: usize) -> Result<Vec<u8>, Refused> {
        let (header, rest) = file.split_at(header_len);
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| Refused::Tampered)?;
        self.aead
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: header,
                },
            )
            .map_err(|_| Refused::Tampered)
    }
}

fn push_short(out: &mut Vec<u8>, s: &str) {
    // Callers validate names (≤ 128 bytes); a longer one would be a bug, not input.
    debug_assert!(s.len() <= u8::MAX as usize);
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

fn truncated(file: &[u8]) -> Refused {
    // The header itself is cut off: we cannot know the full length; at least one more byte.
    Refused::Truncated {
        expected: file.len() as u64 + 1,
        found: file.len() as u64,
    }
}

fn check_magic(r: &mut Reader<'_>, magic: &[u8; 4]) -> Result<(), Refused> {
    match r.take(4) {
        Some(m) if m == magic => {}
        Some(_) => return Err(Refused::NotSealed),
        None if magic.starts_with(r.rest()) && !r.rest().is_empty() => {
            return Err(truncated(r.buf))
        }
        None => return Err(Refused::NotSealed),
    }
    match r.take(1) {
        Some([VERSION]) => Ok(()),
        Some([v]) => Err(Refused::UnsupportedVersion(*v)),
        _ => Err(truncated(r.buf)),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(out)
    }

    fn short_str(&mut self) -> Option<&'a [u8]> {
        let len = *self.take(1)?.first()?;
        self.take(len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: StoreId = [1; 16];

    fn id<'a>(store_id: &'a StoreId, kind: &'a str, name: &'a str) -> RecordId<'a> {
        RecordId {
            store_id,
            kind,
            name,
        }
    }

    /// The header is in the associated data, not only checked in clear: a file whose clear
    /// header is rewritten to match what the reader expects still fails authentication.
    #[test]
    fn rewritten_header_fields_fail_authentication() {
        let sealer = Sealer::new(&[9; 32]);
        let file = sealer
            .seal_record(&id(&STORE, "workers", "aaaa"), b"payload")
            .unwrap();
        assert_eq!(
            sealer
                .open_record(&id(&STORE, "workers", "aaaa"), &file)
                .unwrap(),
            b"payload"
        );

        // Store id rewritten to the reader's own.
        let other: StoreId = [2; 16];
        let mut f = file.clone();
        f[5..21].copy_from_slice(&other);
        assert!(matches!(
            sealer.open_record(&id(&other, "workers", "aaaa"), &f),
            Err(Refused::Tampered)
        ));
        // Name rewritten (same length) to the file it was renamed to.
        let mut f = file.clone();
        let at = f.windows(4).position(|w| w == b"aaaa").unwrap();
        f[at..at + 4].copy_from_slice(b"bbbb");
        assert!(matches!(
            sealer.open_record(&id(&STORE, "workers", "bbbb"), &f),
            Err(Refused::Tampered)
        ));
        // Version byte: refused before anything else.
        let mut f = file.clone();
        f[4] = 2;
        assert!(matches!(
            sealer.open_record(&id(&STORE, "workers", "aaaa"), &f),
            Err(Refused::UnsupportedVersion(2))
        ));
        // Another key.
        assert!(matches!(
            Sealer::new(&[8; 32]).open_record(&id(&STORE, "workers", "aaaa"), &file),
            Err(Refused::Tampered)
        ));
    }

    #[test]
    fn nonces_are_fresh_per_write() {
        let sealer = Sealer::new(&[9; 32]);
        let a = sealer.seal_record(&id(&STORE, "k", "n"), b"same").unwrap();
        let b = sealer.seal_record(&id(&STORE, "k", "n"), b"same").unwrap();
        assert_ne!(a, b);
        let s = sealer.seal_store_id(&STORE).unwrap();
        assert_eq!(sealer.open_store_id(&s).unwrap(), STORE);
        assert!(matches!(
            sealer.open_store_id(&s[..s.len() - 1]),
            Err(Refused::Truncated { .. })
        ));
        assert!(matches!(sealer.open_store_id(&a), Err(Refused::NotSealed)));
    }
}
