//! What a worker is made of: its id, its script and kind, its code identity and its
//! private configuration.

use std::fmt;

use serde::Deserialize;
use serde::Serialize;
use sha2::Digest;
use sha2::Sha256;

/// A worker's public id (a random UUID).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(String);

impl WorkerId {
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for WorkerId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the worker's script is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScriptKind {
    /// An ES module whose default export holds the handlers.
    Module,
    /// A service-worker style script that registers handlers with `addEventListener`.
    Classic,
}

impl ScriptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Module => "module",
            Self::Classic => "classic",
        }
    }
}

/// The identity of a worker's code: SHA-256 over its kind and script. The same
/// code always gets the same identity; any change gives another. Key stores
/// derive a worker's keys from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodeIdentity([u8; 32]);

impl CodeIdentity {
    pub fn of(kind: ScriptKind, script: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"smart-worker/code/v1\0");
        hash.update(kind.as_str().as_bytes());
        hash.update([0u8]);
        hash.update(script.as_bytes());
        Self(hash.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for CodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Everything needed to start a worker.
#[derive(Clone)]
pub struct WorkerSpec {
    pub id: WorkerId,
    pub kind: ScriptKind,
    pub script: String,
    /// The worker's private configuration, as a JSON object text.
    pub config_json: String,
}

impl fmt::Debug for WorkerSpec {
    // Never print the config: it holds the worker's secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerSpec")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("script_bytes", &self.script.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_identity_depends_on_kind_and_every_byte_of_the_script() {
        let a = CodeIdentity::of(ScriptKind::Module, "export default {}");
        assert_eq!(a, CodeIdentity::of(ScriptKind::Module, "export default {}"));
        assert_ne!(
            a,
            CodeIdentity::of(ScriptKind::Classic, "export default {}")
        );
        assert_ne!(
            a,
            CodeIdentity::of(ScriptKind::Module, "export default {} ")
        );
    }

    #[test]
    fn spec_debug_output_never_shows_the_config() {
        let spec = WorkerSpec {
            id: WorkerId::new_random(),
            kind: ScriptKind::Module,
            script: "x".into(),
            config_json: r#"{"secret":"hunter2"}"#.into(),
        };
        assert!(!format!("{spec:?}").contains("hunter2"));
    }
}
