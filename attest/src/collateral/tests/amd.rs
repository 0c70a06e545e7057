//! AMD KDS: the recorded Milan VCEK and ASK/ARK chain (virtee/sev) served from the loopback
//! server; the CRL is one this project generated with a TEST key (AMD's CRL signing key is
//! AMD's): `testdata/collateral/amd-test/`, see its README.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::collateral::{AmdProduct, AmdSigningKey, CollateralError};
use crate::measurement::{Digest48, SnpMeasurement};
use crate::testing::vectors::*;
use crate::{Evidence, Policy, SnpEvidence, VerifyError};

const TEST_ARK: &[u8] = include_bytes!("../../../testdata/collateral/amd-test/test_ark.der");
const CRL_EMPTY: &[u8] = include_bytes!("../../../testdata/collateral/amd-test/crl_empty.der");
const CRL_REVOKED: &[u8] =
    include_bytes!("../../../testdata/collateral/amd-test/crl_revokes_milan_ask.der");
const MILAN_CHAIN: &[u8] = include_bytes!("../../../testdata/snp/cert_chain_milan");
const MILAN_VLEK_CHAIN: &[u8] = include_bytes!("../../snp/asvk/milan.pem");
pub(super) const CRL_PATH: &str = "/vcek/v1/Milan/crl";
/// 2027-06-01: inside the VCEK's validity (to 2030-04) and the test CRL's window.
pub(super) const NOW: u64 = 1_811_808_000;
/// 2029-09-01: after the test CRL's nextUpdate (2029-08-30), VCEK still valid.
const AFTER_CRL: u64 = 1_882_915_200;

pub(super) fn test_ark_spki() -> Vec<u8> {
    let cert = crate::collateral::x509::parse_certificate(TEST_ARK, "test ARK").unwrap();
    crate::collateral::x509::spki_der(&cert, "test ARK").unwrap()
}

/// The KDS path for the recorded report, from its bytes at the ABI's offsets (CHIP_ID at
/// 0x1A0, REPORTED_TCB at 0x180: bootloader, tee, …, snp, microcode on Milan).
pub(super) fn vcek_path() -> String {
    let r = milan_report();
    let tcb = &r[0x180..0x188];
    format!(
        "/vcek/v1/Milan/{}?blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
        hex::encode(&r[0x1A0..0x1E0]),
        tcb[0],
        tcb[1],
        tcb[6],
        tcb[7]
    )
}

pub(super) fn kds() -> Server {
    Server::start(HashMap::from([
        (vcek_path(), Reply::ok(MILAN_VCEK)),
        (CRL_PATH.to_owned(), Reply::ok(CRL_EMPTY)),
        (
            "/vcek/v1/Milan/cert_chain".to_owned(),
            Reply::ok(MILAN_CHAIN),
        ),
    ]))
}

/// The recorded report without a VCEK: the verifier must fetch it.
pub(super) fn bare() -> Evidence {
    Evidence::Snp(SnpEvidence {
        report: milan_report(),
        certs: vec![],
        tpm: None,
    })
}

pub(super) fn milan_policy() -> Policy {
    let mut p = Policy::default();
    p.snp.allow_smt = true;
    p.snp.min_tcb = crate::SnpMinTcb::none();
    let mut digest = [0u8; 48];
    digest.copy_from_slice(&milan_report()[crate::snp::layout::MEASUREMENT]);
    p.expected.snp.push(SnpMeasurement {
        launch_digest: Digest48(digest),
        label: None,
    });
    p
}

fn fetch(client: &CollateralClient, now: u64) -> Result<crate::Endorsements, CollateralError> {
    client.endorsements_blocking(&bare(), at(now))
}

#[test]
fn the_vcek_is_fetched_checked_cached_and_verifies_the_recorded_report() {
    let server = kds();
    let verifier = crate::Verifier::new(milan_policy()).with_collateral(Arc::new(client(&server)));
    let verified = verifier.verify(&bare(), at(NOW)).unwrap();
    assert_eq!(verified.snp.unwrap().generation, "Milan");
    assert_eq!(server.hits(), 2, "the VCEK and the CRL");
    let keys: Vec<_> = verifier.collateral.as_ref().unwrap().entries();
    assert_eq!(keys[1].key, format!("amd:{}", vcek_path()));
    assert_eq!(keys[1].body, MILAN_VCEK);
    assert_eq!(keys[1].next_update, None, "a VCEK is kept for ever");
    // Second verification: from the cache, no request.
    verifier.verify(&bare(), at(NOW)).unwrap();
    assert_eq!(server.hits(), 2);
}

#[test]
fn a_cache_directory_and_an_exported_bundle_serve_without_the_network() {
    let server = kds();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let config = |amd_url: String| CollateralConfig {
        amd_url,
        cache_dir: Some(cache.clone()),
        timeout: Duration::from_secs(2),
        ..CollateralConfig::default()
    };
    let first = client_with(config(server.url.clone()));
    let fetched = fetch(&first, NOW).unwrap();
    assert_eq!(fetched.snp_vcek.as_deref(), Some(MILAN_VCEK));
    let bundle = dir.path().join("bundle.json");
    first.export_bundle(&bundle).unwrap();
    // A new client on the same directory and a dead URL: no request is needed.
    let second = client_with(config("http://127.0.0.1:9".into()));
    assert_eq!(fetch(&second, NOW).unwrap(), fetched);
    // Offline from the exported file, and from the cache directory itself.
    for offline in [bundle, cache.clone()] {
        let client = client_with(CollateralConfig {
            amd_url: "http://127.0.0.1:9".into(),
            offline: Some(offline),
            ..CollateralConfig::default()
        });
        assert_eq!(fetch(&client, NOW).unwrap(), fetched);
    }
    assert_eq!(server.hits(), 2);
}

#[test]
fn offline_without_the_answer_is_an_offline_error() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("empty.json");
    std::fs::write(&bundle, r#"{"version":1,"answers":[]}"#).unwrap();
    let client = client_with(CollateralConfig {
        offline: Some(bundle),
        ..CollateralConfig::default()
    });
    assert_eq!(
        fetch(&client, NOW),
        Err(CollateralError::Offline {
            missing: format!("amd:{}", vcek_path())
        })
    );
}

#[test]
fn http_errors_and_timeouts_are_typed_and_nothing_is_accepted() {
    let server = kds();
    server.set(&vcek_path(), Reply::status(500));
    let client = client(&server);
    let url = format!("{}{}", server.url, vcek_path());
    assert_eq!(
        fetch(&client, NOW),
        Err(CollateralError::Http { status: 500, url })
    );
    // 404 for Milan and for Genoa (a v2 report may be either): the last one is reported.
    server.set(&vcek_path(), Reply::status(404));
    let before = server.hits();
    assert!(matches!(
        fetch(&client, NOW),
        Err(CollateralError::NotFound { url }) if url.contains("/vcek/v1/Genoa/")
    ));
    assert_eq!(server.hits(), before + 2);
    // Remembered for NOT_FOUND_KEPT: no new request, the same refusal; asked again after.
    assert!(matches!(
        fetch(&client, NOW + 599),
        Err(CollateralError::NotFound { .. })
    ));
    assert_eq!(server.hits(), before + 2);
    server.set(&vcek_path(), Reply::ok(MILAN_VCEK));
    assert!(fetch(&client, NOW + crate::collateral::NOT_FOUND_KEPT + 1).is_ok());
    let slow = Reply {
        delay: Duration::from_secs(5),
        ..Reply::ok(MILAN_VCEK)
    };
    server.set(&vcek_path(), slow);
    let quick = client_with(CollateralConfig {
        amd_url: server.url.clone(),
        timeout: Duration::from_millis(300),
        ..CollateralConfig::default()
    });
    assert!(matches!(
        fetch(&quick, NOW),
        Err(CollateralError::Timeout { .. })
    ));
    // Through the verifier: refused, with the collateral error.
    let verifier = crate::Verifier::new(milan_policy()).with_collateral(Arc::new(quick));
    assert!(matches!(
        verifier.verify(&bare(), at(NOW)),
        Err(VerifyError::Collateral(CollateralError::Timeout { .. }))
    ));
}

#[test]
fn a_revoked_ask_is_refused() {
    let server = kds();
    server.set(CRL_PATH, Reply::ok(CRL_REVOKED));
    assert_eq!(
        fetch(&client(&server), NOW),
        Err(CollateralError::Revoked {
            serial: "010001".into(),
            what: "ASK".into()
        })
    );
}

#[test]
fn a_stale_crl_is_refused_even_from_the_cache() {
    let server = kds();
    let client = client(&server);
    fetch(&client, NOW).unwrap();
    assert!(matches!(
        fetch(&client, AFTER_CRL),
        Err(CollateralError::Stale { what, next_update, now })
            if what == "Milan CRL" && next_update < now && now == AFTER_CRL
    ));
}

#[test]
fn tampered_answers_are_bad_signatures() {
    let server = kds();
    let mut vcek = MILAN_VCEK.to_vec();
    let last = vcek.len() - 1;
    vcek[last] ^= 1;
    server.set(&vcek_path(), Reply::ok(vcek));
    assert_eq!(
        fetch(&client(&server), NOW),
        Err(CollateralError::BadSignature {
            what: "Milan VCEK".into()
        })
    );
    server.set(&vcek_path(), Reply::ok(MILAN_VCEK));
    let mut crl = CRL_EMPTY.to_vec();
    let last = crl.len() - 1;
    crl[last] ^= 1;
    server.set(CRL_PATH, Reply::ok(crl));
    assert_eq!(
        fetch(&client(&server), NOW),
        Err(CollateralError::BadSignature {
            what: "Milan CRL".into()
        })
    );
    // The real ARK does not sign the test CRL: without the test key it is refused too.
    server.set(CRL_PATH, Reply::ok(CRL_EMPTY));
    let mut production = client(&server);
    production.amd_crl_signer = None;
    assert!(matches!(
        fetch(&production, NOW),
        Err(CollateralError::BadSignature { .. })
    ));
}

#[test]
fn the_cert_chain_must_carry_amds_built_in_ark() {
    let server = kds();
    let client = client(&server);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let chain = rt
        .block_on(client.amd_cert_chain(AmdProduct::Milan, AmdSigningKey::Vcek, NOW))
        .unwrap();
    let pem = crate::collateral::x509::pem_certificates(
        std::str::from_utf8(MILAN_CHAIN).unwrap(),
        "chain",
    )
    .unwrap();
    assert_eq!((chain.ask, chain.ark), (pem[0].clone(), pem[1].clone()));
    // The Genoa path served Milan's chain: its ARK is not Genoa's.
    server.set("/vcek/v1/Genoa/cert_chain", Reply::ok(MILAN_CHAIN));
    assert!(matches!(
        rt.block_on(client.amd_cert_chain(AmdProduct::Genoa, AmdSigningKey::Vcek, NOW)),
        Err(CollateralError::BadSignature { .. })
    ));
    // The VLEK chain: AMD's ASVK (as published, see snp/asvk/) is accepted; the VCEK chain
    // (same ARK, which signs both) served in its place is not.
    let vlek = "/vlek/v1/Milan/cert_chain";
    server.set(vlek, Reply::ok(MILAN_VLEK_CHAIN));
    let chain = rt
        .block_on(client.amd_cert_chain(AmdProduct::Milan, AmdSigningKey::Vlek, NOW))
        .unwrap();
    assert_eq!(chain.ark, pem[1]);
    let fresh = super::client(&server);
    server.set(vlek, Reply::ok(MILAN_CHAIN));
    assert!(matches!(
        rt.block_on(fresh.amd_cert_chain(AmdProduct::Milan, AmdSigningKey::Vlek, NOW)),
        Err(CollateralError::BadSignature { .. })
    ));
}

#[test]
fn a_vlek_signed_report_fetches_nothing() {
    let server = kds();
    let mut report = milan_report();
    report[0x48] = (report[0x48] & !0x1c) | (1 << 2);
    let evidence = Evidence::Snp(SnpEvidence {
        report,
        certs: vec![],
        tpm: None,
    });
    assert!(!crate::collateral::needs_collateral(
        &evidence,
        &Default::default()
    ));
    assert!(crate::collateral::needs_collateral(
        &bare(),
        &Default::default()
    ));
    let verifier = crate::Verifier::new(milan_policy()).with_collateral(Arc::new(client(&server)));
    assert_eq!(
        verifier.verify(&evidence, at(NOW)),
        Err(VerifyError::Snp(crate::SnpError::MissingVlek))
    );
    assert_eq!(server.hits(), 0);
}

#[test]
fn turin_vceks_are_asked_by_the_8_byte_hwid_and_the_fmc_spl() {
    // The recorded Turin VCEK's hwID and TCB extensions, read out of it independently.
    let mut chip_id = [0u8; 64];
    chip_id[..8].copy_from_slice(&hex::decode("1e550a8ee5cf9f4d").unwrap());
    let tcb = crate::SnpTcb {
        fmc: Some(0),
        bootloader: 0,
        tee: 0,
        snp: 0,
        microcode: 9,
    };
    let path = "/vcek/v1/Turin/1e550a8ee5cf9f4d?fmcSPL=00&blSPL=00&teeSPL=00&snpSPL=00&ucodeSPL=09";
    let server = Server::start(HashMap::from([(path.to_owned(), Reply::ok(TURIN_VCEK))]));
    let client = client(&server);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let vcek = rt
        .block_on(client.vcek(AmdProduct::Turin, &chip_id, &tcb, NOW))
        .unwrap();
    assert_eq!(vcek, TURIN_VCEK);
    // Served for another chip: its hwID does not match the request.
    chip_id[0] ^= 1;
    let other = format!(
        "/vcek/v1/Turin/{}{}",
        hex::encode(&chip_id[..8]),
        &path[31..]
    );
    server.set(&other, Reply::ok(TURIN_VCEK));
    assert!(matches!(
        rt.block_on(client.vcek(AmdProduct::Turin, &chip_id, &tcb, NOW)),
        Err(CollateralError::Malformed { what, .. }) if what == "Turin VCEK"
    ));
    // And for Milan's product path: not signed by Milan's ASK.
    let milan = format!(
        "/vcek/v1/Milan/{}?blSPL=00&teeSPL=00&snpSPL=00&ucodeSPL=09",
        hex::encode(chip_id)
    );
    server.set(&milan, Reply::ok(TURIN_VCEK));
    assert!(matches!(
        rt.block_on(client.vcek(AmdProduct::Milan, &chip_id, &tcb, NOW)),
        Err(CollateralError::BadSignature { .. })
    ));
}

/// Azure vTPM evidence carries no certificate table: the verifier fetches the VCEK for the HCL
/// report's SNP report (a recorded Azure Genoa CVM, `testdata/azure/`) by its chip and
/// REPORTED_TCB, under the Genoa path; the hardware then verifies with it (the TPM half of this
/// recording cannot pass: its quote's nonce and AK public area are not ours).
#[test]
fn azure_evidence_gets_the_vcek_of_its_hcl_reports_chip() {
    let recorded: serde_json::Value = serde_json::from_str(include_str!(
        "../../../testdata/azure/trustee-evidence-genoa.json"
    ))
    .unwrap();
    let hcl_report: Vec<u8> = recorded["report"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    let vcek =
        crate::collateral::x509::pem_certificates(recorded["vcek"].as_str().unwrap(), "VCEK")
            .unwrap()
            .remove(0);
    let snp = hcl_report[32..32 + 1184].to_vec();
    // Genoa: the 64-byte hwID, REPORTED_TCB bootloader 10, TEE 0, SNP 23, microcode 84.
    let path = format!(
        "/vcek/v1/Genoa/{}?blSPL=10&teeSPL=00&snpSPL=23&ucodeSPL=84",
        hex::encode(&snp[0x1A0..0x1E0])
    );
    let server = Server::start(HashMap::from([
        (path.clone(), Reply::ok(vcek.clone())),
        ("/vcek/v1/Genoa/crl".to_owned(), Reply::ok(CRL_EMPTY)),
    ]));
    let evidence = Evidence::AzureVtpm(crate::tpm::AzureVtpmEvidence {
        hcl_report,
        td_quote: None,
        tpm: crate::tpm::TpmEvidence {
            ak_public: Vec::new(),
            quote: Vec::new(),
            signature: Vec::new(),
            pcrs: Default::default(),
            event_log: None,
            ak_cert: None,
        },
    });
    assert!(crate::collateral::needs_collateral(
        &evidence,
        &Default::default()
    ));
    let fetched = fetch_for(&client(&server), &evidence).unwrap();
    assert_eq!(fetched.snp_vcek.as_deref(), Some(&vcek[..]));
    assert_eq!(server.hits(), 2, "the VCEK and the CRL");

    let mut policy = Policy {
        expected_report_data: Some([0; 64]),
        ..Policy::default()
    };
    let mut digest = [0u8; 48];
    digest.copy_from_slice(&snp[0x90..0xC0]);
    policy.expected.snp_firmware.push(SnpMeasurement {
        launch_digest: Digest48(digest),
        label: None,
    });
    let verifier = crate::Verifier::new(policy).with_collateral(Arc::new(client(&server)));
    let err = verifier.verify(&evidence, at(NOW)).unwrap_err();
    assert!(matches!(err, VerifyError::Tpm(_)), "{err:?}");
    // Served another chip's VCEK (a genuine Milan one) under that path: not signed by Genoa's
    // ASK, refused before any use.
    let wrong = Server::start(HashMap::from([
        (path, Reply::ok(MILAN_VCEK)),
        ("/vcek/v1/Genoa/crl".to_owned(), Reply::ok(CRL_EMPTY)),
    ]));
    let err = fetch_for(&client(&wrong), &evidence).unwrap_err();
    assert!(
        matches!(&err, CollateralError::BadSignature { what } if what == "Genoa VCEK"),
        "{err:?}"
    );
}

fn fetch_for(
    client: &CollateralClient,
    evidence: &Evidence,
) -> Result<crate::Endorsements, CollateralError> {
    client.endorsements_blocking(evidence, at(NOW))
}
