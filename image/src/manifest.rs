//! `manifest.json`: what the image is made of, each part's SHA-256, and the expected
//! measurements. Nothing in it depends on the build machine's paths or clock, so two builds of the
//! same commit give the same manifest.

use serde::{Deserialize, Serialize};

pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub source: Source,
    /// The bundle's files, as a VMM loads them.
    pub parts: Parts,
    pub kernel: KernelInfo,
    pub runner: RunnerInfo,
    pub initrd: InitrdInfo,
    pub firmware: Firmware,
    pub measurements: Measurements,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// `git rev-parse HEAD` of the workspace, if it is a git checkout.
    pub commit: Option<String>,
    /// Whether tracked files differed from that commit.
    pub dirty: bool,
    /// Every file's mtime in the initramfs.
    pub source_date_epoch: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parts {
    pub kernel: Part,
    pub initrd: Part,
    pub cmdline: Cmdline,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// File name in the bundle directory.
    pub file: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cmdline {
    pub file: String,
    pub value: String,
    /// SHA-256 of the value's bytes (no trailing newline or NUL).
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    pub package: String,
    pub version: String,
    pub deb_sha256: String,
    pub release: String,
    /// Modules in the order init loads them.
    pub modules: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerInfo {
    /// `cargo --profile <profile>`, or `given` for a binary passed with `--runner-bin`.
    pub build: String,
    /// SHA-256 of the stripped binary (`/init`).
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitrdInfo {
    /// e.g. `zstd -19` (one frame, single-threaded, libzstd of the `zstd` crate).
    pub compression: String,
    pub uncompressed_size: u64,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    /// Octal, with the file type: `100755`.
    pub mode: String,
    pub size: u64,
    /// For regular files and symlinks (of the target).
    pub sha256: Option<String>,
    /// `package=version` for files taken from the build host's Debian packages.
    pub package: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firmware {
    /// What `qemu/run` boots with.
    pub local: String,
    pub snp: FirmwareSpec,
    pub tdx: FirmwareSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareSpec {
    /// The firmware build the measurement assumes; `None` until one is pinned.
    pub file: Option<String>,
    pub sha256: Option<String>,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurements {
    pub snp: Measurement,
    pub tdx: Measurement,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Measurement {
    /// Expected values, hex, keyed by register (`launch_digest`, `mrtd`, `rtmr1`, …), with the
    /// parameters they hold for (vCPUs, CPU type, firmware).
    Computed {
        values: std::collections::BTreeMap<String, String>,
        parameters: std::collections::BTreeMap<String, String>,
    },
    NotComputed {
        reason: String,
    },
}

impl Manifest {
    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        Ok(text)
    }
}
