//! The appliance's state disk: where the runner keeps its sealed worker records across reboots.
//!
//! The state disk is the virtio disk whose serial is [`SERIAL`] (`sw-state`; QEMU:
//! `-device virtio-blk-pci,drive=…,serial=sw-state`, which `qemu/run` adds for `SW_STATE_DISK`).
//! Only that disk is ever opened: any other disk the host attaches is left alone. It must hold an
//! ext4 file system on the whole device (no partition table); the guest has no `mkfs`, so the
//! host formats it. It is mounted `nodev,nosuid,noexec,noatime,errors=remount-ro` on
//! [`MOUNT_POINT`] and the runner keeps its state in [`STATE_DIR`].
//!
//! Anything else is not fatal: no such disk, two of them, an empty or non-ext4 disk, a mount
//! error, a read-only file system — init logs why and the appliance runs stateless (workers are
//! not kept across reboots).
//!
//! # Trust
//!
//! The host formats the disk and can rewrite it at any time. The records on it are sealed (see
//! `crate::state`): the host can neither read nor change them unnoticed, only delete them or roll
//! the whole disk back. But the file system itself — superblock, journal, inodes, directories —
//! is host-controlled input parsed by the kernel's ext4 driver (journal replay at mount included).
//! A driver bug reachable from crafted metadata would be a way into the guest kernel; the ext4
//! driver is widely fuzzed, but this is attack surface a stateless appliance does not have.
//! `errors=remount-ro` overrides whatever error behaviour the superblock asks for (the host could
//! otherwise set `errors=panic` and turn any inconsistency into a kernel panic), and
//! `nodev,nosuid,noexec` keep device nodes, set-id bits and executables on the disk meaningless.
//!
//! At power-off ([`release`], called by `power::power_off`) the file system is synced and
//! unmounted (or, if something still holds it, remounted read-only), so the next boot mounts a
//! clean file system with no journal to replay.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{access, AccessFlags};

/// The virtio serial that marks the state disk (at most 20 bytes for virtio-blk).
pub const SERIAL: &str = "sw-state";
/// Where the state disk is mounted.
pub const MOUNT_POINT: &str = "/var/lib/runner";
/// The runner's state directory on the state disk (`--state-dir`).
pub const STATE_DIR: &str = "/var/lib/runner/state";
/// The only file system type the state disk may hold.
pub const FSTYPE: &str = "ext4";
/// Mount flags: nothing on the host's disk is a device, set-id or executable; no atime writes.
pub const FLAGS: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOATIME);
/// Overrides the superblock's error behaviour (which the host chooses): never panic.
pub const DATA: &str = "errors=remount-ro";

/// How long to wait for devtmpfs to create the disk's `/dev` node.
const NODE_WAIT: Duration = Duration::from_secs(2);

/// The mounted state disk, for [`release`] at power-off.
static MOUNTED: Mutex<Option<PathBuf>> = Mutex::new(None);

/// What init found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// The state disk is mounted; the runner keeps its records in `state_dir`.
    Disk { device: PathBuf, state_dir: PathBuf },
    /// No usable state disk, and why: the appliance runs stateless.
    Stateless(Stateless),
}

/// Why there is no state disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stateless {
    #[error("no virtio disk with serial {SERIAL:?} is attached")]
    NoDisk,
    #[error("more than one virtio disk has serial {SERIAL:?} ({0}): using none of them")]
    Ambiguous(String),
    #[error("{0} has no device node (devtmpfs did not create it)")]
    NoNode(PathBuf),
    #[error("cannot read {device}: {reason}")]
    Unreadable { device: PathBuf, reason: String },
    #[error(
        "{0} is blank (never formatted): the host formats the state disk (mkfs.ext4 on the whole disk)"
    )]
    Blank(PathBuf),
    #[error("{0} holds no ext4 file system (it must be ext4 on the whole disk, made by the host)")]
    NotExt4(PathBuf),
    #[error("cannot mount {device} (ext4) on {MOUNT_POINT}: {errno}")]
    Mount { device: PathBuf, errno: Errno },
    #[error("{dir} on the state disk is not writable: {reason}")]
    NotWritable { dir: PathBuf, reason: String },
}

/// What the first bytes of a disk say about its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// An ext2/3/4 superblock (magic `0xEF53`): the ext4 driver mounts all three.
    Ext,
    /// Only zeros: never formatted.
    Blank,
    Other,
}

/// Offset of the ext superblock, and of its magic within it.
const SUPERBLOCK: usize = 1024;
const MAGIC_OFFSET: usize = 0x38;
const EXT_MAGIC: u16 = 0xEF53;
/// Bytes [`probe`] reads: up to the end of the first superblock.
pub const PROBE_BYTES: usize = 2048;

/// Classifies a disk by its first [`PROBE_BYTES`] bytes.
pub fn probe(head: &[u8]) -> Content {
    let magic = head
        .get(SUPERBLOCK + MAGIC_OFFSET..SUPERBLOCK + MAGIC_OFFSET + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]));
    if magic == Some(EXT_MAGIC) {
        Content::Ext
    } else if head.iter().all(|&b| b == 0) {
        Content::Blank
    } else {
        Content::Other
    }
}

/// The virtio disks (`vd*`) under `sys_block` (`/sys/block`) whose serial is [`SERIAL`], sorted.
pub fn state_disks(sys_block: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(sys_block) else {
        return Vec::new();
    };
    let mut disks: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("vd"))
        .filter(|name| {
            std::fs::read(sys_block.join(name).join("serial")).is_ok_and(|serial| {
                let serial = String::from_utf8_lossy(&serial);
                serial.trim_matches(|c: char| c.is_whitespace() || c == '\0') == SERIAL
            })
        })
        .collect();
    disks.sort();
    disks
}

/// Finds the state disk, checks it holds ext4, mounts it on [`MOUNT_POINT`] and makes
/// [`STATE_DIR`]. Never fails: anything wrong is the reason to run stateless.
pub fn prepare() -> Storage {
    let started = Instant::now();
    let storage = match find_and_mount() {
        Ok((device, state_dir)) => Storage::Disk { device, state_dir },
        Err(reason) => Storage::Stateless(reason),
    };
    if let Storage::Disk { device, state_dir } = &storage {
        tracing::info!(
            device = %device.display(),
            state_dir = %state_dir.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "init: state disk (serial {SERIAL}) mounted on {MOUNT_POINT}: workers are kept across reboots"
        );
    }
    storage
}

fn find_and_mount() -> Result<(PathBuf, PathBuf), Stateless> {
    let disks = state_disks(Path::new("/sys/block"));
    let name = match disks.as_slice() {
        [] => return Err(Stateless::NoDisk),
        [one] => one,
        many => return Err(Stateless::Ambiguous(many.join(", "))),
    };
    let device = Path::new("/dev").join(name);
    wait_for_node(&device)?;
    let mut head = Vec::with_capacity(PROBE_BYTES);
    File::open(&device)
        .and_then(|f| f.take(PROBE_BYTES as u64).read_to_end(&mut head))
        .map_err(|e| Stateless::Unreadable {
            device: device.clone(),
            reason: e.to_string(),
        })?;
    match probe(&head) {
        Content::Ext => {}
        Content::Blank => return Err(Stateless::Blank(device)),
        Content::Other => return Err(Stateless::NotExt4(device)),
    }
    let mount_error = |errno| Stateless::Mount {
        device: device.clone(),
        errno,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(MOUNT_POINT)
        .map_err(|e| mount_error(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    mount(
        Some(device.as_path()),
        MOUNT_POINT,
        Some(FSTYPE),
        FLAGS,
        Some(DATA),
    )
    .map_err(mount_error)?;
    *MOUNTED.lock().unwrap_or_else(|e| e.into_inner()) = Some(PathBuf::from(MOUNT_POINT));

    let state_dir = PathBuf::from(STATE_DIR);
    let writable = match std::fs::DirBuilder::new().mode(0o700).create(&state_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.to_string()),
    }
    .and_then(|()| access(&state_dir, AccessFlags::W_OK).map_err(|e| e.to_string()));
    if let Err(reason) = writable {
        // Mounted read-only (errors on it) or broken: do not keep it mounted half-usable.
        release();
        return Err(Stateless::NotWritable {
            dir: state_dir,
            reason,
        });
    }
    Ok((device, state_dir))
}

/// devtmpfs creates the node when the driver adds the disk; give it a moment.
fn wait_for_node(device: &Path) -> Result<(), Stateless> {
    let deadline = Instant::now() + NODE_WAIT;
    loop {
        if std::fs::metadata(device).is_ok_and(|m| m.file_type().is_block_device()) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Stateless::NoNode(device.to_owned()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Syncs and unmounts the state disk if it is mounted; if it is still in use, remounts it
/// read-only instead. Logs the outcome; called on every power-off path.
pub fn release() {
    let Some(target) = MOUNTED.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    nix::unistd::sync();
    match umount2(&target, MntFlags::empty()) {
        Ok(()) => {
            tracing::info!(
                "init: state disk unmounted cleanly from {}",
                target.display()
            );
        }
        Err(errno) => {
            let remount = mount(
                None::<&str>,
                &target,
                None::<&str>,
                FLAGS | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            );
            match remount {
                Ok(()) => tracing::warn!(
                    "init: state disk still in use ({errno}): synced and remounted read-only on {}",
                    target.display()
                ),
                Err(e) => tracing::warn!(
                    "init: state disk still in use ({errno}) and not remountable read-only ({e}): \
                     synced; its journal is replayed at the next mount"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superblock_with_magic(magic: u16) -> Vec<u8> {
        let mut head = vec![0u8; PROBE_BYTES];
        head[SUPERBLOCK + MAGIC_OFFSET..SUPERBLOCK + MAGIC_OFFSET + 2]
            .copy_from_slice(&magic.to_le_bytes());
        head
    }

    #[test]
    fn the_probe_tells_ext_from_blank_from_anything_else() {
        assert_eq!(probe(&superblock_with_magic(EXT_MAGIC)), Content::Ext);
        assert_eq!(probe(&vec![0u8; PROBE_BYTES]), Content::Blank);
        assert_eq!(probe(&superblock_with_magic(0x4d44)), Content::Other);
        // A partition table (MBR signature) is not a file system on the whole disk.
        let mut mbr = vec![0u8; PROBE_BYTES];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        assert_eq!(probe(&mbr), Content::Other);
        // A disk shorter than a superblock.
        assert_eq!(probe(&[]), Content::Blank);
        assert_eq!(probe(&[1, 2, 3]), Content::Other);
    }

    #[test]
    fn only_virtio_disks_with_the_state_serial_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let add = |name: &str, serial: Option<&[u8]>| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(&path).unwrap();
            if let Some(serial) = serial {
                std::fs::write(path.join("serial"), serial).unwrap();
            }
        };
        add("vda", Some(b"data-disk\n"));
        add("vdb", Some(b"sw-state\n"));
        add("sda", Some(b"sw-state\n")); // not virtio: never touched
        add("vdc", None); // no serial
        add("vdd", Some(b"sw-state-2\n"));
        add("loop0", None);
        assert_eq!(state_disks(dir.path()), ["vdb"]);

        // Padding the kernel may leave in the 20-byte virtio id.
        add("vde", Some(b"sw-state\0\0\0\n"));
        assert_eq!(state_disks(dir.path()), ["vdb", "vde"]);
        assert!(state_disks(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn the_host_disk_cannot_hold_devices_set_id_programs_or_executables() {
        assert!(FLAGS.contains(MsFlags::MS_NODEV | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC));
        assert!(DATA.split(',').any(|o| o == "errors=remount-ro"));
        assert!(Path::new(STATE_DIR).starts_with(MOUNT_POINT));
    }

    #[test]
    fn release_without_a_mounted_disk_does_nothing() {
        release();
    }
}
