//! `image`: builds the appliance image bundle. See `image/README.md`.

use std::path::PathBuf;

use anyhow::Context;
use appliance_image::measure::{SnpParams, DEFAULT_SNP_GUEST_FEATURES, DEFAULT_SNP_VCPU_TYPE};
use appliance_image::{build, Options, RunnerSource, DEFAULT_ZSTD_LEVEL};
use clap::Parser;

/// Builds runner → initramfs → {vmlinuz, initrd.img, cmdline, manifest.json}.
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

    /// Use this kernel .deb instead of downloading the pinned one (its SHA-256 must match the pin).
    #[arg(long, value_name = "PATH")]
    kernel_deb: Option<PathBuf>,

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

    /// Make the runner refuse to start without a TEE (adds RUNNER_REQUIRE_TEE=1 to the command
    /// line): for images meant only for SNP/TDX; such an image cannot boot with qemu/run.
    #[arg(long)]
    require_tee: bool,

    /// zstd level of the initramfs (1-22).
    #[arg(long, default_value_t = DEFAULT_ZSTD_LEVEL, value_parser = clap::value_parser!(i32).range(1..=22))]
    zstd_level: i32,

    /// An OVMF AmdSev build: compute the SNP launch digest for it (measured direct boot).
    #[arg(long, value_name = "PATH")]
    snp_ovmf: Option<PathBuf>,

    /// vCPUs the SNP guest is launched with (qemu/run-snp: SW_CPUS).
    #[arg(long, default_value_t = 2)]
    snp_vcpus: u32,

    /// vCPU model of the SNP guest (qemu/run-snp: SW_SNP_CPU).
    #[arg(long, default_value = DEFAULT_SNP_VCPU_TYPE)]
    snp_vcpu_type: String,

    /// SEV features in the SNP guest's VMSA.
    #[arg(long, default_value_t = DEFAULT_SNP_GUEST_FEATURES)]
    snp_guest_features: u64,
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
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .context("no --cache, XDG_CACHE_HOME or HOME")?
            .join("smart-worker/image"),
    };
    let runner = match cli.runner_bin {
        Some(path) => RunnerSource::Prebuilt(path),
        None => RunnerSource::Build {
            profile: cli.profile,
        },
    };
    let mut cmdline_append = cli.cmdline_append;
    if cli.require_tee {
        cmdline_append.push("RUNNER_REQUIRE_TEE=1".to_owned());
    }
    let options = Options {
        workspace: cli.workspace,
        out: out.clone(),
        cache,
        runner,
        kernel_deb: cli.kernel_deb,
        cmdline_append,
        key_stores: cli.key_stores,
        chains: cli.chains,
        zstd_level: cli.zstd_level,
        source_date_epoch: None,
        snp: cli.snp_ovmf.map(|ovmf| SnpParams {
            ovmf,
            vcpus: cli.snp_vcpus,
            vcpu_type: cli.snp_vcpu_type,
            guest_features: cli.snp_guest_features,
        }),
    };
    let manifest = build(&options).context("building the image")?;
    println!("{}", out.display());
    eprintln!(
        "image: kernel sha256 {}\nimage: initrd sha256 {}\nimage: cmdline {:?}",
        manifest.parts.kernel.sha256, manifest.parts.initrd.sha256, manifest.parts.cmdline.value
    );
    Ok(())
}
