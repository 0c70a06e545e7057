//! The server's memory cgroup: init runs the server (its own child, [`super::supervisor`]) in
//! `/sys/fs/cgroup/runner` with `memory.max` below the guest's RAM, so that when the workers
//! exhaust memory the kernel's OOM killer kills the server, which init restarts — never init,
//! whose death panics the kernel (and `panic=-1` reboots, and the restore re-creates the same
//! workers: a reboot loop).
//!
//! cgroup v2 only: cgroup2 is mounted on [`ROOT`], the memory controller enabled for the root's
//! children (`cgroup.subtree_control`), and [`SERVER`] created with:
//! - `memory.max`: [`default_memory_max`] of the guest's `MemTotal` — all of it but a reserve for
//!   the kernel and init of 256 MiB, or a quarter on guests under 1 GiB — unless
//!   `RUNNER_SERVER_MEMORY_MAX` ([`SETTING`]) on the kernel command line says otherwise
//!   ([`parse_memory_max`]: bytes, `NNNK`, `NNNM`, `NNNG`, or `max` for no limit);
//! - `memory.oom.group` = 1: an OOM kill takes the whole cgroup (the server and anything it
//!   started), never leaves half of it.
//!
//! The cgroup's `memory.events` counts OOM kills ([`ServerCgroup::oom_kills`]): init says so
//! when the server dies of one. Without cgroups in the kernel (`--kernel debian` has them; the
//! minimal kernel's `appliance.config` turns them on) the server runs unconfined and init says
//! so; the OOM killer still picks the server, never init, but with no reserve left for the rest.

use std::fs::File;
use std::io::Write;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

/// Where cgroup2 is mounted (the kernel creates the directory when it has cgroups).
pub const ROOT: &str = "/sys/fs/cgroup";
/// The server's cgroup.
pub const SERVER: &str = "/sys/fs/cgroup/runner";
/// The kernel command-line setting that overrides [`default_memory_max`].
pub const SETTING: &str = "RUNNER_SERVER_MEMORY_MAX";
/// The largest reserve kept outside the server's cgroup for the kernel and init.
pub const RESERVE: u64 = 256 * MIB;
/// The smallest `memory.max` accepted: below it the server cannot even start.
pub const MIN_MEMORY_MAX: u64 = 32 * MIB;

const MIB: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "{SETTING}={value:?} is not a memory size: give bytes, NNNK, NNNM, NNNG, or max \
         (at least {} MiB)", MIN_MEMORY_MAX / MIB
    )]
    Setting { value: String },
    #[error("this kernel has no cgroups ({ROOT} is missing)")]
    NoCgroups,
    #[error("cannot read the guest's MemTotal from /proc/meminfo")]
    MemTotal,
    #[error("cannot mount cgroup2 on {ROOT}: {0}")]
    Mount(Errno),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The server cgroup's memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryMax {
    Bytes(u64),
    /// `max`: no limit (only the operator can ask for this).
    Unlimited,
}

impl MemoryMax {
    /// What `memory.max` is written as.
    fn value(self) -> String {
        match self {
            MemoryMax::Bytes(bytes) => bytes.to_string(),
            MemoryMax::Unlimited => "max".into(),
        }
    }
}

impl std::fmt::Display for MemoryMax {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryMax::Bytes(bytes) => write!(f, "{} MiB", bytes / MIB),
            MemoryMax::Unlimited => f.write_str("max (no limit)"),
        }
    }
}

/// `RUNNER_SERVER_MEMORY_MAX`'s value: bytes (`402653184`), binary units (`384M`, `393216K`,
/// `2G`; case-insensitive) or `max`. Sizes under [`MIN_MEMORY_MAX`] and overflows are refused.
pub fn parse_memory_max(value: &str) -> Result<MemoryMax, CgroupError> {
    let refuse = || CgroupError::Setting {
        value: value.to_owned(),
    };
    let text = value.trim();
    if text.eq_ignore_ascii_case("max") {
        return Ok(MemoryMax::Unlimited);
    }
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_uppercase()),
        _ => (text, 'B'),
    };
    let multiplier: u64 = match unit {
        'B' => 1,
        'K' => 1024,
        'M' => MIB,
        'G' => 1024 * MIB,
        _ => return Err(refuse()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse());
    }
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(refuse)?;
    if bytes < MIN_MEMORY_MAX {
        return Err(refuse());
    }
    Ok(MemoryMax::Bytes(bytes))
}

/// The setting from the environment (the kernel command line), if given.
pub fn memory_max_setting() -> Result<Option<MemoryMax>, CgroupError> {
    std::env::var(SETTING)
        .ok()
        .map(|value| parse_memory_max(&value))
        .transpose()
}

/// The server's `memory.max` on a guest with `mem_total` bytes: everything but a reserve for the
/// kernel and init of [`RESERVE`] (256 MiB), or a quarter of the memory when that is less (guests
/// under 1 GiB). 2 GiB guest: MemTotal ≈ 1.95 GiB → ≈ 1.70 GiB; 1 GiB: ≈ 0.96 GiB → ≈ 0.72 GiB.
pub fn default_memory_max(mem_total: u64) -> u64 {
    mem_total - RESERVE.min(mem_total / 4)
}

/// `MemTotal` in bytes from the text of `/proc/meminfo` (`MemTotal:  1004512 kB`).
pub fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let kib: u64 = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(kib * 1024)
}

/// The `oom_kill` count of a cgroup's `memory.events` text.
pub fn parse_oom_kills(events: &str) -> Option<u64> {
    events.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

/// The server's cgroup, set up.
#[derive(Debug)]
pub struct ServerCgroup {
    dir: PathBuf,
    memory_max: MemoryMax,
}

impl ServerCgroup {
    /// Mounts cgroup2, enables the memory controller and creates [`SERVER`] with `memory.max`
    /// (`setting`, else [`default_memory_max`]) and `memory.oom.group`.
    pub fn setup(setting: Option<MemoryMax>) -> Result<Self, CgroupError> {
        let root = Path::new(ROOT);
        if !root.is_dir() {
            return Err(CgroupError::NoCgroups);
        }
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        match mount(Some("cgroup2"), root, Some("cgroup2"), flags, None::<&str>) {
            Ok(()) | Err(Errno::EBUSY) => {}
            Err(e) => return Err(CgroupError::Mount(e)),
        }
        let memory_max = match setting {
            Some(max) => max,
            None => {
                let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
                let total = mem_total(&meminfo).ok_or(CgroupError::MemTotal)?;
                MemoryMax::Bytes(default_memory_max(total))
            }
        };
        write(&root.join("cgroup.subtree_control"), "+memory")?;
        let dir = PathBuf::from(SERVER);
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(CgroupError::Io {
                    action: "create",
                    path: dir,
                    source: e,
                })
            }
            _ => {}
        }
        write(&dir.join("memory.max"), &memory_max.value())?;
        write(&dir.join("memory.oom.group"), "1")?;
        Ok(ServerCgroup { dir, memory_max })
    }

    pub fn memory_max(&self) -> MemoryMax {
        self.memory_max
    }

    /// How many processes the OOM killer has killed in the cgroup so far (`memory.events`).
    pub fn oom_kills(&self) -> Option<u64> {
        std::fs::read_to_string(self.dir.join("memory.events"))
            .ok()
            .as_deref()
            .and_then(parse_oom_kills)
    }

    /// `cgroup.procs`, opened for [`join`] in a child between fork and exec.
    pub fn procs(&self) -> Result<File, CgroupError> {
        let path = self.dir.join("cgroup.procs");
        File::options()
            .write(true)
            .open(&path)
            .map_err(|source| CgroupError::Io {
                action: "open",
                path,
                source,
            })
    }
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is open as `procs` (writing
/// "0" means "me"). Only a `write(2)`: safe between fork and exec.
pub fn join(procs: RawFd) -> std::io::Result<()> {
    // SAFETY: writes one byte from a static buffer to a file descriptor the caller keeps open.
    let written = unsafe { libc::write(procs, b"0".as_ptr().cast(), 1) };
    if written == 1 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    File::options()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| CgroupError::Io {
            action: "write",
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_are_bytes_or_binary_units_or_max() {
        let bytes = |n| Ok::<_, ()>(MemoryMax::Bytes(n));
        let parse = |s| parse_memory_max(s).map_err(drop);
        assert_eq!(parse("402653184"), bytes(402_653_184));
        assert_eq!(parse("384M"), bytes(384 * MIB));
        assert_eq!(parse("384m"), bytes(384 * MIB));
        assert_eq!(parse("393216K"), bytes(384 * MIB));
        assert_eq!(parse("2G"), bytes(2048 * MIB));
        assert_eq!(parse(" 512M "), bytes(512 * MIB));
        assert_eq!(parse("max"), Ok(MemoryMax::Unlimited));
        assert_eq!(parse("MAX"), Ok(MemoryMax::Unlimited));
    }

    #[test]
    fn nonsense_tiny_and_overflowing_sizes_are_refused() {
        for value in [
            "",
            "M",
            "-1",
            "-384M",
            "1.5G",
            "384MB",
            "384T",
            "0x100000000",
            "12 M",
            "0",
            "31M",
            "1048576",
            "99999999999999999999",
            "18014398509481984G",
            "max;",
        ] {
            assert!(
                matches!(parse_memory_max(value), Err(CgroupError::Setting { .. })),
                "{value:?} should be refused, got {:?}",
                parse_memory_max(value)
            );
        }
        assert_eq!(parse_memory_max("32M").unwrap(), MemoryMax::Bytes(32 * MIB));
    }

    #[test]
    fn the_default_keeps_256_mib_or_a_quarter_for_the_kernel_and_init() {
        let gib = 1024 * MIB;
        // A 2 GiB guest (the kernel keeps some for itself: MemTotal is less).
        assert_eq!(default_memory_max(1990 * MIB), 1990 * MIB - 256 * MIB);
        assert_eq!(default_memory_max(16 * gib), 16 * gib - 256 * MIB);
        // 1 GiB and below: a quarter.
        assert_eq!(default_memory_max(960 * MIB), 720 * MIB);
        assert_eq!(default_memory_max(512 * MIB), 384 * MIB);
        // Always below MemTotal, never above it.
        for total in [64 * MIB, gib, 3 * gib + 7, 64 * gib] {
            let max = default_memory_max(total);
            assert!(max < total && max >= total / 4 * 3, "{total}: {max}");
        }
    }

    #[test]
    fn mem_total_is_read_from_meminfo_in_kib() {
        let meminfo = "MemTotal:        1004512 kB\nMemFree:          900000 kB\n";
        assert_eq!(mem_total(meminfo), Some(1_004_512 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(mem_total("MemTotal: lots kB\n"), None);
        assert_eq!(mem_total("MemTotal: 1004512 MB\n"), None);
    }

    #[test]
    fn oom_kills_are_counted_from_memory_events() {
        let events = "low 0\nhigh 0\nmax 17\noom 2\noom_kill 1\noom_group_kill 1\n";
        assert_eq!(parse_oom_kills(events), Some(1));
        assert_eq!(parse_oom_kills("oom_group_kill 3\n"), None);
        assert_eq!(parse_oom_kills(""), None);
    }
}
