//! Recorded Azure SNP vTPM evidence with the VCEK of its chip (confidential-containers/trustee,
//! Apache-2.0; `testdata/azure/README.md`): an Azure Genoa CVM's HCL report, the quote of its
//! vTPM and the VCEK Azure served for it. The whole hardware chain is checked on real data:
//! AMD's Genoa ARK → ASK → VCEK → the SNP report (through [`verify_hcl_hardware`], the Azure
//! path's own step) → the HCL runtime data → the AK in it → the vTPM quote → the PCRs. Only our
//! report_data binding cannot be recorded elsewhere (the quote's nonce is trustee's).

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use super::azure::verify_hcl_hardware;
use crate::error::{CertName, SnpError, VerifyError};
use crate::measurement::{Digest48, SnpMeasurement};
use crate::snp::SnpSigningKey;
use crate::testing::vectors::*;
use crate::tpm::{
    verify_quote, AzureVtpmEvidence, HclError, HclReport, HclReportKind, PublicKey, TpmError,
    TpmEvidence, TpmSignature, ALG_SHA256,
};
use crate::{Endorsements, Evidence, Policy};

const RECORDED: &str = include_str!("../../testdata/azure/trustee-evidence-genoa.json");

// Read out of the recording with Python (testdata/azure/README.md).
const MEASUREMENT: &str = "f57dc09a507c6ecd82369bffb600f0003792f4d99bc26e985ec0c266fc34faf3706faf814c9e61065768a6ff917c89ae";
const NONCE: &str = "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f";
/// The VCEK's validity: 2025-01-24 02:21:48 to 2032-01-24 02:21:48 UTC.
const VCEK_NOT_BEFORE: u64 = 1_737_685_308;
const VCEK_NOT_AFTER: u64 = 1_958_610_108;
/// Offsets in the HCL report: the SNP report at 32 (its MEASUREMENT at +0x90, the signature at
/// +0x2A0), the runtime data JSON at 1236.
const SNP_AT: usize = 32;
const RUNTIME_AT: usize = 1236;

struct Recorded {
    hcl_report: Vec<u8>,
    vcek: Vec<u8>,
    message: Vec<u8>,
    signature: TpmSignature,
    pcrs: BTreeMap<u32, [u8; 32]>,
}

fn bytes(v: &serde_json::Value) -> Vec<u8> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
        .collect()
}

fn recorded() -> Recorded {
    let v: serde_json::Value = serde_json::from_str(RECORDED).unwrap();
    let pem = v["vcek"].as_str().unwrap();
    let vcek = crate::collateral::x509::pem_certificates(pem, "VCEK")
        .unwrap()
        .remove(0);
    let pcrs = v["quote"]["pcrs"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u32, bytes(p).try_into().unwrap()))
        .collect();
    Recorded {
        hcl_report: bytes(&v["report"]),
        vcek,
        message: bytes(&v["quote"]["message"]),
        signature: TpmSignature::RsaSsa {
            hash: ALG_SHA256,
            sig: bytes(&v["quote"]["signature"]),
        },
        pcrs,
    }
}

fn endorsed(vcek: &[u8]) -> Endorsements {
    Endorsements {
        snp_vcek: Some(vcek.to_vec()),
        ..Endorsements::default()
    }
}

fn hardware(
    hcl_report: &[u8],
    vcek: &[u8],
    now: u64,
) -> Result<crate::snp::verify::SnpVerified, VerifyError> {
    let hcl = HclReport::parse(hcl_report).map_err(TpmError::from)?;
    verify_hcl_hardware(&hcl, &Policy::default(), &endorsed(vcek), now)
}

fn now() -> u64 {
    snp_now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

fn snp_err(r: Result<crate::snp::verify::SnpVerified, VerifyError>) -> SnpError {
    match r {
        Err(VerifyError::Snp(e)) => e,
        Err(other) => panic!("expected an SNP error, got {other:?}"),
        Ok(_) => panic!("expected an SNP error, got a verified report"),
    }
}

#[test]
fn the_hcl_reports_snp_report_verifies_with_its_chips_vcek() {
    let r = recorded();
    let hcl = HclReport::parse(&r.hcl_report).unwrap();
    assert_eq!(hcl.kind, HclReportKind::Snp);
    let hw = verify_hcl_hardware(&hcl, &Policy::default(), &endorsed(&r.vcek), now()).unwrap();
    assert_eq!(hw.details.generation, "Genoa");
    assert_eq!(hw.details.signing_key, SnpSigningKey::Vcek);
    assert_eq!(hw.details.version, 3);
    assert_eq!(hw.details.vmpl, 0);
    assert!(!hw.details.smt_enabled);
    assert_eq!(hw.launch_digest, MEASUREMENT.parse::<Digest48>().unwrap());
    // report_data = SHA-256 of the runtime data, then zeros; the user-data is zero.
    assert_eq!(hw.report_data, hcl.report_data);
    assert_eq!(hcl.user_data().unwrap(), Some(vec![0; 64]));
    // The chip's ID in the report is the one in the VCEK (hwID), read independently.
    assert_eq!(hex::encode(&hw.details.chip_id[..6]), "0506ffba875e");
}

#[test]
fn the_vtpm_quote_verifies_with_the_ak_the_hardware_vouches_for() {
    let r = recorded();
    let hcl = HclReport::parse(&r.hcl_report).unwrap();
    let ak = hcl.ak().unwrap();
    let nonce = hex::decode(NONCE).unwrap();
    let q = verify_quote(&r.message, &r.signature, &ak, &nonce, &r.pcrs).unwrap();
    assert_eq!(q.pcrs.len(), 24);
    assert_eq!(q.quote.extra_data, nonce);
    // Refused: another nonce, a changed PCR, a flipped byte in the quote, another AK.
    let mut other_nonce = nonce.clone();
    other_nonce[0] ^= 1;
    assert!(matches!(
        verify_quote(&r.message, &r.signature, &ak, &other_nonce, &r.pcrs),
        Err(TpmError::NonceMismatch { .. })
    ));
    let mut pcrs = r.pcrs.clone();
    pcrs.get_mut(&4).unwrap()[0] ^= 1;
    assert!(matches!(
        verify_quote(&r.message, &r.signature, &ak, &nonce, &pcrs),
        Err(TpmError::PcrDigestMismatch { .. })
    ));
    let mut message = r.message.clone();
    let last = message.len() - 1;
    message[last] ^= 1;
    assert!(matches!(
        verify_quote(&message, &r.signature, &ak, &nonce, &r.pcrs),
        Err(TpmError::BadSignature)
    ));
    // The endorsement key of the same runtime data is not the AK.
    let ek: serde_json::Value = serde_json::from_slice(&hcl.runtime_data).unwrap();
    assert_eq!(ek["keys"][1]["kid"], "HCLEkPub");
    let PublicKey::Rsa { modulus, exponent } = ak else {
        panic!("an RSA AK")
    };
    let mut other = modulus.clone();
    other[100] ^= 1;
    assert!(matches!(
        verify_quote(
            &r.message,
            &r.signature,
            &PublicKey::Rsa {
                modulus: other,
                exponent
            },
            &nonce,
            &r.pcrs
        ),
        Err(TpmError::BadSignature)
    ));
}

#[test]
fn a_flipped_byte_in_the_report_or_runtime_data_is_refused() {
    let r = recorded();
    // In the signed SNP report: its measurement.
    let mut t = r.hcl_report.clone();
    t[SNP_AT + 0x90] ^= 1;
    assert_eq!(
        snp_err(hardware(&t, &r.vcek, now())),
        SnpError::BadSignature
    );
    // In the signature.
    let mut t = r.hcl_report.clone();
    t[SNP_AT + 0x2A0 + 5] ^= 1;
    assert_eq!(
        snp_err(hardware(&t, &r.vcek, now())),
        SnpError::BadSignature
    );
    // In the runtime data (the AK's modulus): no longer what the report_data binds.
    let mut t = r.hcl_report.clone();
    let n_at = RUNTIME_AT
        + r.hcl_report[RUNTIME_AT..]
            .windows(5)
            .position(|w| w == b"\"n\":\"")
            .unwrap()
        + 10;
    t[n_at] = if t[n_at] == b'A' { b'B' } else { b'A' };
    assert!(matches!(
        hardware(&t, &r.vcek, now()),
        Err(VerifyError::Tpm(_))
    ));
    assert_eq!(
        HclReport::parse(&t).unwrap_err(),
        HclError::RuntimeDataNotBound
    );
}

#[test]
fn a_wrong_expired_or_tampered_vcek_is_refused() {
    let r = recorded();
    // No VCEK: Azure's guest has no certificate table.
    let hcl = HclReport::parse(&r.hcl_report).unwrap();
    assert_eq!(
        snp_err(verify_hcl_hardware(
            &hcl,
            &Policy::default(),
            &Endorsements::default(),
            now()
        )),
        SnpError::MissingVcek
    );
    // Another chip's VCEK (Google Cloud's Milan, genuine): its TCB (bootloader 4) is not the
    // report's (10), the first of its fields compared (then the hwID).
    assert_eq!(
        snp_err(hardware(&r.hcl_report, GCP_V5_VMPL0_VCEK, now())),
        SnpError::VcekTcbMismatch {
            component: "bootloader",
            vcek: 4,
            report: 10
        }
    );
    // Outside the VCEK's validity.
    assert!(matches!(
        snp_err(hardware(&r.hcl_report, &r.vcek, VCEK_NOT_AFTER + 1)),
        SnpError::CertificateExpired {
            cert: CertName::Vcek,
            ..
        }
    ));
    assert!(matches!(
        snp_err(hardware(&r.hcl_report, &r.vcek, VCEK_NOT_BEFORE - 1)),
        SnpError::CertificateNotYetValid {
            cert: CertName::Vcek,
            ..
        }
    ));
    assert!(hardware(&r.hcl_report, &r.vcek, VCEK_NOT_BEFORE).is_ok());
    // A flipped byte in the VCEK's signed body (its public key): AMD's ASK did not sign it.
    let mut vcek = r.vcek.clone();
    let at = vcek.len() / 3;
    vcek[at] ^= 1;
    assert_eq!(
        snp_err(hardware(&r.hcl_report, &vcek, now())),
        SnpError::VcekNotSignedByAmd
    );
}

/// Through `attest::verify_with`, as `runner verify` calls it with the VCEK it fetched: the
/// hardware passes with the chip's VCEK (the refusal comes later, from the TPM half, whose AK
/// public area and our nonce the recording lacks); with another chip's VCEK it stops at the
/// hardware.
#[test]
fn the_azure_path_checks_the_hardware_signature() {
    let r = recorded();
    let mut policy = Policy {
        expected_report_data: Some([0; 64]),
        ..Policy::default()
    };
    policy.expected.snp_firmware.push(SnpMeasurement {
        launch_digest: MEASUREMENT.parse().unwrap(),
        label: Some("Azure paravisor (recorded, Genoa)".into()),
    });
    let evidence = Evidence::AzureVtpm(AzureVtpmEvidence {
        hcl_report: r.hcl_report.clone(),
        td_quote: None,
        tpm: TpmEvidence {
            ak_public: Vec::new(),
            quote: r.message.clone(),
            signature: Vec::new(),
            pcrs: BTreeMap::new(),
            event_log: None,
            ak_cert: None,
        },
    });
    let check = |vcek: &[u8]| crate::verify_with(&evidence, &policy, &endorsed(vcek), snp_now());
    let err = check(&r.vcek).unwrap_err();
    assert!(matches!(err, VerifyError::Tpm(_)), "{err:?}");
    let err = check(GCP_V5_VMPL0_VCEK).unwrap_err();
    assert!(matches!(err, VerifyError::Snp(_)), "{err:?}");
    // The launch digest must be an allowed paravisor's.
    policy.expected.snp_firmware[0].launch_digest = Digest48([3; 48]);
    assert_firmware_not_allowed(crate::verify_with(
        &evidence,
        &policy,
        &endorsed(&r.vcek),
        snp_now(),
    ));
    // …or the paravisor's launch signed by an allowed ID key: the report's ID_KEY_DIGEST, which
    // the hardware signature now covers (Microsoft's key on this Azure machine).
    let hw = hardware(&r.hcl_report, &r.vcek, now()).unwrap();
    let id_key = hw.details.id_key_digest;
    assert_ne!(id_key, [0; 48], "an Azure launch carries an ID block");
    policy.expected.snp_id_keys.push(crate::SnpIdKey {
        digest: Digest48(id_key),
        label: Some("Microsoft (recorded Azure paravisor)".into()),
    });
    let err = crate::verify_with(&evidence, &policy, &endorsed(&r.vcek), snp_now()).unwrap_err();
    assert!(matches!(err, VerifyError::Tpm(_)), "{err:?}");
    let mut other = id_key;
    other[0] ^= 1;
    policy.expected.snp_id_keys[0].digest = Digest48(other);
    assert_firmware_not_allowed(crate::verify_with(
        &evidence,
        &policy,
        &endorsed(&r.vcek),
        snp_now(),
    ));
}

/// Refused because the SNP launch is neither an allowed paravisor's nor signed by an allowed key.
fn assert_firmware_not_allowed<T: std::fmt::Debug>(outcome: Result<T, VerifyError>) {
    let err = outcome.unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Measurement(crate::MeasurementError::SnpFirmwareNotAllowed { .. })
        ),
        "{err:?}"
    );
}
