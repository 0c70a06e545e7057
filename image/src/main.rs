//! `image`: builds the appliance image bundle. See `image/README.md`.

use std::path::PathBuf;

use anyhow::Context;
use appliance_image::measure::{
    amdsev_ovmf, fetch_tdvf, SnpParams, TdxParams, DEFAULT_SNP_GUEST_FEATURES,
    DEFAULT_SNP_VCPU_TYPE,
};
use appliance_image::root_disk::{DiskFormat, DEFAULT_DISK_FORMAT};
use appliance_image::{
    build, util, KernelSource, Options, RootFormat, RunnerSource, DEFAULT_ZSTD_LEVEL,
};
use clap::Parser;

/// Builds runner → kernel → root file system → {vmlinuz, rootfs.img or initrd.img, cmdline,
/// OVMF.amdsev.fd, OVMF.tdx.fd, manifest.json}.
#[derive(Debug, Parser)]
#[command(name = "image", version, about)]
struct Cli {
    /// Bundle directory [default: $CARGO_TARGET_DIR/image, else target/image].
    #[arg(long)]
    out: Option<PathBuf>,

    /// Use this runner binary instead of building one.
    #[arg(long, value_name = "PATH", conflicts_with = "profile")]
    runner_bin: Option<PathBuf>,

    /// Cargo profile to build the runner with.
    #[arg(long, default_value = "release")]
    profile: String,

    /// The cargo workspace [default: the current directory].
    #[arg(long, default_value = ".")]
    workspace: PathBuf,

    /// Download cache [default: $XDG_CACHE_HOME/smart-worker/image or ~/.cache/smart-worker/image].
    #[arg(long)]
    cache: Option<PathBuf>,

    /// Which kernel: `minimal` is built from Debian's pinned linux-source with everything the
    /// appliance needs built in (image/kernel/appliance.config; the first build takes minutes,
    /// then it is cached); `debian` is Debian's pinned binary cloud kernel with modules
    /// (initramfs only).
    #[arg(long, value_enum, default_value_t = KernelChoice::Minimal)]
    kernel: KernelChoice,

    /// Use this .deb (linux-source for `minimal`, linux-image for `debian`) instead of
    /// downloading the pinned one; its SHA-256 must match the pin.
    #[arg(long, value_name = "PATH")]
    kernel_deb: Option<PathBuf>,

    /// How the root file system reaches the kernel: `disk` (squashfs or erofs + dm-verity on the
    /// first virtio disk, root hash on the measured command line; read when touched) or `initramfs`
    /// (unpacked into memory before init runs).
    #[arg(long, value_enum, default_value_t = RootChoice::Disk)]
    root: RootChoice,

    /// The root disk's file system: squashfs-zstd[,LEVEL] (smallest), erofs-lz4hc[,LEVEL] or
    /// erofs (uncompressed, largest).
    #[arg(long, default_value_t = DEFAULT_DISK_FORMAT, value_name = "FORMAT")]
    disk_format: DiskFormat,

    /// Words to append to the kernel command line (measured), e.g. RUNNER_LOG=debug.
    #[arg(long = "cmdline", value_name = "WORD")]
    cmdline_append: Vec<String>,

    /// The runner's Sapphire key stores (`--key-stores` JSON): carried in the image at
    /// /etc/runner/key-stores.json, so contract addresses and RPC URLs are measured.
    #[arg(long, value_name = "FILE")]
    key_stores: Option<PathBuf>,

    /// The runner's chains for TaskHub triggers (`--chains` JSON): carried in the image at
    /// /etc/runner/chains.json (measured).
    #[arg(long, value_name = "FILE")]
    chains: Option<PathBuf>,

    /// A development image: the runner starts without a TEE and creates workers on plain HTTP.
    /// Without it the command line carries RUNNER_REQUIRE_TEE=1 and RUNNER_CREATION_TLS_ONLY=1
    /// (the image then boots only as an SNP/TDX guest, not with qemu/run under TCG/KVM).
    #[arg(long)]
    dev: bool,

    /// zstd level of the initramfs (1-22; `--root initramfs`).
    #[arg(long, default_value_t = DEFAULT_ZSTD_LEVEL, value_parser = clap::value_parser!(i32).range(1..=22))]
    zstd_level: i32,

    /// Compute the SNP launch digest for this OVMF (an OvmfPkg/AmdSev build) instead of the
    /// pinned one the tool builds from Debian's edk2 source (about 3 minutes once, then cached).
    #[arg(long, value_name = "PATH")]
    snp_ovmf: Option<PathBuf>,

    /// Do not compute the SNP launch digest (no AmdSev OVMF is built).
    #[arg(long, conflicts_with = "snp_ovmf")]
    no_snp: bool,

    /// vCPUs the SNP guest is launched with (qemu/run-snp: SW_CPUS).
    #[arg(long, default_value_t = 2)]
    snp_vcpus: u32,

    /// vCPU model of the SNP guest (qemu/run-snp: SW_SNP_CPU).
    #[arg(long, default_value = DEFAULT_SNP_VCPU_TYPE)]
    snp_vcpu_type: String,

    /// Compute the TDX measurements for this TDVF (OVMF) instead of the pinned one (Debian 13's
    /// ovmf, fetched with apt-get download into the cache).
    #[arg(long, value_name = "OVMF.fd")]
    tdx_ovmf: Option<PathBuf>,

    /// Do not compute TDX measurements (no TDVF is fetched).
    #[arg(long, conflicts_with = "tdx_ovmf")]
    no_tdx: bool,

    /// UEFI disks to make as well, from the same build (repeatable or a list): raw (QEMU, AWS),
    /// gcp (disk.raw in a tar.gz), azure (fixed VHD), aws (the raw disk). Each boots the UKI
    /// `\EFI\BOOT\BOOTX64.EFI` (systemd's EFI stub + kernel + command line) with the root disk as
    /// its second partition; the manifest's `uefi` section has the predicted measurements.
    #[arg(long = "format", value_name = "FORMAT[,FORMAT]")]
    formats: Vec<String>,

    /// SEV features in the SNP guest's VMSA.
    #[arg(long, default_value_t = DEFAULT_SNP_GUEST_FEATURES)]
    snp_guest_features: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum KernelChoice {
    Minimal,
    Debian,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RootChoice {
    Disk,
    Initramfs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let out = cli.out.unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target"))
            .join("image")
    });
    let cache = match cli.cache {
        Some(cache) => cache,
        None => util::default_cache_dir().context("no --cache, XDG_CACHE_HOME or HOME")?,
    };
    let runner = match cli.runner_bin {
        Some(path) => RunnerSource::Prebuilt(path),
        None => RunnerSource::Build {
            profile: cli.profile,
        },
    };
    let tdx = match (cli.tdx_ovmf, cli.no_tdx) {
        (Some(tdvf), _) => Some(TdxParams { tdvf, pin: None }),
        (None, true) => None,
        (None, false) => Some(TdxParams::pinned(
            fetch_tdvf(&cache).context("fetching the pinned TDVF (or pass --no-tdx)")?,
        )),
    };
    let mut options = Options::new(cli.workspace, out.clone(), cache, runner);
    options.tdx = tdx;
    options.kernel = match cli.kernel {
        KernelChoice::Minimal => KernelSource::Minimal {
            source_deb: cli.kernel_deb,
        },
        KernelChoice::Debian => KernelSource::Debian {
            deb: cli.kernel_deb,
        },
    };
    options.root = match cli.root {
        RootChoice::Disk => RootFormat::Disk(cli.disk_format),
        RootChoice::Initramfs => RootFormat::Initramfs {
            zstd_level: cli.zstd_level,
        },
    };
    options.cmdline_append = cli.cmdline_append;
    options.dev = cli.dev;
    options.key_stores = cli.key_stores;
    options.chains = cli.chains;
    options.formats = appliance_image::uefi::parse_formats(&cli.formats)
        .map_err(anyhow::Error::msg)
        .context("--format")?;
    let jobs = util::default_jobs();
    let snp_ovmf = match (cli.snp_ovmf, cli.no_snp) {
        (Some(ovmf), _) => Some((ovmf, false)),
        (None, true) => None,
        (None, false) => Some((
            amdsev_ovmf::build(&options.cache, jobs)
                .context("building the pinned AmdSev OVMF (or pass --snp-ovmf or --no-snp)")?,
            true,
        )),
    };
    options.snp = snp_ovmf.map(|(ovmf, pinned)| SnpParams {
        ovmf,
        vcpus: cli.snp_vcpus,
        vcpu_type: cli.snp_vcpu_type,
        guest_features: cli.snp_guest_features,
        pinned,
    });
    let manifest = build(&options).context("building the image")?;
    println!("{}", out.display());
    eprintln!("image: kernel sha256 {}", manifest.parts.kernel.sha256);
    for part in [&manifest.parts.initrd, &manifest.parts.root_disk]
        .into_iter()
        .flatten()
    {
        eprintln!("image: {} sha256 {}", part.file, part.sha256);
    }
    eprintln!("image: cmdline {:?}", manifest.parts.cmdline.value);
    if let Some(uefi) = &manifest.uefi {
        for (format, part) in &uefi.disk {
            eprintln!("image: {format}: {} sha256 {}", part.file, part.sha256);
        }
        if let Some(p) = uefi.predictions.get("qemu-ovmf-tpm") {
            eprintln!(
                "image: PCR4 (edk2 + TPM) {}",
                p.values.get("PCR4").map_or("", |v| v)
            );
        }
    }
    Ok(())
}
