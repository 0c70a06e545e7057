//! Intel PCS: the recorded collateral of dcap-qvl's sample TDX quote, served as PCS v4 / PCCS
//! answers (the signed TCB info and QE identity texts and the CRLs byte for byte; the JSON
//! envelopes and URL-encoded issuer-chain headers rebuilt around them as PCS sends them).

use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::collateral::CollateralError;
use crate::testing::vectors::*;
use crate::{Evidence, Policy, TdxCollateral, TdxEvidence, VerifyError};

const ROOT_CRL: &str = "/sgx/certification/v4/rootcacrl";
const PCK_CRL: &str = "/sgx/certification/v4/pckcrl?ca=platform&encoding=der";
const QE: &str = "/tdx/certification/v4/qe/identity";

fn recorded() -> TdxCollateral {
    serde_json::from_str(TDX_V4_COLLATERAL).unwrap()
}

/// The TCB info path, with the FMSPC the recorded TCB info names (upper case, as the client
/// asks for it).
fn tcb_path(c: &TdxCollateral) -> String {
    let info: serde_json::Value = serde_json::from_str(&c.tcb_info).unwrap();
    format!(
        "/tdx/certification/v4/tcb?fmspc={}",
        info["fmspc"].as_str().unwrap().to_uppercase()
    )
}

fn signed(member: &str, text: &str, signature: &[u8]) -> Vec<u8> {
    format!(
        r#"{{"{member}":{text},"signature":"{}"}}"#,
        hex::encode(signature)
    )
    .into_bytes()
}

fn routes(c: &TdxCollateral) -> HashMap<String, Reply> {
    HashMap::from([
        (ROOT_CRL.to_owned(), Reply::ok(hex::encode(&c.root_ca_crl))),
        (
            PCK_CRL.to_owned(),
            Reply::ok(c.pck_crl.clone())
                .header("SGX-PCK-CRL-Issuer-Chain", &c.pck_crl_issuer_chain),
        ),
        (
            tcb_path(c),
            Reply::ok(signed("tcbInfo", &c.tcb_info, &c.tcb_info_signature))
                .header("TCB-Info-Issuer-Chain", &c.tcb_info_issuer_chain),
        ),
        (
            QE.to_owned(),
            Reply::ok(signed(
                "enclaveIdentity",
                &c.qe_identity,
                &c.qe_identity_signature,
            ))
            .header(
                "SGX-Enclave-Identity-Issuer-Chain",
                &c.qe_identity_issuer_chain,
            ),
        ),
    ])
}

fn pcs() -> Server {
    Server::start(routes(&recorded()))
}

/// The recorded quote without collateral, and a time inside the collateral's window.
fn bare() -> (Evidence, u64) {
    let with = tdx(TDX_V4, TDX_V4_COLLATERAL);
    let now = unix(tdx_now(&with));
    let quote = TdxEvidence {
        quote: with.quote,
        collateral: None,
        event_log: None,
        tpm: None,
    };
    (Evidence::Tdx(quote), now)
}

fn policy() -> Policy {
    policy_for(TDX_V4)
}

fn policy_for(quote: &[u8]) -> Policy {
    let mut p = Policy::default();
    p.expected.tdx.push(quote_registers(quote));
    p
}

fn fetch(client: &CollateralClient, now: u64) -> Result<TdxCollateral, CollateralError> {
    let (evidence, _) = bare();
    let e = client.endorsements_blocking(&evidence, at(now))?;
    Ok(e.tdx_collateral.unwrap())
}

#[test]
fn collateral_is_fetched_checked_cached_and_verifies_the_recorded_quote() {
    let server = pcs();
    let (evidence, now) = bare();
    let verifier = crate::Verifier::new(policy()).with_collateral(Arc::new(client(&server)));
    let verified = verifier.verify(&evidence, at(now)).unwrap();
    assert_eq!(verified.tdx.unwrap().tcb_status, "UpToDate");
    assert_eq!(
        server.hits(),
        4,
        "root CA CRL, PCK CRL, TCB info, QE identity"
    );
    verifier.verify(&evidence, at(now)).unwrap();
    assert_eq!(
        server.hits(),
        4,
        "the second verification is served from the cache"
    );
    // What was assembled is exactly the recorded collateral.
    let client = verifier.collateral.as_ref().unwrap();
    assert_eq!(fetch(client, now).unwrap(), recorded());
}

/// Google Cloud C3: the recorded quote and CCEL log without collateral; the verifier fetches
/// Intel's collateral for its FMSPC (00806F050000) and accepts Google's firmware and the
/// recorded boot, as `runner verify` does with a PCCS.
#[test]
fn googles_c3_quote_gets_its_collateral_and_verifies_with_its_log() {
    let recorded: TdxCollateral = serde_json::from_str(GCP_TDX_COLLATERAL).unwrap();
    let server = Server::start(routes(&recorded));
    let now = unix(tdx_now(&tdx(GCP_TDX_QUOTE, GCP_TDX_COLLATERAL)));
    let evidence = Evidence::Tdx(TdxEvidence {
        quote: GCP_TDX_QUOTE.to_vec(),
        collateral: None,
        event_log: Some(GCP_TDX_CCEL.to_vec()),
        tpm: None,
    });
    let policy = Policy {
        expected: gcp_policy(),
        ..Policy::default()
    };
    let verifier = crate::Verifier::new(policy).with_collateral(Arc::new(client(&server)));
    let verified = verifier.verify(&evidence, at(now)).unwrap();
    let details = verified.tdx.unwrap();
    assert_eq!(details.tcb_status, "UpToDate");
    assert_eq!(details.uefi_platform.as_deref(), Some("gcp-tdx"));
    assert_eq!(server.hits(), 4);
    let fetched = client(&server)
        .endorsements_blocking(&evidence, at(now))
        .unwrap();
    assert_eq!(fetched.tdx_collateral, Some(recorded));
    // Served another platform's TCB info under this FMSPC, the client refuses it.
    let other: TdxCollateral = serde_json::from_str(TDX_V4_COLLATERAL).unwrap();
    let wrong = Server::start(HashMap::from([(
        "/tdx/certification/v4/tcb?fmspc=00806F050000".to_owned(),
        Reply::ok(signed(
            "tcbInfo",
            &other.tcb_info,
            &other.tcb_info_signature,
        ))
        .header("TCB-Info-Issuer-Chain", &other.tcb_info_issuer_chain),
    )]));
    for (path, reply) in routes(&other) {
        if !path.starts_with("/tdx/certification/v4/tcb") {
            wrong.set(&path, reply);
        }
    }
    let err = client(&wrong)
        .endorsements_blocking(&evidence, at(now))
        .unwrap_err();
    assert!(matches!(err, CollateralError::Malformed { .. }), "{err:?}");
}

#[test]
fn azure_tdx_evidence_gets_the_collateral_of_its_td_quote() {
    use crate::vtpm::tests_azure_tdx as azure;
    let c: TdxCollateral = serde_json::from_str(azure::COLLATERAL).unwrap();
    // The client asks for the FMSPC as the PCK certificate has it, upper case; this TCB info
    // names it in lower case (as PCS answered).
    let mut r = routes(&c);
    let answer = r.remove(&tcb_path(&c)).unwrap();
    r.insert(
        "/tdx/certification/v4/tcb?fmspc=00806F050000".to_owned(),
        answer,
    );
    let server = Server::start(r);
    let tdx_quote = include_bytes!("../../../testdata/azure/tdx-td-quote.bin");
    let hcl = include_bytes!("../../../testdata/azure/tdx-hcl-report.bin");
    let evidence = azure::evidence(hcl, Some(tdx_quote));
    let verifier = crate::Verifier::new(azure::policy()).with_collateral(Arc::new(client(&server)));
    // Past every TDX check with the fetched collateral; refused only for its stand-in TPM.
    let refused = verifier.verify(&evidence, at(azure::now())).unwrap_err();
    let VerifyError::Tpm(t) = &refused else {
        panic!("a TPM refusal after the TDX checks, got {refused}")
    };
    assert!(matches!(t.error(), crate::tpm::TpmError::AkNotInHclReport));
    assert_eq!(
        server.hits(),
        4,
        "root CA CRL, PCK CRL, TCB info, QE identity"
    );
    let fetched = client(&server)
        .endorsements_blocking(&evidence, at(azure::now()))
        .unwrap();
    assert_eq!(fetched.tdx_collateral, Some(c));
    assert_eq!(fetched.snp_vcek, None);
}

#[test]
fn without_collateral_and_without_a_client_the_quote_is_refused() {
    let (evidence, now) = bare();
    assert!(matches!(
        crate::Verifier::new(policy()).verify(&evidence, at(now)),
        Err(VerifyError::Tdx(crate::TdxError::MissingCollateral))
    ));
}

#[test]
fn stale_collateral_is_refused() {
    let server = pcs();
    let client = client(&server);
    let c = recorded();
    let (_, to) = collateral_window(&c);
    let (evidence, now) = bare();
    fetch(&client, now).unwrap();
    // After the earliest nextUpdate: refused, from the cache as from the server.
    let late = to + 1;
    assert!(matches!(
        fetch(&client, late),
        Err(CollateralError::Stale { next_update, now, .. }) if next_update < now && now == late
    ));
    let verifier = crate::Verifier::new(policy()).with_collateral(Arc::new(client));
    assert!(matches!(
        verifier.verify(&evidence, at(late)),
        Err(VerifyError::Collateral(CollateralError::Stale { .. }))
    ));
}

#[test]
fn a_tampered_tcb_info_is_a_bad_signature() {
    let server = pcs();
    let c = recorded();
    let forged = c.tcb_info.replacen("UpToDate", "UpToDatf", 1);
    assert_ne!(forged, c.tcb_info);
    server.set(
        &tcb_path(&c),
        Reply::ok(signed("tcbInfo", &forged, &c.tcb_info_signature))
            .header("TCB-Info-Issuer-Chain", &c.tcb_info_issuer_chain),
    );
    let (_, now) = bare();
    assert_eq!(
        fetch(&client(&server), now),
        Err(CollateralError::BadSignature {
            what: "tcbInfo".into()
        })
    );
}

#[test]
fn a_chain_not_ending_at_intels_root_or_missing_is_refused() {
    let server = pcs();
    let c = recorded();
    let (_, now) = bare();
    // Only the leaf: the chain does not reach the pinned root.
    let leaf_only = c.qe_identity_issuer_chain[..c
        .qe_identity_issuer_chain
        .find("-----END CERTIFICATE-----")
        .unwrap()
        + 25]
        .to_owned();
    let qe = signed("enclaveIdentity", &c.qe_identity, &c.qe_identity_signature);
    server.set(
        QE,
        Reply::ok(qe.clone()).header("SGX-Enclave-Identity-Issuer-Chain", &leaf_only),
    );
    assert!(matches!(
        fetch(&client(&server), now),
        Err(CollateralError::BadSignature { what }) if what.contains("pinned Intel SGX root")
    ));
    server.set(QE, Reply::ok(qe));
    assert!(matches!(
        fetch(&client(&server), now),
        Err(CollateralError::Malformed { what, reason })
            if what == "enclaveIdentity" && reason.contains("SGX-Enclave-Identity-Issuer-Chain")
    ));
}

#[test]
fn a_tampered_crl_or_a_missing_answer_is_refused() {
    let server = pcs();
    let c = recorded();
    let (_, now) = bare();
    let mut crl = c.pck_crl.clone();
    let last = crl.len() - 1;
    crl[last] ^= 1;
    server.set(
        PCK_CRL,
        Reply::ok(crl).header("SGX-PCK-CRL-Issuer-Chain", &c.pck_crl_issuer_chain),
    );
    assert!(matches!(
        fetch(&client(&server), now),
        Err(CollateralError::BadSignature { what }) if what == "PCK CRL (platform)"
    ));
    server.set(QE, Reply::status(404));
    let fresh = Server::start(routes(&c));
    fresh.set(QE, Reply::status(404));
    assert!(matches!(
        fetch(&client(&fresh), now),
        Err(CollateralError::NotFound { url }) if url.ends_with(QE)
    ));
}

#[test]
fn the_other_recorded_quotes_get_their_collateral_too() {
    for (quote, json) in [
        (TDX_V5, TDX_V5_COLLATERAL),
        (TDX_OUTDATED, TDX_OUTDATED_COLLATERAL),
    ] {
        let recorded: TdxCollateral = serde_json::from_str(json).unwrap();
        let server = Server::start(routes(&recorded));
        let with = tdx(quote, json);
        let now = tdx_now(&with);
        let evidence = Evidence::Tdx(TdxEvidence {
            quote: quote.to_vec(),
            collateral: None,
            event_log: None,
            tpm: None,
        });
        let client = Arc::new(client(&server));
        let fetched = client.endorsements_blocking(&evidence, now).unwrap();
        let expected = TdxCollateral {
            pck_certificate_chain: None,
            ..recorded
        };
        assert_eq!(fetched.tdx_collateral.unwrap(), expected);
        let verifier = crate::Verifier::new(policy_for(quote)).with_collateral(client);
        let outcome = verifier.verify(&evidence, now);
        if quote == TDX_OUTDATED {
            // Fetched and used: the platform's TCB level is what refuses it.
            assert!(matches!(outcome, Err(VerifyError::Tdx(_))), "{outcome:?}");
        } else {
            assert_eq!(outcome.unwrap().tdx.unwrap().quote_version, 5);
        }
    }
}
