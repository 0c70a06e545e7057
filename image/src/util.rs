//! Small helpers: running host tools, hashing, progress lines.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

/// Prints a progress line on standard error: `image: ...`.
#[macro_export]
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("image: {}", format_args!($($arg)*))
    };
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} failed ({status}): {stderr}")]
    Failed {
        what: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

impl ToolError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ToolError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// A build directory's path inside a build's output: the output would depend on where it was
/// built.
#[derive(Debug, thiserror::Error)]
#[error("{file} contains the build path {leaked}: it would depend on where it was built")]
pub struct PathLeak {
    pub file: PathBuf,
    pub leaked: String,
}

/// Fails if `file` contains the path `leaked` (as bytes).
pub fn check_no_path<E: From<ToolError> + From<PathLeak>>(
    file: &Path,
    leaked: &Path,
) -> Result<(), E> {
    let bytes = std::fs::read(file).map_err(|e| ToolError::io(file, e))?;
    let needle = leaked.as_os_str().as_encoded_bytes();
    if !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle) {
        return Err(PathLeak {
            file: file.to_owned(),
            leaked: leaked.display().to_string(),
        }
        .into());
    }
    Ok(())
}

/// Runs `command`, returning its output; a non-zero exit is an error carrying its stderr.
pub fn run(command: &mut Command, what: &str) -> Result<Output, ToolError> {
    let output = command.output().map_err(|source| ToolError::Spawn {
        what: what.to_owned(),
        source,
    })?;
    if !output.status.success() {
        return Err(ToolError::Failed {
            what: what.to_owned(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output)
}

/// What a tool says of its version (`tool --version` and the like): standard output then
/// standard error, as text.
pub fn tool_version(command: &mut Command, what: &str) -> Result<String, ToolError> {
    let output = run(command.env("LC_ALL", "C"), what)?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lowercase hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, ToolError> {
    let mut file = std::fs::File::open(path).map_err(|e| ToolError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| ToolError::io(path, e))?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// Human-readable size: `12.3 MB` (10^6 bytes).
pub fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The image tool's cache: `$XDG_CACHE_HOME/smart-worker/image`, else
/// `~/.cache/smart-worker/image`; `None` without either variable.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|cache| cache.join("smart-worker/image"))
}

/// Parallel build jobs: one per CPU.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The examples' `[CACHE] [JOBS]` arguments, defaulting to [`default_cache_dir`] and
/// [`default_jobs`].
pub fn cache_and_jobs_args(
    mut args: impl Iterator<Item = std::ffi::OsString>,
) -> Result<(PathBuf, usize), String> {
    let cache = match args.next() {
        Some(cache) => PathBuf::from(cache),
        None => default_cache_dir().ok_or("no CACHE argument, XDG_CACHE_HOME or HOME")?,
    };
    let jobs = match args.next() {
        Some(jobs) => jobs
            .to_string_lossy()
            .parse()
            .map_err(|e| format!("JOBS {jobs:?}: {e}"))?,
        None => default_jobs(),
    };
    Ok((cache, jobs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_version_has_both_streams() {
        let version = tool_version(
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            "sh",
        )
        .unwrap();
        assert_eq!(version, "out\nerr\n");
    }
}
