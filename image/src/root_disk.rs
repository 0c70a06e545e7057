//! The root disk: the image's root file system as a read-only squashfs (zstd) or erofs image,
//! with a dm-verity hash tree appended, attached to the appliance as its first virtio disk.
//!
//! Why not the initramfs: the kernel unpacks an initramfs completely before init runs — under
//! QEMU's TCG about 5 s for the 140 MB runner. From a disk, the runner's pages are read (and
//! verified) when first touched, and most of them never are at start-up.
//!
//! Integrity: the disk comes from the host, so the guest kernel checks every block it reads
//! against the verity tree, whose root hash is on the kernel command line — measured with the
//! kernel (SNP `kernel-hashes`, TDX RTMR[2]). A block that does not match panics the kernel
//! (`panic_on_corruption`), which with `panic=-1` powers the VM off: a tampered root never runs.
//!
//! Both files are made by well-kept tools rather than our code: `mksquashfs` (squashfs-tools) or
//! `mkfs.erofs` (erofs-utils), and `veritysetup format` (cryptsetup), run so that their output
//! depends only on the tree: one fixed time (and UUID), root-owned files, no extended
//! attributes, no verity superblock, and a salt derived from the file system image itself.
//!
//! Why squashfs with zstd by default: the runner is 140 MB, and zstd makes the disk a third of
//! that (erofs: uncompressed 144 MB, LZ4HC 89 MB; Debian 12's erofs-utils 1.5 has no zstd, and
//! Linux reads erofs zstd only since 6.10). The kernel decompresses only the blocks the runner
//! touches, straight into the page cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{run, sha256_file, ToolError};

/// The disk's block size and dm-verity's data and hash block size.
pub const BLOCK_SIZE: u64 = 4096;
/// The device the kernel finds the root disk as: the first virtio disk (`qemu/run` attaches it
/// before any other disk). Another disk there fails verification; it cannot be used instead.
pub const ROOT_DEVICE: &str = "/dev/vda";
/// The dm-verity device the kernel mounts as root.
pub const MAPPED_ROOT: &str = "/dev/dm-0";
/// The virtio serial `qemu/run` gives the root disk (for people reading `/sys`; the kernel
/// finds the disk by position, the runner's state disk by its own serial).
pub const ROOT_SERIAL: &str = "sw-root";

/// squashfs's block size: the unit it compresses. 128 KiB (mksquashfs's default) keeps what a
/// page fault decompresses small; 1 MiB gave a 10% smaller disk.
pub const SQUASHFS_BLOCK_SIZE: u32 = 128 * 1024;

/// The root disk's file system and how it stores file data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// erofs with plain blocks: nothing to decompress at boot, the largest disk.
    Erofs,
    /// erofs with LZ4HC at this level (decompressed in place, cheaply).
    ErofsLz4hc(u32),
    /// squashfs with zstd at this level in [`SQUASHFS_BLOCK_SIZE`] blocks: the smallest disk.
    SquashfsZstd(u32),
}

/// The default root disk: squashfs, zstd level 19.
pub const DEFAULT_DISK_FORMAT: DiskFormat = DiskFormat::SquashfsZstd(19);

impl DiskFormat {
    pub fn describe(&self) -> String {
        match self {
            DiskFormat::Erofs => "erofs, uncompressed".into(),
            DiskFormat::ErofsLz4hc(level) => format!("erofs, lz4hc level {level}"),
            DiskFormat::SquashfsZstd(level) => format!(
                "squashfs, zstd level {level}, {} KiB blocks",
                SQUASHFS_BLOCK_SIZE / 1024
            ),
        }
    }

    /// The kernel's name for the file system (`rootfstype=`).
    pub fn fs_type(&self) -> &'static str {
        match self {
            DiskFormat::Erofs | DiskFormat::ErofsLz4hc(_) => "erofs",
            DiskFormat::SquashfsZstd(_) => "squashfs",
        }
    }
}

impl std::fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiskFormat::Erofs => write!(f, "erofs"),
            DiskFormat::ErofsLz4hc(level) => write!(f, "erofs-lz4hc,{level}"),
            DiskFormat::SquashfsZstd(level) => write!(f, "squashfs-zstd,{level}"),
        }
    }
}

impl std::str::FromStr for DiskFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, level) = match text.split_once(',') {
            Some((name, level)) => (name, Some(level)),
            None => (text, None),
        };
        let given = level;
        let level = |default: u32, range: std::ops::RangeInclusive<u32>| match given {
            None => Ok(default),
            Some(level) => level
                .parse::<u32>()
                .ok()
                .filter(|level| range.contains(level))
                .ok_or_else(|| {
                    format!(
                        "{text:?}: the level of {name} is {}-{}",
                        range.start(),
                        range.end()
                    )
                }),
        };
        match name {
            "erofs" if given.is_none() => Ok(DiskFormat::Erofs),
            "erofs-lz4hc" => Ok(DiskFormat::ErofsLz4hc(level(12, 1..=12)?)),
            "squashfs-zstd" => Ok(DiskFormat::SquashfsZstd(level(19, 1..=22)?)),
            _ => Err(format!(
                "{text:?}: expected squashfs-zstd[,LEVEL], erofs-lz4hc[,LEVEL] or erofs"
            )),
        }
    }
}

/// A root disk written by [`build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDisk {
    pub path: PathBuf,
    /// Bytes of file system (a whole number of blocks); the hash tree follows.
    pub data_size: u64,
    /// The whole disk: file system then the hash tree.
    pub size: u64,
    pub format: DiskFormat,
    pub verity: Verity,
}

/// The dm-verity parameters the kernel needs (all of them go on the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verity {
    /// Data blocks covered (the file system).
    pub data_blocks: u64,
    /// Where the hash tree starts, in hash blocks from the start of the disk.
    pub hash_start_block: u64,
    pub algorithm: &'static str,
    /// Hex.
    pub root_hash: String,
    /// Hex.
    pub salt: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RootDiskError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("{0} not found (in PATH, /usr/sbin or /sbin): install {1} (scripts/setup.sh does)")]
    Missing(&'static str, &'static str),
    #[error("the file system is {size} bytes, not a whole number of {BLOCK_SIZE}-byte blocks")]
    Unaligned { size: u64 },
    #[error("veritysetup printed no root hash: {0}")]
    NoRootHash(String),
}

/// Makes the root disk at `out` from the directory tree `tree`: the file system, then the
/// verity tree.
pub fn build(
    tree: &Path,
    out: &Path,
    epoch: u32,
    format: DiskFormat,
) -> Result<RootDisk, RootDiskError> {
    let veritysetup = find_tool("veritysetup", "cryptsetup-bin")?;
    let _ = std::fs::remove_file(out);
    match format {
        DiskFormat::Erofs | DiskFormat::ErofsLz4hc(_) => {
            let mut command = Command::new(find_tool("mkfs.erofs", "erofs-utils")?);
            command
                .arg("--quiet")
                .arg(format!("-T{epoch}"))
                .arg("-U00000000-0000-0000-0000-000000000000")
                .arg("--all-root")
                // No extended attributes: nothing in the tree needs any, and the build host's
                // must not leak in.
                .arg("-x-1");
            if let DiskFormat::ErofsLz4hc(level) = format {
                command.arg(format!("-zlz4hc,{level}"));
            }
            command.arg(out).arg(tree);
            run(&mut command, "mkfs.erofs")?;
        }
        DiskFormat::SquashfsZstd(level) => {
            let mut command = Command::new(find_tool("mksquashfs", "squashfs-tools")?);
            command
                .arg(tree)
                .arg(out)
                .args(["-noappend", "-quiet", "-no-progress"])
                .args(["-comp", "zstd", "-Xcompression-level", &level.to_string()])
                .args(["-b", &SQUASHFS_BLOCK_SIZE.to_string()])
                .args(["-mkfs-time", &epoch.to_string()])
                .args(["-all-time", &epoch.to_string()])
                .args(["-all-root", "-no-xattrs"])
                // No NFS export table: nothing exports the root.
                .arg("-no-exports");
            // mksquashfs pads to 4 KiB by default, which the verity tree needs. Its output does
            // not depend on the number of threads: `-processors 1` and `2` gave the same bytes
            // for the image's tree (checked by hand, squashfs-tools 4.5.1).
            run(&mut command, "mksquashfs")?;
        }
    }
    let data_size = file_len(out)?;
    if data_size == 0 || data_size % BLOCK_SIZE != 0 {
        return Err(RootDiskError::Unaligned { size: data_size });
    }
    // The salt only has to be fixed for a given tree; deriving it from the data keeps it
    // different between images.
    let salt = sha256_file(out)?;
    let output = run(
        Command::new(veritysetup)
            .args(["format", "--no-superblock", "--hash=sha256"])
            .arg(format!("--data-block-size={BLOCK_SIZE}"))
            .arg(format!("--hash-block-size={BLOCK_SIZE}"))
            .arg(format!("--salt={salt}"))
            .arg(format!("--hash-offset={data_size}"))
            .arg(out)
            .arg(out),
        "veritysetup format",
    )?;
    let text = String::from_utf8_lossy(&output.stdout);
    let root_hash =
        parse_root_hash(&text).ok_or_else(|| RootDiskError::NoRootHash(text.trim().into()))?;
    Ok(RootDisk {
        path: out.to_owned(),
        data_size,
        size: file_len(out)?,
        format,
        verity: Verity {
            data_blocks: data_size / BLOCK_SIZE,
            hash_start_block: data_size / BLOCK_SIZE,
            algorithm: "sha256",
            root_hash,
            salt,
        },
    })
}

impl RootDisk {
    /// The kernel command-line words that map the disk through dm-verity and mount it as root,
    /// read-only, with the runner as init.
    pub fn cmdline(&self) -> Vec<String> {
        self.cmdline_for(ROOT_DEVICE)
    }

    /// [`Self::cmdline`] with the disk found as `device` (e.g. `PARTUUID=…` for the root
    /// partition of the UEFI disk: dm-init resolves it and `dm-mod.waitfor` waits for it).
    pub fn cmdline_for(&self, device: &str) -> Vec<String> {
        let v = &self.verity;
        // <name>,<uuid>,<minor>,<flags>,<table>: one verity target over the data sectors.
        // Table: <start> <sectors> verity <version> <data dev> <hash dev> <data block size>
        // <hash block size> <data blocks> <hash start block> <algorithm> <root hash> <salt>
        // <#options> <options>.
        let table = format!(
            "0 {sectors} verity 1 {ROOT_DEVICE} {ROOT_DEVICE} {BLOCK_SIZE} {BLOCK_SIZE} \
             {blocks} {start} {alg} {root} {salt} 1 panic_on_corruption",
            ROOT_DEVICE = device,
            sectors = self.data_size / 512,
            blocks = v.data_blocks,
            start = v.hash_start_block,
            alg = v.algorithm,
            root = v.root_hash,
            salt = v.salt,
        );
        vec![
            format!("dm-mod.create=\"sw-root,,,ro,{table}\""),
            format!("dm-mod.waitfor={device}"),
            format!("root={MAPPED_ROOT}"),
            format!("rootfstype={}", self.format.fs_type()),
            "ro".into(),
            "init=/init".into(),
        ]
    }
}

/// The `Root hash:` line of `veritysetup format`.
fn parse_root_hash(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let hash = line.strip_prefix("Root hash:")?.trim();
        (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| hash.to_ascii_lowercase())
    })
}

fn file_len(path: &Path) -> Result<u64, ToolError> {
    Ok(std::fs::metadata(path)
        .map_err(|e| ToolError::io(path, e))?
        .len())
}

/// `name` from PATH, else from the sbin directories a non-root user's PATH often lacks.
fn find_tool(name: &'static str, package: &'static str) -> Result<PathBuf, RootDiskError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or(RootDiskError::Missing(name, package))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_parse_and_bad_ones_are_refused() {
        assert_eq!("squashfs-zstd".parse(), Ok(DiskFormat::SquashfsZstd(19)));
        assert_eq!("squashfs-zstd,3".parse(), Ok(DiskFormat::SquashfsZstd(3)));
        assert_eq!("erofs".parse(), Ok(DiskFormat::Erofs));
        assert_eq!("erofs-lz4hc".parse(), Ok(DiskFormat::ErofsLz4hc(12)));
        assert_eq!("erofs-lz4hc,9".parse(), Ok(DiskFormat::ErofsLz4hc(9)));
        for bad in [
            "zstd",
            "erofs,1",
            "erofs-lz4hc,0",
            "erofs-lz4hc,13",
            "squashfs-zstd,23",
            "squashfs-zstd,x",
            "",
        ] {
            assert!(bad.parse::<DiskFormat>().is_err(), "{bad}");
        }
        for format in [
            DEFAULT_DISK_FORMAT,
            DiskFormat::Erofs,
            DiskFormat::ErofsLz4hc(7),
        ] {
            assert_eq!(format.to_string().parse(), Ok(format), "{format}");
        }
    }

    #[test]
    fn the_root_hash_is_read_from_veritysetup_output_and_checked() {
        let hash = "2139d6aaebfb9813d9cc0a8e7fe8610b42a0b0cda4dc6d1e0d345be961a670b7";
        let output =
            format!("VERITY header information for x\nSalt: \tab\nRoot hash:      \t{hash}\n");
        assert_eq!(parse_root_hash(&output).as_deref(), Some(hash));
        assert_eq!(parse_root_hash("Root hash: 1234\n"), None);
        assert_eq!(parse_root_hash("Salt: 00\n"), None);
    }

    /// xorshift64: bytes no compressor can shrink.
    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 56) as u8
            })
            .collect()
    }

    /// A small tree made twice gives the same disk, in every format; the command line carries
    /// what dm-verity needs and the file system's type; changing one byte of a file changes the
    /// root hash.
    #[test]
    fn the_same_tree_gives_the_same_disk_and_any_change_a_new_root_hash() {
        let missing: Vec<_> = ["mkfs.erofs", "mksquashfs", "veritysetup"]
            .into_iter()
            .filter(|tool| find_tool(tool, "").is_err())
            .collect();
        if !missing.is_empty() {
            eprintln!("skipped: {missing:?} missing (scripts/setup.sh installs them)");
            return;
        }
        let tree = |contents: &[u8]| {
            let dir = tempfile::tempdir().unwrap();
            let mut archive = initramfs::Archive::new();
            archive
                .add_file("init", 0o755, initramfs::Contents::Bytes(contents.to_vec()))
                .unwrap();
            archive
                .add_file(
                    "etc/noise",
                    0o644,
                    // Incompressible, so that every format needs several blocks (with one,
                    // veritysetup writes no hash block: the root hash is the block's hash).
                    initramfs::Contents::Bytes(noise(100_000)),
                )
                .unwrap();
            archive.add_dir("tmp", 0o1777).unwrap();
            archive.write_tree(dir.path()).unwrap();
            dir
        };
        for format in [
            DEFAULT_DISK_FORMAT,
            DiskFormat::Erofs,
            DiskFormat::ErofsLz4hc(9),
        ] {
            let out = tempfile::tempdir().unwrap();
            let first = build(tree(b"one").path(), &out.path().join("a.img"), 1, format).unwrap();
            let second = build(tree(b"one").path(), &out.path().join("b.img"), 1, format).unwrap();
            let other = build(tree(b"two").path(), &out.path().join("c.img"), 1, format).unwrap();
            let later = build(tree(b"one").path(), &out.path().join("d.img"), 2, format).unwrap();

            assert_eq!(
                std::fs::read(&first.path).unwrap(),
                std::fs::read(&second.path).unwrap(),
                "{format}"
            );
            assert_eq!(first.verity, second.verity, "{format}");
            assert_ne!(first.verity.root_hash, other.verity.root_hash, "{format}");
            assert_ne!(
                first.verity.root_hash, later.verity.root_hash,
                "{format}: the epoch is the files' time"
            );
            assert_eq!(first.data_size % BLOCK_SIZE, 0, "{format}");
            assert!(
                first.size > first.data_size,
                "{format}: the hash tree follows the data"
            );
            assert_eq!(first.verity.hash_start_block * BLOCK_SIZE, first.data_size);

            let words = first.cmdline();
            let create = words
                .iter()
                .find(|w| w.starts_with("dm-mod.create="))
                .unwrap();
            assert!(create.contains(&first.verity.root_hash), "{create}");
            assert!(create.contains(&first.verity.salt), "{create}");
            assert!(
                create.contains(&format!(
                    "0 {} verity 1 /dev/vda /dev/vda",
                    first.data_size / 512
                )),
                "{create}"
            );
            assert!(words.contains(&"root=/dev/dm-0".to_owned()));
            assert!(
                words.contains(&format!("rootfstype={}", format.fs_type())),
                "{words:?}"
            );
        }
    }

    /// The compressed formats are smaller than plain erofs for compressible contents, and the
    /// squashfs image starts with squashfs's magic (the kernel would refuse another file system).
    #[test]
    fn squashfs_is_a_compressed_squashfs() {
        if find_tool("mksquashfs", "").is_err() || find_tool("veritysetup", "").is_err() {
            eprintln!(
                "skipped: mksquashfs or veritysetup missing (scripts/setup.sh installs them)"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut archive = initramfs::Archive::new();
        archive
            .add_file(
                "init",
                0o755,
                initramfs::Contents::Bytes(b"runner ".repeat(100_000)),
            )
            .unwrap();
        archive.write_tree(dir.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let squashfs = build(
            dir.path(),
            &out.path().join("s.img"),
            1,
            DEFAULT_DISK_FORMAT,
        )
        .unwrap();
        let erofs = build(dir.path(), &out.path().join("e.img"), 1, DiskFormat::Erofs).unwrap();
        assert_eq!(&std::fs::read(&squashfs.path).unwrap()[..4], b"hsqs");
        assert!(
            squashfs.data_size * 10 < erofs.data_size,
            "{} vs {}",
            squashfs.data_size,
            erofs.data_size
        );
    }
}
