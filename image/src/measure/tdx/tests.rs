use super::*;
use std::process::Command;

const KIB: usize = 1024;

/// A section as the metadata stores it: (data offset, raw size, GPA, size, type, attributes).
type RawSection = (u32, u32, u64, u64, u32, u32);

/// `Tdvf::parse` on a `len`-byte firmware with these sections: contents a fixed byte pattern,
/// the TDVF metadata 4 KiB before the end, and an OVMF GUIDed table (an unrelated entry, then the
/// TDX metadata offset) ending 32 bytes before the end, as in OVMF.
fn firmware(len: usize, sections: &[RawSection]) -> Vec<u8> {
    firmware_with(len, sections, true)
}

fn firmware_with(len: usize, sections: &[RawSection], tdx_entry: bool) -> Vec<u8> {
    let mut fw: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let meta_at = len - 4 * KIB;
    let mut meta = Vec::new();
    meta.extend(b"TDVF");
    meta.extend(((16 + 32 * sections.len()) as u32).to_le_bytes());
    meta.extend(1u32.to_le_bytes());
    meta.extend((sections.len() as u32).to_le_bytes());
    for &(data_offset, raw, gpa, size, kind, attributes) in sections {
        meta.extend(data_offset.to_le_bytes());
        meta.extend(raw.to_le_bytes());
        meta.extend(gpa.to_le_bytes());
        meta.extend(size.to_le_bytes());
        meta.extend(kind.to_le_bytes());
        meta.extend(attributes.to_le_bytes());
    }
    fw[meta_at..meta_at + meta.len()].copy_from_slice(&meta);

    let mut table = Vec::new();
    // An unrelated entry (the SEV hash table GUID) with 4 bytes of data.
    table.extend([1, 2, 3, 4]);
    table.extend(22u16.to_le_bytes());
    table.extend(guid_bytes(
        0x7255371f,
        0x3a3b,
        0x4b04,
        *b"\x92\x7b\x1d\xa6\xef\xa8\xd4\x54",
    ));
    if tdx_entry {
        table.extend(((len - meta_at) as u32).to_le_bytes());
        table.extend(22u16.to_le_bytes());
        table.extend(TDX_METADATA_OFFSET_GUID);
    }
    table.extend(((table.len() + 18) as u16).to_le_bytes());
    table.extend(OVMF_TABLE_FOOTER_GUID);
    let end = len - BYTES_AFTER_TABLE_FOOTER;
    fw[end - table.len()..end].copy_from_slice(&table);
    fw
}

/// 64 KiB at 0xffff0000: a CFV (8 KiB, not measured) and a BFV (the rest, MR.EXTEND), then a
/// TD HOB and temporary memory below 16 MiB.
fn synthetic_sections() -> Vec<RawSection> {
    vec![
        (0x2000, 0xe000, 0xffff_2000, 0xe000, 0, ATTRIBUTE_MR_EXTEND),
        (0, 0x2000, 0xffff_0000, 0x2000, 1, 0),
        (0, 0, 0x80_9000, 0x2000, 2, 0),
        (0, 0, 0x80_0000, 0x6000, 3, 0),
    ]
}

fn mrtd(fw: &[u8]) -> String {
    hex::encode(Tdvf::parse(fw).unwrap().mrtd())
}

/// The same bytes measured by a peer implementation: `dstack-mr tdx-measurement-cbor` of
/// Dstack-TEE/dstack at commit 312dc605 (its `single_pass` MRTD, the order upstream KVM uses),
/// run on this firmware.
#[test]
fn mrtd_of_a_synthetic_tdvf_matches_a_peer_implementation() {
    let fw = firmware(64 * KIB, &synthetic_sections());
    assert_eq!(
        mrtd(&fw),
        "d82fed5bc8c2cddf0cdac4bc2a104fb46f987e637f2babf8e69171c5b94210435101ff862e9747f61289fd6a480ec676"
    );
}

#[test]
fn mrtd_covers_measured_contents_and_every_address_and_order() {
    let sections = synthetic_sections();
    let fw = firmware(64 * KIB, &sections);
    let base = mrtd(&fw);

    // A byte of the BFV (MR.EXTEND) changes MRTD.
    let mut bfv = fw.clone();
    bfv[0x8000] ^= 1;
    assert_ne!(mrtd(&bfv), base);
    // A byte of the CFV (no MR.EXTEND) does not: only its addresses count.
    let mut cfv = fw.clone();
    cfv[0x1000] ^= 1;
    assert_eq!(mrtd(&cfv), base);
    // The order of the sections does.
    let mut swapped = sections.clone();
    swapped.swap(2, 3);
    assert_ne!(mrtd(&firmware(64 * KIB, &swapped)), base);
    // So do the addresses of memory-only sections.
    let mut moved = sections.clone();
    moved[3].2 = 0x81_0000;
    assert_ne!(mrtd(&firmware(64 * KIB, &moved)), base);
    // And the MR.EXTEND attribute.
    let mut unmeasured = sections.clone();
    unmeasured[0].5 = 0;
    assert_ne!(mrtd(&firmware(64 * KIB, &unmeasured)), base);
}

fn parse_error(fw: &[u8]) -> String {
    match Tdvf::parse(fw) {
        Ok(tdvf) => panic!("accepted: {:?}", tdvf.sections),
        Err(e) => e.to_string(),
    }
}

#[test]
fn firmware_without_tdx_metadata_is_refused() {
    let fw = firmware_with(64 * KIB, &synthetic_sections(), false);
    let e = parse_error(&fw);
    assert!(
        e.contains("no TDX metadata") && e.contains("not a TDVF"),
        "{e}"
    );
    let e = parse_error(&[0u8; 64 * KIB]);
    assert!(e.contains("no OVMF GUIDed table footer"), "{e}");
    let e = parse_error(&[0u8; 20]);
    assert!(e.contains("no OVMF GUIDed table footer"), "{e}");
}

#[test]
fn truncated_or_malformed_metadata_is_refused() {
    let sections = synthetic_sections();
    let fw = firmware(64 * KIB, &sections);

    // The table's length reaching before the file's start.
    let mut long_table = fw.clone();
    let at = fw.len() - BYTES_AFTER_TABLE_FOOTER - 18;
    long_table[at..at + 2].copy_from_slice(&u16::MAX.to_le_bytes());
    let mut short = long_table[fw.len() - 0x8000..].to_vec();
    short[..16].fill(0);
    assert!(parse_error(&short).contains("past the start of the file"));

    // The metadata offset pointing before the start of the file.
    let mut far = fw.clone();
    let entry = fw.len() - BYTES_AFTER_TABLE_FOOTER - 18 - 22;
    far[entry..entry + 4].copy_from_slice(&(fw.len() as u32 + 16).to_le_bytes());
    assert!(parse_error(&far).contains("before the start of the file"));

    // A BFV whose data runs past the end of the file.
    let mut past = sections.clone();
    past[0].3 = 0x10000;
    let e = parse_error(&firmware(64 * KIB, &past));
    assert!(
        e.contains("section 0") && e.contains("past the end of the file"),
        "{e}"
    );

    // A section count the length does not match.
    let mut count = fw.clone();
    let meta = fw.len() - 4 * KIB;
    count[meta + 12..meta + 16].copy_from_slice(&5u32.to_le_bytes());
    assert!(parse_error(&count).contains("does not match"));

    // No signature.
    let mut unsigned = fw.clone();
    unsigned[meta] = b'X';
    assert!(parse_error(&unsigned).contains("no TDVF signature"));
}

#[test]
fn bad_sections_are_refused() {
    let sections = synthetic_sections();
    let refuse = |change: &dyn Fn(&mut Vec<RawSection>), expect: &str| {
        let mut s = sections.clone();
        change(&mut s);
        let e = parse_error(&firmware(64 * KIB, &s));
        assert!(e.contains(expect), "{expect:?} not in {e:?}");
    };
    refuse(&|s| s[3].2 = 0x80_8000, "overlaps");
    refuse(&|s| s[2].2 = 0x80_9800, "not page aligned");
    refuse(&|s| s[2].4 = 4, "type 4");
    refuse(&|s| s[2].1 = 0x1000, "memory-only section with file data");
    refuse(&|s| s[1].1 = 0, "firmware volume without data");
    refuse(&|s| s[3].3 = 0, "empty");
    refuse(&|s| s[2].5 = ATTRIBUTE_MR_EXTEND, "MR.EXTEND on the TD HOB");
    refuse(&|s| s.truncate(1), "1 sections (QEMU wants at least 2)");
}

/// A minimal PE32+ image: headers in the first 512 bytes, one 512-byte section, `extra`
/// trailing bytes.
fn tiny_pe(fill: u8, extra: usize) -> Vec<u8> {
    let mut pe = vec![0u8; 0x400 + extra];
    pe[0..2].copy_from_slice(b"MZ");
    pe[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    pe[0x40..0x44].copy_from_slice(b"PE\0\0");
    let coff = 0x44;
    pe[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
    pe[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes());
    pe[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
    pe[coff + 18..coff + 20].copy_from_slice(&0x0206u16.to_le_bytes());
    let opt = coff + 20;
    pe[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
    pe[opt + 16..opt + 20].copy_from_slice(&0x1000u32.to_le_bytes()); // entry point
    pe[opt + 32..opt + 36].copy_from_slice(&0x1000u32.to_le_bytes()); // section alignment
    pe[opt + 36..opt + 40].copy_from_slice(&0x200u32.to_le_bytes()); // file alignment
    pe[opt + 56..opt + 60].copy_from_slice(&0x2000u32.to_le_bytes()); // size of image
    pe[opt + 60..opt + 64].copy_from_slice(&0x200u32.to_le_bytes()); // size of headers
    pe[opt + 68..opt + 70].copy_from_slice(&10u16.to_le_bytes()); // EFI application
    pe[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes()); // data directories
    let section = opt + 240;
    pe[section..section + 5].copy_from_slice(b".text");
    pe[section + 8..section + 12].copy_from_slice(&0x200u32.to_le_bytes());
    pe[section + 12..section + 16].copy_from_slice(&0x1000u32.to_le_bytes());
    pe[section + 16..section + 20].copy_from_slice(&0x200u32.to_le_bytes());
    pe[section + 20..section + 24].copy_from_slice(&0x200u32.to_le_bytes());
    pe[0x200..0x400].fill(fill);
    pe
}

#[test]
fn authenticode_skips_the_checksum_and_covers_sections_and_trailing_data() {
    let base = kernel_authenticode_sha384(&tiny_pe(0x90, 0)).unwrap();
    let mut checksum = tiny_pe(0x90, 0);
    checksum[0x44 + 20 + 64] = 0xff;
    assert_eq!(kernel_authenticode_sha384(&checksum).unwrap(), base);
    assert_ne!(kernel_authenticode_sha384(&tiny_pe(0x91, 0)).unwrap(), base);
    assert_ne!(kernel_authenticode_sha384(&tiny_pe(0x90, 8)).unwrap(), base);
    let e = kernel_authenticode_sha384(b"\x7fELF not a PE").unwrap_err();
    assert!(e.contains("not a PE32+ image"), "{e}");
}

/// The Authenticode hashes of the kernel the image tool caches, against Debian's tools: pesign
/// and osslsigncode (both SHA-256, `pesign -h -i` and `osslsigncode verify` of a copy signed
/// with a throwaway key) and osslsigncode's SHA-384 (`sign -h sha384`), recorded for the pinned
/// cloud kernel. Other kernels in the cache are checked against `pesign` if it is installed.
#[test]
fn authenticode_of_real_kernels_matches_debian_tools() {
    const PINNED_KERNEL_SHA256: &str =
        "391d229a7c641821b7414d001c090043d977e11daf865362d36ea832ccf0dd69";
    const PINNED_AUTHENTICODE_SHA256: &str =
        "fd20596084ffebd78ec92779e01262144b049e0e4e9ed86c6ded7001526d5388";
    const PINNED_AUTHENTICODE_SHA384: &str = "3cac0f5c26cf6858195eb3b216eab4baf90428755331b81217dc28e5494b0d511d588e85e66c0375c31fdc3974f6b882";
    let Some(cache) = crate::util::default_cache_dir() else {
        eprintln!("skipped: no XDG_CACHE_HOME or HOME");
        return;
    };
    let kernels: Vec<PathBuf> = std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("kernel-"))
        .flat_map(|e| {
            std::fs::read_dir(e.path().join("boot"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .collect();
    if kernels.is_empty() {
        eprintln!(
            "skipped: no {}/kernel-*/boot/vmlinuz-* (run the image tool once)",
            cache.display()
        );
        return;
    }
    for path in kernels {
        let bytes = std::fs::read(&path).unwrap();
        let sha384 = hex::encode(kernel_authenticode_sha384(&bytes).unwrap());
        let pe = object::read::pe::PeFile64::parse(&bytes[..]).unwrap();
        let mut hasher = sha2::Sha256::new();
        authenticode::authenticode_digest(&pe, &mut hasher).unwrap();
        let sha256 = hex::encode(hasher.finalize());
        if crate::util::sha256_hex(&bytes) == PINNED_KERNEL_SHA256 {
            assert_eq!(sha256, PINNED_AUTHENTICODE_SHA256, "{}", path.display());
            assert_eq!(sha384, PINNED_AUTHENTICODE_SHA384, "{}", path.display());
        }
        match Command::new("pesign")
            .arg("-h")
            .arg("-i")
            .arg(&path)
            .output()
        {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                let theirs = text.trim().trim_start_matches("hash:").trim();
                assert_eq!(sha256, theirs, "pesign on {}", path.display());
            }
            _ => eprintln!(
                "pesign not available: {} checked by value only",
                path.display()
            ),
        }
    }
}

#[test]
fn load_options_are_the_widened_command_line_with_the_initrd_word() {
    let options = load_options("a b", true).unwrap().unwrap();
    let expected: Vec<u8> = "a b initrd=initrd\0"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    assert_eq!(options, expected);
    assert_eq!(
        load_options("", true).unwrap().unwrap().len(),
        2 * " initrd=initrd\0".len()
    );
    assert_eq!(load_options("", false).unwrap(), None);
    assert!(load_options("é", false).unwrap_err().contains("ASCII"));
}

/// The LoadOptions digest of a command line as the peer implementation computes it
/// (dstack-mr's `cmdline_sha384` of the same command line with an initrd, same commit as above).
#[test]
fn load_options_digest_matches_a_peer_implementation() {
    let cmdline = "console=ttyS0 panic=-1 quiet dstack.rootfs_hash=\
        2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881";
    let options = load_options(cmdline, true).unwrap().unwrap();
    assert_eq!(
        hex::encode(sha384(&options)),
        "fa1802f5931c20b1b84bea4a209f621afc72c71f4f94a62ee328c88d92a949a7f6c923fa566debbd867235ae28b1a3ab"
    );
}

#[test]
fn replay_extends_from_zero() {
    assert_eq!(replay(&[]), [0u8; 48]);
    let event = sha384(b"event");
    let mut hasher = Sha384::new();
    hasher.update([0u8; 48]);
    hasher.update(event);
    let once: [u8; 48] = hasher.finalize().into();
    assert_eq!(replay(&[event]), once);
    assert_ne!(replay(&[event, event]), once);
}

fn values(m: &Measurement) -> &BTreeMap<String, String> {
    match m {
        Measurement::Computed { values, .. } => values,
        Measurement::NotComputed { reason } => panic!("not computed: {reason}"),
    }
}

#[test]
fn each_input_changes_only_its_registers() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("OVMF.fd"), firmware(64 * KIB, &synthetic_sections())).unwrap();
    std::fs::write(path("vmlinuz"), tiny_pe(0x90, 0)).unwrap();
    std::fs::write(path("initrd.img"), b"initrd").unwrap();
    let params = TdxParams {
        tdvf: path("OVMF.fd"),
        pin: None,
    };
    let measure = |cmdline: &str, initrd: Option<&Path>| {
        let m = tdx_measurements(&params, &path("vmlinuz"), initrd, cmdline).unwrap();
        values(&m).clone()
    };
    let initrd = path("initrd.img");
    let base = measure("console=ttyS0", Some(&initrd));
    assert_eq!(
        base.keys().collect::<Vec<_>>(),
        ["mrtd", "rtmr1", "rtmr2", "rtmr3"]
    );
    assert!(base.values().all(|v| v.len() == 96));
    assert_eq!(base["rtmr3"], "00".repeat(48));
    assert_eq!(
        base["mrtd"],
        mrtd(&firmware(64 * KIB, &synthetic_sections()))
    );

    let differing = |other: &BTreeMap<String, String>| {
        base.keys()
            .filter(|k| base[*k] != other[*k])
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        differing(&measure("console=ttyS1", Some(&initrd))),
        ["rtmr2"]
    );
    assert_eq!(differing(&measure("console=ttyS0", None)), ["rtmr2"]);
    std::fs::write(&initrd, b"initrD").unwrap();
    assert_eq!(
        differing(&measure("console=ttyS0", Some(&initrd))),
        ["rtmr2"]
    );
    std::fs::write(&initrd, b"initrd").unwrap();
    std::fs::write(path("vmlinuz"), tiny_pe(0x91, 0)).unwrap();
    assert_eq!(
        differing(&measure("console=ttyS0", Some(&initrd))),
        ["rtmr1"]
    );
    std::fs::write(path("vmlinuz"), tiny_pe(0x90, 0)).unwrap();
    let mut fw = firmware(64 * KIB, &synthetic_sections());
    fw[0x8000] ^= 1;
    std::fs::write(path("OVMF.fd"), fw).unwrap();
    assert_eq!(
        differing(&measure("console=ttyS0", Some(&initrd))),
        ["mrtd"]
    );

    // The manifest entry says what RTMR[0] is not and what the values assume.
    let m = tdx_measurements(&params, &path("vmlinuz"), Some(&initrd), "x").unwrap();
    let Measurement::Computed { parameters, .. } = m else {
        unreachable!()
    };
    assert!(parameters["rtmr0"].starts_with("not computed: "));
    assert!(!parameters.contains_key("tdvf_version"));

    // A kernel that is not a PE image and a firmware that is not a TDVF are refused by name.
    std::fs::write(path("vmlinuz"), b"not a kernel").unwrap();
    let e = tdx_measurements(&params, &path("vmlinuz"), None, "").unwrap_err();
    assert!(e.to_string().contains("vmlinuz"), "{e}");
    std::fs::write(path("vmlinuz"), tiny_pe(0x90, 0)).unwrap();
    std::fs::write(path("OVMF.fd"), vec![0u8; 64 * KIB]).unwrap();
    let e = tdx_measurements(&params, &path("vmlinuz"), None, "").unwrap_err();
    assert!(e.to_string().contains("OVMF.fd"), "{e}");
}

/// The pinned TDVF, if the image tool's cache has it (tests do not download): its sections and
/// its MRTD, which the peer implementation (dstack-mr, single pass, see above) computes as
/// well.
#[test]
fn pinned_tdvf_mrtd_matches_a_peer_implementation() {
    let Some(cache) = crate::util::default_cache_dir() else {
        eprintln!("skipped: no XDG_CACHE_HOME or HOME");
        return;
    };
    let unpacked = cache
        .join(format!("tdvf-{}", &TDVF_PIN.deb.sha256[..16]))
        .join("OVMF.fd");
    let deb = cache.join("debs").join(TDVF_PIN.deb.file_name());
    if !unpacked.is_file() && !deb.is_file() {
        eprintln!(
            "skipped: neither {} nor {} (fetch_tdvf puts them there)",
            unpacked.display(),
            deb.display()
        );
        return;
    }
    let path = fetch_tdvf(&cache).unwrap();
    let image = std::fs::read(&path).unwrap();
    let tdvf = Tdvf::parse(&image).unwrap();
    let layout: Vec<_> = tdvf
        .sections
        .iter()
        .map(|s| (s.kind, s.gpa, s.size, s.mr_extend()))
        .collect();
    use SectionKind::*;
    assert_eq!(
        layout,
        [
            (Bfv, 0xffc8_4000, 0x37_c000, true),
            (Cfv, 0xffc0_0000, 0x8_4000, false),
            (TempMem, 0x81_1000, 0xf000, false),
            (TempMem, 0x80_b000, 0x2000, false),
            (TdHob, 0x80_9000, 0x2000, false),
            (TempMem, 0x80_0000, 0x6000, false),
        ]
    );
    assert_eq!(
        hex::encode(tdvf.mrtd()),
        "bdc6fb145880f06f30c8b346b8dce2a99d9351b56892df22f80fcf6574caa9f9c31df8e8576d53b4d0cd1c3f28910e11"
    );
}
