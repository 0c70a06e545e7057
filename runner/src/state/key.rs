//! Where the state directory's key comes from.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use attest::sealing::{self, SealingRoot, PURPOSE_STATE};

use super::error::StateError;
use super::fsio;

/// File name of the development root inside the state directory.
pub const DEV_ROOT_FILE: &str = "dev-root.key";

/// The root the state directory's key is derived from.
#[derive(Debug)]
pub enum KeySource {
    /// The SEV-SNP derived key (`attest::sealing`, purpose [`PURPOSE_STATE`]): bound to this
    /// image's measurement and this chip. Fails outside an SNP guest.
    Snp,
    /// A random root kept in clear in `<dir>/dev-root.key` (0600), created if missing.
    /// **Insecure**: whoever reads the directory (the host) reads and forges every record.
    /// Development only; logged as such.
    DevFile,
    /// A given root (tests; later a key released to this image by a key store). The state key is
    /// derived from it with purpose [`PURPOSE_STATE`].
    Key(SealingRoot),
}

impl KeySource {
    /// The state directory's AEAD key.
    pub(crate) fn state_key(self, dir: &Path) -> Result<SealingRoot, StateError> {
        match self {
            KeySource::Snp => Ok(sealing::derived_root(PURPOSE_STATE)?),
            KeySource::DevFile => {
                let root = dev_root(dir)?;
                tracing::warn!(
                    path = %dir.join(DEV_ROOT_FILE).display(),
                    "INSECURE development mode: state is sealed with a key kept in plain text next to it; \
                     the host can read and change every stored worker, script and config"
                );
                Ok(root.derive(PURPOSE_STATE))
            }
            KeySource::Key(root) => Ok(root.derive(PURPOSE_STATE)),
        }
    }
}

/// Reads `<dir>/dev-root.key`, or creates it (32 random bytes, 0600, durably).
fn dev_root(dir: &Path) -> Result<SealingRoot, StateError> {
    let path = dir.join(DEV_ROOT_FILE);
    let bad = |reason: String| StateError::DevKey {
        path: path.clone(),
        reason,
    };
    match fsio::read_bounded(&path, 32) {
        Ok(fsio::Bounded::Bytes(bytes)) => {
            let bytes: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| bad(format!("{} bytes, expected 32", bytes.len())))?;
            narrow_to_owner(&path).map_err(|e| bad(format!("chmod 0600: {e}")))?;
            Ok(SealingRoot::from_bytes(bytes))
        }
        Ok(fsio::Bounded::TooLarge(len)) => Err(bad(format!("{len} bytes, expected 32"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| bad(format!("random: {e}")))?;
            let root = SealingRoot::from_bytes(bytes);
            bytes.fill(0);
            fsio::write_durably(dir, DEV_ROOT_FILE, root.as_bytes()).map_err(|source| {
                StateError::Io {
                    what: "write development root key",
                    path: path.clone(),
                    source,
                }
            })?;
            tracing::warn!(path = %path.display(), "created a new development root key (insecure)");
            Ok(root)
        }
        Err(source) => Err(StateError::Io {
            what: "read development root key",
            path,
            source,
        }),
    }
}

fn narrow_to_owner(path: &Path) -> io::Result<()> {
    let mode = fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "development root key was readable by others; narrowing to 0600");
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
