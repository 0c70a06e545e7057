//! Pinned Debian packages: downloaded once into the cache with `apt-get download` and checked
//! against the SHA-256 their pin records. The kernel, its source and the TDVF come this way.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{sha256_file, ToolError};

#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(
        "{path} has SHA-256 {actual}, the pin says {expected}: not the pinned {package} {version}"
    )]
    HashMismatch {
        path: PathBuf,
        package: &'static str,
        version: &'static str,
        expected: &'static str,
        actual: String,
    },
    #[error("apt-get download gave no {0}")]
    Missing(PathBuf),
}

/// `cache/debs/<file_name>`, downloaded with `apt-get download package=version` if missing (a
/// file cut short fails the hash check that follows: [`check_sha256`]).
pub fn cached(
    cache: &Path,
    package: &str,
    version: &str,
    suite: &str,
    file_name: &str,
) -> Result<PathBuf, DebError> {
    let dir = cache.join("debs");
    let path = dir.join(file_name);
    if !path.exists() {
        std::fs::create_dir_all(&dir).map_err(|e| ToolError::io(&dir, e))?;
        crate::progress!("apt-get download {package}={version} (from {suite})");
        crate::util::run(
            Command::new("apt-get")
                .arg("download")
                .arg(format!("{package}={version}"))
                .current_dir(&dir),
            &format!(
                "apt-get download {package}={version} (is {suite} in apt's sources? see \
                 scripts/setup.sh; or put the .deb in {}; a version gone from the archive is on \
                 snapshot.debian.org)",
                dir.display()
            ),
        )?;
        if !path.exists() {
            return Err(DebError::Missing(path));
        }
    }
    Ok(path)
}

/// The SHA-256 of `path` (a package or a file from one), which must be `expected` (the pin of
/// `package` `version`).
pub fn check_sha256(
    path: &Path,
    package: &'static str,
    version: &'static str,
    expected: &'static str,
) -> Result<String, DebError> {
    let actual = sha256_file(path)?;
    if actual != expected {
        return Err(DebError::HashMismatch {
            path: path.to_owned(),
            package,
            version,
            expected,
            actual,
        });
    }
    Ok(actual)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_accepted_only_with_the_pinned_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.deb");
        std::fs::write(&path, b"package").unwrap();
        let actual = crate::util::sha256_hex(b"package");
        let leaked: &'static str = Box::leak(actual.clone().into_boxed_str());
        assert_eq!(check_sha256(&path, "p", "1", leaked).unwrap(), actual);

        std::fs::write(&path, b"packagE").unwrap();
        match check_sha256(&path, "p", "1", leaked) {
            Err(DebError::HashMismatch { expected, .. }) => assert_eq!(expected, leaked),
            other => panic!("a changed file was not refused: {other:?}"),
        }
    }
}
