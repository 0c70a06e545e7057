//! The contracts and their clients against a real local EVM node (hardhat 2 from the npm cache
//! that scripts/setup.sh fills). Each test starts its own node on a free port and stops it at
//! the end; without node or hardhat the tests say so and skip.
//!
//! Evidence is attest's `none` (development) evidence, accepted only because these verifiers
//! and this permitter explicitly allow it.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use alloy::network::EthereumWallet;
use alloy::primitives::{keccak256, Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use attest::Policy;
use contracts::bindings::{IdentityRegistry, OmniKeyStore, VerifierPermitter};
use contracts::devchain::{self, Deployment, DevChain, DevChainError};
use contracts::keys::{
    self, AuthorizationRequest, ChainConfig, Confidentiality, EvidenceProvider, KeyClient, KeyError,
};
use contracts::verifier::{self, Verifier};

async fn start_chain(test: &str) -> Option<DevChain> {
    match DevChain::start().await {
        Ok(chain) => Some(chain),
        Err(DevChainError::Unavailable(why)) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn wallet_provider(url: &str, signer: PrivateKeySigner) -> DynProvider {
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(url.parse().unwrap())
        .erased()
}

/// attest's `none` provider: a machine without a TEE (an empty root: no configfs-tsm, no
/// guest devices).
fn none_evidence() -> EvidenceProvider {
    let root = tempfile::tempdir().unwrap().keep();
    let attester = attest::Attester::detect_at(root);
    assert_eq!(attester.tee(), attest::Tee::None);
    Arc::new(move |rd| {
        attester
            .evidence(rd)
            .map(|e| e.to_json().into_bytes())
            .map_err(|e| e.to_string())
    })
}

fn dev_verifier(allow_dev: bool) -> Arc<Verifier> {
    let policy = Policy {
        allow_insecure_dev: allow_dev,
        ..Policy::default()
    };
    Arc::new(Verifier::new(
        attest::Verifier::new(policy),
        PrivateKeySigner::random(),
    ))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[track_caller]
fn assert_permitter_refused(result: Result<impl std::fmt::Debug, KeyError>, expected: &str) {
    match result {
        Err(KeyError::PermitterRefused { error, details }) => {
            assert_eq!(error, expected, "{details}")
        }
        other => panic!("expected the permitter to refuse with {expected}, got {other:?}"),
    }
}

struct Setup {
    url: String,
    d: Deployment,
    owner: DynProvider,
    config: ChainConfig,
    gas: PrivateKeySigner,
}

async fn setup(chain: &DevChain, verifier: &Verifier) -> Setup {
    let url = chain.rpc_url();
    let d = devchain::deploy(&url, DevChain::account(0), 3600)
        .await
        .unwrap();
    let owner = wallet_provider(&url, DevChain::account(0));
    let permitter = VerifierPermitter::new(d.permitter, owner.clone());
    permitter
        .setVerifier(verifier.address(), true)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    permitter
        .setMeasurement(verifier::none_measurement(), true)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let config = ChainConfig::new(
        url.clone(),
        devchain::HARDHAT_CHAIN_ID,
        d.registry,
        d.key_store,
        d.permitter,
        Confidentiality::InsecureDevChain,
    );
    Setup {
        url,
        d,
        owner,
        config,
        gas: DevChain::account(1),
    }
}

/// Same code hash → same key for two fresh requester accounts; another code hash → another
/// identity and key; the Rust and Solidity encodings (identity, binding, both EIP-712 digests)
/// agree.
#[tokio::test]
async fn same_code_gets_the_same_key_from_two_requesters() {
    let Some(chain) = start_chain("same_code_gets_the_same_key_from_two_requesters").await else {
        return;
    };
    let verifier = dev_verifier(true);
    let s = setup(&chain, &verifier).await;
    let client = KeyClient::connect(s.config.clone(), s.gas.clone(), none_evidence(), verifier)
        .await
        .unwrap();

    let code_a = keccak256("worker A");
    let first = client.acquire(code_a).await.unwrap();
    let second = client.acquire(code_a).await.unwrap();
    assert_ne!(first.requester(), second.requester());
    assert_eq!(first.identity, second.identity);
    assert!(first.expiry > unix_now() + 3000, "{first:?}");
    let k1 = client.read_key(&first).await.unwrap();
    let k2 = client.read_key(&second).await.unwrap();
    assert_eq!(k1, k2);
    assert_ne!(k1.as_bytes(), &[0u8; 32]);

    let k3 = client.get_key(keccak256("worker B")).await.unwrap();
    assert_ne!(k1, k3);

    // Encodings agree with the contracts.
    let provider = wallet_provider(&s.url, s.gas.clone());
    let registry = IdentityRegistry::new(s.d.registry, provider.clone());
    assert_eq!(
        registry
            .identityForCode(code_a, s.d.permitter)
            .call()
            .await
            .unwrap(),
        client.identity_for_code(code_a)
    );
    let store = OmniKeyStore::new(s.d.key_store, provider.clone());
    let req = OmniKeyStore::KeyRequest {
        identity: first.identity,
        requester: first.requester(),
        expiry: U256::from(12345),
    };
    assert_eq!(
        store.keyRequestDigest(req.clone()).call().await.unwrap(),
        keys::key_request_signing_hash(&req, devchain::HARDHAT_CHAIN_ID, s.d.key_store)
    );
    let request = AuthorizationRequest {
        chain_id: devchain::HARDHAT_CHAIN_ID,
        registry: s.d.registry,
        permitter: s.d.permitter,
        identity: first.identity,
        requester: first.requester(),
        code_hash: code_a,
        nonce: B256::repeat_byte(9),
    };
    let permitter = VerifierPermitter::new(s.d.permitter, provider);
    assert_eq!(
        permitter
            .bindingFor(request.identity, request.requester, code_a, request.nonce)
            .call()
            .await
            .unwrap(),
        request.binding()
    );
    let m = verifier::none_measurement();
    assert_eq!(
        permitter
            .verifiedEvidenceDigest(m, request.binding(), 77)
            .call()
            .await
            .unwrap(),
        verifier::verified_evidence_signing_hash(&request, m, 77)
    );
}

/// Every refusal of the policy, each surfaced with the custom error that names the check.
#[tokio::test]
async fn permitter_and_key_store_refuse_what_the_policy_does_not_allow() {
    let Some(chain) =
        start_chain("permitter_and_key_store_refuse_what_the_policy_does_not_allow").await
    else {
        return;
    };
    let verifier = dev_verifier(true);
    let s = setup(&chain, &verifier).await;
    let client = KeyClient::connect(
        s.config.clone(),
        s.gas.clone(),
        none_evidence(),
        verifier.clone(),
    )
    .await
    .unwrap();
    let code_a = keccak256("worker A");
    let code_b = keccak256("worker B");
    let permit_a = client.acquire(code_a).await.unwrap();

    // Code B asking for code A's identity.
    assert_permitter_refused(
        client
            .acquire_identity(client.identity_for_code(code_a), code_b)
            .await,
        "CodeHashNotAllowed",
    );

    // An authorization signed by a verifier the permitter does not know.
    let rogue = KeyClient::connect(
        s.config.clone(),
        s.gas.clone(),
        none_evidence(),
        dev_verifier(true),
    )
    .await
    .unwrap();
    assert_permitter_refused(rogue.acquire(code_a).await, "VerifierNotAllowed");

    // Tampered evidence (report_data not the binding's): the verifier refuses, nothing is sent.
    let inner = none_evidence();
    let tampering: EvidenceProvider = Arc::new(move |mut rd: [u8; 64]| {
        rd[0] ^= 1;
        inner(rd)
    });
    let tampered = KeyClient::connect(s.config.clone(), s.gas.clone(), tampering, verifier.clone())
        .await
        .unwrap();
    match tampered.acquire(code_a).await {
        Err(KeyError::VerifierRefused(why)) => assert!(why.contains("report_data"), "{why}"),
        other => panic!("{other:?}"),
    }

    // `none` evidence with a verifier that does not allow dev mode (even if allowed on chain).
    let strict = dev_verifier(false);
    VerifierPermitter::new(s.d.permitter, s.owner.clone())
        .setVerifier(strict.address(), true)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let strict_client =
        KeyClient::connect(s.config.clone(), s.gas.clone(), none_evidence(), strict)
            .await
            .unwrap();
    match strict_client.acquire(code_a).await {
        Err(KeyError::VerifierRefused(why)) => assert!(why.contains("insecure"), "{why}"),
        other => panic!("{other:?}"),
    }

    // A replayed (context, authorization): the nonce is single-use.
    let provider = wallet_provider(&s.url, s.gas.clone());
    let permitter = VerifierPermitter::new(s.d.permitter, provider);
    let request = AuthorizationRequest {
        chain_id: devchain::HARDHAT_CHAIN_ID,
        registry: s.d.registry,
        permitter: s.d.permitter,
        identity: client.identity_for_code(code_a),
        requester: PrivateKeySigner::random().address(),
        code_hash: code_a,
        nonce: B256::repeat_byte(0x42),
    };
    let evidence = none_evidence()(request.report_data()).unwrap();
    let auth = verifier
        .authorize_at(&request, &evidence, SystemTime::now())
        .unwrap();
    let acquire = || {
        permitter.acquireIdentity(
            request.identity,
            request.requester,
            600,
            request.context(),
            auth.encode(),
        )
    };
    acquire().send().await.unwrap().get_receipt().await.unwrap();
    let replay = acquire().send().await.unwrap_err();
    let revert = keys::decode_revert(&replay.as_revert_data().expect("revert data")).unwrap();
    assert_eq!(revert.name, "NonceAlreadyUsed");

    // Longer than the permitter's maximum.
    let mut long = s.config.clone();
    long.permit_duration = std::time::Duration::from_secs(3601);
    let long_client = KeyClient::connect(long, s.gas.clone(), none_evidence(), verifier.clone())
        .await
        .unwrap();
    assert_permitter_refused(long_client.acquire(code_a).await, "DurationTooLong");

    // A measurement the owner no longer allows.
    VerifierPermitter::new(s.d.permitter, s.owner.clone())
        .setMeasurement(verifier::none_measurement(), false)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert_permitter_refused(client.acquire(code_a).await, "MeasurementNotAllowed");

    // An expired key request, and one signed for a permit that has expired… The permit
    // itself is still good: a fresh request reads the key.
    match client
        .read_key_with_request_expiry(&permit_a, unix_now() - 60)
        .await
    {
        Err(KeyError::KeyStoreRefused { error, .. }) => assert_eq!(error, "KeyRequestExpired"),
        other => panic!("{other:?}"),
    }
    client.read_key(&permit_a).await.unwrap();

    // A requester without a permit (the replay's requester got one; this one never did).
    let store = OmniKeyStore::new(s.d.key_store, s.owner.clone());
    assert!(store.isProvisioned(permit_a.identity).call().await.unwrap());
    let nobody = PrivateKeySigner::random();
    let req = OmniKeyStore::KeyRequest {
        identity: permit_a.identity,
        requester: nobody.address(),
        expiry: U256::from(unix_now() + 60),
    };
    let hash = keys::key_request_signing_hash(&req, devchain::HARDHAT_CHAIN_ID, s.d.key_store);
    let sig = alloy::signers::SignerSync::sign_hash_sync(&nobody, &hash).unwrap();
    let err = store
        .getKey(OmniKeyStore::SignedKeyRequest {
            req,
            sig: sig.as_bytes().to_vec().into(),
        })
        .call()
        .await
        .unwrap_err();
    let revert = keys::decode_revert(&err.as_revert_data().unwrap()).unwrap();
    assert_eq!(revert.name, "NoPermit");
}

/// A key client configured for the wrong chain id refuses to start.
#[tokio::test]
async fn wrong_chain_id_is_a_configuration_error() {
    let Some(chain) = start_chain("wrong_chain_id_is_a_configuration_error").await else {
        return;
    };
    let config = ChainConfig::new(
        chain.rpc_url(),
        1,
        Address::repeat_byte(1),
        Address::repeat_byte(2),
        Address::repeat_byte(3),
        Confidentiality::InsecureDevChain,
    );
    let err = KeyClient::connect(
        config,
        DevChain::account(1),
        none_evidence(),
        dev_verifier(true),
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(err, KeyError::BadConfig(ref m) if m.contains("31337")),
        "{err:?}"
    );
}
