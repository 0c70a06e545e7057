//! The Unified Kernel Image: systemd's EFI stub (`linuxx64.efi.stub`, from a pinned Debian
//! package) with sections appended by our own PE writer — `.osrel`, `.cmdline` (the measured
//! command line) and `.linux` (the kernel's bzImage) — as `ukify` lays them out: each section
//! starts at the next `SectionAlignment` boundary after the stub's last one in memory, its raw
//! data at the next `FileAlignment` boundary in the file, `VirtualSize` the exact data length
//! (systemd-stub measures and passes exactly that), `SizeOfImage` covers the last section, and
//! the checksum stays zero (the stub's is zero; nothing checks it for EFI images). No time stamp
//! or path is written, so the same inputs give the same bytes.
//!
//! The stub's behaviour that the measurements depend on (systemd 257, read from its source):
//! without Secure Boot it loads the kernel with the firmware's `LoadImage` from memory, so the
//! firmware measures the kernel's PE image too (PCR 4 / RTMR[1]); it replaces `.cmdline` by the
//! image's LoadOptions when Secure Boot is off and the boot entry carries any (then measured into
//! PCR 12) — a verifier must refuse such an event; see `measure::uefi`.

use std::path::{Path, PathBuf};

use crate::deb::{self, DebPin};
use crate::util::ToolError;

/// Debian 13's `systemd-boot-efi` (systemd 257): bookworm's 252 predates the stub's
/// TDX (CC measurement protocol) support.
pub const STUB_PIN: StubPin = StubPin {
    deb: DebPin {
        package: "systemd-boot-efi",
        version: "257.13-1~deb13u1",
        arch: "amd64",
        sha256: "390ecdcef9bbb753f51bb6d8f696bdae2f1dbedde7239c49ccb2512f137a8933",
        suite: "trixie",
    },
    file: "usr/lib/systemd/boot/efi/linuxx64.efi.stub",
    file_sha256: "9c623743834bb904a3cb941092cffc958c31230263ce896d332a75e9ec48aa85",
};

/// The `.osrel` section: the os-release(5) of the image.
pub const OS_RELEASE: &str = "ID=smart-worker\nNAME=\"Smart Worker appliance\"\n";

/// A pinned EFI stub inside a pinned Debian package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StubPin {
    pub deb: DebPin,
    pub file: &'static str,
    pub file_sha256: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum UkiError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Deb(#[from] deb::DebError),
    #[error("{0} is not in the package")]
    StubMissing(PathBuf),
    #[error("the EFI stub is not a PE32+ image we can extend: {0}")]
    BadStub(&'static str),
    #[error("the UKI would exceed 4 GiB")]
    TooLarge,
}

/// The pinned stub, from the cache or fetched (`apt-get download`) and unpacked into it.
pub fn fetch_stub(cache: &Path) -> Result<PathBuf, UkiError> {
    let pin = &STUB_PIN;
    let dir = cache.join(format!("efi-stub-{}", &pin.deb.sha256[..16]));
    let target = dir.join("linuxx64.efi.stub");
    if target.is_file() {
        pin.deb.check_file(&target, pin.file_sha256)?;
        return Ok(target);
    }
    let deb = pin.deb.fetch(cache, None)?;
    let staging = deb::unpack(&deb, cache, ".efi-stub-")?;
    let unpacked = staging.path().join(pin.file);
    if !unpacked.is_file() {
        return Err(UkiError::StubMissing(unpacked));
    }
    pin.deb.check_file(&unpacked, pin.file_sha256)?;
    std::fs::create_dir_all(&dir).map_err(|e| ToolError::io(&dir, e))?;
    std::fs::rename(&unpacked, &target).map_err(|e| ToolError::io(&target, e))?;
    Ok(target)
}

/// The UKI's sections after the stub's, in `ukify`'s order.
pub fn uki_sections<'a>(cmdline: &'a str, kernel: &'a [u8]) -> Vec<(&'static str, &'a [u8])> {
    vec![
        (".osrel", OS_RELEASE.as_bytes()),
        (".cmdline", cmdline.as_bytes()),
        (".linux", kernel),
    ]
}

const SECTION_HEADER: usize = 40;
/// IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ.
const DATA_READ: u32 = 0x0000_0040 | 0x4000_0000;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn put_u32(b: &mut [u8], at: usize, value: u32) {
    b[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn align(value: u64, to: u64) -> u64 {
    value.div_ceil(to) * to
}

/// Appends `sections` (name ≤ 8 bytes, data) to the PE32+ image `stub` and returns the new image.
pub fn append_sections(stub: &[u8], sections: &[(&str, &[u8])]) -> Result<Vec<u8>, UkiError> {
    let bad = UkiError::BadStub;
    let pe = u32_at(stub, 0x3c).ok_or(bad("no DOS header"))? as usize;
    if stub.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err(bad("no PE signature"));
    }
    let coff = pe + 4;
    let count = u16_at(stub, coff + 2).ok_or(bad("short COFF header"))? as usize;
    let optional_size = u16_at(stub, coff + 16).ok_or(bad("short COFF header"))? as usize;
    let opt = coff + 20;
    if u16_at(stub, opt) != Some(0x20b) {
        return Err(bad("not PE32+"));
    }
    let section_alignment = u64::from(u32_at(stub, opt + 32).ok_or(bad("short header"))?);
    let file_alignment = u64::from(u32_at(stub, opt + 36).ok_or(bad("short header"))?);
    let size_of_headers = u32_at(stub, opt + 60).ok_or(bad("short header"))? as usize;
    if section_alignment == 0 || file_alignment == 0 {
        return Err(bad("zero alignment"));
    }
    let table = opt + optional_size;
    let table_end = table + (count + sections.len()) * SECTION_HEADER;
    if table_end > size_of_headers || size_of_headers > stub.len() {
        return Err(bad("no room in its headers for more section headers"));
    }
    // Where the stub's sections end, in memory and in the file.
    let mut memory_end = 0u64;
    let mut file_end = size_of_headers as u64;
    for i in 0..count {
        let h = table + i * SECTION_HEADER;
        let virtual_size = u64::from(u32_at(stub, h + 8).ok_or(bad("short section table"))?);
        let rva = u64::from(u32_at(stub, h + 12).ok_or(bad("short section table"))?);
        let raw_size = u64::from(u32_at(stub, h + 16).ok_or(bad("short section table"))?);
        let raw_at = u64::from(u32_at(stub, h + 20).ok_or(bad("short section table"))?);
        memory_end = memory_end.max(rva + virtual_size.max(raw_size));
        file_end = file_end.max(raw_at + raw_size);
    }
    if stub[table + count * SECTION_HEADER..table_end]
        .iter()
        .any(|&b| b != 0)
    {
        return Err(bad("the space after its section table is not empty"));
    }
    if file_end > stub.len() as u64 {
        return Err(bad("a section's data lies beyond the end of the file"));
    }
    // Anything after the last section (e.g. a signature) would be misplaced: refuse it.
    if stub.len() as u64 > align(file_end, file_alignment) {
        return Err(bad("data after its last section (signed?)"));
    }
    let mut out = stub[..file_end as usize].to_vec();
    let mut rva = align(memory_end, section_alignment);
    for (i, (name, data)) in sections.iter().enumerate() {
        if name.len() > 8 {
            return Err(bad("a section name longer than 8 bytes"));
        }
        out.resize(align(out.len() as u64, file_alignment) as usize, 0);
        let raw_at = out.len() as u64;
        let raw_size = align(data.len() as u64, file_alignment);
        out.extend_from_slice(data);
        out.resize((raw_at + raw_size) as usize, 0);
        let h = table + (count + i) * SECTION_HEADER;
        let mut header = [0u8; SECTION_HEADER];
        header[..name.len()].copy_from_slice(name.as_bytes());
        let fits = |v: u64| u32::try_from(v).map_err(|_| UkiError::TooLarge);
        header[8..12].copy_from_slice(&fits(data.len() as u64)?.to_le_bytes());
        header[12..16].copy_from_slice(&fits(rva)?.to_le_bytes());
        header[16..20].copy_from_slice(&fits(raw_size)?.to_le_bytes());
        header[20..24].copy_from_slice(&fits(raw_at)?.to_le_bytes());
        header[36..40].copy_from_slice(&DATA_READ.to_le_bytes());
        out[h..h + SECTION_HEADER].copy_from_slice(&header);
        rva = align(rva + data.len() as u64, section_alignment);
        let initialized = u64::from(u32_at(&out, opt + 8).unwrap_or(0)) + raw_size;
        put_u32(
            &mut out,
            opt + 8,
            u32::try_from(initialized).map_err(|_| UkiError::TooLarge)?,
        );
    }
    let new_count = u16::try_from(count + sections.len()).map_err(|_| bad("too many sections"))?;
    out[coff + 2..coff + 4].copy_from_slice(&new_count.to_le_bytes());
    put_u32(
        &mut out,
        opt + 56,
        u32::try_from(rva).map_err(|_| UkiError::TooLarge)?,
    );
    put_u32(&mut out, opt + 64, 0);
    Ok(out)
}

/// The UKI for this stub, command line and kernel.
pub fn build_uki(stub: &[u8], cmdline: &str, kernel: &[u8]) -> Result<Vec<u8>, UkiError> {
    append_sections(stub, &uki_sections(cmdline, kernel))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use object::read::pe::PeFile64;
    use object::{Object, ObjectSection};
    use sha2::{Digest, Sha256};

    /// A minimal PE32+ EFI application: headers (0x400), one `.text` section of 0x200 bytes.
    pub(crate) fn tiny_pe() -> Vec<u8> {
        let mut b = vec![0u8; 0x600];
        b[0..2].copy_from_slice(b"MZ");
        put_u32(&mut b, 0x3c, 0x80);
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        b[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        b[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes());
        b[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
        b[coff + 18..coff + 20].copy_from_slice(&0x0022u16.to_le_bytes());
        let opt = coff + 20;
        b[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        put_u32(&mut b, opt + 16, 0x1000); // entry point
        b[opt + 24..opt + 32].copy_from_slice(&0x1_4000_0000u64.to_le_bytes());
        put_u32(&mut b, opt + 32, 0x1000);
        put_u32(&mut b, opt + 36, 0x200);
        put_u32(&mut b, opt + 56, 0x2000);
        put_u32(&mut b, opt + 60, 0x400);
        b[opt + 68..opt + 70].copy_from_slice(&10u16.to_le_bytes()); // EFI application
        put_u32(&mut b, opt + 108, 16);
        let h = opt + 240;
        b[h..h + 5].copy_from_slice(b".text");
        put_u32(&mut b, h + 8, 0x10);
        put_u32(&mut b, h + 12, 0x1000);
        put_u32(&mut b, h + 16, 0x200);
        put_u32(&mut b, h + 20, 0x400);
        put_u32(&mut b, h + 36, 0x6000_0020);
        b[0x400] = 0xc3;
        b
    }

    #[test]
    fn appended_sections_parse_back_with_their_data() {
        let stub = tiny_pe();
        let kernel = vec![0xabu8; 5000];
        let uki = build_uki(&stub, "console=ttyS0 root=/dev/dm-0", &kernel).unwrap();
        let pe = PeFile64::parse(&*uki).expect("a valid PE32+ image");
        let names: Vec<_> = pe
            .sections()
            .map(|s| s.name().unwrap().to_owned())
            .collect();
        assert_eq!(names, [".text", ".osrel", ".cmdline", ".linux"]);
        let section = |name: &str| pe.section_by_name(name).unwrap();
        assert_eq!(
            section(".cmdline").data().unwrap(),
            b"console=ttyS0 root=/dev/dm-0"
        );
        assert_eq!(section(".osrel").data().unwrap(), OS_RELEASE.as_bytes());
        assert_eq!(section(".linux").data().unwrap(), &kernel[..]);
        let header = pe.nt_headers().optional_header;
        let mut end = 0;
        for s in pe.section_table().iter() {
            let rva = s.virtual_address.get(object::LittleEndian);
            let raw = s.pointer_to_raw_data.get(object::LittleEndian);
            assert_eq!(rva % 0x1000, 0, "section alignment");
            assert_eq!(raw % 0x200, 0, "file alignment");
            end = end.max(rva + s.virtual_size.get(object::LittleEndian));
        }
        assert_eq!(
            header.size_of_image.get(object::LittleEndian),
            end.div_ceil(0x1000) * 0x1000
        );
        assert_eq!(header.check_sum.get(object::LittleEndian), 0);
        assert_eq!(uki.len() % 0x200, 0);
        // Deterministic, and the Authenticode digest covers the appended kernel.
        assert_eq!(
            uki,
            build_uki(&stub, "console=ttyS0 root=/dev/dm-0", &kernel).unwrap()
        );
        let digest = |image: &[u8]| {
            let pe = PeFile64::parse(image).unwrap();
            let mut h = Sha256::new();
            authenticode::authenticode_digest(&pe, &mut h).unwrap();
            h.finalize().to_vec()
        };
        let mut other = kernel.clone();
        other[4999] ^= 1;
        let changed = build_uki(&stub, "console=ttyS0 root=/dev/dm-0", &other).unwrap();
        assert_ne!(digest(&uki), digest(&changed));
        // The digest by hand: headers without checksum and the certificate table entry, then
        // the sections in file order (the tail after them is empty).
        let opt = 0x84 + 20;
        let mut by_hand = Sha256::new();
        by_hand.update(&uki[..opt + 64]);
        by_hand.update(&uki[opt + 68..opt + 112 + 4 * 8]);
        by_hand.update(&uki[opt + 112 + 5 * 8..0x400]);
        by_hand.update(&uki[0x400..]);
        assert_eq!(digest(&uki), by_hand.finalize().to_vec());
    }

    #[test]
    fn a_stub_without_room_or_with_trailing_data_is_refused() {
        let mut stub = tiny_pe();
        let many: Vec<(&str, &[u8])> = (0..30).map(|_| (".x", &b"x"[..])).collect();
        assert!(matches!(
            append_sections(&stub, &many),
            Err(UkiError::BadStub(_))
        ));
        stub.extend_from_slice(&[1u8; 0x200]);
        assert!(matches!(
            build_uki(&stub, "", b"k"),
            Err(UkiError::BadStub(_))
        ));
    }
}
