//! What one `image` build is asked to make.

use std::path::PathBuf;

use crate::root_disk::{self, DiskFormat};
use crate::{disk, measure};

/// Where the runner comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerSource {
    /// `cargo build --profile <profile> -p runner` in the workspace.
    Build { profile: String },
    /// A binary built already (e.g. by `scripts/test.sh`).
    Prebuilt(PathBuf),
}

/// Which kernel the image boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSource {
    /// Built from the pinned `linux-source` package with `image/kernel/appliance.config`:
    /// everything built in, no modules (see [`kernel::minimal`]). Optionally from this `.deb`
    /// (it must match the pin's hash).
    Minimal { source_deb: Option<PathBuf> },
    /// Debian's pinned binary cloud kernel and the modules the appliance loads at boot.
    /// Optionally from this `.deb` (it must match the pin's hash). Initramfs only: its file systems and
    /// dm-verity are modules, which a kernel cannot load before it has a root.
    Debian { deb: Option<PathBuf> },
}

/// How the root file system reaches the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootFormat {
    /// squashfs or erofs + dm-verity on a virtio disk, root hash on the command line (read when
    /// touched).
    Disk(DiskFormat),
    /// A zstd-compressed cpio the kernel unpacks into memory before init runs.
    Initramfs { zstd_level: i32 },
}

impl RootFormat {
    pub(crate) fn describe(&self) -> String {
        match self {
            RootFormat::Disk(format) => format!("{} + dm-verity", format.describe()),
            RootFormat::Initramfs { zstd_level } => format!("initramfs, zstd -{zstd_level}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The cargo workspace (the repository root).
    pub workspace: PathBuf,
    /// The bundle directory (created; existing bundle files are replaced).
    pub out: PathBuf,
    /// Downloads, unpacked packages and kernel builds, reused across builds.
    pub cache: PathBuf,
    pub runner: RunnerSource,
    pub kernel: KernelSource,
    pub root: RootFormat,
    /// Words appended to [`crate::DEFAULT_CMDLINE`].
    pub cmdline_append: Vec<String>,
    /// The runner's `--key-stores` JSON file, carried in the image (measured).
    pub key_stores: Option<PathBuf>,
    /// The runner's `--chains` JSON file, carried in the image (measured).
    pub chains: Option<PathBuf>,
    /// Defaults to `SOURCE_DATE_EPOCH`, else the commit's time.
    pub source_date_epoch: Option<u32>,
    /// Compute the SNP launch digest for this firmware and these vCPUs.
    pub snp: Option<measure::SnpParams>,
    /// Compute the TDX MRTD and RTMR[1..3] for this TDVF.
    pub tdx: Option<measure::TdxParams>,
    /// A development image: without [`PRODUCTION_CMDLINE`] (the runner starts without a TEE
    /// and creates workers on plain HTTP), e.g. to boot under TCG. Default: off (fail closed).
    pub dev: bool,
    /// UEFI disks to make besides the bundle (`--format`; [`uefi`]).
    pub formats: Vec<disk::Container>,
}

impl Options {
    /// The product defaults: the minimal kernel and a squashfs (zstd) root disk.
    pub fn new(workspace: PathBuf, out: PathBuf, cache: PathBuf, runner: RunnerSource) -> Self {
        Options {
            workspace,
            out,
            cache,
            runner,
            kernel: KernelSource::Minimal { source_deb: None },
            root: RootFormat::Disk(root_disk::DEFAULT_DISK_FORMAT),
            cmdline_append: Vec::new(),
            key_stores: None,
            chains: None,
            source_date_epoch: None,
            snp: None,
            tdx: None,
            dev: false,
            formats: Vec::new(),
        }
    }
}
