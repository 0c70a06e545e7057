//! The structure a TPM signs for a quote: TPMS_ATTEST with TPMS_QUOTE_INFO (TPM 2.0 Part 2,
//! 10.12).

use super::error::TpmError;
use super::marshal::{Reader, Writer};
use super::types::PcrSelection;

/// TPM_GENERATED_VALUE: "\xffTCG", which only the TPM puts at the start of what it signs with a
/// restricted key.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// TPM_ST_ATTEST_QUOTE.
pub const ST_ATTEST_QUOTE: u16 = 0x8018;

/// TPMS_CLOCK_INFO: the TPM's clock when it signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered (since the last clear).
    pub clock: u64,
    /// TPM resets (power cycles) since the last clear.
    pub reset_count: u32,
    /// Restarts (resume from hibernation) since the last reset.
    pub restart_count: u32,
    /// Whether the clock has not gone backwards.
    pub safe: bool,
}

/// A parsed quote (TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteInfo {
    /// The signer's qualified name.
    pub qualified_signer: Vec<u8>,
    /// The caller's qualifyingData (our nonce).
    pub extra_data: Vec<u8>,
    /// The TPM's clock.
    pub clock_info: ClockInfo,
    /// The TPM's firmware version (vendor-specific).
    pub firmware_version: u64,
    /// The quoted PCRs, per bank, in the TPM's order.
    pub pcr_select: Vec<PcrSelection>,
    /// Digest (the AK's signing hash) over the selected PCR values in selection order.
    pub pcr_digest: Vec<u8>,
}

impl QuoteInfo {
    /// Parses a TPMS_ATTEST that fills `bytes` exactly. Fails with [`TpmError::BadMagic`] when
    /// the TPM did not generate it and [`TpmError::NotAQuote`] for other attestation types.
    pub fn parse(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes, "TPMS_ATTEST");
        let magic = r.u32()?;
        if magic != TPM_GENERATED_VALUE {
            return Err(TpmError::BadMagic(magic));
        }
        let kind = r.u16()?;
        if kind != ST_ATTEST_QUOTE {
            return Err(TpmError::NotAQuote(kind));
        }
        let qualified_signer = r.tpm2b()?.to_vec();
        let extra_data = r.tpm2b()?.to_vec();
        let clock_info = ClockInfo {
            clock: r.u64()?,
            reset_count: r.u32()?,
            restart_count: r.u32()?,
            safe: r.u8()? != 0,
        };
        let firmware_version = r.u64()?;
        let pcr_select = PcrSelection::read_list(&mut r)?;
        let pcr_digest = r.tpm2b()?.to_vec();
        r.finish()?;
        Ok(Self {
            qualified_signer,
            extra_data,
            clock_info,
            firmware_version,
            pcr_select,
            pcr_digest,
        })
    }

    /// The TPMS_ATTEST bytes (for tests: a TPM's own bytes are what get verified).
    pub fn to_bytes(&self) -> Result<Vec<u8>, TpmError> {
        let mut w = Writer::new();
        w.u32(TPM_GENERATED_VALUE).u16(ST_ATTEST_QUOTE);
        w.tpm2b(&self.qualified_signer)?;
        w.tpm2b(&self.extra_data)?;
        let c = &self.clock_info;
        w.bytes(&c.clock.to_be_bytes())
            .u32(c.reset_count)
            .u32(c.restart_count)
            .u8(u8::from(c.safe));
        w.bytes(&self.firmware_version.to_be_bytes());
        w.u32(self.pcr_select.len() as u32);
        for sel in &self.pcr_select {
            sel.write_one(&mut w);
        }
        w.tpm2b(&self.pcr_digest)?;
        Ok(w.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> QuoteInfo {
        QuoteInfo {
            qualified_signer: vec![0, 0x0b, 1, 2, 3],
            extra_data: vec![9; 32],
            clock_info: ClockInfo {
                clock: 123_456,
                reset_count: 2,
                restart_count: 0,
                safe: true,
            },
            firmware_version: 0x2019_1023_0016_3100,
            pcr_select: vec![PcrSelection::sha256([0, 4, 9]).unwrap()],
            pcr_digest: vec![7; 32],
        }
    }

    #[test]
    fn quote_round_trips() {
        let q = sample();
        let bytes = q.to_bytes().unwrap();
        assert_eq!(&bytes[..6], &[0xff, 0x54, 0x43, 0x47, 0x80, 0x18]);
        assert_eq!(QuoteInfo::parse(&bytes).unwrap(), q);
    }

    #[test]
    fn wrong_magic_type_and_length_are_refused() {
        let bytes = sample().to_bytes().unwrap();
        let mut bad = bytes.clone();
        bad[0] = 0xfe;
        assert!(matches!(
            QuoteInfo::parse(&bad),
            Err(TpmError::BadMagic(0xfe54_4347))
        ));
        let mut bad = bytes.clone();
        bad[5] = 0x17; // TPM_ST_ATTEST_CERTIFY
        assert!(matches!(
            QuoteInfo::parse(&bad),
            Err(TpmError::NotAQuote(0x8017))
        ));
        assert!(matches!(
            QuoteInfo::parse(&bytes[..bytes.len() - 1]),
            Err(TpmError::Malformed { .. })
        ));
    }
}
