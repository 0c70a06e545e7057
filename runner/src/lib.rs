//! The Smart Worker runner: an HTTP API that creates workers, a worker host
//! that runs each in its own V8 isolate on `deno_runtime`, and the triggers
//! that wake them.

pub mod api;
pub mod attestation;
pub mod chains;
pub mod config;
pub mod identity;
pub mod init;
pub mod keys;
pub mod listen;
pub mod ownership;
pub mod pool;
pub mod records;
pub mod server;
pub mod state;
pub mod tls;
pub mod triggers;
pub mod verifier;
pub mod worker;
