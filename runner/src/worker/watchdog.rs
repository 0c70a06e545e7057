//! CPU used outside calls. A call (a `tasks()` run, a fetch up to its response head) is
//! supervised by its caller under the CPU and wall limits; what a worker leaves running after
//! it returns — timers, unawaited promises, a response body still being produced — is not.
//! This watchdog covers that time: the worker's isolate thread may use CPU outside calls from a
//! bucket that holds `--cpu-limit-ms` and refills at [`BACKGROUND_SHARE`] of one core. A worker
//! that empties it (an endless loop in a timer does so within the CPU limit) is terminated.
//!
//! An idle worker is looked at less and less often: after each look that finds it used next to
//! no CPU outside calls (under 1 % of a core), the next waits twice as long, up to
//! [`IDLE_EVERY_MAX`] (never longer than its CPU limit, so a loop that starts while the watchdog
//! sleeps overshoots by at most that much); any CPU seen, or the end of a call (which wakes the
//! watchdog at once), brings it back to [`MEASURE_EVERY`]. A thousand idle workers thus cost
//! about 1 000 wake-ups a second, not 20 000.

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
    /// Signalled when a call ends: what it left running is background from then on.
    ended: tokio::sync::Notify,
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
        self.0.ended.notify_one();
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

/// How often the watchdog looks at a worker (CPU outside calls, memory measurement) that is
/// doing something.
pub const MEASURE_EVERY: Duration = Duration::from_millis(50);

/// The longest wait between two looks at an idle worker.
pub const IDLE_EVERY_MAX: Duration = Duration::from_secs(1);

/// The share of one core below which an interval outside calls counts as idle: a thread that
/// only sleeps, or wakes for a timer now and then. A fifth of the share it may sustain.
const IDLE_SHARE: f64 = BACKGROUND_SHARE / 5.0;

/// The wait before the next look: doubled after an idle interval (up to [`IDLE_EVERY_MAX`] and
/// the CPU `limit`), back to [`MEASURE_EVERY`] after any other.
pub fn next_interval(current: Duration, idle: bool, limit: Duration) -> Duration {
    if !idle {
        return MEASURE_EVERY;
    }
    (current * 2)
        .min(IDLE_EVERY_MAX.min(limit))
        .max(MEASURE_EVERY)
}

/// Watches one worker until it stops: every [`MEASURE_EVERY`] (less often while it is idle, see
/// [`next_interval`]; at once when a call ends) it calls `measure` and accounts the CPU its
/// thread used outside calls; resolves with `true` when the worker has emptied its bucket (the
/// caller then terminates it), with `false` once the worker is gone.
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
    let mut interval = MEASURE_EVERY;
    let mut looked = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = calls.ended.notified() => {}
        }
        if !alive() {
            return false;
        }
        measure();
        let elapsed = looked.elapsed();
        looked = tokio::time::Instant::now();
        let cpu_now = clock.and_then(|c| c.used());
        let calls_now = calls.snapshot();
        // Only an interval with no call at either end and none begun in between is background.
        let outside = calls_before.0 == 0 && calls_now.0 == 0 && calls_before.1 == calls_now.1;
        let mut idle = false;
        if let (Some(before), Some(now), true) = (cpu_before, cpu_now, outside) {
            let used = now.saturating_sub(before);
            if bucket.spend(used, elapsed) {
                return true;
            }
            idle = used.as_secs_f64() < elapsed.as_secs_f64() * IDLE_SHARE;
        }
        interval = next_interval(interval, idle, limit);
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

    #[test]
    fn an_idle_worker_is_looked_at_less_often_and_activity_brings_it_back() {
        let limit = Duration::from_secs(10);
        let mut interval = MEASURE_EVERY;
        let mut waits = Vec::new();
        for _ in 0..8 {
            interval = next_interval(interval, true, limit);
            waits.push(interval.as_millis());
        }
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
        assert_eq!(next_interval(interval, false, limit), MEASURE_EVERY);
        // Never longer than the CPU limit: a loop started meanwhile overshoots by at most that.
        assert_eq!(next_interval(IDLE_EVERY_MAX, true, 300 * MS), 300 * MS);
        assert_eq!(next_interval(MEASURE_EVERY, true, MS), MEASURE_EVERY);
    }

    /// `watch` on a thread that sleeps: its looks thin out to one a second; the end of a call
    /// makes it look at once; a thread that starts spinning is terminated.
    #[tokio::test]
    async fn the_watchdog_backs_off_while_idle_and_wakes_when_a_call_ends() {
        use std::sync::atomic::AtomicBool;
        let (clock_tx, clock_rx) = std::sync::mpsc::channel();
        let spin = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (spin, stop) = (spin.clone(), stop.clone());
            std::thread::spawn(move || {
                clock_tx
                    .send(ThreadCpuClock::of_current_thread().unwrap())
                    .unwrap();
                while !stop.load(Ordering::Relaxed) {
                    if spin.load(Ordering::Relaxed) {
                        std::hint::black_box(0u64.wrapping_add(1));
                    } else {
                        std::thread::sleep(20 * MS);
                    }
                }
            })
        };
        let clock = clock_rx.recv().unwrap();
        let calls = Arc::new(Calls::default());
        let looks = Arc::new(AtomicUsize::new(0));
        let task = {
            let (calls, looks) = (calls.clone(), looks.clone());
            tokio::spawn(async move {
                watch(
                    Some(clock),
                    calls,
                    Duration::from_secs(1),
                    || true,
                    || {
                        looks.fetch_add(1, Ordering::Relaxed);
                    },
                )
                .await
            })
        };
        // Idle for 3 s: waits of 50, 100, 200, 400, 800, 1000 ms: about 6 looks, not 60.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle_looks = looks.load(Ordering::Relaxed);
        assert!((3..=10).contains(&idle_looks), "{idle_looks} looks in 3 s");
        // A call ends: the watchdog looks at once, not after its current wait (now 1 s).
        let before = looks.load(Ordering::Relaxed);
        drop(calls.begin());
        tokio::time::sleep(150 * MS).await;
        assert!(
            looks.load(Ordering::Relaxed) > before,
            "no look after the call ended"
        );
        // Spinning outside calls: terminated within the limit and one interval, with margin.
        spin.store(true, Ordering::Relaxed);
        let stopped = tokio::time::timeout(Duration::from_secs(8), task).await;
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
        assert!(matches!(stopped, Ok(Ok(true))), "{stopped:?}");
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
