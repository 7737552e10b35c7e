//! The per-core store of one cache zone: entries by precomputed key hash,
//! a byte budget, and S3-FIFO eviction (Yang et al., SOSP 2023) so that a
//! one-off scan cannot flush the hot set. Single-threaded (one store per
//! zone per worker): no locks, and the hit path does not allocate. Knows
//! nothing of HTTP: what a value holds is the caller's business.

use hashbrown::HashTable;
use slab::Slab;

use super::evict::{Fifo, Ghost, Linked, Links};

/// What a stored value costs against its zone's byte budget.
pub trait Weigh {
    /// Bytes this value costs (body + head + bookkeeping overhead). The
    /// store adds the length of the key, which it keeps itself.
    fn weight(&self) -> usize;
}

/// What [`Store::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// A new entry; `evicted` others were dropped to make room.
    Stored { evicted: usize },
    /// The key was there: its value was replaced; `evicted` others dropped.
    Replaced { evicted: usize },
    /// Heavier than the whole budget: not stored, and any older value under
    /// the key was removed (it is outdated by the refused one).
    TooLarge,
}

/// Highest use count an entry keeps: two bits, as in the paper. More would
/// let a once-hot entry outstay a shift of the hot set for more laps.
const MAX_FREQ: u8 = 3;

/// Uses an entry needs while in the small queue to be moved to the main one
/// instead of evicted. The paper's pseudocode says "more than once" (2), its
/// authors' later write-up uses 1. In `benches/cache_eviction.rs` the two
/// were within 0.1 point of request hit ratio over the whole run in all six
/// cases (Zipf 0.9/1.1, budgets 1/5/10 %); 1 is the simpler rule to explain.
const PROMOTE_AT: u8 = 1;

/// The small queue's share of the budget, in tenths (the paper's 10 %).
const SMALL_TENTHS: usize = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Queue {
    Small = 0,
    Main = 1,
}

struct Entry<V> {
    hash: u64,
    key: Box<[u8]>,
    value: V,
    /// `value.weight() + key.len()` when last accounted.
    charge: usize,
    freq: u8,
    queue: Queue,
    links: Links,
}

impl<V> Linked for Entry<V> {
    fn links(&mut self) -> &mut Links {
        &mut self.links
    }
}

/// One zone's entries on one core. See the module doc.
pub struct Store<V> {
    /// Slab indices, found by the caller's key hash (never rehashed).
    table: HashTable<usize>,
    entries: Slab<Entry<V>>,
    /// Indexed by `Queue`: the small and the main FIFO.
    queues: [Fifo; 2],
    ghost: Ghost,
    max_bytes: usize,
    evictions: u64,
}

impl<V> Store<V> {
    /// Entries stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes charged: the sum of every entry's weight plus its key length.
    pub fn bytes(&self) -> usize {
        self.queues[0].bytes() + self.queues[1].bytes()
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Entries evicted to respect the budget so far (not removals or purges).
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        let entries = &self.entries;
        let same = |&i: &usize| entries[i].hash == hash && *entries[i].key == *key;
        self.table.find(hash, same).copied()
    }

    /// Marks an entry used: it survives its next turn at a queue's end.
    fn touch(&mut self, idx: usize) -> &mut Entry<V> {
        let entry = &mut self.entries[idx];
        entry.freq = (entry.freq + 1).min(MAX_FREQ);
        entry
    }
}

impl<V: Weigh> Store<V> {
    pub fn new(max_bytes: usize) -> Store<V> {
        Store {
            table: HashTable::new(),
            entries: Slab::new(),
            queues: [Fifo::new(), Fifo::new()],
            ghost: Ghost::default(),
            max_bytes,
            evictions: 0,
        }
    }

    /// The value under `key` (hashed once by the caller to `hash`), marked
    /// used for eviction.
    pub fn get(&mut self, hash: u64, key: &[u8]) -> Option<&V> {
        let idx = self.find(hash, key)?;
        Some(&self.touch(idx).value)
    }

    /// As [`Store::get`]; call [`Store::reweigh`] if the weight changed.
    pub fn get_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut V> {
        let idx = self.find(hash, key)?;
        Some(&mut self.touch(idx).value)
    }

    /// The value under `key` without marking it used (purge and admin checks
    /// must not keep an entry alive).
    pub fn peek(&self, hash: u64, key: &[u8]) -> Option<&V> {
        self.find(hash, key).map(|idx| &self.entries[idx].value)
    }

    /// Stores `value` under `key`, replacing any older value, and evicts
    /// until the budget holds.
    pub fn insert(&mut self, hash: u64, key: &[u8], value: V) -> Inserted {
        let charge = value.weight().saturating_add(key.len());
        if charge > self.max_bytes {
            self.remove(hash, key);
            return Inserted::TooLarge;
        }
        if let Some(idx) = self.find(hash, key) {
            // A replacement is a use: a request missed on the stale value.
            self.touch(idx).value = value;
            let evicted = self.recharge(idx, charge);
            return Inserted::Replaced { evicted };
        }
        let evicted = self.make_room(charge);
        self.add(hash, key, value, charge);
        Inserted::Stored { evicted }
    }

    /// Re-accounts the value under `key` after a change through
    /// [`Store::get_mut`]; removes it if it no longer fits the budget.
    pub fn reweigh(&mut self, hash: u64, key: &[u8]) {
        let Some(idx) = self.find(hash, key) else {
            return;
        };
        let entry = &self.entries[idx];
        let charge = entry.value.weight().saturating_add(entry.key.len());
        if charge > self.max_bytes {
            self.remove_at(idx);
        } else {
            self.recharge(idx, charge);
        }
    }

    pub fn remove(&mut self, hash: u64, key: &[u8]) -> Option<V> {
        let idx = self.find(hash, key)?;
        Some(self.remove_at(idx))
    }

    /// Removes every entry whose key starts with `prefix`; returns how many.
    /// Walks the whole store: an admin purge, not a request path.
    pub fn purge_prefix(&mut self, prefix: &[u8]) -> usize {
        let doomed: Vec<usize> = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.key.starts_with(prefix))
            .map(|(idx, _)| idx)
            .collect();
        for &idx in &doomed {
            self.remove_at(idx);
        }
        doomed.len()
    }

    /// Sets a new budget (config reload) and evicts down to it.
    pub fn set_max_bytes(&mut self, max: usize) {
        self.max_bytes = max;
        self.make_room(0);
    }

    fn add(&mut self, hash: u64, key: &[u8], value: V, charge: usize) {
        let queue = match self.ghost.take(hash) {
            true => Queue::Main,
            false => Queue::Small,
        };
        let idx = self.entries.insert(Entry {
            hash,
            key: key.into(),
            value,
            charge,
            freq: 0,
            queue,
            links: Links::DETACHED,
        });
        let entries = &self.entries;
        self.table.insert_unique(hash, idx, |&i| entries[i].hash);
        self.queues[queue as usize].push_newest(&mut self.entries, idx, charge);
    }

    /// Charges an entry `charge` bytes from now on; returns how many others
    /// were evicted to make room.
    fn recharge(&mut self, idx: usize, charge: usize) -> usize {
        let Entry {
            charge: old, queue, ..
        } = self.entries[idx];
        self.entries[idx].charge = charge;
        if charge <= old {
            self.queues[queue as usize].recharge(old, charge);
            return 0;
        }
        // Taken out of its queue while room is made so that the eviction
        // cannot pick it; back at the newest end, as a fresh value.
        self.queues[queue as usize].unlink(&mut self.entries, idx, old);
        let evicted = self.make_room(charge);
        self.queues[queue as usize].push_newest(&mut self.entries, idx, charge);
        evicted
    }

    fn remove_at(&mut self, idx: usize) -> V {
        let Entry { charge, queue, .. } = self.entries[idx];
        self.queues[queue as usize].unlink(&mut self.entries, idx, charge);
        self.drop_unlinked(idx)
    }

    /// Evicts until `incoming` more bytes fit the budget; returns how many.
    fn make_room(&mut self, incoming: usize) -> usize {
        let mut evicted = 0;
        while self.bytes().saturating_add(incoming) > self.max_bytes && self.evict_one() {
            evicted += 1;
        }
        self.evictions += evicted as u64;
        evicted
    }

    /// Evicts one entry; false only when both queues are empty. The small
    /// queue gives up entries while it holds its share of the budget (or
    /// the main queue is empty), as in the paper.
    fn evict_one(&mut self) -> bool {
        let [small, main] = &self.queues;
        let small_share = self.max_bytes / 10 * SMALL_TENTHS;
        let from_small = !small.is_empty() && (small.bytes() >= small_share || main.is_empty());
        // An `evict_small` that promoted its whole queue leaves the main
        // queue non-empty, so `evict_main` then finds a victim.
        (from_small && self.evict_small()) || self.evict_main()
    }

    /// From the oldest end of the small queue: an entry used while waiting
    /// moves to the main queue; the first unused one is evicted and its hash
    /// goes to the ghost. False if the queue emptied without an eviction.
    fn evict_small(&mut self) -> bool {
        while let Some(idx) = self.queues[Queue::Small as usize].oldest() {
            let Entry {
                hash, charge, freq, ..
            } = self.entries[idx];
            self.queues[Queue::Small as usize].unlink(&mut self.entries, idx, charge);
            if freq >= PROMOTE_AT {
                self.entries[idx].queue = Queue::Main;
                self.queues[Queue::Main as usize].push_newest(&mut self.entries, idx, charge);
                continue;
            }
            self.drop_unlinked(idx);
            // As many ghosts as the store holds entries (the paper sizes the
            // ghost like the main queue, which holds most of them).
            self.ghost.record(hash, self.entries.len());
            return true;
        }
        false
    }

    /// From the oldest end of the main queue: a used entry gets one more lap
    /// with one use less; the first unused one is evicted. Terminates because
    /// every lap lowers a use count. False only if the queue is empty.
    fn evict_main(&mut self) -> bool {
        while let Some(idx) = self.queues[Queue::Main as usize].oldest() {
            let entry = &mut self.entries[idx];
            if entry.freq == 0 {
                let charge = entry.charge;
                self.queues[Queue::Main as usize].unlink(&mut self.entries, idx, charge);
                self.drop_unlinked(idx);
                return true;
            }
            entry.freq -= 1;
            let charge = entry.charge;
            self.queues[Queue::Main as usize].recycle_oldest(&mut self.entries, charge);
        }
        false
    }

    /// Forgets an entry already out of its queue.
    fn drop_unlinked(&mut self, idx: usize) -> V {
        let hash = self.entries[idx].hash;
        if let Ok(found) = self.table.find_entry(hash, |&i| i == idx) {
            found.remove();
        }
        self.entries.remove(idx).value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value that weighs what it says.
    #[derive(Debug, PartialEq)]
    struct Body(usize);

    impl Weigh for Body {
        fn weight(&self) -> usize {
            self.0
        }
    }

    /// Keys of 4 bytes, hashed by a stand-in for `policy::key_hash`.
    fn key(n: u32) -> [u8; 4] {
        n.to_be_bytes()
    }

    fn hash(n: u32) -> u64 {
        u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn put(store: &mut Store<Body>, n: u32, weight: usize) -> Inserted {
        store.insert(hash(n), &key(n), Body(weight))
    }

    fn has(store: &Store<Body>, n: u32) -> bool {
        store.peek(hash(n), &key(n)).is_some()
    }

    fn hit(store: &mut Store<Body>, n: u32) -> bool {
        store.get(hash(n), &key(n)).is_some()
    }

    #[test]
    fn budget_holds_after_every_insert() {
        let mut store = Store::new(10_000);
        for n in 0..2_000 {
            put(&mut store, n, 16 + (n as usize * 37) % 700);
            assert!(store.bytes() <= 10_000, "over budget after {n}");
            if n % 3 == 0 {
                hit(&mut store, n / 2);
            }
        }
        assert!(store.evictions() > 0);
        assert_eq!(store.len(), store.table.len());
    }

    #[test]
    fn replace_updates_weight_and_value() {
        let mut store = Store::new(1_000);
        assert_eq!(put(&mut store, 1, 100), Inserted::Stored { evicted: 0 });
        assert_eq!(store.bytes(), 104, "weight plus the 4-byte key");
        assert_eq!(put(&mut store, 1, 300), Inserted::Replaced { evicted: 0 });
        assert_eq!(store.bytes(), 304);
        assert_eq!(put(&mut store, 1, 50), Inserted::Replaced { evicted: 0 });
        assert_eq!((store.len(), store.bytes()), (1, 54));
        assert_eq!(store.peek(hash(1), &key(1)), Some(&Body(50)));
    }

    #[test]
    fn growing_replacement_evicts_others_not_itself() {
        let mut store = Store::new(1_000);
        for n in 0..4 {
            put(&mut store, n, 196);
        }
        assert_eq!(put(&mut store, 0, 596), Inserted::Replaced { evicted: 1 });
        assert!(has(&store, 0));
        assert!(store.bytes() <= 1_000);
    }

    #[test]
    fn too_large_is_refused_and_drops_the_old_value() {
        let mut store = Store::new(1_000);
        put(&mut store, 1, 100);
        put(&mut store, 2, 100);
        assert_eq!(put(&mut store, 1, 997), Inserted::TooLarge);
        assert!(!has(&store, 1));
        assert!(has(&store, 2), "a refused value evicts nothing");
        assert_eq!(put(&mut store, 3, 996), Inserted::Stored { evicted: 1 });
    }

    #[test]
    fn remove_and_purge_prefix() {
        let mut store = Store::new(100_000);
        for path in ["/a/1", "/a/2", "/ab", "/b/1"] {
            let h = path.len() as u64 ^ u64::from(path.as_bytes()[path.len() - 1]);
            store.insert(h, path.as_bytes(), Body(10));
        }
        assert_eq!(store.remove(4 ^ u64::from(b'1'), b"/b/1"), Some(Body(10)));
        assert_eq!(store.remove(4 ^ u64::from(b'1'), b"/b/1"), None);
        assert_eq!(store.purge_prefix(b"/a/"), 2);
        assert_eq!((store.len(), store.bytes()), (1, 13));
        assert_eq!(store.purge_prefix(b""), 1);
        assert!(store.is_empty());
        assert_eq!(store.bytes(), 0);
        assert_eq!(store.evictions(), 0, "removals are not evictions");
    }

    #[test]
    fn used_entry_survives_a_scan() {
        let mut store = Store::new(10 * 104);
        for n in 0..3 {
            put(&mut store, n, 100);
            hit(&mut store, n);
        }
        for n in 1_000..1_100 {
            put(&mut store, n, 100);
            assert!(store.bytes() <= store.max_bytes());
        }
        assert!((0..3).all(|n| has(&store, n)), "hot set flushed");
    }

    #[test]
    fn ghost_hit_goes_to_main() {
        let mut store = Store::new(10 * 104);
        for n in 0..11 {
            put(&mut store, n, 100); // key 0 leaves the small queue unused
        }
        assert!(!has(&store, 0));
        assert_eq!(store.ghost.len(), 1);
        put(&mut store, 0, 100);
        let idx = store.find(hash(0), &key(0)).expect("stored again");
        assert_eq!(store.entries[idx].queue, Queue::Main);
        // An unused newcomer goes to the small queue and out first.
        put(&mut store, 20, 100);
        assert!(has(&store, 0));
    }

    #[test]
    fn reweigh_accounts_growth_and_drops_what_no_longer_fits() {
        let mut store = Store::new(1_000);
        for n in 0..4 {
            put(&mut store, n, 196);
        }
        store.get_mut(hash(0), &key(0)).expect("stored").0 = 596;
        store.reweigh(hash(0), &key(0));
        assert!(has(&store, 0));
        assert_eq!((store.len(), store.bytes()), (3, 600 + 2 * 200));
        assert_eq!(store.evictions(), 1);
        store.get_mut(hash(0), &key(0)).expect("stored").0 = 2_000;
        store.reweigh(hash(0), &key(0));
        assert!(!has(&store, 0));
        assert_eq!(store.bytes(), 400);
    }

    #[test]
    fn set_max_bytes_shrinks_to_the_new_budget() {
        let mut store = Store::new(10_000);
        for n in 0..50 {
            put(&mut store, n, 196);
        }
        assert_eq!(store.len(), 50);
        store.set_max_bytes(1_000);
        assert!(store.bytes() <= 1_000);
        assert_eq!(store.len(), 5);
        assert_eq!(store.evictions(), 45);
        assert_eq!(store.max_bytes(), 1_000);
    }

    #[test]
    fn queue_accounting_matches_entries() {
        let mut store = Store::new(5_000);
        for n in 0..500 {
            put(&mut store, n, 50 + (n as usize * 13) % 200);
            hit(&mut store, n / 3);
            if n % 7 == 0 {
                store.remove(hash(n / 2), &key(n / 2));
            }
        }
        let charged: usize = store.entries.iter().map(|(_, e)| e.charge).sum();
        let [small, main] = &store.queues;
        assert_eq!(store.bytes(), charged);
        assert_eq!(small.len() + main.len(), store.len());
    }
}
