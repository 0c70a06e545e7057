//! Init's signals: children that exit and requests to stop.
//!
//! Every exited child must be reaped by init or it stays a zombie: the server
//! ([`super::supervisor`]) and any orphan the kernel re-parents to init. SIGTERM (the power
//! button: `power.rs` sends it to init) and SIGINT (Ctrl-Alt-Del, once `reboot(RB_DISABLE_CAD)`)
//! ask init to shut down.
//!
//! The three signals are blocked in every thread of init (the mask is set before any thread
//! exists and inherited; the server's is emptied between fork and exec: `supervisor.rs`)
//! and one thread waits for them with `sigwait`, reaps every exited child, and reports each as an
//! [`Event`] on a channel: init learns its server's exit status there (blocked signals are
//! queued for PID 1 too: only unblocked ones with the default action are dropped).

use std::sync::mpsc;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    #[error("cannot block init's signals: {0}")]
    Mask(Errno),
    #[error("cannot start the reaper thread: {0}")]
    Thread(std::io::Error),
}

/// What the reaper thread reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A child exited (or was killed) and has been reaped.
    Exited(WaitStatus),
    /// SIGTERM or SIGINT: shut down.
    Stop(Signal),
}

fn signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set
}

/// Blocks SIGCHLD, SIGTERM and SIGINT in the calling thread; call before any other thread is
/// started.
pub fn block_signals() -> Result<(), ReaperError> {
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&signals()), None)
        .map_err(ReaperError::Mask)
}

/// Starts the reaper thread; its events arrive on the returned channel.
pub fn start() -> Result<mpsc::Receiver<Event>, ReaperError> {
    let (events, received) = mpsc::channel();
    std::thread::Builder::new()
        .name("init-reaper".into())
        .spawn(move || loop {
            match signals().wait() {
                Ok(Signal::SIGCHLD) => reap_exited(&events),
                Ok(signal) => {
                    let _ = events.send(Event::Stop(signal));
                }
                Err(e) => {
                    tracing::error!("init: sigwait failed: {e}; reaping once a second");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    reap_exited(&events);
                }
            }
        })
        .map_err(ReaperError::Thread)?;
    Ok(received)
}

/// Collects every child that has exited and reports each.
fn reap_exited(events: &mpsc::Sender<Event>) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(status) => {
                tracing::debug!(?status, "init: reaped a process");
                // Nobody listening (init is powering off): nothing to tell.
                let _ = events.send(Event::Exited(status));
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                tracing::warn!("init: waitpid failed: {e}");
                return;
            }
        }
    }
}
