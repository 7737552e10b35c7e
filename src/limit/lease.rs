//! A worker's leases on shared buckets: requests' worth taken from the
//! shared table in a batch and served locally. Bounded like the key
//! tables; a lease pushed out, or older than `LEASE_NS`, gives what it
//! did not use back to the shared bucket.

use super::gcra::{Gcra, Wait};
use super::shared::SharedBuckets;
use super::table::{WAYS, sets_for, ways_of};

/// How long a lease is served from (then the rest goes back).
pub const LEASE_NS: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, Default)]
struct Lease {
    key: u64,
    left: u64,
    until: u64,
}

#[derive(Debug)]
pub struct Leases {
    entries: Box<[Lease]>,
    sets: usize,
}

impl Leases {
    pub fn new(capacity: usize) -> Leases {
        let sets = sets_for(capacity);
        Leases {
            entries: vec![Lease::default(); sets * WAYS].into_boxed_slice(),
            sets,
        }
    }

    /// One request for `key`: from the worker's lease, else from a new
    /// batch of `batch` taken from `shared`.
    pub fn take(
        &mut self,
        shared: &SharedBuckets,
        g: &Gcra,
        (key, batch): (u64, u64),
        now: u64,
    ) -> Result<(), Wait> {
        let key = key.max(1);
        let ways = &mut self.entries[ways_of(key, self.sets)];
        let i = match ways.iter().position(|l| l.key == key) {
            Some(i) => i,
            None => {
                // An empty or spent lease first, else the one ending first.
                let i = ways
                    .iter()
                    .position(|l| l.key == 0 || l.left == 0)
                    .unwrap_or_else(|| soonest(ways));
                let old = std::mem::take(&mut ways[i]);
                if old.left > 0 {
                    shared.give_back(g, old.key, old.left);
                }
                ways[i].key = key;
                i
            }
        };
        let lease = &mut ways[i];
        if lease.left > 0 && now < lease.until {
            lease.left -= 1;
            return Ok(());
        }
        if lease.left > 0 {
            shared.give_back(g, key, lease.left);
            lease.left = 0;
        }
        let granted = shared.take(g, key, now, batch)?;
        lease.left = granted - 1;
        lease.until = now + LEASE_NS;
        Ok(())
    }
}

fn soonest(ways: &[Lease]) -> usize {
    let mut best = 0;
    for (i, l) in ways.iter().enumerate() {
        if l.until < ways[best].until {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn two_workers_share_one_rate() {
        // 100/s, burst 5; two workers alternate, each with batches of 3.
        let g = Gcra::new(100, 1_000 * MS, 5);
        let shared = SharedBuckets::new(64);
        let mut a = Leases::new(16);
        let mut b = Leases::new(16);
        let mut allowed = 0;
        for step in 0..2_000u64 {
            let now = 1_000 * MS + step * MS / 2; // 1 s in 0.5 ms steps
            let w = if step % 2 == 0 { &mut a } else { &mut b };
            if w.take(&shared, &g, (9, 3), now).is_ok() {
                allowed += 1;
            }
        }
        // 5 at once, then 100 in the second: never more.
        assert!((100..=105).contains(&allowed), "{allowed}");
    }

    #[test]
    fn an_unused_lease_goes_back() {
        let g = Gcra::new(10, 1_000 * MS, 3);
        let shared = SharedBuckets::new(8);
        let mut a = Leases::new(8);
        a.take(&shared, &g, (5, 3), 10 * MS).unwrap();
        // Two left in a's lease: nothing for another worker...
        assert!(shared.take(&g, 5, 10 * MS, 1).is_err());
        // ...until the lease ends and a's next request gives them back.
        a.take(&shared, &g, (5, 1), 12 * MS).unwrap();
        assert_eq!(shared.take(&g, 5, 12 * MS, 5), Ok(1));
    }
}
