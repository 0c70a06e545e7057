//! The UEFI disk under Debian's stock OVMF with a software TPM (issue 18's check, issue 20's
//! swtpm boot): the firmware measures the boot into swtpm, the runner's `GET /attestation`
//! evidence carries a quote over PCRs 0–15 and the firmware's TPM event log, and `attest`
//! verifies it against the image manifest — the UKI digest the firmware logged in PCR4 is the
//! manifest's prediction, and a manifest whose UKI differs by one byte is refused.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use attest::eventlog::{EventLog, EventLogError, EventType, HashAlg, LogKind, MeasuredRegister};

use super::{
    boot_uefi_disk, bundle, guest_client, power_down, qemu_installed, wait_healthy, OVMF_CODE, QEMU,
};

/// The policy a verifier holding only the manifest builds, in dev mode (no TEE here), trusting
/// the swtpm whose AK name is `ak`.
fn policy(manifest: &serde_json::Value, ak: &attest::AkName, rd: [u8; 64]) -> attest::Policy {
    let (expected, _refused) = attest::ExpectedMeasurements::from_image_manifest(manifest, None)
        .expect("the manifest's measurements");
    attest::Policy {
        allow_insecure_dev: true,
        expected,
        expected_report_data: Some(rd),
        trusted_tpm_aks: vec![ak.clone()],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_uefi_disk_with_a_swtpm_attests_its_uki_and_another_uki_is_refused() {
    if !qemu_installed() || !Path::new(OVMF_CODE).is_file() {
        eprintln!(
            "SKIPPED the_uefi_disk_with_a_swtpm...: needs {QEMU} and ovmf (scripts/setup.sh)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(tpm) = e2e::swtpm::Swtpm::start(dir.path()) else {
        eprintln!("SKIPPED the_uefi_disk_with_a_swtpm...: swtpm is not installed");
        return;
    };
    let bundle = bundle().await;
    let started = Instant::now();
    let mut vm = boot_uefi_disk(bundle.path(), dir.path(), &tpm.qemu_args());
    let client = guest_client(Duration::from_secs(120));
    let boot_time = wait_healthy(&mut vm, &client, started).await;
    eprintln!(
        "image: UEFI disk + swtpm: first 200 after {:.2} s",
        boot_time.as_secs_f64()
    );

    let nonce = [0x5e, 0x1f, 0x00, 0xa7];
    let answer: serde_json::Value = client
        .get(vm.url(&format!("/attestation?nonce={}", hex::encode(nonce))))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let public_key = hex::decode(answer["keys"][0]["public_key"].as_str().unwrap()).unwrap();
    let rd = attest::report_data_for(
        &[attest::BoundKey {
            algorithm: "ed25519",
            public_key: &public_key,
        }],
        &nonce,
        answer["context"].as_str().unwrap().as_bytes(),
    );
    let evidence = attest::Evidence::from_json(&answer["evidence"].to_string()).unwrap();
    let tpm = evidence
        .tpm()
        .expect("the evidence carries the TPM's quote");
    let log = tpm
        .event_log
        .as_deref()
        .expect("and the firmware's event log");
    eprintln!(
        "image: UEFI disk + swtpm: evidence {} bytes of JSON, TPM event log {} bytes",
        answer["evidence"].to_string().len(),
        log.len()
    );

    // The pin of the positive control: this swtpm's AK name, read from the evidence itself (a
    // real verifier would have it from the machine's owner). The quote must still verify.
    let ak = attest::AkName(
        attest::tpm::verify_tpm_quote(tpm, &rd)
            .expect("the quote verifies")
            .ak_name,
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bundle.path().join(appliance_image::MANIFEST_FILE)).unwrap(),
    )
    .unwrap();
    let verified = attest::verify(&evidence, &policy(&manifest, &ak, rd), SystemTime::now())
        .expect("the evidence verifies against the manifest");
    let t = verified.tpm.expect("a verified TPM quote");
    assert_eq!(t.ak_trust, attest::AkTrust::Pinned);
    assert!(t.event_log_replayed);
    assert_eq!(t.uefi_platform.as_deref(), Some("qemu-ovmf-tpm"));

    // The UKI's digest, as the firmware logged it in PCR4, is the manifest's prediction.
    let uki_digest = manifest["uefi"]["uki"]["authenticode_sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let logged: Vec<String> = EventLog::parse(log, LogKind::Tpm)
        .unwrap()
        .events
        .iter()
        .filter(|e| {
            e.register == MeasuredRegister::Pcr(4)
                && e.event_type == EventType::EfiBootServicesApplication
        })
        .map(|e| hex::encode(e.digest(HashAlg::Sha256).unwrap()))
        .collect();
    assert_eq!(
        logged.first(),
        Some(&uki_digest),
        "PCR4's first boot application"
    );
    // Every boot application the firmware logged there (the UKI, then the kernel systemd-stub
    // loads from it) is one the manifest predicts, in order.
    let predicted: Vec<String> = manifest["uefi"]["predictions"]["qemu-ovmf-tpm"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["register"] == "PCR4" && e["event_type"] == "EV_EFI_BOOT_SERVICES_APPLICATION"
        })
        .map(|e| e["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(logged, predicted, "PCR4's boot applications");

    // The same evidence against a manifest whose UKI differs by one byte of its digest.
    let mut other = manifest.clone();
    let mut changed = hex::decode(&uki_digest).unwrap();
    changed[0] ^= 1;
    let changed = hex::encode(changed);
    other["uefi"]["uki"]["authenticode_sha256"] = changed.clone().into();
    for (_, prediction) in other["uefi"]["predictions"].as_object_mut().unwrap() {
        for event in prediction["events"].as_array_mut().unwrap() {
            if event["digest"] == uki_digest.as_str() {
                event["digest"] = changed.clone().into();
            }
        }
    }
    let refused = attest::verify(&evidence, &policy(&other, &ak, rd), SystemTime::now())
        .expect_err("another UKI is refused");
    assert!(
        matches!(
            refused,
            attest::VerifyError::EventLog(EventLogError::WrongUkiDigest { .. })
        ),
        "{refused:?}"
    );
    power_down(&mut vm).await;
}
