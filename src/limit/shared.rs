//! The buckets of keys that are not steered to one worker (a header, the
//! route, a client known only from PROXY protocol or X-Forwarded-For):
//! one bounded, lock-free table per limit shared by the workers, whose
//! entries each hold a key's arrival time in an atomic. A worker never
//! goes there per request: it takes a small batch of requests' worth at
//! a time (a lease, see `lease`) and serves from it, so an entry's cache
//! line is written once per batch. The batch is about a millisecond's
//! worth at the limit's rate (at least one), so what workers hold and
//! have not used is at most that much per worker.
//!
//! Exactness: every request let through was charged to the key's bucket
//! before it was let through, so no worker arrangement lets more than the
//! rate through. The one race is at eviction (a worker charging a key in
//! the instant another worker gives its entry to a new key), which can
//! only charge the new key more (refuse early), never let more through.

use std::sync::atomic::{AtomicU64, Ordering};

use super::gcra::{Gcra, Wait};
use super::table::{WAYS, sets_for, ways_of};

#[derive(Debug, Default)]
struct Entry {
    key: AtomicU64,
    tat: AtomicU64,
    /// Batches taken (see `table` for why a key that came back is kept
    /// before one seen once).
    hits: AtomicU64,
}

#[derive(Debug)]
pub struct SharedBuckets {
    entries: Box<[Entry]>,
    sets: usize,
}

/// Attempts at an entry before the request is refused as if over the
/// limit (only under a storm of evictions in one set).
const TRIES: usize = 8;

impl SharedBuckets {
    pub fn new(capacity: usize) -> SharedBuckets {
        let sets = sets_for(capacity);
        SharedBuckets {
            entries: (0..sets * WAYS).map(|_| Entry::default()).collect(),
            sets,
        }
    }

    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Takes up to `want` requests' worth for `key` at `now`: how many
    /// were granted (at least one), or how long until one is free.
    pub fn take(&self, g: &Gcra, key: u64, now: u64, want: u64) -> Result<u64, Wait> {
        let key = key.max(1);
        for _ in 0..TRIES {
            let entry = self.entry(key, now);
            let mut tat = entry.tat.load(Ordering::Acquire);
            let granted = loop {
                let (new, n) = g.take(tat, now, want)?;
                match entry
                    .tat
                    .compare_exchange_weak(tat, new, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        entry.hits.fetch_add(1, Ordering::Relaxed);
                        break n;
                    }
                    Err(seen) => tat = seen,
                }
            };
            if entry.key.load(Ordering::Acquire) == key {
                return Ok(granted);
            }
            // Given to another key meanwhile: that key was charged
            // (refused early, never let more through); ours is charged
            // again in its new entry.
        }
        Err(Wait(g.interval))
    }

    /// Gives back `n` requests' worth taken for `key` and not used.
    pub fn give_back(&self, g: &Gcra, key: u64, n: u64) {
        let key = key.max(1);
        let set = self.set(key);
        if let Some(e) = set.iter().find(|e| e.key.load(Ordering::Acquire) == key) {
            let _ = e
                .tat
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                    Some(g.give_back(t, n))
                });
        }
    }

    fn set(&self, key: u64) -> &[Entry] {
        &self.entries[ways_of(key, self.sets)]
    }

    /// The key's entry, claimed if it has none (a free or full entry
    /// first, else the one nearest to full).
    fn entry(&self, key: u64, now: u64) -> &Entry {
        let set = self.set(key);
        loop {
            if let Some(e) = set.iter().find(|e| e.key.load(Ordering::Acquire) == key) {
                return e;
            }
            let (victim, old) = victim(set, now);
            if victim
                .key
                .compare_exchange(old, key, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // A live bucket's debt is not the new key's.
                if victim.tat.load(Ordering::Acquire) > now {
                    victim.tat.store(0, Ordering::Release);
                }
                victim.hits.store(0, Ordering::Relaxed);
                return victim;
            }
        }
    }

    /// Entries whose bucket is not full at `now`.
    pub fn live(&self, now: u64) -> usize {
        self.entries
            .iter()
            .filter(|e| e.key.load(Ordering::Relaxed) != 0 && e.tat.load(Ordering::Relaxed) > now)
            .count()
    }
}

fn victim(set: &[Entry], now: u64) -> (&Entry, u64) {
    let mut best = (&set[0], (true, u64::MAX));
    for e in set {
        let tat = e.tat.load(Ordering::Acquire);
        let key = e.key.load(Ordering::Acquire);
        if key == 0 || tat <= now {
            return (e, key);
        }
        let cost = (e.hits.load(Ordering::Relaxed) > 1, tat - now);
        if cost < best.1 {
            best = (e, cost);
        }
    }
    let key = best.0.key.load(Ordering::Acquire);
    (best.0, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const MS: u64 = 1_000_000;

    #[test]
    fn threads_together_get_the_rate() {
        // 1000/s, burst 10, four threads hammering one key for 200 ms of
        // simulated time, each taking batches of 2.
        let g = Gcra::new(1000, 1_000 * MS, 10);
        let t = Arc::new(SharedBuckets::new(64));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    let mut got = 0;
                    for step in 0..20_000u64 {
                        let now = 1_000 * MS + step * 10_000; // 10 µs steps
                        if let Ok(n) = t.take(&g, 42, now, 2) {
                            got += n;
                        }
                    }
                    got
                })
            })
            .collect();
        let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        // Burst 10 plus 200 ms at 1000/s, give or take the threads not
        // being in step (each saw its own clock).
        assert!((200..=215).contains(&total), "{total}");
    }

    #[test]
    fn given_back_is_free_again() {
        let g = Gcra::new(10, 1_000 * MS, 4);
        let t = SharedBuckets::new(8);
        let now = 5 * MS;
        assert_eq!(t.take(&g, 7, now, 4), Ok(4));
        assert!(t.take(&g, 7, now, 1).is_err());
        t.give_back(&g, 7, 3);
        assert_eq!(t.take(&g, 7, now, 4), Ok(3));
    }

    #[test]
    fn many_keys_stay_within_capacity() {
        let g = Gcra::new(10, 1_000 * MS, 2);
        let t = SharedBuckets::new(64);
        for k in 1..10_000u64 {
            let _ = t.take(&g, k.wrapping_mul(0x9e37_79b9_7f4a_7c15), 10 * MS, 1);
        }
        assert_eq!(t.capacity(), 64);
        assert!(t.live(10 * MS) <= 64);
    }
}
