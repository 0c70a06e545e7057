//! TLS terminated inside the TEE under an attested certificate (RA-TLS).
//!
//! At boot the runner makes a P-256 key pair (memory only) and a self-signed
//! certificate for it that carries attestation evidence whose report_data
//! binds the certificate's public key. A client checks the evidence, checks
//! that it binds the key the server proves it holds in the TLS handshake, and
//! so knows it talks to the attested runner — with no certificate authority.
//!
//! The evidence travels in the TCG DICE "conceptual message wrapper"
//! extension, OID 2.23.133.5.4.9 (`tcg-dice-conceptual-message-wrapper`),
//! non-critical. Its value is a DER OCTET STRING holding a CBOR CMW record
//! (IETF RATS, draft-ietf-rats-msg-wrap): `[<media type>, <bytes>]` with media
//! type [`cmw::EVIDENCE_MEDIA_TYPE_DEFLATE`] and, as bytes, the evidence in
//! `attest`'s JSON format compressed with raw DEFLATE (a certificate must stay
//! under 64 KiB, and a TPM event log is 30–60 KB; see [`cmw`]). The older JSON
//! record `["<media type>", "<base64url JSON>"]` is still read. report_data = `attest::report_data_for` over one
//! key `{algorithm: "p256-spki", public_key: <SubjectPublicKeyInfo DER>}`, an
//! empty nonce, and the context [`cert::TLS_CONTEXT`]. The key is new at every
//! boot (not persisted).

pub mod cert;
pub mod cmw;
pub mod collateral;
pub mod deploy;
pub mod listener;
pub mod tpm_policy;
pub mod verify;
