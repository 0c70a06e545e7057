//! The evidence extension's value: a CBOR CMW record (IETF RATS, draft-ietf-rats-msg-wrap)
//! `[media type, bytes]` whose bytes are the evidence JSON compressed with raw DEFLATE
//! (RFC 1951), media type [`EVIDENCE_MEDIA_TYPE_DEFLATE`].
//!
//! Why not the JSON record (`["<media type>", "<base64url>"]`, still read): a certificate must
//! stay under 64 KiB (webpki's DER lengths, rustls's handshake messages), and evidence with a
//! TPM event log (30–60 KB on the clouds) base64-encoded twice does not fit. Compressed once,
//! unencoded, Google's 45 KB N2D log takes about 33 KB.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Media type of the compressed evidence (CBOR record).
pub const EVIDENCE_MEDIA_TYPE_DEFLATE: &str = "application/vnd.smart-worker.evidence+json+deflate";
/// Media type of the plain evidence (JSON record, base64url value; read, no longer written).
pub const EVIDENCE_MEDIA_TYPE: &str = "application/vnd.smart-worker.evidence+json";
/// Evidence JSON longer than this, once inflated, is refused (a 64 KiB certificate could
/// otherwise inflate to ~64 MiB).
pub const MAX_EVIDENCE_JSON: usize = 4 << 20;

/// The record for `evidence_json`.
pub fn encode(evidence_json: &[u8]) -> Vec<u8> {
    let compressed = miniz_oxide::deflate::compress_to_vec(evidence_json, 9);
    let media = EVIDENCE_MEDIA_TYPE_DEFLATE.as_bytes();
    let mut out = vec![0x82]; // array of two
    head(&mut out, 3, media.len());
    out.extend_from_slice(media);
    head(&mut out, 2, compressed.len());
    out.extend_from_slice(&compressed);
    out
}

/// The evidence JSON of a record: the CBOR record above, or the older JSON record.
pub fn decode(record: &[u8]) -> Result<Vec<u8>, String> {
    match record.first() {
        Some(0x82) => decode_cbor(&record[1..]),
        Some(b'[') => decode_json(record),
        _ => Err("not a CMW record (CBOR array or JSON array)".into()),
    }
}

fn decode_cbor(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let media = item(&mut rest, 3)?;
    let value = item(&mut rest, 2)?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the CMW record", rest.len()));
    }
    if media != EVIDENCE_MEDIA_TYPE_DEFLATE.as_bytes() {
        return Err(format!(
            "unknown media type {:?}",
            String::from_utf8_lossy(media)
        ));
    }
    miniz_oxide::inflate::decompress_to_vec_with_limit(value, MAX_EVIDENCE_JSON)
        .map_err(|e| format!("the compressed evidence does not inflate: {e}"))
}

fn decode_json(record: &[u8]) -> Result<Vec<u8>, String> {
    let (media, value): (String, String) =
        serde_json::from_slice(record).map_err(|e| e.to_string())?;
    if media != EVIDENCE_MEDIA_TYPE {
        return Err(format!("unknown media type {media:?}"));
    }
    URL_SAFE_NO_PAD
        .decode(value.as_bytes())
        .map_err(|e| e.to_string())
}

/// A CBOR head: major type and length (RFC 8949, 3.1), shortest form.
fn head(out: &mut Vec<u8>, major: u8, len: usize) {
    let m = major << 5;
    match len {
        0..=23 => out.push(m | len as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, len as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 26);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

/// One definite-length text (3) or byte (2) string of major type `major`.
fn item<'a>(rest: &mut &'a [u8], major: u8) -> Result<&'a [u8], String> {
    let bad = || format!("malformed CMW record: expected a CBOR major type {major} string");
    let (&first, tail) = rest.split_first().ok_or_else(bad)?;
    if first >> 5 != major {
        return Err(bad());
    }
    let (len, tail) = match first & 0x1f {
        n @ 0..=23 => (usize::from(n), tail),
        24 => (usize::from(*tail.first().ok_or_else(bad)?), &tail[1..]),
        25 if tail.len() >= 2 => (
            usize::from(u16::from_be_bytes([tail[0], tail[1]])),
            &tail[2..],
        ),
        26 if tail.len() >= 4 => (
            u32::from_be_bytes([tail[0], tail[1], tail[2], tail[3]]) as usize,
            &tail[4..],
        ),
        _ => return Err(bad()),
    };
    if tail.len() < len {
        return Err(bad());
    }
    let (value, after) = tail.split_at(len);
    *rest = after;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_the_json_form_is_still_read() {
        for json in [&b"{}"[..], &[b'x'; 70_000][..]] {
            let record = encode(json);
            assert_eq!(record[0], 0x82);
            assert_eq!(decode(&record).unwrap(), json);
        }
        let old = serde_json::json!([EVIDENCE_MEDIA_TYPE, URL_SAFE_NO_PAD.encode(b"{\"a\":1}")]);
        assert_eq!(decode(old.to_string().as_bytes()).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn malformed_records_are_refused() {
        let good = encode(b"{\"version\":1}");
        assert!(decode(&good[..good.len() - 1]).is_err(), "truncated");
        let mut extra = good.clone();
        extra.push(0);
        assert!(decode(&extra).is_err(), "trailing bytes");
        let mut other_type = good.clone();
        other_type[3] ^= 1; // a letter of the media type
        assert!(decode(&other_type).unwrap_err().contains("media type"));
        assert!(decode(b"").is_err() && decode(b"\x81").is_err());
        let mut bad_deflate = encode(b"{}");
        let last = bad_deflate.len() - 1;
        bad_deflate[last] ^= 0xff;
        assert!(decode(&bad_deflate).is_err());
    }

    #[test]
    fn a_decompression_bomb_is_refused() {
        let bomb = encode(&vec![b' '; MAX_EVIDENCE_JSON + 1]);
        assert!(bomb.len() < 64 << 10);
        assert!(decode(&bomb).unwrap_err().contains("inflate"));
    }
}
