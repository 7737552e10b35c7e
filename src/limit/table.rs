//! One worker's buckets for one limit: a fixed number of entries, set
//! associative, allocated once. A key not in the table is a full bucket,
//! so a new key takes the place of an entry whose bucket is full again
//! first; else of a key seen only once (on probation), and among those or
//! else among all, of the one whose bucket is nearest to full (forgetting
//! it forgives the fewest requests), the one seen longest ago among
//! equals. Least-recently-used alone would not do: a flood of fresh keys
//! turning the table over faster than a busy client sends would push
//! that client out on every request and let it through each time. Here
//! fresh keys go before a client that came back, and to push out a client
//! held at its limit a key must have spent about as much of its own
//! bucket. The table never grows.

/// Entries looked at for one key (one set).
pub const WAYS: usize = 8;

/// The number of sets for a table of at least `capacity` entries: whole
/// sets, a power-of-two count. Shared by every set-associative table of
/// the limits (own, shared, leases, store).
pub fn sets_for(capacity: usize) -> usize {
    capacity.div_ceil(WAYS).max(1).next_power_of_two()
}

/// The entries of the set `key` (a hash) falls in, among `sets`: its high
/// bits pick the set, its low bits are the tag.
pub fn ways_of(key: u64, sets: usize) -> std::ops::Range<usize> {
    let set = ((key >> 32) as usize) & (sets - 1);
    set * WAYS..(set + 1) * WAYS
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// The key's hash; 0 for a free entry.
    key: u64,
    /// The bucket's theoretical arrival time (ns).
    tat: u64,
    /// When the key was last seen (ns), to find the oldest.
    seen: u64,
    /// Requests seen (saturating): 1 is on probation.
    hits: u32,
}

/// What the table holds for a key.
pub struct Slot<'a> {
    pub tat: &'a mut u64,
}

#[derive(Debug)]
pub struct KeyTable {
    entries: Box<[Entry]>,
    /// Sets, a power of two.
    sets: usize,
    /// Keys pushed out while their bucket was not full (an attacker, or a
    /// table too small).
    pub evicted_live: u64,
}

impl KeyTable {
    /// A table of at least `capacity` entries (rounded up to whole sets
    /// of a power-of-two count).
    pub fn new(capacity: usize) -> KeyTable {
        let sets = sets_for(capacity);
        KeyTable {
            entries: vec![Entry::default(); sets * WAYS].into_boxed_slice(),
            sets,
            evicted_live: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Entries whose bucket is not full at `now`.
    pub fn live(&self, now: u64) -> usize {
        self.entries
            .iter()
            .filter(|e| e.key != 0 && e.tat > now)
            .count()
    }

    /// The bucket of `key` (a hash, never 0), made if absent.
    pub fn slot(&mut self, key: u64, now: u64) -> Slot<'_> {
        let key = key.max(1);
        let ways = &mut self.entries[ways_of(key, self.sets)];
        let i = match ways.iter().position(|e| e.key == key) {
            Some(i) => i,
            None => {
                let i = victim(ways, now);
                if ways[i].key != 0 && ways[i].tat > now {
                    self.evicted_live += 1;
                }
                ways[i] = Entry::default();
                ways[i].key = key;
                i
            }
        };
        let e = &mut ways[i];
        e.seen = now;
        e.hits = e.hits.saturating_add(1);
        Slot { tat: &mut e.tat }
    }
}

/// The entry a new key takes: a free one or a full bucket, else one on
/// probation first, nearest to full, the oldest among equals.
fn victim(ways: &[Entry], now: u64) -> usize {
    if let Some(i) = ways.iter().position(|e| e.key == 0 || e.tat <= now) {
        return i;
    }
    let cost = |e: &Entry| (e.hits > 1, e.tat - now, e.seen);
    let mut best = 0;
    for (i, e) in ways.iter().enumerate() {
        if cost(e) < cost(&ways[best]) {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::gcra::Gcra;

    const MS: u64 = 1_000_000;

    fn hit(t: &mut KeyTable, g: &Gcra, key: u64, now: u64) -> bool {
        let slot = t.slot(key, now);
        match g.take(*slot.tat, now, 1) {
            Ok((tat, _)) => {
                *slot.tat = tat;
                true
            }
            Err(_) => false,
        }
    }

    #[test]
    fn many_keys_never_grow_it_and_a_busy_key_stays_limited() {
        let g = Gcra::new(10, 1_000 * MS, 2);
        let mut t = KeyTable::new(64);
        let cap = t.capacity();
        assert_eq!(cap, 64);
        let legit = 0xdead_beef_0000_0001;
        let mut allowed = 0;
        let mut key = 1u64;
        // 10 s; every ms the legit key sends one and an attacker 50 new
        // keys (each fresh key is let through once: a full bucket).
        for ms in 0..10_000u64 {
            let now = (1_000 + ms) * MS;
            for _ in 0..50 {
                key = key
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                hit(&mut t, &g, key, now);
            }
            if hit(&mut t, &g, legit, now) {
                allowed += 1;
            }
            assert_eq!(t.capacity(), cap);
        }
        // Burst 2, then 10/s: 101 or 102 in 10 s, unless the legit key was
        // pushed out (its bucket not full), which only its own set's
        // pressure can do.
        assert!((100..=102).contains(&allowed), "{allowed}");
    }

    #[test]
    fn full_buckets_go_first() {
        let mut t = KeyTable::new(WAYS);
        let now = 10 * MS;
        for k in 1..=WAYS as u64 {
            *t.slot(k, now).tat = now + 1_000 * MS;
        }
        // Key 3's bucket is full again at `later`; the others are not.
        *t.slot(3, now).tat = now;
        let later = now + 1;
        *t.slot(99, later).tat = later + 5;
        assert_eq!(t.evicted_live, 0);
        assert_eq!(*t.slot(1, later).tat, now + 1_000 * MS);
        // A 10th key pushes out the one on probation (key 99, seen
        // once), not one that came back.
        *t.slot(100, later + 1).tat = later + 9;
        assert_eq!(t.evicted_live, 1);
        assert_eq!(*t.slot(99, later + 2).tat, 0);
        // Among those that came back, the one nearest to full goes.
        for k in [1, 2, 4, 5, 6, 7, 8, 99] {
            let slot = t.slot(k, later + 3);
            *slot.tat = later + 1_000 * MS + k;
        }
        *t.slot(1, later + 3).tat = later + 10;
        let _ = t.slot(101, later + 4);
        assert_eq!(*t.slot(1, later + 5).tat, 0);
    }
}
