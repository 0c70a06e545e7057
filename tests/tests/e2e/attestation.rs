//! `GET /attestation`: evidence whose report_data binds the runner's identity key, the client's
//! nonce and a context. Without a TEE the evidence is `none`: marked insecure, and refused by the
//! verifier unless it is told to allow development mode.

use std::time::SystemTime;

use e2e::{start, Runner, Value};

fn hex_bytes(value: &Value, field: &str) -> Vec<u8> {
    let text = value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is a string: {value}"));
    hex(text)
}

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "even-length hex: {text}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digits"))
        .collect()
}

async fn attestation(runner: &Runner, nonce: &str) -> Value {
    runner
        .get(&format!("/attestation?nonce={nonce}"))
        .await
        .assert_status(200)
        .json()
}

#[tokio::test(flavor = "multi_thread")]
async fn none_evidence_binds_key_nonce_and_context_and_is_refused_unless_dev_mode_is_allowed() {
    let (runner, _sink) = start(&[]).await;

    let answer = attestation(&runner, "00ff10").await;

    assert_eq!(answer["tee"], "none");
    assert_eq!(answer["insecure"], true);
    assert_eq!(answer["nonce"], "00ff10");
    let key = &answer["keys"][0];
    assert_eq!(key["algorithm"], "ed25519");
    let public_key = hex_bytes(key, "public_key");
    assert_eq!(public_key.len(), 32);
    let context = answer["context"].as_str().expect("a context string");
    // The binding, computed here from the documented formula (attest's README), not by the runner.
    let expected = attest::report_data_for(
        &[attest::BoundKey {
            algorithm: "ed25519",
            public_key: &public_key,
        }],
        &[0x00, 0xff, 0x10],
        context.as_bytes(),
    );
    assert_eq!(hex_bytes(&answer, "report_data"), expected.to_vec());

    let evidence =
        attest::Evidence::from_json(&answer["evidence"].to_string()).expect("evidence parses");
    assert!(evidence.is_insecure());
    let mut policy = attest::Policy {
        expected_report_data: Some(expected),
        ..Default::default()
    };
    assert!(
        attest::verify(&evidence, &policy, SystemTime::now()).is_err(),
        "none evidence must be refused by default"
    );
    policy.allow_insecure_dev = true;
    let verified =
        attest::verify(&evidence, &policy, SystemTime::now()).expect("allowed in dev mode");
    assert_eq!(verified.report_data.to_vec(), expected.to_vec());
    // Another nonce would not match this evidence.
    policy.expected_report_data = Some(attest::report_data_for(
        &[attest::BoundKey {
            algorithm: "ed25519",
            public_key: &public_key,
        }],
        &[0x00, 0xff, 0x11],
        context.as_bytes(),
    ));
    assert!(attest::verify(&evidence, &policy, SystemTime::now()).is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_identity_key_is_stable_within_a_boot_and_new_each_boot() {
    let (first, _sink) = start(&[]).await;
    let (second, _sink2) = start(&[]).await;

    let a1 = attestation(&first, "01").await;
    let a2 = attestation(&first, "02").await;
    let b = attestation(&second, "01").await;

    assert_eq!(a1["keys"], a2["keys"]);
    assert_ne!(
        a1["report_data"], a2["report_data"],
        "the nonce changes the binding"
    );
    assert_ne!(a1["keys"], b["keys"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_nonces_are_refused() {
    let (runner, _sink) = start(&[]).await;
    runner
        .get("/attestation?nonce=zz")
        .await
        .expect_error(400, &["nonce"]);
    let long = "00".repeat(65);
    runner
        .get(&format!("/attestation?nonce={long}"))
        .await
        .expect_error(400, &["nonce"]);
}

#[test]
fn require_tee_refuses_to_start_without_one() {
    let output = std::process::Command::new(e2e::runner_bin())
        .args(["--require-tee", "--listen", "127.0.0.1:0"])
        .env_remove("RUNNER_REQUIRE_TEE")
        .output()
        .expect("run the runner");

    assert!(!output.status.success(), "the runner started without a TEE");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--require-tee"),
        "the error names the flag: {stderr}"
    );
}
