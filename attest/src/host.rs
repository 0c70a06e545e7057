//! The file-system seam: every path this crate touches on the machine goes through [`Fs`], so
//! tests can run detection and the configfs-tsm protocol against a tree in a temporary
//! directory (and a fake kernel on top of it).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// File operations on absolute system paths (`/sys/...`, `/dev/...`).
pub(crate) trait Fs: Send + Sync + fmt::Debug {
    /// The path as it is opened (for messages).
    fn real(&self, path: &Path) -> PathBuf;
    fn is_dir(&self, path: &Path) -> bool;
    fn exists(&self, path: &Path) -> bool;
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// One write of the whole buffer (configfs attributes take a single write).
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()>;
}

/// The real file system, seen from `root` (`/` on a real machine).
#[derive(Debug, Clone)]
pub(crate) struct RootedFs {
    root: PathBuf,
}

impl RootedFs {
    pub(crate) fn new(root: impl Into<PathBuf>) -> Self {
        RootedFs { root: root.into() }
    }
}

impl Fs for RootedFs {
    fn real(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.real(path).is_dir()
    }

    fn exists(&self, path: &Path) -> bool {
        self.real(path).exists()
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(self.real(path))
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(self.real(path))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(self.real(path))
    }

    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.real(path))?;
        let n = f.write(data)?;
        if n != data.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {n} of {} bytes", data.len()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooted_paths_stay_under_the_root() {
        let fs = RootedFs::new("/tmp/fake");
        assert_eq!(
            fs.real(Path::new("/dev/sev-guest")),
            PathBuf::from("/tmp/fake/dev/sev-guest")
        );
    }
}
