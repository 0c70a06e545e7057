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
sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    OmniKeyStore,
    "artifacts/OmniKeyStore.json"
);
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

#[cfg(test)]
mod tests {
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
