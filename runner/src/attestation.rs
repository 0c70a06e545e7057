//! Attestation documents this runner hands out: its own (`GET /attestation`) and a worker's
//! (Escrin's `env.tpm` `get-attestation`). Both are fresh evidence from the TEE whose
//! report_data binds the runner's identity key, a caller's nonce and a context; a worker's
//! also binds the worker's code identity, so that one worker cannot obtain a document that
//! speaks for another worker's code.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::identity::Identity;
use crate::identity::ATTESTATION_CONTEXT;
use crate::identity::IDENTITY_ALGORITHM;
use crate::keys::limit::Bucket;
use crate::keys::limit::RateLimit;
use crate::keys::limit::Scope;
use crate::worker::CodeIdentity;

/// The context bound into a worker's attestation document.
pub const WORKER_ATTESTATION_CONTEXT: &[u8] = b"smart-worker/worker/attestation/v1";

/// The algorithm name under which a worker's code identity is bound into report_data.
pub const CODE_IDENTITY_ALGORITHM: &str = "smart-worker/code-identity";

/// Longest nonce (a worker's `userdata`) accepted, in bytes.
pub const MAX_NONCE_BYTES: usize = 64;

/// Worker documents one worker may ask for: each is a call to the TEE's firmware (a TDX
/// quote also to the host's quoting service), which a worker must not monopolise.
pub const WORKER_LIMIT: RateLimit = RateLimit::per_minute(30);

/// Worker documents all workers together may ask for.
pub const RUNNER_LIMIT: RateLimit = RateLimit::per_minute(300);

#[derive(Debug, thiserror::Error)]
pub enum AttestationError {
    #[error("nonce is {0} bytes, more than {MAX_NONCE_BYTES}")]
    NonceTooLong(usize),
    #[error("attestation rate limit of {scope} reached ({} a minute): try again in {} s", limit.per_minute, retry_after.as_secs().max(1))]
    RateLimited {
        scope: Scope,
        limit: RateLimit,
        retry_after: Duration,
    },
    #[error("evidence task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("no evidence from the TEE: {0}")]
    Evidence(#[from] attest::Error),
    #[error("evidence encoding: {0}")]
    Encoding(#[from] serde_json::Error),
}

/// One key bound into report_data, as a document shows it.
#[derive(Debug, Serialize)]
pub struct DocumentKey {
    pub algorithm: String,
    pub public_key: String,
}

/// What a verifier needs to check a document: the evidence and everything its report_data
/// was computed from (`attest::report_data_for(keys, nonce, context)`).
#[derive(Debug, Serialize)]
pub struct AttestationDocument {
    pub tee: attest::Tee,
    pub insecure: bool,
    pub keys: Vec<DocumentKey>,
    pub nonce: String,
    pub context: String,
    pub report_data: String,
    pub evidence: Value,
}

/// Makes attestation documents; shared by the API and every worker.
#[derive(Debug)]
pub struct Attestor {
    attester: Arc<attest::Attester>,
    identity: Arc<Identity>,
    /// Worker documents of all workers together.
    workers_bucket: Mutex<Bucket>,
}

/// One worker's attestation documents, under its own rate limit and the runner's.
#[derive(Debug)]
pub struct WorkerAttestor {
    attestor: Arc<Attestor>,
    code: CodeIdentity,
    bucket: Mutex<Bucket>,
}

impl WorkerAttestor {
    /// A document binding this worker's code and `nonce`.
    pub async fn document(&self, nonce: &[u8]) -> Result<AttestationDocument, AttestationError> {
        if nonce.len() > MAX_NONCE_BYTES {
            return Err(AttestationError::NonceTooLong(nonce.len()));
        }
        {
            let now = Instant::now();
            let mut worker = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
            let mut runner = self
                .attestor
                .workers_bucket
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            crate::keys::limit::take_both(&mut worker, &mut runner, now).map_err(
                |(scope, limit, retry_after)| AttestationError::RateLimited {
                    scope,
                    limit,
                    retry_after,
                },
            )?;
        }
        self.attestor.worker_document(self.code, nonce).await
    }
}

impl Attestor {
    pub fn new(attester: Arc<attest::Attester>, identity: Arc<Identity>) -> Self {
        Self {
            attester,
            identity,
            workers_bucket: Mutex::new(Bucket::new(RUNNER_LIMIT, Instant::now())),
        }
    }

    /// The documents of the worker whose code is `code`.
    pub fn for_worker(self: &Arc<Self>, code: CodeIdentity) -> WorkerAttestor {
        WorkerAttestor {
            attestor: Arc::clone(self),
            code,
            bucket: Mutex::new(Bucket::new(WORKER_LIMIT, Instant::now())),
        }
    }

    pub fn tee(&self) -> attest::Tee {
        self.attester.tee()
    }

    /// The runner's document: its identity key, `nonce`, [`ATTESTATION_CONTEXT`].
    pub async fn runner_document(
        &self,
        nonce: &[u8],
    ) -> Result<AttestationDocument, AttestationError> {
        self.document(nonce, None, ATTESTATION_CONTEXT).await
    }

    /// A worker's document: the runner's identity key, then the worker's code identity,
    /// `nonce` (the worker's userdata), [`WORKER_ATTESTATION_CONTEXT`].
    pub async fn worker_document(
        &self,
        code: CodeIdentity,
        nonce: &[u8],
    ) -> Result<AttestationDocument, AttestationError> {
        self.document(nonce, Some(code), WORKER_ATTESTATION_CONTEXT)
            .await
    }

    async fn document(
        &self,
        nonce: &[u8],
        code: Option<CodeIdentity>,
        context: &'static [u8],
    ) -> Result<AttestationDocument, AttestationError> {
        if nonce.len() > MAX_NONCE_BYTES {
            return Err(AttestationError::NonceTooLong(nonce.len()));
        }
        let public = self.identity.public_key().to_bytes();
        let mut bound = vec![attest::BoundKey {
            algorithm: IDENTITY_ALGORITHM,
            public_key: &public,
        }];
        if let Some(code) = &code {
            bound.push(attest::BoundKey {
                algorithm: CODE_IDENTITY_ALGORITHM,
                public_key: code.as_bytes(),
            });
        }
        let report_data = attest::report_data_for(&bound, nonce, context);
        let keys = bound
            .iter()
            .map(|key| DocumentKey {
                algorithm: key.algorithm.to_owned(),
                public_key: hex::encode(key.public_key),
            })
            .collect();
        let attester = Arc::clone(&self.attester);
        // Getting a report talks to the TEE's firmware: keep it off the async workers.
        let evidence =
            tokio::task::spawn_blocking(move || attester.evidence(report_data)).await??;
        let tee = self.attester.tee();
        Ok(AttestationDocument {
            tee,
            insecure: tee == attest::Tee::None,
            keys,
            nonce: hex::encode(nonce),
            context: String::from_utf8_lossy(context).into_owned(),
            report_data: hex::encode(report_data),
            evidence: serde_json::from_str(&evidence.to_json())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::ScriptKind;

    fn attestor() -> Attestor {
        let root = tempfile::tempdir().unwrap();
        Attestor::new(
            Arc::new(attest::Attester::detect_at(root.path())),
            Arc::new(Identity::generate().unwrap()),
        )
    }

    fn verified_report_data(document: &AttestationDocument) -> [u8; 64] {
        let evidence = attest::Evidence::from_json(&document.evidence.to_string()).unwrap();
        let policy = attest::Policy {
            allow_insecure_dev: true,
            ..attest::Policy::default()
        };
        attest::verify(&evidence, &policy, std::time::SystemTime::now())
            .unwrap()
            .report_data
    }

    #[tokio::test]
    async fn a_workers_document_binds_its_code_and_nonce_and_differs_from_another_codes() {
        let attestor = attestor();
        let a = CodeIdentity::of(ScriptKind::Module, "export default {}");
        let b = CodeIdentity::of(ScriptKind::Module, "export default { x: 1 }");
        let doc_a = attestor.worker_document(a, b"userdata").await.unwrap();
        let doc_b = attestor.worker_document(b, b"userdata").await.unwrap();
        assert_eq!(doc_a.keys[1].algorithm, CODE_IDENTITY_ALGORITHM);
        assert_eq!(doc_a.keys[1].public_key, hex::encode(a.as_bytes()));
        assert_ne!(doc_a.report_data, doc_b.report_data);
        // The evidence carries exactly the binding the document states.
        let public = attestor.identity.public_key().to_bytes();
        let expected = attest::report_data_for(
            &[
                attest::BoundKey {
                    algorithm: IDENTITY_ALGORITHM,
                    public_key: &public,
                },
                attest::BoundKey {
                    algorithm: CODE_IDENTITY_ALGORITHM,
                    public_key: a.as_bytes(),
                },
            ],
            b"userdata",
            WORKER_ATTESTATION_CONTEXT,
        );
        assert_eq!(verified_report_data(&doc_a), expected);
        assert_eq!(doc_a.report_data, hex::encode(expected));
        // The runner's own document never equals a worker's for the same nonce.
        let runner = attestor.runner_document(b"userdata").await.unwrap();
        assert_ne!(runner.report_data, doc_a.report_data);
        assert_eq!(runner.keys.len(), 1);
    }

    #[tokio::test]
    async fn a_worker_asking_too_often_is_refused_without_a_call_to_the_tee() {
        let attestor = Arc::new(attestor());
        let worker = attestor.for_worker(CodeIdentity::of(ScriptKind::Module, "a"));
        for _ in 0..WORKER_LIMIT.burst {
            worker.document(b"n").await.unwrap();
        }
        let error = worker.document(b"n").await.unwrap_err();
        assert!(
            matches!(
                error,
                AttestationError::RateLimited {
                    scope: Scope::Worker,
                    ..
                }
            ),
            "{error}"
        );
        // Another worker still has its own allowance.
        let other = attestor.for_worker(CodeIdentity::of(ScriptKind::Module, "b"));
        other.document(b"n").await.unwrap();
    }

    #[tokio::test]
    async fn a_nonce_over_the_limit_is_refused() {
        let attestor = attestor();
        let code = CodeIdentity::of(ScriptKind::Classic, "x");
        let error = attestor
            .worker_document(code, &[0u8; MAX_NONCE_BYTES + 1])
            .await
            .unwrap_err();
        assert!(
            matches!(error, AttestationError::NonceTooLong(65)),
            "{error}"
        );
    }
}
