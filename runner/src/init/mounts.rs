//! The file systems init mounts: the kernel's views (`/proc`, `/sys`, `/dev`), memory-backed
//! scratch space (`/run`, `/tmp`, `/dev/shm`), then configfs and securityfs. The root file system
//! is the image's read-only root disk (or, with `--root initramfs`, the initramfs itself).

use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;

#[derive(Debug, thiserror::Error)]
#[error("cannot mount {fstype} on {target}: {source}")]
pub struct MountError {
    pub fstype: &'static str,
    pub target: &'static str,
    pub source: Errno,
}

/// One mount: `fstype` on `target` with `flags` and file-system `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mount {
    pub fstype: &'static str,
    pub target: &'static str,
    pub flags: MsFlags,
    pub data: &'static str,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// In order: each target exists in the initramfs or under an earlier mount.
pub const EARLY: &[Mount] = &[
    Mount {
        fstype: "proc",
        target: "/proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
    },
    Mount {
        fstype: "sysfs",
        target: "/sys",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
    },
    Mount {
        fstype: "devtmpfs",
        target: "/dev",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: "mode=0755",
    },
    Mount {
        fstype: "tmpfs",
        target: "/dev/shm",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: "mode=1777",
    },
    Mount {
        fstype: "tmpfs",
        target: "/run",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: "mode=0755",
    },
    Mount {
        fstype: "tmpfs",
        target: "/tmp",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: "mode=1777",
    },
];

/// Where configfs goes; the kernel creates the directory when configfs is loaded.
pub const CONFIGFS: Mount = Mount {
    fstype: "configfs",
    target: "/sys/kernel/config",
    flags: NOSUID_NODEV_NOEXEC,
    data: "",
};

/// Where securityfs goes: the TPM's event log is `tpm0/binary_bios_measurements` below it
/// (`attest::boot_log`). The kernel creates the directory when it has securityfs.
pub const SECURITYFS: Mount = Mount {
    fstype: "securityfs",
    target: "/sys/kernel/security",
    flags: NOSUID_NODEV_NOEXEC,
    data: "",
};

/// Mounts [`EARLY`], creating missing mount points. Runs before logging is set up: the first error
/// is returned for init to report once it can.
pub fn mount_early() -> Result<(), MountError> {
    for m in EARLY {
        do_mount(m)?;
    }
    Ok(())
}

/// Mounts configfs if the kernel has it (built in or loaded as a module); logs the outcome.
pub fn mount_configfs() {
    if !Path::new(CONFIGFS.target).is_dir() {
        tracing::warn!("init: no configfs in this kernel: TSM attestation reports unavailable");
        return;
    }
    match do_mount(&CONFIGFS) {
        Ok(()) => {
            let tsm = Path::new(CONFIGFS.target).join("tsm/report").is_dir();
            tracing::info!(
                tsm_report = tsm,
                "init: configfs mounted on {}",
                CONFIGFS.target
            );
        }
        Err(e) => tracing::warn!("init: {e}"),
    }
}

/// Mounts securityfs if the kernel has it; logs the outcome.
pub fn mount_securityfs() {
    if !Path::new(SECURITYFS.target).is_dir() {
        tracing::info!("init: no securityfs in this kernel: no TPM event log");
        return;
    }
    match do_mount(&SECURITYFS) {
        Ok(()) => tracing::info!("init: securityfs mounted on {}", SECURITYFS.target),
        Err(e) => tracing::warn!("init: {e}"),
    }
}

fn do_mount(m: &Mount) -> Result<(), MountError> {
    let error = |source| MountError {
        fstype: m.fstype,
        target: m.target,
        source,
    };
    match nix::unistd::mkdir(m.target, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(error(e)),
    }
    let data = (!m.data.is_empty()).then_some(m.data);
    match mount(Some(m.fstype), m.target, Some(m.fstype), m.flags, data) {
        // The kernel mounted it already (devtmpfs on /dev when it mounts a root disk itself,
        // CONFIG_DEVTMPFS_MOUNT): the same file system cannot be mounted twice on one place.
        // Keep that mount, with our flags (nosuid, noexec, ...).
        Err(Errno::EBUSY) => mount(
            None::<&str>,
            m.target,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | m.flags,
            None::<&str>,
        )
        .map_err(error),
        other => other.map_err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn securityfs_is_where_the_tpm_event_log_is_read() {
        assert_eq!(
            format!("{}/tpm0/binary_bios_measurements", SECURITYFS.target),
            attest::boot_log::TPM_LOG
        );
        assert!(Path::new(SECURITYFS.target).starts_with("/sys"));
    }

    #[test]
    fn each_mount_point_lies_under_an_earlier_mount_or_the_root() {
        for (i, m) in EARLY.iter().enumerate() {
            let parent = Path::new(m.target).parent().unwrap();
            assert!(
                parent == Path::new("/")
                    || EARLY[..i].iter().any(|e| Path::new(e.target) == parent),
                "{} needs {} mounted first",
                m.target,
                parent.display()
            );
        }
    }

    #[test]
    fn kernel_views_are_not_executable() {
        for m in EARLY
            .iter()
            .filter(|m| ["/proc", "/sys"].contains(&m.target))
            .chain([&CONFIGFS, &SECURITYFS])
        {
            assert!(
                m.flags.contains(MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID),
                "{m:?}"
            );
        }
    }
}
