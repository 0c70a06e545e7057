//! The Azure vTPM flow on swtpm: a persistent RSA AK at 0x81000003 and an HCL report in NV
//! 0x01400001 built around it (what Azure's paravisor provides), collected and verified.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::swtpm::Swtpm;
use crate::tpm::{
    is_azure_vtpm, verify_azure_vtpm, AkTemplate, AzureVtpmEvidence, HclError, Hierarchy,
    PcrSelection, PublicKey, TpmError, AZURE_AK_HANDLE, AZURE_HCL_REPORT_INDEX, NV_OWNERREAD,
    NV_OWNERWRITE,
};

const REPORT_DATA: [u8; 64] = [0xa7; 64];

/// An HCL report in Azure's layout: header, a zero SNP report whose report_data is SHA-256 of
/// the runtime data, the IGVM request data, and the runtime data naming `ak` with `user_data`.
pub(crate) fn hcl_report(ak: &PublicKey, user_data: &[u8; 64]) -> Vec<u8> {
    let PublicKey::Rsa { modulus, .. } = ak else {
        panic!("Azure's AK is RSA")
    };
    let runtime = serde_json::json!({
        "keys": [{"kid": "HCLAkPub", "key_ops": ["sign"], "kty": "RSA", "e": "AQAB",
                  "n": URL_SAFE_NO_PAD.encode(modulus)}],
        "vm-configuration": {"secure-boot": true, "tpm-enabled": true},
        "user-data": hex::encode_upper(user_data),
    })
    .to_string()
    .into_bytes();
    let mut out = Vec::new();
    for v in [0x414c_4348u32, 1, 1184, 2, 0, 0, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut snp = vec![0u8; 1184];
    snp[0x50..0x70].copy_from_slice(&Sha256::digest(&runtime));
    out.extend_from_slice(&snp);
    for v in [20 + runtime.len() as u32, 1, 2, 1, runtime.len() as u32] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&runtime);
    out
}

/// What Azure's paravisor provides before any HCL report: a persistent RSA AK at
/// `AZURE_AK_HANDLE`. Returns its public area.
pub(crate) fn make_azure_ak<T: crate::tpm::Transport>(
    tpm: &mut crate::tpm::Tpm<T>,
) -> crate::tpm::AkPublic {
    let (handle, ak) = tpm
        .create_primary_ak_with(Hierarchy::Owner, AkTemplate::Rsa2048)
        .unwrap();
    tpm.evict_control(handle, AZURE_AK_HANDLE).unwrap();
    tpm.flush_context(handle).unwrap();
    ak
}

/// Puts `report` where Azure's vTPM keeps its HCL report (NV 0x01400001).
pub(crate) fn write_hcl_report<T: crate::tpm::Transport>(
    tpm: &mut crate::tpm::Tpm<T>,
    report: &[u8],
) {
    tpm.nv_define_space(
        AZURE_HCL_REPORT_INDEX,
        report.len() as u16,
        NV_OWNERWRITE | NV_OWNERREAD,
    )
    .unwrap();
    tpm.nv_write(crate::tpm::NvAuth::Owner, AZURE_HCL_REPORT_INDEX, report)
        .unwrap();
}

#[test]
fn azure_vtpm_evidence_collects_and_verifies_and_tampering_is_refused() {
    let (_swtpm, mut tpm) = Swtpm::start();
    assert!(!is_azure_vtpm(&mut tpm));
    let ak = make_azure_ak(&mut tpm);
    assert_eq!(tpm.read_public(AZURE_AK_HANDLE).unwrap(), ak);

    let report = hcl_report(&ak.key, &REPORT_DATA);
    write_hcl_report(&mut tpm, &report);
    assert!(is_azure_vtpm(&mut tpm));

    let selection = PcrSelection::sha256(0..24).unwrap();
    let e = AzureVtpmEvidence::collect(&mut tpm, &REPORT_DATA, &selection, None).unwrap();
    assert_eq!(e.hcl_report, report);
    let v = verify_azure_vtpm(&e, &REPORT_DATA).unwrap();
    assert_eq!(v.tpm.quoted.pcrs.len(), 24);
    assert!(matches!(v.tpm.ak.key, PublicKey::Rsa { .. }));
    assert_eq!(v.hcl.report_data[32..], [0u8; 32]);
    let json = serde_json::to_string(&e).unwrap();
    let back: AzureVtpmEvidence = serde_json::from_str(&json).unwrap();
    assert_eq!(verify_azure_vtpm(&back, &REPORT_DATA).unwrap(), v);

    // The HCL report names another AK (the endorsement hierarchy's RSA key).
    let (other_handle, other) = tpm
        .create_primary_ak_with(Hierarchy::Endorsement, AkTemplate::Rsa2048)
        .unwrap();
    tpm.flush_context(other_handle).unwrap();
    let t = AzureVtpmEvidence {
        hcl_report: hcl_report(&other.key, &REPORT_DATA),
        ..e.clone()
    };
    assert!(matches!(
        verify_azure_vtpm(&t, &REPORT_DATA),
        Err(TpmError::AkNotInHclReport)
    ));

    // Its user-data is another report_data.
    let t = AzureVtpmEvidence {
        hcl_report: hcl_report(&ak.key, &[0; 64]),
        ..e.clone()
    };
    assert!(matches!(
        verify_azure_vtpm(&t, &REPORT_DATA),
        Err(TpmError::UserDataMismatch { .. })
    ));

    // A byte of the runtime data, after the hardware report was made.
    let mut t = e.clone();
    let last = t.hcl_report.len() - 3;
    t.hcl_report[last] ^= 1;
    assert!(matches!(
        verify_azure_vtpm(&t, &REPORT_DATA),
        Err(TpmError::Hcl(HclError::RuntimeDataNotBound))
    ));

    // The quote against another report_data (its user-data checked first, then the nonce).
    let mut other_rd = REPORT_DATA;
    other_rd[0] ^= 1;
    let t = AzureVtpmEvidence {
        hcl_report: hcl_report(&ak.key, &other_rd),
        ..e.clone()
    };
    assert!(matches!(
        verify_azure_vtpm(&t, &other_rd),
        Err(TpmError::NonceMismatch { .. })
    ));
}
