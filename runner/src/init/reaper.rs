//! Reaping: orphaned processes are re-parented to init, which must collect their exit status or
//! they stay zombies. The runner starts no processes itself; this is init's duty all the same.
//!
//! SIGCHLD is blocked in every thread (the mask is set before any thread exists and inherited)
//! and one thread waits for it with `sigwait`, then reaps every exited child.

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    #[error("cannot block SIGCHLD: {0}")]
    Mask(Errno),
    #[error("cannot start the reaper thread: {0}")]
    Thread(std::io::Error),
}

fn sigchld() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set
}

/// Blocks SIGCHLD in the calling thread; call before any other thread is started.
pub fn block_sigchld() -> Result<(), ReaperError> {
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&sigchld()), None)
        .map_err(ReaperError::Mask)
}

/// Starts the reaper thread.
pub fn start() -> Result<(), ReaperError> {
    std::thread::Builder::new()
        .name("init-reaper".into())
        .spawn(|| loop {
            match sigchld().wait() {
                Ok(_) => {
                    reap_exited();
                }
                Err(e) => {
                    tracing::error!("init: sigwait failed: {e}; reaping once a second");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    reap_exited();
                }
            }
        })
        .map(drop)
        .map_err(ReaperError::Thread)
}

/// Collects every child that has exited; returns how many.
pub fn reap_exited() -> usize {
    let mut reaped = 0;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return reaped,
            Ok(status) => {
                reaped += 1;
                tracing::debug!(?status, "init: reaped a process");
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                tracing::warn!("init: waitpid failed: {e}");
                return reaped;
            }
        }
    }
}
