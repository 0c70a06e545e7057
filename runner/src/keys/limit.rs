//! Rate limits on key requests that reach a store (issue 21): a Sapphire key costs the
//! runner's gas wallet a transaction, and creating workers is open to anyone, so each worker
//! and the runner as a whole may start only so many fetches. Token buckets: `burst` requests at
//! once, refilled at `per_minute`. A key served from a worker's cache, or a call that joins a
//! fetch in flight, is not a request; stores that cost nothing (`local`) are not limited.

use std::fmt;
use std::time::Duration;
use std::time::Instant;

/// One bucket's size and refill rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed at once (the bucket's size); 0 refuses every request.
    pub burst: u32,
    /// Requests added back per minute.
    pub per_minute: u32,
}

impl RateLimit {
    /// `n` a minute, `n` at once.
    pub const fn per_minute(n: u32) -> Self {
        RateLimit {
            burst: n,
            per_minute: n,
        }
    }
}

/// Whose limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The worker's own.
    Worker,
    /// The runner's, shared by every worker.
    Runner,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Worker => "this worker",
            Scope::Runner => "all workers of this runner",
        })
    }
}

/// A token bucket. Time is the caller's (`now`), so tests need no clock.
#[derive(Debug)]
pub struct Bucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        Bucket {
            limit,
            tokens: f64::from(limit.burst),
            last: now,
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let added = elapsed * f64::from(self.limit.per_minute) / 60.0;
        self.tokens = (self.tokens + added).min(f64::from(self.limit.burst));
    }

    /// `Ok` if a request may go now (without taking it), else how long until one may.
    pub fn check(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            return Ok(());
        }
        if self.limit.per_minute == 0 || self.limit.burst == 0 {
            return Err(Duration::MAX);
        }
        let missing = 1.0 - self.tokens;
        Err(Duration::from_secs_f64(
            missing * 60.0 / f64::from(self.limit.per_minute),
        ))
    }

    /// Takes one request (after a successful [`Bucket::check`] at the same `now`).
    pub fn take(&mut self) {
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

/// Takes one request from both buckets, or from neither: `Err` names the bucket that refused
/// and when to try again.
pub fn take_both(
    worker: &mut Bucket,
    runner: &mut Bucket,
    now: Instant,
) -> Result<(), (Scope, RateLimit, Duration)> {
    worker
        .check(now)
        .map_err(|after| (Scope::Worker, worker.limit(), after))?;
    runner
        .check(now)
        .map_err(|after| (Scope::Runner, runner.limit(), after))?;
    worker.take();
    runner.take();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(RateLimit::per_minute(3), t0);
        for _ in 0..3 {
            assert!(b.check(t0).is_ok());
            b.take();
        }
        let wait = b.check(t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(20), "one in 20 s at 3 a minute");
        assert!(b.check(t0 + Duration::from_secs(19)).is_err());
        assert!(b.check(t0 + Duration::from_secs(20)).is_ok());
        // Never more than the burst, however long it waited.
        let later = t0 + 10 * MINUTE;
        for _ in 0..3 {
            assert!(b.check(later).is_ok());
            b.take();
        }
        assert!(b.check(later).is_err());
    }

    #[test]
    fn zero_refuses_everything() {
        let t0 = Instant::now();
        let mut b = Bucket::new(RateLimit::per_minute(0), t0);
        assert_eq!(b.check(t0 + MINUTE), Err(Duration::MAX));
    }

    #[test]
    fn both_or_neither() {
        let t0 = Instant::now();
        let mut worker = Bucket::new(RateLimit::per_minute(5), t0);
        let mut runner = Bucket::new(RateLimit::per_minute(1), t0);
        assert!(take_both(&mut worker, &mut runner, t0).is_ok());
        let (scope, limit, _) = take_both(&mut worker, &mut runner, t0).unwrap_err();
        assert_eq!((scope, limit.per_minute), (Scope::Runner, 1));
        // The worker's token was not spent on the refused request: 4 left.
        let mut roomy = Bucket::new(RateLimit::per_minute(100), t0);
        for _ in 0..4 {
            assert!(take_both(&mut worker, &mut roomy, t0).is_ok());
        }
        let (scope, _, _) = take_both(&mut worker, &mut roomy, t0).unwrap_err();
        assert_eq!(scope, Scope::Worker);
    }
}
