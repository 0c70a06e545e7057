//! The SEV-SNP certificate table (GHCB specification, "SNP Extended Guest Request"): the format
//! of configfs-tsm's `auxblob`. Entries of `{ guid: [u8; 16], offset: u32 LE, length: u32 LE }`
//! relative to the table start, ended by an all-zero entry, then the certificates.

use crate::evidence::{CertKind, SnpCert};

const ENTRY_LEN: usize = 24;
/// More entries than any host sends; bounds the parse.
const MAX_ENTRIES: usize = 64;

/// The GUID's 16 bytes in canonical text form (the byte order the table uses, as the `sev`
/// crate reads it with `Uuid::from_bytes`).
pub(crate) fn guid_text(bytes: &[u8; 16]) -> String {
    let h = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
fn guid_bytes(text: &str) -> Option<[u8; 16]> {
    crate::encoding::parse::<16>(&text.replace('-', "")).ok()
}

/// Parses a certificate table. An empty blob is an empty table.
pub(crate) fn parse(blob: &[u8]) -> Result<Vec<SnpCert>, String> {
    let mut certs = Vec::new();
    if blob.is_empty() {
        return Ok(certs);
    }
    let mut pos = 0usize;
    loop {
        let Some(entry) = blob.get(pos..pos + ENTRY_LEN) else {
            return Err(format!("entry at {pos} runs past the end (no terminator)"));
        };
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&entry[..16]);
        let offset = u32::from_le_bytes([entry[16], entry[17], entry[18], entry[19]]) as usize;
        let length = u32::from_le_bytes([entry[20], entry[21], entry[22], entry[23]]) as usize;
        if guid == [0; 16] && offset == 0 && length == 0 {
            return Ok(certs);
        }
        if certs.len() == MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} entries"));
        }
        let data = offset
            .checked_add(length)
            .and_then(|end| blob.get(offset..end))
            .ok_or_else(|| {
                format!(
                    "entry {} points past the end ({offset}+{length})",
                    certs.len()
                )
            })?;
        certs.push(SnpCert {
            kind: CertKind::from_guid(&guid_text(&guid)),
            der: data.to_vec(),
        });
        pos += ENTRY_LEN;
    }
}

/// Encodes a certificate table (the inverse of [`parse`]).
#[cfg(test)]
pub(crate) fn encode(certs: &[SnpCert]) -> Vec<u8> {
    let header = (certs.len() + 1) * ENTRY_LEN;
    let mut table = Vec::with_capacity(header);
    let mut data = Vec::new();
    for cert in certs {
        let guid = guid_bytes(&cert.kind.guid()).unwrap_or([0; 16]);
        table.extend_from_slice(&guid);
        table.extend_from_slice(&((header + data.len()) as u32).to_le_bytes());
        table.extend_from_slice(&(cert.der.len() as u32).to_le_bytes());
        data.extend_from_slice(&cert.der);
    }
    table.extend_from_slice(&[0; ENTRY_LEN]);
    table.extend_from_slice(&data);
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<SnpCert> {
        vec![
            SnpCert {
                kind: CertKind::Vcek,
                der: vec![1, 2, 3, 4],
            },
            SnpCert {
                kind: CertKind::Ask,
                der: vec![5; 10],
            },
            SnpCert {
                kind: CertKind::Ark,
                der: vec![6; 3],
            },
        ]
    }

    #[test]
    fn round_trips_and_reads_guids_in_table_byte_order() {
        let blob = encode(&sample());
        // The VCEK GUID 63da758d-… is stored as the bytes 63 da 75 8d ….
        assert_eq!(&blob[..4], &[0x63, 0xda, 0x75, 0x8d]);
        assert_eq!(parse(&blob).unwrap(), sample());
        assert!(parse(&[]).unwrap().is_empty());
    }

    #[test]
    fn rejects_truncated_and_out_of_range_tables() {
        let blob = encode(&sample());
        // One entry (pointing at its own first bytes) and no terminator.
        let mut lone = encode(&sample())[..ENTRY_LEN].to_vec();
        lone[16..24].copy_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
        assert!(parse(&lone).unwrap_err().contains("no terminator"));
        // Cut the data: the last certificate points past the end.
        assert!(parse(&blob[..blob.len() - 1])
            .unwrap_err()
            .contains("past the end"));
    }
}
