//! What Linux's `/proc` tells about a process and about this machine.

use std::fs;

use anyhow::{anyhow, Context, Result};

/// Kibibytes per mebibyte.
pub const KIB_PER_MIB: f64 = 1024.0;

/// The resident set size (`VmRSS`) of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    kib_field(&status, "VmRSS").ok_or_else(|| anyhow!("no VmRSS in {path}"))
}

/// The CPU time process `pid` has used so far (user + system), in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let ticks = stat_cpu_ticks(&stat).ok_or_else(|| anyhow!("no utime/stime in {path}"))?;
    // SAFETY: sysconf only reads a system setting.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if per_second <= 0 {
        return Err(anyhow!("sysconf(_SC_CLK_TCK) failed"));
    }
    Ok(ticks as f64 / per_second as f64)
}

/// `utime + stime` (clock ticks) of a `/proc/<pid>/stat` line: fields 14 and 15, counted after
/// the command name's closing parenthesis (the name itself may hold spaces and parentheses).
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The value of a `Name:   1234 kB` line of a `/proc` file, in KiB.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The machine the figures were measured on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPUs this process may use (what `nproc` prints).
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_total_kib: Option<u64>,
    pub kernel: String,
}

impl Machine {
    /// Reads the machine's description; what cannot be read is `unknown`.
    pub fn describe() -> Machine {
        let unknown = || "unknown".to_owned();
        let cpu_model = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| text_field(&info, "model name"))
            .unwrap_or_else(unknown);
        let mem_total_kib = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|info| kib_field(&info, "MemTotal"));
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|release| release.trim().to_owned())
            .unwrap_or_else(|_| unknown());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            mem_total_kib,
            kernel,
        }
    }
}

/// The value of the first `name<tabs>: value` line of `/proc/cpuinfo`.
fn text_field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_fields() {
        let status = "Name:\trunner\nVmPeak:\t  900 kB\nVmRSS:\t   123456 kB\n";
        assert_eq!(kib_field(status, "VmRSS"), Some(123_456));
        assert_eq!(kib_field(status, "VmSwap"), None);
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu\n";
        assert_eq!(
            text_field(cpuinfo, "model name").as_deref(),
            Some("AMD EPYC")
        );
    }

    #[test]
    fn reads_cpu_ticks_after_an_awkward_command_name() {
        let stat = "42 (a b) c)) S 1 42 42 0 -1 4194560 100 0 0 0 700 55 0 0 20 0 9 0 1 1 1";
        assert_eq!(stat_cpu_ticks(stat), Some(755));
        assert_eq!(stat_cpu_ticks("42 (x) S 1 2"), None);
    }

    #[test]
    fn our_own_cpu_time_grows_while_we_compute() {
        let before = cpu_seconds(std::process::id()).unwrap();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(cpu_seconds(std::process::id()).unwrap() - before >= 0.1);
    }

    #[test]
    fn reads_our_own_rss() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
