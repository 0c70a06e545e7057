//! The bundle's UEFI part (`image --format …`): the UKI with its own command line (the root
//! partition by `PARTUUID=`), the disks in their containers ([`crate::disk`]), and the manifest's
//! `uefi` section with the predicted measurements ([`crate::measure::uefi`]).

use std::path::Path;

use sha2::{Sha256, Sha384};

use crate::disk::{self, Container};
use crate::manifest::{Uefi, Uki};
use crate::util::{megabytes, sha256_hex};
use crate::{BuildError, Options, ROOT_DISK_FILE};

/// The root disk's command-line words for the UEFI disk: found by its partition's GUID.
pub fn root_words(root: &crate::root_disk::RootDisk) -> Vec<String> {
    let guid = disk::root_partition_guid(&root.verity.root_hash);
    root.cmdline_for(&format!("PARTUUID={guid}"))
}

/// Builds the UKI and the disks when `options.formats` asks for any; `root_words` are the root
/// disk's words ([`root_words`]), `None` without a root disk.
pub fn build(
    options: &Options,
    kernel: &Path,
    root_words: Option<Vec<String>>,
    root_hash: Option<&str>,
    epoch: u32,
) -> Result<Option<Uefi>, BuildError> {
    if options.formats.is_empty() {
        return Ok(None);
    }
    let (Some(words), Some(root_hash)) = (root_words, root_hash) else {
        return Err(BuildError::Config(
            "a UEFI disk (--format) needs the root disk (--root disk)".into(),
        ));
    };
    let started = std::time::Instant::now();
    let stub = disk::fetch_stub(&options.cache).map_err(disk::DiskError::from)?;
    let cmdline = crate::cmdline(options, words);
    crate::progress!(
        "uefi: UKI ({} stub + kernel + command line) and disks: {}",
        disk::STUB_PIN.deb.version,
        options
            .formats
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let built = disk::build(&disk::Inputs {
        out: &options.out,
        stub: &stub,
        kernel,
        cmdline: &cmdline,
        root_disk: &options.out.join(ROOT_DISK_FILE),
        root_hash,
        epoch,
        containers: &options.formats,
        size_unit: disk::DISK_SIZE_UNIT,
    })?;
    let uki_256 = disk::authenticode::<Sha256>(&built.uki)?;
    let uki_384 = disk::authenticode::<Sha384>(&built.uki)?;
    let kernel_256 = disk::authenticode::<Sha256>(&built.kernel)?;
    let kernel_384 = disk::authenticode::<Sha384>(&built.kernel)?;
    let stub_sections =
        crate::measure::uefi::stub_sections(&built.uki).map_err(disk::DiskError::Authenticode)?;
    let predictions = crate::measure::uefi::predictions(&crate::measure::uefi::Inputs {
        uki_authenticode_sha256: &uki_256,
        uki_authenticode_sha384: &uki_384,
        kernel_authenticode_sha256: &kernel_256,
        kernel_authenticode_sha384: &kernel_384,
        gpt_event: &built.gpt_event,
        cmdline: &cmdline,
        stub_sections: &stub_sections,
    });
    for (container, part) in &built.disks {
        crate::progress!(
            "uefi: {} {} ({})",
            container.name(),
            part.file,
            megabytes(part.size)
        );
    }
    crate::progress!(
        "uefi: UKI {}, disk {} in {:.1} s",
        megabytes(built.uki.len() as u64),
        megabytes(built.size),
        started.elapsed().as_secs_f64()
    );
    let pin = &disk::STUB_PIN.deb;
    Ok(Some(Uefi {
        uki: Uki {
            path: disk::UKI_PATH.into(),
            size: built.uki.len() as u64,
            sha256: sha256_hex(&built.uki),
            authenticode_sha256: hex::encode(uki_256),
            authenticode_sha384: hex::encode(uki_384),
            cmdline,
            stub: format!(
                "Debian {} {} ({}, .deb SHA-256 {})",
                pin.package,
                pin.version,
                disk::STUB_PIN.file,
                pin.sha256
            ),
        },
        disk: built
            .disks
            .into_iter()
            .map(|(c, part)| (c.name().to_owned(), part))
            .collect(),
        predictions,
    }))
}

/// Parses `raw,gcp` (and repeated `--format`) into containers.
pub fn parse_formats(values: &[String]) -> Result<Vec<Container>, String> {
    use clap::ValueEnum;
    let mut out = Vec::new();
    for value in values.iter().flat_map(|v| v.split(',')) {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        out.push(
            Container::from_str(value, true)
                .map_err(|_| format!("unknown disk format {value:?}: raw, gcp, azure or aws"))?,
        );
    }
    out.sort();
    out.dedup();
    Ok(out)
}
