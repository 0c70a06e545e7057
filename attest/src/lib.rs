//! TEE detection, evidence and verification.
