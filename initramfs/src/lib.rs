//! Deterministic initramfs archives: newc cpio with fixed metadata, compressed reproducibly.
//!
//! The same entries always give the same bytes, whatever the build machine's clock, umask, user,
//! file-system order or source file times:
//!
//! - entries are written sorted by path (bytewise), so a directory comes before what it holds;
//! - every entry has uid and gid 0, the one `mtime` the caller passes (the image tool takes it from
//!   `SOURCE_DATE_EPOCH`, see [`source_date_epoch`]), the permission bits the caller chose (never
//!   the source file's), inode numbers 1, 2, 3, … in that order, `nlink` 2 for directories and 1
//!   otherwise, and device numbers 0 except the `rdev` of device nodes;
//! - parent directories are added implicitly with mode `0755`;
//! - compression is zstd at a fixed level on one thread ([`Compression`]).
//!
//! The header encoding comes from the [`cpio`] crate (MIT), which lets us set every newc field; the
//! policy above (order, metadata, implicit parents, size checks) is ours.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use cpio::newc::{self, ModeFileType};

/// Permission bits for directories added implicitly as parents.
pub const DIR_MODE: u32 = 0o755;

/// Largest file a newc entry can hold (its size field is 32 bits).
const MAX_FILE_SIZE: u64 = u32::MAX as u64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid archive path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("{path} is already in the archive")]
    Duplicate { path: String },
    #[error("{path} cannot hold {child}: it is not a directory")]
    NotADirectory { path: String, child: String },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is {size} bytes: newc entries hold at most 4 GiB")]
    TooLarge { path: String, size: u64 },
    #[error("{path} changed size while being archived: expected {expected} bytes, read {read}")]
    SizeChanged {
        path: PathBuf,
        expected: u64,
        read: u64,
    },
    #[error("cannot write the archive: {0}")]
    Write(#[source] io::Error),
    #[error("cannot write {path}: {source}")]
    Tree { path: PathBuf, source: io::Error },
    #[error("SOURCE_DATE_EPOCH={value:?} is not a Unix time in seconds that fits in 32 bits")]
    SourceDateEpoch { value: String },
}

/// Where a regular file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// Bytes held in memory.
    Bytes(Vec<u8>),
    /// A file read (streamed) when the archive is written; its size is checked then.
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Directory,
    File(Contents),
    Symlink(String),
    CharDevice { major: u32, minor: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: Kind,
    /// Permission bits only (`0o7777`); the file type comes from `kind`.
    mode: u32,
}

/// How to compress the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// The plain cpio stream.
    None,
    /// One zstd frame at this level (1–22), single-threaded, no checksum: for a given libzstd
    /// version the output depends only on the input. Linux unpacks it with `CONFIG_RD_ZSTD`.
    Zstd { level: i32 },
}

/// The entries of an initramfs, kept sorted by path.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    entries: BTreeMap<String, Node>,
}

/// One entry as listed by [`Archive::entries`] or read back by [`read_cpio`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub path: String,
    /// The full newc mode: file type and permission bits.
    pub mode: u32,
    pub size: u64,
}

impl Archive {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory (and its parents). Adding the same directory again with the same mode is
    /// allowed; a different mode, or a non-directory at `path`, is an error.
    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<(), Error> {
        let path = normalize(path)?;
        self.add_parents(&path)?;
        let node = Node {
            kind: Kind::Directory,
            mode: mode & 0o7777,
        };
        match self.entries.get(&path) {
            Some(existing) if *existing == node => Ok(()),
            Some(_) => Err(Error::Duplicate { path }),
            None => {
                self.entries.insert(path, node);
                Ok(())
            }
        }
    }

    /// Adds a regular file with the given permission bits.
    pub fn add_file(&mut self, path: &str, mode: u32, contents: Contents) -> Result<(), Error> {
        if let Contents::Bytes(bytes) = &contents {
            if bytes.len() as u64 > MAX_FILE_SIZE {
                return Err(Error::TooLarge {
                    path: path.to_owned(),
                    size: bytes.len() as u64,
                });
            }
        }
        self.insert(path, Kind::File(contents), mode)
    }

    /// Adds a symbolic link to `target` (stored as given; absolute targets resolve inside the
    /// initramfs at run time).
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), Error> {
        if target.is_empty() || target.contains('\0') {
            return Err(Error::InvalidPath {
                path: target.to_owned(),
                reason: "a symlink target must be non-empty and without NUL",
            });
        }
        self.insert(path, Kind::Symlink(target.to_owned()), 0o777)
    }

    /// Adds a character device node, e.g. `dev/console` (5, 1), which the kernel opens as the
    /// first process's standard streams before any file system is mounted.
    pub fn add_char_device(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), Error> {
        self.insert(path, Kind::CharDevice { major, minor }, mode)
    }

    /// Whether `path` is in the archive.
    pub fn contains(&self, path: &str) -> bool {
        normalize(path).is_ok_and(|path| self.entries.contains_key(&path))
    }

    /// The contents of the regular file at `path`, if there is one.
    pub fn contents(&self, path: &str) -> Option<&Contents> {
        let path = normalize(path).ok()?;
        match &self.entries.get(&path)?.kind {
            Kind::File(contents) => Some(contents),
            _ => None,
        }
    }

    /// The entries in archive order. The size of a [`Contents::File`] entry is read from the file
    /// system now.
    pub fn entries(&self) -> Result<Vec<EntryInfo>, Error> {
        self.entries
            .iter()
            .map(|(path, node)| {
                Ok(EntryInfo {
                    path: path.clone(),
                    mode: node.full_mode(),
                    size: node.size(path)?,
                })
            })
            .collect()
    }

    /// Writes the archive as an uncompressed newc cpio stream, every entry with `mtime`, and returns
    /// the writer.
    pub fn write_cpio<W: Write>(&self, mut out: W, mtime: u32) -> Result<W, Error> {
        for (index, (path, node)) in self.entries.iter().enumerate() {
            let ino = u32::try_from(index + 1).map_err(|_| Error::TooLarge {
                path: path.clone(),
                size: index as u64,
            })?;
            let header = newc::Builder::new(path)
                .ino(ino)
                .uid(0)
                .gid(0)
                .mtime(mtime)
                .nlink(if node.kind == Kind::Directory { 2 } else { 1 });
            out = match &node.kind {
                Kind::Directory => finish(
                    header
                        .mode(node.mode)
                        .set_mode_file_type(ModeFileType::Directory)
                        .write(out, 0),
                )?,
                Kind::Symlink(target) => write_bytes(
                    header
                        .mode(node.mode)
                        .set_mode_file_type(ModeFileType::Symlink),
                    out,
                    path,
                    target.as_bytes(),
                )?,
                Kind::CharDevice { major, minor } => finish(
                    header
                        .mode(node.mode)
                        .set_mode_file_type(ModeFileType::Char)
                        .rdev_major(*major)
                        .rdev_minor(*minor)
                        .write(out, 0),
                )?,
                Kind::File(Contents::Bytes(bytes)) => write_bytes(
                    header
                        .mode(node.mode)
                        .set_mode_file_type(ModeFileType::Regular),
                    out,
                    path,
                    bytes,
                )?,
                Kind::File(Contents::File(source)) => write_file(
                    header
                        .mode(node.mode)
                        .set_mode_file_type(ModeFileType::Regular),
                    out,
                    path,
                    source,
                )?,
            };
        }
        newc::trailer(out).map_err(Error::Write)
    }

    /// Writes the archive compressed with `compression`; returns the writer.
    pub fn write<W: Write>(
        &self,
        out: W,
        mtime: u32,
        compression: Compression,
    ) -> Result<W, Error> {
        match compression {
            Compression::None => self.write_cpio(out, mtime),
            Compression::Zstd { level } => {
                let mut encoder = zstd::stream::Encoder::new(out, level).map_err(Error::Write)?;
                encoder.include_checksum(false).map_err(Error::Write)?;
                let encoder = self.write_cpio(BufWriter::new(encoder), mtime)?;
                let encoder = encoder
                    .into_inner()
                    .map_err(|e| Error::Write(e.into_error()))?;
                encoder.finish().map_err(Error::Write)
            }
        }
    }

    /// Writes the entries as a directory tree under `root` (which must exist and be empty), each
    /// with its permission bits set explicitly (the umask does not matter), for tools that make a
    /// file-system image from a directory (the image's erofs root). Ownership and times are left
    /// to that tool: it must force them (uid/gid 0, one fixed time). Device nodes cannot be made
    /// without privileges and are refused: a disk root needs none (devtmpfs provides `/dev`).
    pub fn write_tree(&self, root: &Path) -> Result<(), Error> {
        use std::os::unix::fs::PermissionsExt;
        let tree_error = |path: &Path, source: io::Error| Error::Tree {
            path: path.to_owned(),
            source,
        };
        // Sorted by path: parents come first. Directory modes are set last, so that a read-only
        // directory does not stop what goes into it.
        let mut directories = Vec::new();
        for (path, node) in &self.entries {
            let target = root.join(path);
            match &node.kind {
                Kind::Directory => {
                    std::fs::create_dir(&target).map_err(|e| tree_error(&target, e))?;
                    directories.push((target, node.mode));
                    continue;
                }
                Kind::Symlink(link) => {
                    std::os::unix::fs::symlink(link, &target)
                        .map_err(|e| tree_error(&target, e))?;
                    continue;
                }
                Kind::CharDevice { .. } => {
                    return Err(Error::InvalidPath {
                        path: path.clone(),
                        reason: "a device node cannot be written to a directory tree",
                    })
                }
                Kind::File(Contents::Bytes(bytes)) => {
                    std::fs::write(&target, bytes).map_err(|e| tree_error(&target, e))?;
                }
                Kind::File(Contents::File(source)) => {
                    std::fs::copy(source, &target).map_err(|e| Error::Read {
                        path: source.clone(),
                        source: e,
                    })?;
                }
            }
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(node.mode))
                .map_err(|e| tree_error(&target, e))?;
        }
        for (target, mode) in directories.into_iter().rev() {
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                .map_err(|e| tree_error(&target, e))?;
        }
        Ok(())
    }

    fn insert(&mut self, path: &str, kind: Kind, mode: u32) -> Result<(), Error> {
        let path = normalize(path)?;
        self.add_parents(&path)?;
        if self.entries.contains_key(&path) {
            return Err(Error::Duplicate { path });
        }
        self.entries.insert(
            path,
            Node {
                kind,
                mode: mode & 0o7777,
            },
        );
        Ok(())
    }

    /// Adds every missing ancestor of `path` as a directory with [`DIR_MODE`].
    fn add_parents(&mut self, path: &str) -> Result<(), Error> {
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            let parent = &path[..end + slash];
            match self.entries.get(parent) {
                Some(node) if node.kind != Kind::Directory => {
                    return Err(Error::NotADirectory {
                        path: parent.to_owned(),
                        child: path.to_owned(),
                    })
                }
                Some(_) => {}
                None => {
                    self.entries.insert(
                        parent.to_owned(),
                        Node {
                            kind: Kind::Directory,
                            mode: DIR_MODE,
                        },
                    );
                }
            }
            end += slash + 1;
        }
        Ok(())
    }
}

impl Node {
    fn full_mode(&self) -> u32 {
        let file_type = match self.kind {
            Kind::Directory => ModeFileType::Directory,
            Kind::File(_) => ModeFileType::Regular,
            Kind::Symlink(_) => ModeFileType::Symlink,
            Kind::CharDevice { .. } => ModeFileType::Char,
        };
        u32::from(file_type) | self.mode
    }

    fn size(&self, path: &str) -> Result<u64, Error> {
        Ok(match &self.kind {
            Kind::Directory | Kind::CharDevice { .. } => 0,
            Kind::Symlink(target) => target.len() as u64,
            Kind::File(Contents::Bytes(bytes)) => bytes.len() as u64,
            Kind::File(Contents::File(source)) => file_size(path, source)?,
        })
    }
}

/// The `SOURCE_DATE_EPOCH` environment variable as an mtime, `None` when unset.
pub fn source_date_epoch() -> Result<Option<u32>, Error> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => parse_epoch(&value).map(Some),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(value)) => Err(Error::SourceDateEpoch {
            value: value.to_string_lossy().into_owned(),
        }),
    }
}

/// Parses a `SOURCE_DATE_EPOCH` value: decimal seconds since 1970 that fit in newc's 32 bits.
pub fn parse_epoch(value: &str) -> Result<u32, Error> {
    value
        .trim()
        .parse::<u32>()
        .map_err(|_| Error::SourceDateEpoch {
            value: value.to_owned(),
        })
}

/// Reads an uncompressed newc stream back: the entries in order, with their contents for regular
/// files and symlinks. For tests and inspection (`image` lists what it packed).
pub fn read_cpio<R: Read>(mut input: R) -> Result<Vec<(EntryInfo, Vec<u8>)>, Error> {
    let mut entries = Vec::new();
    loop {
        let mut reader = newc::Reader::new(input).map_err(Error::Write)?;
        let entry = reader.entry();
        if entry.is_trailer() {
            return Ok(entries);
        }
        let info = EntryInfo {
            path: entry.name().to_owned(),
            mode: entry.mode(),
            size: u64::from(entry.file_size()),
        };
        let mut contents = Vec::new();
        reader.read_to_end(&mut contents).map_err(Error::Write)?;
        entries.push((info, contents));
        input = reader.finish().map_err(Error::Write)?;
    }
}

/// Archive paths are relative (`init`, `lib/x86_64-linux-gnu/libc.so.6`): a leading `/` is dropped;
/// empty, `.` and `..` components are refused.
fn normalize(path: &str) -> Result<String, Error> {
    let invalid = |reason| Error::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    let relative = path.strip_prefix('/').unwrap_or(path);
    if relative.is_empty() {
        return Err(invalid("empty"));
    }
    if relative.contains('\0') {
        return Err(invalid("contains NUL"));
    }
    if relative
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(invalid("empty, `.` or `..` component"));
    }
    Ok(relative.to_owned())
}

fn finish<W: Write>(writer: newc::Writer<W>) -> Result<W, Error> {
    writer.finish().map_err(Error::Write)
}

fn write_bytes<W: Write>(
    header: newc::Builder,
    out: W,
    path: &str,
    bytes: &[u8],
) -> Result<W, Error> {
    let size = u32::try_from(bytes.len()).map_err(|_| Error::TooLarge {
        path: path.to_owned(),
        size: bytes.len() as u64,
    })?;
    let mut writer = header.write(out, size);
    writer.write_all(bytes).map_err(Error::Write)?;
    finish(writer)
}

fn write_file<W: Write>(
    header: newc::Builder,
    out: W,
    path: &str,
    source: &Path,
) -> Result<W, Error> {
    let expected = file_size(path, source)?;
    let size = u32::try_from(expected).map_err(|_| Error::TooLarge {
        path: path.to_owned(),
        size: expected,
    })?;
    let file = File::open(source).map_err(|e| Error::Read {
        path: source.to_owned(),
        source: e,
    })?;
    let mut writer = header.write(out, size);
    // One byte more than expected, so a file that grew is noticed.
    let read = io::copy(&mut file.take(expected + 1), &mut writer).map_err(|e| {
        // A file that grew makes the cpio writer refuse the extra bytes.
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::SizeChanged {
                path: source.to_owned(),
                expected,
                read: expected + 1,
            }
        } else {
            Error::Read {
                path: source.to_owned(),
                source: e,
            }
        }
    })?;
    if read != expected {
        return Err(Error::SizeChanged {
            path: source.to_owned(),
            expected,
            read,
        });
    }
    finish(writer)
}

fn file_size(path: &str, source: &Path) -> Result<u64, Error> {
    let size = std::fs::metadata(source)
        .map_err(|e| Error::Read {
            path: source.to_owned(),
            source: e,
        })?
        .len();
    if size > MAX_FILE_SIZE {
        return Err(Error::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    Ok(size)
}

#[cfg(test)]
mod tests;
