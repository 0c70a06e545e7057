//! Init as a small supervisor: the server runs as init's child, in its memory cgroup
//! ([`super::cgroup`]), and is restarted when it dies.
//!
//! The server is the same binary (`/proc/self/exe`) run as `runner appliance-server`
//! ([`SERVER_COMMAND`]): it builds its configuration from the same `RUNNER_*` environment init
//! read (`super::appliance_config`), plus what init decided, handed over the same way
//! ([`handover_env`]: the state disk's directory). It does none of init's duties. Between fork
//! and exec it joins its cgroup, so everything it allocates counts, and unblocks the signals init
//! keeps blocked, so that SIGTERM reaches it.
//!
//! Init learns how the server ended from the reaper's events ([`super::reaper`]):
//! - killed by a signal (SIGKILL from the OOM killer — the cgroup's `memory.events` says so — or
//!   a crash) or exited with an error: init logs why and starts it again after a delay
//!   ([`Backoff`]: 1 s, doubling to 30 s; back to 1 s after a run of a minute or more);
//! - exited cleanly: it was asked to stop; init powers off;
//! - SIGTERM or SIGINT to init (power button, Ctrl-Alt-Del): init sends the server SIGTERM, waits
//!   up to [`STOP_GRACE`] for it (then SIGKILL), and powers off (`power::power_off`: sync,
//!   unmount the state disk).

use std::ffi::OsString;
use std::fmt;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::cgroup::{self, CgroupError, ServerCgroup};
use super::power::power_off;
use super::reaper::Event;
use crate::config::Config;

/// The hidden subcommand that makes the runner init's server (`main.rs`).
pub const SERVER_COMMAND: &str = "appliance-server";
/// How long a stopping server may take before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(25);
/// How long to wait for a SIGKILLed server to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("cannot start /proc/self/exe {SERVER_COMMAND}: {0}")]
    Exec(std::io::Error),
    #[error("cannot start /proc/self/exe {SERVER_COMMAND}: the process library panicked")]
    Panicked,
}

/// The restart delay: [`Backoff::FIRST`], doubling up to [`Backoff::MAX`]; a run of at least
/// [`Backoff::STABLE`] starts over from [`Backoff::FIRST`].
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_secs(1);
    pub const MAX: Duration = Duration::from_secs(30);
    pub const STABLE: Duration = Duration::from_secs(60);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// The delay before starting again a server that ran for `ran` before it died.
    pub fn after(&mut self, ran: Duration) -> Duration {
        if ran >= Self::STABLE {
            self.next = Self::FIRST;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// How the server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Exit status 0: it shut down because it was asked to.
    Stopped,
    /// A non-zero exit status: it failed (and said why on the console).
    Failed(i32),
    /// Killed by a signal; `oom`: by the OOM killer (SIGKILL, and the cgroup counted a kill).
    Killed { signal: Signal, oom: bool },
}

impl Ended {
    /// `status` of the server; `oom_killed`: its cgroup's OOM kill count went up meanwhile.
    pub fn from_status(status: WaitStatus, oom_killed: bool) -> Option<Self> {
        match status {
            WaitStatus::Exited(_, 0) => Some(Ended::Stopped),
            WaitStatus::Exited(_, code) => Some(Ended::Failed(code)),
            WaitStatus::Signaled(_, signal, _) => Some(Ended::Killed {
                signal,
                oom: oom_killed && signal == Signal::SIGKILL,
            }),
            _ => None,
        }
    }
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::Stopped => f.write_str("stopped"),
            Ended::Failed(code) => write!(f, "failed (exit status {code})"),
            Ended::Killed { oom: true, .. } => {
                f.write_str("was killed by the out-of-memory killer: its cgroup reached memory.max")
            }
            Ended::Killed { signal, .. } => write!(f, "was killed by {signal}"),
        }
    }
}

/// What init hands the server beyond the environment both inherit from the kernel: the state
/// directory it chose (`RUNNER_STATE_DIR`, `RUNNER_STATE_DIR_OPTIONAL`, which the server's
/// `appliance_config` reads as the operator's own settings would be).
pub fn handover_env(config: &Config) -> Vec<(&'static str, OsString)> {
    let mut env = Vec::new();
    if let Some(dir) = &config.state_dir {
        env.push(("RUNNER_STATE_DIR", dir.clone().into_os_string()));
    }
    if config.state_dir_optional {
        env.push(("RUNNER_STATE_DIR_OPTIONAL", "true".into()));
    }
    env
}

/// The server init runs.
pub struct Server {
    env: Vec<(&'static str, OsString)>,
    cgroup: Option<ServerCgroup>,
}

impl Server {
    pub fn new(config: &Config, cgroup: Option<ServerCgroup>) -> Self {
        Server {
            env: handover_env(config),
            cgroup,
        }
    }

    /// Starts the server in its cgroup; returns its pid. Its exit arrives as a reaper event.
    fn spawn(&self) -> Result<Pid, SpawnError> {
        let procs = self.cgroup.as_ref().map(ServerCgroup::procs).transpose()?;
        let mut command = Command::new("/proc/self/exe");
        command
            .arg0("runner")
            .arg(SERVER_COMMAND)
            .envs(self.env.iter().map(|(k, v)| (*k, v)));
        let procs_fd = procs.as_ref().map(|procs| procs.as_raw_fd());
        // SAFETY: the closure only calls pthread_sigmask(3) and write(2) (on a descriptor that
        // stays open until `spawn` returns): async-signal-safe between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // The child inherits init's blocked SIGCHLD, SIGTERM and SIGINT (std leaves the
                // mask as it is): the server must get SIGTERM.
                pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
                match procs_fd {
                    Some(fd) => cgroup::join(fd),
                    None => Ok(()),
                }
            });
        }
        // std waits for a child whose exec failed, and panics if the reaper thread got to it
        // first: init must not die of that.
        let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| command.spawn()))
            .map_err(|_| SpawnError::Panicked)?;
        // Dropping the `Child` neither waits for nor kills it: the reaper reaps it.
        let child = spawned.map_err(SpawnError::Exec)?;
        Ok(Pid::from_raw(child.id() as i32))
    }

    fn oom_kills(&self) -> u64 {
        self.cgroup
            .as_ref()
            .and_then(ServerCgroup::oom_kills)
            .unwrap_or(0)
    }
}

/// What waiting for the server gave.
enum Waited {
    Exited(WaitStatus),
    Stop(Signal),
    TimedOut,
}

/// Waits for `pid` to exit (other children's exits are skipped), or, with `stops`, for a request
/// to stop, until `deadline` if any.
fn wait_for(pid: Pid, events: &Receiver<Event>, stops: bool, deadline: Option<Instant>) -> Waited {
    loop {
        let event = match deadline {
            None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(at) => events.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        match event {
            Ok(Event::Exited(status)) if status.pid() == Some(pid) => {
                return Waited::Exited(status)
            }
            Ok(Event::Exited(_)) => {}
            Ok(Event::Stop(signal)) if stops => return Waited::Stop(signal),
            Ok(Event::Stop(signal)) => tracing::info!("init: {signal} again: already stopping"),
            Err(RecvTimeoutError::Timeout) => return Waited::TimedOut,
            Err(RecvTimeoutError::Disconnected) => {
                tracing::error!("init: the reaper thread is gone; powering off");
                power_off();
            }
        }
    }
}

/// Runs the server, restarting it when it dies, until init is asked to stop (or the server
/// stops by itself); then powers off. Never returns.
pub fn supervise(server: &Server, events: &Receiver<Event>) -> ! {
    let mut backoff = Backoff::new();
    let mut start = 0u64;
    loop {
        start += 1;
        let oom_before = server.oom_kills();
        let started = Instant::now();
        let outcome = match server.spawn() {
            Ok(pid) => {
                tracing::info!(pid = pid.as_raw(), start, "init: started the runner");
                match wait_for(pid, events, true, None) {
                    Waited::Exited(status) => Ok(status),
                    Waited::Stop(signal) => stop(pid, signal, events),
                    Waited::TimedOut => unreachable!("no deadline"),
                }
            }
            Err(e) => Err(e),
        };
        let ran = started.elapsed();
        let why = match outcome {
            Ok(status) => match Ended::from_status(status, server.oom_kills() > oom_before) {
                Some(Ended::Stopped) => {
                    tracing::info!("init: the runner stopped; powering off");
                    power_off();
                }
                Some(ended) => ended.to_string(),
                None => format!("ended ({status:?})"),
            },
            Err(e) => e.to_string(),
        };
        let delay = backoff.after(ran);
        // The kernel's uptime goes on: init, and the machine, did not restart.
        let uptime = super::read_trimmed("/proc/uptime");
        tracing::error!(
            ran_s = ran.as_secs(),
            kernel_uptime_s = uptime.split_whitespace().next().unwrap_or("?"),
            "init: the runner {why}; starting it again in {delay:?}"
        );
        let at = Instant::now() + delay;
        loop {
            match events.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(Event::Stop(signal)) => {
                    tracing::info!("init: {signal} while the runner is down; powering off");
                    power_off();
                }
                Ok(Event::Exited(_)) => {}
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    tracing::error!("init: the reaper thread is gone; powering off");
                    power_off();
                }
            }
        }
    }
}

/// Forwards `signal`'s request to the server as SIGTERM and waits for it ([`STOP_GRACE`], then
/// SIGKILL), then powers off.
fn stop(pid: Pid, signal: Signal, events: &Receiver<Event>) -> ! {
    tracing::info!("init: {signal}: stopping the runner");
    if let Err(e) = kill(pid, Signal::SIGTERM) {
        tracing::warn!("init: cannot signal the runner: {e}");
    }
    match wait_for(pid, events, false, Some(Instant::now() + STOP_GRACE)) {
        Waited::Exited(status) => {
            tracing::info!(?status, "init: the runner stopped; powering off");
        }
        _ => {
            tracing::warn!("init: the runner did not stop within {STOP_GRACE:?}: killing it");
            let _ = kill(pid, Signal::SIGKILL);
            let _ = wait_for(pid, events, false, Some(Instant::now() + KILL_WAIT));
            tracing::info!("init: powering off");
        }
    }
    power_off()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_from_one_second_to_thirty() {
        let mut backoff = Backoff::new();
        let quick = Duration::from_millis(200);
        let delays: Vec<u64> = (0..8).map(|_| backoff.after(quick).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn a_run_of_a_minute_resets_the_backoff() {
        let mut backoff = Backoff::new();
        for _ in 0..5 {
            backoff.after(Duration::from_secs(59));
        }
        assert_eq!(
            backoff.after(Duration::from_secs(59)),
            Duration::from_secs(30)
        );
        assert_eq!(backoff.after(Backoff::STABLE), Backoff::FIRST);
        assert_eq!(backoff.after(Duration::ZERO), Duration::from_secs(2));
    }

    #[test]
    fn an_oom_kill_is_told_apart_from_other_deaths() {
        let pid = Pid::from_raw(42);
        let killed =
            |signal, oom| Ended::from_status(WaitStatus::Signaled(pid, signal, false), oom);
        assert_eq!(
            killed(Signal::SIGKILL, true),
            Some(Ended::Killed {
                signal: Signal::SIGKILL,
                oom: true
            })
        );
        assert!(killed(Signal::SIGKILL, true)
            .unwrap()
            .to_string()
            .contains("out-of-memory killer"));
        // A SIGKILL with no OOM kill counted, or a crash, is not the OOM killer.
        assert_eq!(
            killed(Signal::SIGKILL, false).unwrap().to_string(),
            "was killed by SIGKILL"
        );
        assert_eq!(
            killed(Signal::SIGSEGV, true).unwrap().to_string(),
            "was killed by SIGSEGV"
        );
        assert_eq!(
            Ended::from_status(WaitStatus::Exited(pid, 0), false),
            Some(Ended::Stopped)
        );
        assert_eq!(
            Ended::from_status(WaitStatus::Exited(pid, 1), true),
            Some(Ended::Failed(1))
        );
    }

    #[test]
    fn init_hands_over_the_state_directory_it_chose() {
        use clap::Parser;
        let mut config = Config::try_parse_from(["runner"]).unwrap();
        config.state_dir = None;
        config.state_dir_optional = false;
        assert!(handover_env(&config).is_empty());
        config.state_dir = Some("/var/lib/runner/state".into());
        config.state_dir_optional = true;
        assert_eq!(
            handover_env(&config),
            [
                ("RUNNER_STATE_DIR", OsString::from("/var/lib/runner/state")),
                ("RUNNER_STATE_DIR_OPTIONAL", OsString::from("true")),
            ]
        );
    }
}
