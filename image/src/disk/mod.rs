//! The appliance as a UEFI-bootable disk, for the clouds (`image --format raw,gcp,azure,aws`):
//!
//! ```text
//! LBA 0        protective MBR
//! LBA 1..33    GPT header and entries
//! 1 MiB        EFI system partition, FAT32, 64 MiB: \EFI\BOOT\BOOTX64.EFI, the UKI ([`uki`])
//! 65 MiB       the root partition: the root disk as it is (squashfs + dm-verity), read-only
//! …            nothing (sparse) up to a whole number of GiB
//! last 33      backup GPT entries and header
//! ```
//!
//! The UKI's command line finds the root partition by its `PARTUUID` (dm-init waits for it), so it
//! boots from virtio-blk, NVMe or SCSI alike. Every GUID is derived from content hashes and the
//! FAT's times are `SOURCE_DATE_EPOCH`, so the disk depends on its inputs only.

pub mod container;
pub mod fat;
pub mod gpt;
pub mod uki;

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::manifest::Part;
use crate::util::{sha256_file, ToolError};

pub use uki::{fetch_stub, UkiError, STUB_PIN};

const MIB: u64 = 1 << 20;
/// The disk's size is a multiple of this: Google wants whole GiB (Azure: 1 MiB).
pub const DISK_SIZE_UNIT: u64 = 1 << 30;
pub const ESP_START: u64 = MIB;
pub const ESP_SIZE: u64 = 64 * MIB;
pub const ROOT_START: u64 = ESP_START + ESP_SIZE;
/// Where the UKI is on the ESP (the removable-media boot path: no boot entry needed).
pub const UKI_PATH: &str = "EFI/BOOT/BOOTX64.EFI";
/// The UKI, also in the bundle (for verifiers: its Authenticode digests are in the manifest).
pub const UKI_FILE: &str = "BOOTX64.EFI";
pub const RAW_FILE: &str = "disk.raw";
pub const GCP_FILE: &str = "disk-gcp.tar.gz";
pub const VHD_FILE: &str = "disk.vhd";
/// GPT attribute bit 60: read-only.
const READ_ONLY: u64 = 1 << 60;

/// A disk container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Container {
    /// The raw disk (QEMU; also AWS's import-snapshot).
    Raw,
    /// Google Compute Engine: `disk.raw` in a sparse GNU tar, gzip'd.
    Gcp,
    /// Azure: a fixed VHD.
    Azure,
    /// AWS: the raw disk (`import-snapshot --disk-container Format=RAW`).
    Aws,
}

impl Container {
    pub fn name(self) -> &'static str {
        match self {
            Container::Raw => "raw",
            Container::Gcp => "gcp",
            Container::Azure => "azure",
            Container::Aws => "aws",
        }
    }

    pub fn file(self) -> &'static str {
        match self {
            Container::Raw | Container::Aws => RAW_FILE,
            Container::Gcp => GCP_FILE,
            Container::Azure => VHD_FILE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("UKI: {0}")]
    Uki(#[from] UkiError),
    #[error("ESP: {0}")]
    Fat(#[from] fat::FatError),
    #[error("the UKI is not a PE image the firmware would hash: {0}")]
    Authenticode(String),
}

/// The root partition's GUID: a function of the root disk's verity root hash, so the UKI's
/// command line can name it before the disk exists.
pub fn root_partition_guid(root_hash: &str) -> gpt::Guid {
    gpt::Guid::from_hash(&Sha256::digest(format!("sw-root partition {root_hash}")).into())
}

/// What [`build`] needs.
pub struct Inputs<'a> {
    pub out: &'a Path,
    pub stub: &'a Path,
    pub kernel: &'a Path,
    /// The UKI's command line (its root disk named by `PARTUUID=`).
    pub cmdline: &'a str,
    pub root_disk: &'a Path,
    pub root_hash: &'a str,
    pub epoch: u32,
    pub containers: &'a [Container],
    /// The disk's size is rounded up to a multiple of this ([`DISK_SIZE_UNIT`]; tests use less).
    pub size_unit: u64,
}

/// What [`build`] made.
pub struct Built {
    pub uki: Vec<u8>,
    /// The kernel's bytes as in `.linux` (the stub loads them with LoadImage).
    pub kernel: Vec<u8>,
    /// The GPT's event data as the firmware logs it (EV_EFI_GPT_EVENT).
    pub gpt_event: Vec<u8>,
    pub size: u64,
    pub disks: Vec<(Container, Part)>,
}

/// Authenticode digest of a PE32+ image with hasher `D`.
pub fn authenticode<D: Digest + Default + sha2::digest::Update>(
    image: &[u8],
) -> Result<Vec<u8>, DiskError> {
    let pe = object::read::pe::PeFile64::parse(image)
        .map_err(|e| DiskError::Authenticode(e.to_string()))?;
    let mut hasher = D::default();
    authenticode::authenticode_digest(&pe, &mut hasher)
        .map_err(|_| DiskError::Authenticode("headers point outside the file".into()))?;
    Ok(hasher.finalize().to_vec())
}

/// Writes the UKI into the bundle and the disk in each container.
pub fn build(inputs: &Inputs<'_>) -> Result<Built, DiskError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| ToolError::io(p, e));
    let kernel = read(inputs.kernel)?;
    let uki = uki::build_uki(&read(inputs.stub)?, inputs.cmdline, &kernel)?;
    authenticode::<Sha256>(&uki)?;
    let uki_path = inputs.out.join(UKI_FILE);
    std::fs::write(&uki_path, &uki).map_err(|e| ToolError::io(&uki_path, e))?;
    let uki_hash: [u8; 32] = Sha256::digest(&uki).into();

    let root_size = std::fs::metadata(inputs.root_disk)
        .map_err(|e| ToolError::io(inputs.root_disk, e))?
        .len();
    let root_blocks = root_size.next_multiple_of(MIB) / gpt::BLOCK;
    let size =
        (ROOT_START + root_blocks * gpt::BLOCK + MIB).next_multiple_of(inputs.size_unit.max(MIB));
    let blocks = size / gpt::BLOCK;
    let serial = u32::from_le_bytes([uki_hash[0], uki_hash[1], uki_hash[2], uki_hash[3]]);
    let esp = fat::fat32(
        ESP_SIZE,
        (ESP_START / gpt::BLOCK) as u32,
        serial,
        "ESP",
        inputs.epoch,
        &[fat::File {
            path: UKI_PATH,
            data: &uki,
        }],
    )?;
    let derived = |what: &str| {
        let mut h = Sha256::new();
        h.update(what.as_bytes());
        h.update(uki_hash);
        h.update(inputs.root_hash.as_bytes());
        gpt::Guid::from_hash(&h.finalize().into())
    };
    let partitions = [
        gpt::Partition {
            type_guid: gpt::ESP_TYPE,
            guid: derived("esp"),
            first: ESP_START / gpt::BLOCK,
            last: (ESP_START + ESP_SIZE) / gpt::BLOCK - 1,
            attributes: 0,
            name: "ESP".into(),
        },
        gpt::Partition {
            type_guid: gpt::ROOT_X86_64_TYPE,
            guid: root_partition_guid(inputs.root_hash),
            first: ROOT_START / gpt::BLOCK,
            last: ROOT_START / gpt::BLOCK + root_blocks - 1,
            attributes: READ_ONLY,
            name: "sw-root".into(),
        },
    ];
    let (head, tail) = gpt::table(blocks, derived("disk"), &partitions);

    let mut made: Vec<(Container, Part)> = Vec::new();
    let mut containers = inputs.containers.to_vec();
    containers.sort();
    containers.dedup();
    let raw_path = inputs.out.join(RAW_FILE);
    let vhd_id = derived("vhd").to_disk();
    let footer = container::vhd_footer(size, inputs.epoch, vhd_id);
    let pieces = Pieces {
        size,
        head: &head,
        esp: &esp,
        root_disk: inputs.root_disk,
        tail: &tail,
    };
    if !containers.is_empty() {
        let regions = pieces.write(&mut create(&raw_path)?, &raw_path)?;
        // One pass over the raw disk gives its hash and the VHD's (the same bytes + the footer).
        let raw_hash = if containers.iter().any(|c| *c != Container::Gcp) {
            sha256_stream(&raw_path)?
        } else {
            Sha256::new()
        };
        let raw_part = Part {
            file: RAW_FILE.into(),
            sha256: hex::encode(raw_hash.clone().finalize()),
            size,
        };
        for container in containers {
            let path = inputs.out.join(container.file());
            let part = match container {
                Container::Raw | Container::Aws => raw_part.clone(),
                Container::Gcp => {
                    let mut raw = File::open(&raw_path).map_err(|e| ToolError::io(&raw_path, e))?;
                    let out = std::io::BufWriter::new(create(&path)?);
                    container::write_gcp_tar_gz(
                        &mut raw,
                        size,
                        &regions,
                        u64::from(inputs.epoch),
                        out,
                    )
                    .map_err(|e| ToolError::io(&path, e))?;
                    Part {
                        file: GCP_FILE.into(),
                        sha256: sha256_file(&path)?,
                        size: std::fs::metadata(&path)
                            .map_err(|e| ToolError::io(&path, e))?
                            .len(),
                    }
                }
                Container::Azure => {
                    let mut file = create(&path)?;
                    pieces.write(&mut file, &path)?;
                    file.write_all(&footer)
                        .map_err(|e| ToolError::io(&path, e))?;
                    let mut hash = raw_hash.clone();
                    hash.update(footer);
                    Part {
                        file: VHD_FILE.into(),
                        sha256: hex::encode(hash.finalize()),
                        size: size + footer.len() as u64,
                    }
                }
            };
            made.push((container, part));
        }
        if !made
            .iter()
            .any(|(c, _)| matches!(c, Container::Raw | Container::Aws))
        {
            std::fs::remove_file(&raw_path).map_err(|e| ToolError::io(&raw_path, e))?;
        }
    }
    Ok(Built {
        gpt_event: gpt::gpt_event_data(&head),
        uki,
        kernel,
        size,
        disks: made,
    })
}

fn create(path: &Path) -> Result<File, ToolError> {
    let _ = std::fs::remove_file(path);
    File::create(path).map_err(|e| ToolError::io(path, e))
}

/// The disk's parts: the partition table's head and tail, the ESP, the root disk.
struct Pieces<'a> {
    size: u64,
    head: &'a [u8],
    esp: &'a [u8],
    root_disk: &'a Path,
    tail: &'a [u8],
}

impl Pieces<'_> {
    /// Writes the non-zero parts at their offsets, leaving holes elsewhere; the file ends at
    /// `size` (the caller may append after it). Returns the data regions (sorted, merged,
    /// 512-byte aligned) for the sparse tar.
    fn write(&self, file: &mut File, path: &Path) -> Result<Vec<(u64, u64)>, ToolError> {
        let io = |e| ToolError::io(path, e);
        let mut regions = Vec::new();
        file.set_len(self.size).map_err(io)?;
        write_sparse(file, 0, self.head, &mut regions).map_err(io)?;
        write_sparse(file, ESP_START, self.esp, &mut regions).map_err(io)?;
        let mut root = File::open(self.root_disk).map_err(|e| ToolError::io(self.root_disk, e))?;
        file.seek(SeekFrom::Start(ROOT_START)).map_err(io)?;
        let copied = std::io::copy(&mut root, file).map_err(io)?;
        push_region(
            &mut regions,
            ROOT_START,
            copied.next_multiple_of(gpt::BLOCK),
        );
        let tail_at = self.size - self.tail.len() as u64;
        write_sparse(file, tail_at, self.tail, &mut regions).map_err(io)?;
        file.seek(SeekFrom::Start(self.size)).map_err(io)?;
        Ok(regions)
    }
}

fn push_region(regions: &mut Vec<(u64, u64)>, offset: u64, len: u64) {
    match regions.last_mut() {
        Some((start, l)) if *start + *l == offset => *l += len,
        _ => regions.push((offset, len)),
    }
}

fn write_sparse(
    file: &mut File,
    offset: u64,
    bytes: &[u8],
    regions: &mut Vec<(u64, u64)>,
) -> std::io::Result<()> {
    for (i, chunk) in bytes.chunks(4096).enumerate() {
        if chunk.iter().any(|&b| b != 0) {
            let at = offset + (i * 4096) as u64;
            file.seek(SeekFrom::Start(at))?;
            file.write_all(chunk)?;
            push_region(regions, at, chunk.len() as u64);
        }
    }
    Ok(())
}

/// SHA-256 state after the whole file (to finish, or to go on with more bytes).
fn sha256_stream(path: &Path) -> Result<Sha256, ToolError> {
    let mut file = File::open(path).map_err(|e| ToolError::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| ToolError::io(path, e))?;
    Ok(hasher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_holds_the_same_disk_with_the_uki_and_the_root_partition() {
        let dir = tempfile::tempdir().unwrap();
        let stub = dir.path().join("stub.efi");
        std::fs::write(&stub, uki::tests::tiny_pe()).unwrap();
        let kernel = dir.path().join("vmlinuz");
        std::fs::write(&kernel, vec![0x4b; 10_000]).unwrap();
        let root = dir.path().join("rootfs.img");
        let root_bytes: Vec<u8> = (0..3 * 4096u32).map(|i| (i % 253) as u8 | 1).collect();
        std::fs::write(&root, &root_bytes).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let root_hash = "ab".repeat(32);
        let built = build(&Inputs {
            out: &out,
            stub: &stub,
            kernel: &kernel,
            cmdline: "console=ttyS0",
            root_disk: &root,
            root_hash: &root_hash,
            epoch: 1_700_000_000,
            containers: &[
                Container::Azure,
                Container::Gcp,
                Container::Raw,
                Container::Aws,
            ],
            size_unit: 16 * MIB,
        })
        .unwrap();
        assert_eq!(
            built.size,
            80 * MIB,
            "65 MiB + the root disk + room, in 16 MiB units"
        );
        let raw = std::fs::read(out.join(RAW_FILE)).unwrap();
        assert_eq!(raw.len() as u64, built.size);
        // The GPT names the root partition by the GUID the command line uses, over the root disk.
        let entry = &raw[1024 + 128..1024 + 256];
        assert_eq!(&entry[16..32], &root_partition_guid(&root_hash).to_disk());
        let first = u64::from_le_bytes(entry[32..40].try_into().unwrap());
        assert_eq!(first * gpt::BLOCK, ROOT_START);
        let at = ROOT_START as usize;
        assert_eq!(&raw[at..at + root_bytes.len()], &root_bytes[..]);
        // The ESP holds the UKI.
        let esp = &raw[ESP_START as usize..(ESP_START + ESP_SIZE) as usize];
        assert_eq!(&esp[82..90], b"FAT32   ");
        let cluster = esp
            .chunks(512)
            .position(|c| c.starts_with(&built.uki[..512]))
            .expect("the UKI's first cluster on the ESP");
        let at = cluster * 512;
        assert_eq!(&esp[at..at + built.uki.len()], &built.uki[..]);
        assert_eq!(std::fs::read(out.join(UKI_FILE)).unwrap(), built.uki);
        // The VHD is the raw disk and its footer; the manifest's hashes are the files'.
        let vhd = std::fs::read(out.join(VHD_FILE)).unwrap();
        assert_eq!(&vhd[..raw.len()], &raw[..]);
        assert_eq!(&vhd[raw.len()..raw.len() + 8], b"conectix");
        let part = |c: Container| &built.disks.iter().find(|(k, _)| *k == c).unwrap().1;
        let mut vhd_hash = Sha256::new();
        vhd_hash.update(&vhd);
        assert_eq!(
            part(Container::Azure).sha256,
            hex::encode(vhd_hash.finalize())
        );
        assert_eq!(part(Container::Azure).size, built.size + 512);
        assert_eq!(part(Container::Aws), part(Container::Raw));
        // Google's tar holds the same disk (GNU tar restores it, where it is installed).
        let status = std::process::Command::new("tar")
            .args(["-xzf", GCP_FILE])
            .current_dir(&out)
            .status();
        if status.is_ok_and(|s| s.success()) {
            assert_eq!(std::fs::read(out.join("disk.raw")).unwrap(), raw);
        }
        // Built again: the same bytes.
        let again = dir.path().join("again");
        std::fs::create_dir(&again).unwrap();
        let rebuilt = build(&Inputs {
            out: &again,
            stub: &stub,
            kernel: &kernel,
            cmdline: "console=ttyS0",
            root_disk: &root,
            root_hash: &root_hash,
            epoch: 1_700_000_000,
            containers: &[Container::Gcp],
            size_unit: 16 * MIB,
        })
        .unwrap();
        assert_eq!(
            rebuilt.disks,
            [(Container::Gcp, part(Container::Gcp).clone())]
        );
        assert!(
            !again.join(RAW_FILE).exists(),
            "no raw disk left when not asked for"
        );
    }
}
