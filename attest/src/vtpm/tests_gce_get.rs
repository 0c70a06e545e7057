//! The guest side on swtpm playing Google's vTPM: an AK template and a certificate for the key
//! it makes (issued by a test CA, generated here, not Google's) in Google's NV indexes. The
//! attester finds them, quotes with that AK and carries the certificate; the verifier accepts
//! it as certified only when the certificate chains to a trusted root, and only with the opt-in.

use std::str::FromStr as _;

use p256::ecdsa::signature::Signer as _;
use x509_cert::der::asn1::{BitString, OctetString, UtcTime};
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

use super::gce_ak::{tests_support, GceAkError};
use super::get::{GceAk, LocalTpm, TpmPath};
use super::tests::{machine, snp_with_vtpm};
use crate::host::RootedFs;
use crate::testing::vectors;
use crate::tpm::{
    AkPublic, AkTemplate, Hierarchy, NvAuth, PublicKey, TcpTransport, Tpm, GCE_AK_CERT_INDEX_ECC,
    GCE_AK_TEMPLATE_INDEX_ECC, NV_NO_DA, NV_OWNERREAD, NV_OWNERWRITE,
};
use crate::{AkIssuer, AkTrust, Evidence, Policy, VerifyError, VtpmError};

const ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
/// DER SubjectPublicKeyInfo of a P-256 key, before its 65-byte uncompressed point.
const P256_SPKI_PREFIX: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";

fn p256_spki(point: &[u8]) -> SubjectPublicKeyInfoOwned {
    let mut der = hex::decode(P256_SPKI_PREFIX).unwrap();
    der.extend_from_slice(point);
    SubjectPublicKeyInfoOwned::from_der(&der).unwrap()
}

fn ext(oid: &str, critical: bool, value: impl x509_cert::der::Encode) -> Extension {
    Extension {
        extn_id: ObjectIdentifier::new_unwrap(oid),
        critical,
        extn_value: OctetString::new(value.to_der().unwrap()).unwrap(),
    }
}

/// A certificate for `point` named `subject`, signed by `issuer_key` as `issuer`.
fn certificate(
    subject: &str,
    issuer: &str,
    point: &[u8],
    issuer_key: &p256::ecdsa::SigningKey,
    ca: bool,
) -> Vec<u8> {
    let algorithm = AlgorithmIdentifierOwned {
        oid: ObjectIdentifier::new_unwrap(ECDSA_WITH_SHA256),
        parameters: None,
    };
    let time = |secs| {
        Time::UtcTime(UtcTime::from_unix_duration(std::time::Duration::from_secs(secs)).unwrap())
    };
    let usage = if ca {
        KeyUsages::KeyCertSign.into()
    } else {
        KeyUsages::DigitalSignature.into()
    };
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[1]).unwrap(),
        signature: algorithm.clone(),
        issuer: Name::from_str(issuer).unwrap(),
        // 2020-01-01 … 2040-01-01.
        validity: Validity {
            not_before: time(1_577_836_800),
            not_after: time(2_208_988_800),
        },
        subject: Name::from_str(subject).unwrap(),
        subject_public_key_info: p256_spki(point),
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(vec![
            ext(
                "2.5.29.19",
                true,
                BasicConstraints {
                    ca,
                    path_len_constraint: None,
                },
            ),
            ext("2.5.29.15", true, KeyUsage(usage)),
        ]),
    };
    let signature: p256::ecdsa::Signature = issuer_key.sign(&tbs.to_der().unwrap());
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(signature.to_der().as_bytes()).unwrap(),
    }
    .to_der()
    .unwrap()
}

fn point(key: &p256::ecdsa::SigningKey) -> Vec<u8> {
    key.verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec()
}

/// Test CA: (root DER, intermediate DER, intermediate key).
fn test_ca() -> (Vec<u8>, Vec<u8>, p256::ecdsa::SigningKey) {
    let root_key = p256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
    let inter_key = p256::ecdsa::SigningKey::from_bytes(&[9u8; 32].into()).unwrap();
    let root = certificate(
        "CN=test AK root",
        "CN=test AK root",
        &point(&root_key),
        &root_key,
        true,
    );
    let inter = certificate(
        "CN=test AK intermediate",
        "CN=test AK root",
        &point(&inter_key),
        &root_key,
        true,
    );
    (root, inter, inter_key)
}

/// Writes Google's ECC AK template into swtpm's NV, makes the AK, and writes a certificate for
/// it (issued by the test CA's intermediate) after it in a larger index. Returns the leaf and
/// the test CA's root and intermediate.
fn provision_gce_nv(addr: std::net::SocketAddr) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut tpm = Tpm::new(TcpTransport::connect(addr).unwrap());
    let template = AkTemplate::EccP256.to_bytes();
    let attrs = NV_OWNERWRITE | NV_OWNERREAD | NV_NO_DA;
    tpm.nv_define_space(GCE_AK_TEMPLATE_INDEX_ECC, template.len() as u16, attrs)
        .unwrap();
    tpm.nv_write(NvAuth::Owner, GCE_AK_TEMPLATE_INDEX_ECC, &template)
        .unwrap();
    let (handle, ak): (u32, AkPublic) = tpm
        .create_primary_from(Hierarchy::Endorsement, &template)
        .unwrap();
    tpm.flush_context(handle).unwrap();
    let PublicKey::EccP256 { x, y } = ak.key else {
        panic!("an ECC AK")
    };
    let mut ak_point = vec![4];
    ak_point.extend_from_slice(&x);
    ak_point.extend_from_slice(&y);
    let (root, inter, inter_key) = test_ca();
    let leaf = certificate(
        "CN=test GCE instance",
        "CN=test AK intermediate",
        &ak_point,
        &inter_key,
        false,
    );
    // Larger than the certificate, as an NV index may be: the attester cuts at its DER length.
    let mut padded = leaf.clone();
    padded.resize(leaf.len() + 32, 0);
    tpm.nv_define_space(GCE_AK_CERT_INDEX_ECC, padded.len() as u16, attrs)
        .unwrap();
    tpm.nv_write(NvAuth::Owner, GCE_AK_CERT_INDEX_ECC, &padded)
        .unwrap();
    (leaf, root, inter)
}

/// The recorded Milan report beside the swtpm's quote, with the test CA's intermediate
/// carried, and a policy whose only TPM platform is `gcp-snp-vtpm`.
fn gce_evidence(uki: &[u8]) -> (Evidence, Policy, Vec<u8>, Vec<u8>) {
    let m = machine(uki);
    let (leaf, root, inter) = provision_gce_nv(m.swtpm.addr());
    let local = LocalTpm::at(TpmPath::Tcp(m.swtpm.addr()));
    assert_eq!(
        local.gce,
        Some(GceAk {
            template_index: GCE_AK_TEMPLATE_INDEX_ECC,
            cert_index: GCE_AK_CERT_INDEX_ECC
        })
    );
    // Collected through a LocalTpm that probes the swtpm as `local` did.
    let (Evidence::Snp(mut e), mut p) = snp_with_vtpm(&m) else {
        panic!("SNP evidence")
    };
    let cert = e
        .tpm
        .as_mut()
        .unwrap()
        .ak_cert
        .as_mut()
        .expect("the AK certificate carried");
    assert_eq!(
        cert.certificate, leaf,
        "read from NV, cut at its DER length"
    );
    assert!(cert.intermediates.is_empty());
    cert.intermediates.push(inter);
    for u in &mut p.expected.uefi {
        u.platform = "gcp-snp-vtpm".into();
    }
    p.allow_untrusted_vtpm = true;
    drop(m);
    (Evidence::Snp(e), p, leaf, root)
}

#[test]
fn a_certified_vtpm_ak_is_read_from_nv_carried_and_verified() {
    let (e, p, _leaf, root) = gce_evidence(b"the UKI");
    // Its root is not Google's: refused, even with the opt-in.
    assert!(matches!(
        crate::verify(&e, &p, vectors::snp_now()),
        Err(VerifyError::Vtpm(VtpmError::GceAkCert(
            GceAkError::UnknownRoot { .. }
        )))
    ));
    tests_support::trust_test_root(&root);
    let v = crate::verify(&e, &p, vectors::snp_now()).unwrap();
    let t = v.tpm.unwrap();
    assert_eq!(
        t.ak_trust,
        AkTrust::CloudCertified {
            issuer: AkIssuer::Google
        }
    );
    assert_eq!(t.uefi_platform.as_deref(), Some("gcp-snp-vtpm"));
    assert_eq!(
        t.ak_certificate_subject.as_deref(),
        Some("CN=test GCE instance")
    );

    // The certificate does not replace the opt-in.
    let no_opt_in = Policy {
        allow_untrusted_vtpm: false,
        ..p.clone()
    };
    assert!(matches!(
        crate::verify(&e, &no_opt_in, vectors::snp_now()),
        Err(VerifyError::Vtpm(VtpmError::UntrustedVtpm { .. }))
    ));

    // Stripped of its certificate, the quote is not taken for Google's vTPM.
    let Evidence::Snp(mut stripped) = e.clone() else {
        unreachable!()
    };
    stripped.tpm.as_mut().unwrap().ak_cert = None;
    assert_eq!(
        crate::verify(&Evidence::Snp(stripped), &p, vectors::snp_now()).unwrap_err(),
        VerifyError::Vtpm(VtpmError::NoTpmPlatform)
    );

    // A certificate of another key (the intermediate's) beside this quote.
    let Evidence::Snp(mut other) = e.clone() else {
        unreachable!()
    };
    let (_, inter, inter_key) = test_ca();
    let wrong = certificate(
        "CN=test GCE instance",
        "CN=test AK intermediate",
        &point(&inter_key),
        &inter_key,
        false,
    );
    let cert = other.tpm.as_mut().unwrap().ak_cert.as_mut().unwrap();
    cert.certificate = wrong;
    cert.intermediates = vec![inter];
    assert_eq!(
        crate::verify(&Evidence::Snp(other), &p, vectors::snp_now()).unwrap_err(),
        VerifyError::Vtpm(VtpmError::GceAkCert(GceAkError::AkMismatch))
    );
}

#[test]
fn a_tpm_without_googles_indexes_keeps_our_own_ak() {
    let m = machine(b"the UKI");
    let local = LocalTpm::at(TpmPath::Tcp(m.swtpm.addr()));
    assert_eq!(local.gce, None);
    let tpm = local
        .evidence(&RootedFs::new(m.root.path()), &[1; 64])
        .unwrap();
    assert_eq!(tpm.ak_cert, None);
    let ak = AkPublic::from_tpm2b(&tpm.ak_public).unwrap();
    assert_eq!(crate::AkName(ak.name().unwrap()), m.ak_name);
}

#[test]
fn the_issuer_url_is_read_from_googles_certificates_and_only_googles_is_fetched() {
    use super::gce_aia::{is_google_ca_url, issuer_url};
    let pca = crate::collateral::x509::pem_certificates(
        include_str!("../../testdata/gce-ak/pca_tpm_ecc_sign_cert.pem"),
        "test",
    )
    .unwrap()
    .remove(0);
    let url = issuer_url(&pca).unwrap();
    assert_eq!(
        url,
        "http://privateca-content-633beb94-0000-25c1-a9d7-001a114ba6e8.storage.googleapis.com/c59a22589ab43a57e3a4/ca.crt"
    );
    assert!(is_google_ca_url(&url));
    assert!(is_google_ca_url(
        "https://pki.goog/cloud_integrity/tpm_ek_intermediate_2.crt"
    ));
    for other in [
        "http://127.0.0.1/ca.crt",
        "http://pki.goog.evil.example/ca.crt",
        "http://privateca-content-x.storage.googleapis.com.evil/ca.crt",
        "http://user@pki.goog/ca.crt",
        "http://pki.goog:8080/ca.crt",
        "ftp://pki.goog/ca.crt",
        "http://privateca-content-.storage.googleapis.com/ca.crt",
    ] {
        assert!(!is_google_ca_url(other), "{other}");
    }
    // The test CA's certificates have no AIA: nothing to fetch.
    let (root, _, _) = test_ca();
    assert_eq!(issuer_url(&root), None);
}

#[test]
fn the_issuer_is_fetched_as_der_or_pem_and_a_bad_answer_is_an_error() {
    use std::io::{Read as _, Write as _};
    let inter = include_bytes!("gce_ca/gcp_ek_ak_ca_intermediate_v3.der").to_vec();
    let serve = |body: Vec<u8>, status: &'static str| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf).unwrap();
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&body).unwrap();
        });
        format!("http://{addr}/ca.crt")
    };
    let got = super::gce_aia::fetch(&serve(inter.clone(), "200 OK")).unwrap();
    assert_eq!(got, vec![inter.clone()]);
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &inter)
    );
    let got = super::gce_aia::fetch(&serve(pem.into_bytes(), "200 OK")).unwrap();
    assert_eq!(got, vec![inter]);
    assert!(super::gce_aia::fetch(&serve(b"not a cert".to_vec(), "200 OK")).is_err());
    assert!(super::gce_aia::fetch(&serve(Vec::new(), "404 Not Found")).is_err());
}
