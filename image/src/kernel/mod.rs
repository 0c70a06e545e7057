//! The kernel: a pinned Debian package, fetched with `apt-get download`, checked against its
//! SHA-256, unpacked once into the cache; and the modules the image carries, with their
//! dependencies resolved from each module's own `depends=` (Debian's package has no
//! `modules.dep`: depmod runs at install time).
//!
//! [`minimal`] builds the other kernel: from Debian's pinned `linux-source` package, with
//! everything the appliance needs built in and no modules.

pub mod minimal;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::deb;
use crate::util::ToolError;

/// A Debian kernel package, pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPin {
    pub deb: deb::DebPin,
    /// `uname -r`: names `boot/vmlinuz-<release>` and `lib/modules/<release>/`.
    pub release: &'static str,
}

/// Linux 6.12 "cloud" flavour from Debian 12's security suite (the same 6.12 line that
/// bookworm-backports and trixie carry). Built in: the TDX and SEV guest support, virtio PCI,
/// the serial console, devtmpfs, zstd initramfs, ext4 (with jbd2 and crc32c). Modules we load:
/// configfs, the configfs-tsm report interface (`tsm`), `sev-guest`, `tdx-guest`, `virtio_net`,
/// `virtio_blk` (the state disk), `virtio-rng`, vsock, the ACPI power button and evdev.
pub const PIN: KernelPin = KernelPin {
    deb: deb::DebPin {
        package: "linux-image-6.12.117+deb12-cloud-amd64-unsigned",
        version: "6.12.117-1~deb12u1",
        arch: "amd64",
        sha256: "670b2688bcf94c24693f7c7e1fc9776ff2e202ff15553a2614f79415d48a6607",
        suite: "bookworm-security",
    },
    release: "6.12.117+deb12-cloud-amd64",
};

/// The modules the appliance loads (their dependencies are added before them).
pub const MODULES: &[&str] = &[
    // Attestation: /sys/kernel/config/tsm/report, and the SNP/TDX guest devices behind it.
    "configfs",
    "tsm",
    "sev-guest",
    "tdx-guest",
    // Network and entropy from the VMM; the state disk (ext4 itself is built in).
    "virtio_net",
    "virtio_blk",
    "virtio-rng",
    // vsock: a host channel that needs no IP configuration.
    "vmw_vsock_virtio_transport",
    // The ACPI power button as an input device, for graceful shutdown.
    "button",
    "evdev",
];

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Deb(#[from] crate::deb::DebError),
    #[error("the kernel package has no {0}")]
    Missing(PathBuf),
    #[error("cannot read module list {path}: {source}")]
    ModuleList {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("module {0} is neither built in nor in the kernel package")]
    UnknownModule(String),
    #[error("cannot read module {path}: {reason}")]
    ModuleFile { path: PathBuf, reason: String },
    #[error(transparent)]
    Build(#[from] crate::long_step::StepFailed),
    #[error(
        "the kernel configuration did not take what image/kernel/appliance.config asks for \
         (a missing dependency, or a renamed option): {}",
        .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    ConfigDidNotStick(Vec<minimal::ConfigMismatch>),
    #[error("kernel: {0}")]
    PathLeak(#[from] crate::util::PathLeak),
}

/// The unpacked kernel package.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub pin: KernelPin,
    /// Root of the unpacked package.
    pub root: PathBuf,
    pub deb_sha256: String,
}

/// A module file to carry: its path below `lib/modules/<release>/` and where it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    pub name: String,
    pub relative: String,
    pub source: PathBuf,
}

impl ModuleFile {
    /// The module as the kernel loads it without decompressing: its path below
    /// `lib/modules/<release>/` without the `.xz`, and the decompressed (still signed) ELF.
    /// Decompressing here saves the guest an in-kernel xz pass per module at every boot, which
    /// under TCG costs most of the module loading time.
    pub fn uncompressed(&self) -> Result<(String, Vec<u8>), KernelError> {
        let raw = std::fs::read(&self.source).map_err(|e| KernelError::ModuleFile {
            path: self.source.clone(),
            reason: e.to_string(),
        })?;
        match self.relative.strip_suffix(".xz") {
            Some(relative) => Ok((relative.to_owned(), xz_decompress(&self.source, &raw)?)),
            None => Ok((self.relative.clone(), raw)),
        }
    }
}

fn xz_decompress(path: &Path, raw: &[u8]) -> Result<Vec<u8>, KernelError> {
    let mut out = Vec::new();
    lzma_rs::xz_decompress(&mut &raw[..], &mut out).map_err(|e| KernelError::ModuleFile {
        path: path.to_owned(),
        reason: format!("xz: {e}"),
    })?;
    Ok(out)
}

impl Kernel {
    pub fn vmlinuz(&self) -> PathBuf {
        self.root
            .join("boot")
            .join(format!("vmlinuz-{}", self.pin.release))
    }

    pub fn config(&self) -> PathBuf {
        self.root
            .join("boot")
            .join(format!("config-{}", self.pin.release))
    }

    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(self.pin.release)
    }
}

/// Returns the unpacked kernel: from `deb` if given, else from `cache/debs/` (downloading it with
/// `apt-get download` if missing). The `.deb` must match the pin's SHA-256.
pub fn fetch(pin: &KernelPin, cache: &Path, deb: Option<&Path>) -> Result<Kernel, KernelError> {
    let deb = pin.deb.fetch(cache, deb)?;
    let root = cache.join(format!("kernel-{}", &pin.deb.sha256[..16]));
    if !root.join("boot").is_dir() {
        crate::progress!("kernel: unpacking {}", deb.display());
        let staged = deb::unpack(&deb, cache, ".kernel-")?.keep();
        std::fs::rename(&staged, &root).map_err(|e| ToolError::io(&root, e))?;
    }
    let kernel = Kernel {
        pin: pin.clone(),
        root,
        deb_sha256: pin.deb.sha256.to_owned(),
    };
    for path in [kernel.vmlinuz(), kernel.modules_dir()] {
        if !path.exists() {
            return Err(KernelError::Missing(path));
        }
    }
    Ok(kernel)
}

/// `sev-guest` and `sev_guest` are the same module.
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module files for `wanted` and their dependencies, dependencies first, in a deterministic
/// order. Built-in modules are skipped.
pub fn resolve_modules(
    modules_dir: &Path,
    wanted: &[&str],
) -> Result<Vec<ModuleFile>, KernelError> {
    let read = |name: &str| {
        let path = modules_dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| KernelError::ModuleList { path, source })
    };
    let order = read("modules.order")?;
    let builtin = read("modules.builtin")?;
    let builtin: BTreeSet<String> = builtin
        .lines()
        .filter_map(|line| file_module_name(line.trim()))
        .collect();
    let available: Vec<(String, String)> = order
        .lines()
        .map(str::trim)
        .filter_map(|line| Some((file_module_name(line)?, line.to_owned())))
        .collect();
    let mut resolver = Resolver {
        modules_dir,
        builtin: &builtin,
        available: &available,
        done: BTreeSet::new(),
        visiting: BTreeSet::new(),
        out: Vec::new(),
    };
    for name in wanted {
        resolver.visit(&normalize(name))?;
    }
    Ok(resolver.out)
}

/// `kernel/drivers/net/virtio_net.ko` → `virtio_net`.
fn file_module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let (name, _) = file.split_once(".ko")?;
    Some(normalize(name))
}

struct Resolver<'a> {
    modules_dir: &'a Path,
    builtin: &'a BTreeSet<String>,
    available: &'a [(String, String)],
    done: BTreeSet<String>,
    visiting: BTreeSet<String>,
    out: Vec<ModuleFile>,
}

impl Resolver<'_> {
    fn visit(&mut self, name: &str) -> Result<(), KernelError> {
        if self.done.contains(name)
            || self.builtin.contains(name)
            || !self.visiting.insert(name.to_owned())
        {
            return Ok(());
        }
        let relative = self
            .available
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, path)| path.clone())
            .ok_or_else(|| KernelError::UnknownModule(name.to_owned()))?;
        // The package ships `.ko.xz` (CONFIG_MODULE_COMPRESS_XZ); modules.order names `.ko`.
        let (relative, source) = ["xz", "zst", "gz", ""]
            .iter()
            .map(|ext| {
                let rel = if ext.is_empty() {
                    relative.clone()
                } else {
                    format!("{relative}.{ext}")
                };
                let source = self.modules_dir.join(&rel);
                (rel, source)
            })
            .find(|(_, source)| source.is_file())
            .ok_or_else(|| KernelError::Missing(self.modules_dir.join(&relative)))?;
        let mut depends = module_depends(&source)?;
        depends.sort();
        for dependency in depends {
            self.visit(&normalize(&dependency))?;
        }
        self.visiting.remove(name);
        self.done.insert(name.to_owned());
        self.out.push(ModuleFile {
            name: name.to_owned(),
            relative,
            source,
        });
        Ok(())
    }
}

/// The `depends=` of a module file (`.ko` or `.ko.xz`): the NUL-separated `.modinfo` strings.
pub fn module_depends(path: &Path) -> Result<Vec<String>, KernelError> {
    let error = |reason: String| KernelError::ModuleFile {
        path: path.to_owned(),
        reason,
    };
    let mut raw = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut raw))
        .map_err(|e| error(e.to_string()))?;
    let elf = if path.extension().is_some_and(|e| e == "xz") {
        xz_decompress(path, &raw)?
    } else {
        raw
    };
    Ok(modinfo_value(&elf, "depends")
        .map(|value| {
            value
                .split(',')
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default())
}

/// The value of `key=` in a module's `.modinfo` strings (each NUL-terminated and NUL-preceded).
fn modinfo_value<'a>(elf: &'a [u8], key: &str) -> Option<&'a str> {
    let needle = format!("\0{key}=");
    let start = elf
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())?
        + needle.len();
    let end = elf[start..].iter().position(|&b| b == 0)? + start;
    std::str::from_utf8(&elf[start..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb_names_follow_apt() {
        assert_eq!(
            PIN.deb.file_name(),
            "linux-image-6.12.117+deb12-cloud-amd64-unsigned_6.12.117-1~deb12u1_amd64.deb"
        );
    }

    #[test]
    fn modinfo_values_are_found_between_nuls() {
        let elf = b"\x7fELF...\0license=GPL\0depends=net_failover,failover\0name=virtio_net\0";
        assert_eq!(modinfo_value(elf, "depends"), Some("net_failover,failover"));
        assert_eq!(modinfo_value(elf, "name"), Some("virtio_net"));
        assert_eq!(modinfo_value(b"xdepends=a\0", "depends"), None);
    }

    /// A fake `lib/modules/<release>` with uncompressed modules carrying `.modinfo` strings.
    fn fake_modules(dir: &Path) {
        let module = |rel: &str, depends: &str| {
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("\x7fELF\0depends={depends}\0name=x\0")).unwrap();
            rel.to_owned()
        };
        let order = [
            module("kernel/net/core/failover.ko", ""),
            module("kernel/drivers/net/net_failover.ko", "failover"),
            module("kernel/drivers/net/virtio_net.ko", "net_failover"),
            module("kernel/drivers/virt/coco/tsm.ko", "configfs"),
            module("kernel/drivers/virt/coco/sev-guest/sev-guest.ko", "tsm"),
        ];
        std::fs::write(dir.join("modules.order"), order.join("\n") + "\n").unwrap();
        std::fs::write(
            dir.join("modules.builtin"),
            "kernel/fs/configfs/configfs.ko\n",
        )
        .unwrap();
    }

    #[test]
    fn dependencies_come_first_and_builtins_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        fake_modules(dir.path());

        let resolved =
            resolve_modules(dir.path(), &["sev-guest", "virtio_net", "configfs", "tsm"]).unwrap();

        let names: Vec<&str> = resolved.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["tsm", "sev_guest", "failover", "net_failover", "virtio_net"]
        );
        assert_eq!(
            resolved[1].relative,
            "kernel/drivers/virt/coco/sev-guest/sev-guest.ko"
        );
    }

    #[test]
    fn an_unknown_module_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fake_modules(dir.path());
        assert!(matches!(
            resolve_modules(dir.path(), &["nope"]),
            Err(KernelError::UnknownModule(name)) if name == "nope"
        ));
    }
}
