//! Bounds on what the collateral clients ask of AMD, Intel and Google on a requester's behalf.
//! A verifier fetches by whatever chip ID, TCB, FMSPC or measurement the evidence names, so an
//! anonymous client could otherwise make it flood those services (and get its address
//! throttled, a denial of service for everyone else). Three bounds:
//!
//! - [`Budget`]: outbound requests per minute, for all keys together (a token bucket: the full
//!   minute's budget at once, then refilled evenly); past it a fetch fails with
//!   `CollateralError::RateLimited` while cached answers keep being served;
//! - [`RequesterBudgets`]: the same per requester (the caller names it with [`as_requester`]),
//!   taken first, so one requester cannot spend everybody's budget
//!   (`CollateralError::RequesterRateLimited`);
//! - [`Flights`]: one request per key at a time; concurrent callers wait for its answer;
//! - [`NotFound`]: 404s remembered for a while, at most so many of them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::error::CollateralError;
use super::store::Entry;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A token bucket: `per_minute` tokens at most, refilled evenly over a minute.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    since: Instant,
}

impl Bucket {
    fn full(per_minute: u32, now: Instant) -> Self {
        Bucket {
            tokens: f64::from(per_minute),
            since: now,
        }
    }

    /// Takes one token, or says in how many seconds one will be there.
    fn take(&mut self, per_minute: u32, now: Instant) -> Result<(), u64> {
        let per_second = f64::from(per_minute) / 60.0;
        self.refill(per_minute, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        // At least a second: Retry-After counts whole seconds.
        Err((((1.0 - self.tokens) / per_second).ceil() as u64).max(1))
    }

    fn refill(&mut self, per_minute: u32, now: Instant) {
        let per_second = f64::from(per_minute) / 60.0;
        self.tokens = (self.tokens + now.duration_since(self.since).as_secs_f64() * per_second)
            .min(f64::from(per_minute));
        self.since = now;
    }
}

/// Outbound requests per minute (a token bucket). `0`: no limit.
#[derive(Debug)]
pub(crate) struct Budget {
    per_minute: u32,
    bucket: Mutex<Bucket>,
}

impl Budget {
    pub(crate) fn new(per_minute: u32) -> Self {
        Budget {
            per_minute,
            bucket: Mutex::new(Bucket::full(per_minute, Instant::now())),
        }
    }

    /// Takes one request from the budget, or says in how many seconds one will be free.
    pub(crate) fn take(&self) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        lock(&self.bucket).take(self.per_minute, Instant::now())
    }
}

/// Outbound requests per minute for each requester (a token bucket each). `0`: no limit. At
/// most `max` requesters are tracked: past that, those whose bucket has refilled go first (they
/// owe nothing), then the one with most tokens left (forgetting it gives it least).
#[derive(Debug)]
pub(crate) struct RequesterBudgets {
    per_minute: u32,
    max: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RequesterBudgets {
    pub(crate) fn new(per_minute: u32, max: usize) -> Self {
        RequesterBudgets {
            per_minute,
            max,
            buckets: Mutex::default(),
        }
    }

    /// Takes one request from `requester`'s budget, or says in how many seconds one will be free.
    pub(crate) fn take(&self, requester: &str) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = lock(&self.buckets);
        if !buckets.contains_key(requester) && buckets.len() >= self.max.max(1) {
            let per_minute = self.per_minute;
            buckets.retain(|_, bucket| {
                bucket.refill(per_minute, now);
                bucket.tokens < f64::from(per_minute)
            });
            if buckets.len() >= self.max.max(1) {
                // Forgetting a requester gives it a full bucket: forget the one that gains least.
                let richest = buckets
                    .iter()
                    .max_by(|(_, a), (_, b)| a.tokens.total_cmp(&b.tokens))
                    .map(|(k, _)| k.clone());
                if let Some(richest) = richest {
                    buckets.remove(&richest);
                }
            }
        }
        buckets
            .entry(requester.to_owned())
            .or_insert_with(|| Bucket::full(self.per_minute, now))
            .take(self.per_minute, now)
    }

    /// How many requesters are tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.buckets).len()
    }
}

std::thread_local! {
    static REQUESTER: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` on behalf of `requester` (e.g. the client's address): the collateral requests that
/// blocking verifications (`Verifier::verify`, `CollateralClient::endorsements_blocking`) send
/// within `f`, on this thread, are counted against `requester`'s budget as well as the global one.
pub fn as_requester<T>(requester: &str, f: impl FnOnce() -> T) -> T {
    let before = REQUESTER.with(|r| r.replace(Some(requester.to_owned())));
    // Restored even if `f` panics.
    struct Restore(Option<String>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0.take();
            REQUESTER.with(|r| *r.borrow_mut() = before);
        }
    }
    let _restore = Restore(before);
    f()
}

/// The requester this thread works for, if any.
pub(crate) fn requester() -> Option<String> {
    REQUESTER.with(|r| r.borrow().clone())
}

type Flight = Arc<tokio::sync::OnceCell<Result<Entry, CollateralError>>>;

/// The requests under way, by key: a caller asking for a key already being fetched waits for
/// that fetch's answer (or error) instead of sending its own request.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    running: Mutex<HashMap<String, Flight>>,
}

impl Flights {
    /// The answer for `key`: `fetch`'s, or that of the fetch for `key` already under way.
    /// Independent of the runtime (callers may each run their own).
    pub(crate) async fn run<F, Fut>(&self, key: &str, fetch: F) -> Result<Entry, CollateralError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Entry, CollateralError>>,
    {
        let flight = lock(&self.running)
            .entry(key.to_owned())
            .or_default()
            .clone();
        let answer = flight.get_or_init(fetch).await.clone();
        let mut running = lock(&self.running);
        if running.get(key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            running.remove(key);
        }
        answer
    }
}

/// Key → (until, order of insertion); and the last order given.
type Remembered = (HashMap<String, (u64, u64)>, u64);

/// Keys answered 404 and until when (unix seconds) not to ask again; at most `max` of them.
#[derive(Debug)]
pub(crate) struct NotFound {
    max: usize,
    until: Mutex<Remembered>,
}

impl NotFound {
    pub(crate) fn new(max: usize) -> Self {
        NotFound {
            max,
            until: Mutex::default(),
        }
    }

    /// Whether `key` was answered 404 recently enough at `now`.
    pub(crate) fn remembered(&self, key: &str, now: u64) -> bool {
        lock(&self.until)
            .0
            .get(key)
            .is_some_and(|(until, _)| now <= *until)
    }

    /// Remembers a 404 for `key` until `until`. When full, expired entries go first, then the
    /// one that would expire soonest (the oldest of those).
    pub(crate) fn remember(&self, key: String, until: u64, now: u64) {
        if self.max == 0 {
            return;
        }
        let mut guard = lock(&self.until);
        let (map, order) = &mut *guard;
        if !map.contains_key(&key) && map.len() >= self.max {
            map.retain(|_, (u, _)| *u >= now);
            if map.len() >= self.max {
                let soonest = map.iter().min_by_key(|(_, u)| **u).map(|(k, _)| k.clone());
                if let Some(soonest) = soonest {
                    map.remove(&soonest);
                }
            }
        }
        *order += 1;
        map.insert(key, (until, *order));
    }

    /// How many 404s are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.until).0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_gives_its_minute_then_says_when_to_come_back() {
        let budget = Budget::new(3);
        assert_eq!(
            (budget.take(), budget.take(), budget.take()),
            (Ok(()), Ok(()), Ok(()))
        );
        // One request every 20 s after that.
        let wait = budget.take().unwrap_err();
        assert!((19..=20).contains(&wait), "{wait}");
        let unlimited = Budget::new(0);
        assert!((0..1000).all(|_| unlimited.take().is_ok()));
    }

    #[test]
    fn each_requester_has_its_own_budget_and_the_tracked_ones_are_bounded() {
        let budgets = RequesterBudgets::new(2, 3);
        assert!(budgets.take("a").is_ok() && budgets.take("a").is_ok());
        let wait = budgets.take("a").unwrap_err();
        assert!((29..=30).contains(&wait), "{wait}");
        // Another requester is not held back by `a`.
        assert!(budgets.take("b").is_ok() && budgets.take("b").is_ok());
        assert!(budgets.take("b").is_err());
        // A thousand requesters later, at most three are tracked...
        for i in 0..1000 {
            assert!(budgets.take(&format!("r{i}")).is_ok());
        }
        assert_eq!(budgets.len(), 3);
        let unlimited = RequesterBudgets::new(0, 3);
        assert!((0..1000).all(|_| unlimited.take("a").is_ok()));
        assert_eq!(unlimited.len(), 0);
    }

    #[test]
    fn a_requester_whose_budget_is_spent_is_not_forgotten_before_one_that_owes_less() {
        let budgets = RequesterBudgets::new(2, 2);
        assert!(budgets.take("spent").is_ok() && budgets.take("spent").is_ok());
        assert!(budgets.take("spent").is_err());
        // `other` has a token left.
        assert!(budgets.take("other").is_ok());
        // Full (2), none refilled: the newcomer takes the place of `other`, and `spent` stays
        // refused rather than starting again with a full bucket.
        assert!(budgets.take("new").is_ok());
        assert!(budgets.take("spent").is_err());
        assert_eq!(budgets.len(), 2);
    }

    #[test]
    fn the_requester_is_named_for_what_runs_within_and_restored_after() {
        assert_eq!(requester(), None);
        let inner = as_requester("10.0.0.1", || {
            let nested = as_requester("10.0.0.2", requester);
            (requester(), nested)
        });
        assert_eq!(
            inner,
            (Some("10.0.0.1".to_owned()), Some("10.0.0.2".to_owned()))
        );
        assert_eq!(requester(), None);
        let panicked = std::panic::catch_unwind(|| as_requester("x", || panic!("boom")));
        assert!(panicked.is_err());
        assert_eq!(requester(), None, "restored after a panic too");
    }

    #[test]
    fn remembered_404s_are_bounded_and_the_soonest_to_expire_goes_first() {
        let not_found = NotFound::new(3);
        not_found.remember("a".into(), 100, 0);
        not_found.remember("b".into(), 50, 0);
        not_found.remember("c".into(), 200, 0);
        not_found.remember("d".into(), 300, 0);
        assert_eq!(not_found.len(), 3);
        assert!(!not_found.remembered("b", 0), "evicted: it expired first");
        assert!(not_found.remembered("a", 100) && !not_found.remembered("a", 101));
        // Expired ones are dropped before a live one is.
        not_found.remember("e".into(), 400, 150);
        assert!(!not_found.remembered("a", 0));
        assert!(["c", "d", "e"].iter().all(|k| not_found.remembered(k, 150)));
    }
}
