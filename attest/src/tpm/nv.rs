//! NV index commands: reading Azure's HCL report (NV index 0x01400001) in chunks, and defining
//! and writing an index (Azure takes the report's user data through index 0x01400002; the tests
//! use them on swtpm).

use std::thread;
use std::time::Duration;

use super::client::{
    Hierarchy, Tpm, CC_NV_DEFINE_SPACE, CC_NV_READ, CC_NV_READ_PUBLIC, CC_NV_UNDEFINE_SPACE,
    CC_NV_WRITE,
};
use super::error::TpmError;
use super::marshal::{Reader, Writer};
use super::transport::Transport;
use super::types::ALG_SHA256;

/// Bytes per NV_Read / NV_Write: within every TPM's TPM_PT_NV_BUFFER_MAX.
pub const NV_CHUNK: u16 = 512;

/// Azure's vTPM: the HCL report (SNP report or TD report plus runtime data with the AK).
pub const AZURE_HCL_REPORT_INDEX: u32 = 0x0140_0001;
/// Azure's vTPM: writing user data here makes the paravisor refresh the HCL report with it.
pub const AZURE_REPORT_DATA_INDEX: u32 = 0x0140_0002;
/// Azure's vTPM: the persistent attestation key (RSA-2048, RSASSA with SHA-256).
pub const AZURE_AK_HANDLE: u32 = 0x8100_0003;

/// Google Compute Engine's vTPM: the certificate (DER) of its RSA-2048 attestation key.
pub const GCE_AK_CERT_INDEX_RSA: u32 = 0x01c1_0000;
/// Google Compute Engine's vTPM: the TPMT_PUBLIC template of its RSA AK (a primary key of the
/// endorsement hierarchy).
pub const GCE_AK_TEMPLATE_INDEX_RSA: u32 = 0x01c1_0001;
/// Google Compute Engine's vTPM: the certificate (DER) of its ECC P-256 attestation key.
pub const GCE_AK_CERT_INDEX_ECC: u32 = 0x01c1_0002;
/// Google Compute Engine's vTPM: the template of its ECC P-256 AK.
pub const GCE_AK_TEMPLATE_INDEX_ECC: u32 = 0x01c1_0003;

/// TPMA_NV.OWNERWRITE.
pub const NV_OWNERWRITE: u32 = 1 << 1;
/// TPMA_NV.AUTHWRITE.
pub const NV_AUTHWRITE: u32 = 1 << 2;
/// TPMA_NV.OWNERREAD.
pub const NV_OWNERREAD: u32 = 1 << 17;
/// TPMA_NV.AUTHREAD.
pub const NV_AUTHREAD: u32 = 1 << 18;
/// TPMA_NV.NO_DA.
pub const NV_NO_DA: u32 = 1 << 25;
/// TPMA_NV.WRITTEN (set by the TPM).
pub const NV_WRITTEN: u32 = 1 << 29;

/// Who authorizes an NV read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvAuth {
    /// The owner hierarchy (Azure's indexes are owner-readable).
    Owner,
    /// The index's own (empty) auth value.
    Index,
}

/// An NV index's public area (TPMS_NV_PUBLIC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NvPublic {
    /// The index.
    pub index: u32,
    /// Its name algorithm.
    pub name_alg: u16,
    /// TPMA_NV attributes.
    pub attributes: u32,
    /// Its size in bytes.
    pub size: u16,
}

impl<T: Transport> Tpm<T> {
    fn nv_auth_handle(auth: NvAuth, index: u32) -> u32 {
        match auth {
            NvAuth::Owner => Hierarchy::Owner.handle(),
            NvAuth::Index => index,
        }
    }

    /// TPM2_NV_ReadPublic.
    pub fn nv_read_public(&mut self, index: u32) -> Result<NvPublic, TpmError> {
        let rsp = self.run("NV_ReadPublic", CC_NV_READ_PUBLIC, &[index], false, &[], 0)?;
        let mut r = Reader::new(&rsp.params, "NV_ReadPublic response");
        let public = r.tpm2b()?;
        let _name = r.tpm2b()?;
        r.finish()?;
        let mut r = Reader::new(public, "TPMS_NV_PUBLIC");
        let nv = NvPublic {
            index: r.u32()?,
            name_alg: r.u16()?,
            attributes: r.u32()?,
            size: {
                let _auth_policy = r.tpm2b()?;
                r.u16()?
            },
        };
        r.finish()?;
        Ok(nv)
    }

    /// Reads a whole NV index (its size from NV_ReadPublic) in [`NV_CHUNK`]-byte NV_Reads.
    pub fn nv_read(&mut self, auth: NvAuth, index: u32) -> Result<Vec<u8>, TpmError> {
        let size = self.nv_read_public(index)?.size;
        let mut data = Vec::with_capacity(usize::from(size));
        let mut offset: u16 = 0;
        while offset < size {
            let len = NV_CHUNK.min(size - offset);
            let mut w = Writer::new();
            w.u16(len).u16(offset);
            let rsp = self.run(
                "NV_Read",
                CC_NV_READ,
                &[Self::nv_auth_handle(auth, index), index],
                true,
                &w.into_bytes(),
                0,
            )?;
            let mut r = Reader::new(&rsp.params, "NV_Read response");
            let chunk = r.tpm2b()?;
            r.finish()?;
            if chunk.len() != usize::from(len) {
                return Err(TpmError::Malformed {
                    what: "NV_Read response",
                    reason: format!("asked {len} bytes at {offset}, got {}", chunk.len()),
                });
            }
            data.extend_from_slice(chunk);
            offset += len;
        }
        Ok(data)
    }

    /// TPM2_NV_DefineSpace of an ordinary index under the owner hierarchy, empty auth value,
    /// nameAlg SHA-256.
    pub fn nv_define_space(
        &mut self,
        index: u32,
        size: u16,
        attributes: u32,
    ) -> Result<(), TpmError> {
        let mut public = Writer::new();
        public
            .u32(index)
            .u16(ALG_SHA256)
            .u32(attributes)
            .u16(0)
            .u16(size);
        let mut w = Writer::new();
        w.u16(0); // auth value: empty
        w.tpm2b(&public.into_bytes())?;
        self.run(
            "NV_DefineSpace",
            CC_NV_DEFINE_SPACE,
            &[Hierarchy::Owner.handle()],
            true,
            &w.into_bytes(),
            0,
        )?;
        Ok(())
    }

    /// TPM2_NV_UndefineSpace (owner-authorized).
    pub fn nv_undefine_space(&mut self, index: u32) -> Result<(), TpmError> {
        self.run(
            "NV_UndefineSpace",
            CC_NV_UNDEFINE_SPACE,
            &[Hierarchy::Owner.handle(), index],
            true,
            &[],
            0,
        )?;
        Ok(())
    }

    /// Writes `data` at offset 0 of an index in [`NV_CHUNK`]-byte NV_Writes.
    pub fn nv_write(&mut self, auth: NvAuth, index: u32, data: &[u8]) -> Result<(), TpmError> {
        let too_large = || TpmError::TooLarge {
            what: "NV data",
            len: data.len(),
            max: usize::from(u16::MAX),
        };
        u16::try_from(data.len()).map_err(|_| too_large())?;
        for (i, chunk) in data.chunks(usize::from(NV_CHUNK)).enumerate() {
            let offset = u16::try_from(i * usize::from(NV_CHUNK)).map_err(|_| too_large())?;
            let mut w = Writer::new();
            w.tpm2b(chunk)?;
            w.u16(offset);
            self.run(
                "NV_Write",
                CC_NV_WRITE,
                &[Self::nv_auth_handle(auth, index), index],
                true,
                &w.into_bytes(),
                0,
            )?;
        }
        Ok(())
    }

    /// Azure's vTPM: a fresh HCL report carrying `user_data` (its runtime data's user-data
    /// field; the hardware report's report_data is SHA-256 of the runtime data). Writes
    /// `user_data` to [`AZURE_REPORT_DATA_INDEX`] (defining it when missing or of another
    /// size), waits for the paravisor to refresh the report (Azure's own tools wait 3 s), and
    /// reads [`AZURE_HCL_REPORT_INDEX`].
    pub fn azure_hcl_report(&mut self, user_data: &[u8; 64]) -> Result<Vec<u8>, TpmError> {
        match self.nv_read_public(AZURE_REPORT_DATA_INDEX) {
            Ok(nv) if nv.size == 64 => {}
            Ok(_) => {
                self.nv_undefine_space(AZURE_REPORT_DATA_INDEX)?;
                self.nv_define_space(AZURE_REPORT_DATA_INDEX, 64, NV_OWNERWRITE | NV_OWNERREAD)?;
            }
            Err(_) => {
                self.nv_define_space(AZURE_REPORT_DATA_INDEX, 64, NV_OWNERWRITE | NV_OWNERREAD)?
            }
        }
        self.nv_write(NvAuth::Owner, AZURE_REPORT_DATA_INDEX, user_data)?;
        thread::sleep(Duration::from_secs(3));
        self.nv_read(NvAuth::Owner, AZURE_HCL_REPORT_INDEX)
    }
}
