//! The runner's use of the public API, end to end: detect (here: no TEE, as on QEMU or a
//! laptop), bind keys and a nonce into report_data, get evidence, ship it as JSON, verify.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use attest::{
    report_data_for, Attester, BoundKey, Evidence, Policy, SnpMeasurement, Tee, VerifyError,
};

const ED25519_PUB: [u8; 32] = [0x11; 32];
const NONCE: [u8; 16] = [0x22; 16];

fn binding() -> [u8; 64] {
    report_data_for(
        &[BoundKey {
            algorithm: "ed25519",
            public_key: &ED25519_PUB,
        }],
        &NONCE,
        b"GET /attestation",
    )
}

#[test]
fn dev_mode_evidence_is_refused_unless_dev_mode_is_allowed() {
    let root = tempfile::tempdir().unwrap();
    let attester = Attester::detect_at(root.path());
    assert_eq!(attester.tee(), Tee::None);

    let json = attester.evidence(binding()).unwrap().to_json();
    let evidence = Evidence::from_json(&json).unwrap();
    assert!(evidence.is_insecure());

    let strict = Policy {
        expected_report_data: Some(binding()),
        ..Default::default()
    };
    let now = SystemTime::now();
    assert_eq!(
        attest::verify(&evidence, &strict, now),
        Err(VerifyError::Insecure)
    );

    let dev = Policy {
        allow_insecure_dev: true,
        ..strict
    };
    let verified = attest::verify(&evidence, &dev, now).unwrap();
    assert!(verified.insecure);
    assert_eq!(verified.report_data, binding());
}

#[test]
fn recorded_snp_evidence_verifies_through_the_public_api() {
    let report = hex::decode(include_str!("../testdata/snp/report_milan.hex").trim()).unwrap();
    let json = format!(
        r#"{{"version":1,"tee":"snp","report":"{}","certs":[{{"kind":"vcek","der":"{}"}}]}}"#,
        b64(&report),
        b64(include_bytes!("../testdata/snp/vcek_milan.der"))
    );
    let evidence = Evidence::from_json(&json).unwrap();
    let manifest = format!(
        r#"{{"snp":[{{"launch_digest":"{}"}}]}}"#,
        hex::encode(&report[0x90..0xC0])
    );
    let mut policy = Policy {
        expected: serde_json::from_str(&manifest).unwrap(),
        ..Default::default()
    };
    policy.snp.allow_smt = true;
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    // The recorded report (2022, SNP SPL 8) predates AMD-SB-3019: the default minimum refuses
    // it, naming the component; a lower minimum (`--snp-min-tcb milan:snp=8`) accepts it.
    assert_eq!(
        attest::verify(&evidence, &policy, now),
        Err(VerifyError::Snp(attest::SnpError::TcbTooLow {
            component: "snp",
            min: 0x18,
            got: 8
        }))
    );
    policy
        .snp
        .min_tcb
        .apply(&"milan:snp=8".parse::<attest::SnpMinTcbSpec>().unwrap());
    let verified = attest::verify(&evidence, &policy, now).unwrap();
    assert_eq!(verified.tee, Tee::Snp);
    assert_eq!(&verified.report_data[..], &report[0x50..0x90]);

    policy.expected.snp = vec![SnpMeasurement {
        launch_digest: "00".repeat(48).parse().unwrap(),
        label: None,
    }];
    assert!(matches!(
        attest::verify(&evidence, &policy, now),
        Err(VerifyError::Measurement(_))
    ));
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
