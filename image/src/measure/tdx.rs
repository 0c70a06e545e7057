//! Intel TDX: the expected MRTD and RTMR[1..3] of the image under a pinned TDVF, for an upstream
//! QEMU (>= 10.1, `tdx-guest`) on an upstream KVM host (Linux >= 6.16) with direct kernel boot
//! (`-bios OVMF.fd -kernel [-initrd] -append`, as `qemu/run-tdx` launches it).
//!
//! **MRTD** is what the TDX module hashes while the host builds the TD: QEMU walks the TDVF's
//! metadata sections in order and KVM (`KVM_TDX_INIT_MEM_REGION`) adds each 4 KiB page with
//! TDH.MEM.PAGE.ADD — a 128-byte block `"MEM.PAGE.ADD"` + GPA into the SHA-384 — and, for
//! sections with the MR.EXTEND attribute, right after each page its sixteen 256-byte chunks with
//! TDH.MR.EXTEND — a 128-byte block `"MR.EXTEND"` + GPA, then the chunk. Pages of sections without
//! MR.EXTEND count by address only. It depends on the firmware file alone.
//!
//! **RTMR[1]** and **RTMR[2]** are what the pinned TDVF (edk2-stable202502's OvmfPkgX64 built
//! with `CC_MEASUREMENT_ENABLE`: TdTcg2Dxe and DxeTpm2MeasureBootLib) and the kernel's EFI stub
//! extend, each event as SHA-384 of its data (RTMR = SHA-384(RTMR ‖ event digest)):
//!
//! ```text
//! RTMR[1] (PCR 2-6)  1. the kernel's PE/COFF Authenticode SHA-384, when LoadImage loads it
//!                       (EV_EFI_BOOT_SERVICES_APPLICATION). OVMF >= 202502 takes the kernel
//!                       from QEMU's fw_cfg file etc/boot/kernel (QEMU >= 10.0), which is the
//!                       file as given, not the setup header QEMU <= 10.1 patches;
//!                    2. "Calling EFI Application from Boot Option" (ReadyToBoot, EV_EFI_ACTION);
//!                    3. the separator, 4 zero bytes;
//!                    4. "Exit Boot Services Invocation";
//!                    5. "Exit Boot Services Returned with Success".
//!                    Assumed: no PCI option ROM is loaded (it would add a PCR 2 event), and the
//!                    stub's first ExitBootServices call succeeds (a failed one adds "Exit Boot
//!                    Services Returned with Failure").
//! RTMR[2] (PCR 9)    1. the kernel's LoadOptions as the EFI stub receives them: the command
//!                       line, plus " initrd=initrd" when there is an initrd, widened to UTF-16LE
//!                       with a UTF-16 NUL (X86QemuLoadImageLib; Linux efi_convert_cmdline);
//!                    2. the initrd's bytes (Linux efi_load_initrd, loaded with LoadFile2).
//! RTMR[3]            nothing: no firmware event maps to it and neither the kernel nor the
//!                    runner extends it, so it is 48 zero bytes.
//! ```
//!
//! **RTMR[0]** (TD HOB, the firmware's configuration volume, boot variables and QEMU's ACPI
//! tables) depends on the host: memory size, vCPUs, devices, QEMU version and machine type. It is
//! not computed here.
//!
//! Checked against peers: MRTD (of the pinned firmware and of a synthetic one) and the LoadOptions
//! digest against Dstack-TEE's `dstack-mr`; the kernel's Authenticode hash against Debian's
//! `pesign` and `osslsigncode`. The event lists come from reading edk2-stable202502, Linux 6.12's
//! EFI stub and QEMU; they are not yet checked against a quote from a real TDX host.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha384};

use super::MeasureError;
use crate::deb;
use crate::manifest::{FirmwareSpec, Measurement};
use crate::util::{sha256_file, ToolError};

/// A Debian `ovmf` package whose `OVMF.fd` is a TDVF (TDX metadata and TDX measurement), pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdvfPin {
    pub deb: deb::DebPin,
    /// The firmware file in the package.
    pub file: &'static str,
    /// SHA-256 of that file.
    pub file_sha256: &'static str,
}

/// Debian 13's OVMF (edk2-stable202502): `debian/rules` builds OvmfPkgX64 with
/// `-DCC_MEASUREMENT_ENABLE=TRUE`, so its `OVMF.fd` (code and variables in one 4 MiB file, the
/// form QEMU's `-bios` wants for TDX) has TDX metadata and TdTcg2Pei/TdTcg2Dxe. Debian 12's
/// OVMF (2022.11) has TDX metadata too but no TDX measurement: under it RTMR[1..2] stay zero
/// whatever kernel, initrd and command line boot, so it is unsuitable.
pub const TDVF_PIN: TdvfPin = TdvfPin {
    deb: deb::DebPin {
        package: "ovmf",
        version: "2025.02-8+deb13u1",
        arch: "all",
        sha256: "78e0d54df11fc77406cb7a0bc9a39e5bca6d1cbe06556b91d9a73491c52decdf",
        suite: "trixie",
    },
    file: "usr/share/ovmf/OVMF.fd",
    file_sha256: "14954040cc754ade0c625ac3470ea46d4c14318b5b1396de4ef77090203d76db",
};

/// What the TDX measurements depend on besides the image: the TDVF the host loads with `-bios`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxParams {
    /// The TDVF file (`OVMF.fd`).
    pub tdvf: PathBuf,
    /// The package it came from, if pinned (recorded in the manifest).
    pub pin: Option<TdvfPin>,
}

impl TdxParams {
    /// The pinned TDVF at `tdvf` (as [`fetch_tdvf`] returns it).
    pub fn pinned(tdvf: PathBuf) -> Self {
        TdxParams {
            tdvf,
            pin: Some(TDVF_PIN),
        }
    }

    /// The manifest's `firmware.tdx` entry for this TDVF, as the bundle carries it
    /// (`bundle_file`).
    pub fn firmware_spec(&self, bundle_file: &str) -> Result<FirmwareSpec, MeasureError> {
        let origin = match &self.pin {
            Some(pin) => format!(
                "Debian {} {} ({}, .deb SHA-256 {})",
                pin.deb.package, pin.deb.version, pin.file, pin.deb.sha256
            ),
            None => "a TDVF given by hand".to_owned(),
        };
        Ok(FirmwareSpec {
            file: Some(bundle_file.to_owned()),
            sha256: Some(sha256_file(&self.tdvf)?),
            note: format!(
                "{origin}, loaded with -bios by upstream QEMU >= 10.1 (tdx-guest); it measures \
                 the kernel into RTMR[1], the kernel's EFI stub the command line and initrd into \
                 RTMR[2]"
            ),
        })
    }
}

/// Returns the pinned TDVF (`OVMF.fd`), from `cache` or else fetched with `apt-get download`
/// into `cache/debs/` (the suite must be in apt's sources) and unpacked into the cache. The
/// `.deb` and the file must match the pin's SHA-256.
pub fn fetch_tdvf(cache: &Path) -> Result<PathBuf, MeasureError> {
    fetch_tdvf_with(&TDVF_PIN, cache, None)
}

/// [`fetch_tdvf`] for any pin, optionally from a `.deb` at hand (it must match the pin).
pub fn fetch_tdvf_with(
    pin: &TdvfPin,
    cache: &Path,
    deb: Option<&Path>,
) -> Result<PathBuf, MeasureError> {
    let dir = cache.join(format!("tdvf-{}", &pin.deb.sha256[..16]));
    let file_name = Path::new(pin.file)
        .file_name()
        .map(|name| name.to_owned())
        .unwrap_or_else(|| "OVMF.fd".into());
    let target = dir.join(file_name);
    if target.is_file() {
        pin.deb.check_file(&target, pin.file_sha256)?;
        return Ok(target);
    }
    let deb = pin.deb.fetch(cache, deb)?;
    crate::progress!("tdvf: unpacking {} from {}", pin.file, deb.display());
    let staging = deb::unpack(&deb, cache, ".tdvf-")?;
    let unpacked = staging.path().join(pin.file);
    if !unpacked.is_file() {
        return Err(MeasureError::TdvfMissing {
            deb,
            file: pin.file,
        });
    }
    pin.deb.check_file(&unpacked, pin.file_sha256)?;
    std::fs::create_dir_all(&dir).map_err(|e| ToolError::io(&dir, e))?;
    std::fs::rename(&unpacked, &target).map_err(|e| ToolError::io(&target, e))?;
    Ok(target)
}

/// Why a firmware file is not a TDVF QEMU would accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TdvfError {
    #[error("no OVMF GUIDed table footer at the end of the file (not an OVMF image?)")]
    NoFooter,
    #[error("the OVMF GUIDed table is malformed: {0}")]
    Table(&'static str),
    #[error(
        "no TDX metadata (GUID e47a6535-984a-4798-865e-4685a7bf8ec2) in the OVMF table: not a TDVF"
    )]
    NoTdxMetadata,
    #[error("TDX metadata: {0}")]
    Metadata(String),
    #[error("TDX metadata section {index}: {reason}")]
    Section { index: usize, reason: String },
}

/// The type of a TDVF metadata section (TDVF design guide; the ones upstream QEMU accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// Boot firmware volume: copied from the file.
    Bfv,
    /// Configuration firmware volume (the variable store): copied from the file.
    Cfv,
    /// The TD HOB QEMU writes: added as zero pages.
    TdHob,
    /// Temporary memory: added as zero pages.
    TempMem,
}

/// Section attribute: the section's contents are measured (TDH.MR.EXTEND) into MRTD.
pub const ATTRIBUTE_MR_EXTEND: u32 = 1;

/// One TDVF metadata section, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdvfSection {
    /// Offset of the section's data in the firmware file (BFV, CFV).
    pub data_offset: u32,
    pub raw_data_size: u32,
    /// Guest physical address; page aligned.
    pub gpa: u64,
    /// Size in guest memory; page aligned, not zero.
    pub size: u64,
    pub kind: SectionKind,
    pub attributes: u32,
}

impl TdvfSection {
    pub fn mr_extend(&self) -> bool {
        self.attributes & ATTRIBUTE_MR_EXTEND != 0
    }
}

/// A TDVF image and its metadata sections, checked as QEMU checks them (and a little more).
#[derive(Debug, Clone)]
pub struct Tdvf<'a> {
    image: &'a [u8],
    pub sections: Vec<TdvfSection>,
}

const PAGE: u64 = 4096;
const EXTEND_CHUNK: usize = 256;
/// `96b582de-1fb2-45f7-baea-a366c55a082d`, little-endian as stored.
const OVMF_TABLE_FOOTER_GUID: [u8; 16] = guid_bytes(
    0x96b582de,
    0x1fb2,
    0x45f7,
    *b"\xba\xea\xa3\x66\xc5\x5a\x08\x2d",
);
/// `e47a6535-984a-4798-865e-4685a7bf8ec2`.
const TDX_METADATA_OFFSET_GUID: [u8; 16] = guid_bytes(
    0xe47a6535,
    0x984a,
    0x4798,
    *b"\x86\x5e\x46\x85\xa7\xbf\x8e\xc2",
);
/// The footer's GUID and the table's length sit this far before the end (the reset vector
/// follows them).
const BYTES_AFTER_TABLE_FOOTER: usize = 32;
/// u16 length + GUID: the smallest table entry.
const TABLE_ENTRY_MIN: usize = 18;
const METADATA_HEADER: usize = 16;
const METADATA_SECTION: usize = 32;

const fn guid_bytes(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// The data of the entry with `guid` in the OVMF GUIDed table at the end of `image` (QEMU's
/// `pc_system_parse_ovmf_flash` and `pc_system_ovmf_table_find`).
fn ovmf_table_entry<'a>(image: &'a [u8], guid: &[u8; 16]) -> Result<&'a [u8], TdvfError> {
    let footer = image
        .len()
        .checked_sub(BYTES_AFTER_TABLE_FOOTER)
        .filter(|footer| *footer >= TABLE_ENTRY_MIN)
        .ok_or(TdvfError::NoFooter)?;
    if image[footer - 16..footer] != OVMF_TABLE_FOOTER_GUID {
        return Err(TdvfError::NoFooter);
    }
    let length_at = footer - TABLE_ENTRY_MIN;
    // The table's length counts the footer entry itself.
    let total = usize::from(u16_at(image, length_at).ok_or(TdvfError::NoFooter)?)
        .checked_sub(TABLE_ENTRY_MIN)
        .ok_or(TdvfError::Table("its length is shorter than the footer"))?;
    if total > length_at {
        return Err(TdvfError::Table(
            "its length reaches past the start of the file",
        ));
    }
    let table = &image[length_at - total..length_at];
    let mut end = table.len();
    while end >= TABLE_ENTRY_MIN {
        let entry_guid = &table[end - 16..end];
        let len = usize::from(u16_at(table, end - TABLE_ENTRY_MIN).unwrap_or(0));
        if len < TABLE_ENTRY_MIN || len > end {
            return Err(TdvfError::Table("an entry's length is out of bounds"));
        }
        if entry_guid == guid {
            return Ok(&table[end - len..end - TABLE_ENTRY_MIN]);
        }
        end -= len;
    }
    Err(TdvfError::NoTdxMetadata)
}

impl<'a> Tdvf<'a> {
    /// Finds and checks the TDX metadata of `image` (an `OVMF.fd` as loaded with `-bios`).
    pub fn parse(image: &'a [u8]) -> Result<Self, TdvfError> {
        let entry = ovmf_table_entry(image, &TDX_METADATA_OFFSET_GUID)?;
        let offset_from_end = u32_at(entry, 0).ok_or_else(|| {
            TdvfError::Metadata("the offset entry is shorter than 4 bytes".into())
        })?;
        let start = image
            .len()
            .checked_sub(offset_from_end as usize)
            .ok_or_else(|| {
                TdvfError::Metadata("its offset is before the start of the file".into())
            })?;
        let header = image
            .get(start..start + METADATA_HEADER)
            .ok_or_else(|| TdvfError::Metadata("the header is past the end of the file".into()))?;
        if &header[0..4] != b"TDVF" {
            return Err(TdvfError::Metadata("no TDVF signature".into()));
        }
        let length = u32_at(header, 4).unwrap_or(0) as usize;
        let version = u32_at(header, 8).unwrap_or(0);
        let count = u32_at(header, 12).unwrap_or(0) as usize;
        if version != 1 {
            return Err(TdvfError::Metadata(format!("version {version}, not 1")));
        }
        if count < 2 {
            return Err(TdvfError::Metadata(format!(
                "{count} sections (QEMU wants at least 2)"
            )));
        }
        if Some(length)
            != count
                .checked_mul(METADATA_SECTION)
                .map(|n| n + METADATA_HEADER)
        {
            return Err(TdvfError::Metadata(format!(
                "length {length} does not match {count} sections"
            )));
        }
        let table = image
            .get(start + METADATA_HEADER..start + length)
            .ok_or_else(|| {
                TdvfError::Metadata("the sections run past the end of the file".into())
            })?;
        let mut sections = Vec::with_capacity(count);
        for index in 0..count {
            let raw = &table[index * METADATA_SECTION..(index + 1) * METADATA_SECTION];
            let section =
                check_section(image, raw).map_err(|reason| TdvfError::Section { index, reason })?;
            sections.push(section);
        }
        for (i, a) in sections.iter().enumerate() {
            for (j, b) in sections.iter().enumerate().skip(i + 1) {
                if a.gpa < b.gpa + b.size && b.gpa < a.gpa + a.size {
                    return Err(TdvfError::Section {
                        index: j,
                        reason: format!(
                            "its memory {:#x}+{:#x} overlaps section {i}'s {:#x}+{:#x} (the TDX \
                             module adds a page once)",
                            b.gpa, b.size, a.gpa, a.size
                        ),
                    });
                }
            }
        }
        Ok(Tdvf { image, sections })
    }

    /// MRTD as the TDX module computes it when upstream KVM builds the TD: for each section in
    /// metadata order, for each page, TDH.MEM.PAGE.ADD and then (MR.EXTEND sections) the page's
    /// sixteen TDH.MR.EXTENDs.
    pub fn mrtd(&self) -> [u8; 48] {
        let zero_page = [0u8; PAGE as usize];
        let mut mrtd = Sha384::new();
        for section in &self.sections {
            for page in 0..section.size / PAGE {
                let gpa = section.gpa + page * PAGE;
                mrtd.update(operation_block(b"MEM.PAGE.ADD", gpa));
                if !section.mr_extend() {
                    continue;
                }
                // QEMU copies BFV and CFV from the file at DataOffset, MemoryDataSize bytes (the
                // bounds were checked); temporary memory is zero pages (a measured TD HOB was
                // refused).
                let contents = match section.kind {
                    SectionKind::Bfv | SectionKind::Cfv => {
                        let at = section.data_offset as usize + (page * PAGE) as usize;
                        &self.image[at..at + PAGE as usize]
                    }
                    SectionKind::TdHob | SectionKind::TempMem => &zero_page[..],
                };
                for (i, chunk) in contents.chunks(EXTEND_CHUNK).enumerate() {
                    mrtd.update(operation_block(
                        b"MR.EXTEND",
                        gpa + (i * EXTEND_CHUNK) as u64,
                    ));
                    mrtd.update(chunk);
                }
            }
        }
        mrtd.finalize().into()
    }
}

/// The 128-byte block the TDX module hashes for TDH.MEM.PAGE.ADD and TDH.MR.EXTEND: the
/// operation's name at 0, the GPA (little-endian) at 16, zeros elsewhere.
fn operation_block(name: &[u8], gpa: u64) -> [u8; 128] {
    let mut block = [0u8; 128];
    block[..name.len()].copy_from_slice(name);
    block[16..24].copy_from_slice(&gpa.to_le_bytes());
    block
}

fn check_section(image: &[u8], raw: &[u8]) -> Result<TdvfSection, String> {
    let field32 = |at| u32_at(raw, at).unwrap_or(0);
    let field64 = |at| u64_at(raw, at).unwrap_or(0);
    let kind = match field32(24) {
        0 => SectionKind::Bfv,
        1 => SectionKind::Cfv,
        2 => SectionKind::TdHob,
        3 => SectionKind::TempMem,
        other => {
            return Err(format!(
                "type {other} (upstream QEMU takes only BFV, CFV, TD_HOB and TempMem)"
            ))
        }
    };
    let section = TdvfSection {
        data_offset: field32(0),
        raw_data_size: field32(4),
        gpa: field64(8),
        size: field64(16),
        kind,
        attributes: field32(28),
    };
    if !section.gpa.is_multiple_of(PAGE) || !section.size.is_multiple_of(PAGE) {
        return Err(format!(
            "memory {:#x}+{:#x} is not page aligned",
            section.gpa, section.size
        ));
    }
    if section.size == 0 {
        return Err("it is empty".into());
    }
    if section.gpa.checked_add(section.size).is_none() {
        return Err("its memory range overflows".into());
    }
    if u64::from(section.raw_data_size) > section.size {
        return Err(format!(
            "raw data size {:#x} is larger than its memory {:#x}",
            section.raw_data_size, section.size
        ));
    }
    match kind {
        SectionKind::Bfv | SectionKind::Cfv => {
            if section.raw_data_size == 0 {
                return Err("a firmware volume without data".into());
            }
            // QEMU copies MemoryDataSize bytes from DataOffset: they must be in the file.
            let end = u64::from(section.data_offset) + section.size;
            if end > image.len() as u64 {
                return Err(format!(
                    "its data {:#x}+{:#x} runs past the end of the file ({:#x} bytes)",
                    section.data_offset,
                    section.size,
                    image.len()
                ));
            }
        }
        SectionKind::TdHob | SectionKind::TempMem => {
            if section.raw_data_size != 0 {
                return Err("a memory-only section with file data".into());
            }
            if kind == SectionKind::TdHob && section.mr_extend() {
                return Err(
                    "MR.EXTEND on the TD HOB, which QEMU writes for the VM's memory: MRTD would \
                     depend on the host"
                        .into(),
                );
            }
        }
    }
    Ok(section)
}

/// The PE/COFF Authenticode SHA-384 of `kernel` (an EFI-stub bzImage), as TDVF measures an
/// image it loads (SHA-384 of the headers without the checksum and the certificate table entry,
/// the sections by file offset, and the data after them without the certificate table; no
/// padding), with the `authenticode` crate.
pub fn kernel_authenticode_sha384(kernel: &[u8]) -> Result<[u8; 48], String> {
    use object::read::pe::PeFile64;
    let pe = PeFile64::parse(kernel)
        .map_err(|e| format!("not a PE32+ image (an EFI-stub bzImage is): {e}"))?;
    let mut hasher = Sha384::new();
    authenticode::authenticode_digest(&pe, &mut hasher)
        .map_err(|_| "its PE headers point outside the file".to_owned())?;
    Ok(hasher.finalize().into())
}

fn sha384(bytes: &[u8]) -> [u8; 48] {
    Sha384::digest(bytes).into()
}

/// RTMR[1]'s events (their digests), in order, for a kernel with this Authenticode hash.
pub fn rtmr1_events(kernel_authenticode: [u8; 48]) -> Vec<[u8; 48]> {
    vec![
        kernel_authenticode,
        sha384(b"Calling EFI Application from Boot Option"),
        sha384(&[0u8; 4]),
        sha384(b"Exit Boot Services Invocation"),
        sha384(b"Exit Boot Services Returned with Success"),
    ]
}

/// The kernel's LoadOptions as OVMF's X86QemuLoadImageLib builds them from QEMU's command line:
/// the command line and, with an initrd, " initrd=initrd", each byte widened to UTF-16LE, and a
/// UTF-16 NUL; `None` when that is empty (then OVMF sets none and the stub measures none).
pub fn load_options(cmdline: &str, initrd: bool) -> Result<Option<Vec<u8>>, String> {
    if let Some(bad) = cmdline.chars().find(|c| !c.is_ascii() || *c == '\0') {
        return Err(format!(
            "the command line has {bad:?}: OVMF widens its bytes one by one and Linux reads \
             UTF-16, so only NUL-free ASCII has a pinned-down measured form"
        ));
    }
    let text = if initrd {
        format!("{cmdline} initrd=initrd")
    } else {
        cmdline.to_owned()
    };
    if text.is_empty() {
        return Ok(None);
    }
    let mut bytes: Vec<u8> = text
        .bytes()
        .flat_map(|b| u16::from(b).to_le_bytes())
        .collect();
    bytes.extend([0, 0]);
    Ok(Some(bytes))
}

/// RTMR[2]'s events (their digests), in order.
pub fn rtmr2_events(
    cmdline: &str,
    initrd_sha384: Option<[u8; 48]>,
) -> Result<Vec<[u8; 48]>, String> {
    let mut events = Vec::new();
    if let Some(options) = load_options(cmdline, initrd_sha384.is_some())? {
        events.push(sha384(&options));
    }
    // The stub measures the initrd only if it is not empty.
    events.extend(initrd_sha384);
    Ok(events)
}

/// An RTMR after extending these event digests, from zero.
pub fn replay(events: &[[u8; 48]]) -> [u8; 48] {
    events.iter().fold([0u8; 48], |rtmr, event| {
        let mut hasher = Sha384::new();
        hasher.update(rtmr);
        hasher.update(event);
        hasher.finalize().into()
    })
}

fn sha384_file(path: &Path) -> Result<([u8; 48], u64), ToolError> {
    let mut file = std::fs::File::open(path).map_err(|e| ToolError::io(path, e))?;
    let mut hasher = Sha384::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| ToolError::io(path, e))?;
        if n == 0 {
            return Ok((hasher.finalize().into(), size));
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
}

/// Why RTMR[0] is not in the manifest.
pub const RTMR0_NOT_COMPUTED: &str = "not computed: RTMR[0] holds the TD HOB (memory size), the \
    TDVF's variable store, its boot variables and QEMU's ACPI tables (QEMU version, machine \
    type, vCPUs, memory, devices), so it is the host's; take it from a boot on the TDX host (the \
    CCEL event log) for that VM shape";

/// The expected MRTD, RTMR[1], RTMR[2] and RTMR[3] (hex, 48 bytes each) of `kernel`, `initrd` and
/// `cmdline` booted by the TDVF in `params`, as a manifest entry with what they assume.
pub fn tdx_measurements(
    params: &TdxParams,
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
) -> Result<Measurement, MeasureError> {
    let tdvf_path = &params.tdvf;
    let image = std::fs::read(tdvf_path).map_err(|e| ToolError::io(tdvf_path, e))?;
    let mrtd = Tdvf::parse(&image)
        .map_err(|source| MeasureError::Tdvf {
            path: tdvf_path.clone(),
            source,
        })?
        .mrtd();

    let kernel_bytes = std::fs::read(kernel).map_err(|e| ToolError::io(kernel, e))?;
    let kernel_hash =
        kernel_authenticode_sha384(&kernel_bytes).map_err(|reason| MeasureError::TdxKernel {
            path: kernel.to_owned(),
            reason,
        })?;
    let initrd_hash = match initrd {
        Some(path) => match sha384_file(path)? {
            // An empty initrd: QEMU's fw_cfg says size 0, so OVMF sees none.
            (_, 0) => None,
            (hash, _) => Some(hash),
        },
        None => None,
    };
    let rtmr1 = replay(&rtmr1_events(kernel_hash));
    let rtmr2 = replay(&rtmr2_events(cmdline, initrd_hash).map_err(MeasureError::TdxCmdline)?);

    let values = BTreeMap::from([
        ("mrtd".to_owned(), hex::encode(mrtd)),
        ("rtmr1".to_owned(), hex::encode(rtmr1)),
        ("rtmr2".to_owned(), hex::encode(rtmr2)),
        ("rtmr3".to_owned(), hex::encode([0u8; 48])),
    ]);
    let mut parameters = BTreeMap::from([
        ("rtmr0".to_owned(), RTMR0_NOT_COMPUTED.to_owned()),
        ("tdvf_sha256".to_owned(), sha256_file(tdvf_path)?),
        (
            "vmm".to_owned(),
            "upstream QEMU >= 10.1 (tdx-guest, q35) on KVM (Linux >= 6.16): TDVF sections added \
             in metadata order, each page TDH.MEM.PAGE.ADD then, for MR.EXTEND sections, 16 x \
             TDH.MR.EXTEND"
                .to_owned(),
        ),
        (
            "boot".to_owned(),
            "-bios TDVF -kernel [-initrd] -append (direct boot, no -shim, no vTPM, no PCI option \
             ROMs); the kernel via fw_cfg etc/boot/kernel (QEMU >= 10.0), as the file is; \
             ExitBootServices succeeds at the first call"
                .to_owned(),
        ),
        (
            "rtmr1_events".to_owned(),
            "kernel Authenticode SHA-384; 'Calling EFI Application from Boot Option'; separator \
             (4 zero bytes); 'Exit Boot Services Invocation'; 'Exit Boot Services Returned with \
             Success'"
                .to_owned(),
        ),
        (
            "rtmr2_events".to_owned(),
            "LoadOptions: UTF-16LE of the command line + ' initrd=initrd' (with an initrd) + NUL; \
             SHA-384 of the initrd (both by the kernel's EFI stub, PCR 9 events)"
                .to_owned(),
        ),
        (
            "rtmr3".to_owned(),
            "zero: nothing extends it before the quote".to_owned(),
        ),
        (
            "kernel_authenticode_sha384".to_owned(),
            hex::encode(kernel_hash),
        ),
    ]);
    if let Some(pin) = &params.pin {
        parameters.insert("tdvf_package".to_owned(), pin.deb.package.to_owned());
        parameters.insert("tdvf_version".to_owned(), pin.deb.version.to_owned());
        parameters.insert("tdvf_deb_sha256".to_owned(), pin.deb.sha256.to_owned());
        parameters.insert("tdvf_file".to_owned(), pin.file.to_owned());
    }
    Ok(Measurement::Computed { values, parameters })
}

#[cfg(test)]
mod tests;
