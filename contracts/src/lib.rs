//! Key-management (Omni Keys) and TaskHub contracts for the Smart Worker appliance: their
//! Solidity sources and compiled artifacts, and the Rust clients the runner uses.
