//! The GUID partition table (UEFI 2.10 §5.3): a protective MBR in LBA 0, the primary header in
//! LBA 1 and its 128 entries of 128 bytes in LBA 2–33, the backup entries in the 32 blocks before
//! the last and the backup header in the last block; both headers with their CRC32 and the
//! entries' CRC32. 512-byte blocks.

pub const BLOCK: u64 = 512;
pub const ENTRIES: u32 = 128;
pub const ENTRY_SIZE: u32 = 128;
const ENTRY_BLOCKS: u64 = (ENTRIES as u64 * ENTRY_SIZE as u64) / BLOCK;
pub const HEADER_SIZE: usize = 92;

/// `C12A7328-F81F-11D2-BA4B-00A0C93EC93B`: EFI system partition.
pub const ESP_TYPE: Guid = Guid(0xc12a7328_f81f_11d2_ba4b_00a0c93ec93b);
/// `4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709`: root partition, x86-64 (Discoverable Partitions).
pub const ROOT_X86_64_TYPE: Guid = Guid(0x4f68bce3_e8cd_4db1_96e7_fbcaf984b709);

/// A GUID in its textual order (`00112233-4455-6677-8899-aabbccddeeff` is `0x0011…ff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guid(pub u128);

impl Guid {
    /// A version-4-shaped GUID from the first 16 bytes of a hash (stable for the same input).
    pub fn from_hash(hash: &[u8; 32]) -> Guid {
        let mut b: [u8; 16] = hash[..16].try_into().unwrap_or([0; 16]);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Guid(u128::from_be_bytes(b))
    }

    /// The mixed-endian form stored on disk: the first three fields little-endian.
    pub fn to_disk(self) -> [u8; 16] {
        let b = self.0.to_be_bytes();
        let mut out = b;
        out[0..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
        out[4..6].copy_from_slice(&[b[5], b[4]]);
        out[6..8].copy_from_slice(&[b[7], b[6]]);
        out
    }
}

impl std::fmt::Display for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = format!("{:032x}", self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

/// One partition: blocks `first..=last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub type_guid: Guid,
    pub guid: Guid,
    pub first: u64,
    pub last: u64,
    /// GPT attribute bits (e.g. bit 60: read-only).
    pub attributes: u64,
    pub name: String,
}

/// The first block a partition may use (after the primary entries), and the last (before the
/// backup entries), on a disk of `blocks` blocks.
pub fn usable(blocks: u64) -> (u64, u64) {
    (2 + ENTRY_BLOCKS, blocks - 2 - ENTRY_BLOCKS)
}

fn entries(partitions: &[Partition]) -> Vec<u8> {
    let mut out = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    for (i, p) in partitions.iter().enumerate() {
        let e = &mut out[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&p.type_guid.to_disk());
        e[16..32].copy_from_slice(&p.guid.to_disk());
        e[32..40].copy_from_slice(&p.first.to_le_bytes());
        e[40..48].copy_from_slice(&p.last.to_le_bytes());
        e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
        for (j, unit) in p.name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&unit.to_le_bytes());
        }
    }
    out
}

fn header(blocks: u64, disk: Guid, entries_crc: u32, primary: bool) -> [u8; HEADER_SIZE] {
    let (first_usable, last_usable) = usable(blocks);
    let (my, alternate, entries_at) = if primary {
        (1, blocks - 1, 2)
    } else {
        (blocks - 1, 1, blocks - 1 - ENTRY_BLOCKS)
    };
    let mut h = [0u8; HEADER_SIZE];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
    h[24..32].copy_from_slice(&my.to_le_bytes());
    h[32..40].copy_from_slice(&alternate.to_le_bytes());
    h[40..48].copy_from_slice(&first_usable.to_le_bytes());
    h[48..56].copy_from_slice(&last_usable.to_le_bytes());
    h[56..72].copy_from_slice(&disk.to_disk());
    h[72..80].copy_from_slice(&entries_at.to_le_bytes());
    h[80..84].copy_from_slice(&ENTRIES.to_le_bytes());
    h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
    h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
    let crc = crc32fast::hash(&h);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The protective MBR: one partition of type 0xEE over the whole disk (capped at 2^32-1 blocks).
fn protective_mbr(blocks: u64) -> [u8; BLOCK as usize] {
    let mut m = [0u8; BLOCK as usize];
    let p = &mut m[446..462];
    p[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    p[4] = 0xee;
    p[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    p[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(blocks - 1).unwrap_or(u32::MAX);
    p[12..16].copy_from_slice(&size.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xaa;
    m
}

/// The partition table's blocks: `(head, tail)` — the bytes for LBA 0..34 and for the last 33
/// blocks of a disk of `blocks` blocks.
pub fn table(blocks: u64, disk: Guid, partitions: &[Partition]) -> (Vec<u8>, Vec<u8>) {
    let array = entries(partitions);
    let crc = crc32fast::hash(&array);
    let mut head = protective_mbr(blocks).to_vec();
    let mut primary = header(blocks, disk, crc, true).to_vec();
    primary.resize(BLOCK as usize, 0);
    head.extend_from_slice(&primary);
    head.extend_from_slice(&array);
    let mut tail = array;
    let mut backup = header(blocks, disk, crc, false).to_vec();
    backup.resize(BLOCK as usize, 0);
    tail.extend_from_slice(&backup);
    (head, tail)
}

/// What a UEFI firmware logs as EV_EFI_GPT_EVENT (UEFI_GPT_DATA, TCG PC Client PFP §10.4.4;
/// edk2 `Tcg2MeasureGptTable`): the primary header's 92 bytes, the number of used entries as a
/// u64, then those entries in table order.
pub fn gpt_event_data(head: &[u8]) -> Vec<u8> {
    let header = &head[BLOCK as usize..BLOCK as usize + HEADER_SIZE];
    let array = &head[2 * BLOCK as usize..(2 + ENTRY_BLOCKS) as usize * BLOCK as usize];
    let used: Vec<&[u8]> = array
        .chunks(ENTRY_SIZE as usize)
        .filter(|e| e[..16].iter().any(|&b| b != 0))
        .collect();
    let mut out = header.to_vec();
    out.extend_from_slice(&(used.len() as u64).to_le_bytes());
    for e in used {
        out.extend_from_slice(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn guids_print_and_store_as_uefi_says() {
        // The ESP type GUID as every partitioning tool stores it.
        assert_eq!(
            ESP_TYPE.to_disk(),
            [
                0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
                0xc9, 0x3b
            ]
        );
        assert_eq!(ESP_TYPE.to_string(), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        let g = Guid::from_hash(&[0xff; 32]).to_string();
        assert_eq!(&g[14..15], "4", "{g}");
        assert_eq!(&g[19..20], "b", "{g}");
    }

    #[test]
    fn headers_entries_and_backup_are_consistent() {
        let blocks = 2 * 1024 * 1024; // 1 GiB
        let parts = [
            Partition {
                type_guid: ESP_TYPE,
                guid: Guid(1),
                first: 2048,
                last: 133_119,
                attributes: 0,
                name: "ESP".into(),
            },
            Partition {
                type_guid: ROOT_X86_64_TYPE,
                guid: Guid(2),
                first: 133_120,
                last: 200_000,
                attributes: 1 << 60,
                name: "sw-root".into(),
            },
        ];
        let (head, tail) = table(blocks, Guid(7), &parts);
        assert_eq!(head.len(), 34 * 512);
        assert_eq!(tail.len(), 33 * 512);
        // Protective MBR.
        assert_eq!(head[446 + 4], 0xee);
        assert_eq!(u32_at(&head, 446 + 8), 1);
        assert_eq!(u32_at(&head, 446 + 12), (blocks - 1) as u32);
        assert_eq!(&head[510..512], &[0x55, 0xaa]);
        let primary = &head[512..512 + HEADER_SIZE];
        let backup = &tail[32 * 512..32 * 512 + HEADER_SIZE];
        for (h, my, alt, entries_at) in [
            (primary, 1, blocks - 1, 2),
            (backup, blocks - 1, 1, blocks - 33),
        ] {
            assert_eq!(&h[..8], b"EFI PART");
            let mut zeroed = h.to_vec();
            zeroed[16..20].fill(0);
            assert_eq!(u32_at(h, 16), crc32fast::hash(&zeroed), "header CRC");
            assert_eq!(
                (u64_at(h, 24), u64_at(h, 32), u64_at(h, 72)),
                (my, alt, entries_at)
            );
            assert_eq!((u64_at(h, 40), u64_at(h, 48)), (34, blocks - 34));
            assert_eq!(
                u32_at(h, 88),
                crc32fast::hash(&head[1024..1024 + 16384]),
                "entries CRC"
            );
        }
        assert_eq!(
            &head[1024..],
            &tail[..16384],
            "backup entries equal the primary ones"
        );
        let e = &head[1024 + 128..1024 + 256];
        assert_eq!(&e[..16], &ROOT_X86_64_TYPE.to_disk());
        assert_eq!(
            (u64_at(e, 32), u64_at(e, 40), u64_at(e, 48)),
            (133_120, 200_000, 1 << 60)
        );
        assert_eq!(
            &e[56..70],
            "sw-root"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<_>>()
                .as_slice()
        );
        // A changed entry changes the CRC the header carries.
        let mut other = parts.clone();
        other[1].last -= 1;
        assert_ne!(
            table(blocks, Guid(7), &other).0[512 + 88..512 + 92],
            head[512 + 88..512 + 92]
        );
        // The firmware's GPT event: header, count 2, the two entries.
        let event = gpt_event_data(&head);
        assert_eq!(event.len(), 92 + 8 + 2 * 128);
        assert_eq!(&event[..92], primary);
        assert_eq!(u64_at(&event, 92), 2);
        assert_eq!(&event[100..], &head[1024..1024 + 256]);
    }
}
