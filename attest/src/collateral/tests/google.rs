//! Google's launch endorsements fetched by measurement from the loopback server (the TEST
//! endorsement and roots of `testdata/gce-endorsement/`): verified under the configured root,
//! naming the measurement asked for, cached, 404s remembered; offline from a directory.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::collateral::{block_on, CollateralError, GoogleTee};
use crate::endorsement::EndorsementError;
use crate::measurement::Digest48;

const ENDORSEMENT: &[u8] = include_bytes!("../../../testdata/gce-endorsement/endorsement.binarypb");
const ROOT: &[u8] = include_bytes!("../../../testdata/gce-endorsement/root.der");
const OTHER_ROOT: &[u8] = include_bytes!("../../../testdata/gce-endorsement/other-root.der");
/// 2027-01-15: inside the test signing certificate's validity (2026-12-04 .. 2027-12-04).
const NOW: u64 = 1_800_000_000;

/// The recorded Google C3 quote's MRTD, which the test endorsement names.
fn c3_mrtd() -> Digest48 {
    crate::testing::vectors::quote_registers(crate::testing::vectors::GCP_TDX_QUOTE).mrtd
}

fn path(tee: GoogleTee, m: &Digest48) -> String {
    format!("/{}/{m}.binarypb", tee.dir())
}

fn google(server: &Server, root: Option<&[u8]>) -> CollateralClient {
    client_with(CollateralConfig {
        google_url: server.url.clone(),
        google_root: root.map(<[u8]>::to_vec),
        timeout: Duration::from_secs(2),
        ..CollateralConfig::default()
    })
}

#[test]
fn an_endorsement_is_fetched_by_measurement_verified_and_cached() {
    let snp = Digest48([0x22; 48]);
    let server = Server::start(HashMap::from([
        (path(GoogleTee::Tdx, &c3_mrtd()), Reply::ok(ENDORSEMENT)),
        (path(GoogleTee::Snp, &snp), Reply::ok(ENDORSEMENT)),
    ]));
    let client = google(&server, Some(ROOT));
    let fetch = |tee, m: &Digest48| block_on(client.google_endorsement(tee, m, NOW));
    let endorsed = fetch(GoogleTee::Tdx, &c3_mrtd()).unwrap().unwrap();
    assert!(endorsed.tdx_mrtds.contains(&c3_mrtd()));
    assert!(endorsed.valid_until > NOW && endorsed.valid_until < u64::MAX);
    assert_eq!(
        fetch(GoogleTee::Tdx, &c3_mrtd()).unwrap(),
        Some(endorsed.clone())
    );
    assert_eq!(server.hits(), 1, "the second answer is the cached one");
    let entry = &client.entries()[0];
    assert_eq!(
        entry.key,
        format!("google:{}", path(GoogleTee::Tdx, &c3_mrtd()))
    );
    assert_eq!(
        entry.next_update,
        Some(endorsed.valid_until),
        "kept while its chain is valid"
    );
    // SEV-SNP launch digests, from the `sevsnp` directory.
    let endorsed = fetch(GoogleTee::Snp, &snp).unwrap().unwrap();
    assert!(endorsed.snp_launch_digests.contains(&snp));

    // Google has none for this one: no endorsement, and the 404 is remembered.
    let unknown = Digest48([0x44; 48]);
    assert_eq!(fetch(GoogleTee::Tdx, &unknown), Ok(None));
    assert_eq!(fetch(GoogleTee::Tdx, &unknown), Ok(None));
    assert_eq!(server.hits_for(&path(GoogleTee::Tdx, &unknown)), 1);
    // Once the chain has expired the cached answer no longer counts.
    assert!(matches!(
        block_on(client.google_endorsement(GoogleTee::Tdx, &c3_mrtd(), 1_900_000_000)),
        Err(CollateralError::Endorsement {
            error: EndorsementError::NotValidAt { .. },
            ..
        })
    ));
}

#[test]
fn an_endorsement_for_another_measurement_or_under_another_root_is_refused() {
    // A mirror answering for MRTD 44…44 with the (valid) endorsement of other measurements.
    let other = Digest48([0x44; 48]);
    let server = Server::start(HashMap::from([
        (path(GoogleTee::Tdx, &other), Reply::ok(ENDORSEMENT)),
        (path(GoogleTee::Snp, &c3_mrtd()), Reply::ok(ENDORSEMENT)),
        (path(GoogleTee::Tdx, &c3_mrtd()), Reply::ok(ENDORSEMENT)),
    ]));
    let client = google(&server, Some(ROOT));
    for (tee, m) in [(GoogleTee::Tdx, other), (GoogleTee::Snp, c3_mrtd())] {
        assert!(matches!(
            block_on(client.google_endorsement(tee, &m, NOW)),
            Err(CollateralError::Endorsement {
                error: EndorsementError::NotNamed { .. },
                ..
            })
        ));
    }
    assert!(client.entries().is_empty(), "nothing refused is cached");
    // Under another root.
    let elsewhere = google(&server, Some(OTHER_ROOT));
    assert!(matches!(
        block_on(elsewhere.google_endorsement(GoogleTee::Tdx, &c3_mrtd(), NOW)),
        Err(CollateralError::Endorsement {
            error: EndorsementError::NotIssuedByRoot(_),
            ..
        })
    ));
    // A tampered answer.
    let mut tampered = ENDORSEMENT.to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    server.set(&path(GoogleTee::Tdx, &c3_mrtd()), Reply::ok(tampered));
    assert!(matches!(
        block_on(client.google_endorsement(GoogleTee::Tdx, &c3_mrtd(), NOW)),
        Err(CollateralError::Endorsement {
            error: EndorsementError::BadSignature,
            ..
        })
    ));
    // No root configured: nothing is fetched.
    let hits = server.hits();
    let rootless = google(&server, None);
    assert_eq!(
        block_on(rootless.google_endorsement(GoogleTee::Tdx, &c3_mrtd(), NOW)),
        Ok(None)
    );
    assert_eq!(server.hits(), hits);
}

#[test]
fn offline_endorsements_come_from_a_directory_laid_out_like_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tdx")).unwrap();
    std::fs::write(
        dir.path().join(format!("tdx/{}.binarypb", c3_mrtd())),
        ENDORSEMENT,
    )
    .unwrap();
    let bad = Digest48([0x11; 48]);
    std::fs::write(dir.path().join(format!("tdx/{bad}.binarypb")), b"not one").unwrap();
    let client = client_with(CollateralConfig {
        google_url: "http://127.0.0.1:9".into(),
        google_root: Some(ROOT.to_vec()),
        google_dir: Some(dir.path().to_owned()),
        ..CollateralConfig::default()
    });
    let fetch = |m: &Digest48| block_on(client.google_endorsement(GoogleTee::Tdx, m, NOW));
    assert!(fetch(&c3_mrtd())
        .unwrap()
        .unwrap()
        .tdx_mrtds
        .contains(&c3_mrtd()));
    assert_eq!(fetch(&Digest48([0x55; 48])), Ok(None));
    assert!(matches!(
        fetch(&bad),
        Err(CollateralError::Endorsement { .. })
    ));
}
