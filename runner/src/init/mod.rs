//! PID 1 duties, when the kernel starts the runner as init inside the appliance image.
//!
//! There is no other userland: no shell, no udev, no DHCP client, no getty. Before the normal
//! runner starts, [`run`]:
//!
//! 1. mounts `/proc`, `/sys`, `/dev` (devtmpfs), `/dev/shm`, `/run` and `/tmp` ([`mounts`]);
//! 2. reads the configuration from the environment the kernel gives init (unknown `key=value`
//!    words of the kernel command line, e.g. `RUNNER_LOG=debug`), listening on `0.0.0.0:8080`
//!    and `0.0.0.0:8443` (attested TLS) unless `RUNNER_LISTEN` / `RUNNER_TLS_LISTEN` say
//!    otherwise, and starts logging to the console;
//! 3. loads the kernel modules the image lists ([`modules`]), then mounts configfs at
//!    `/sys/kernel/config` (the TSM report interface for attestation) and securityfs at
//!    `/sys/kernel/security` (the TPM's boot event log), and says which boot event logs the
//!    firmware left (`attest::boot_log`: TPM, TDX CCEL);
//! 4. checks that the kernel's random number generator is ready and mixes in the CPU's
//!    ([`entropy`]); checks the clock and sets it from the RTC when it is unset ([`clock`]);
//! 5. brings up loopback and the first Ethernet interface: DHCP, or `ip=` from the kernel command
//!    line ([`net`]); on Azure (by its DMI asset tag), reports ready to the platform's wire server
//!    in the background ([`azure`]);
//! 6. reaps orphaned processes ([`reaper`]) and turns the ACPI power button and Ctrl-Alt-Del into
//!    a graceful shutdown ([`power`]);
//! 7. mounts the state disk (the virtio disk with serial `sw-state`, ext4) on `/var/lib/runner`
//!    and gives the runner `--state-dir /var/lib/runner/state`; without one (or with one it cannot
//!    use) says that the appliance is stateless ([`storage`]). `RUNNER_STATE_DIR` on the command
//!    line wins over the disk's directory;
//! 8. mounts cgroup2 and creates the server's memory cgroup, `memory.max` below the guest's RAM
//!    (`RUNNER_SERVER_MEMORY_MAX` overrides the default; [`cgroup`]);
//! 9. runs the runner's server as its child in that cgroup (`runner appliance-server`, the
//!    configuration handed over in the environment) and supervises it ([`supervisor`]): when it
//!    dies (the OOM killer, a crash, an error) init says why and starts it again, with a backoff;
//!    on the power button or Ctrl-Alt-Del it stops the server, syncs, unmounts the state disk and
//!    powers off.
//!
//! Init stays small: it never starts V8 or serves anything, so running out of memory kills the
//! server, never init (whose death would panic the kernel, and `panic=-1` reboot it).
//!
//! A fatal error is logged to the console and the machine powers off: init never exits (the
//! kernel would panic) and never drops to a shell (there is none).

pub mod azure;
pub mod cgroup;
pub mod clock;
pub mod entropy;
pub mod modules;
pub mod mounts;
pub mod net;
pub mod power;
pub mod reaper;
pub mod storage;
pub mod supervisor;

use std::time::Instant;

use clap::Parser;

use crate::config::Config;

/// Where the appliance listens unless `RUNNER_LISTEN` is on the kernel command line.
pub const APPLIANCE_LISTEN: &str = "0.0.0.0:8080";
/// Where the appliance's attested-TLS listener is unless `RUNNER_TLS_LISTEN` says otherwise.
pub const APPLIANCE_TLS_LISTEN: &str = "0.0.0.0:8443";

/// The image's list of kernel modules to load, in order (written by the `image` tool).
pub const MODULES_LIST: &str = "/etc/modules.load";

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Mount(#[from] mounts::MountError),
    #[error("invalid runner configuration on the kernel command line: {0}")]
    Config(String),
    #[error(transparent)]
    Modules(#[from] modules::ModuleError),
    #[error(transparent)]
    Entropy(#[from] entropy::EntropyError),
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error(transparent)]
    Power(#[from] power::PowerError),
    #[error(transparent)]
    Reaper(#[from] reaper::ReaperError),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(
        "`runner {}` is started by the appliance's init only",
        supervisor::SERVER_COMMAND
    )]
    NotInitsChild,
}

/// Whether this process is init (PID 1): then the runner is the appliance's whole userland.
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// Does init's duties, then runs the server as a child and supervises it until the machine is
/// asked to power off. `init_logging` is called once the configuration is known. Never returns.
pub fn run(init_logging: impl FnOnce(&Config)) -> ! {
    let started = Instant::now();
    // Before any thread exists, so that every thread inherits the blocked signals.
    let signals = reaper::block_signals();
    let mounted = mounts::mount_early();
    let mut config = match appliance_config() {
        Ok(config) => config,
        Err(e) => {
            // No logging yet: the console is standard error.
            eprintln!("runner init: fatal: {e}");
            power::power_off();
        }
    };
    init_logging(&config);
    let booted = mounted
        .map_err(InitError::from)
        .and_then(|()| signals.map_err(InitError::from))
        .and_then(|()| Ok(cgroup::memory_max_setting()?))
        .and_then(|memory_max| Ok((memory_max, boot()?)));
    let (memory_max, events) = match booted {
        Ok(booted) => booted,
        Err(e) => fatal(&e),
    };
    use_state_disk(&mut config, storage::prepare());
    let server = supervisor::Server::new(&config, server_cgroup(memory_max));
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "init: system ready, starting the runner"
    );
    supervisor::supervise(&server, &events)
}

/// The configuration of the server init started (`runner appliance-server`): the appliance's,
/// from the environment init handed over (`supervisor::handover_env`). Refused to any process
/// whose parent is not init.
pub fn server_config() -> Result<Config, InitError> {
    if nix::unistd::getppid().as_raw() != 1 {
        return Err(InitError::NotInitsChild);
    }
    // exec named it after /proc/self/exe ("exe"); the kernel's OOM messages name the victim so.
    if let Err(e) = nix::sys::prctl::set_name(c"runner") {
        tracing::debug!("cannot name the server process: {e}");
    }
    appliance_config()
}

/// The server's memory cgroup, or `None` (and why, on the console) when it cannot be made: the
/// server then runs without one.
fn server_cgroup(memory_max: Option<cgroup::MemoryMax>) -> Option<cgroup::ServerCgroup> {
    match cgroup::ServerCgroup::setup(memory_max) {
        Ok(server) => {
            let meminfo = read_trimmed("/proc/meminfo");
            tracing::info!(
                cgroup = cgroup::SERVER,
                memory_max = %server.memory_max(),
                set_by = if memory_max.is_some() { cgroup::SETTING } else { "default" },
                mem_total_mib = cgroup::mem_total(&meminfo).unwrap_or(0) >> 20,
                "init: the runner's memory cgroup"
            );
            Some(server)
        }
        Err(e) => {
            tracing::warn!(
                "init: {e}: the runner runs WITHOUT a memory limit (out of memory, the kernel \
                 still kills it rather than init, but keeps no reserve)"
            );
            None
        }
    }
}

/// Everything after the early mounts and logging; each step logs what it did.
/// Returns the reaper's events.
fn boot() -> Result<std::sync::mpsc::Receiver<reaper::Event>, InitError> {
    let events = reaper::start()?;
    // Seconds since the kernel started: how long firmware hand-off to init took, kernel side.
    let uptime = read_trimmed("/proc/uptime");
    tracing::info!(
        kernel = %read_trimmed("/proc/sys/kernel/osrelease"),
        kernel_uptime_s = uptime.split_whitespace().next().unwrap_or("?"),
        "init: runner is PID 1"
    );
    modules::load_listed(std::path::Path::new(MODULES_LIST))?;
    mounts::mount_configfs();
    mounts::mount_securityfs();
    log_boot_event_logs();
    entropy::check_and_seed()?;
    clock::check_and_set();
    let cmdline = read_trimmed("/proc/cmdline");
    net::configure(&cmdline)?;
    azure::spawn_report_ready();
    power::watch()?;
    Ok(events)
}

/// Says which boot event logs the firmware left (TDX CCEL, TPM) and how long they are: what a
/// verifier will be able to replay. Read once here; the evidence reads them again.
fn log_boot_event_logs() {
    match attest::boot_log::find() {
        Ok(logs) if logs.is_empty() => {
            tracing::info!("init: no boot event log (no TPM log, no TDX CCEL)")
        }
        Ok(logs) => {
            for log in logs {
                tracing::info!(
                    kind = %log.kind,
                    bytes = log.bytes.len(),
                    "init: boot event log"
                );
            }
        }
        Err(e) => tracing::warn!("init: {e}"),
    }
}

/// Points the runner at the state disk's directory, unless `RUNNER_STATE_DIR` (already in
/// `config`) named one; says clearly when workers will not survive a reboot.
fn use_state_disk(config: &mut Config, storage: storage::Storage) {
    use storage::Storage;
    match (config.state_dir.clone(), storage) {
        (None, Storage::Disk { state_dir, .. }) => {
            config.state_dir = Some(state_dir);
            // A disk the runner cannot use (another image's, or damaged) must not stop the
            // appliance: it runs stateless and says so, and the disk is left as it is.
            config.state_dir_optional = true;
        }
        (None, Storage::Stateless(reason)) => tracing::warn!(
            "init: {reason}: the appliance is STATELESS: workers are NOT kept across reboots \
             (attach an ext4 virtio disk with serial {}: qemu/run's SW_STATE_DISK)",
            storage::SERIAL
        ),
        (Some(dir), Storage::Disk { state_dir, .. }) => tracing::info!(
            state_dir = %dir.display(),
            "init: RUNNER_STATE_DIR on the command line wins over the state disk's {}",
            state_dir.display()
        ),
        (Some(dir), Storage::Stateless(reason)) => tracing::warn!(
            state_dir = %dir.display(),
            "init: {reason}; RUNNER_STATE_DIR is used as given, but with no disk it is in memory: \
             workers are NOT kept across reboots"
        ),
    }
}

/// The runner's configuration inside the appliance: flags are not used (the kernel's leftover
/// arguments are not ours), every setting comes from `RUNNER_*` variables, and the HTTP and HTTPS
/// listeners are on all interfaces and worker egress is `public-only` unless told otherwise.
fn appliance_config() -> Result<Config, InitError> {
    let setting =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let listen = setting("RUNNER_LISTEN", APPLIANCE_LISTEN);
    let tls_listen = setting("RUNNER_TLS_LISTEN", APPLIANCE_TLS_LISTEN);
    // Workers in the appliance reach public addresses only: not the host's network.
    let egress = setting("RUNNER_EGRESS", "public-only");
    Config::try_parse_from([
        "runner",
        "--listen",
        &listen,
        "--tls-listen",
        &tls_listen,
        "--egress",
        &egress,
    ])
    .map_err(|e| InitError::Config(e.to_string()))
}

/// Logs `error` to the console and powers off.
fn fatal(error: &InitError) -> ! {
    tracing::error!("init: fatal: {error}");
    power::power_off()
}

/// A small kernel file (`/proc`, `/sys`) as a trimmed string; empty when unreadable.
fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appliance_listens_on_all_interfaces_by_default() {
        // The test process has no RUNNER_LISTEN unless someone exported one.
        if std::env::var_os("RUNNER_LISTEN").is_some() {
            return;
        }
        let config = appliance_config().unwrap();
        assert_eq!(config.listen, APPLIANCE_LISTEN.parse().unwrap());
        if std::env::var_os("RUNNER_TLS_LISTEN").is_none() {
            assert_eq!(config.tls_listen, APPLIANCE_TLS_LISTEN.parse().unwrap());
        }
    }

    #[test]
    fn the_state_disk_is_used_unless_the_command_line_names_a_state_dir() {
        use std::path::PathBuf;
        use storage::{Stateless, Storage};
        let disk = || Storage::Disk {
            device: PathBuf::from("/dev/vdb"),
            state_dir: PathBuf::from(storage::STATE_DIR),
        };
        let mut config = Config::try_parse_from(["runner"]).unwrap();
        config.state_dir = None;
        use_state_disk(&mut config, Storage::Stateless(Stateless::NoDisk));
        assert_eq!(config.state_dir, None, "no disk: stateless");
        use_state_disk(&mut config, disk());
        assert_eq!(config.state_dir, Some(PathBuf::from(storage::STATE_DIR)));
        assert!(
            config.state_dir_optional,
            "an unusable disk must not stop the appliance"
        );

        let explicit = PathBuf::from("/var/lib/runner/elsewhere");
        config.state_dir = Some(explicit.clone());
        use_state_disk(&mut config, disk());
        assert_eq!(
            config.state_dir.as_ref(),
            Some(&explicit),
            "RUNNER_STATE_DIR wins"
        );
        use_state_disk(&mut config, Storage::Stateless(Stateless::NoDisk));
        assert_eq!(config.state_dir, Some(explicit));
    }
}
