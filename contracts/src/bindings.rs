//! alloy bindings for the contracts, generated from the committed artifacts in `artifacts/`
//! (ABI and bytecode, so each type also has `deploy`).
#![allow(missing_docs)]

use alloy::sol;

sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    IdentityRegistry,
    "artifacts/IdentityRegistry.json"
);
/// In its own module: its ABI names the inherited `IdentityRegistry.Permit`, for which `sol!`
/// makes an `IdentityRegistry` module that would clash with the registry's bindings.
mod omni_key_store {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        OmniKeyStore,
        "artifacts/OmniKeyStore.json"
    );
}
pub use omni_key_store::OmniKeyStore;
sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    VerifierPermitter,
    "artifacts/VerifierPermitter.json"
);
sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    TaskHub,
    "artifacts/TaskHub.json"
);
sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    EscrinTaskHub,
    "artifacts/EscrinTaskHub.json"
);

#[cfg(test)]
mod tests {
    use alloy::primitives::keccak256;
    use alloy::sol_types::{SolCall, SolEvent};
    use serde_json::Value;

    /// The canonical type of an ABI parameter (tuples spelled out).
    fn canonical(param: &Value) -> String {
        let ty = param["type"].as_str().unwrap();
        match ty.strip_prefix("tuple") {
            Some(suffix) => {
                let inner: Vec<String> = param["components"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(canonical)
                    .collect();
                format!("({}){suffix}", inner.join(","))
            }
            None => ty.to_owned(),
        }
    }

    /// Every function, event and error of an ABI JSON (`{"abi": [...]}` or an artifact) as
    /// `kind name(types)` plus, for events, which parameters are indexed (the topic layout).
    fn signatures(json: &str) -> Vec<String> {
        let doc: Value = serde_json::from_str(json).unwrap();
        let mut out: Vec<String> = doc["abi"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|item| matches!(item["type"].as_str(), Some("function" | "event" | "error")))
            .map(|item| {
                let inputs = item["inputs"].as_array().unwrap();
                let types: Vec<String> = inputs.iter().map(canonical).collect();
                let mut sig = format!(
                    "{} {}({})",
                    item["type"].as_str().unwrap(),
                    item["name"].as_str().unwrap(),
                    types.join(",")
                );
                if item["type"] == "event" {
                    let indexed: Vec<bool> = inputs.iter().map(|i| i["indexed"] == true).collect();
                    sig.push_str(&format!(" indexed{indexed:?}"));
                }
                if item["type"] == "function" {
                    let outputs: Vec<String> = item["outputs"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(canonical)
                        .collect();
                    sig.push_str(&format!(" returns({})", outputs.join(",")));
                }
                sig
            })
            .collect();
        out.sort();
        out
    }

    /// What of Escrin's ABI (`contracts/escrin-abi/<escrin>.json`, from escrin/escrin's
    /// `evm/abi/`) our artifact lacks: same names, parameter types (so selectors and topics),
    /// indexed flags and return types.
    fn missing_from_ours(escrin: &str, ours: &str) -> Vec<String> {
        let dir = env!("CARGO_MANIFEST_DIR");
        let read = |path: String| std::fs::read_to_string(&path).unwrap();
        let ours = signatures(&read(format!("{dir}/artifacts/{ours}.json")));
        signatures(&read(format!("{dir}/escrin-abi/{escrin}.json")))
            .into_iter()
            .filter(|s| !ours.contains(s))
            .collect()
    }

    fn selector(signature: &str) -> [u8; 4] {
        keccak256(signature)[..4].try_into().unwrap()
    }

    /// Escrin's identity contracts: every function and event (and Escrin's own errors) of its
    /// `IIdentityRegistry`, `OmniKeyStore` (which is a registry) and `IPermitter` is in ours
    /// with the same signature. Not compared: OpenZeppelin's internal errors in Escrin's store
    /// (`ECDSA*`, `StringTooLong`, `InvalidShortString`), which ours does not use.
    #[test]
    fn identity_contracts_have_escrins_abi() {
        let internal = [
            "error ECDSA",
            "error StringTooLong",
            "error InvalidShortString",
        ];
        for (escrin, ours) in [
            ("IIdentityRegistry", "IdentityRegistry"),
            ("IIdentityRegistry", "OmniKeyStore"),
            ("OmniKeyStore", "OmniKeyStore"),
            ("IPermitter", "VerifierPermitter"),
        ] {
            let missing: Vec<String> = missing_from_ours(escrin, ours)
                .into_iter()
                .filter(|s| !internal.iter().any(|i| s.starts_with(i)))
                .collect();
            assert!(
                missing.is_empty(),
                "{ours} lacks Escrin's {escrin}: {missing:#?}"
            );
        }
        use super::{IdentityRegistry as R, OmniKeyStore as S, VerifierPermitter as P};
        assert_eq!(
            S::getKeyCall::SELECTOR,
            selector("getKey(((bytes32,address,uint256),bytes))")
        );
        assert_eq!(
            P::acquireIdentityCall::SELECTOR,
            selector("acquireIdentity(bytes32,address,uint64,bytes,bytes)")
        );
        assert_eq!(
            R::readPermitCall::SELECTOR,
            selector("readPermit(address,bytes32)")
        );
        assert_eq!(
            R::grantIdentityCall::SELECTOR,
            selector("grantIdentity(bytes32,address,uint64)")
        );
        assert_eq!(
            R::IdentityGranted::SIGNATURE_HASH,
            keccak256("IdentityGranted(bytes32,address)")
        );
    }

    #[test]
    fn escrin_task_hub_has_escrins_abi() {
        let missing = missing_from_ours("ITaskHub", "EscrinTaskHub");
        assert!(missing.is_empty(), "missing: {missing:#?}");
        assert_eq!(
            super::EscrinTaskHub::notify_0Call::SELECTOR,
            selector("notify(bytes32)")
        );
        assert_eq!(
            super::EscrinTaskHub::notify_1Call::SELECTOR,
            selector("notify()")
        );
        assert_eq!(
            super::EscrinTaskHub::TasksAvailable::SIGNATURE_HASH,
            keccak256("TasksAvailable(address,bytes32)")
        );
        // The comparison itself notices a difference: our own TaskHub is not Escrin's.
        assert!(!missing_from_ours("ITaskHub", "TaskHub").is_empty());
    }

    /// The committed artifacts are what the pinned solc-js makes of the committed sources
    /// (`node build.mjs --check`).
    #[test]
    fn artifacts_match_the_sources() {
        let (node, npm) = match crate::devchain::node_with("solc") {
            Ok(found) => found,
            Err(why) => {
                eprintln!("SKIPPED artifacts_match_the_sources: {why}");
                return;
            }
        };
        let out = std::process::Command::new(node)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/build.mjs"))
            .arg("--check")
            .env("CONTRACTS_NPM_DIR", npm)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
