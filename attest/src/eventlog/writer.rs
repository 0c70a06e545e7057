//! Test support: writes crypto-agile event logs (`TCG_PCR_EVENT2` records after a Spec ID
//! header), to build logs whose every byte the test controls.

use super::{EventType, HashAlg};

/// A log being written.
pub(crate) struct LogWriter {
    algs: Vec<HashAlg>,
    bytes: Vec<u8>,
}

impl LogWriter {
    /// A log with the Spec ID header event declaring `algs` (header index `header_index`: 0 in
    /// TPM logs, 1 in TDVF's CCEL).
    pub(crate) fn new(header_index: u32, algs: &[HashAlg]) -> Self {
        let mut spec = b"Spec ID Event03\0".to_vec();
        spec.extend_from_slice(&0u32.to_le_bytes()); // platform class
        spec.extend_from_slice(&[0, 2, 0, 2]); // version 2.0, errata 0, uintnSize 2 (64-bit)
        spec.extend_from_slice(&(algs.len() as u32).to_le_bytes());
        for a in algs {
            spec.extend_from_slice(&a.id().to_le_bytes());
            spec.extend_from_slice(&(a.size() as u16).to_le_bytes());
        }
        spec.push(0); // no vendor info
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&header_index.to_le_bytes());
        bytes.extend_from_slice(&EventType::NoAction.as_u32().to_le_bytes());
        bytes.extend_from_slice(&[0; 20]);
        bytes.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&spec);
        LogWriter {
            algs: algs.to_vec(),
            bytes,
        }
    }

    /// A measured event whose digests are the hashes of `data` (as firmware logs e.g. separators).
    pub(crate) fn measure(&mut self, index: u32, event_type: EventType, data: &[u8]) -> &mut Self {
        let digests: Vec<(HashAlg, Vec<u8>)> =
            self.algs.iter().map(|a| (*a, a.hash(data))).collect();
        self.event(index, event_type, &digests, data)
    }

    /// An event with the digests given (e.g. an application's Authenticode digest).
    pub(crate) fn event(
        &mut self,
        index: u32,
        event_type: EventType,
        digests: &[(HashAlg, Vec<u8>)],
        data: &[u8],
    ) -> &mut Self {
        self.bytes.extend_from_slice(&index.to_le_bytes());
        self.bytes
            .extend_from_slice(&event_type.as_u32().to_le_bytes());
        self.bytes
            .extend_from_slice(&(digests.len() as u32).to_le_bytes());
        for (alg, digest) in digests {
            self.bytes.extend_from_slice(&alg.id().to_le_bytes());
            self.bytes.extend_from_slice(digest);
        }
        self.bytes
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(data);
        self
    }

    /// An EV_NO_ACTION event (all-zero digests), e.g. StartupLocality.
    pub(crate) fn no_action(&mut self, index: u32, data: &[u8]) -> &mut Self {
        let digests: Vec<(HashAlg, Vec<u8>)> =
            self.algs.iter().map(|a| (*a, vec![0; a.size()])).collect();
        self.event(index, EventType::NoAction, &digests, data)
    }

    /// The log's bytes.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }
}
