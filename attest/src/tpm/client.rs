//! A small TPM 2.0 client: the commands attestation needs, marshalled by hand (TPM 2.0 Part 3).
//! Authorization is always the empty password session (TPM_RS_PW), which is what the owner and
//! endorsement hierarchies of a fresh swtpm and Azure's vTPM objects use.

use std::collections::BTreeMap;
use std::thread;
use std::time::Duration;

use super::error::{ResponseCode, TpmError};
use super::marshal::{Reader, Writer};
use super::public::{AkPublic, AkTemplate};
use super::transport::Transport;
use super::types::{PcrSelection, TpmSignature, ALG_NULL, ALG_SHA256};

/// How often a command answered with a retry code is sent again.
const MAX_RETRIES: u32 = 20;
const ST_NO_SESSIONS: u16 = 0x8001;
const ST_SESSIONS: u16 = 0x8002;
/// TPM_RS_PW: the password authorization session.
const RS_PW: u32 = 0x4000_0009;

const CC_EVICT_CONTROL: u32 = 0x120;
pub(crate) const CC_NV_UNDEFINE_SPACE: u32 = 0x122;
pub(crate) const CC_NV_DEFINE_SPACE: u32 = 0x12a;
const CC_CREATE_PRIMARY: u32 = 0x131;
pub(crate) const CC_NV_WRITE: u32 = 0x137;
const CC_STARTUP: u32 = 0x144;
pub(crate) const CC_NV_READ: u32 = 0x14e;
const CC_QUOTE: u32 = 0x158;
const CC_FLUSH_CONTEXT: u32 = 0x165;
pub(crate) const CC_NV_READ_PUBLIC: u32 = 0x169;
const CC_READ_PUBLIC: u32 = 0x173;
const CC_GET_RANDOM: u32 = 0x17b;
const CC_PCR_READ: u32 = 0x17e;
const CC_PCR_EXTEND: u32 = 0x182;

/// A hierarchy a primary key is created under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// TPM_RH_OWNER (storage hierarchy).
    Owner,
    /// TPM_RH_ENDORSEMENT: where attestation keys usually live (tpm2_createak's default).
    Endorsement,
}

impl Hierarchy {
    pub(crate) fn handle(self) -> u32 {
        match self {
            Self::Owner => 0x4000_0001,
            Self::Endorsement => 0x4000_000b,
        }
    }
}

/// A response's handle area and parameter area.
pub(crate) struct Response {
    pub(crate) handles: Vec<u32>,
    pub(crate) params: Vec<u8>,
}

/// A TPM reached through a [`Transport`].
pub struct Tpm<T: Transport> {
    transport: T,
}

impl<T: Transport> Tpm<T> {
    /// Wraps a transport.
    pub fn new(transport: T) -> Self {
        Self { transport }
    }

    /// Runs one command. `handles` go in the handle area; with `auth`, the first handle is
    /// authorized with the empty password. `response_handles` is how many handles the response carries.
    pub(crate) fn run(
        &mut self,
        command: &'static str,
        code: u32,
        handles: &[u32],
        auth: bool,
        params: &[u8],
        response_handles: usize,
    ) -> Result<Response, TpmError> {
        let mut body = Writer::new();
        for &h in handles {
            body.u32(h);
        }
        if auth {
            // One TPMS_AUTH_COMMAND, for the first handle (every command here authorizes at
            // most one): password session, empty nonce, continueSession, empty password.
            body.u32(9).u32(RS_PW).u16(0).u8(1).u16(0);
        }
        body.bytes(params);
        let size = 10 + body.len();
        let mut cmd = Writer::new();
        cmd.u16(if auth { ST_SESSIONS } else { ST_NO_SESSIONS })
            .u32(size as u32)
            .u32(code)
            .bytes(&body.into_bytes());
        let cmd = cmd.into_bytes();
        // TPM_RC_RETRY / TESTING / YIELDED: the TPM asks for the same command again (libtpms
        // answers a first signing command with TPM_RC_RETRY while it self-tests).
        let mut attempt = 0;
        loop {
            let response = self.transport.transact(&cmd)?;
            match parse_response(command, &response, auth, response_handles) {
                Err(TpmError::Command {
                    code: ResponseCode::Retry,
                    ..
                }) if attempt < MAX_RETRIES => {
                    attempt += 1;
                    thread::sleep(Duration::from_millis(10 * u64::from(attempt)));
                }
                result => return result,
            }
        }
    }

    /// TPM2_Startup(TPM_SU_CLEAR). A TPM already started (TPM_RC_INITIALIZE) is fine.
    pub fn startup_clear(&mut self) -> Result<(), TpmError> {
        match self.run("Startup", CC_STARTUP, &[], false, &[0, 0], 0) {
            Ok(_) => Ok(()),
            Err(TpmError::Command {
                code: ResponseCode::Initialize,
                ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// TPM2_GetRandom: up to `n` bytes from the TPM's generator (it may return fewer).
    pub fn get_random(&mut self, n: u16) -> Result<Vec<u8>, TpmError> {
        let rsp = self.run("GetRandom", CC_GET_RANDOM, &[], false, &n.to_be_bytes(), 0)?;
        let mut r = Reader::new(&rsp.params, "GetRandom response");
        let bytes = r.tpm2b()?.to_vec();
        r.finish()?;
        Ok(bytes)
    }

    /// TPM2_PCR_Read of the SHA-256 bank: every selected PCR's value. Repeats the command
    /// for what the TPM left out (a TPM returns at most 8 digests per call).
    pub fn pcr_read(
        &mut self,
        selection: &PcrSelection,
    ) -> Result<BTreeMap<u32, [u8; 32]>, TpmError> {
        if selection.hash != ALG_SHA256 {
            return Err(TpmError::UnsupportedAlgorithm {
                what: "PCR bank",
                alg: selection.hash,
            });
        }
        let mut values = BTreeMap::new();
        let mut remaining = selection.clone();
        while !remaining.pcrs.is_empty() {
            let mut w = Writer::new();
            remaining.write_list(&mut w);
            let rsp = self.run("PCR_Read", CC_PCR_READ, &[], false, &w.into_bytes(), 0)?;
            let mut r = Reader::new(&rsp.params, "PCR_Read response");
            let _update_counter = r.u32()?;
            let banks = PcrSelection::read_list(&mut r)?;
            let count = r.u32()?;
            let mut digests = Vec::new();
            for _ in 0..count {
                digests.push(r.tpm2b()?);
            }
            r.finish()?;
            let returned: Vec<u32> = banks
                .iter()
                .filter(|b| b.hash == ALG_SHA256)
                .flat_map(|b| b.pcrs.iter().copied())
                .collect();
            if returned.is_empty() || returned.len() != digests.len() {
                return Err(TpmError::Malformed {
                    what: "PCR_Read response",
                    reason: format!(
                        "{} PCRs selected, {} digests returned",
                        returned.len(),
                        digests.len()
                    ),
                });
            }
            for (index, digest) in returned.into_iter().zip(digests) {
                let value = <[u8; 32]>::try_from(digest).map_err(|_| TpmError::Malformed {
                    what: "PCR_Read response",
                    reason: format!("PCR {index} digest of {} bytes", digest.len()),
                })?;
                values.insert(index, value);
            }
            remaining.pcrs.retain(|p| !values.contains_key(p));
        }
        Ok(values)
    }

    /// TPM2_PCR_Extend of one PCR's SHA-256 bank with `digest`.
    pub fn pcr_extend(&mut self, pcr: u32, digest: &[u8; 32]) -> Result<(), TpmError> {
        let mut w = Writer::new();
        w.u32(1).u16(ALG_SHA256).bytes(digest);
        self.run(
            "PCR_Extend",
            CC_PCR_EXTEND,
            &[pcr],
            true,
            &w.into_bytes(),
            0,
        )?;
        Ok(())
    }

    /// TPM2_CreatePrimary of our attestation key ([`AkTemplate::EccP256`]) under `hierarchy`: the same
    /// TPM gives the same key each time. Returns the transient handle (flush it when done) and
    /// the key's public area.
    pub fn create_primary_ak(&mut self, hierarchy: Hierarchy) -> Result<(u32, AkPublic), TpmError> {
        self.create_primary_ak_with(hierarchy, AkTemplate::EccP256)
    }

    /// TPM2_CreatePrimary of an attestation key from `template` under `hierarchy`.
    pub fn create_primary_ak_with(
        &mut self,
        hierarchy: Hierarchy,
        template: AkTemplate,
    ) -> Result<(u32, AkPublic), TpmError> {
        self.create_primary_from(hierarchy, &template.to_bytes())
    }

    /// TPM2_CreatePrimary from a TPMT_PUBLIC `template` (e.g. Google's AK template, read from
    /// NV): returns the transient handle and the key's public area.
    pub fn create_primary_from(
        &mut self,
        hierarchy: Hierarchy,
        template: &[u8],
    ) -> Result<(u32, AkPublic), TpmError> {
        let mut w = Writer::new();
        w.u16(4).u16(0).u16(0); // TPM2B_SENSITIVE_CREATE: empty userAuth and data
        w.tpm2b(template)?;
        w.u16(0); // outsideInfo
        w.u32(0); // creationPCR: none
        let rsp = self.run(
            "CreatePrimary",
            CC_CREATE_PRIMARY,
            &[hierarchy.handle()],
            true,
            &w.into_bytes(),
            1,
        )?;
        let mut r = Reader::new(&rsp.params, "CreatePrimary response");
        let public = AkPublic::from_tpmt(r.tpm2b()?)?;
        Ok((rsp.handles[0], public))
    }

    /// TPM2_EvictControl: makes a loaded object persistent at `persistent` (0x81xxxxxx),
    /// owner-authorized. (Azure's AK is persistent at 0x81000003; the tests make one.)
    pub fn evict_control(&mut self, object: u32, persistent: u32) -> Result<(), TpmError> {
        self.run(
            "EvictControl",
            CC_EVICT_CONTROL,
            &[Hierarchy::Owner.handle(), object],
            true,
            &persistent.to_be_bytes(),
            0,
        )?;
        Ok(())
    }

    /// TPM2_ReadPublic: the public area of a loaded or persistent object (e.g. Azure's AK at
    /// 0x81000003).
    pub fn read_public(&mut self, handle: u32) -> Result<AkPublic, TpmError> {
        let rsp = self.run("ReadPublic", CC_READ_PUBLIC, &[handle], false, &[], 0)?;
        let mut r = Reader::new(&rsp.params, "ReadPublic response");
        let public = AkPublic::from_tpmt(r.tpm2b()?)?;
        let _name = r.tpm2b()?;
        let _qualified_name = r.tpm2b()?;
        r.finish()?;
        Ok(public)
    }

    /// TPM2_Quote with the key's own scheme: the TPMS_ATTEST bytes and the signature over them.
    pub fn quote(
        &mut self,
        key: u32,
        nonce: &[u8],
        selection: &PcrSelection,
    ) -> Result<(Vec<u8>, TpmSignature), TpmError> {
        let mut w = Writer::new();
        w.tpm2b(nonce)?;
        w.u16(ALG_NULL); // inScheme: the key's
        selection.write_list(&mut w);
        let rsp = self.run("Quote", CC_QUOTE, &[key], true, &w.into_bytes(), 0)?;
        let mut r = Reader::new(&rsp.params, "Quote response");
        let attest = r.tpm2b()?.to_vec();
        let signature = TpmSignature::read(&mut r)?;
        r.finish()?;
        Ok((attest, signature))
    }

    /// TPM2_FlushContext: unloads a transient object.
    pub fn flush_context(&mut self, handle: u32) -> Result<(), TpmError> {
        self.run(
            "FlushContext",
            CC_FLUSH_CONTEXT,
            &[],
            false,
            &handle.to_be_bytes(),
            0,
        )?;
        Ok(())
    }
}

/// Checks a response's header and splits it into handles and parameters.
pub(crate) fn parse_response(
    command: &'static str,
    bytes: &[u8],
    sessions: bool,
    handles: usize,
) -> Result<Response, TpmError> {
    let mut r = Reader::new(bytes, "TPM response");
    let tag = r.u16()?;
    let size = r.u32()?;
    let rc = r.u32()?;
    if size as usize != bytes.len() {
        return Err(TpmError::Malformed {
            what: "TPM response",
            reason: format!("header says {size} bytes, got {}", bytes.len()),
        });
    }
    if rc != 0 {
        return Err(TpmError::Command {
            command,
            code: ResponseCode::from_raw(rc),
            raw: rc,
        });
    }
    let handles = (0..handles)
        .map(|_| r.u32())
        .collect::<Result<Vec<_>, _>>()?;
    let params = if tag == ST_SESSIONS && sessions {
        let len = r.u32()?;
        r.take(len as usize)?.to_vec()
    } else {
        r.take(r.remaining())?.to_vec()
    };
    Ok(Response { handles, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transport that records the command and answers with a canned response.
    struct Canned {
        sent: Vec<u8>,
        answer: Vec<u8>,
    }

    impl Transport for Canned {
        fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TpmError> {
            self.sent = command.to_vec();
            Ok(self.answer.clone())
        }
    }

    #[test]
    fn pcr_extend_marshals_handle_password_session_and_digest() {
        let mut tpm = Tpm::new(Canned {
            sent: vec![],
            answer: vec![
                0x80, 0x02, 0, 0, 0, 19, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0,
            ],
        });
        tpm.pcr_extend(16, &[0xaa; 32]).unwrap();
        let sent = tpm.transport.sent;
        let mut expected = vec![0x80, 0x02, 0, 0, 0, 0x41, 0, 0, 0x01, 0x82, 0, 0, 0, 16];
        expected.extend([0, 0, 0, 9, 0x40, 0, 0, 9, 0, 0, 1, 0, 0]);
        expected.extend([0, 0, 0, 1, 0, 0x0b]);
        expected.extend([0xaa; 32]);
        assert_eq!(sent, expected);
    }

    #[test]
    fn error_codes_become_typed_errors() {
        let mut tpm = Tpm::new(Canned {
            sent: vec![],
            answer: vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x8b],
        });
        let err = tpm.read_public(0x8100_0003).unwrap_err();
        assert!(matches!(
            err,
            TpmError::Command {
                command: "ReadPublic",
                code: ResponseCode::Handle,
                raw: 0x18b
            }
        ));
    }

    #[test]
    fn startup_on_a_started_tpm_is_fine_and_size_mismatch_is_malformed() {
        let mut tpm = Tpm::new(Canned {
            sent: vec![],
            answer: vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x00],
        });
        tpm.startup_clear().unwrap();
        assert_eq!(
            tpm.transport.sent,
            [0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x44, 0, 0]
        );
        let mut tpm = Tpm::new(Canned {
            sent: vec![],
            answer: vec![0x80, 0x01, 0, 0, 0, 12, 0, 0, 0, 0],
        });
        assert!(matches!(tpm.get_random(8), Err(TpmError::Malformed { .. })));
    }
}
