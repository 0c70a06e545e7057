//! The SEV-SNP firmware: OVMF's `OvmfPkg/AmdSev/AmdSevX64.dsc` platform, built reproducibly from
//! Debian's pinned edk2 source package, so that the manifest's SNP launch digest can be computed
//! for a firmware everybody can rebuild bit for bit.
//!
//! AmdSevX64 is the OVMF variant for measured direct boot: its reset vector publishes the SEV
//! hashes table (GUID `7255371f-3a3b-4b04-927b-1da6efa8d454`) into which QEMU's
//! `kernel-hashes=on` writes the SHA-256 of kernel, initrd and command line, so that they are part
//! of the launch digest, and its kernel loader refuses blobs that do not match that table.
//!
//! [`build`]:
//!
//! 1. fetches the source package's two tarballs ([`SOURCE_PIN`]) into `cache/deb-src/` with
//!    `curl` from the Debian mirror (the mirror serves them but not the `.dsc`, so `apt-get source`
//!    cannot be used) and checks them against their pinned SHA-256, which are those of trixie's
//!    signed `Sources` index;
//! 2. unpacks them into a temporary directory in the cache and applies Debian's patch series in
//!    order (what `dpkg-source -x` does), then our [`EDITS`]: no GRUB (not used by direct boot,
//!    and its image is not reproducible) and a GenFw whose images do not depend on the build
//!    directory;
//! 3. builds BaseTools' C tools and the platform (`build -a X64 -t GCC5 -b RELEASE`, as
//!    Debian's `debian/rules` builds its OVMF) in a cleared environment, logging to `build.log`
//!    and printing a progress line every 30 s;
//! 4. checks that the build directory appears in none of the firmware volumes, that the result
//!    has the SEV hashes table and SNP metadata ([`check_firmware`]) and that its SHA-256 is
//!    [`EXPECTED_SHA256`] — the reproducibility contract: a different result fails the build;
//! 5. moves `OVMF.amdsev.fd` into `cache/amdsev-ovmf-<key>/` in one rename, so an interrupted
//!    build never leaves an entry that looks complete. The temporary directory is removed when
//!    the build ends either way; one left by a killed build is removed by the next build.
//!
//! The key ([`cache_key`]) covers the pins, the build recipe (arguments, edits,
//! [`RECIPE_VERSION`]) and the tools whose versions can change the firmware's bytes
//! ([`toolchain`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sev::measurement::ovmf::{SectionType, OVMF};

use crate::long_step::{self, Progress, Report, StepFailed};
use crate::util::{check_no_path, megabytes, sha256_file, sha256_hex, ToolError};

/// One file of a Debian source package, pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub name: &'static str,
    pub sha256: &'static str,
    pub size: u64,
}

/// Debian's edk2 source package, pinned by its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdkSourcePin {
    pub package: &'static str,
    pub version: &'static str,
    /// Where the version is published.
    pub suite: &'static str,
    /// The upstream tarball (with the submodules edk2 needs: OpenSSL, Brotli, ...).
    pub orig: SourceFile,
    /// Debian's packaging: `debian/rules`, `debian/patches/`.
    pub debian: SourceFile,
    /// The upstream tarball's top directory.
    pub tree: &'static str,
    /// The package's changelog date, as `SOURCE_DATE_EPOCH` (seconds): the build's notion of
    /// "now" depends on the source, not on when it runs.
    pub source_date_epoch: u64,
}

/// edk2-stable202502 with Debian 13's patches (security fixes among them): the same source as
/// the pinned TDVF (`ovmf` 2025.02-8+deb13u1, [`super::TDVF_PIN`]). Changelog date: Sat, 08 Nov
/// 2025 11:06:17 -0700.
pub const SOURCE_PIN: EdkSourcePin = EdkSourcePin {
    package: "edk2",
    version: "2025.02-8+deb13u1",
    suite: "trixie",
    orig: SourceFile {
        name: "edk2_2025.02.orig.tar.xz",
        sha256: "b63b6053d6d89c74d9291f9e96fde1584be99e6fb9c169ba9511505129d6b049",
        size: 29_646_336,
    },
    debian: SourceFile {
        name: "edk2_2025.02-8+deb13u1.debian.tar.xz",
        sha256: "e2a7f6fc58640818416a028d6d5e9dfc255697a7cdc60c14566c236df6bd9b08",
        size: 53_652,
    },
    tree: "edk2-2025.02",
    source_date_epoch: 1_762_625_177,
};

/// Where the source files are downloaded from: `<mirror>/<pool directory>/<file>`. Plain HTTP is
/// enough: every file is checked against its pinned SHA-256 before it is used.
pub const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";
const POOL_DIRECTORY: &str = "pool/main/e/edk2";

/// The platform description built.
pub const PLATFORM: &str = "OvmfPkg/AmdSev/AmdSevX64.dsc";

/// `build`'s arguments besides the job count: those of Debian's `debian/rules` for its OVMF,
/// without its feature flags (AmdSevX64 sets its own) and PCDs (vendor and version strings).
pub const BUILD_ARGS: &[&str] = &["-a", "X64", "-t", "GCC5", "-b", "RELEASE", "-p", PLATFORM];

/// Where `build` puts the firmware, below the tree.
const BUILT_FV_DIR: &str = "Build/AmdSev/RELEASE_GCC5/FV";
const BUILT_FD: &str = "OVMF.fd";

/// The firmware's name in its cache entry, `cache/amdsev-ovmf-<key>/`.
pub const OVMF_FILE: &str = "OVMF.amdsev.fd";
const BUILD_LOG: &str = "build.log";

/// SHA-256 of the firmware this recipe builds with [`PINNED_TOOLCHAIN`]: the build fails if its
/// result differs (two builds in different directories gave these bytes; see image/README.md).
pub const EXPECTED_SHA256: &str =
    "ff1128dcd5601f5da27c96a2b2ca159c1278be951366f14b21c924111b6db078";

/// The tools [`EXPECTED_SHA256`] was built with (Debian 12), one summary line each as
/// [`toolchain`] reports them; named in the error when the result differs.
pub const PINNED_TOOLCHAIN: &[&str] = &[
    "gcc (Debian 12.2.0-14+deb12u1) 12.2.0",
    "GNU ld (GNU Binutils for Debian) 2.40",
    "NASM version 2.16.01",
    "ASL+ Optimizing Compiler/Disassembler version 20200925",
    "Python 3.11.2",
];

/// Bump when the way the firmware is built changes (arguments, environment, edits,
/// post-processing) in a way the cache key does not see otherwise.
pub const RECIPE_VERSION: u32 = 1;

/// A change the build makes to the tree after Debian's patches. `find` must occur exactly once
/// in `file`; it is written with `\n` line ends and matched against the file's own (edk2's files
/// have CRLF), and `replace` takes the same line ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edit {
    pub file: &'static str,
    pub find: &'static str,
    pub replace: &'static str,
    pub why: &'static str,
}

const NO_GRUB: &str = "no GRUB: AmdSevX64 embeds a GRUB (made at build time by grub.sh with \
    grub-mkimage around a FAT memdisk) that only boots an encrypted disk with a secret injected \
    by the guest owner. The appliance boots its kernel directly (QemuKernelLoaderFsDxe checks it \
    against the hashes table), so GRUB would be unused code in the measured firmware, and its \
    image carries the build time and a random volume serial";

const GENFW_NAME: &str = "GenFw records the image's name in each PE image's CodeView entry; \
    RELEASE builds clear the name (--zero) but the entry's size still follows the length of the \
    absolute path of the build directory, which shifts everything after it. With the file name \
    alone the images do not depend on where the tree was built";

/// The GenFw helper that [`GENFW_NAME`]'s edits call.
const GENFW_HELPER: &str = "STATIC Elf_Phdr *mPhdrBase;

//
// The image name the CodeView entry records: the file name without its directory, so that the
// image does not depend on the directory it was built in (the entry's size follows the name's
// length even where --zero clears its bytes).
//
STATIC
CONST CHAR8 *
DebugImageName (
  VOID
  )
{
  CONST CHAR8  *Name;

  Name = strrchr (mInImageName, '/');
  return Name == NULL ? mInImageName : Name + 1;
}
";

/// Our changes to Debian's edk2 tree, in order.
pub const EDITS: &[Edit] = &[
    Edit {
        file: "OvmfPkg/AmdSev/AmdSevX64.dsc",
        find: "  PREBUILD                       = sh OvmfPkg/AmdSev/Grub/grub.sh\n",
        replace: "",
        why: NO_GRUB,
    },
    Edit {
        file: "OvmfPkg/AmdSev/AmdSevX64.dsc",
        find: "  OvmfPkg/AmdSev/SecretDxe/SecretDxe.inf\n  OvmfPkg/AmdSev/Grub/Grub.inf\n",
        replace: "  OvmfPkg/AmdSev/SecretDxe/SecretDxe.inf\n",
        why: NO_GRUB,
    },
    Edit {
        file: "OvmfPkg/AmdSev/AmdSevX64.fdf",
        find: "INF OvmfPkg/AmdSev/SecretDxe/SecretDxe.inf\nINF  OvmfPkg/AmdSev/Grub/Grub.inf\n",
        replace: "INF OvmfPkg/AmdSev/SecretDxe/SecretDxe.inf\n",
        why: NO_GRUB,
    },
    Edit {
        file: "BaseTools/Source/C/GenFw/Elf64Convert.c",
        find: "STATIC Elf_Phdr *mPhdrBase;\n",
        replace: GENFW_HELPER,
        why: GENFW_NAME,
    },
    Edit {
        file: "BaseTools/Source/C/GenFw/Elf64Convert.c",
        find: "                sizeof(EFI_IMAGE_DEBUG_CODEVIEW_NB10_ENTRY) +\n                \
               strlen(mInImageName) + 1;\n",
        replace: "                sizeof(EFI_IMAGE_DEBUG_CODEVIEW_NB10_ENTRY) +\n                \
                  strlen(DebugImageName ()) + 1;\n",
        why: GENFW_NAME,
    },
    Edit {
        file: "BaseTools/Source/C/GenFw/Elf64Convert.c",
        find: "  Len = strlen(mInImageName) + 1;\n",
        replace: "  Len = strlen(DebugImageName ()) + 1;\n",
        why: GENFW_NAME,
    },
    Edit {
        file: "BaseTools/Source/C/GenFw/Elf64Convert.c",
        find: "  strcpy ((char *)(Nb10 + 1), mInImageName);\n",
        replace: "  strcpy ((char *)(Nb10 + 1), DebugImageName ());\n",
        why: GENFW_NAME,
    },
];

#[derive(Debug, thiserror::Error)]
pub enum AmdSevOvmfError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(
        "downloading {url} failed: {reason}; download it by hand into {dir} (SHA-256 {sha256})",
        url = .file.url(DEBIAN_MIRROR),
        sha256 = .file.sha256
    )]
    Download {
        file: &'static SourceFile,
        dir: PathBuf,
        reason: String,
    },
    #[error(
        "{path} has SHA-256 {actual}, the pin says {expected}: not the pinned edk2 {version} file \
         {name} (from {url}); remove it, or put the right file there by hand",
        expected = .file.sha256,
        version = SOURCE_PIN.version,
        name = .file.name,
        url = .file.url(DEBIAN_MIRROR)
    )]
    HashMismatch {
        path: PathBuf,
        file: &'static SourceFile,
        actual: String,
    },
    #[error("{path}: \"{find}\" occurs {count} times, not once: the source is not the pinned one")]
    Edit {
        path: PathBuf,
        find: &'static str,
        count: usize,
    },
    #[error("the edk2 tree has no {0}")]
    Missing(PathBuf),
    #[error(transparent)]
    Build(#[from] StepFailed),
    #[error("firmware: {0}")]
    PathLeak(#[from] crate::util::PathLeak),
    #[error("{path} is not an AmdSev OVMF the SNP launch digest can be computed for: {reason}")]
    NotAmdSev { path: PathBuf, reason: String },
    #[error(
        "the built firmware has SHA-256 {actual}, the recipe's pin is {expected}: the build is not \
         reproducible here (kept as {kept}). The pin was made with:\n{pinned}\nthis machine \
         has:\n{toolchain}"
    )]
    NotReproduced {
        expected: &'static str,
        actual: String,
        kept: PathBuf,
        pinned: String,
        toolchain: String,
    },
    #[error(
        "the cached firmware {path} has SHA-256 {actual}, not the pinned {expected}: remove its \
         directory to rebuild"
    )]
    CacheCorrupt {
        path: PathBuf,
        expected: &'static str,
        actual: String,
    },
}

impl SourceFile {
    /// The file's address on `mirror`.
    pub fn url(&self, mirror: &str) -> String {
        format!(
            "{}/{POOL_DIRECTORY}/{}",
            mirror.trim_end_matches('/'),
            self.name
        )
    }
}

/// What the manifest can say about where the firmware comes from.
pub fn origin() -> String {
    let pin = &SOURCE_PIN;
    format!(
        "OVMF {PLATFORM} built by the image tool (recipe {RECIPE_VERSION}, RELEASE, GCC5, without \
         GRUB) from Debian {} {} ({} SHA-256 {}, {} SHA-256 {})",
        pin.package,
        pin.version,
        pin.orig.name,
        pin.orig.sha256,
        pin.debian.name,
        pin.debian.sha256
    )
}

/// Builds the firmware (or returns the cached build) and returns the path of its
/// `OVMF.amdsev.fd`, whose SHA-256 is [`EXPECTED_SHA256`]. `jobs`: parallel compilers.
pub fn build(cache: &Path, jobs: usize) -> Result<PathBuf, AmdSevOvmfError> {
    let pin = &SOURCE_PIN;
    let expected = EXPECTED_SHA256;
    let toolchain = toolchain()?;
    let key = cache_key(pin, EDITS, &toolchain.key_text());
    let dir = cache.join(format!("amdsev-ovmf-{key}"));
    let cached = dir.join(OVMF_FILE);
    if cached.is_file() {
        let actual = sha256_file(&cached)?;
        if actual != expected {
            return Err(AmdSevOvmfError::CacheCorrupt {
                path: cached,
                expected,
                actual,
            });
        }
        crate::progress!("amdsev-ovmf: {} (cached)", cached.display());
        return Ok(cached);
    }

    let orig = fetch_source(cache, &pin.orig)?;
    let debian = fetch_source(cache, &pin.debian)?;
    remove_stale_work_dirs(cache);
    let work = tempfile::Builder::new()
        .prefix(WORK_PREFIX)
        .tempdir_in(cache)
        .map_err(|e| ToolError::io(cache, e))?;
    let pid_file = work.path().join(PID_FILE);
    std::fs::write(&pid_file, std::process::id().to_string())
        .map_err(|e| ToolError::io(&pid_file, e))?;
    let out = work.path().join("out");
    std::fs::create_dir(&out).map_err(|e| ToolError::io(&out, e))?;
    let log_path = out.join(BUILD_LOG);
    let tmp = work.path().join("tmp");
    std::fs::create_dir(&tmp).map_err(|e| ToolError::io(&tmp, e))?;

    let started = Instant::now();
    let tree = unpack(work.path(), &orig, &debian)?;
    for edit in EDITS {
        apply_edit_to(&tree, edit)?;
    }

    let jobs = jobs.max(1);
    crate::progress!(
        "amdsev-ovmf: building BaseTools and {PLATFORM} with {jobs} jobs (a few minutes; log: {})",
        log_path.display()
    );
    let mut basetools = edk2_command(&tree, &tmp, "make");
    basetools
        .arg("-C")
        .arg("BaseTools/Source/C")
        .arg(format!("-j{jobs}"));
    long_step::run::<AmdSevOvmfError>(
        &mut basetools,
        "make -C BaseTools/Source/C",
        &log_path,
        None,
    )?;
    let mut platform = edk2_command(&tree, &tmp, "bash");
    platform.arg("-c").arg(build_script(jobs));
    let mut modules = Edk2Modules::default();
    let report = Report {
        label: "amdsev-ovmf: edk2 build",
        started,
        every: PROGRESS_EVERY,
        progress: &mut modules,
    };
    long_step::run::<AmdSevOvmfError>(&mut platform, "edk2 build", &log_path, Some(report))?;

    let fv_dir = tree.join(BUILT_FV_DIR);
    let built = fv_dir.join(BUILT_FD);
    if !built.is_file() {
        return Err(AmdSevOvmfError::Missing(built));
    }
    // The firmware volumes before compression hold every string the firmware carries.
    for entry in std::fs::read_dir(&fv_dir).map_err(|e| ToolError::io(&fv_dir, e))? {
        let path = entry.map_err(|e| ToolError::io(&fv_dir, e))?.path();
        if matches!(path.extension().and_then(|e| e.to_str()), Some("Fv" | "fd")) {
            check_no_path::<AmdSevOvmfError>(&path, work.path())?;
        }
    }
    let facts = check_firmware(&built)?;
    let actual = sha256_file(&built)?;
    if actual != expected {
        let kept = cache.join(format!("amdsev-ovmf-{key}.rejected"));
        let _ = std::fs::remove_dir_all(&kept);
        std::fs::copy(&built, out.join(OVMF_FILE)).map_err(|e| ToolError::io(&built, e))?;
        std::fs::rename(&out, &kept).map_err(|e| ToolError::io(&kept, e))?;
        return Err(AmdSevOvmfError::NotReproduced {
            expected,
            actual,
            kept: kept.join(OVMF_FILE),
            pinned: PINNED_TOOLCHAIN.join("\n"),
            toolchain: toolchain.summary(),
        });
    }

    std::fs::copy(&built, out.join(OVMF_FILE)).map_err(|e| ToolError::io(&built, e))?;
    if let Err(e) = std::fs::rename(&out, &dir) {
        // Another build of the same key may have finished first: its result is as good.
        if !cached.is_file() {
            return Err(ToolError::io(&dir, e).into());
        }
    }
    let size = std::fs::metadata(&cached)
        .map_err(|e| ToolError::io(&cached, e))?
        .len();
    crate::progress!(
        "amdsev-ovmf: built in {:.0?}: {} ({}, SHA-256 {actual}, SEV hashes table at {:#x})",
        started.elapsed(),
        cached.display(),
        megabytes(size),
        facts.hashes_table_gpa
    );
    Ok(cached)
}

/// The tools whose versions can change the firmware's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    /// Per tool: the command and its whole version output.
    pub tools: Vec<(String, String)>,
}

/// Where the build and [`toolchain`] find their tools: the distribution's, whatever else the
/// caller's `PATH` has first (a pyenv Python, a compiler in `/usr/local`), so that the toolchain is
/// the one `scripts/setup.sh` installs.
pub const BUILD_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// What [`toolchain`] asks: the compiler and the binutils that link and convert (via GenFw) the
/// images, the assembler, the ACPI compiler, and Python, which runs edk2's build.
const TOOLS: &[(&str, &str)] = &[
    ("gcc", "--version"),
    ("ld", "--version"),
    ("nasm", "-v"),
    ("iasl", "-v"),
    ("python3", "--version"),
];

impl Toolchain {
    /// One line per tool: the first line of its output with a digit in it.
    pub fn summary(&self) -> String {
        self.tools
            .iter()
            .map(|(_, output)| version_summary(output))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn key_text(&self) -> String {
        self.tools
            .iter()
            .map(|(tool, output)| format!("{tool}\n{}\n", output.trim()))
            .collect()
    }
}

fn version_summary(output: &str) -> &str {
    let mut lines = output.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.clone().next().unwrap_or_default();
    lines
        .find(|line| line.chars().any(|c| c.is_ascii_digit()))
        .unwrap_or(first)
}

/// The versions of the tools in [`TOOLS`].
pub fn toolchain() -> Result<Toolchain, AmdSevOvmfError> {
    let mut tools = Vec::new();
    for (tool, arg) in TOOLS {
        let text = crate::util::tool_version(
            Command::new(tool)
                .arg(arg)
                .env_clear()
                .env("PATH", BUILD_PATH),
            &format!("{tool} {arg} (see scripts/setup.sh for the firmware's build tools)"),
        )?;
        tools.push((format!("{tool} {arg}"), text));
    }
    Ok(Toolchain { tools })
}

/// Names a build: the pinned source, the recipe (arguments, edits, [`RECIPE_VERSION`]) and the
/// toolchain's versions.
pub fn cache_key(pin: &EdkSourcePin, edits: &[Edit], toolchain: &str) -> String {
    let mut text = format!(
        "appliance amdsev-ovmf recipe {RECIPE_VERSION}\nsource {} {}\norig {} {}\ndebian {} {}\n\
         source_date_epoch {}\nbuild {}\ntoolchain\n{toolchain}\nedits\n",
        pin.package,
        pin.version,
        pin.orig.name,
        pin.orig.sha256,
        pin.debian.name,
        pin.debian.sha256,
        pin.source_date_epoch,
        BUILD_ARGS.join(" "),
    );
    for edit in edits {
        text.push_str(&format!(
            "{}\n{}\0{}\0",
            edit.file,
            edit.find.len(),
            edit.find
        ));
        text.push_str(&format!("{}\0{}\0", edit.replace.len(), edit.replace));
    }
    sha256_hex(text.as_bytes())[..16].to_owned()
}

/// `cache/deb-src/<name>`, downloaded if missing and checked against its pin either way.
fn fetch_source(cache: &Path, file: &'static SourceFile) -> Result<PathBuf, AmdSevOvmfError> {
    let dir = cache.join("deb-src");
    let path = dir.join(file.name);
    let url = file.url(DEBIAN_MIRROR);
    if !path.exists() {
        std::fs::create_dir_all(&dir).map_err(|e| ToolError::io(&dir, e))?;
        crate::progress!("amdsev-ovmf: downloading {url} ({})", megabytes(file.size));
        // Into a temporary name first: a download cut short or not the pinned file never sits
        // under the final name.
        let partial = dir.join(format!("{}.part", file.name));
        let status = Command::new("curl")
            .args(["--fail", "--silent", "--show-error", "--location"])
            .args(["--retry", "3", "--connect-timeout", "30"])
            .arg("--output")
            .arg(&partial)
            .arg(&url)
            .stdin(Stdio::null())
            .status();
        let download_error = |reason: String| AmdSevOvmfError::Download {
            file,
            dir: dir.clone(),
            reason,
        };
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => {
                let _ = std::fs::remove_file(&partial);
                return Err(download_error(format!("curl {status}")));
            }
            Err(e) => return Err(download_error(format!("cannot run curl: {e}"))),
        }
        if let Err(e) = check_source(&partial, file) {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, &path).map_err(|e| ToolError::io(&path, e))?;
        return Ok(path);
    }
    check_source(&path, file)?;
    Ok(path)
}

/// `path` must have `file`'s pinned SHA-256.
fn check_source(path: &Path, file: &'static SourceFile) -> Result<(), AmdSevOvmfError> {
    let actual = sha256_file(path)?;
    if actual != file.sha256 {
        return Err(AmdSevOvmfError::HashMismatch {
            path: path.to_owned(),
            file,
            actual,
        });
    }
    Ok(())
}

/// Unpacks the source package into `work/<tree>` and applies Debian's patch series.
fn unpack(work: &Path, orig: &Path, debian: &Path) -> Result<PathBuf, AmdSevOvmfError> {
    crate::progress!(
        "amdsev-ovmf: unpacking {} {} and applying Debian's patches",
        SOURCE_PIN.package,
        SOURCE_PIN.version
    );
    crate::util::run(
        Command::new("tar")
            .arg("-xJf")
            .arg(orig)
            .arg("-C")
            .arg(work)
            .arg("--no-same-owner"),
        "tar -xJf (unpacking the edk2 source)",
    )?;
    let tree = work.join(SOURCE_PIN.tree);
    crate::util::run(
        Command::new("tar")
            .arg("-xJf")
            .arg(debian)
            .arg("-C")
            .arg(&tree)
            .arg("--no-same-owner"),
        "tar -xJf (unpacking Debian's edk2 packaging)",
    )?;
    let series_path = tree.join("debian/patches/series");
    let series =
        std::fs::read_to_string(&series_path).map_err(|e| ToolError::io(&series_path, e))?;
    for patch in patch_series(&series) {
        let patch_path = tree.join("debian/patches").join(patch);
        if !patch_path.is_file() {
            return Err(AmdSevOvmfError::Missing(patch_path));
        }
        // dpkg-source's options: exact context, no backups, no rejects, no questions.
        crate::util::run(
            Command::new("patch")
                .args(["-p1", "-s", "-t", "-F", "0", "-N", "-u", "-E"])
                .args(["--no-backup-if-mismatch", "--reject-file=-", "-i"])
                .arg(&patch_path)
                .current_dir(&tree)
                .stdin(Stdio::null()),
            &format!("patch -p1 < debian/patches/{patch}"),
        )?;
    }
    Ok(tree)
}

/// The patch names of a quilt `series` file, in order (comments and blank lines skipped).
pub fn patch_series(series: &str) -> Vec<&str> {
    series
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(|line| line.split_whitespace().next().unwrap_or(line))
        .collect()
}

/// `text` with `edit` applied; the count of matches if it is not exactly one.
pub fn apply_edit(text: &str, edit: &Edit) -> Result<String, usize> {
    let crlf = text.contains("\r\n");
    let endings = |s: &str| {
        if crlf {
            s.replace('\n', "\r\n")
        } else {
            s.to_owned()
        }
    };
    let find = endings(edit.find);
    let count = text.matches(&find).count();
    if count != 1 {
        return Err(count);
    }
    Ok(text.replacen(&find, &endings(edit.replace), 1))
}

fn apply_edit_to(tree: &Path, edit: &'static Edit) -> Result<(), AmdSevOvmfError> {
    let path = tree.join(edit.file);
    let text = std::fs::read_to_string(&path).map_err(|e| ToolError::io(&path, e))?;
    let edited = apply_edit(&text, edit).map_err(|count| AmdSevOvmfError::Edit {
        path: path.clone(),
        find: edit.find,
        count,
    })?;
    std::fs::write(&path, edited).map_err(|e| ToolError::io(&path, e))?;
    Ok(())
}

/// The shell script that sets up edk2's environment and builds the platform.
fn build_script(jobs: usize) -> String {
    format!(
        "set -e\n. ./edksetup.sh BaseTools\nbuild -n {jobs} {}\n",
        BUILD_ARGS.join(" ")
    )
}

/// `program` in `tree` with a cleared environment: the system's tools ([`BUILD_PATH`]), and what
/// makes the build independent of the machine's locale, time zone, clock and Python's hash seed.
fn edk2_command(tree: &Path, tmp: &Path, program: &str) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", BUILD_PATH)
        .env("HOME", tree)
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .env(
            "SOURCE_DATE_EPOCH",
            SOURCE_PIN.source_date_epoch.to_string(),
        )
        .env("PYTHONHASHSEED", "0")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHON_COMMAND", "python3")
        .env("WORKSPACE", tree)
        // The compiler's temporary files (LTO's among them) go with the tree.
        .env("TMPDIR", tmp)
        .current_dir(tree);
    command
}

/// How often the edk2 build says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// From edk2's build output: how many modules it has started (`Building ... <inf> [X64]`) and
/// the last one's file name.
#[derive(Debug, Default)]
pub struct Edk2Modules {
    count: usize,
    last: String,
}

impl Progress for Edk2Modules {
    fn line(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("Building ... ") {
            self.count += 1;
            let inf = rest.split_whitespace().next().unwrap_or(rest);
            self.last = inf.rsplit('/').next().unwrap_or(inf).to_owned();
        }
    }

    fn summary(&self) -> String {
        format!("{} modules (last: {})", self.count, self.last)
    }
}

/// What [`check_firmware`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareFacts {
    /// Where QEMU writes the kernel hashes (`kernel-hashes=on`).
    pub hashes_table_gpa: u64,
    /// The SNP metadata sections: (GPA, size, type).
    pub sections: Vec<(u32, u32, SnpSection)>,
}

/// A SNP metadata section's type (the `sev` crate's `SectionType`, comparable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnpSection {
    SecMemory,
    Secrets,
    Cpuid,
    SvsmCaa,
    KernelHashes,
}

impl fmt::Display for SnpSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SnpSection::SecMemory => "SNP_SEC_MEM",
            SnpSection::Secrets => "SNP_SECRETS",
            SnpSection::Cpuid => "CPUID",
            SnpSection::SvsmCaa => "SVSM_CAA",
            SnpSection::KernelHashes => "SNP_KERNEL_HASHES",
        })
    }
}

impl From<SectionType> for SnpSection {
    fn from(section: SectionType) -> Self {
        match section {
            SectionType::SnpSecMemory => SnpSection::SecMemory,
            SectionType::SnpSecrets => SnpSection::Secrets,
            SectionType::Cpuid => SnpSection::Cpuid,
            SectionType::SvsmCaa => SnpSection::SvsmCaa,
            SectionType::SnpKernelHashes => SnpSection::KernelHashes,
        }
    }
}

/// Checks that `path` is a firmware the SNP launch digest of measured direct boot can be computed
/// for, as the `sev` crate reads it: the OVMF GUIDed table with the SEV hashes table's address,
/// and SNP metadata with a kernel-hashes section.
pub fn check_firmware(path: &Path) -> Result<FirmwareFacts, AmdSevOvmfError> {
    let not_amdsev = |reason: String| AmdSevOvmfError::NotAmdSev {
        path: path.to_owned(),
        reason,
    };
    // The OVMF table's footer ends 32 bytes before the end of the file.
    let size = std::fs::metadata(path)
        .map_err(|e| ToolError::io(path, e))?
        .len();
    if size < 64 {
        return Err(not_amdsev(format!("{size} bytes are too few")));
    }
    // The parser indexes without checking lengths: a file too short for its tables panics.
    let ovmf = std::panic::catch_unwind(|| OVMF::new(path.to_owned()))
        .map_err(|_| not_amdsev("the OVMF table or SEV metadata is truncated".into()))?
        .map_err(|e| not_amdsev(e.to_string()))?;
    if !ovmf.is_sev_hashes_table_supported() {
        return Err(not_amdsev(
            "no SEV hashes table (GUID 7255371f-3a3b-4b04-927b-1da6efa8d454)".into(),
        ));
    }
    let hashes_table_gpa = ovmf
        .sev_hashes_table_gpa()
        .map_err(|e| not_amdsev(e.to_string()))?;
    let sections: Vec<_> = ovmf
        .metadata_items()
        .iter()
        .map(|item| (item.gpa, item.size, SnpSection::from(item.section_type)))
        .collect();
    if !sections
        .iter()
        .any(|(_, _, kind)| *kind == SnpSection::KernelHashes)
    {
        return Err(not_amdsev(
            "no SNP_KERNEL_HASHES section in the SNP metadata".into(),
        ));
    }
    Ok(FirmwareFacts {
        hashes_table_gpa,
        sections,
    })
}

/// Temporary build directories: `cache/.amdsev-ovmf-XXXXXX/`, each with the builder's PID.
const WORK_PREFIX: &str = ".amdsev-ovmf-";
const PID_FILE: &str = "builder.pid";

/// Removes the temporary directories of builds whose process is gone (killed before it could
/// clean up: a tree and its build take about 650 MB). Best effort.
fn remove_stale_work_dirs(cache: &Path) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_work_dir = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(WORK_PREFIX));
        if is_work_dir && is_stale(&path) {
            crate::progress!(
                "amdsev-ovmf: removing {} (left by an interrupted build)",
                path.display()
            );
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// A work directory is stale if the process that made it no longer runs. One without a PID file
/// may be a build that has just started: it is kept.
fn is_stale(work: &Path) -> bool {
    let Ok(pid) = std::fs::read_to_string(work.join(PID_FILE)) else {
        return false;
    };
    match pid.trim().parse::<u32>() {
        Ok(pid) => !Path::new("/proc").join(pid.to_string()).exists(),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_the_pinned_tdvfs() {
        assert_eq!(SOURCE_PIN.version, super::super::TDVF_PIN.deb.version);
        assert_eq!(
            SOURCE_PIN.orig.url(DEBIAN_MIRROR),
            "http://deb.debian.org/debian/pool/main/e/edk2/edk2_2025.02.orig.tar.xz"
        );
        assert_eq!(
            SOURCE_PIN.debian.url("http://mirror.example/debian/"),
            "http://mirror.example/debian/pool/main/e/edk2/edk2_2025.02-8+deb13u1.debian.tar.xz"
        );
    }

    #[test]
    fn the_pinned_hash_is_a_sha256() {
        for hash in [
            EXPECTED_SHA256,
            SOURCE_PIN.orig.sha256,
            SOURCE_PIN.debian.sha256,
        ] {
            assert_eq!(hash.len(), 64, "{hash}");
            assert!(hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
    }

    /// The changelog's date, `Sat, 08 Nov 2025 11:06:17 -0700`.
    #[test]
    fn source_date_epoch_is_the_changelog_date() {
        // Days from 1970-01-01 to 2025-11-08 (proleptic Gregorian, Howard Hinnant's algorithm).
        let (y, m, d) = (2025i64, 11i64, 8i64);
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let utc = days * 86_400 + 11 * 3600 + 6 * 60 + 17 + 7 * 3600;
        assert_eq!(SOURCE_PIN.source_date_epoch, utc as u64);
    }

    fn edit(find: &'static str, replace: &'static str) -> Edit {
        Edit {
            file: "f",
            find,
            replace,
            why: "",
        }
    }

    #[test]
    fn an_edit_applies_once_and_keeps_crlf() {
        let text = "a\r\nPREBUILD = x\r\nb\r\n";
        assert_eq!(
            apply_edit(text, &edit("PREBUILD = x\n", "")).unwrap(),
            "a\r\nb\r\n"
        );
        assert_eq!(
            apply_edit("a\nb\nc\n", &edit("b\n", "B\nB2\n")).unwrap(),
            "a\nB\nB2\nc\n"
        );
    }

    #[test]
    fn an_edit_that_does_not_match_once_is_refused() {
        assert_eq!(apply_edit("a\nb\n", &edit("c\n", "")), Err(0));
        assert_eq!(apply_edit("b\nb\n", &edit("b\n", "")), Err(2));
        // A line must match whole, line end included.
        assert_eq!(apply_edit("a\r\nbc\r\n", &edit("b\n", "")), Err(0));
    }

    #[test]
    fn every_edit_is_distinct_and_explained() {
        for (i, e) in EDITS.iter().enumerate() {
            assert!(!e.why.is_empty() && !e.find.is_empty(), "{e:?}");
            assert!(e.find.ends_with('\n'), "whole lines: {e:?}");
            assert!(e.replace.is_empty() || e.replace.ends_with('\n'), "{e:?}");
            assert!(!EDITS[..i].contains(e), "twice: {e:?}");
        }
        // Grub is out of both the platform and the flash layout.
        let grub: Vec<_> = EDITS
            .iter()
            .filter(|e| e.find.contains("Grub") && !e.replace.contains("Grub"))
            .map(|e| e.file)
            .collect();
        assert_eq!(
            grub,
            [
                "OvmfPkg/AmdSev/AmdSevX64.dsc",
                "OvmfPkg/AmdSev/AmdSevX64.dsc",
                "OvmfPkg/AmdSev/AmdSevX64.fdf"
            ]
        );
    }

    #[test]
    fn the_edits_apply_to_sources_shaped_like_edk2s() {
        // The lines the edits look for, in CRLF files as edk2 ships them.
        let dsc =
            "[Defines]\r\n  FLASH_DEFINITION               = OvmfPkg/AmdSev/AmdSevX64.fdf\r\n  \
                   PREBUILD                       = sh OvmfPkg/AmdSev/Grub/grub.sh\r\n\r\n\
                   [Components]\r\n  OvmfPkg/AmdSev/SecretDxe/SecretDxe.inf\r\n  \
                   OvmfPkg/AmdSev/Grub/Grub.inf\r\n\r\n";
        let mut text = dsc.to_owned();
        for e in EDITS.iter().filter(|e| e.file.ends_with(".dsc")) {
            text = apply_edit(&text, e).unwrap();
        }
        assert!(!text.contains("Grub"), "{text}");
        assert!(text.contains("  OvmfPkg/AmdSev/SecretDxe/SecretDxe.inf\r\n\r\n"));
    }

    #[test]
    fn the_cache_key_follows_every_pin() {
        let key = cache_key(&SOURCE_PIN, EDITS, "gcc 12");
        assert_eq!(key.len(), 16);
        assert_eq!(key, cache_key(&SOURCE_PIN, EDITS, "gcc 12"), "stable");
        assert_ne!(key, cache_key(&SOURCE_PIN, EDITS, "gcc 13"));
        assert_ne!(key, cache_key(&SOURCE_PIN, &EDITS[1..], "gcc 12"));
        let mut pin = SOURCE_PIN.clone();
        pin.orig.sha256 = "00";
        assert_ne!(key, cache_key(&pin, EDITS, "gcc 12"));
        let mut pin = SOURCE_PIN.clone();
        pin.debian.sha256 = "00";
        assert_ne!(key, cache_key(&pin, EDITS, "gcc 12"));
        let mut pin = SOURCE_PIN.clone();
        pin.version = "2025.02-9";
        assert_ne!(key, cache_key(&pin, EDITS, "gcc 12"));
        let mut pin = SOURCE_PIN.clone();
        pin.source_date_epoch += 1;
        assert_ne!(key, cache_key(&pin, EDITS, "gcc 12"));
        let mut edits = EDITS.to_vec();
        edits[0].replace = "\n";
        assert_ne!(key, cache_key(&SOURCE_PIN, &edits, "gcc 12"));
    }

    static FAKE: SourceFile = SourceFile {
        name: "edk2_fake.orig.tar.xz",
        // SHA-256 of "tarball".
        sha256: "db4b4d0d1cb480bf9aeea253771c00febe627f236765fa37d6a5614f079a3aa0",
        size: 7,
    };

    #[test]
    fn a_tampered_source_file_is_refused() {
        assert_eq!(crate::util::sha256_hex(b"tarball"), FAKE.sha256);
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("deb-src");
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join(FAKE.name);
        std::fs::write(&path, b"tarball").unwrap();
        // Present and right: used as it is, nothing downloaded.
        assert_eq!(fetch_source(cache.path(), &FAKE).unwrap(), path);

        std::fs::write(&path, b"tarbalL").unwrap();
        let error = fetch_source(cache.path(), &FAKE).unwrap_err();
        assert!(
            matches!(&error, AmdSevOvmfError::HashMismatch { file, .. } if file.sha256 == FAKE.sha256),
            "{error}"
        );
        let message = error.to_string();
        for part in [
            FAKE.sha256,
            FAKE.name,
            "by hand",
            &path.display().to_string(),
        ] {
            assert!(message.contains(part), "{message}");
        }
        assert!(path.exists(), "a file put there by hand is not deleted");
    }

    #[test]
    fn the_series_is_read_in_order() {
        assert_eq!(
            patch_series("a.diff\n# comment\n\nb.patch -p1\n  c.patch # why\n"),
            ["a.diff", "b.patch", "c.patch"]
        );
    }

    #[test]
    fn edk2_modules_are_counted_and_the_last_named() {
        let mut modules = Edk2Modules::default();
        assert_eq!(modules.summary(), "0 modules (last: )");
        for line in [
            "Processing meta-data ...... done!",
            "Building ... /w/MdePkg/Library/BaseLib/BaseLib.inf [X64]",
            "\"gcc\" -c x.c",
            "Building ... /w/OvmfPkg/Sec/SecMain.inf [X64]",
        ] {
            modules.line(line);
        }
        assert_eq!(modules.summary(), "2 modules (last: SecMain.inf)");
    }

    #[test]
    fn version_summaries_are_the_lines_with_numbers() {
        let toolchain = Toolchain {
            tools: vec![
                ("iasl -v".into(), "\nIntel ACPI Component Architecture\nASL+ Optimizing Compiler/Disassembler version 20200925\nCopyright (c) 2000 - 2020 Intel Corporation\n".into()),
                ("gcc --version".into(), "gcc (Debian 12.2.0-14+deb12u1) 12.2.0\nCopyright (C) 2022\n".into()),
            ],
        };
        assert_eq!(
            toolchain.summary(),
            "ASL+ Optimizing Compiler/Disassembler version 20200925\n\
             gcc (Debian 12.2.0-14+deb12u1) 12.2.0"
        );
    }

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name)
    }

    /// The `sev` crate's AmdSev OVMF test file (the end of an AmdSevX64 build).
    #[test]
    fn an_amdsev_firmware_has_the_hashes_table_and_snp_metadata() {
        let facts = check_firmware(&testdata("ovmf_AmdSev_suffix.bin")).unwrap();
        assert!(facts.hashes_table_gpa > 0);
        for kind in [
            SnpSection::SecMemory,
            SnpSection::Secrets,
            SnpSection::Cpuid,
            SnpSection::KernelHashes,
        ] {
            assert!(
                facts.sections.iter().any(|(_, _, k)| *k == kind),
                "{kind} missing: {facts:?}"
            );
        }
    }

    #[test]
    fn other_files_are_not_amdsev_firmware() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("OVMF.fd");
        for bytes in [&b""[..], &[0xffu8; 4096][..]] {
            std::fs::write(&file, bytes).unwrap();
            assert!(matches!(
                check_firmware(&file),
                Err(AmdSevOvmfError::NotAmdSev { .. })
            ));
        }
    }

    #[test]
    fn a_build_path_in_a_firmware_volume_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("DXEFV.Fv");
        std::fs::write(&file, b"\0\0/cache/.amdsev-ovmf-0123/edk2/MdePkg/x.c\0").unwrap();
        assert!(check_no_path::<AmdSevOvmfError>(&file, Path::new("/elsewhere")).is_ok());
        assert!(matches!(
            check_no_path::<AmdSevOvmfError>(&file, Path::new("/cache/.amdsev-ovmf-0123")),
            Err(AmdSevOvmfError::PathLeak(_))
        ));
    }

    #[test]
    fn only_work_dirs_of_dead_builders_are_stale() {
        let dir = tempfile::tempdir().unwrap();
        let mine = dir.path().join(".amdsev-ovmf-mine");
        let dead = dir.path().join(".amdsev-ovmf-dead");
        let fresh = dir.path().join(".amdsev-ovmf-fresh");
        let other = dir.path().join("amdsev-ovmf-0123456789abcdef");
        for d in [&mine, &dead, &fresh, &other] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(mine.join(PID_FILE), std::process::id().to_string()).unwrap();
        // Above the kernel's PID limit (2^22): no such process.
        std::fs::write(dead.join(PID_FILE), "4194305").unwrap();
        std::fs::write(other.join(PID_FILE), "4194305").unwrap();
        remove_stale_work_dirs(dir.path());
        assert!(mine.exists() && fresh.exists() && other.exists());
        assert!(!dead.exists());
    }

    #[test]
    fn edk2_commands_run_in_a_cleared_environment() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = edk2_command(dir.path(), dir.path(), "sh");
        let output = env.args(["-c", "env"]).output().unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(
            text.contains("PYTHONHASHSEED=0\n") && text.contains("TZ=UTC\n"),
            "{text}"
        );
        assert!(
            !text.contains("CARGO"),
            "the caller's environment leaked: {text}"
        );
    }
}
