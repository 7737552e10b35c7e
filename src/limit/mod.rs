//! Rate limits: named `[rate_limits.NAME]` policies, the bucket
//! arithmetic (GCRA), bounded key tables, and each worker's `Limiter`
//! that the pipeline's request phase asks. Pure: no I/O, no runtime;
//! the one thread here (`store`, a limit shared through Redis) runs off
//! the request path.
//!
//! Exact across workers (a worker is one core):
//! * A key on the client's address, when that address is the TCP peer:
//!   the listeners steer each source address to one worker (a classic
//!   BPF program on the SO_REUSEPORT group, `sys::steer_by_source`), so
//!   the key's bucket lives in that worker's own table (`table`).
//! * Any other key (a header, the route, or a client address taken from
//!   PROXY protocol or X-Forwarded-For): a bucket shared by the workers
//!   (`shared`), taken from in small batches (`lease`).
//! * `store = "redis://..."`: a bucket in Redis shared by every ringress
//!   using it, taken from in batches by a background thread (`store`).

pub mod gcra;
mod key;
pub mod lease;
mod limiter;
mod resp;
pub mod shared;
pub mod store;
pub mod table;

use std::fmt;
use std::sync::Arc;

pub use gcra::{Gcra, Wait};
pub use key::{KeyInput, LimitKey};
pub use limiter::{Denial, Limiter, now_ns};

/// What a limit does with a request over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Answer 429.
    #[default]
    Enforce,
    /// Let it through; count it and say so in the log.
    Log,
}

/// What a store-backed limit does while its store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStoreError {
    /// Let requests through (fail open).
    #[default]
    Allow,
    /// Refuse them (fail closed).
    Deny,
}

/// `store = "redis://HOST:PORT"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `HOST:PORT` as written.
    pub addr: String,
    pub on_error: OnStoreError,
}

/// One compiled `[rate_limits.NAME]`.
#[derive(Debug, Clone)]
pub struct RateLimit {
    pub name: String,
    /// `count` requests per `period_s` seconds.
    pub count: u64,
    pub period_s: u64,
    pub gcra: Gcra,
    pub key: LimitKey,
    pub mode: Mode,
    /// Keys one worker (and the shared table) holds at most.
    pub max_keys: usize,
    pub store: Option<StoreConfig>,
    /// The process's shared state of this limit, carried across reloads
    /// that leave the limit as it was (`carry_over`).
    pub state: Arc<LimitState>,
}

impl RateLimit {
    /// The settings that decide its buckets: a reload that keeps them
    /// keeps the counts.
    fn same_buckets(&self, other: &RateLimit) -> bool {
        self.name == other.name
            && self.gcra == other.gcra
            && self.key == other.key
            && self.max_keys == other.max_keys
            && self.store == other.store
    }
}

/// What the workers of one process share for a limit.
pub struct LimitState {
    pub shared: shared::SharedBuckets,
    /// Requests' worth a worker takes from `shared` at once.
    pub batch: std::sync::atomic::AtomicU64,
    /// The Redis side, for a limit with a `store`.
    pub store: Option<Arc<store::StoreBuckets>>,
}

impl fmt::Debug for LimitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LimitState")
    }
}

impl LimitState {
    pub fn new(gcra: &Gcra, max_keys: usize, store: Option<&StoreConfig>) -> LimitState {
        LimitState {
            // A limit in a store keeps its keys there (`store`).
            shared: shared::SharedBuckets::new(if store.is_some() { 8 } else { max_keys }),
            batch: std::sync::atomic::AtomicU64::new(batch(gcra, 1)),
            store: store.map(|_| Arc::new(store::StoreBuckets::new(max_keys))),
        }
    }
}

/// About a millisecond's worth at the limit's rate, at least one, and
/// never more than a share of the burst each worker could hold at once.
pub fn batch(g: &Gcra, workers: usize) -> u64 {
    let per_ms = 1_000_000 / g.interval;
    let share = g.burst / (2 * workers as u64).max(1);
    per_ms.min(share).max(1)
}

/// Gives `new`'s limits the shared state of the running config's limits
/// they are the same as (so a reload keeps the counts), sizes their
/// batches for `workers`, and starts the store threads of new ones.
pub fn carry_over(old: Option<&[RateLimit]>, new: &mut [RateLimit], workers: usize) {
    for limit in new.iter_mut() {
        if let Some(running) = old.into_iter().flatten().find(|o| o.same_buckets(limit)) {
            limit.state = running.state.clone();
        }
        limit.state.batch.store(
            batch(&limit.gcra, workers),
            std::sync::atomic::Ordering::Relaxed,
        );
        if let (Some(cfg), Some(buckets)) = (&limit.store, &limit.state.store) {
            buckets.start(&limit.name, cfg, limit.gcra);
        }
    }
}

/// Parses `"100/s"`, `"20/m"`, `"5000/h"`: (count, period in seconds).
pub fn parse_rate(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("expected a rate like \"100/s\", \"20/m\" or \"5000/h\", found {s:?}");
    let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
    let count: u64 = count.trim().parse().map_err(|_| bad())?;
    let period = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        _ => return Err(bad()),
    };
    if count == 0 {
        return Err("the rate must be above 0 (remove the limit instead)".into());
    }
    if count > 1_000_000_000 {
        return Err(format!("{count} is out of range 1..=1000000000"));
    }
    Ok((count, period))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100/s"), Ok((100, 1)));
        assert_eq!(parse_rate("20/m"), Ok((20, 60)));
        assert_eq!(parse_rate(" 5000/h "), Ok((5000, 3600)));
        for bad in ["100", "100/d", "x/s", "-1/s", "0/s", "/s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn batches() {
        let ms = 1_000_000;
        // 100/s: one at a time.
        assert_eq!(batch(&Gcra::new(100, 1_000 * ms, 20), 2), 1);
        // 100000/s, burst 1000, 4 workers: a millisecond's worth (100).
        assert_eq!(batch(&Gcra::new(100_000, 1_000 * ms, 1000), 4), 100);
        // ...but no more than its share of a small burst.
        assert_eq!(batch(&Gcra::new(100_000, 1_000 * ms, 40), 4), 5);
    }
}
