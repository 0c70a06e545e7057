//! The runner binary: built with cargo (or given), stripped, and the shared libraries its ELF
//! interpreter loads, found with `ldd` and traced to the Debian packages that ship them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::{run, ToolError};

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("cargo built no runner executable (profile {0})")]
    NoArtifact(String),
    #[error("ldd: {0} is needed but not found")]
    LibraryNotFound(String),
}

/// A file the runner needs at run time: where it goes in the image and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFile {
    /// Absolute path inside the image (as the loader looks for it).
    pub image_path: String,
    /// The file on this machine (symlinks resolved).
    pub source: PathBuf,
}

/// Builds the runner with `cargo build --profile <profile> -p runner --bin runner` in `workspace`
/// (cargo's own progress goes to standard error) and returns the executable.
pub fn build(workspace: &Path, profile: &str) -> Result<PathBuf, RunnerError> {
    crate::progress!("runner: cargo build --profile {profile} -p runner");
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "build",
            "--profile",
            profile,
            "-p",
            "runner",
            "--bin",
            "runner",
        ])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(workspace)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| ToolError::Spawn {
            what: "cargo build".into(),
            source,
        })?;
    if !output.status.success() {
        return Err(ToolError::Failed {
            what: "cargo build -p runner".into(),
            status: output.status,
            stderr: "(see cargo's output above)".into(),
        }
        .into());
    }
    artifact_path(&String::from_utf8_lossy(&output.stdout))
        .ok_or_else(|| RunnerError::NoArtifact(profile.to_owned()))
}

/// The runner executable in cargo's JSON messages.
fn artifact_path(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "runner")
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .next_back()
}

/// Writes `input` without symbols or debug info to `output` (`strip --strip-all`: deterministic,
/// keeps the GNU build ID).
pub fn strip(input: &Path, output: &Path) -> Result<(), RunnerError> {
    run(
        Command::new("strip")
            .arg("--strip-all")
            .arg("-o")
            .arg(output)
            .arg(input),
        "strip (binutils)",
    )?;
    Ok(())
}

/// The ELF interpreter and shared libraries `binary` loads, per `ldd`. Empty for a static binary.
pub fn shared_libraries(binary: &Path) -> Result<Vec<HostFile>, RunnerError> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|source| ToolError::Spawn {
            what: "ldd".into(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // "not a dynamic executable" (static binaries) exits 1.
        if String::from_utf8_lossy(&output.stderr).contains("not a dynamic executable")
            || text.contains("statically linked")
        {
            return Ok(Vec::new());
        }
        return Err(ToolError::Failed {
            what: "ldd".into(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        }
        .into());
    }
    let mut files = Vec::new();
    for path in parse_ldd(&text)? {
        let source =
            std::fs::canonicalize(&path).map_err(|e| ToolError::io(Path::new(&path), e))?;
        files.push(HostFile {
            image_path: path,
            source,
        });
    }
    files.sort_by(|a, b| a.image_path.cmp(&b.image_path));
    Ok(files)
}

/// The absolute paths in `ldd` output: `name => /path (addr)` and the interpreter `/path (addr)`;
/// the vDSO has no file.
fn parse_ldd(text: &str) -> Result<Vec<String>, RunnerError> {
    let mut paths = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let target = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    return Err(RunnerError::LibraryNotFound(name.trim().to_owned()));
                }
                rest
            }
            None => line,
        };
        let path = target.split_whitespace().next().unwrap_or_default();
        if path.starts_with('/') {
            paths.push(path.to_owned());
        }
    }
    Ok(paths)
}

/// The Debian package and version that ship `path` (e.g. `libc6:amd64=2.36-9+deb12u14`), if dpkg
/// knows it; the manifest records it so that every host input is pinned.
pub fn debian_package(path: &str, canonical: &Path) -> Option<String> {
    let candidates = [path.to_owned(), canonical.display().to_string()];
    let package = candidates.iter().find_map(|p| {
        let out = Command::new("dpkg-query").arg("-S").arg(p).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let (package, _) = text.lines().next()?.split_once(": ")?;
        Some(package.split(',').next()?.trim().to_owned())
    })?;
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}"])
        .arg(&package)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| format!("{package}={}", String::from_utf8_lossy(&out.stdout).trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_interpreter_and_libraries() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f28)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f28)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f28)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libz.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }

    #[test]
    fn a_missing_library_is_an_error() {
        let text = "\tlibmissing.so.3 => not found\n";
        assert!(matches!(
            parse_ldd(text),
            Err(RunnerError::LibraryNotFound(name)) if name == "libmissing.so.3"
        ));
    }

    #[test]
    fn the_runner_artifact_is_found_in_cargo_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"runner","kind":["lib"]},"executable":null}
{"reason":"build-script-executed","package_id":"x"}
{"reason":"compiler-artifact","target":{"name":"runner","kind":["bin"]},"executable":"/t/release/runner"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            artifact_path(messages),
            Some(PathBuf::from("/t/release/runner"))
        );
        assert_eq!(artifact_path("{\"reason\":\"build-finished\"}"), None);
    }

    #[test]
    fn this_test_binary_needs_libc_and_the_loader() {
        let me = std::env::current_exe().unwrap();
        let files = shared_libraries(&me).unwrap();
        assert!(
            files.iter().any(|f| f.image_path.ends_with("/libc.so.6")),
            "{files:?}"
        );
        assert!(files.iter().all(|f| f.source.is_file()), "{files:?}");
    }
}
