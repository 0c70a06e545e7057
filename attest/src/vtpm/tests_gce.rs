//! Google's AK certificates: real chains (go-tpm-tools' recorded certificates under both pinned
//! roots) and a recorded GCE attestation (COS 85: RSA AK, its certificate, quotes, event log)
//! accepted end to end and refused when tampered. Origins: `testdata/gce-ak/README.md`.

use std::collections::BTreeMap;

use super::gce_ak::{tests_support, verify_ak_certificate, GceAkError, GOOGLE_EK_AK_ROOT};
use super::{check, AkIssuer, AkTrust, TpmHost, VtpmError};
use crate::error::VerifyError;
use crate::eventlog::{EventLog, HashAlg, LogKind};
use crate::tpm::{
    verify_quote, AkCertificate, AkPublic, AkTemplate, QuoteInfo, TpmError, TpmEvidence,
    TpmSignature, VerifiedTpmQuote,
};
use crate::Policy;

const RECORDED: &[u8] = include_bytes!("../../testdata/gce-ak/gce-cos-85-nonce9009.pb");
const PCA_ECC: &str = include_str!("../../testdata/gce-ak/pca_tpm_ecc_sign_cert.pem");
const PCA_RSA: &str = include_str!("../../testdata/gce-ak/pca_tpm_rsa_sign_cert.pem");
const INTERMEDIATE_V3: &[u8] = include_bytes!("gce_ca/gcp_ek_ak_ca_intermediate_v3.der");
const TPM_EK_ROOT_1: &[u8] = include_bytes!("gce_ca/tpm_ek_root_1.der");
const TPM_EK_INTERMEDIATE_2: &[u8] = include_bytes!("gce_ca/tpm_ek_intermediate_2.der");

/// 2026-01-01: inside every recorded certificate's validity.
const NOW: u64 = 1_767_225_600;

fn pem(text: &str) -> Vec<u8> {
    crate::collateral::x509::pem_certificates(text, "test")
        .unwrap()
        .remove(0)
}

fn leaf(der: Vec<u8>) -> AkCertificate {
    AkCertificate {
        certificate: der,
        intermediates: Vec::new(),
    }
}

/// The AK a certificate names, as a TPM public area of our templates' shape.
fn ak_of(cert_der: &[u8]) -> AkPublic {
    use rsa::pkcs8::DecodePublicKey as _;
    use rsa::traits::PublicKeyParts as _;
    use x509_cert::der::{Decode as _, Encode as _};
    let cert = x509_cert::Certificate::from_der(cert_der).unwrap();
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let raw = spki.subject_public_key.raw_bytes();
    if raw.len() == 65 && raw[0] == 4 {
        let mut t = AkTemplate::EccP256.to_bytes();
        t.truncate(t.len() - 4);
        t.extend_from_slice(&[0, 32]);
        t.extend_from_slice(&raw[1..33]);
        t.extend_from_slice(&[0, 32]);
        t.extend_from_slice(&raw[33..]);
        AkPublic::from_tpmt(&t).unwrap()
    } else {
        let key = rsa::RsaPublicKey::from_public_key_der(&spki.to_der().unwrap()).unwrap();
        let n = key.n().to_bytes_be();
        let mut t = AkTemplate::Rsa2048.to_bytes();
        t.truncate(t.len() - 2);
        t.extend_from_slice(&(n.len() as u16).to_be_bytes());
        t.extend_from_slice(&n);
        AkPublic::from_tpmt(&t).unwrap()
    }
}

#[test]
fn the_pinned_roots_are_self_signed_and_the_intermediates_chain_to_them() {
    for root in [GOOGLE_EK_AK_ROOT, TPM_EK_ROOT_1] {
        tests_support::self_signed(root).unwrap();
    }
    // An intermediate is not self-signed.
    assert!(matches!(
        tests_support::self_signed(INTERMEDIATE_V3),
        Err(GceAkError::BadSignature { .. })
    ));
}

#[test]
fn googles_recorded_ak_certificates_verify_under_the_ek_ak_ca_root() {
    for text in [PCA_ECC, PCA_RSA] {
        let der = pem(text);
        let ak = ak_of(&der);
        let subject = verify_ak_certificate(&leaf(der.clone()), &ak, NOW).unwrap();
        assert!(subject.contains("O=Google Compute Engine"), "{subject}");
        assert!(subject.contains("L=us-central1-a"), "{subject}");
        // The intermediate carried in the evidence works as well as the known one.
        let carried = AkCertificate {
            certificate: der,
            intermediates: vec![INTERMEDIATE_V3.to_vec()],
        };
        verify_ak_certificate(&carried, &ak, NOW).unwrap();
    }
}

#[test]
fn each_broken_chain_is_refused_with_its_own_error() {
    let der = pem(PCA_ECC);
    let ak = ak_of(&der);
    // Validity 2022-11-23 … 2052-11-15.
    assert!(matches!(
        verify_ak_certificate(&leaf(der.clone()), &ak, 2_700_000_000),
        Err(GceAkError::NotValidAt { what: "leaf", .. })
    ));
    assert!(matches!(
        verify_ak_certificate(&leaf(der.clone()), &ak, 1_640_995_200),
        Err(GceAkError::NotValidAt { what: "leaf", .. })
    ));
    // Another root: the chain to EK/AK CA Root is not trusted when only the older root is.
    assert!(matches!(
        tests_support::verify_with_roots(&leaf(der.clone()), &ak, NOW, &[TPM_EK_ROOT_1.to_vec()]),
        Err(GceAkError::UnknownRoot { .. })
    ));
    // Another AK (the RSA certificate's key).
    let other = ak_of(&pem(PCA_RSA));
    assert_eq!(
        verify_ak_certificate(&leaf(der.clone()), &other, NOW),
        Err(GceAkError::AkMismatch)
    );
    // A changed byte in the leaf's serial number (offset 15: inside tbsCertificate).
    let mut tampered = der.clone();
    tampered[15] ^= 1;
    assert!(matches!(
        verify_ak_certificate(&leaf(tampered), &ak, NOW),
        Err(GceAkError::BadSignature { what: "leaf", .. })
    ));
    // A changed byte in the leaf's signature.
    let mut tampered = der.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(matches!(
        verify_ak_certificate(&leaf(tampered), &ak, NOW),
        Err(GceAkError::BadSignature { what: "leaf", .. })
    ));
    // A changed byte in a carried intermediate (found first, by the same name).
    let mut inter = INTERMEDIATE_V3.to_vec();
    inter[20] ^= 1;
    let carried = AkCertificate {
        certificate: der.clone(),
        intermediates: vec![inter],
    };
    assert!(matches!(
        verify_ak_certificate(&carried, &ak, NOW),
        Err(GceAkError::BadSignature {
            what: "intermediate",
            ..
        })
    ));
    // A CA certificate as the AK's.
    assert!(matches!(
        verify_ak_certificate(&leaf(INTERMEDIATE_V3.to_vec()), &ak, NOW),
        Err(GceAkError::KeyUsage { what: "leaf", .. })
    ));
    // Not a certificate.
    assert!(matches!(
        verify_ak_certificate(&leaf(vec![0x30, 3, 1, 2, 3]), &ak, NOW),
        Err(GceAkError::Malformed { what: "leaf", .. })
    ));
}

/// go-tpm-tools' `attest.Attestation` message, the fields used here.
struct Recorded {
    ak_pub: Vec<u8>,
    /// (TPMS_ATTEST, TPMT_SIGNATURE, PCR index → value) of the SHA-256 quote.
    quote: Vec<u8>,
    signature: Vec<u8>,
    pcrs: BTreeMap<u32, Vec<u8>>,
    event_log: Vec<u8>,
    ak_cert: Vec<u8>,
}

/// Protocol buffer fields (number, varint or bytes) of a message: enough for this recording.
fn fields(mut b: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0;
        for shift in (0..64).step_by(7) {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
        }
        v
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        match key & 7 {
            0 => out.push((key >> 3, varint(&mut b), Vec::new())),
            2 => {
                let len = varint(&mut b) as usize;
                out.push((key >> 3, 0, b[..len].to_vec()));
                b = &b[len..];
            }
            w => panic!("wire type {w}"),
        }
    }
    out
}

fn recorded() -> Recorded {
    let mut r = Recorded {
        ak_pub: Vec::new(),
        quote: Vec::new(),
        signature: Vec::new(),
        pcrs: BTreeMap::new(),
        event_log: Vec::new(),
        ak_cert: Vec::new(),
    };
    for (n, _, bytes) in fields(RECORDED) {
        match n {
            1 => r.ak_pub = bytes,
            3 => r.event_log = bytes,
            6 => r.ak_cert = bytes,
            2 => {
                let q = fields(&bytes);
                let pcrs = &q.iter().find(|f| f.0 == 3).unwrap().2;
                let pcrs = fields(pcrs);
                // HashAlgo SHA256 = 11.
                if pcrs.iter().any(|f| f.0 == 1 && f.1 == 11) {
                    r.quote = q.iter().find(|f| f.0 == 1).unwrap().2.clone();
                    r.signature = q.iter().find(|f| f.0 == 2).unwrap().2.clone();
                    for (_, _, entry) in pcrs.iter().filter(|f| f.0 == 2) {
                        let e = fields(entry);
                        r.pcrs.insert(e[0].1 as u32, e[1].2.clone());
                    }
                }
            }
            _ => {}
        }
    }
    r
}

/// The recording in our evidence form: the AK's public area as TPM2B, the SHA-256 quote, its
/// PCR values, the log and the AK certificate (no intermediate: the verifier knows Google's).
fn evidence() -> TpmEvidence {
    let r = recorded();
    let mut ak_public = (r.ak_pub.len() as u16).to_be_bytes().to_vec();
    ak_public.extend_from_slice(&r.ak_pub);
    TpmEvidence {
        ak_public,
        quote: r.quote,
        signature: r.signature,
        pcrs: r.pcrs.iter().map(|(i, v)| (*i, hex::encode(v))).collect(),
        event_log: Some(r.event_log),
        ak_cert: Some(leaf(r.ak_cert)),
    }
}

/// The recorded quote's nonce: 0x9009 (go-tpm-tools names the recording "nonce9009").
fn recorded_nonce(e: &TpmEvidence) -> Vec<u8> {
    QuoteInfo::parse(&e.quote).unwrap().extra_data
}

/// The quote checked as `verify_tpm_quote` does, but against the recording's own nonce (it
/// was not bound to one of our report_data).
fn verify_recorded_quote(e: &TpmEvidence) -> Result<VerifiedTpmQuote, TpmError> {
    let ak = AkPublic::from_tpm2b(&e.ak_public)?;
    ak.check_attestation_key()?;
    let signature = TpmSignature::parse(&e.signature)?;
    let mut quoted = verify_quote(
        &e.quote,
        &signature,
        &ak.key,
        &recorded_nonce(e),
        &e.pcr_values()?,
    )?;
    // The quote covers all 24 PCRs; the firmware's log covers 0–9. PCR 10 is COS's IMA (the
    // kernel's own log, not recorded), 16–23 debug and locality registers: not replayed.
    quoted.pcrs.retain(|i, _| *i < 10);
    Ok(VerifiedTpmQuote {
        ak_name: ak.name()?,
        ak,
        quoted,
    })
}

/// The opt-in and the log's PCR4 boot applications as the `gcp-snp-vtpm` prediction.
fn policy(log: &[u8]) -> Policy {
    let parsed = EventLog::parse(log, LogKind::Tpm).unwrap();
    let events = crate::testing::pcr4_boot_apps_json(&parsed);
    assert!(!events.is_empty());
    serde_json::from_value(serde_json::json!({
        "allow_untrusted_vtpm": true,
        "expected": {"uefi": [{"platform": "gcp-snp-vtpm", "prediction": {
            "trust": "Google's recorded COS 85 boot", "events": events}}]}
    }))
    .unwrap()
}

fn accept(e: &TpmEvidence, p: &Policy) -> Result<super::VerifiedTpm, VerifyError> {
    let quote = verify_recorded_quote(e).map_err(VerifyError::from)?;
    check(e, quote, TpmHost::OutsideTee, p, true, NOW)
}

#[test]
fn the_recorded_gce_attestation_is_accepted_end_to_end() {
    let e = evidence();
    assert_eq!(recorded_nonce(&e), [0x90, 0x09]);
    let p = policy(e.event_log.as_deref().unwrap());
    let t = accept(&e, &p).unwrap();
    assert_eq!(
        t.ak_trust,
        AkTrust::CloudCertified {
            issuer: AkIssuer::Google
        }
    );
    assert!(t.event_log_replayed);
    assert_eq!(t.uefi_platform.as_deref(), Some("gcp-snp-vtpm"));
    assert_eq!(t.pcrs.len(), 10);
    // An empty subject (this older leaf names the instance only in an extension).
    assert!(t.ak_certificate_subject.is_some());
    let text = t.ak_trust.to_string();
    assert!(text.contains("certified by Google") && text.contains("OUTSIDE the TEE"));
}

#[test]
fn the_recorded_gce_attestation_is_refused_when_tampered_or_not_opted_in() {
    let e = evidence();
    let p = policy(e.event_log.as_deref().unwrap());

    // Without the opt-in the certificate does not stand in for it.
    let no_opt_in = Policy {
        allow_untrusted_vtpm: false,
        ..p.clone()
    };
    assert!(matches!(
        accept(&e, &no_opt_in),
        Err(VerifyError::Vtpm(VtpmError::UntrustedVtpm { .. }))
    ));

    // A flipped byte in the quote (its clock).
    let mut t = e.clone();
    t.quote[60] ^= 1;
    assert!(matches!(
        verify_recorded_quote(&t),
        Err(TpmError::BadSignature)
    ));

    // A flipped byte in the certificate's body.
    let mut t = e.clone();
    t.ak_cert.as_mut().unwrap().certificate[20] ^= 1;
    assert!(matches!(
        accept(&t, &p),
        Err(VerifyError::Vtpm(VtpmError::GceAkCert(
            GceAkError::BadSignature { what: "leaf", .. }
        )))
    ));

    // Another AK's (valid) certificate beside this quote.
    let mut t = e.clone();
    t.ak_cert = Some(leaf(pem(PCA_RSA)));
    assert_eq!(
        accept(&t, &p).unwrap_err(),
        VerifyError::Vtpm(VtpmError::GceAkCert(GceAkError::AkMismatch))
    );

    // Verified after the certificate expired (2051-08-24).
    let quote = verify_recorded_quote(&e).unwrap();
    assert!(matches!(
        check(&e, quote, TpmHost::OutsideTee, &p, true, 2_577_000_000),
        Err(VerifyError::Vtpm(VtpmError::GceAkCert(
            GceAkError::NotValidAt { what: "leaf", .. }
        )))
    ));

    // Another root: the leaf does not chain to the EK/AK CA Root alone.
    let r = recorded();
    let ak = AkPublic::from_tpmt(&r.ak_pub).unwrap();
    assert!(matches!(
        tests_support::verify_with_roots(
            &leaf(r.ak_cert.clone()),
            &ak,
            NOW,
            &[GOOGLE_EK_AK_ROOT.to_vec()]
        ),
        Err(GceAkError::UnknownRoot { .. })
    ));
    // With the intermediate carried, it chains (the older root).
    let carried = AkCertificate {
        certificate: r.ak_cert,
        intermediates: vec![TPM_EK_INTERMEDIATE_2.to_vec()],
    };
    verify_ak_certificate(&carried, &ak, NOW).unwrap();

    // A flipped byte in a PCR4 event's digest: the log no longer replays.
    let mut t = e.clone();
    let log = t.event_log.as_mut().unwrap();
    let uki = crate::testing::first_boot_app(log, LogKind::Tpm);
    let digest = uki.digest(HashAlg::Sha256).unwrap().to_vec();
    let at = uki.offset
        + log[uki.offset..]
            .windows(32)
            .position(|w| w == digest.as_slice())
            .unwrap();
    log[at] ^= 1;
    assert!(matches!(accept(&t, &p), Err(VerifyError::EventLog(_))));

    // The certificate stripped: an uncertified vTPM is not taken for Google's.
    let t = TpmEvidence {
        ak_cert: None,
        ..e.clone()
    };
    assert_eq!(
        accept(&t, &p).unwrap_err(),
        VerifyError::Vtpm(VtpmError::NoTpmPlatform)
    );
}
