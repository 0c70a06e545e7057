//! Bounds on what the collateral clients ask of AMD, Intel and Google on a requester's behalf.
//! A verifier fetches by whatever chip ID, TCB, FMSPC or measurement the evidence names, so an
//! anonymous client could otherwise make it flood those services (and get its address
//! throttled, a denial of service for everyone else). Three bounds:
//!
//! - [`Budget`]: outbound requests per minute, for all keys together (a token bucket: the full
//!   minute's budget at once, then refilled evenly); past it a fetch fails with
//!   `CollateralError::RateLimited` while cached answers keep being served;
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

/// Outbound requests per minute (a token bucket). `0`: no limit.
#[derive(Debug)]
pub(crate) struct Budget {
    per_minute: u32,
    bucket: Mutex<(f64, Instant)>,
}

impl Budget {
    pub(crate) fn new(per_minute: u32) -> Self {
        Budget {
            per_minute,
            bucket: Mutex::new((f64::from(per_minute), Instant::now())),
        }
    }

    /// Takes one request from the budget, or says in how many seconds one will be free.
    pub(crate) fn take(&self) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let per_second = f64::from(self.per_minute) / 60.0;
        let mut bucket = lock(&self.bucket);
        let (tokens, since) = &mut *bucket;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*since).as_secs_f64() * per_second)
            .min(f64::from(self.per_minute));
        *since = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        // At least a second: Retry-After counts whole seconds.
        Err((((1.0 - *tokens) / per_second).ceil() as u64).max(1))
    }
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
