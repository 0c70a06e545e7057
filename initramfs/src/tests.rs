use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use super::*;

const MTIME: u32 = 1_700_000_000;

type Step<'a> = Box<dyn Fn(&mut Archive) + 'a>;

/// An archive like the image's, built from files in `dir` whose own metadata (times, modes,
/// creation order) differs from run to run.
fn sample(dir: &Path, file_mtime: SystemTime, file_mode: u32, reverse: bool) -> Archive {
    let init = dir.join("init.bin");
    fs::write(&init, b"\x7fELF pretend binary").unwrap();
    fs::set_permissions(&init, fs::Permissions::from_mode(file_mode)).unwrap();
    File::options()
        .write(true)
        .open(&init)
        .unwrap()
        .set_modified(file_mtime)
        .unwrap();
    let mut steps: Vec<Step> = vec![
        Box::new(|a| {
            a.add_file("init", 0o755, Contents::File(init.clone()))
                .unwrap()
        }),
        Box::new(|a| {
            a.add_file(
                "/etc/ssl/certs/ca-certificates.crt",
                0o644,
                Contents::Bytes(b"-----BEGIN CERTIFICATE-----\n".to_vec()),
            )
            .unwrap()
        }),
        Box::new(|a| a.add_char_device("dev/console", 0o600, 5, 1).unwrap()),
        Box::new(|a| {
            a.add_symlink("lib64/ld-linux-x86-64.so.2", "/lib/ld.so")
                .unwrap()
        }),
        Box::new(|a| a.add_dir("proc", 0o555).unwrap()),
    ];
    if reverse {
        steps.reverse();
    }
    let mut archive = Archive::new();
    for step in &steps {
        step(&mut archive);
    }
    archive
}

fn bytes(archive: &Archive, compression: Compression) -> Vec<u8> {
    archive.write(Vec::new(), MTIME, compression).unwrap()
}

#[test]
fn same_entries_give_the_same_bytes_whatever_the_sources_metadata_and_insertion_order() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let first = sample(a.path(), SystemTime::UNIX_EPOCH, 0o700, false);
    let second = sample(
        b.path(),
        SystemTime::now() - Duration::from_secs(3600),
        0o777,
        true,
    );

    for compression in [Compression::None, Compression::Zstd { level: 3 }] {
        let one = bytes(&first, compression);
        assert_eq!(one, bytes(&second, compression), "{compression:?}");
        assert_eq!(one, bytes(&first, compression), "{compression:?} twice");
    }
}

#[test]
fn a_different_mtime_or_content_changes_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let archive = sample(dir.path(), SystemTime::UNIX_EPOCH, 0o755, false);
    let base = bytes(&archive, Compression::None);

    let later = archive.write_cpio(Vec::new(), MTIME + 1).unwrap();
    assert_ne!(base, later);

    fs::write(dir.path().join("init.bin"), b"\x7fELF pretend binarY").unwrap();
    assert_ne!(base, bytes(&archive, Compression::None));
}

#[test]
fn entries_are_sorted_with_parents_first_and_fixed_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let archive = sample(dir.path(), SystemTime::now(), 0o700, true);
    let cpio = bytes(&archive, Compression::None);

    let read = read_cpio(cpio.as_slice()).unwrap();
    let paths: Vec<&str> = read.iter().map(|(info, _)| info.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "dev",
            "dev/console",
            "etc",
            "etc/ssl",
            "etc/ssl/certs",
            "etc/ssl/certs/ca-certificates.crt",
            "init",
            "lib64",
            "lib64/ld-linux-x86-64.so.2",
            "proc",
        ]
    );
    let mode = |path: &str| read.iter().find(|(i, _)| i.path == path).unwrap().0.mode;
    assert_eq!(mode("dev"), 0o040755);
    assert_eq!(mode("dev/console"), 0o020600);
    assert_eq!(
        mode("init"),
        0o100755,
        "the caller's mode, not the file's 0700"
    );
    assert_eq!(mode("lib64/ld-linux-x86-64.so.2"), 0o120777);
    assert_eq!(mode("proc"), 0o040555);
    let (_, init) = read.iter().find(|(i, _)| i.path == "init").unwrap();
    assert_eq!(init, b"\x7fELF pretend binary");
    let (_, link) = read
        .iter()
        .find(|(i, _)| i.path.starts_with("lib64/"))
        .unwrap();
    assert_eq!(link, b"/lib/ld.so");
}

/// Every header field as the kernel reads it: parses the raw newc headers without the cpio crate.
#[test]
fn headers_carry_uid_gid_zero_the_given_mtime_sequential_inodes_and_device_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let archive = sample(dir.path(), SystemTime::now(), 0o700, false);
    let cpio = bytes(&archive, Compression::None);

    let mut offset = 0;
    let mut ino = 0;
    loop {
        let header = std::str::from_utf8(&cpio[offset..offset + 110]).unwrap();
        assert_eq!(&header[..6], "070701");
        let field = |n: usize| u32::from_str_radix(&header[6 + 8 * n..14 + 8 * n], 16).unwrap();
        let name_size = field(11) as usize;
        let name = std::str::from_utf8(&cpio[offset + 110..offset + 110 + name_size - 1]).unwrap();
        let file_size = field(6) as usize;
        if name == "TRAILER!!!" {
            assert_eq!(ino, 10);
            let end = offset + 110 + name_size;
            assert_eq!(cpio.len(), end.next_multiple_of(4));
            break;
        }
        ino += 1;
        assert_eq!(field(0), ino, "{name}: inode");
        assert_eq!((field(2), field(3)), (0, 0), "{name}: uid, gid");
        assert_eq!(field(5), MTIME, "{name}: mtime");
        assert_eq!((field(7), field(8)), (0, 0), "{name}: dev");
        let rdev = (field(9), field(10));
        assert_eq!(
            rdev,
            if name == "dev/console" {
                (5, 1)
            } else {
                (0, 0)
            }
        );
        assert_eq!(field(4), if field(1) & 0o040000 != 0 { 2 } else { 1 });
        let data = (offset + 110 + name_size).next_multiple_of(4);
        offset = (data + file_size).next_multiple_of(4);
    }
}

#[test]
fn zstd_output_is_a_zstd_frame_of_the_cpio() {
    let dir = tempfile::tempdir().unwrap();
    let archive = sample(dir.path(), SystemTime::now(), 0o700, false);
    let compressed = bytes(&archive, Compression::Zstd { level: 19 });

    assert_eq!(&compressed[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    let plain = zstd::stream::decode_all(compressed.as_slice()).unwrap();
    assert_eq!(plain, bytes(&archive, Compression::None));
}

#[test]
fn refuses_bad_paths_duplicates_and_files_under_files() {
    let mut archive = Archive::new();
    for bad in ["", "/", "a//b", "a/./b", "../etc", "a/..", "nul\0"] {
        assert!(
            matches!(archive.add_dir(bad, 0o755), Err(Error::InvalidPath { .. })),
            "{bad:?}"
        );
    }
    archive
        .add_file("bin/runner", 0o755, Contents::Bytes(vec![1]))
        .unwrap();
    assert!(matches!(
        archive.add_file("/bin/runner", 0o755, Contents::Bytes(vec![2])),
        Err(Error::Duplicate { .. })
    ));
    assert!(matches!(
        archive.add_file("bin/runner/x", 0o644, Contents::Bytes(vec![])),
        Err(Error::NotADirectory { .. })
    ));
    archive.add_dir("bin", DIR_MODE).unwrap();
    assert!(matches!(
        archive.add_dir("bin", 0o700),
        Err(Error::Duplicate { .. })
    ));
    assert!(archive.contains("/bin/runner"));
}

#[test]
fn a_source_file_that_is_missing_or_changes_size_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone");
    let mut archive = Archive::new();
    archive
        .add_file("gone", 0o644, Contents::File(path.clone()))
        .unwrap();
    assert!(matches!(
        archive.write_cpio(Vec::new(), MTIME),
        Err(Error::Read { .. })
    ));

    // A "file" whose metadata says 0 bytes but which yields more: /proc files do this.
    let mut archive = Archive::new();
    archive
        .add_file(
            "version",
            0o644,
            Contents::File(PathBuf::from("/proc/self/status")),
        )
        .unwrap();
    assert!(matches!(
        archive.write_cpio(Vec::new(), MTIME),
        Err(Error::SizeChanged { .. })
    ));
}

#[test]
fn source_date_epoch_parses_decimal_seconds_only() {
    assert_eq!(parse_epoch("1700000000").unwrap(), 1_700_000_000);
    assert_eq!(parse_epoch(" 0\n").unwrap(), 0);
    for bad in ["", "-1", "1.5", "0x10", "99999999999"] {
        assert!(parse_epoch(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_tree_holds_every_entry_with_the_archive_modes_whatever_the_umask() {
    let sources = tempfile::tempdir().unwrap();
    let archive = sample(sources.path(), SystemTime::UNIX_EPOCH, 0o600, false);
    let tree = tempfile::tempdir().unwrap();

    // A device node cannot be made in a directory without privileges: refused, not skipped.
    let refused = archive.write_tree(tree.path()).unwrap_err();
    assert!(
        matches!(refused, Error::InvalidPath { ref path, .. } if path == "dev/console"),
        "{refused}"
    );

    let mut archive = Archive::new();
    archive
        .add_file("init", 0o755, Contents::Bytes(b"\x7fELF".to_vec()))
        .unwrap();
    archive
        .add_symlink("etc/resolv.conf", "/run/resolv.conf")
        .unwrap();
    archive.add_dir("tmp", 0o1777).unwrap();
    archive.add_dir("ro", 0o555).unwrap();
    archive
        .add_file("ro/inside", 0o444, Contents::Bytes(b"x".to_vec()))
        .unwrap();
    let tree = tempfile::tempdir().unwrap();
    archive.write_tree(tree.path()).unwrap();

    let mode = |path: &str| {
        fs::symlink_metadata(tree.path().join(path))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_eq!(mode("init"), 0o100755);
    assert_eq!(mode("tmp"), 0o041777);
    assert_eq!(mode("ro"), 0o040555);
    assert_eq!(mode("ro/inside"), 0o100444);
    assert_eq!(mode("etc"), 0o040755);
    assert_eq!(
        fs::read_link(tree.path().join("etc/resolv.conf")).unwrap(),
        Path::new("/run/resolv.conf")
    );
    assert_eq!(fs::read(tree.path().join("ro/inside")).unwrap(), b"x");
}
