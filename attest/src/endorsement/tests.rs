//! Launch endorsements in Google's format, made with OpenSSL under a TEST root
//! (`testdata/gce-endorsement/`, see its README: Google's root bytes were not reachable here).

use super::*;
use sha2::Digest as _;

pub(crate) const ENDORSEMENT: &[u8] =
    include_bytes!("../../testdata/gce-endorsement/endorsement.binarypb");
pub(crate) const ROOT: &[u8] = include_bytes!("../../testdata/gce-endorsement/root.der");
const OTHER_ROOT: &[u8] = include_bytes!("../../testdata/gce-endorsement/other-root.der");
const SAME_NAME_ROOT: &[u8] = include_bytes!("../../testdata/gce-endorsement/same-name-root.der");
/// 2027-01-15, inside the signing certificate's validity (2026-12-04 .. 2027-12-04).
pub(crate) const VALID_AT: u64 = 1_800_000_000;
/// The recorded Google C3 quote's MRTD (`testdata/eventlog/gcp_tdx_cos113_quote.bin`).
const C3_MRTD: &str = "dae67181d3d65e073ad8f95b7907d5e927bfe9761c9ff3e9b89734a45d8954dba41394c7717cb2735396c1d04231f94a";

fn position(needle: &[u8]) -> usize {
    ENDORSEMENT
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

#[test]
fn a_valid_endorsement_verifies_and_names_its_measurements() {
    let e = GoogleEndorsement::parse(ENDORSEMENT).unwrap();
    assert_eq!(e.signed_at(), 1_798_761_600);
    assert_eq!(
        e.uefi_digest().0.as_slice(),
        sha2::Sha384::digest(b"TEST UEFI binary").as_slice()
    );
    assert_eq!(
        e.tdx(),
        [
            EndorsedTdx {
                ram_gib: 16,
                early_accept: false,
                mrtd: C3_MRTD.parse().unwrap()
            },
            EndorsedTdx {
                ram_gib: 256,
                early_accept: true,
                mrtd: Digest48([0x11; 48])
            },
        ]
    );
    assert_eq!(e.snp().iter().map(|s| s.vcpus).collect::<Vec<_>>(), [2, 4]);
    let endorsed = e.verify(ROOT, VALID_AT).unwrap();
    assert_eq!(endorsed.uefi_digest, e.uefi_digest());
    assert_eq!(endorsed.signed_at, 1_798_761_600);
    assert_eq!(
        endorsed.tdx_mrtds,
        [C3_MRTD.parse().unwrap(), Digest48([0x11; 48])]
    );
    assert_eq!(
        endorsed.snp_launch_digests,
        [Digest48([0x22; 48]), Digest48([0x33; 48])]
    );
}

#[test]
fn a_flipped_byte_in_the_signed_measurements_or_the_signature_is_a_bad_signature() {
    let mut tampered = ENDORSEMENT.to_vec();
    tampered[position(&[0x11; 48]) + 7] ^= 1;
    let e = GoogleEndorsement::parse(&tampered).unwrap();
    assert_eq!(
        e.tdx()[1].mrtd.0[7],
        0x10,
        "the change is in the parsed MRTD"
    );
    assert_eq!(
        e.verify(ROOT, VALID_AT),
        Err(EndorsementError::BadSignature)
    );

    let mut tampered = ENDORSEMENT.to_vec();
    *tampered.last_mut().unwrap() ^= 1;
    let e = GoogleEndorsement::parse(&tampered).unwrap();
    assert_eq!(
        e.verify(ROOT, VALID_AT),
        Err(EndorsementError::BadSignature)
    );
}

#[test]
fn a_signing_certificate_not_under_the_pinned_root_is_refused() {
    let e = GoogleEndorsement::parse(ENDORSEMENT).unwrap();
    assert!(matches!(
        e.verify(OTHER_ROOT, VALID_AT),
        Err(EndorsementError::NotIssuedByRoot(_))
    ));
    // The root's own certificate in the signing slot: issued by the root (self-signed) but a CA.
    let root_der = GoogleEndorsement {
        cert: ROOT.to_vec(),
        ..e.clone()
    };
    assert_eq!(
        root_der.verify(ROOT, VALID_AT),
        Err(EndorsementError::NotASigningCertificate("it is a CA"))
    );
    // A flipped bit in the certificate's subject (the issuer still names the root) breaks the
    // root's signature over it.
    let mut cert = e.cert.clone();
    let at = cert
        .windows(b"GCE-uefi-signer".len())
        .position(|w| w == b"GCE-uefi-signer")
        .unwrap();
    cert[at] ^= 1;
    let bad = GoogleEndorsement { cert, ..e.clone() };
    assert_eq!(
        bad.verify(ROOT, VALID_AT),
        Err(EndorsementError::NotIssuedByRoot(
            "the root's signature does not verify"
        ))
    );
    // A pinned root with the right name but another key: the name alone does not pass.
    assert_eq!(
        e.verify(SAME_NAME_ROOT, VALID_AT),
        Err(EndorsementError::NotIssuedByRoot(
            "the root's signature does not verify"
        ))
    );
    assert!(matches!(
        e.verify(b"not a certificate", VALID_AT),
        Err(EndorsementError::Certificate { what: "root", .. })
    ));
}

#[test]
fn an_expired_or_not_yet_valid_signing_certificate_is_refused() {
    let e = GoogleEndorsement::parse(ENDORSEMENT).unwrap();
    assert!(matches!(
        e.verify(ROOT, 1_900_000_000),
        Err(EndorsementError::NotValidAt {
            what: "signing",
            now: 1_900_000_000,
            ..
        })
    ));
    assert!(matches!(
        e.verify(ROOT, 1_700_000_000),
        Err(EndorsementError::NotValidAt { .. })
    ));
}

#[test]
fn a_truncated_endorsement_is_malformed_at_an_offset() {
    // The golden measurement (field 1) claims more bytes than remain: its value starts at 3.
    assert_eq!(
        GoogleEndorsement::parse(&ENDORSEMENT[..100]),
        Err(EndorsementError::Malformed {
            offset: 3,
            reason: "field runs past the end of its message"
        })
    );
    // Cut inside the signature: the outer message's last field runs short.
    let sig_len_at = ENDORSEMENT.len() - 512 - 3;
    assert_eq!(ENDORSEMENT[sig_len_at], 0x12, "signature key");
    assert!(matches!(
        GoogleEndorsement::parse(&ENDORSEMENT[..ENDORSEMENT.len() - 1]),
        Err(EndorsementError::Malformed { offset, .. }) if offset == sig_len_at + 3
    ));
    // Empty: no signed measurements.
    assert_eq!(
        GoogleEndorsement::parse(&[]),
        Err(EndorsementError::Missing("serialized_uefi_golden"))
    );
}

#[test]
fn a_pem_root_is_read_as_its_der() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(ROOT);
    let pem = format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
    assert_eq!(certificate_der(pem.as_bytes()).unwrap(), ROOT);
    assert_eq!(certificate_der(ROOT).unwrap(), ROOT);
    assert!(
        certificate_der(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----").is_err()
    );
}
