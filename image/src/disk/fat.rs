//! The EFI system partition: a FAT32 file system written byte by byte, so it depends on its
//! files alone — every time stamp is `SOURCE_DATE_EPOCH`, the volume serial comes from the
//! caller (derived from the contents), clusters are allocated in order (directories first, depth
//! first), and unused space is zero. 512-byte sectors and clusters; two FATs; FSInfo in sector 1
//! and the backup boot sector in sector 6, as Microsoft's FAT specification lays out FAT32.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FatError {
    #[error("{0:?} is not an upper-case 8.3 name")]
    BadName(String),
    #[error("the files need {needed} clusters, the volume has {available}")]
    Full { needed: u64, available: u64 },
    #[error("a FAT32 volume needs at least 65525 clusters: {0} bytes is too small")]
    TooSmall(u64),
}

pub const SECTOR: usize = 512;
const RESERVED_SECTORS: u64 = 32;
const FATS: u64 = 2;
const MIN_FAT32_CLUSTERS: u64 = 65525;
const END_OF_CHAIN: u32 = 0x0fff_ffff;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
const ATTR_VOLUME_ID: u8 = 0x08;

/// One file to put on the volume: a path of 8.3 names separated by `/`, and its bytes.
pub struct File<'a> {
    pub path: &'a str,
    pub data: &'a [u8],
}

enum Node<'a> {
    Dir {
        name: String,
        children: Vec<Node<'a>>,
    },
    File {
        name: String,
        data: &'a [u8],
    },
}

impl Node<'_> {
    fn name(&self) -> &str {
        match self {
            Node::Dir { name, .. } | Node::File { name, .. } => name,
        }
    }
}

/// `NAME.EXT` as the 11 bytes of a directory entry.
fn short_name(name: &str) -> Result<[u8; 11], FatError> {
    let bad = || FatError::BadName(name.to_owned());
    let (base, ext) = name.split_once('.').unwrap_or((name, ""));
    let ok = |s: &str, max: usize| {
        s.len() <= max
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    if base.is_empty() || !ok(base, 8) || !ok(ext, 3) {
        return Err(bad());
    }
    let mut out = [b' '; 11];
    out[..base.len()].copy_from_slice(base.as_bytes());
    out[8..8 + ext.len()].copy_from_slice(ext.as_bytes());
    Ok(out)
}

fn insert<'a>(dir: &mut Vec<Node<'a>>, parts: &[&str], data: &'a [u8]) {
    match parts {
        [] => {}
        [last] => dir.push(Node::File {
            name: (*last).to_owned(),
            data,
        }),
        [first, rest @ ..] => {
            let index = match dir.iter().position(|n| n.name() == *first) {
                Some(index) => index,
                None => {
                    dir.push(Node::Dir {
                        name: (*first).to_owned(),
                        children: Vec::new(),
                    });
                    dir.len() - 1
                }
            };
            if let Node::Dir { children, .. } = &mut dir[index] {
                insert(children, rest, data);
            }
        }
    }
}

/// FAT's date and time (local time; we write UTC) of a Unix time, clamped to 1980-01-01.
pub fn fat_date_time(epoch: u32) -> (u16, u16) {
    let epoch = u64::from(epoch).max(315_532_800);
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = (((year - 1980).min(127) as u16) << 9) | ((month as u16) << 5) | day as u16;
    let time =
        ((secs / 3600) as u16) << 11 | (((secs / 60) % 60) as u16) << 5 | ((secs % 60) / 2) as u16;
    (date, time)
}

struct Layout {
    total_sectors: u64,
    fat_sectors: u64,
    clusters: u64,
}

fn layout(size: u64) -> Result<Layout, FatError> {
    let total_sectors = size / SECTOR as u64;
    let mut fat_sectors = 1;
    loop {
        let clusters = total_sectors.saturating_sub(RESERVED_SECTORS + FATS * fat_sectors);
        let needed = ((clusters + 2) * 4).div_ceil(SECTOR as u64);
        if needed <= fat_sectors {
            if clusters < MIN_FAT32_CLUSTERS {
                return Err(FatError::TooSmall(size));
            }
            return Ok(Layout {
                total_sectors,
                fat_sectors,
                clusters,
            });
        }
        fat_sectors = needed;
    }
}

/// Writes a FAT32 volume of `size` bytes (`hidden_sectors`: its first LBA on the disk) with
/// `files`, labelled `label`.
pub fn fat32(
    size: u64,
    hidden_sectors: u32,
    serial: u32,
    label: &str,
    epoch: u32,
    files: &[File<'_>],
) -> Result<Vec<u8>, FatError> {
    let l = layout(size)?;
    let mut root = Vec::new();
    for file in files {
        let parts: Vec<&str> = file.path.split('/').collect();
        for part in &parts {
            short_name(part)?;
        }
        insert(&mut root, &parts, file.data);
    }
    let mut label_bytes = [b' '; 11];
    let label_len = label.len().min(11);
    label_bytes[..label_len].copy_from_slice(&label.as_bytes()[..label_len]);

    let mut image = vec![0u8; (l.total_sectors as usize) * SECTOR];
    let data_start = (RESERVED_SECTORS + FATS * l.fat_sectors) as usize * SECTOR;
    let mut fat = vec![0u32; l.clusters as usize + 2];
    fat[0] = 0x0fff_fff8;
    fat[1] = END_OF_CHAIN;
    let (date, time) = fat_date_time(epoch);
    let mut writer = Writer {
        image: &mut image,
        fat: &mut fat,
        next: 2,
        data_start,
        date,
        time,
    };
    writer.dir(&root, 0, Some(label_bytes))?;
    let used = writer.next - 2;

    boot_sector(&mut image, &l, hidden_sectors, serial, &label_bytes);
    let boot: Vec<u8> = image[..SECTOR].to_vec();
    image[6 * SECTOR..7 * SECTOR].copy_from_slice(&boot);
    let mut fsinfo = [0u8; SECTOR];
    fsinfo[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    fsinfo[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    fsinfo[488..492].copy_from_slice(&((l.clusters - u64::from(used)) as u32).to_le_bytes());
    fsinfo[492..496].copy_from_slice(&(used + 2).to_le_bytes());
    fsinfo[508..512].copy_from_slice(&0xaa55_0000u32.to_le_bytes());
    image[SECTOR..2 * SECTOR].copy_from_slice(&fsinfo);
    image[7 * SECTOR..8 * SECTOR].copy_from_slice(&fsinfo);
    for copy in 0..FATS {
        let at = (RESERVED_SECTORS + copy * l.fat_sectors) as usize * SECTOR;
        for (i, entry) in fat.iter().enumerate() {
            image[at + 4 * i..at + 4 * i + 4].copy_from_slice(&entry.to_le_bytes());
        }
    }
    Ok(image)
}

fn boot_sector(image: &mut [u8], l: &Layout, hidden: u32, serial: u32, label: &[u8; 11]) {
    let b = &mut image[..SECTOR];
    b[0..3].copy_from_slice(&[0xeb, 0x58, 0x90]);
    b[3..11].copy_from_slice(b"SWIMAGE ");
    b[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
    b[13] = 1; // sectors per cluster
    b[14..16].copy_from_slice(&(RESERVED_SECTORS as u16).to_le_bytes());
    b[16] = FATS as u8;
    b[21] = 0xf8; // fixed disk
    b[24..26].copy_from_slice(&63u16.to_le_bytes());
    b[26..28].copy_from_slice(&255u16.to_le_bytes());
    b[28..32].copy_from_slice(&hidden.to_le_bytes());
    b[32..36].copy_from_slice(&(l.total_sectors as u32).to_le_bytes());
    b[36..40].copy_from_slice(&(l.fat_sectors as u32).to_le_bytes());
    b[44..48].copy_from_slice(&2u32.to_le_bytes()); // root directory cluster
    b[48..50].copy_from_slice(&1u16.to_le_bytes()); // FSInfo sector
    b[50..52].copy_from_slice(&6u16.to_le_bytes()); // backup boot sector
    b[64] = 0x80;
    b[66] = 0x29;
    b[67..71].copy_from_slice(&serial.to_le_bytes());
    b[71..82].copy_from_slice(label);
    b[82..90].copy_from_slice(b"FAT32   ");
    b[510] = 0x55;
    b[511] = 0xaa;
}

struct Writer<'w> {
    image: &'w mut [u8],
    fat: &'w mut [u32],
    next: u32,
    data_start: usize,
    date: u16,
    time: u16,
}

impl Writer<'_> {
    /// Allocates a chain for `bytes` (at least one cluster) and returns its first cluster.
    fn allocate(&mut self, bytes: usize) -> Result<u32, FatError> {
        let count = bytes.div_ceil(SECTOR).max(1) as u32;
        let available = self.fat.len() as u64 - 2;
        if u64::from(self.next - 2 + count) > available {
            return Err(FatError::Full {
                needed: u64::from(self.next - 2 + count),
                available,
            });
        }
        let first = self.next;
        for c in first..first + count {
            self.fat[c as usize] = if c + 1 == first + count {
                END_OF_CHAIN
            } else {
                c + 1
            };
        }
        self.next += count;
        Ok(first)
    }

    fn offset(&self, cluster: u32) -> usize {
        self.data_start + (cluster as usize - 2) * SECTOR
    }

    fn entry(&self, name: [u8; 11], attr: u8, cluster: u32, size: u32) -> [u8; 32] {
        let mut e = [0u8; 32];
        e[..11].copy_from_slice(&name);
        e[11] = attr;
        for at in [14, 22] {
            e[at..at + 2].copy_from_slice(&self.time.to_le_bytes());
        }
        for at in [16, 18, 24] {
            e[at..at + 2].copy_from_slice(&self.date.to_le_bytes());
        }
        e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
        e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
        e[28..32].copy_from_slice(&size.to_le_bytes());
        e
    }

    /// Writes a directory (the root when `parent` is 0 and `label` is set) and everything in it;
    /// returns its first cluster.
    fn dir(
        &mut self,
        children: &[Node<'_>],
        parent: u32,
        label: Option<[u8; 11]>,
    ) -> Result<u32, FatError> {
        let entries = children.len() + if label.is_some() { 1 } else { 2 };
        let cluster = self.allocate(entries * 32)?;
        let mut table: Vec<[u8; 32]> = Vec::new();
        match label {
            Some(label) => table.push(self.entry(label, ATTR_VOLUME_ID, 0, 0)),
            None => {
                table.push(self.entry(*b".          ", ATTR_DIRECTORY, cluster, 0));
                table.push(self.entry(*b"..         ", ATTR_DIRECTORY, parent, 0));
            }
        }
        // Subdirectories are allocated right after their parent, depth first.
        let this = if label.is_some() { 0 } else { cluster };
        for child in children {
            let name = short_name(child.name())?;
            match child {
                Node::Dir { children, .. } => {
                    let first = self.dir(children, this, None)?;
                    table.push(self.entry(name, ATTR_DIRECTORY, first, 0));
                }
                Node::File { data, .. } => {
                    let first = self.allocate(data.len())?;
                    let at = self.offset(first);
                    self.image[at..at + data.len()].copy_from_slice(data);
                    let size = u32::try_from(data.len()).map_err(|_| FatError::Full {
                        needed: data.len() as u64,
                        available: u64::from(u32::MAX),
                    })?;
                    table.push(self.entry(name, ATTR_ARCHIVE, first, size));
                }
            }
        }
        let mut at = self.offset(cluster);
        let mut c = cluster;
        for (i, e) in table.iter().enumerate() {
            if i > 0 && i % (SECTOR / 32) == 0 {
                c = self.fat[c as usize];
                at = self.offset(c);
            }
            let slot = at + (i % (SECTOR / 32)) * 32;
            self.image[slot..slot + 32].copy_from_slice(e);
        }
        Ok(cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn dates_are_fat_dates() {
        assert_eq!(fat_date_time(0), (0x21, 0)); // clamped to 1980-01-01 00:00
                                                 // 2026-12-04 16:30:10 UTC
        let (date, time) = fat_date_time(1_796_401_810);
        assert_eq!((date >> 9, (date >> 5) & 15, date & 31), (46, 12, 4));
        assert_eq!(
            (time >> 11, (time >> 5) & 63, (time & 31) * 2),
            (16, 30, 10)
        );
    }

    #[test]
    fn bad_names_and_small_volumes_are_refused() {
        let files = [File {
            path: "EFI/boot/x.efi",
            data: b"",
        }];
        assert!(matches!(
            fat32(64 * MIB, 0, 1, "ESP", 0, &files),
            Err(FatError::BadName(_))
        ));
        assert!(matches!(
            fat32(16 * MIB, 0, 1, "ESP", 0, &[]),
            Err(FatError::TooSmall(_))
        ));
    }

    #[test]
    fn the_volume_holds_the_file_where_a_fat32_reader_finds_it() {
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let files = [File {
            path: "EFI/BOOT/BOOTX64.EFI",
            data: &data,
        }];
        let image = fat32(64 * MIB, 2048, 0x1234_5678, "ESP", 1_700_000_000, &files).unwrap();
        assert_eq!(image.len() as u64, 64 * MIB);
        assert_eq!(
            image,
            fat32(64 * MIB, 2048, 0x1234_5678, "ESP", 1_700_000_000, &files).unwrap()
        );
        // Read it back from the BPB alone.
        let u16_at = |at: usize| u16::from_le_bytes([image[at], image[at + 1]]) as usize;
        let u32_at = |at: usize| u32::from_le_bytes(image[at..at + 4].try_into().unwrap()) as usize;
        assert_eq!(&image[510..512], &[0x55, 0xaa]);
        assert_eq!(&image[..SECTOR], &image[6 * SECTOR..7 * SECTOR]);
        assert_eq!(&image[82..90], b"FAT32   ");
        let reserved = u16_at(14);
        let fat_size = u32_at(36);
        let clusters = (u32_at(32) - reserved - 2 * fat_size) / image[13] as usize;
        assert!(clusters >= 65525, "{clusters} clusters: not FAT32");
        let fat_at = reserved * SECTOR;
        assert_eq!(
            &image[fat_at..fat_at + fat_size * SECTOR],
            &image[fat_at + fat_size * SECTOR..fat_at + 2 * fat_size * SECTOR],
            "both FATs equal"
        );
        let data_at = (reserved + 2 * fat_size) * SECTOR;
        let next = |c: usize| u32_at(fat_at + 4 * c) & 0x0fff_ffff;
        let read_chain = |mut c: usize, len: usize| {
            let mut out = Vec::new();
            while out.len() < len {
                let at = data_at + (c - 2) * SECTOR;
                out.extend_from_slice(&image[at..at + SECTOR]);
                c = next(c);
            }
            out.truncate(len);
            out
        };
        let find = |dir_cluster: usize, name: &[u8; 11]| -> (usize, usize, u8) {
            let dir = read_chain(dir_cluster, SECTOR);
            let e = dir
                .chunks(32)
                .find(|e| &e[..11] == name)
                .unwrap_or_else(|| panic!("{:?} missing", String::from_utf8_lossy(name)));
            let cluster = (u16::from_le_bytes([e[20], e[21]]) as usize) << 16
                | u16::from_le_bytes([e[26], e[27]]) as usize;
            (
                cluster,
                u32::from_le_bytes(e[28..32].try_into().unwrap()) as usize,
                e[11],
            )
        };
        let root = u32_at(44);
        assert_eq!(&read_chain(root, 11)[..], b"ESP        ");
        let (efi, _, attr) = find(root, b"EFI        ");
        assert_eq!(attr, ATTR_DIRECTORY);
        let (boot, _, _) = find(efi, b"BOOT       ");
        assert_eq!(find(boot, b"..         ").0, efi);
        assert_eq!(
            find(efi, b"..         ").0,
            0,
            "the root is cluster 0 in '..'"
        );
        let (file, size, _) = find(boot, b"BOOTX64 EFI");
        assert_eq!(size, data.len());
        assert_eq!(read_chain(file, size), data);
        assert_eq!(
            next(file + 5),
            END_OF_CHAIN as usize,
            "3000 bytes: 6 clusters"
        );
    }
}
