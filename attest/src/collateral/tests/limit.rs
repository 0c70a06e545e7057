//! The bounds on outbound requests, against the loopback KDS counting requests: one request per
//! answer however many verifications want it at once; a budget per minute past which fetches fail
//! with their own error while cached answers and remembered 404s are still served; a bounded
//! memory of 404s.

use std::sync::Arc;
use std::time::Duration;

use super::amd::{bare, kds, milan_policy, vcek_path, CRL_PATH, NOW};
use super::*;
use crate::collateral::CollateralError;
use crate::testing::vectors::*;
use crate::{Evidence, SnpEvidence, VerifyError};

/// The recorded report with another chip ID (`i` in it): KDS knows no such chip (404 for
/// Milan, then Genoa: the report is version 2).
fn chip(i: u8) -> Evidence {
    let mut report = milan_report();
    report[0x1A0..0x1A3].copy_from_slice(&[0xEE, 0xEE, i]);
    assert_ne!(report[0x1A0..0x1E0], milan_report()[0x1A0..0x1E0]);
    Evidence::Snp(SnpEvidence {
        report,
        certs: vec![],
        tpm: None,
    })
}

fn milan_path(evidence: &Evidence) -> String {
    let Evidence::Snp(e) = evidence else {
        unreachable!()
    };
    let real = milan_report();
    vcek_path().replace(
        &hex::encode(&real[0x1A0..0x1E0]),
        &hex::encode(&e.report[0x1A0..0x1E0]),
    )
}

fn budgeted(server: &Server, per_minute: u32, max_not_found: usize) -> Arc<CollateralClient> {
    Arc::new(client_with(CollateralConfig {
        max_fetches_per_minute: per_minute,
        max_not_found,
        ..loopback(server)
    }))
}

/// The default configuration, asking `server` for everything.
fn loopback(server: &Server) -> CollateralConfig {
    CollateralConfig {
        amd_url: server.url.clone(),
        intel_url: server.url.clone(),
        timeout: Duration::from_secs(2),
        ..CollateralConfig::default()
    }
}

#[test]
fn concurrent_verifications_for_one_chip_send_one_request_per_answer() {
    let server = kds();
    // Slow answers, so that all the verifications ask while the first request is under way.
    let slow = |reply: Reply| Reply {
        delay: Duration::from_millis(400),
        ..reply
    };
    server.set(&vcek_path(), slow(Reply::ok(MILAN_VCEK)));
    let unknown = chip(1);
    server.set(&milan_path(&unknown), slow(Reply::status(404)));
    let verifier =
        Arc::new(crate::Verifier::new(milan_policy()).with_collateral(budgeted(&server, 60, 100)));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let verifier = verifier.clone();
            let unknown = unknown.clone();
            std::thread::spawn(move || {
                if i % 2 == 0 {
                    verifier.verify(&bare(), at(NOW)).map(|_| ())
                } else {
                    verifier.verify(&unknown, at(NOW)).map(|_| ())
                }
            })
        })
        .collect();
    for (i, thread) in threads.into_iter().enumerate() {
        let outcome = thread.join().unwrap();
        if i % 2 == 0 {
            outcome.unwrap();
        } else {
            // Every waiter gets the one answer: not found (Milan, then Genoa).
            assert!(
                matches!(
                    outcome,
                    Err(VerifyError::Collateral(CollateralError::NotFound { .. }))
                ),
                "{outcome:?}"
            );
        }
    }
    assert_eq!(server.hits_for(&vcek_path()), 1, "one VCEK request");
    assert_eq!(server.hits_for(CRL_PATH), 1, "one CRL request");
    assert_eq!(server.hits_for(&milan_path(&unknown)), 1, "one 404");
    assert_eq!(
        server.hits(),
        4,
        "VCEK, CRL, the unknown chip as Milan and as Genoa"
    );
}

#[test]
fn past_the_budget_fetches_fail_with_their_own_error_and_cached_answers_still_serve() {
    let server = kds();
    let client = budgeted(&server, 5, 100);
    let verifier = crate::Verifier::new(milan_policy()).with_collateral(client.clone());
    verifier.verify(&bare(), at(NOW)).unwrap();
    assert_eq!(server.hits(), 2, "the VCEK and the CRL");

    // A requester naming chip after chip: each costs KDS a request until the budget is spent.
    let mut limited = Vec::new();
    for i in 0..10 {
        match client.endorsements_blocking(&chip(i), at(NOW)) {
            Err(CollateralError::NotFound { .. }) => {}
            Err(e @ CollateralError::RateLimited { .. }) => limited.push(e),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(server.hits(), 5, "never more requests than the budget");
    assert_eq!(
        limited.len(),
        9,
        "chip 0 was answered (404), the others were not asked"
    );
    // 5 a minute: the next request in at most 12 s.
    let wait = limited[0].retry_after().unwrap();
    assert!((1..=12).contains(&wait), "{wait}");

    // Through the verifier: its own typed error, saying when to come back.
    let refused = verifier.verify(&chip(20), at(NOW)).unwrap_err();
    assert!(
        matches!(&refused, VerifyError::Collateral(e) if e.retry_after().is_some()),
        "{refused:?}"
    );
    // The cached chip still verifies, and a remembered 404 is answered, without a request.
    verifier.verify(&bare(), at(NOW)).unwrap();
    assert!(matches!(
        client.endorsements_blocking(&chip(0), at(NOW)),
        Err(CollateralError::NotFound { .. })
    ));
    assert_eq!(server.hits(), 5);
}

#[test]
fn the_memory_of_404s_is_bounded() {
    let server = kds();
    let client = budgeted(&server, 0, 3);
    for i in 0..10 {
        assert!(client.endorsements_blocking(&chip(i), at(NOW)).is_err());
    }
    assert_eq!(
        server.hits(),
        20,
        "no budget: every unknown chip asked as Milan and Genoa"
    );
    assert_eq!(client.not_found.len(), 3);
    // The latest are remembered: no request for chip 9.
    assert!(client.endorsements_blocking(&chip(9), at(NOW)).is_err());
    assert_eq!(server.hits(), 20);
}

#[test]
fn verifications_on_many_threads_each_get_their_answer_over_their_own_connection() {
    // Each blocking call runs on a runtime of its own: a connection kept from another call
    // dies with that call's runtime, and a request sent on it would be lost.
    let server = kds();
    let client = budgeted(&server, 0, 1000);
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                (0..15u8)
                    .map(|i| client.endorsements_blocking(&chip(t * 16 + i), at(NOW)))
                    .filter(|outcome| !matches!(outcome, Err(CollateralError::NotFound { .. })))
                    .map(|outcome| format!("{outcome:?}"))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let wrong: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}");
    assert_eq!(server.hits(), 120, "each chip asked as Milan and Genoa");
}

#[test]
fn each_requester_spends_its_own_share_of_the_budget() {
    let server = kds();
    let client = Arc::new(client_with(CollateralConfig {
        max_fetches_per_requester: 2,
        ..loopback(&server)
    }));
    let verifier = crate::Verifier::new(milan_policy()).with_collateral(client.clone());
    // `a`'s first unknown chip costs KDS two requests (Milan, Genoa): its share.
    let first = crate::collateral::as_requester("a", || verifier.verify(&chip(1), at(NOW)));
    assert!(
        matches!(
            first,
            Err(VerifyError::Collateral(CollateralError::NotFound { .. }))
        ),
        "{first:?}"
    );
    let second = crate::collateral::as_requester("a", || verifier.verify(&chip(2), at(NOW)));
    match second {
        Err(VerifyError::Collateral(
            ref e @ CollateralError::RequesterRateLimited {
                ref requester,
                per_minute: 2,
                ..
            },
        )) => {
            assert_eq!(requester, "a");
            assert!(e.retry_after().is_some_and(|s| (1..=30).contains(&s)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.hits(), 2, "nothing asked for `a` past its share");
    // `b`, and callers naming no requester, are not held back by `a`.
    let other = crate::collateral::as_requester("b", || verifier.verify(&chip(2), at(NOW)));
    assert!(
        matches!(
            other,
            Err(VerifyError::Collateral(CollateralError::NotFound { .. }))
        ),
        "{other:?}"
    );
    verifier.verify(&bare(), at(NOW)).unwrap();
    assert_eq!(
        server.hits(),
        6,
        "chip 2 as Milan and Genoa, then the VCEK and the CRL"
    );
    // Answers already had cost nothing: `a` still verifies the cached chip.
    crate::collateral::as_requester("a", || verifier.verify(&bare(), at(NOW))).unwrap();
}
