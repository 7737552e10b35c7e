//! A server's shared health: whether active checks say it is up, and (for
//! `max_conns`) how many requests all workers have on it. Atomics in the
//! config snapshot, carried across reloads for the same server, so the
//! health thread writes them and workers read them without locks.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

#[derive(Debug)]
pub struct ServerHealth {
    up: AtomicBool,
    /// Requests in flight over all workers (kept only with `max_conns`).
    pub active: AtomicU32,
}

impl Default for ServerHealth {
    fn default() -> Self {
        ServerHealth {
            up: AtomicBool::new(true),
            active: AtomicU32::new(0),
        }
    }
}

impl ServerHealth {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }
}
