use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use attest::sealing::SealingRoot;

use super::*;

const ID_A: &str = "7d6c1a52-1f0e-4c43-9d2a-7a4f0e2b9c11";
const ID_B: &str = "0b2f9e40-8c57-4a1d-b3e6-52c0d8f1a7e2";
const ID_C: &str = "c0ffee";

fn key() -> KeySource {
    KeySource::Key(SealingRoot::from_bytes([42; 32]))
}

fn open(dir: &Path) -> StateDir {
    StateDir::open(dir, key()).unwrap()
}

fn record_path(dir: &Path, kind: &str, name: &str) -> PathBuf {
    dir.join("records").join(kind).join(format!("{name}.rec"))
}

type Refusals = Vec<(Option<String>, Refused)>;

/// Names and contents of the loaded records; refused ones as (name, reason).
fn load(state: &StateDir, kind: &str) -> (Vec<(String, Vec<u8>)>, Refusals) {
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for r in state.load_all(kind).unwrap() {
        match r {
            Ok(rec) => ok.push(rec),
            Err(e) => refused.push((e.name, e.reason)),
        }
    }
    (ok, refused)
}

fn three(state: &StateDir) {
    state.put("workers", ID_A, b"script a").unwrap();
    state.put("workers", ID_B, b"script b").unwrap();
    state.put("workers", ID_C, b"").unwrap();
}

#[test]
fn roundtrip_and_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let state = open(tmp.path());
    three(&state);
    state.put("workers", ID_B, b"script b v2").unwrap();
    let (ok, refused) = load(&state, "workers");
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(
        ok,
        vec![
            (ID_B.to_owned(), b"script b v2".to_vec()),
            (ID_A.to_owned(), b"script a".to_vec()),
            (ID_C.to_owned(), b"".to_vec()),
        ]
    );
    assert_eq!(state.get("workers", ID_A).unwrap().unwrap(), b"script a");
    assert_eq!(state.get("workers", "absent").unwrap(), None);
    assert!(load(&state, "nothing-here").0.is_empty());
    // Nothing in clear on disk.
    let raw = fs::read(record_path(tmp.path(), "workers", ID_A)).unwrap();
    assert!(!raw.windows(8).any(|w| w == b"script a"));
}

#[test]
fn records_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    three(&open(tmp.path()));
    let state = open(tmp.path());
    let (ok, refused) = load(&state, "workers");
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(ok.len(), 3);
}

#[test]
fn a_second_open_of_the_same_dir_is_busy() {
    let tmp = tempfile::tempdir().unwrap();
    let _first = open(tmp.path());
    assert!(matches!(
        StateDir::open(tmp.path(), key()),
        Err(StateError::Busy(_))
    ));
}

#[test]
fn another_key_cannot_open_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    three(&open(tmp.path()));
    let other = KeySource::Key(SealingRoot::from_bytes([43; 32]));
    let e = StateDir::open(tmp.path(), other).unwrap_err();
    assert!(
        matches!(
            e,
            StateError::StoreId {
                reason: Refused::Tampered,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn a_flipped_byte_is_refused_as_tampered_and_the_others_load() {
    let tmp = tempfile::tempdir().unwrap();
    let state = open(tmp.path());
    three(&state);
    let path = record_path(tmp.path(), "workers", ID_A);
    let mut raw = fs::read(&path).unwrap();
    let last = raw.len() - 1;
    raw[last - 20] ^= 1; // in the ciphertext
    fs::write(&path, &raw).unwrap();
    let (ok, refused) = load(&state, "workers");
    assert_eq!(ok.len(), 2);
    assert!(
        matches!(
            refused.as_slice(),
            [(Some(n), Refused::Tampered)] if n == ID_A
        ),
        "{refused:?}"
    );
    assert!(matches!(
        state.get("workers", ID_A),
        Err(StateError::Record(RecordError {
            reason: Refused::Tampered,
            ..
        }))
    ));

    // A flip in the authenticated header (the store id's first byte, the name's) is refused too.
    for offset in [5, 30] {
        let path = record_path(tmp.path(), "workers", ID_B);
        state.put("workers", ID_B, b"script b").unwrap();
        let mut raw = fs::read(&path).unwrap();
        raw[offset] ^= 0x40;
        fs::write(&path, &raw).unwrap();
        assert!(
            state.get("workers", ID_B).is_err(),
            "flip at {offset} accepted"
        );
    }
}

#[test]
fn a_truncated_record_is_refused_and_the_others_load() {
    let tmp = tempfile::tempdir().unwrap();
    let state = open(tmp.path());
    three(&state);
    let path = record_path(tmp.path(), "workers", ID_B);
    let raw = fs::read(&path).unwrap();
    for len in [raw.len() - 1, 30, 3, 0] {
        fs::write(&path, &raw[..len]).unwrap();
        let (ok, refused) = load(&state, "workers");
        assert_eq!(ok.len(), 2, "cut to {len}");
        assert!(
            matches!(refused.as_slice(), [(Some(n), Refused::Truncated { .. } | Refused::NotSealed)] if n == ID_B),
            "cut to {len}: {refused:?}"
        );
    }
    // Bytes appended are refused as well.
    let mut longer = raw.clone();
    longer.push(0);
    fs::write(&path, &longer).unwrap();
    assert!(matches!(
        state.get("workers", ID_B),
        Err(StateError::Record(RecordError {
            reason: Refused::Tampered,
            ..
        }))
    ));
}

#[test]
fn a_record_copied_from_another_state_dir_is_foreign_even_under_the_same_key() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let state_a = open(a.path());
    let state_b = open(b.path());
    state_a.put("workers", ID_A, b"mine").unwrap();
    state_b.put("workers", ID_B, b"from b").unwrap();
    state_b.put("workers", ID_A, b"b's version of a").unwrap();
    // Copy B's ID_B in as a new record, and B's ID_A over A's own.
    fs::copy(
        record_path(b.path(), "workers", ID_B),
        record_path(a.path(), "workers", ID_B),
    )
    .unwrap();
    let (ok, refused) = load(&state_a, "workers");
    assert_eq!(ok, vec![(ID_A.to_owned(), b"mine".to_vec())]);
    assert!(matches!(refused.as_slice(), [(Some(n), Refused::Foreign)] if n == ID_B));
    fs::copy(
        record_path(b.path(), "workers", ID_A),
        record_path(a.path(), "workers", ID_A),
    )
    .unwrap();
    assert!(matches!(
        state_a.get("workers", ID_A),
        Err(StateError::Record(RecordError {
            reason: Refused::Foreign,
            ..
        }))
    ));
}

#[test]
fn a_renamed_or_moved_record_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let state = open(tmp.path());
    three(&state);
    // Swap two workers' records.
    fs::rename(
        record_path(tmp.path(), "workers", ID_A),
        record_path(tmp.path(), "workers", "renamed"),
    )
    .unwrap();
    let (ok, refused) = load(&state, "workers");
    assert_eq!(ok.len(), 2);
    assert!(
        matches!(
            refused.as_slice(),
            [(Some(n), Refused::Misplaced { kind, name })] if n == "renamed" && kind == "workers" && name == ID_A
        ),
        "{refused:?}"
    );
    // Into another kind.
    state.put("secrets", "x", &[1; 32]).unwrap();
    fs::copy(
        record_path(tmp.path(), "workers", ID_B),
        record_path(tmp.path(), "secrets", ID_B),
    )
    .unwrap();
    assert!(matches!(
        state.get("secrets", ID_B),
        Err(StateError::Record(RecordError {
            reason: Refused::Misplaced { .. },
            ..
        }))
    ));
}

#[test]
fn leftover_temp_files_are_ignored_and_removed_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    three(&open(tmp.path()));
    let kind_dir = tmp.path().join("records/workers");
    // What a crash between create and rename leaves: a partial temporary file.
    let leftover = kind_dir.join(format!(".{ID_A}.rec.0123456789abcdef.tmp"));
    fs::write(&leftover, b"SWSR\x01half").unwrap();
    let root_leftover = tmp.path().join(".store-id.00.tmp");
    fs::write(&root_leftover, b"").unwrap();
    let state = open(tmp.path());
    assert!(!leftover.exists());
    assert!(!root_leftover.exists());
    // And one appearing while open (a write in progress) is not taken for a record.
    fs::write(&leftover, b"partial").unwrap();
    let (ok, refused) = load(&state, "workers");
    assert_eq!(ok.len(), 3);
    assert!(refused.is_empty(), "{refused:?}");
    // A stray file with another name is reported, not loaded.
    fs::write(kind_dir.join("notes.txt"), b"hi").unwrap();
    let (_, refused) = load(&state, "workers");
    assert!(matches!(refused.as_slice(), [(None, Refused::BadFileName)]));
}

#[test]
fn path_traversal_and_bad_names_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let state = open(tmp.path());
    for bad in [
        "../x",
        "..",
        ".",
        "a/b",
        "",
        "a.b",
        "x\0",
        "é",
        &"a".repeat(129),
    ] {
        assert!(
            matches!(
                state.put("workers", bad, b"x"),
                Err(StateError::InvalidName { what: "name", .. })
            ),
            "name {bad:?} accepted"
        );
        assert!(
            matches!(
                state.put(bad, "ok", b"x"),
                Err(StateError::InvalidName { what: "kind", .. })
            ),
            "kind {bad:?} accepted"
        );
        assert!(state.get("workers", bad).is_err());
        assert!(state.delete("workers", bad).is_err());
        assert!(state.load_all(bad).is_err());
    }
    assert!(!tmp.path().parent().unwrap().join("x.rec").exists());
    state.put("workers", &"a".repeat(128), b"x").unwrap();
}

#[test]
fn dev_key_file_is_created_0600_and_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    {
        let state = StateDir::open(&dir, KeySource::DevFile).unwrap();
        state.put("workers", ID_A, b"dev").unwrap();
    }
    let key_file = dir.join(DEV_ROOT_FILE);
    let meta = fs::metadata(&key_file).unwrap();
    assert_eq!(meta.len(), 32);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let state = StateDir::open(&dir, KeySource::DevFile).unwrap();
    assert_eq!(state.get("workers", ID_A).unwrap().unwrap(), b"dev");
    drop(state);
    // A damaged key file is an error, not a silently new key.
    fs::write(&key_file, b"short").unwrap();
    assert!(matches!(
        StateDir::open(&dir, KeySource::DevFile),
        Err(StateError::DevKey { .. })
    ));
}

#[test]
fn delete_is_durable() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let state = open(tmp.path());
        three(&state);
        assert!(state.delete("workers", ID_B).unwrap());
        assert!(!state.delete("workers", ID_B).unwrap());
        assert!(!state.delete("other-kind", ID_B).unwrap());
    }
    let state = open(tmp.path());
    let names: Vec<String> = load(&state, "workers")
        .0
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, vec![ID_A.to_owned(), ID_C.to_owned()]);
    assert_eq!(state.get("workers", ID_B).unwrap(), None);
}

#[test]
fn a_missing_store_id_next_to_records_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    three(&open(tmp.path()));
    fs::remove_file(tmp.path().join("store-id")).unwrap();
    assert!(matches!(
        StateDir::open(tmp.path(), key()),
        Err(StateError::StoreIdMissing { records: 3, .. })
    ));
}

#[test]
fn secrets_are_created_once_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let first = {
        let state = open(tmp.path());
        let s = state.get_or_create_secret("local-keys").unwrap();
        assert_eq!(state.get_or_create_secret("local-keys").unwrap(), s);
        assert_ne!(state.get_or_create_secret("other").unwrap(), s);
        s
    };
    let state = open(tmp.path());
    assert_eq!(state.get_or_create_secret("local-keys").unwrap(), first);
    // A refused secret is an error, never replaced.
    let path = record_path(tmp.path(), SECRETS_KIND, "local-keys");
    let mut raw = fs::read(&path).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    fs::write(&path, &raw).unwrap();
    assert!(state.get_or_create_secret("local-keys").is_err());
    assert_eq!(fs::read(&path).unwrap(), raw);
}

#[test]
fn records_are_too_large_beyond_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let state = open(tmp.path());
    let big = vec![0u8; MAX_RECORD_BYTES + 1];
    assert!(matches!(
        state.put("workers", ID_A, &big),
        Err(StateError::TooLarge { .. })
    ));
}

#[test]
fn state_dir_is_send_and_sync_and_debug_shows_no_key() {
    fn check<T: Send + Sync>() {}
    check::<StateDir>();
    let tmp = tempfile::tempdir().unwrap();
    let shown = format!("{:?}", open(tmp.path()));
    assert!(shown.contains("store_id"), "{shown}");
}

#[test]
fn a_missing_parent_directory_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/state");
    open(&dir).put("workers", ID_A, b"x").unwrap();
    assert_eq!(open(&dir).get("workers", ID_A).unwrap().unwrap(), b"x");
}
