//! The root disk: the image's root file system as a read-only erofs image, with a dm-verity hash
//! tree appended, attached to the appliance as its first virtio disk.
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
//! Both files are made by well-kept tools rather than our code: `mkfs.erofs` (erofs-utils) and
//! `veritysetup format` (cryptsetup), run so that their output depends only on the tree:
//! one fixed time and UUID, root-owned files, no extended attributes, no verity superblock, and a
//! salt derived from the erofs image itself.

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

/// How `mkfs.erofs` stores file data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErofsCompression {
    /// Plain blocks: nothing to decompress at boot, the largest disk.
    None,
    /// LZ4HC at this level (erofs decompresses LZ4 in place, cheaply).
    Lz4hc(u32),
}

impl ErofsCompression {
    pub fn describe(&self) -> String {
        match self {
            ErofsCompression::None => "erofs, uncompressed".into(),
            ErofsCompression::Lz4hc(level) => format!("erofs, lz4hc level {level}"),
        }
    }
}

impl std::str::FromStr for ErofsCompression {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "none" => Ok(ErofsCompression::None),
            "lz4hc" => Ok(ErofsCompression::Lz4hc(12)),
            other => match other.strip_prefix("lz4hc,").map(str::parse::<u32>) {
                Some(Ok(level)) if (1..=12).contains(&level) => Ok(ErofsCompression::Lz4hc(level)),
                _ => Err(format!(
                    "{other:?}: expected none, lz4hc or lz4hc,LEVEL (1-12)"
                )),
            },
        }
    }
}

/// A root disk written by [`build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDisk {
    pub path: PathBuf,
    /// Bytes of erofs (a whole number of blocks); the hash tree follows.
    pub data_size: u64,
    /// The whole disk: erofs then the hash tree.
    pub size: u64,
    pub verity: Verity,
}

/// The dm-verity parameters the kernel needs (all of them go on the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verity {
    /// Data blocks covered (the erofs image).
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
    #[error("mkfs.erofs wrote {size} bytes, not a whole number of {BLOCK_SIZE}-byte blocks")]
    Unaligned { size: u64 },
    #[error("veritysetup printed no root hash: {0}")]
    NoRootHash(String),
}

/// Makes the root disk at `out` from the directory tree `tree`: erofs, then the verity tree.
pub fn build(
    tree: &Path,
    out: &Path,
    epoch: u32,
    compression: ErofsCompression,
) -> Result<RootDisk, RootDiskError> {
    let mkfs = find_tool("mkfs.erofs", "erofs-utils")?;
    let veritysetup = find_tool("veritysetup", "cryptsetup-bin")?;
    let mut command = Command::new(mkfs);
    command
        .arg("--quiet")
        .arg(format!("-T{epoch}"))
        .arg("-U00000000-0000-0000-0000-000000000000")
        .arg("--all-root")
        // No extended attributes: nothing in the tree needs any, and the build host's must not
        // leak in.
        .arg("-x-1");
    if let ErofsCompression::Lz4hc(level) = compression {
        command.arg(format!("-zlz4hc,{level}"));
    }
    command.arg(out).arg(tree);
    let _ = std::fs::remove_file(out);
    run(&mut command, "mkfs.erofs")?;
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
        let v = &self.verity;
        // <name>,<uuid>,<minor>,<flags>,<table>: one verity target over the data sectors.
        // Table: <start> <sectors> verity <version> <data dev> <hash dev> <data block size>
        // <hash block size> <data blocks> <hash start block> <algorithm> <root hash> <salt>
        // <#options> <options>.
        let table = format!(
            "0 {sectors} verity 1 {ROOT_DEVICE} {ROOT_DEVICE} {BLOCK_SIZE} {BLOCK_SIZE} \
             {blocks} {start} {alg} {root} {salt} 1 panic_on_corruption",
            sectors = self.data_size / 512,
            blocks = v.data_blocks,
            start = v.hash_start_block,
            alg = v.algorithm,
            root = v.root_hash,
            salt = v.salt,
        );
        vec![
            format!("dm-mod.create=\"sw-root,,,ro,{table}\""),
            format!("dm-mod.waitfor={ROOT_DEVICE}"),
            format!("root={MAPPED_ROOT}"),
            "rootfstype=erofs".into(),
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
    fn compression_names_parse_and_bad_ones_are_refused() {
        assert_eq!("none".parse(), Ok(ErofsCompression::None));
        assert_eq!("lz4hc".parse(), Ok(ErofsCompression::Lz4hc(12)));
        assert_eq!("lz4hc,9".parse(), Ok(ErofsCompression::Lz4hc(9)));
        for bad in ["zstd", "lz4hc,0", "lz4hc,13", "lz4hc,x", ""] {
            assert!(bad.parse::<ErofsCompression>().is_err(), "{bad}");
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

    /// A small tree made twice gives the same disk; the command line carries what dm-verity
    /// needs; changing one byte of a file changes the root hash.
    #[test]
    fn the_same_tree_gives_the_same_disk_and_any_change_a_new_root_hash() {
        if find_tool("mkfs.erofs", "").is_err() || find_tool("veritysetup", "").is_err() {
            eprintln!(
                "skipped: mkfs.erofs or veritysetup missing (scripts/setup.sh installs them)"
            );
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
                    "etc/hosts",
                    0o644,
                    initramfs::Contents::Bytes(vec![b'h'; 10_000]),
                )
                .unwrap();
            archive.add_dir("tmp", 0o1777).unwrap();
            archive.write_tree(dir.path()).unwrap();
            dir
        };
        let out = tempfile::tempdir().unwrap();
        let first = build(
            tree(b"one").path(),
            &out.path().join("a.img"),
            1,
            ErofsCompression::None,
        )
        .unwrap();
        let second = build(
            tree(b"one").path(),
            &out.path().join("b.img"),
            1,
            ErofsCompression::None,
        )
        .unwrap();
        let other = build(
            tree(b"two").path(),
            &out.path().join("c.img"),
            1,
            ErofsCompression::None,
        )
        .unwrap();

        assert_eq!(
            std::fs::read(&first.path).unwrap(),
            std::fs::read(&second.path).unwrap()
        );
        assert_eq!(first.verity, second.verity);
        assert_ne!(first.verity.root_hash, other.verity.root_hash);
        assert_eq!(first.data_size % BLOCK_SIZE, 0);
        assert!(
            first.size > first.data_size,
            "the hash tree follows the data"
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
    }
}
