//! A stored response: its head fields, its body (shared, immutable, one
//! copy per process), what it varies on, and its timing. Objects never
//! change once stored; a refresh (a 304) stores a new one and marks the
//! old one dead, so workers holding a reference see it on their next use.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::policy::Lifetime;
use super::store::Weigh;
use crate::http::encode::FieldLines;

/// Bytes counted per object besides its head and body (the structure,
/// its key and the store's bookkeeping).
const OVERHEAD: usize = 256;

/// A field a response varies on and the request's value of it.
pub type VaryValue = (Box<[u8]>, Box<[u8]>);

/// One stored response: its parts, which never change, and whether it
/// is still the stored one.
#[derive(Debug)]
pub struct Object {
    parts: ObjectParts,
    /// False once evicted, purged or replaced.
    alive: AtomicBool,
}

/// An object's parts are read through it.
impl std::ops::Deref for Object {
    type Target = ObjectParts;

    fn deref(&self) -> &ObjectParts {
        &self.parts
    }
}

impl Object {
    pub fn new(parts: ObjectParts) -> Object {
        Object {
            parts,
            alive: AtomicBool::new(true),
        }
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    pub fn kill(&self) {
        self.alive.store(false, Ordering::Relaxed);
    }

    /// Seconds it has been stored plus its age on arrival.
    pub fn age(&self, now: u64) -> u64 {
        super::policy::current_age(self.initial_age, self.response_time, now)
    }

    /// Freshness left at `now`, in seconds (negative once stale), as
    /// `Cache-Status` gives it.
    pub fn ttl(&self, now: u64) -> i64 {
        i64::from(self.life.fresh) - self.age(now).min(i64::MAX as u64) as i64
    }

    /// Whether it answers a request whose varying fields have these
    /// values (`value_of(name)` gives the request's value, `b""` when
    /// absent).
    pub fn matches<'v>(&self, mut value_of: impl FnMut(&[u8]) -> &'v [u8]) -> bool {
        self.vary.iter().all(|(name, v)| value_of(name) == &v[..])
    }

    fn weight(&self) -> usize {
        OVERHEAD
            + self.reason.len()
            + self.fields.weight()
            + self.body.len()
            + self
                .vary
                .iter()
                .map(|(n, v)| n.len() + v.len() + 32)
                .sum::<usize>()
    }
}

/// What an object is made of.
#[derive(Debug)]
pub struct ObjectParts {
    pub status: u16,
    pub reason: Box<[u8]>,
    /// Whole `Name: value\r\n` lines as the client gets them, without
    /// framing, connection or `Age` fields.
    pub fields: FieldLines,
    /// Shared with every worker that serves it (a write needs an owned
    /// buffer, hence the `Arc`).
    pub body: Arc<Vec<u8>>,
    /// The request's values of the fields the response varies on: lower-
    /// case name, value (`accept-encoding` holds the negotiated coding).
    pub vary: Box<[VaryValue]>,
    pub etag: Option<Box<[u8]>>,
    pub last_modified: Option<u64>,
    /// Unix seconds the response arrived.
    pub response_time: u64,
    /// The age it had on arrival (RFC 9111 4.2.3 corrected initial age).
    pub initial_age: u64,
    pub life: Lifetime,
}

/// The variants stored under one key (most keys have one).
#[derive(Debug, Default)]
pub struct Variants {
    pub list: Vec<Arc<Object>>,
}

impl Variants {
    /// Adds `object`, replacing (and killing) a variant with the same
    /// varying values.
    pub fn put(&mut self, object: Arc<Object>) {
        if let Some(slot) = self.list.iter_mut().find(|o| o.vary == object.vary) {
            slot.kill();
            *slot = object;
        } else {
            self.list.push(object);
        }
    }
}

/// Variants leave the store only when evicted, purged or replaced:
/// workers still holding one see it dead on their next use.
impl Drop for Variants {
    fn drop(&mut self) {
        for o in &self.list {
            o.kill();
        }
    }
}

impl Weigh for Variants {
    fn weight(&self) -> usize {
        self.list.iter().map(|o| o.weight()).sum()
    }
}
