//! `manifest.json`: what the image is made of, each part's SHA-256, and the expected
//! measurements. Nothing in it depends on the build machine's paths or clock, so two builds of the
//! same commit give the same manifest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// 2: the root file system may be a dm-verity disk (`parts.root_disk`, `root.verity`); `initrd`
/// became `root`; the kernel says how it was made. 3: `uefi` (the UKI, the disks, predictions).
pub const SCHEMA: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub source: Source,
    /// The bundle's files, as a VMM loads them.
    pub parts: Parts,
    pub kernel: KernelInfo,
    pub runner: RunnerInfo,
    pub root: RootInfo,
    pub firmware: Firmware,
    pub measurements: Measurements,
    /// The UEFI disk (`image --format`): its UKI, the containers, and per platform the events
    /// and registers a verifier should see.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub uefi: Option<Uefi>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uefi {
    pub uki: Uki,
    /// By container (`raw`, `gcp`, `azure`, `aws`).
    pub disk: BTreeMap<String, Part>,
    /// By platform (`qemu-ovmf-tpm`, `gcp-tdx`, `gcp-snp-vtpm`, `azure-vtpm`, `aws-snp`).
    pub predictions: BTreeMap<String, Prediction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uki {
    /// On the EFI system partition.
    pub path: String,
    pub size: u64,
    /// Of the file.
    pub sha256: String,
    /// PE/COFF Authenticode digests: what the firmware measures for it.
    pub authenticode_sha256: String,
    pub authenticode_sha384: String,
    /// The `.cmdline` section (measured with it): the root disk found by `PARTUUID=`.
    pub cmdline: String,
    /// The EFI stub it is built on: Debian package, version, `.deb` SHA-256.
    pub stub: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prediction {
    /// One plain sentence: what hardware, firmware and a vTPM outside the TEE measure.
    pub trust: String,
    /// In the order they are logged, per register.
    pub events: Vec<Event>,
    /// Register values computable from the artifact alone (hex), e.g. `PCR4`, `RTMR1`.
    pub values: BTreeMap<String, String>,
    /// Registers that may hold nothing but the events listed (`RTMR2` under TDX, whose value
    /// depends on optional events).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub closed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `PCR4`, `PCR5`, `RTMR1`, `RTMR2`, …
    pub register: String,
    /// TCG event type name, e.g. `EV_EFI_BOOT_SERVICES_APPLICATION`.
    pub event_type: String,
    /// `sha256` (TPM SHA-256 bank) or `sha384` (TDX RTMRs).
    pub digest_alg: String,
    pub digest: String,
    pub what: String,
    /// Logged on some platforms of this kind only (see `closed`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// `git rev-parse HEAD` of the workspace, if it is a git checkout.
    pub commit: Option<String>,
    /// Whether tracked files differed from that commit.
    pub dirty: bool,
    /// Every file's mtime in the root file system.
    pub source_date_epoch: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parts {
    pub kernel: Part,
    /// The root file system as an initramfs (`--root initramfs`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub initrd: Option<Part>,
    /// The root file system as a squashfs or erofs + dm-verity disk: the first virtio disk. Not
    /// measured itself: its verity root hash is in the (measured) command line.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub root_disk: Option<Part>,
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
    /// `minimal`: built from `package` (Debian's kernel source) with image/kernel/appliance.config;
    /// `debian`: `package` is Debian's binary kernel.
    pub build: String,
    pub package: String,
    pub version: String,
    pub deb_sha256: String,
    pub release: String,
    /// SHA-256 of the kernel's `.config`.
    pub config_sha256: Option<String>,
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
pub struct RootInfo {
    /// `squashfs+dm-verity`, `erofs+dm-verity` or `initramfs`.
    pub format: String,
    /// e.g. `squashfs, zstd level 19, 128 KiB blocks`, `erofs, uncompressed` or `zstd -19`
    /// (initramfs: one frame, single-threaded).
    pub compression: String,
    pub uncompressed_size: u64,
    pub files: Vec<FileEntry>,
    /// The dm-verity parameters of a root disk (all of them are on the command line too).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub verity: Option<VerityInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerityInfo {
    /// The device the kernel reads it from.
    pub device: String,
    pub block_size: u64,
    pub data_blocks: u64,
    pub hash_start_block: u64,
    pub algorithm: String,
    pub root_hash: String,
    pub salt: String,
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
