//! The minimal kernel: built from Debian's pinned `linux-source` package with the appliance's
//! configuration (`image/kernel/appliance.config`): everything it needs built in, no modules
//! (`CONFIG_MODULES=n`), so nothing is loaded at boot and nothing can be loaded later.
//!
//! [`build`]:
//!
//! 1. `apt-get download`s the source `.deb` into `cache/debs/` and checks its SHA-256 against
//!    [`SOURCE_PIN`];
//! 2. unpacks the kernel tree it carries once into `cache/linux-source-<hash>/` (never written
//!    to afterwards: builds are out of tree);
//! 3. configures: `make allnoconfig` with the fragment as `KCONFIG_ALLCONFIG`, then
//!    `make olddefconfig`, and checks that every option the fragment sets came out as asked
//!    ([`check_config`]), naming the ones that did not;
//! 4. `make bzImage`, its output kept in `make.log` and summarised on standard error every 20 s;
//! 5. checks that no build path made it into the kernel, and moves the result into
//!    `cache/kernel-minimal-<key>/` in one rename: an interrupted build leaves only a
//!    `.kernel-minimal-*` temporary directory, never an entry that looks complete.
//!
//! Reproducible: the build time is the source package's changelog date, the user, host and
//! build number are fixed, the environment is cleared, and the tree is built out of place with
//! the source path mapped away (`-fmacro-prefix-map`, the kernel's own). The key of a cached build
//! covers the `.deb`, the fragment, the toolchain that compiles and compresses ([`toolchain`]) and
//! [`RECIPE_VERSION`], so a second call with the same inputs returns at once.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::KernelError;
use crate::deb;
use crate::long_step::{self, Progress, Report};
use crate::util::{check_no_path, megabytes, sha256_hex, ToolError};

/// Debian's kernel source package, pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePin {
    pub deb: deb::DebPin,
    /// The source tarball inside the package.
    pub tarball: &'static str,
    /// The tarball's top directory.
    pub tree: &'static str,
    /// The package's changelog date: the kernel's build time (`uname -v`), so that it depends on
    /// the source, not on when it was built.
    pub date: &'static str,
}

/// Linux 6.12.117 with Debian's patches, from Debian 12's security suite: the same source as
/// the binary kernel of [`super::PIN`].
pub const SOURCE_PIN: SourcePin = SourcePin {
    deb: deb::DebPin {
        package: "linux-source-6.12",
        version: "6.12.117-1~deb12u1",
        arch: "all",
        sha256: "e849faf31ca3555757f3a8877cb01af92122f744f75d1f3102734651c4e14703",
        suite: "bookworm-security",
    },
    tarball: "usr/src/linux-source-6.12.tar.xz",
    tree: "linux-source-6.12",
    date: "Sat, 14 Nov 2026 13:56:01 +0100",
};

/// The configuration fragment (`image/kernel/appliance.config`), applied on top of
/// `allnoconfig`.
pub const FRAGMENT: &str = include_str!("../../kernel/appliance.config");

/// Appended to the release: `uname -r` says `6.12.117-appliance`.
pub const LOCALVERSION: &str = "-appliance";

/// Bump when the way the kernel is built changes (make arguments, environment, post-processing)
/// in a way the cache key does not see otherwise.
pub const RECIPE_VERSION: u32 = 1;

const ARCH: &str = "x86_64";
const BUILD_USER: &str = "builder";
const BUILD_HOST: &str = "appliance";
const BUILD_VERSION: &str = "1";

/// Files of a finished build, below `cache/kernel-minimal-<key>/`.
const BZIMAGE: &str = "bzImage";
const CONFIG: &str = "config";
const SYSTEM_MAP: &str = "System.map";
const RELEASE: &str = "release";
const MAKE_LOG: &str = "make.log";

/// A built kernel in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltKernel {
    /// The EFI-stub bzImage.
    pub bzimage: PathBuf,
    /// The final `.config`.
    pub config: PathBuf,
    /// Symbol addresses, for reading a panic's backtrace.
    pub system_map: PathBuf,
    /// `uname -r`.
    pub release: String,
    pub source_deb_sha256: String,
    /// Names the cache entry: see [`cache_key`].
    pub cache_key: String,
}

impl BuiltKernel {
    /// The build in `dir`, if it is complete.
    fn load(dir: &Path, source_deb_sha256: &str, cache_key: &str) -> Option<Self> {
        let built = BuiltKernel {
            bzimage: dir.join(BZIMAGE),
            config: dir.join(CONFIG),
            system_map: dir.join(SYSTEM_MAP),
            release: std::fs::read_to_string(dir.join(RELEASE))
                .ok()?
                .trim()
                .to_owned(),
            source_deb_sha256: source_deb_sha256.to_owned(),
            cache_key: cache_key.to_owned(),
        };
        (built.bzimage.is_file() && built.config.is_file() && !built.release.is_empty())
            .then_some(built)
    }
}

/// What the fragment asks of one option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// `CONFIG_X=value` (`y`, a number, a quoted string).
    Value(String),
    /// `# CONFIG_X is not set` (or `CONFIG_X=n`).
    Unset,
}

impl fmt::Display for Wanted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wanted::Value(value) => f.write_str(value),
            Wanted::Unset => f.write_str("not set"),
        }
    }
}

/// An option whose final value is not what the fragment asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMismatch {
    /// `CONFIG_...`
    pub option: String,
    pub wanted: Wanted,
    /// The final `.config`'s value; `None`: not set (or not offered at all).
    pub got: Option<String>,
}

impl fmt::Display for ConfigMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} wanted {}, got {}",
            self.option,
            self.wanted,
            self.got.as_deref().unwrap_or("not set")
        )
    }
}

/// One `.config`-syntax line: `CONFIG_X=value` or `# CONFIG_X is not set`.
fn config_line(line: &str) -> Option<(&str, Wanted)> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("# ") {
        let option = rest.strip_suffix(" is not set")?;
        return option
            .starts_with("CONFIG_")
            .then_some((option, Wanted::Unset));
    }
    let (option, value) = line.split_once('=')?;
    if !option.starts_with("CONFIG_") || option.contains(char::is_whitespace) {
        return None;
    }
    Some(match value {
        "n" => (option, Wanted::Unset),
        value => (option, Wanted::Value(value.to_owned())),
    })
}

/// The options a fragment sets, in order; a later line for the same option wins (as in Kconfig).
pub fn parse_fragment(fragment: &str) -> Vec<(String, Wanted)> {
    let mut options: Vec<(String, Wanted)> = Vec::new();
    for (option, wanted) in fragment.lines().filter_map(config_line) {
        options.retain(|(o, _)| o != option);
        options.push((option.to_owned(), wanted));
    }
    options
}

/// Every option of `fragment` whose value in `config` (a final `.config`) differs from what the
/// fragment asked for. Empty: the configuration is what was asked.
pub fn check_config(fragment: &str, config: &str) -> Vec<ConfigMismatch> {
    let values: std::collections::BTreeMap<&str, &str> = config
        .lines()
        .filter_map(|line| line.trim().split_once('='))
        .filter(|(option, _)| option.starts_with("CONFIG_"))
        .collect();
    parse_fragment(fragment)
        .into_iter()
        .filter_map(|(option, wanted)| {
            let got = values.get(option.as_str()).copied();
            let ok = match &wanted {
                Wanted::Value(value) => got == Some(value.as_str()),
                Wanted::Unset => got.is_none(),
            };
            (!ok).then(|| ConfigMismatch {
                option,
                wanted,
                got: got.map(str::to_owned),
            })
        })
        .collect()
}

/// The first line of `tool --version`.
fn version_line(tool: &str) -> Result<String, KernelError> {
    let text = crate::util::tool_version(
        Command::new(tool).arg("--version"),
        &format!("{tool} --version (see scripts/setup.sh for the kernel's build tools)"),
    )?;
    Ok(text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or_default()
        .to_owned())
}

/// The tools whose versions can change the kernel's bytes: the compiler, the binutils that link
/// and copy it, and lz4, which compresses it. One line each.
pub fn toolchain() -> Result<String, KernelError> {
    Ok(["gcc", "ld", "lz4"]
        .iter()
        .map(|tool| version_line(tool))
        .collect::<Result<Vec<_>, _>>()?
        .join("\n"))
}

/// Names a build: the source `.deb`, the fragment's bytes, the toolchain and the recipe.
pub fn cache_key(source_deb_sha256: &str, fragment: &str, toolchain: &str) -> String {
    let mut text = format!(
        "appliance kernel recipe {RECIPE_VERSION}\narch {ARCH}\nlocalversion {LOCALVERSION}\n\
         date {}\nuser {BUILD_USER}\nhost {BUILD_HOST}\nversion {BUILD_VERSION}\n\
         source {source_deb_sha256}\ntoolchain\n{toolchain}\nfragment\n",
        SOURCE_PIN.date
    );
    text.push_str(fragment);
    sha256_hex(text.as_bytes())[..16].to_owned()
}

/// Builds the kernel (or returns the cached build): from `source_deb` if given, else from
/// `cache/debs/` (downloaded if missing); it must match [`SOURCE_PIN`]. `jobs`: `make -j`.
pub fn build(
    cache: &Path,
    source_deb: Option<&Path>,
    jobs: usize,
) -> Result<BuiltKernel, KernelError> {
    let pin = &SOURCE_PIN;
    let deb = pin.deb.fetch(cache, source_deb)?;
    let deb_sha256 = pin.deb.sha256.to_owned();
    let key = cache_key(&deb_sha256, FRAGMENT, &toolchain()?);
    let dir = cache.join(format!("kernel-minimal-{key}"));
    if let Some(built) = BuiltKernel::load(&dir, &deb_sha256, &key) {
        crate::progress!("kernel: {} (cached)", dir.display());
        return Ok(built);
    }

    let source = source_tree(cache, &deb, &deb_sha256)?;
    let work = tempfile::Builder::new()
        .prefix(".kernel-minimal-")
        .tempdir_in(cache)
        .map_err(|e| ToolError::io(cache, e))?;
    let objects = work.path().join("build");
    let out = work.path().join("out");
    for path in [&objects, &out] {
        std::fs::create_dir(path).map_err(|e| ToolError::io(path, e))?;
    }
    let fragment_path = work.path().join("appliance.config");
    std::fs::write(&fragment_path, FRAGMENT).map_err(|e| ToolError::io(&fragment_path, e))?;
    let log_path = out.join(MAKE_LOG);

    crate::progress!("kernel: configuring (allnoconfig + image/kernel/appliance.config)");
    let mut allnoconfig = make(&source, &objects);
    allnoconfig
        .arg(format!("KCONFIG_ALLCONFIG={}", fragment_path.display()))
        .arg("allnoconfig");
    long_step::run::<KernelError>(&mut allnoconfig, "make allnoconfig", &log_path, None)?;
    let mut olddefconfig = make(&source, &objects);
    olddefconfig.arg("olddefconfig");
    long_step::run::<KernelError>(&mut olddefconfig, "make olddefconfig", &log_path, None)?;
    let config_path = objects.join(".config");
    let config =
        std::fs::read_to_string(&config_path).map_err(|e| ToolError::io(&config_path, e))?;
    let mismatches = check_config(FRAGMENT, &config);
    if !mismatches.is_empty() {
        return Err(KernelError::ConfigDidNotStick(mismatches));
    }

    let jobs = jobs.max(1);
    crate::progress!(
        "kernel: make -j{jobs} bzImage (6-10 minutes on 2 cores; log: {})",
        log_path.display()
    );
    let started = Instant::now();
    let mut bzimage = make(&source, &objects);
    bzimage.arg(format!("-j{jobs}")).arg("bzImage");
    let mut steps = KbuildSteps::default();
    let report = Report {
        label: "kernel: make bzImage",
        started,
        every: PROGRESS_EVERY,
        progress: &mut steps,
    };
    long_step::run::<KernelError>(&mut bzimage, "make bzImage", &log_path, Some(report))?;

    let built_image = objects.join("arch/x86/boot/bzImage");
    // The uncompressed kernel holds every string the bzImage carries compressed.
    for file in [&objects.join("vmlinux"), &built_image] {
        for leaked in [source.as_path(), work.path()] {
            check_no_path::<KernelError>(file, leaked)?;
        }
    }
    let release_path = objects.join("include/config/kernel.release");
    let release =
        std::fs::read_to_string(&release_path).map_err(|e| ToolError::io(&release_path, e))?;
    for (from, to) in [
        (built_image, BZIMAGE),
        (config_path, CONFIG),
        (objects.join("System.map"), SYSTEM_MAP),
    ] {
        let to = out.join(to);
        std::fs::copy(&from, &to).map_err(|e| ToolError::io(&from, e))?;
    }
    let release_file = out.join(RELEASE);
    std::fs::write(&release_file, release.trim()).map_err(|e| ToolError::io(&release_file, e))?;
    if let Err(e) = std::fs::rename(&out, &dir) {
        // Another build of the same key may have finished first: its result is as good.
        if BuiltKernel::load(&dir, &deb_sha256, &key).is_none() {
            return Err(ToolError::io(&dir, e).into());
        }
    }
    let built = BuiltKernel::load(&dir, &deb_sha256, &key)
        .ok_or_else(|| KernelError::Missing(dir.join(BZIMAGE)))?;
    let size = std::fs::metadata(&built.bzimage)
        .map_err(|e| ToolError::io(&built.bzimage, e))?
        .len();
    crate::progress!(
        "kernel: {} built in {:.0?}: bzImage {} ({})",
        built.release,
        started.elapsed(),
        megabytes(size),
        dir.display()
    );
    Ok(built)
}

/// The kernel tree of the source package, unpacked once into the cache.
fn source_tree(cache: &Path, deb: &Path, deb_sha256: &str) -> Result<PathBuf, KernelError> {
    let pin = &SOURCE_PIN;
    let root = cache.join(format!("linux-source-{}", &deb_sha256[..16]));
    if root.join("Makefile").is_file() {
        return Ok(root);
    }
    crate::progress!("kernel: unpacking {} from {}", pin.tarball, deb.display());
    let staging = deb::unpack(deb, cache, ".linux-source-")?;
    let tree = staging.path().join("tree");
    std::fs::create_dir(&tree).map_err(|e| ToolError::io(&tree, e))?;
    let tarball = staging.path().join(pin.tarball);
    if !tarball.is_file() {
        return Err(KernelError::Missing(tarball));
    }
    crate::util::run(
        Command::new("tar")
            .arg("-xJf")
            .arg(&tarball)
            .arg("-C")
            .arg(&tree)
            .arg("--no-same-owner"),
        "tar -xJf (unpacking the kernel source)",
    )?;
    let unpacked = tree.join(pin.tree);
    if !unpacked.join("Makefile").is_file() {
        return Err(KernelError::Missing(unpacked.join("Makefile")));
    }
    if let Err(e) = std::fs::rename(&unpacked, &root) {
        if !root.join("Makefile").is_file() {
            return Err(ToolError::io(&root, e).into());
        }
    }
    Ok(root)
}

/// `make` for an out-of-tree build of `source` in `objects`, in a cleared environment with the
/// reproducibility settings.
fn make(source: &Path, objects: &Path) -> Command {
    let mut command = Command::new("make");
    command
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .env("KBUILD_BUILD_TIMESTAMP", SOURCE_PIN.date)
        .env("KBUILD_BUILD_USER", BUILD_USER)
        .env("KBUILD_BUILD_HOST", BUILD_HOST)
        .env("KBUILD_BUILD_VERSION", BUILD_VERSION)
        .arg("-C")
        .arg(source)
        .arg(format!("O={}", objects.display()))
        .arg(format!("ARCH={ARCH}"))
        .arg(format!("LOCALVERSION={LOCALVERSION}"));
    command
}

/// How often `make bzImage` says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(20);

/// Kbuild's short steps (`  CC      kernel/fork.o`): how many, and the last.
#[derive(Debug, Default)]
struct KbuildSteps {
    steps: u64,
    last: String,
}

impl Progress for KbuildSteps {
    fn line(&mut self, line: &str) {
        if line.starts_with("  ") && !line.trim().is_empty() {
            self.steps += 1;
            self.last = line.split_whitespace().collect::<Vec<_>>().join(" ");
        }
    }

    fn summary(&self) -> String {
        format!("{} steps (last: {})", self.steps, self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_deb_name_follows_apt() {
        assert_eq!(
            SOURCE_PIN.deb.file_name(),
            "linux-source-6.12_6.12.117-1~deb12u1_all.deb"
        );
    }

    #[test]
    fn the_source_is_the_binary_kernels_version() {
        assert_eq!(SOURCE_PIN.deb.version, super::super::PIN.deb.version);
    }

    #[test]
    fn fragment_lines_are_options_or_comments() {
        let options = parse_fragment(
            "# a comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=n\nCONFIG_D=\"x y\"\n\
             CONFIG_E=64\nCONFIG_A=n\n#CONFIG_F is not set\n",
        );
        assert_eq!(
            options,
            [
                ("CONFIG_B".to_owned(), Wanted::Unset),
                ("CONFIG_C".to_owned(), Wanted::Unset),
                ("CONFIG_D".to_owned(), Wanted::Value("\"x y\"".into())),
                ("CONFIG_E".to_owned(), Wanted::Value("64".into())),
                ("CONFIG_A".to_owned(), Wanted::Unset),
            ]
        );
    }

    #[test]
    fn the_shipped_fragment_is_well_formed() {
        let options = parse_fragment(FRAGMENT);
        for line in FRAGMENT.lines().map(str::trim) {
            assert!(
                line.is_empty() || line.starts_with('#') || config_line(line).is_some(),
                "not an option: {line}"
            );
        }
        // Each option once: a second line would silently win over the first.
        let set_lines = FRAGMENT.lines().filter_map(config_line).count();
        assert_eq!(set_lines, options.len(), "an option is set twice");
        for (option, wanted) in [
            ("CONFIG_MODULES", Wanted::Unset),
            ("CONFIG_SEV_GUEST", Wanted::Value("y".into())),
            ("CONFIG_TDX_GUEST_DRIVER", Wanted::Value("y".into())),
            ("CONFIG_TSM_REPORTS", Wanted::Value("y".into())),
            ("CONFIG_DM_VERITY", Wanted::Value("y".into())),
            ("CONFIG_EROFS_FS", Wanted::Value("y".into())),
            // The clouds' devices, TPM and event logs (issue 18).
            ("CONFIG_BLK_DEV_NVME", Wanted::Value("y".into())),
            ("CONFIG_GVE", Wanted::Value("y".into())),
            ("CONFIG_ENA_ETHERNET", Wanted::Value("y".into())),
            ("CONFIG_SCSI_VIRTIO", Wanted::Value("y".into())),
            ("CONFIG_HYPERV_NET", Wanted::Value("y".into())),
            ("CONFIG_HYPERV_STORAGE", Wanted::Value("y".into())),
            ("CONFIG_PCI_HYPERV", Wanted::Value("y".into())),
            ("CONFIG_TCG_CRB", Wanted::Value("y".into())),
            ("CONFIG_TCG_TIS", Wanted::Value("y".into())),
            ("CONFIG_SECURITYFS", Wanted::Value("y".into())),
            ("CONFIG_DMIID", Wanted::Value("y".into())),
            ("CONFIG_TCG_TPM2_HMAC", Wanted::Unset),
        ] {
            assert!(
                options.contains(&(option.to_owned(), wanted.clone())),
                "{option} should be {wanted}"
            );
        }
    }

    const FINAL: &str = "#\n# Automatically generated file; DO NOT EDIT.\n#\nCONFIG_A=y\n\
                         # CONFIG_B is not set\nCONFIG_D=\"x y\"\nCONFIG_E=64\nCONFIG_M=y\n";

    #[test]
    fn a_config_with_everything_asked_passes() {
        let fragment = "CONFIG_A=y\n# CONFIG_B is not set\n# CONFIG_C is not set\n\
                        CONFIG_D=\"x y\"\nCONFIG_E=64\n";
        assert_eq!(check_config(fragment, FINAL), []);
    }

    #[test]
    fn an_option_that_did_not_stick_is_named() {
        let fragment = "CONFIG_A=y\nCONFIG_B=y\nCONFIG_X=y\nCONFIG_E=32\n# CONFIG_M is not set\n";
        let mismatches = check_config(fragment, FINAL);
        assert_eq!(
            mismatches,
            [
                ConfigMismatch {
                    option: "CONFIG_B".into(),
                    wanted: Wanted::Value("y".into()),
                    got: None,
                },
                ConfigMismatch {
                    option: "CONFIG_X".into(),
                    wanted: Wanted::Value("y".into()),
                    got: None,
                },
                ConfigMismatch {
                    option: "CONFIG_E".into(),
                    wanted: Wanted::Value("32".into()),
                    got: Some("64".into()),
                },
                ConfigMismatch {
                    option: "CONFIG_M".into(),
                    wanted: Wanted::Unset,
                    got: Some("y".into()),
                },
            ]
        );
        let message = KernelError::ConfigDidNotStick(mismatches).to_string();
        for part in [
            "CONFIG_B wanted y, got not set",
            "CONFIG_X wanted y, got not set",
            "CONFIG_E wanted 32, got 64",
            "CONFIG_M wanted not set, got y",
        ] {
            assert!(message.contains(part), "{message}");
        }
    }

    #[test]
    fn the_cache_key_follows_every_input() {
        let key = cache_key("aa", "CONFIG_A=y\n", "gcc 12");
        assert_eq!(key.len(), 16);
        assert_eq!(key, cache_key("aa", "CONFIG_A=y\n", "gcc 12"), "stable");
        assert_ne!(key, cache_key("aa", "CONFIG_A=y\nCONFIG_B=y\n", "gcc 12"));
        assert_ne!(key, cache_key("aa", "# CONFIG_A is not set\n", "gcc 12"));
        assert_ne!(key, cache_key("ab", "CONFIG_A=y\n", "gcc 12"));
        assert_ne!(key, cache_key("aa", "CONFIG_A=y\n", "gcc 13"));
    }

    #[test]
    fn only_a_complete_build_is_a_cache_hit() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(BuiltKernel::load(dir.path(), "aa", "k"), None);
        std::fs::write(dir.path().join(BZIMAGE), b"MZ").unwrap();
        std::fs::write(dir.path().join(CONFIG), b"CONFIG_A=y\n").unwrap();
        assert_eq!(BuiltKernel::load(dir.path(), "aa", "k"), None, "no release");
        std::fs::write(dir.path().join(RELEASE), b"6.12.117-appliance\n").unwrap();
        let built = BuiltKernel::load(dir.path(), "aa", "k").unwrap();
        assert_eq!(built.release, "6.12.117-appliance");
        assert_eq!(built.bzimage, dir.path().join("bzImage"));
    }

    #[test]
    fn a_build_path_in_the_image_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vmlinux");
        std::fs::write(&file, b"\0\0/cache/linux-source-0123/kernel/fork.c\0").unwrap();
        assert!(check_no_path::<KernelError>(&file, Path::new("/elsewhere")).is_ok());
        assert!(matches!(
            check_no_path::<KernelError>(&file, Path::new("/cache/linux-source-0123")),
            Err(KernelError::PathLeak(_))
        ));
    }

    #[test]
    fn kbuild_steps_are_counted_and_the_last_named() {
        let mut steps = KbuildSteps::default();
        for line in [
            "make[1]: Entering directory '/build'",
            "  CC      kernel/fork.o",
            "",
            "  LD      vmlinux",
            "arch/x86/Makefile:142: warning",
        ] {
            steps.line(line);
        }
        assert_eq!(steps.summary(), "2 steps (last: LD vmlinux)");
    }
}
