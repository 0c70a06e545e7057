//! Recorded Azure vTPM evidence (testdata/azure/, from the MIT-licensed `az-cvm-vtpm` crate):
//! an RSA-2048 AK and a quote over all 24 SHA-256 PCRs with the nonce "challenge".

use std::collections::BTreeMap;

use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;

use crate::tpm::{verify_quote, PublicKey, TpmError, TpmSignature, ALG_SHA256};

const QUOTE: &[u8] = include_bytes!("../../../testdata/azure/quote.bin");
const AK_PEM: &str = include_str!("../../../testdata/azure/akpub.pem");
const NONCE: &[u8] = b"challenge";

struct Recorded {
    attest: Vec<u8>,
    signature: TpmSignature,
    pcrs: BTreeMap<u32, [u8; 32]>,
    key: PublicKey,
}

/// `quote.bin` is bincode of az-cvm-vtpm's `Quote { signature, message, pcrs }`: a u64le
/// length and the raw RSASSA signature, a u64le length and the TPMS_ATTEST, a u64le count and
/// the 32-byte PCR values (PCR 0 upwards). The signature is wrapped as the TPMT_SIGNATURE the TPM returned (RSASSA, SHA-256).
fn recorded() -> Recorded {
    let mut at = 0;
    let mut next = |n: usize| {
        let s = &QUOTE[at..at + n];
        at += n;
        s
    };
    let len = |next: &mut dyn FnMut(usize) -> &'static [u8]| {
        u64::from_le_bytes(next(8).try_into().unwrap()) as usize
    };
    let n = len(&mut next);
    let sig = next(n).to_vec();
    let n = len(&mut next);
    let attest = next(n).to_vec();
    let n = len(&mut next);
    let pcrs = (0..n as u32)
        .map(|i| (i, <[u8; 32]>::try_from(next(32)).unwrap()))
        .collect();
    assert_eq!(at, QUOTE.len());
    let key = rsa::RsaPublicKey::from_public_key_pem(AK_PEM).unwrap();
    Recorded {
        attest,
        signature: TpmSignature::RsaSsa {
            hash: ALG_SHA256,
            sig,
        },
        pcrs,
        key: PublicKey::Rsa {
            modulus: key.n().to_bytes_be(),
            exponent: key
                .e()
                .to_bytes_be()
                .iter()
                .fold(0u32, |e, b| e << 8 | u32::from(*b)),
        },
    }
}

fn verify(r: &Recorded) -> Result<crate::tpm::QuotedPcrs, TpmError> {
    verify_quote(&r.attest, &r.signature, &r.key, NONCE, &r.pcrs)
}

#[test]
fn azure_quote_verifies_with_its_rsa_ak() {
    let r = recorded();
    let q = verify(&r).unwrap();
    assert_eq!(q.pcrs.len(), 24);
    assert_eq!(q.pcrs, r.pcrs);
    assert_eq!(q.quote.extra_data, NONCE);
    assert_eq!(q.quote.pcr_select.len(), 1);
    assert_eq!(q.quote.pcr_select[0].pcrs, (0..24).collect::<Vec<_>>());
}

#[test]
fn tampered_azure_quotes_are_refused() {
    let r = recorded();

    let mut t = recorded();
    let last = t.attest.len() - 1;
    t.attest[last] ^= 1;
    assert!(matches!(verify(&t), Err(TpmError::BadSignature)), "attest");

    let mut t = recorded();
    if let TpmSignature::RsaSsa { sig, .. } = &mut t.signature {
        sig[100] ^= 1;
    }
    assert!(
        matches!(verify(&t), Err(TpmError::BadSignature)),
        "signature"
    );

    let mut t = recorded();
    if let PublicKey::Rsa { modulus, .. } = &mut t.key {
        modulus[255] ^= 2;
    }
    assert!(matches!(verify(&t), Err(TpmError::BadSignature)), "ak");

    assert!(matches!(
        verify_quote(&r.attest, &r.signature, &r.key, b"challengf", &r.pcrs),
        Err(TpmError::NonceMismatch { .. })
    ));

    let mut t = recorded();
    t.pcrs.get_mut(&4).unwrap()[0] ^= 1;
    assert!(matches!(
        verify(&t),
        Err(TpmError::PcrDigestMismatch { .. })
    ));

    let mut t = recorded();
    t.key = PublicKey::EccP256 {
        x: [1; 32],
        y: [2; 32],
    };
    assert!(matches!(
        verify(&t),
        Err(TpmError::SignatureKeyMismatch { .. })
    ));
}
