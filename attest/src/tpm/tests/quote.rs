//! Quotes from a real swtpm: extended PCRs replay, and every tampered part is refused with its
//! own error.

use sha2::{Digest, Sha256};

use super::swtpm::Swtpm;
use crate::tpm::{
    verify_tpm_quote, AkPublic, AkSource, Hierarchy, PcrSelection, PublicKey, TpmError,
    TpmEvidence, AK_ATTRIBUTES,
};

const REPORT_DATA: [u8; 64] = [0x5a; 64];

/// The SHA-256 bank value after extending a zero PCR with `digests`, computed independently.
fn replay(digests: &[[u8; 32]]) -> [u8; 32] {
    digests.iter().fold([0u8; 32], |pcr, d| {
        let mut h = Sha256::new();
        h.update(pcr);
        h.update(d);
        h.finalize().into()
    })
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// swtpm with PCR 16 extended twice and PCR 23 once; evidence over PCRs 0, 4, 16, 23.
fn evidence() -> (Swtpm, TpmEvidence, [u8; 32], [u8; 32]) {
    let (swtpm, mut tpm) = Swtpm::start();
    tpm.startup_clear().unwrap();
    let (a, b, c) = (digest("kernel"), digest("cmdline"), digest("app"));
    tpm.pcr_extend(16, &a).unwrap();
    tpm.pcr_extend(16, &b).unwrap();
    tpm.pcr_extend(23, &c).unwrap();
    let selection = PcrSelection::sha256([0, 4, 16, 23]).unwrap();
    let e = TpmEvidence::collect(
        &mut tpm,
        AkSource::Primary(Hierarchy::Endorsement),
        &REPORT_DATA,
        &selection,
        Some(b"event log bytes".to_vec()),
    )
    .unwrap();
    (swtpm, e, replay(&[a, b]), replay(&[c]))
}

#[test]
fn quote_over_extended_pcrs_verifies_and_replays() {
    let (_swtpm, e, pcr16, pcr23) = evidence();
    let v = verify_tpm_quote(&e, &REPORT_DATA).unwrap();
    assert_eq!(
        v.quoted.pcrs.keys().copied().collect::<Vec<_>>(),
        [0, 4, 16, 23]
    );
    assert_eq!(v.quoted.pcrs[&16], pcr16);
    assert_eq!(v.quoted.pcrs[&23], pcr23);
    assert_eq!(v.quoted.pcrs[&0], [0u8; 32], "no firmware measured PCR 0");
    assert_eq!(v.ak.attributes, AK_ATTRIBUTES);
    assert!(matches!(v.ak.key, PublicKey::EccP256 { .. }));
    assert_eq!(v.ak_name.len(), 34);
    // Through JSON and back, the evidence still verifies.
    let json = serde_json::to_string(&e).unwrap();
    let back: TpmEvidence = serde_json::from_str(&json).unwrap();
    assert_eq!(back.event_log.as_deref(), Some(&b"event log bytes"[..]));
    assert_eq!(verify_tpm_quote(&back, &REPORT_DATA).unwrap(), v);
}

#[test]
fn the_same_tpm_gives_the_same_ak_and_pcr_read_covers_all_24() {
    let (_swtpm, mut tpm) = Swtpm::start();
    let (h1, ak1) = tpm.create_primary_ak(Hierarchy::Endorsement).unwrap();
    tpm.flush_context(h1).unwrap();
    let (h2, ak2) = tpm.create_primary_ak(Hierarchy::Endorsement).unwrap();
    assert_eq!(ak1, ak2);
    assert_eq!(tpm.read_public(h2).unwrap(), ak2);
    tpm.flush_context(h2).unwrap();
    let (h3, owner_ak) = tpm.create_primary_ak(Hierarchy::Owner).unwrap();
    assert_ne!(owner_ak, ak1, "another hierarchy's seed gives another key");
    tpm.flush_context(h3).unwrap();
    assert!(matches!(
        tpm.flush_context(h3),
        Err(TpmError::Command { .. })
    ));

    tpm.pcr_extend(16, &digest("x")).unwrap();
    let all = tpm.pcr_read(&PcrSelection::sha256(0..24).unwrap()).unwrap();
    assert_eq!(all.len(), 24);
    assert_eq!(all[&16], replay(&[digest("x")]));
    assert_eq!(tpm.get_random(16).unwrap().len(), 16);
}

#[test]
fn tampered_evidence_is_refused_each_with_its_own_error() {
    let (_swtpm, e, _, _) = evidence();
    verify_tpm_quote(&e, &REPORT_DATA).unwrap();
    let refuse = |e: &TpmEvidence| verify_tpm_quote(e, &REPORT_DATA).unwrap_err();

    // A flipped byte in the quote's pcrDigest: the signature no longer covers it.
    let mut t = e.clone();
    *t.quote.last_mut().unwrap() ^= 1;
    assert!(matches!(refuse(&t), TpmError::BadSignature), "attest");

    // A flipped byte in the magic: not TPM-generated.
    let mut t = e.clone();
    t.quote[1] ^= 1;
    assert!(matches!(refuse(&t), TpmError::BadMagic(_)), "magic");

    // Cut short.
    let mut t = e.clone();
    t.quote.pop();
    assert!(matches!(refuse(&t), TpmError::Malformed { .. }), "short");

    // A flipped byte in the signature's r.
    let mut t = e.clone();
    t.signature[10] ^= 1;
    assert!(matches!(refuse(&t), TpmError::BadSignature), "signature");

    // A flipped byte in the AK's x coordinate: not a P-256 point.
    let mut t = e.clone();
    let x_at = t.ak_public.len() - 2 * 34 + 4;
    t.ak_public[x_at] ^= 1;
    assert!(matches!(refuse(&t), TpmError::BadPublicKey(_)), "ak point");

    // The restricted bit cleared in the AK's attributes (bytes 6..10 of the TPM2B_PUBLIC).
    let mut t = e.clone();
    t.ak_public[7] ^= 0x01;
    assert!(
        matches!(refuse(&t), TpmError::NotAnAttestationKey(_)),
        "ak attributes"
    );

    // Another valid AK (the owner hierarchy's): the signature does not verify with it.
    let (_other_tpm, mut tpm) = Swtpm::start();
    let (_, other) = tpm.create_primary_ak(Hierarchy::Owner).unwrap();
    let t = TpmEvidence {
        ak_public: other.to_tpm2b().unwrap(),
        ..e.clone()
    };
    assert!(matches!(refuse(&t), TpmError::BadSignature), "other ak");

    // Another report_data: the nonce differs.
    let mut wrong = REPORT_DATA;
    wrong[63] ^= 1;
    assert!(matches!(
        verify_tpm_quote(&e, &wrong).unwrap_err(),
        TpmError::NonceMismatch { .. }
    ));

    // A PCR value that is not the quoted one.
    let mut t = e.clone();
    t.pcrs.insert(16, "00".repeat(32));
    assert!(
        matches!(refuse(&t), TpmError::PcrDigestMismatch { .. }),
        "pcr value"
    );

    // A quoted PCR left out, and a PCR the quote does not cover.
    let mut t = e.clone();
    t.pcrs.remove(&23);
    assert!(matches!(refuse(&t), TpmError::PcrMissing(23)));
    let mut t = e.clone();
    t.pcrs.insert(7, "00".repeat(32));
    assert!(matches!(refuse(&t), TpmError::PcrNotQuoted(7)));
}

#[test]
fn ak_name_is_sha256_of_the_public_area() {
    let (_swtpm, e, _, _) = evidence();
    let ak = AkPublic::from_tpm2b(&e.ak_public).unwrap();
    let mut expected = vec![0x00, 0x0b];
    expected.extend_from_slice(&Sha256::digest(&e.ak_public[2..]));
    assert_eq!(ak.name().unwrap(), expected);
    // The quote names its signer by the qualified name, which differs from the name.
    let v = verify_tpm_quote(&e, &REPORT_DATA).unwrap();
    assert_eq!(v.quoted.quote.qualified_signer.len(), 34);
}

#[test]
fn the_device_transport_carries_the_same_commands() {
    let (_swtpm, mut tpm) = Swtpm::start_chardev();
    tpm.startup_clear().unwrap();
    let d = digest("over the device");
    tpm.pcr_extend(23, &d).unwrap();
    let e = TpmEvidence::collect(
        &mut tpm,
        AkSource::Primary(Hierarchy::Endorsement),
        &REPORT_DATA,
        &PcrSelection::sha256([23]).unwrap(),
        None,
    )
    .unwrap();
    let v = verify_tpm_quote(&e, &REPORT_DATA).unwrap();
    assert_eq!(v.quoted.pcrs[&23], replay(&[d]));
}
