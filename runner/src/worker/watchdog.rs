//! CPU used outside calls. A call (a `tasks()` run, a fetch up to its response head) is
//! supervised by its caller under the CPU and wall limits; what a worker leaves running after
//! it returns — timers, unawaited promises, a response body still being produced — is not.
//! This watchdog covers that time: the worker's isolate thread may use CPU outside calls from a
//! bucket that holds `--cpu-limit-ms` and refills at [`BACKGROUND_SHARE`] of one core. A worker
//! that empties it (an endless loop in a timer does so within the CPU limit) is terminated.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::cpu_clock::ThreadCpuClock;

/// The share of one core a worker may use outside calls, sustained.
pub const BACKGROUND_SHARE: f64 = 0.05;

/// The calls being supervised for one worker.
#[derive(Debug, Default)]
pub struct Calls {
    in_flight: AtomicUsize,
    /// Calls begun so far: a call that began and ended between two looks still shows.
    begun: AtomicU64,
}

impl Calls {
    /// Marks a call as supervised until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> CallGuard {
        self.begun.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        CallGuard(self.clone())
    }

    fn snapshot(&self) -> (usize, u64) {
        (
            self.in_flight.load(Ordering::Relaxed),
            self.begun.load(Ordering::Relaxed),
        )
    }
}

pub struct CallGuard(Arc<Calls>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The CPU a worker may still use outside calls.
#[derive(Debug)]
pub struct Bucket {
    capacity: Duration,
    left: Duration,
    /// Owed CPU beyond what was left: the bucket is empty once this is non-zero.
    debt: bool,
}

impl Bucket {
    pub fn new(capacity: Duration) -> Self {
        Self {
            capacity,
            left: capacity,
            debt: false,
        }
    }

    /// Accounts one interval of `elapsed` wall time in which the worker used `cpu` outside
    /// calls; returns whether the bucket is empty.
    pub fn spend(&mut self, cpu: Duration, elapsed: Duration) -> bool {
        let refill = elapsed.mul_f64(BACKGROUND_SHARE);
        self.left = (self.left + refill).min(self.capacity);
        match self.left.checked_sub(cpu) {
            Some(left) => self.left = left,
            None => {
                self.left = Duration::ZERO;
                self.debt = true;
            }
        }
        self.debt
    }
}

/// How often the watchdog looks at a worker (CPU outside calls, memory measurement).
pub const MEASURE_EVERY: Duration = Duration::from_millis(50);

/// Watches one worker until it stops: every [`MEASURE_EVERY`] it calls `measure` and accounts
/// the CPU its thread used outside calls; resolves with `true` when the worker has emptied its
/// bucket (the caller then terminates it), with `false` once the worker is gone.
pub async fn watch(
    clock: Option<ThreadCpuClock>,
    calls: Arc<Calls>,
    limit: Duration,
    alive: impl Fn() -> bool,
    measure: impl Fn(),
) -> bool {
    let mut bucket = Bucket::new(limit);
    let mut cpu_before = clock.and_then(|c| c.used());
    let mut calls_before = calls.snapshot();
    loop {
        tokio::time::sleep(MEASURE_EVERY).await;
        if !alive() {
            return false;
        }
        measure();
        let cpu_now = clock.and_then(|c| c.used());
        let calls_now = calls.snapshot();
        // Only an interval with no call at either end and none begun in between is background.
        let outside = calls_before.0 == 0 && calls_now.0 == 0 && calls_before.1 == calls_now.1;
        if let (Some(before), Some(now), true) = (cpu_before, cpu_now, outside) {
            if bucket.spend(now.saturating_sub(before), MEASURE_EVERY) {
                return true;
            }
        }
        cpu_before = cpu_now;
        calls_before = calls_now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_loop_that_never_yields_empties_the_bucket_within_the_limit() {
        let mut bucket = Bucket::new(500 * MS);
        let mut used = Duration::ZERO;
        while !bucket.spend(25 * MS, 25 * MS) {
            used += 25 * MS;
            assert!(used < 600 * MS, "still running after {used:?}");
        }
    }

    #[test]
    fn occasional_timer_work_never_empties_it() {
        let mut bucket = Bucket::new(500 * MS);
        // 4 ms of work every second (0.4 % of a core) for an hour.
        for _ in 0..3600 {
            assert!(!bucket.spend(4 * MS, 1000 * MS));
        }
        // A burst up to the capacity is allowed, once.
        assert!(!bucket.spend(480 * MS, 25 * MS));
        assert!(bucket.spend(100 * MS, 25 * MS));
    }

    #[test]
    fn sustained_work_above_the_share_empties_it_eventually() {
        let mut bucket = Bucket::new(500 * MS);
        // 10 % of a core (twice the share): the bucket loses 5 ms each 100 ms.
        let mut intervals = 0;
        while !bucket.spend(10 * MS, 100 * MS) {
            intervals += 1;
            assert!(intervals < 200, "never emptied");
        }
        assert!(intervals >= 90, "emptied too soon: {intervals}");
    }

    #[tokio::test]
    async fn calls_in_flight_are_not_background() {
        let calls = Arc::new(Calls::default());
        let guard = calls.begin();
        assert_eq!(calls.snapshot(), (1, 1));
        drop(guard);
        assert_eq!(calls.snapshot(), (0, 1));
    }
}
