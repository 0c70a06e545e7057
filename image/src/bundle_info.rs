//! What the manifest says about the bundle's origin and firmware: the commit and epoch, and the
//! firmware each platform's measurements assume.

use std::path::Path;
use std::process::Command;

use crate::manifest::{Firmware, FirmwareSpec, Source};
use crate::{measure, BuildError, SNP_FIRMWARE_FILE, TDX_FIRMWARE_FILE};

pub(crate) fn firmware(
    snp: Option<&measure::SnpParams>,
    tdx: Option<&measure::TdxParams>,
) -> Result<Firmware, BuildError> {
    Ok(Firmware {
        local: "QEMU's qboot or SeaBIOS with direct kernel boot (qemu/run); not measured".into(),
        snp: match snp {
            Some(params) => params.firmware_spec(SNP_FIRMWARE_FILE)?,
            None => FirmwareSpec {
                file: None,
                sha256: None,
                note: "OVMF built from OvmfPkg/AmdSev/AmdSevX64.dsc; none (--no-snp)".into(),
            },
        },
        tdx: match tdx {
            Some(params) => params.firmware_spec(TDX_FIRMWARE_FILE)?,
            None => FirmwareSpec {
                file: None,
                sha256: None,
                note: "the TDX host's TDVF (OVMF); none (--no-tdx)".into(),
            },
        },
    })
}

/// Commit, dirtiness and the epoch every file's mtime is set to.
pub(crate) fn source_info(workspace: &Path, epoch: Option<u32>) -> Result<Source, BuildError> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(workspace)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "HEAD"]);
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let epoch = match epoch {
        Some(epoch) => epoch,
        None => match initramfs::source_date_epoch()? {
            Some(epoch) => epoch,
            None => git(&["log", "-1", "--format=%ct"])
                .and_then(|t| initramfs::parse_epoch(&t).ok())
                .ok_or_else(|| BuildError::NoEpoch(workspace.to_owned()))?,
        },
    };
    Ok(Source {
        commit,
        dirty,
        source_date_epoch: epoch,
    })
}
