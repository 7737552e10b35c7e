//! A worker's table of references to objects stored in the zones' shards:
//! the hit path. A lookup here takes no lock and writes nothing shared;
//! the object's body is held through an `Rc` so writing it to a socket
//! costs a count on this core only. An object evicted or purged in its
//! shard is seen dead here on the next use and dropped; the tick sweeps
//! the rest, so the memory of an evicted object is freed within one tick.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use std::sync::Arc;

use crate::cache::object::Object;

/// References kept per worker at most (each is a few dozen bytes; the
/// objects themselves are counted in their zone).
const CAPACITY: usize = 64 * 1024;

/// Uses of an object reported to its shard, for eviction (S3-FIFO counts
/// up to 3): later uses need no report.
const REPORTED_USES: u8 = 3;

/// One object as this worker holds it.
/// A stored body as a worker holds it: an `Rc` clone per write counts on
/// this core, where an `Arc` clone would write a line every worker reads.
#[allow(clippy::redundant_allocation)]
pub(crate) type SharedBody = Rc<Arc<Vec<u8>>>;

pub(crate) struct LocalObject {
    pub object: Arc<Object>,
    /// The body, for writes.
    pub body: SharedBody,
    uses: Cell<u8>,
}

impl LocalObject {
    /// A reference made on this worker (a refreshed object).
    pub fn new(object: Arc<Object>) -> LocalObject {
        LocalObject {
            body: Rc::new(object.body.clone()),
            object,
            uses: Cell::new(1),
        }
    }

    /// Whether this use should be reported to the shard.
    pub fn count_use(&self) -> bool {
        let n = self.uses.get();
        if n < REPORTED_USES {
            self.uses.set(n + 1);
            true
        } else {
            false
        }
    }
}

struct Entry {
    zone: usize,
    key: Box<[u8]>,
    objects: Vec<Rc<LocalObject>>,
}

/// The table's keys are already hashes (`policy::key_hash`, well mixed):
/// used as they are. SipHash cost about 400 instructions per hit.
#[derive(Default, Clone, Copy)]
struct KeyIsHash(u64);

impl Hasher for KeyIsHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Default)]
pub(crate) struct LocalRefs {
    entries: HashMap<u64, Entry, BuildHasherDefault<KeyIsHash>>,
    /// Insertion order, for dropping the oldest past `CAPACITY`.
    order: VecDeque<u64>,
}

/// Zones are told apart by their storage's address (stable while any
/// config names them).
pub(crate) fn zone_id(zone: &Arc<crate::cache::zone::Zone>) -> usize {
    Arc::as_ptr(zone) as usize
}

impl LocalRefs {
    /// A live object under `key` that `accepts` takes.
    pub fn find(
        &mut self,
        zone: usize,
        hash: u64,
        key: &[u8],
        accepts: impl Fn(&Object) -> bool,
    ) -> Option<Rc<LocalObject>> {
        let entry = self.entries.get_mut(&hash)?;
        if entry.zone != zone || &entry.key[..] != key {
            return None;
        }
        entry.objects.retain(|o| o.object.is_alive());
        entry.objects.iter().find(|o| accepts(&o.object)).cloned()
    }

    /// Keeps a reference to `object` found in its shard.
    pub fn add(
        &mut self,
        zone: usize,
        hash: u64,
        key: &[u8],
        object: Arc<Object>,
    ) -> Rc<LocalObject> {
        let local = Rc::new(LocalObject::new(object));
        let fresh = !self.entries.contains_key(&hash);
        let entry = self.entries.entry(hash).or_insert_with(|| Entry {
            zone,
            key: key.into(),
            objects: Vec::new(),
        });
        if entry.zone != zone || &entry.key[..] != key {
            // Another key with the same hash: the newer one wins the slot.
            entry.zone = zone;
            entry.key = key.into();
            entry.objects.clear();
        }
        entry
            .objects
            .retain(|o| o.object.is_alive() && o.object.vary != local.object.vary);
        entry.objects.push(local.clone());
        if fresh {
            self.order.push_back(hash);
            self.trim();
        }
        local
    }

    fn trim(&mut self) {
        while self.entries.len() > CAPACITY {
            match self.order.pop_front() {
                Some(h) => {
                    self.entries.remove(&h);
                }
                None => break,
            }
        }
    }

    /// Drops references to dead objects (on the worker's tick).
    pub fn sweep(&mut self) {
        self.entries.retain(|_, e| {
            e.objects.retain(|o| o.object.is_alive());
            !e.objects.is_empty()
        });
        let entries = &self.entries;
        self.order.retain(|h| entries.contains_key(h));
    }
}
