//! End-to-end tests: each starts the real runner binary on an ephemeral loopback port (see the
//! `e2e` harness in `src/`) and drives it over HTTP. Workers prove that they ran by `fetch`ing a
//! loopback sink.
//!
//! Build the runner first (`scripts/test.sh` does): `cargo build -p runner --bins`.

#[path = "e2e/api.rs"]
mod api;
#[path = "e2e/attestation.rs"]
mod attestation;
#[path = "e2e/bad_input.rs"]
mod bad_input;
#[path = "e2e/config.rs"]
mod config;
#[path = "e2e/connections.rs"]
mod connections;
#[path = "e2e/create.rs"]
mod create;
#[path = "e2e/egress.rs"]
mod egress;
#[path = "e2e/escrin.rs"]
mod escrin;
#[path = "e2e/fetch.rs"]
mod fetch;
#[path = "e2e/handlers.rs"]
mod handlers;
#[path = "e2e/hosts.rs"]
mod hosts;
#[path = "e2e/image.rs"]
mod image;
#[path = "e2e/imports.rs"]
mod imports;
#[path = "e2e/key_secrecy.rs"]
mod key_secrecy;
#[path = "e2e/keys.rs"]
mod keys;
#[path = "e2e/limits.rs"]
mod limits;
#[path = "e2e/memory.rs"]
mod memory;
#[path = "e2e/ownership.rs"]
mod ownership;
#[path = "e2e/persistence.rs"]
mod persistence;
#[path = "e2e/sandbox.rs"]
mod sandbox;
#[path = "e2e/taskhub.rs"]
mod taskhub;
#[path = "e2e/tls.rs"]
mod tls;
