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

/// A Debian package pinned by version and by the SHA-256 of its `.deb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebPin {
    pub package: &'static str,
    pub version: &'static str,
    /// `amd64` or `all`: part of the `.deb`'s file name.
    pub arch: &'static str,
    /// SHA-256 of the `.deb`, as in the archive's `Packages` index.
    pub sha256: &'static str,
    /// Where the version is published (for people; apt finds it in whatever suite has it).
    pub suite: &'static str,
}

impl DebPin {
    /// The file name `apt-get download` gives the package.
    pub fn file_name(&self) -> String {
        format!("{}_{}_{}.deb", self.package, self.version, self.arch).replace(':', "%3a")
    }

    /// The `.deb`: `given`, else `cache/debs/` (downloaded with `apt-get download` if missing);
    /// either must have the pinned SHA-256.
    pub fn fetch(&self, cache: &Path, given: Option<&Path>) -> Result<PathBuf, DebError> {
        let deb = match given {
            Some(deb) => deb.to_owned(),
            None => cached(
                cache,
                self.package,
                self.version,
                self.suite,
                &self.file_name(),
            )?,
        };
        check_sha256(&deb, self.package, self.version, self.sha256)?;
        Ok(deb)
    }

    /// Checks a file from the package against its pinned SHA-256.
    pub fn check_file(&self, path: &Path, expected: &'static str) -> Result<String, DebError> {
        check_sha256(path, self.package, self.version, expected)
    }
}

/// Unpacks `deb` (`dpkg-deb -x`) into a new directory in `parent` named `<prefix>…`, removed
/// when the returned guard drops unless it is kept or moved.
pub fn unpack(deb: &Path, parent: &Path, prefix: &str) -> Result<tempfile::TempDir, DebError> {
    std::fs::create_dir_all(parent).map_err(|e| ToolError::io(parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .map_err(|e| ToolError::io(parent, e))?;
    crate::util::run(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb)
            .arg(staging.path()),
        "dpkg-deb -x",
    )?;
    Ok(staging)
}

/// `cache/debs/<file_name>`, downloaded with `apt-get download package=version` if missing (a
/// file cut short fails the hash check that follows: [`check_sha256`]).
fn cached(
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
fn check_sha256(
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
    fn file_names_follow_apt() {
        let pin = DebPin {
            package: "linux-source-6.12",
            version: "1:6.12.117-1~deb12u1",
            arch: "all",
            sha256: "",
            suite: "bookworm-security",
        };
        assert_eq!(
            pin.file_name(),
            "linux-source-6.12_1%3a6.12.117-1~deb12u1_all.deb"
        );
    }

    #[test]
    fn a_given_deb_is_used_only_with_the_pinned_hash() {
        let dir = tempfile::tempdir().unwrap();
        let given = dir.path().join("p.deb");
        std::fs::write(&given, b"package").unwrap();
        let hash: &'static str = Box::leak(crate::util::sha256_hex(b"package").into_boxed_str());
        let pin = DebPin {
            package: "p",
            version: "1",
            arch: "all",
            sha256: hash,
            suite: "none",
        };
        assert_eq!(pin.fetch(dir.path(), Some(&given)).unwrap(), given);
        std::fs::write(&given, b"packagE").unwrap();
        assert!(matches!(
            pin.fetch(dir.path(), Some(&given)),
            Err(DebError::HashMismatch { .. })
        ));
    }

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
