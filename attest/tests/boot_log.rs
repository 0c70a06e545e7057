//! A verifier's use of the public boot-log API, end to end on recorded Google Cloud logs: read the
//! predictions from an image manifest, replay each log against its quoted registers, check the
//! image's boot. (The TPM quote's and TDX quote's own signatures are checked elsewhere.)

use std::collections::BTreeMap;

use attest::eventlog::{
    check_image_events, verify_pcr_event_log, verify_tdx_event_log, EventLogError, ImagePredictions,
};
use attest::{Digest48, ExpectedMeasurements, Policy, TdxFirmware};

const GCP_CCEL: &[u8] = include_bytes!("../testdata/eventlog/gcp_tdx_cos113_ccel.bin");
const GCP_QUOTE: &[u8] = include_bytes!("../testdata/eventlog/gcp_tdx_cos113_quote.bin");
const GCE_TPM_LOG: &[u8] = include_bytes!("../testdata/eventlog/gce_ubuntu2404_sevsnp_tpm.bin");

// The boot applications each log records (shim, then GRUB), and the registers after them: from
// go-tpm-tools' test expectations and the quote (testdata/eventlog/README.md).
const GCE_SHIM: &str = "724de6844dd0fe618ba5776c7bca0728be38a6544e24e44ef259b987b7abce80";
const GCE_GRUB: &str = "5e8cb75acdf8e09e5fc14cc2d6ce0c2288af208976d97309851c661e91ec1e03";
const GCE_PCR4: &str = "abe8b3fa6aecb36c2fd93c6f6edde661c21b353d007410a2739d69bfa7e1b9be";
const GCP_SHIM: &str = "5a10026c9ad41d1f90dc9cfe88bcabe1842ccfd85495c81b1a1ab926a9ef23b5d2e60eefeba0415bbe5c8c328a899a0a";
const GCP_GRUB: &str = "b1fb7f4c0689f5a920b800b2607075f4906f8c8282d44e56fc991ec01f1adac176d2040a26f1453df112d7c4f4293fc9";

/// MRTD, then RTMR[0..3], of a TDX quote v4 (TD report at 48: MRTD at +136, RTMRs at +328).
fn quote_registers(quote: &[u8]) -> (Digest48, [Digest48; 4]) {
    let at = |offset: usize| Digest48(quote[offset..offset + 48].try_into().unwrap());
    (at(184), [at(376), at(424), at(472), at(520)])
}

fn app(register: &str, alg: &str, digest: &str, what: &str) -> serde_json::Value {
    serde_json::json!({"register": register, "event_type": "EV_EFI_BOOT_SERVICES_APPLICATION",
                       "digest_alg": alg, "digest": digest, "what": what})
}

/// An image manifest predicting the recorded boots (as if shim + GRUB were the image's).
fn manifest() -> serde_json::Value {
    let (_, rtmrs) = quote_registers(GCP_QUOTE);
    serde_json::json!({
        "measurements": {"snp": {"status": "not_computed"}, "tdx": {"status": "not_computed"}},
        "uefi": {
            "uki": {"path": "EFI/BOOT/BOOTX64.EFI"},
            "disk": {},
            "predictions": {
                "gcp-snp-vtpm": {
                    "trust": "Google's vTPM, outside the TEE",
                    "events": [app("PCR4", "sha256", GCE_SHIM, "shim"), app("PCR4", "sha256", GCE_GRUB, "GRUB")],
                    "values": {"PCR4": GCE_PCR4}
                },
                "gcp-tdx": {
                    "trust": "Google's TDX firmware (MRTD, RTMR[0])",
                    "events": [app("RTMR1", "sha384", GCP_SHIM, "shim"), app("RTMR1", "sha384", GCP_GRUB, "GRUB")],
                    "values": {"RTMR1": rtmrs[1].to_string(), "RTMR2": rtmrs[2].to_string()}
                }
            }
        }
    })
}

#[test]
fn recorded_cloud_boots_match_a_manifests_predictions() {
    let predictions = ImagePredictions::from_image_manifest(&manifest()).unwrap();

    let quoted: BTreeMap<u32, Vec<u8>> = [(4, hex::decode(GCE_PCR4).unwrap())].into();
    let vtpm = verify_pcr_event_log(GCE_TPM_LOG, &quoted).unwrap();
    check_image_events(&vtpm, &predictions.platforms["gcp-snp-vtpm"]).unwrap();

    let (_, rtmrs) = quote_registers(GCP_QUOTE);
    let tdx = verify_tdx_event_log(GCP_CCEL, &rtmrs).unwrap();
    check_image_events(&tdx, &predictions.platforms["gcp-tdx"]).unwrap();

    // Each platform's predictions only fit its own log.
    assert!(matches!(
        check_image_events(&vtpm, &predictions.platforms["gcp-tdx"]),
        Err(EventLogError::RegisterNotQuoted { .. })
    ));
}

#[test]
fn the_policy_carries_predictions_and_a_firmware_allow_list() {
    let (mut expected, notes) =
        ExpectedMeasurements::from_image_manifest(&manifest(), None).unwrap();
    assert_eq!(expected.uefi.len(), 2);
    assert!(
        notes.iter().any(|n| n.contains("tdx_firmware")),
        "{notes:?}"
    );
    let (mrtd, _) = quote_registers(GCP_QUOTE);
    expected.tdx_firmware.push(TdxFirmware {
        mrtd,
        rtmr0: None,
        label: Some("Google Cloud C3 TDX firmware".into()),
    });
    let policy = Policy {
        expected,
        ..Policy::default()
    };
    let json = serde_json::to_string(&policy).unwrap();
    let back: Policy = serde_json::from_str(&json).unwrap();
    assert_eq!(back, policy);
    // An older policy file without the new fields still reads.
    let old: Policy = serde_json::from_str(r#"{"expected": {"snp": [], "tdx": []}}"#).unwrap();
    assert!(old.expected.uefi.is_empty() && old.expected.tdx_firmware.is_empty());
}
