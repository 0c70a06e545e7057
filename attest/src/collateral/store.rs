//! Where answers are kept: in memory, optionally in a directory, and (offline mode) in a bundle
//! read at start. An answer is keyed by its request (`amd:/vcek/v1/…`, `intel:/tdx/…`: service
//! and path with query, no host), so a bundle recorded against one mirror serves any other.
//!
//! A bundle is either a JSON file `{"version": 1, "answers": [Entry, …]}` or a directory of
//! `*.json` files holding one `Entry` each (the cache directory's own format, so a cache
//! directory is a bundle). Entries carry the body (base64), the response headers the clients
//! read, and `next_update` (unix seconds; absent = immutable, e.g. a VCEK).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::error::CollateralError;

/// One recorded answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The request key, e.g. `amd:/vcek/v1/Milan/cert_chain`.
    pub key: String,
    /// The response body.
    #[serde(with = "b64")]
    pub body: Vec<u8>,
    /// Response headers the clients read (issuer chains), URL-decoded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Kept until (unix seconds): the answer's own nextUpdate; `None` for immutable answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_update: Option<u64>,
}

impl Entry {
    /// A response header (case-insensitive name).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn fresh_at(&self, now: u64) -> bool {
        self.next_update.is_none_or(|n| now <= n)
    }
}

/// The bundle file format.
#[derive(Serialize, Deserialize)]
struct Bundle {
    version: u32,
    answers: Vec<Entry>,
}

const BUNDLE_VERSION: u32 = 1;

/// How many answers the memory cache keeps. A verifier fetches by whatever chip, TCB, FMSPC or
/// measurement its requesters' evidence names, so without a bound its memory would grow with
/// every new one (the fetch budget only slows that down).
pub(crate) const MEMORY_ENTRIES: usize = 4096;

/// Memory cache (at most `capacity` answers: stale ones go first, then the least recently
/// used), optional cache directory, optional offline bundle.
#[derive(Debug)]
pub(crate) struct Store {
    memory: Mutex<Memory>,
    capacity: usize,
    dir: Option<PathBuf>,
    offline: Option<HashMap<String, Entry>>,
}

/// The memory cache: each answer with the tick of its last use.
#[derive(Debug, Default)]
struct Memory {
    answers: HashMap<String, (Entry, u64)>,
    tick: u64,
}

impl Memory {
    fn get(&mut self, key: &str, now: u64) -> Option<Entry> {
        self.tick += 1;
        let tick = self.tick;
        let (entry, used) = self.answers.get_mut(key).filter(|(e, _)| e.fresh_at(now))?;
        *used = tick;
        Some(entry.clone())
    }

    fn insert(&mut self, entry: Entry, capacity: usize, now: u64) {
        self.tick += 1;
        if !self.answers.contains_key(&entry.key) && self.answers.len() >= capacity {
            self.answers.retain(|_, (e, _)| e.fresh_at(now));
            while self.answers.len() >= capacity.max(1) {
                let Some(oldest) = self
                    .answers
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                self.answers.remove(&oldest);
            }
        }
        self.answers.insert(entry.key.clone(), (entry, self.tick));
    }
}

fn cache_error(path: &Path, reason: impl ToString) -> CollateralError {
    CollateralError::Cache {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl Store {
    pub(crate) fn new(
        dir: Option<PathBuf>,
        offline: Option<&Path>,
    ) -> Result<Self, CollateralError> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).map_err(|e| cache_error(dir, e))?;
        }
        let offline = offline.map(read_bundle).transpose()?;
        Ok(Store {
            memory: Mutex::default(),
            capacity: MEMORY_ENTRIES,
            dir,
            offline,
        })
    }

    /// The same store keeping at most `capacity` answers in memory.
    #[cfg(test)]
    pub(crate) fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Offline: the bundle's answer, fresh or not (the caller's checks refuse a stale one).
    pub(crate) fn offline(&self, key: &str) -> Option<Result<Entry, CollateralError>> {
        let bundle = self.offline.as_ref()?;
        Some(
            bundle
                .get(key)
                .cloned()
                .ok_or_else(|| CollateralError::Offline {
                    missing: key.to_owned(),
                }),
        )
    }

    /// A cached answer still fresh at `now`: memory first, then the directory.
    pub(crate) fn get(&self, key: &str, now: u64) -> Option<Entry> {
        if let Some(e) = self.lock().get(key, now) {
            return Some(e);
        }
        let path = self.dir.as_ref().map(|d| d.join(file_name(key)))?;
        let entry: Entry = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        if entry.key != key || !entry.fresh_at(now) {
            return None;
        }
        self.lock().insert(entry.clone(), self.capacity, now);
        Some(entry)
    }

    /// Keeps a checked answer in memory and, with a cache directory, on disk.
    pub(crate) fn put(&self, entry: Entry) -> Result<(), CollateralError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Some(dir) = &self.dir {
            let path = dir.join(file_name(&entry.key));
            let tmp = path.with_extension("tmp");
            let json = serde_json::to_vec_pretty(&entry).map_err(|e| cache_error(&path, e))?;
            std::fs::write(&tmp, json)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| cache_error(&path, e))?;
        }
        self.lock().insert(entry, self.capacity, now);
        Ok(())
    }

    /// Every answer in memory, sorted by key.
    pub(crate) fn entries(&self) -> Vec<Entry> {
        let mut all: Vec<Entry> = self
            .lock()
            .answers
            .values()
            .map(|(e, _)| e.clone())
            .collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes `entries` as a bundle: a JSON file, or (when `path` is an existing directory) one
/// file per answer.
pub(crate) fn write_bundle(path: &Path, entries: &[Entry]) -> Result<(), CollateralError> {
    if path.is_dir() {
        for entry in entries {
            let file = path.join(file_name(&entry.key));
            let json = serde_json::to_vec_pretty(entry).map_err(|e| cache_error(&file, e))?;
            std::fs::write(&file, json).map_err(|e| cache_error(&file, e))?;
        }
        return Ok(());
    }
    let bundle = Bundle {
        version: BUNDLE_VERSION,
        answers: entries.to_vec(),
    };
    let json = serde_json::to_vec_pretty(&bundle).map_err(|e| cache_error(path, e))?;
    std::fs::write(path, json).map_err(|e| cache_error(path, e))
}

/// Reads a bundle file or directory.
pub(crate) fn read_bundle(path: &Path) -> Result<HashMap<String, Entry>, CollateralError> {
    let entries = if path.is_dir() {
        let mut entries = Vec::new();
        for item in std::fs::read_dir(path).map_err(|e| cache_error(path, e))? {
            let file = item.map_err(|e| cache_error(path, e))?.path();
            if file.extension().is_some_and(|x| x == "json") {
                let bytes = std::fs::read(&file).map_err(|e| cache_error(&file, e))?;
                entries.push(serde_json::from_slice(&bytes).map_err(|e| cache_error(&file, e))?);
            }
        }
        entries
    } else {
        let bytes = std::fs::read(path).map_err(|e| cache_error(path, e))?;
        let bundle: Bundle = serde_json::from_slice(&bytes).map_err(|e| cache_error(path, e))?;
        if bundle.version != BUNDLE_VERSION {
            return Err(cache_error(
                path,
                format!(
                    "bundle version {} (expected {BUNDLE_VERSION})",
                    bundle.version
                ),
            ));
        }
        bundle.answers
    };
    Ok(entries.into_iter().map(|e| (e.key.clone(), e)).collect())
}

/// A readable, collision-free file name for a key: its characters that are safe in a file name,
/// then 16 hex digits of its SHA-256.
fn file_name(key: &str) -> String {
    let readable: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(100)
        .collect();
    let hash = hex::encode(&sha2::Sha256::digest(key.as_bytes())[..8]);
    format!("{readable}-{hash}.json")
}

mod b64 {
    use super::*;

    pub(super) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(key: &str, next_update: Option<u64>) -> Entry {
        Entry {
            key: key.to_owned(),
            body: key.as_bytes().to_vec(),
            headers: BTreeMap::new(),
            next_update,
        }
    }

    #[test]
    fn the_memory_cache_is_bounded_and_drops_stale_then_least_recently_used_answers() {
        let store = Store::new(None, None).unwrap().with_capacity(3);
        let later = u64::MAX / 2;
        store.put(answer("amd:/a", None)).unwrap();
        store.put(answer("amd:/b", None)).unwrap();
        store.put(answer("amd:/stale", Some(1))).unwrap();
        // Full: the stale answer goes first.
        store.put(answer("amd:/c", None)).unwrap();
        assert_eq!(store.entries().len(), 3);
        assert!(store.get("amd:/stale", 0).is_none());
        // `a` used, so `b` is the least recently used when `d` comes.
        assert!(store.get("amd:/a", later).is_some());
        store.put(answer("amd:/d", None)).unwrap();
        let keys: Vec<String> = store.entries().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["amd:/a", "amd:/c", "amd:/d"]);
        // A thousand distinct answers later, still three.
        for i in 0..1000 {
            store.put(answer(&format!("amd:/chip/{i}"), None)).unwrap();
        }
        assert_eq!(store.entries().len(), 3);
        // Replacing an answer already kept evicts nothing.
        store.put(answer("amd:/chip/999", None)).unwrap();
        assert_eq!(store.entries().len(), 3);
    }
}
