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
    fn reads_our_own_rss() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
