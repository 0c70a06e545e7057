//! TPM 2.0 wire encoding: big-endian integers and `TPM2B_*` (u16 length + bytes) buffers.
//!
//! [`Writer`] builds command bytes; [`Reader`] walks response or structure bytes and fails with
//! [`TpmError::Malformed`] naming what it was reading when the input ends early.

use super::error::TpmError;

/// Appends TPM-encoded values to a byte vector.
#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// A `TPM2B_*`: u16 length, then the bytes. Fails when `v` is longer than 65535 bytes.
    pub(crate) fn tpm2b(&mut self, v: &[u8]) -> Result<&mut Self, TpmError> {
        let len = u16::try_from(v.len()).map_err(|_| TpmError::TooLarge {
            what: "TPM2B buffer",
            len: v.len(),
            max: usize::from(u16::MAX),
        })?;
        self.u16(len);
        self.buf.extend_from_slice(v);
        Ok(self)
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads TPM-encoded values from a byte slice, front to back.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// What is being parsed, for error messages ("TPMS_ATTEST", "PCR_Read response").
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, pos: 0, what }
    }

    fn malformed(&self, reason: String) -> TpmError {
        TpmError::Malformed {
            what: self.what,
            reason,
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], TpmError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let out = &self.buf[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            None => Err(self.malformed(format!(
                "needs {n} more bytes at offset {}, has {}",
                self.pos,
                self.buf.len() - self.pos
            ))),
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, TpmError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, TpmError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, TpmError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, TpmError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A `TPM2B_*`: u16 length, then that many bytes.
    pub(crate) fn tpm2b(&mut self) -> Result<&'a [u8], TpmError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails when bytes are left over: a structure must be read whole.
    pub(crate) fn finish(&self) -> Result<(), TpmError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(self.malformed(format!("{} trailing bytes", self.remaining())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_big_endian_and_length_prefixed_buffers() {
        let mut w = Writer::new();
        w.u8(1).u16(0x0203).u32(0x0405_0607);
        w.tpm2b(&[0xaa, 0xbb]).unwrap();
        assert_eq!(
            w.into_bytes(),
            [1, 2, 3, 4, 5, 6, 7, 0, 2, 0xaa, 0xbb].to_vec()
        );
    }

    #[test]
    fn reads_back_what_was_written() {
        let bytes = [
            1, 2, 3, 4, 5, 6, 7, 0, 2, 0xaa, 0xbb, 0, 0, 0, 0, 0, 0, 1, 0,
        ];
        let mut r = Reader::new(&bytes, "test");
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u16().unwrap(), 0x0203);
        assert_eq!(r.u32().unwrap(), 0x0405_0607);
        assert_eq!(r.tpm2b().unwrap(), &[0xaa, 0xbb]);
        assert_eq!(r.u64().unwrap(), 0x100);
        r.finish().unwrap();
    }

    #[test]
    fn short_input_and_trailing_bytes_are_malformed() {
        let mut r = Reader::new(&[0, 5, 1, 2], "short");
        assert!(matches!(
            r.tpm2b(),
            Err(TpmError::Malformed { what: "short", .. })
        ));
        let mut r = Reader::new(&[0, 1, 2], "trailing");
        r.u16().unwrap();
        assert!(matches!(r.finish(), Err(TpmError::Malformed { .. })));
    }

    #[test]
    fn oversized_tpm2b_is_refused() {
        let big = vec![0u8; 70_000];
        assert!(matches!(
            Writer::new().tpm2b(&big),
            Err(TpmError::TooLarge { .. })
        ));
    }
}
