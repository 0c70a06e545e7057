//! Builds the appliance image: runner → root file system → a bundle directory with
//!
//! ```text
//! vmlinuz        the kernel: built from Debian's pinned linux-source with everything the
//!                appliance needs built in (default), or Debian's pinned binary cloud kernel
//! rootfs.img     the root file system as squashfs (zstd; or erofs) + its dm-verity hash tree
//!                (default), attached as the first virtio disk; or
//! initrd.img     the root file system as a zstd-compressed newc cpio (`--root initramfs`)
//! cmdline        the kernel command line (measured with the kernel): with a root disk it
//!                carries the dm-verity root hash, so the disk is measured too
//! manifest.json  SHA-256 of every part and of every file in the root file system, the inputs'
//!                versions, the firmware each platform assumes and the expected measurements
//! ```
//!
//! Two builds of the same commit give the same bytes: nothing depends on paths, clocks, users or
//! directory order (see the `initramfs` crate for the archive's rules and [`root_disk`]).

mod bundle_info;
mod cmdline;
pub mod deb;
pub mod disk;
pub mod kernel;
pub mod long_step;
pub mod manifest;
pub mod measure;
mod options;
pub mod root_disk;
pub mod rootfs;
pub mod runner;
pub mod uefi;
#[macro_use]
pub mod util;

pub use cmdline::{cmdline, config_cmdline, PRODUCTION_CMDLINE};
pub use options::{KernelSource, Options, RootFormat, RunnerSource};

use std::path::{Path, PathBuf};
use std::time::Instant;

use initramfs::Compression;

use crate::bundle_info::{firmware, source_info};
use crate::manifest::{
    Cmdline, FileEntry, KernelInfo, Manifest, Measurement, Measurements, Part, Parts, RootInfo,
    RunnerInfo, VerityInfo,
};
use crate::util::{megabytes, sha256_file, sha256_hex, ToolError};

/// The kernel command line: serial console, reboot (QEMU: exit) on panic, kernel warnings only.
/// Runner settings can be appended as `RUNNER_*=value` words.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=-1 quiet";

/// zstd level of an initramfs: slow to compress, as fast to decompress as any level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 19;

pub const KERNEL_FILE: &str = "vmlinuz";
pub const INITRD_FILE: &str = "initrd.img";
pub const ROOT_DISK_FILE: &str = "rootfs.img";
pub const CMDLINE_FILE: &str = "cmdline";
/// The SNP firmware the launch digest is computed for, carried in the bundle for `qemu/run-snp`.
pub const SNP_FIRMWARE_FILE: &str = "OVMF.amdsev.fd";
/// The TDX firmware (TDVF) the measurements are computed for, carried for `qemu/run-tdx`.
pub const TDX_FIRMWARE_FILE: &str = "OVMF.tdx.fd";
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("runner: {0}")]
    Runner(#[from] runner::RunnerError),
    #[error("kernel: {0}")]
    Kernel(#[from] kernel::KernelError),
    #[error("initramfs: {0}")]
    Initramfs(#[from] initramfs::Error),
    #[error("root disk: {0}")]
    RootDisk(#[from] root_disk::RootDiskError),
    #[error("no SOURCE_DATE_EPOCH and no git commit time in {0}: set SOURCE_DATE_EPOCH")]
    NoEpoch(PathBuf),
    #[error("manifest: {0}")]
    Manifest(#[from] serde_json::Error),
    #[error("UEFI disk: {0}")]
    Disk(#[from] disk::DiskError),
    #[error("measurement: {0}")]
    Measure(#[from] measure::MeasureError),
    #[error("runner configuration: {0}")]
    Config(String),
    #[error(
        "Debian's binary kernel cannot boot from the root disk (its squashfs, erofs and dm-verity \
         are modules there): use the minimal kernel, or --root initramfs"
    )]
    DebianKernelNeedsInitramfs,
}

/// The kernel as built or fetched: the image, and what the manifest says about it.
struct ChosenKernel {
    vmlinuz: PathBuf,
    info: KernelInfo,
    modules: Vec<kernel::ModuleFile>,
}

fn choose_kernel(options: &Options) -> Result<ChosenKernel, BuildError> {
    match &options.kernel {
        KernelSource::Minimal { source_deb } => {
            let pin = &kernel::minimal::SOURCE_PIN;
            progress!(
                "[2/5] kernel: built from {} {}",
                pin.deb.package,
                pin.deb.version
            );
            let jobs = util::default_jobs();
            let built = kernel::minimal::build(&options.cache, source_deb.as_deref(), jobs)?;
            Ok(ChosenKernel {
                info: KernelInfo {
                    build: "minimal".into(),
                    package: pin.deb.package.into(),
                    version: pin.deb.version.into(),
                    deb_sha256: built.source_deb_sha256.clone(),
                    release: built.release.clone(),
                    config_sha256: Some(sha256_file(&built.config)?),
                    modules: Vec::new(),
                },
                vmlinuz: built.bzimage,
                modules: Vec::new(),
            })
        }
        KernelSource::Debian { deb } => {
            if matches!(options.root, RootFormat::Disk(_)) {
                return Err(BuildError::DebianKernelNeedsInitramfs);
            }
            let pin = &kernel::PIN;
            progress!(
                "[2/5] kernel: Debian's {} {}",
                pin.deb.package,
                pin.deb.version
            );
            let fetched = kernel::fetch(pin, &options.cache, deb.as_deref())?;
            let modules = kernel::resolve_modules(&fetched.modules_dir(), kernel::MODULES)?;
            progress!(
                "kernel: {} modules: {}",
                modules.len(),
                modules
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            Ok(ChosenKernel {
                info: KernelInfo {
                    build: "debian".into(),
                    package: pin.deb.package.into(),
                    version: pin.deb.version.into(),
                    deb_sha256: fetched.deb_sha256.clone(),
                    release: pin.release.into(),
                    config_sha256: Some(sha256_file(&fetched.config())?),
                    modules: modules.iter().map(|m| m.name.clone()).collect(),
                },
                vmlinuz: fetched.vmlinuz(),
                modules,
            })
        }
    }
}

/// Builds the bundle into `options.out` and returns its manifest.
pub fn build(options: &Options) -> Result<Manifest, BuildError> {
    let started = Instant::now();
    let source = source_info(&options.workspace, options.source_date_epoch)?;
    progress!(
        "[1/5] runner ({})",
        match &options.runner {
            RunnerSource::Build { profile } => format!("cargo --profile {profile}"),
            RunnerSource::Prebuilt(path) => path.display().to_string(),
        }
    );
    let (runner_bin, runner_build) = match &options.runner {
        RunnerSource::Build { profile } => (
            runner::build(&options.workspace, profile)?,
            format!("cargo --profile {profile}"),
        ),
        RunnerSource::Prebuilt(path) => (path.clone(), "given".to_owned()),
    };
    let work = tempfile::tempdir().map_err(|e| ToolError::io(&std::env::temp_dir(), e))?;
    let stripped = work.path().join("runner");
    runner::strip(&runner_bin, &stripped)?;
    let libraries = runner::shared_libraries(&runner_bin)?;
    let runner_size = file_size(&stripped)?;
    progress!(
        "runner: {} stripped, {} shared libraries",
        megabytes(runner_size),
        libraries.len()
    );

    let kernel = choose_kernel(options)?;

    progress!("[3/5] root file system ({})", options.root.describe());
    let ca_bundle = Path::new(rootfs::CA_BUNDLE);
    let inputs = rootfs::Inputs {
        runner: stripped.clone(),
        libraries: libraries.clone(),
        ca_bundle: ca_bundle.is_file().then(|| ca_bundle.to_owned()),
        kernel_release: kernel.info.release.clone(),
        modules: kernel
            .modules
            .iter()
            .map(kernel::ModuleFile::uncompressed)
            .collect::<Result<_, _>>()?,
        config_files: config_files(options)?,
        layout: match options.root {
            RootFormat::Disk(_) => rootfs::Layout::Disk,
            RootFormat::Initramfs { .. } => rootfs::Layout::Initramfs,
        },
    };
    if inputs.ca_bundle.is_none() {
        progress!(
            "warning: no {} on this machine: the image has no CA bundle",
            rootfs::CA_BUNDLE
        );
    }
    let archive = rootfs::assemble(&inputs)?;
    std::fs::create_dir_all(&options.out).map_err(|e| ToolError::io(&options.out, e))?;
    for stale in [
        INITRD_FILE,
        ROOT_DISK_FILE,
        SNP_FIRMWARE_FILE,
        TDX_FIRMWARE_FILE,
    ] {
        let path = options.out.join(stale);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(ToolError::io(&path, e).into())
            }
            _ => {}
        }
    }
    let files = file_entries(&archive, &inputs)?;
    let uncompressed_size = files.iter().map(|f| f.size).sum::<u64>();
    let writing = Instant::now();
    let mut uki_root = None;
    let (initrd_part, root_disk_part, root_cmdline, root_info) = match options.root {
        RootFormat::Disk(format) => {
            let tree = work.path().join("tree");
            std::fs::create_dir(&tree).map_err(|e| ToolError::io(&tree, e))?;
            archive.write_tree(&tree)?;
            let disk = root_disk::build(
                &tree,
                &options.out.join(ROOT_DISK_FILE),
                source.source_date_epoch,
                format,
            )?;
            progress!(
                "root disk: {} files, {} of contents → {} {} + {} hash tree in {:.1} s",
                files.len(),
                megabytes(uncompressed_size),
                format.fs_type(),
                megabytes(disk.data_size),
                megabytes(disk.size - disk.data_size),
                writing.elapsed().as_secs_f64()
            );
            let verity = VerityInfo {
                data_blocks: disk.verity.data_blocks,
                hash_start_block: disk.verity.hash_start_block,
                block_size: root_disk::BLOCK_SIZE,
                algorithm: disk.verity.algorithm.into(),
                root_hash: disk.verity.root_hash.clone(),
                salt: disk.verity.salt.clone(),
                device: root_disk::ROOT_DEVICE.into(),
            };
            uki_root = Some(uefi::root_words(&disk));
            (
                None,
                Some(Part {
                    file: ROOT_DISK_FILE.into(),
                    sha256: sha256_file(&disk.path)?,
                    size: disk.size,
                }),
                disk.cmdline(),
                RootInfo {
                    format: format!("{}+dm-verity", format.fs_type()),
                    compression: format.describe(),
                    uncompressed_size,
                    files,
                    verity: Some(verity),
                },
            )
        }
        RootFormat::Initramfs { zstd_level } => {
            let initrd_path = options.out.join(INITRD_FILE);
            let file =
                std::fs::File::create(&initrd_path).map_err(|e| ToolError::io(&initrd_path, e))?;
            let file = archive.write(
                std::io::BufWriter::new(file),
                source.source_date_epoch,
                Compression::Zstd { level: zstd_level },
            )?;
            file.into_inner()
                .map_err(|e| ToolError::io(&initrd_path, e.into_error()))?
                .sync_all()
                .map_err(|e| ToolError::io(&initrd_path, e))?;
            let size = file_size(&initrd_path)?;
            progress!(
                "initramfs: {} files, {} of contents → {} in {:.1} s",
                files.len(),
                megabytes(uncompressed_size),
                megabytes(size),
                writing.elapsed().as_secs_f64()
            );
            (
                Some(Part {
                    file: INITRD_FILE.into(),
                    sha256: sha256_file(&initrd_path)?,
                    size,
                }),
                None,
                Vec::new(),
                RootInfo {
                    format: "initramfs".into(),
                    compression: format!("zstd -{zstd_level}"),
                    uncompressed_size,
                    files,
                    verity: None,
                },
            )
        }
    };

    progress!("[4/5] bundle in {}", options.out.display());
    let kernel_path = options.out.join(KERNEL_FILE);
    std::fs::copy(&kernel.vmlinuz, &kernel_path).map_err(|e| ToolError::io(&kernel_path, e))?;
    let cmdline = cmdline(options, root_cmdline);
    let cmdline_path = options.out.join(CMDLINE_FILE);
    std::fs::write(&cmdline_path, &cmdline).map_err(|e| ToolError::io(&cmdline_path, e))?;
    let firmware_files = [
        (options.snp.as_ref().map(|p| &p.ovmf), SNP_FIRMWARE_FILE),
        (options.tdx.as_ref().map(|p| &p.tdvf), TDX_FIRMWARE_FILE),
    ];
    for (firmware, file) in firmware_files {
        if let Some(firmware) = firmware {
            let path = options.out.join(file);
            std::fs::copy(firmware, &path).map_err(|e| ToolError::io(&path, e))?;
        }
    }

    progress!("[5/5] manifest");
    let runner_sha256 = root_info
        .files
        .iter()
        .find(|f| f.path == "init")
        .and_then(|f| f.sha256.clone())
        .unwrap_or_default();
    let initrd_path = initrd_part
        .as_ref()
        .map(|part| options.out.join(&part.file));
    let epoch = source.source_date_epoch;
    let mut manifest = Manifest {
        schema: manifest::SCHEMA,
        source,
        parts: Parts {
            kernel: Part {
                file: KERNEL_FILE.into(),
                sha256: sha256_file(&kernel_path)?,
                size: file_size(&kernel_path)?,
            },
            initrd: initrd_part,
            root_disk: root_disk_part,
            cmdline: Cmdline {
                file: CMDLINE_FILE.into(),
                sha256: sha256_hex(cmdline.as_bytes()),
                value: cmdline.clone(),
            },
        },
        kernel: kernel.info,
        runner: RunnerInfo {
            build: runner_build,
            sha256: runner_sha256,
            size: runner_size,
        },
        root: root_info,
        firmware: firmware(options.snp.as_ref(), options.tdx.as_ref())?,
        measurements: Measurements {
            snp: match &options.snp {
                Some(params) => {
                    progress!(
                        "manifest: SNP launch digest for {} x {}",
                        params.vcpus,
                        params.vcpu_type
                    );
                    measure::snp_launch_digest(
                        params,
                        &kernel_path,
                        initrd_path.as_deref(),
                        &cmdline,
                    )?
                }
                None => Measurement::NotComputed {
                    reason: "no AmdSev OVMF (image --no-snp)".into(),
                },
            },
            tdx: match &options.tdx {
                Some(params) => {
                    progress!(
                        "manifest: TDX MRTD and RTMR[1..3] for {}",
                        params.tdvf.display()
                    );
                    measure::tdx_measurements(
                        params,
                        &kernel_path,
                        initrd_path.as_deref(),
                        &cmdline,
                    )?
                }
                None => Measurement::NotComputed {
                    reason: "no TDVF given (image --tdx-ovmf, or the pinned Debian 13 OVMF by \
                             default)"
                        .into(),
                },
            },
        },
        uefi: None,
    };
    let root_hash = manifest.root.verity.as_ref().map(|v| v.root_hash.clone());
    manifest.uefi = uefi::build(options, &kernel_path, uki_root, root_hash.as_deref(), epoch)?;
    let manifest_path = options.out.join(MANIFEST_FILE);
    std::fs::write(&manifest_path, manifest.to_json()?)
        .map_err(|e| ToolError::io(&manifest_path, e))?;
    let loaded = manifest.parts.kernel.size
        + manifest.parts.initrd.as_ref().map_or(0, |p| p.size)
        + manifest.parts.root_disk.as_ref().map_or(0, |p| p.size);
    progress!(
        "done in {:.1} s: kernel {} + {} {} = {}",
        started.elapsed().as_secs_f64(),
        megabytes(manifest.parts.kernel.size),
        if manifest.parts.initrd.is_some() {
            "initrd"
        } else {
            "root disk"
        },
        megabytes(loaded - manifest.parts.kernel.size),
        megabytes(loaded)
    );
    Ok(manifest)
}

fn file_size(path: &Path) -> Result<u64, ToolError> {
    Ok(std::fs::metadata(path)
        .map_err(|e| ToolError::io(path, e))?
        .len())
}

/// The manifest's list of the initramfs: every entry, its mode and size, the SHA-256 of regular
/// files, and the Debian package of files taken from the host.
fn file_entries(
    archive: &initramfs::Archive,
    inputs: &rootfs::Inputs,
) -> Result<Vec<FileEntry>, BuildError> {
    let cpio = |path: &str| format!("/{path}");
    let mut entries = Vec::new();
    for entry in archive.entries()? {
        let regular = entry.mode & 0o170000 == 0o100000;
        let host_source = inputs
            .libraries
            .iter()
            .find(|l| l.image_path == cpio(&entry.path))
            .map(|l| (l.image_path.clone(), l.source.clone()))
            .or_else(|| {
                (cpio(&entry.path) == rootfs::CA_BUNDLE)
                    .then(|| inputs.ca_bundle.clone())
                    .flatten()
                    .map(|s| (rootfs::CA_BUNDLE.to_owned(), s))
            });
        let sha256 = if regular {
            Some(archive_file_sha256(archive, &entry.path)?)
        } else {
            None
        };
        entries.push(FileEntry {
            mode: format!("{:o}", entry.mode),
            size: entry.size,
            sha256,
            package: host_source.and_then(|(path, source)| runner::debian_package(&path, &source)),
            path: entry.path,
        });
    }
    Ok(entries)
}

/// The runner's configuration files for the image, checked to be JSON objects, at their place
/// under [`rootfs::CONFIG_DIR`].
fn config_files(options: &Options) -> Result<Vec<(String, Vec<u8>)>, BuildError> {
    let mut files = Vec::new();
    for (name, source) in [
        (KEY_STORES_FILE, &options.key_stores),
        (CHAINS_FILE, &options.chains),
    ] {
        let Some(source) = source else { continue };
        let bytes = std::fs::read(source).map_err(|e| ToolError::io(source, e))?;
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(_) => {
                return Err(BuildError::Config(format!(
                    "{}: not a JSON object",
                    source.display()
                )))
            }
            Err(e) => return Err(BuildError::Config(format!("{}: {e}", source.display()))),
        }
        files.push((format!("{}/{name}", rootfs::CONFIG_DIR), bytes));
    }
    Ok(files)
}

pub(crate) const KEY_STORES_FILE: &str = "key-stores.json";
pub(crate) const CHAINS_FILE: &str = "chains.json";

fn archive_file_sha256(archive: &initramfs::Archive, path: &str) -> Result<String, BuildError> {
    match archive.contents(path) {
        Some(initramfs::Contents::Bytes(bytes)) => Ok(sha256_hex(bytes)),
        Some(initramfs::Contents::File(source)) => Ok(sha256_file(source)?),
        None => Ok(String::new()),
    }
}
