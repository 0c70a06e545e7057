//! The CPU time a worker's isolate thread has used, read by its supervisor
//! from another thread. A few lines over `libc` (`pthread_getcpuclockid` +
//! `clock_gettime`): the crates.io CPU-time crates measure only the calling
//! thread, and the supervisor needs to measure another one.

use std::time::Duration;

/// The CPU clock of one thread.
#[derive(Debug, Clone, Copy)]
pub struct ThreadCpuClock(libc::clockid_t);

impl ThreadCpuClock {
    /// The clock of the calling thread, where the platform has one.
    pub fn of_current_thread() -> Option<Self> {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: pthread_self() is always a valid thread; `clock` is a valid out pointer.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
        (rc == 0).then_some(Self(clock))
    }

    /// CPU time the thread has used so far; `None` once the thread is gone.
    pub fn used(&self) -> Option<Duration> {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid out pointer; an invalid clock only returns an error.
        let rc = unsafe { libc::clock_gettime(self.0, &mut now) };
        (rc == 0).then(|| Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_work_on_another_thread_and_not_its_sleep() {
        let (clock_tx, clock_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let (measured_tx, measured_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            let own = ThreadCpuClock::of_current_thread().expect("linux has thread CPU clocks");
            clock_tx.send(own).unwrap();
            // Burn 150 ms of CPU (by this thread's own clock), then sleep 300 ms.
            let start = own.used().unwrap();
            let mut x = 0u64;
            while own.used().unwrap() - start < Duration::from_millis(150) {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
            }
            std::thread::sleep(Duration::from_millis(300));
            done_tx.send(start).unwrap();
            // Stay alive (a finished thread has no clock) until measured.
            let _ = measured_rx.recv();
        });
        let clock = clock_rx.recv().unwrap();
        let start = done_rx.recv().unwrap();
        let used = clock.used().expect("the thread is still alive") - start;
        drop(measured_tx);
        worker.join().unwrap();
        assert!(used >= Duration::from_millis(150), "{used:?}");
        assert!(
            used < Duration::from_millis(300),
            "sleep was counted: {used:?}"
        );
    }
}
