//! The clouds' containers around the raw disk: Google's `disk.raw` in a sparse GNU tar, gzip'd;
//! Azure's fixed VHD (the raw disk and a 512-byte footer). Both deterministic: the tar's mtime,
//! owner and mode are fixed and gzip has no name or time; the VHD's time stamp and unique ID come
//! from the caller.

use std::io::{Read, Seek, SeekFrom, Write};

pub const TAR_BLOCK: usize = 512;
/// GNU tar writes records of 20 blocks; an archive ends with two zero blocks, padded to one.
const RECORD: usize = 20 * TAR_BLOCK;
const SPARSE_IN_HEADER: usize = 4;
const SPARSE_IN_EXTENSION: usize = 21;

/// The data regions of `disk` (`(offset, length)`, 512-byte aligned, merged): what a sparse tar
/// stores. A disk ending in a hole gets a final `(size, 0)` entry, as GNU tar writes it.
pub fn data_regions(disk: &mut (impl Read + Seek), size: u64) -> std::io::Result<Vec<(u64, u64)>> {
    disk.seek(SeekFrom::Start(0))?;
    let mut regions: Vec<(u64, u64)> = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < size {
        let n = chunk.len().min((size - at) as usize);
        disk.read_exact(&mut chunk[..n])?;
        for (i, block) in chunk[..n].chunks(TAR_BLOCK).enumerate() {
            if block.iter().any(|&b| b != 0) {
                let offset = at + (i * TAR_BLOCK) as u64;
                match regions.last_mut() {
                    Some((start, len)) if *start + *len == offset => *len += block.len() as u64,
                    _ => regions.push((offset, block.len() as u64)),
                }
            }
        }
        at += n as u64;
    }
    if regions.last().is_none_or(|(start, len)| start + len < size) {
        regions.push((size, 0));
    }
    Ok(regions)
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}

fn checksum(header: &mut [u8; TAR_BLOCK]) {
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(text.as_bytes());
}

/// The old-GNU sparse header (type `S`) of `name` (size `size`, data `regions`), and its
/// extension blocks.
pub fn sparse_headers(name: &str, size: u64, regions: &[(u64, u64)], mtime: u64) -> Vec<u8> {
    let stored: u64 = regions.iter().map(|(_, len)| len).sum();
    let mut h = [0u8; TAR_BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], stored);
    octal(&mut h[136..148], mtime);
    h[156] = b'S';
    h[257..265].copy_from_slice(b"ustar  \0");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    let put = |block: &mut [u8], at: usize, (offset, len): (u64, u64)| {
        octal(&mut block[at..at + 12], offset);
        octal(&mut block[at + 12..at + 24], len);
    };
    let (first, rest) = regions.split_at(regions.len().min(SPARSE_IN_HEADER));
    for (i, region) in first.iter().enumerate() {
        put(&mut h, 386 + 24 * i, *region);
    }
    h[482] = u8::from(!rest.is_empty());
    octal(&mut h[483..495], size);
    checksum(&mut h);
    let mut out = h.to_vec();
    let chunks: Vec<_> = rest.chunks(SPARSE_IN_EXTENSION).collect();
    for (c, chunk) in chunks.iter().enumerate() {
        let mut e = [0u8; TAR_BLOCK];
        for (i, region) in chunk.iter().enumerate() {
            put(&mut e, 24 * i, *region);
        }
        e[504] = u8::from(c + 1 < chunks.len());
        out.extend_from_slice(&e);
    }
    out
}

/// Writes `disk` (of `size` bytes, its data in `regions`: sorted, 512-byte aligned, as
/// [`data_regions`] finds them) as `disk.raw` in a sparse GNU tar, gzip'd, to `out`.
pub fn write_gcp_tar_gz(
    disk: &mut (impl Read + Seek),
    size: u64,
    regions: &[(u64, u64)],
    mtime: u64,
    out: impl Write,
) -> std::io::Result<()> {
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(out, flate2::Compression::default());
    let mut written = 0usize;
    let headers = sparse_headers("disk.raw", size, regions, mtime);
    gz.write_all(&headers)?;
    written += headers.len();
    let mut buffer = vec![0u8; 1 << 20];
    for (offset, len) in regions.iter().copied() {
        disk.seek(SeekFrom::Start(offset))?;
        let mut left = len;
        while left > 0 {
            let n = buffer.len().min(left as usize);
            disk.read_exact(&mut buffer[..n])?;
            gz.write_all(&buffer[..n])?;
            left -= n as u64;
            written += n;
        }
    }
    // Data padded to a block, two zero blocks, padded to a record.
    let mut end = written.next_multiple_of(TAR_BLOCK) + 2 * TAR_BLOCK;
    end = end.next_multiple_of(RECORD);
    gz.write_all(&vec![0u8; end - written])?;
    gz.finish()?.flush()
}

/// Seconds from 2000-01-01 00:00 UTC, the VHD epoch.
const VHD_EPOCH: u32 = 946_684_800;

/// The VHD's CHS geometry (VHD specification, appendix "CHS calculation").
fn geometry(size: u64) -> (u16, u8, u8) {
    let mut total = (size / 512).min(65535 * 16 * 255);
    let (mut spt, mut heads, mut cth);
    if total >= 65535 * 16 * 63 {
        spt = 255;
        heads = 16;
        cth = total / spt;
    } else {
        spt = 17;
        cth = total / spt;
        heads = cth.div_ceil(1024).max(4);
        if cth >= heads * 1024 || heads > 16 {
            spt = 31;
            heads = 16;
            cth = total / spt;
        }
        if cth >= heads * 1024 {
            spt = 63;
            heads = 16;
            cth = total / spt;
        }
    }
    total = cth / heads;
    (total as u16, heads as u8, spt as u8)
}

/// The 512-byte footer of a fixed VHD of `size` data bytes (Microsoft's VHD specification).
pub fn vhd_footer(size: u64, unix_time: u32, unique_id: [u8; 16]) -> [u8; 512] {
    let mut f = [0u8; 512];
    f[0..8].copy_from_slice(b"conectix");
    f[8..12].copy_from_slice(&2u32.to_be_bytes());
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    f[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
    f[24..28].copy_from_slice(&unix_time.saturating_sub(VHD_EPOCH).to_be_bytes());
    f[28..32].copy_from_slice(b"swim");
    f[32..36].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    f[36..40].copy_from_slice(b"Wi2k");
    f[40..48].copy_from_slice(&size.to_be_bytes());
    f[48..56].copy_from_slice(&size.to_be_bytes());
    let (cylinders, heads, sectors) = geometry(size);
    f[56..58].copy_from_slice(&cylinders.to_be_bytes());
    f[58] = heads;
    f[59] = sectors;
    f[60..64].copy_from_slice(&2u32.to_be_bytes()); // fixed
    f[68..84].copy_from_slice(&unique_id);
    let sum: u32 = f.iter().map(|&b| u32::from(b)).sum();
    f[64..68].copy_from_slice(&(!sum).to_be_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn the_vhd_footer_checksum_and_fields_follow_the_spec() {
        let size = 1 << 30;
        let f = vhd_footer(size, VHD_EPOCH + 100, [7; 16]);
        let stored = u32::from_be_bytes(f[64..68].try_into().unwrap());
        let mut zeroed = f;
        zeroed[64..68].fill(0);
        let sum: u32 = zeroed.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(stored, !sum);
        assert_eq!(&f[..8], b"conectix");
        assert_eq!(u32::from_be_bytes(f[24..28].try_into().unwrap()), 100);
        assert_eq!(u64::from_be_bytes(f[48..56].try_into().unwrap()), size);
        assert_eq!(u32::from_be_bytes(f[60..64].try_into().unwrap()), 2);
        // 1 GiB: 2080 cylinders, 16 heads, 63 sectors (what qemu-img and Hyper-V compute).
        assert_eq!(
            (&f[56..58], f[58], f[59]),
            (&2080u16.to_be_bytes()[..], 16, 63)
        );
        let mut tampered = f;
        tampered[100] ^= 1;
        let sum: u32 = tampered
            .iter()
            .enumerate()
            .filter(|(i, _)| !(64..68).contains(i))
            .map(|(_, &b)| u32::from(b))
            .sum();
        assert_ne!(
            stored, !sum,
            "a changed byte no longer matches the checksum"
        );
    }

    #[test]
    fn the_tar_is_sparse_gnu_and_holds_the_disk() {
        // A 3 MiB disk with data at 0, at 1 MiB + 512 and in the last block.
        let size = 3 << 20;
        let mut disk = vec![0u8; size];
        disk[..600].fill(1);
        disk[(1 << 20) + 512..(1 << 20) + 1024].fill(2);
        disk[size - 512..].fill(3);
        let regions = data_regions(&mut Cursor::new(&disk), size as u64).unwrap();
        assert_eq!(
            regions,
            [(0, 1024), ((1 << 20) + 512, 512), (size as u64 - 512, 512)]
        );
        let write = |out: &mut Vec<u8>| {
            write_gcp_tar_gz(
                &mut Cursor::new(&disk),
                size as u64,
                &regions,
                1_700_000_000,
                out,
            )
        };
        let mut gz = Vec::new();
        write(&mut gz).unwrap();
        let mut again = Vec::new();
        write(&mut again).unwrap();
        assert_eq!(gz, again, "deterministic");
        assert_eq!(&gz[4..8], &[0, 0, 0, 0], "no gzip time stamp");
        assert_eq!(gz[3] & 0x08, 0, "no file name in the gzip header");
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(tar.len() % RECORD, 0);
        let h = &tar[..TAR_BLOCK];
        assert_eq!(&h[..9], b"disk.raw\0");
        assert_eq!(h[156], b'S');
        assert_eq!(&h[257..265], b"ustar  \0");
        let field = |at: usize, len: usize| {
            u64::from_str_radix(std::str::from_utf8(&h[at..at + len - 1]).unwrap(), 8).unwrap()
        };
        assert_eq!(field(124, 12), 2048, "stored bytes");
        assert_eq!(field(483, 12), size as u64, "real size");
        assert_eq!(field(386 + 24, 12), (1 << 20) + 512);
        let mut sum = 0u32;
        for (i, b) in h.iter().enumerate() {
            sum += if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            };
        }
        assert_eq!(field(148, 7), u64::from(sum), "header checksum");
        assert_eq!(&tar[TAR_BLOCK..TAR_BLOCK + 1024], &disk[..1024]);
        assert_eq!(
            &tar[TAR_BLOCK + 1024..TAR_BLOCK + 1536],
            &disk[(1 << 20) + 512..(1 << 20) + 1024]
        );
        // GNU tar itself restores the disk, holes and all, where it is installed.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("d.tar.gz"), &gz).unwrap();
        let status = std::process::Command::new("tar")
            .args(["-xzf", "d.tar.gz"])
            .current_dir(dir.path())
            .status();
        if let Ok(status) = status {
            assert!(status.success());
            assert_eq!(std::fs::read(dir.path().join("disk.raw")).unwrap(), disk);
        }
    }

    #[test]
    fn many_regions_use_extension_headers() {
        let regions: Vec<(u64, u64)> = (0..30).map(|i| (i * 4096, 512)).collect();
        let h = sparse_headers("disk.raw", 30 * 4096, &regions, 0);
        assert_eq!(
            h.len(),
            3 * TAR_BLOCK,
            "4 in the header, 21 + 5 in two extensions"
        );
        assert_eq!(h[482], 1);
        assert_eq!(h[TAR_BLOCK + 504], 1);
        assert_eq!(h[2 * TAR_BLOCK + 504], 0);
    }
}
