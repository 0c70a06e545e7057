//! Loading the kernel modules the image carries, in the order the image lists them (dependencies
//! first: the `image` tool resolves them from each module's `depends=`).
//!
//! The image carries Debian's signed modules decompressed (the kernel checks the signature); a
//! compressed module (`.ko.xz`, `.ko.zst`, `.ko.gz`) is handed to the kernel to decompress itself
//! (`CONFIG_MODULE_DECOMPRESS`, `MODULE_INIT_COMPRESSED_FILE`).

use std::ffi::CString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};

/// `MODULE_INIT_COMPRESSED_FILE` from `<linux/module.h>` (not in libc/nix yet): the file is
/// compressed and the kernel decompresses it.
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("cannot read the module list {path}: {source}")]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What happened to one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Loaded,
    /// Built in or loaded before.
    AlreadyPresent,
    /// The module has no hardware to drive here (`ENODEV`/`ENXIO`), e.g. `sev-guest` outside an
    /// SNP guest: expected, not an error.
    NoDevice,
    Failed(String),
}

/// The module paths in a list file: one absolute path per line; blank lines and `#` comments are
/// ignored.
pub fn parse_list(text: &str) -> Vec<PathBuf> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(PathBuf::from)
        .collect()
}

/// Loads every module in the list at `list`. A missing list means the image carries no modules.
/// A module that fails to load is logged; later steps fail if they needed it.
pub fn load_listed(list: &Path) -> Result<Vec<(PathBuf, Outcome)>, ModuleError> {
    let text = match std::fs::read_to_string(list) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(
                "init: no module list at {}: no modules to load",
                list.display()
            );
            return Ok(Vec::new());
        }
        Err(source) => {
            return Err(ModuleError::List {
                path: list.to_owned(),
                source,
            })
        }
    };
    let started = Instant::now();
    let outcomes: Vec<_> = parse_list(&text)
        .into_iter()
        .map(|path| {
            let outcome = load(&path);
            let name = module_name(&path);
            match &outcome {
                Outcome::Loaded => tracing::debug!(module = name, "init: module loaded"),
                Outcome::AlreadyPresent => tracing::debug!(module = name, "init: module present"),
                Outcome::NoDevice => {
                    tracing::info!(module = name, "init: module has no device here")
                }
                Outcome::Failed(e) => tracing::warn!(module = name, "init: module failed: {e}"),
            }
            (path, outcome)
        })
        .collect();
    let loaded = outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::Loaded)
        .map(|(p, _)| module_name(p))
        .collect::<Vec<_>>();
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "init: loaded {} of {} modules: {}",
        loaded.len(),
        outcomes.len(),
        loaded.join(" ")
    );
    Ok(outcomes)
}

/// Loads one module file.
pub fn load(path: &Path) -> Outcome {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) => return Outcome::Failed(format!("open {}: {e}", path.display())),
    };
    let flags = if is_compressed(path) {
        ModuleInitFlags::from_bits_retain(MODULE_INIT_COMPRESSED_FILE)
    } else {
        ModuleInitFlags::empty()
    };
    let no_params = CString::default();
    match finit_module(&file, &no_params, flags) {
        Ok(()) => Outcome::Loaded,
        Err(Errno::EEXIST) => Outcome::AlreadyPresent,
        Err(Errno::ENODEV | Errno::ENXIO) => Outcome::NoDevice,
        Err(e) => Outcome::Failed(e.desc().to_owned()),
    }
}

fn is_compressed(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("xz" | "zst" | "gz")
    )
}

/// `virtio_net` for `.../virtio_net.ko.xz`.
pub fn module_name(path: &Path) -> &str {
    let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("?");
    file.split_once(".ko").map_or(file, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_skips_comments_and_blank_lines_and_keeps_order() {
        let list =
            "# generated\n/lib/modules/k/failover.ko.xz\n\n  /lib/modules/k/virtio_net.ko.xz  \n";
        assert_eq!(
            parse_list(list),
            [
                PathBuf::from("/lib/modules/k/failover.ko.xz"),
                PathBuf::from("/lib/modules/k/virtio_net.ko.xz"),
            ]
        );
    }

    #[test]
    fn names_and_compression_come_from_the_file_name() {
        let p = Path::new("/lib/modules/6.12/kernel/drivers/virt/coco/sev-guest/sev-guest.ko.xz");
        assert_eq!(module_name(p), "sev-guest");
        assert!(is_compressed(p));
        assert!(!is_compressed(Path::new("/m/evdev.ko")));
        assert_eq!(module_name(Path::new("/m/evdev.ko")), "evdev");
    }

    #[test]
    fn a_missing_module_file_is_a_failure_not_a_panic() {
        let outcome = load(Path::new("/nonexistent/module.ko.xz"));
        assert!(
            matches!(outcome, Outcome::Failed(ref e) if e.contains("open")),
            "{outcome:?}"
        );
    }
}
