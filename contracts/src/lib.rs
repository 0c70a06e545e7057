//! Key-management (Omni Keys, issue 5) and TaskHub (issue 8) contracts for the Smart Worker
//! appliance, and the Rust side of them. No deno/V8 here: the runner links this crate.
//!
//! - [`bindings`]: alloy `sol!` bindings generated from the committed artifacts.
//! - [`sapphire`]: the Sapphire call envelope (encrypted `eth_call`s) and the runtime key.
//! - [`keys`]: the Omni Key client (acquire an identity with TEE evidence, read its key).
//! - [`verifier`]: the attestation verifier that signs `VerifiedEvidence` for the permitter.
//! - [`taskhub`]: a `TasksAvailable` log watcher.
//! - [`devchain`]: a local hardhat node with the contracts deployed, for tests.
//!
//! See README.md for the contracts, the trust model and how the artifacts are rebuilt.

#![deny(missing_docs)]

pub mod bindings;
pub mod devchain;
pub mod keys;
pub mod sapphire;
pub mod taskhub;
pub mod verifier;
