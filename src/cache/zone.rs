//! A cache zone, shared by every worker: one shard per worker, each a
//! store with its own lock. A key belongs to the shard its hash picks, so
//! an object is fetched once and stored once per process whichever
//! worker asks. Workers look here only when their own reference table
//! (`worker::cache`) misses; hits on the worker side take no lock.
//! Concurrent misses of one key collapse: the first asker fills it, the
//! others wait for the fill to complete.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_channel::oneshot;

use super::object::{Object, Variants};
use super::store::Store;

/// What a look-up found.
pub enum Lookup {
    /// A stored variant that the request accepts.
    Found(Arc<Object>),
    /// Nothing usable and nobody fetching it: the asker fetches it and
    /// must call `complete` (see `FillGuard` on the worker side).
    Fill,
    /// Another request is fetching it: wait, then look again.
    Wait(oneshot::Receiver<()>),
    /// The last fetch of this key could not be stored (private, no-store,
    /// ...): go upstream at once, without waiting for one another
    /// (Varnish's hit-for-miss). A storable answer clears it.
    Pass,
}

/// How long a key whose response could not be stored is fetched without
/// collapsing (Varnish's hit-for-miss lasts 120 s).
pub const PASS_SECS: u64 = 120;

/// Keys remembered as passing, per shard at most (oldest forgotten first).
const MAX_PASSES: usize = 4096;

pub struct Zone {
    pub name: Box<str>,
    shards: Box<[Mutex<Shard>]>,
    /// The largest object stored, in bytes (changes with a reload).
    max_object: AtomicU64,
}

struct Shard {
    store: Store<Variants>,
    /// Keys being fetched, with the requests waiting for them.
    fills: Vec<Fill>,
    /// Keys whose last response could not be stored, by hash: the key and
    /// the unix second until which it passes; `pass_order` bounds them.
    passes: HashMap<u64, (Box<[u8]>, u64)>,
    pass_order: VecDeque<u64>,
}

struct Fill {
    hash: u64,
    key: Box<[u8]>,
    waiters: Vec<oneshot::Sender<()>>,
}

impl Zone {
    pub fn new(name: &str, max_bytes: u64, max_object: u64, shards: usize) -> Zone {
        let shards = shards.max(1);
        let each = shard_budget(max_bytes, shards);
        Zone {
            name: name.into(),
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        store: Store::new(each),
                        fills: Vec::new(),
                        passes: HashMap::new(),
                        pass_order: VecDeque::new(),
                    })
                })
                .collect(),
            max_object: AtomicU64::new(max_object),
        }
    }

    /// A reload's new sizes (evicts down to a smaller budget).
    pub fn resize(&self, max_bytes: u64, max_object: u64) {
        self.max_object.store(max_object, Ordering::Relaxed);
        let each = shard_budget(max_bytes, self.shards.len());
        for shard in self.shards.iter() {
            lock(shard).store.set_max_bytes(each);
        }
    }

    pub fn max_object(&self) -> u64 {
        self.max_object.load(Ordering::Relaxed)
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        let i = (hash % self.shards.len() as u64) as usize;
        lock(&self.shards[i])
    }

    /// Looks a key up; `accepts` picks a variant. With `fill`, a miss
    /// that nobody is fetching makes the asker the one that fetches.
    pub fn lookup(
        &self,
        (hash, key, now): (u64, &[u8], u64),
        fill: bool,
        accepts: impl Fn(&Object) -> bool,
    ) -> Lookup {
        let mut shard = self.shard(hash);
        if let Some(found) = shard
            .store
            .get(hash, key)
            .and_then(|v| v.list.iter().find(|o| accepts(o)).cloned())
        {
            return Lookup::Found(found);
        }
        if let Some(f) = shard.fill_mut(hash, key) {
            let (tx, rx) = oneshot::channel();
            f.waiters.push(tx);
            return Lookup::Wait(rx);
        }
        if fill && shard.passes(hash, key, now) {
            return Lookup::Pass;
        }
        if fill {
            shard.fills.push(Fill {
                hash,
                key: key.into(),
                waiters: Vec::new(),
            });
        }
        Lookup::Fill
    }

    /// Marks a key as being fetched by a background refresh of `stale`;
    /// false when another fetch of it is already under way, or when
    /// `stale` is no longer stored (a refresh completed since the asker
    /// found it: looked at under the shard's lock, which that refresh's
    /// store held while it killed `stale`).
    pub fn begin_refresh(&self, hash: u64, key: &[u8], stale: &Object) -> bool {
        let mut shard = self.shard(hash);
        if !stale.is_alive() || shard.fill_mut(hash, key).is_some() {
            return false;
        }
        shard.fills.push(Fill {
            hash,
            key: key.into(),
            waiters: Vec::new(),
        });
        true
    }

    /// Ends a fetch: stores `object` (if any) and wakes the requests that
    /// waited for it. Waiters look again, so one that needs another
    /// variant fetches that one itself. `pass_until`: the response could
    /// not be stored, so the key passes until then.
    pub fn complete(
        &self,
        hash: u64,
        key: &[u8],
        object: Option<Arc<Object>>,
        pass_until: Option<u64>,
    ) {
        let mut shard = self.shard(hash);
        if let Some(object) = object {
            shard.put(hash, key, object, self.max_object());
        } else if let Some(until) = pass_until {
            shard.pass(hash, key, until);
        }
        if let Some(i) = shard.fill_index(hash, key) {
            // Dropping the senders wakes the receivers.
            shard.fills.swap_remove(i);
        }
    }

    /// Stores `object` outside a fill (a revalidation's refreshed copy).
    pub fn put(&self, hash: u64, key: &[u8], object: Arc<Object>) {
        self.shard(hash).put(hash, key, object, self.max_object());
    }

    /// Counts a use seen by a worker's reference table, for eviction.
    pub fn touch(&self, hash: u64, key: &[u8]) {
        let _ = self.shard(hash).store.get(hash, key);
    }

    /// Removes one key with all its variants; whether it was there.
    pub fn purge(&self, hash: u64, key: &[u8]) -> bool {
        self.shard(hash).store.remove(hash, key).is_some()
    }

    /// Removes every key starting with `prefix`; how many.
    pub fn purge_prefix(&self, prefix: &[u8]) -> usize {
        self.shards
            .iter()
            .map(|s| lock(s).store.purge_prefix(prefix))
            .sum()
    }

    /// Stored bytes and objects' keys, over all shards.
    pub fn usage(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(b, n), s| {
            let s = lock(s);
            (b + s.store.bytes(), n + s.store.len())
        })
    }

    pub fn evictions(&self) -> u64 {
        self.shards.iter().map(|s| lock(s).store.evictions()).sum()
    }
}

impl Shard {
    /// Whether `key` passes at `now` (an expired mark is dropped).
    fn passes(&mut self, hash: u64, key: &[u8], now: u64) -> bool {
        match self.passes.get(&hash) {
            Some((k, until)) if &k[..] == key && *until > now => true,
            Some((k, _)) if &k[..] == key => {
                self.passes.remove(&hash);
                false
            }
            _ => false,
        }
    }

    fn pass(&mut self, hash: u64, key: &[u8], until: u64) {
        if self.passes.insert(hash, (key.into(), until)).is_none() {
            self.pass_order.push_back(hash);
        }
        while self.passes.len() > MAX_PASSES || self.pass_order.len() > 2 * MAX_PASSES {
            match self.pass_order.pop_front() {
                Some(h) => {
                    self.passes.remove(&h);
                }
                None => break,
            }
        }
    }

    fn unpass(&mut self, hash: u64, key: &[u8]) {
        if self.passes.get(&hash).is_some_and(|(k, _)| &k[..] == key) {
            self.passes.remove(&hash);
        }
    }

    fn fill_index(&self, hash: u64, key: &[u8]) -> Option<usize> {
        self.fills
            .iter()
            .position(|f| f.hash == hash && &f.key[..] == key)
    }

    fn fill_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut Fill> {
        let i = self.fill_index(hash, key)?;
        self.fills.get_mut(i)
    }

    fn put(&mut self, hash: u64, key: &[u8], object: Arc<Object>, max_object: u64) {
        if object.body.len() as u64 > max_object {
            return;
        }
        self.unpass(hash, key);
        match self.store.get_mut(hash, key) {
            Some(variants) => {
                variants.put(object);
                self.store.reweigh(hash, key);
            }
            None => {
                let mut variants = Variants::default();
                variants.put(object);
                let _ = self.store.insert(hash, key, variants);
            }
        }
    }
}

fn shard_budget(max_bytes: u64, shards: usize) -> usize {
    usize::try_from(max_bytes / shards as u64).unwrap_or(usize::MAX)
}

/// A poisoned shard is still consistent (no operation panics halfway
/// through an update that matters), so its data is used as is.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::object::ObjectParts;
    use crate::cache::policy::Lifetime;
    use crate::http::encode::FieldLines;

    fn object(body: &[u8]) -> Arc<Object> {
        Arc::new(Object::new(ObjectParts {
            status: 200,
            reason: b"OK"[..].into(),
            fields: FieldLines::new(Vec::new()),
            body: Arc::new(body.to_vec()),
            vary: Box::default(),
            etag: None,
            last_modified: None,
            response_time: 0,
            initial_age: 0,
            life: Lifetime {
                fresh: 0,
                stale_while_revalidate: 60,
                stale_if_error: 0,
                must_revalidate: false,
                no_cache: false,
            },
        }))
    }

    #[test]
    fn one_background_refresh_per_stored_object() {
        let zone = Zone::new("z", 1 << 20, 1 << 20, 2);
        let (hash, key) = (7, &b"k"[..]);
        let v1 = object(b"v1");
        zone.put(hash, key, v1.clone());
        assert!(zone.begin_refresh(hash, key, &v1));
        // Another stale request while the refresh runs: no second fetch.
        assert!(!zone.begin_refresh(hash, key, &v1));
        // The refresh stores v2 and ends the fetch.
        let v2 = object(b"v2");
        zone.complete(hash, key, Some(v2.clone()), None);
        // A request that found v1 before that (another worker) must not
        // start a fetch for what was just refreshed.
        assert!(!zone.begin_refresh(hash, key, &v1));
        assert!(zone.begin_refresh(hash, key, &v2));
    }
}
