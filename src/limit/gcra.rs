//! The bucket arithmetic: GCRA (the generic cell rate algorithm, a token
//! bucket kept as one number, its theoretical arrival time) in integer
//! nanoseconds on a monotonic clock. Pure: the tables decide where a
//! key's number lives.

/// A rate with its burst, in the units the arithmetic uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Nanoseconds between two requests at the steady rate (the
    /// emission interval).
    pub interval: u64,
    /// Requests a fresh key may send at once (the bucket's capacity).
    pub burst: u64,
}

/// A refusal: how long until one request would be let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait(pub u64);

impl Gcra {
    /// `count` requests per `period_ns`, at most `burst` at once.
    pub fn new(count: u64, period_ns: u64, burst: u64) -> Gcra {
        Gcra {
            interval: (period_ns / count.max(1)).max(1),
            burst: burst.max(1),
        }
    }

    /// The whole bucket in nanoseconds.
    fn capacity(&self) -> u64 {
        self.interval.saturating_mul(self.burst)
    }

    /// Takes up to `want` requests' worth at `now` from a bucket whose
    /// arrival time is `tat` (0 for a key never seen): the new arrival
    /// time and how many were granted (at least one), or how long to
    /// wait for one.
    pub fn take(&self, tat: u64, now: u64, want: u64) -> Result<(u64, u64), Wait> {
        let start = tat.max(now);
        let used = start - now;
        let free = self.capacity().saturating_sub(used) / self.interval;
        if free == 0 {
            // One more fits once `used` has shrunk to capacity - interval.
            return Err(Wait(used + self.interval - self.capacity()));
        }
        let granted = free.min(want.max(1));
        Ok((start + granted * self.interval, granted))
    }

    /// Requests a key may still send at once, given its arrival time.
    pub fn remaining(&self, tat: u64, now: u64) -> u64 {
        let used = tat.saturating_sub(now);
        self.capacity().saturating_sub(used) / self.interval
    }

    /// Gives back `n` unused requests' worth taken earlier.
    pub fn give_back(&self, tat: u64, n: u64) -> u64 {
        tat.saturating_sub(n.saturating_mul(self.interval))
    }

    /// Whether a bucket is full again (then it is the same as no entry).
    pub fn is_full(tat: u64, now: u64) -> bool {
        tat <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_fresh_key_gets_its_burst_then_the_rate() {
        // 100/s, burst 3.
        let g = Gcra::new(100, 1_000 * MS, 3);
        assert_eq!(g.interval, 10 * MS);
        let mut tat = 0;
        let now = 5_000 * MS;
        for _ in 0..3 {
            let (t, n) = g.take(tat, now, 1).unwrap();
            assert_eq!(n, 1);
            tat = t;
        }
        assert_eq!(g.take(tat, now, 1), Err(Wait(10 * MS)));
        assert_eq!(g.remaining(tat, now), 0);
        // One interval later exactly one more.
        let later = now + 10 * MS;
        let (t, _) = g.take(tat, later, 1).unwrap();
        assert!(g.take(t, later, 1).is_err());
    }

    #[test]
    fn batches_are_cut_to_what_is_free() {
        let g = Gcra::new(1000, 1_000 * MS, 10);
        let (tat, n) = g.take(0, 100 * MS, 4).unwrap();
        assert_eq!(n, 4);
        let (tat, n) = g.take(tat, 100 * MS, 100).unwrap();
        assert_eq!(n, 6);
        assert!(g.take(tat, 100 * MS, 1).is_err());
        // Given back, they can be taken again.
        let tat = g.give_back(tat, 2);
        assert_eq!(g.take(tat, 100 * MS, 5).unwrap().1, 2);
    }

    #[test]
    fn over_a_long_run_the_rate_holds() {
        // 7 per second (an interval that does not divide evenly), offered
        // every millisecond for 10 s.
        let g = Gcra::new(7, 1_000 * MS, 1);
        let mut tat = 0;
        let mut allowed = 0;
        for ms in 0..10_000u64 {
            if let Ok((t, _)) = g.take(tat, ms * MS, 1) {
                tat = t;
                allowed += 1;
            }
        }
        assert_eq!(allowed, 70);
    }

    #[test]
    fn full_buckets() {
        assert!(Gcra::is_full(0, 1));
        assert!(Gcra::is_full(5, 5));
        assert!(!Gcra::is_full(6, 5));
    }
}
