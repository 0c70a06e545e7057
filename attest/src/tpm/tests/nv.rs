//! NV indexes on a real swtpm: the path Azure's HCL report is read through.

use super::swtpm::Swtpm;
use crate::tpm::{
    NvAuth, ResponseCode, TpmError, NV_AUTHREAD, NV_AUTHWRITE, NV_CHUNK, NV_NO_DA, NV_OWNERREAD,
    NV_OWNERWRITE, NV_WRITTEN,
};

const INDEX: u32 = 0x0150_0020;
const ATTRIBUTES: u32 = NV_OWNERWRITE | NV_AUTHWRITE | NV_OWNERREAD | NV_AUTHREAD | NV_NO_DA;

#[test]
fn nv_define_write_read_round_trip_in_chunks() {
    let (_swtpm, mut tpm) = Swtpm::start();
    // Several chunks, the last one partial (swtpm's largest NV index is 2048 bytes).
    let data: Vec<u8> = (0..2_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert!(data.len() > 3 * usize::from(NV_CHUNK));
    tpm.nv_define_space(INDEX, data.len() as u16, ATTRIBUTES)
        .unwrap();

    // Defined but never written.
    let unwritten = tpm.nv_read(NvAuth::Owner, INDEX);
    assert!(
        matches!(
            unwritten,
            Err(TpmError::Command {
                command: "NV_Read",
                code: ResponseCode::NvUninitialized,
                ..
            })
        ),
        "{unwritten:?}"
    );

    tpm.nv_write(NvAuth::Owner, INDEX, &data).unwrap();
    let public = tpm.nv_read_public(INDEX).unwrap();
    assert_eq!(public.index, INDEX);
    assert_eq!(usize::from(public.size), data.len());
    assert_eq!(public.attributes, ATTRIBUTES | NV_WRITTEN);
    assert_eq!(tpm.nv_read(NvAuth::Owner, INDEX).unwrap(), data);
    assert_eq!(tpm.nv_read(NvAuth::Index, INDEX).unwrap(), data);

    assert!(matches!(
        tpm.nv_define_space(INDEX, 8, ATTRIBUTES),
        Err(TpmError::Command {
            code: ResponseCode::NvDefined,
            ..
        })
    ));
    tpm.nv_undefine_space(INDEX).unwrap();
    assert!(matches!(
        tpm.nv_read_public(INDEX),
        Err(TpmError::Command {
            code: ResponseCode::Handle,
            ..
        })
    ));
}
