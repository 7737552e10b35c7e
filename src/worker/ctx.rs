//! Everything one worker owns: its view of the config snapshot, balancer
//! state, the idle upstream pool and the drain signal. Single-threaded
//! (Rc/Cell/RefCell); the only shared reads are the snapshot and flags.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use slab::Slab;

use super::buffer::BufferPool;
use super::conn::Conn;
use super::drain::Drain;
use crate::config::Config;
use crate::server::Shared;
use crate::upstream::{IdlePool, SmoothWeighted};

/// A worker's handle on a config snapshot. The Rc makes each clone a plain
/// increment on this core; cloning the shared Arc per request would bounce
/// its reference count between cores.
#[allow(clippy::redundant_allocation)]
pub(crate) type Snapshot = Rc<Arc<Config>>;

pub(crate) struct WorkerCtx {
    pub id: usize,
    pub shared: Arc<Shared>,
    snapshot: RefCell<Snapshot>,
    generation: Cell<u64>,
    balancers: RefCell<Balancers>,
    pub pool: RefCell<IdlePool<Conn>>,
    pub drain: Drain,
    pub active: Cell<usize>,
    pub buffers: RefCell<BufferPool>,
    sockets: RefCell<Slab<RawFd>>,
}

struct Balancers {
    /// Generation the balancers were built for.
    generation: u64,
    groups: Vec<SmoothWeighted>,
    /// Fallback rotation for requests still on an older snapshot.
    fallback: usize,
}

impl WorkerCtx {
    pub fn new(id: usize, shared: Arc<Shared>) -> Self {
        let (generation, config) = shared.current();
        let groups = balancers_for(&config);
        WorkerCtx {
            id,
            shared,
            snapshot: RefCell::new(Rc::new(config)),
            generation: Cell::new(generation),
            balancers: RefCell::new(Balancers {
                generation,
                groups,
                fallback: 0,
            }),
            pool: RefCell::new(IdlePool::default()),
            drain: Drain::default(),
            active: Cell::new(0),
            buffers: RefCell::new(BufferPool::default()),
            sockets: RefCell::new(Slab::new()),
        }
    }

    /// The current snapshot and its generation; a request keeps the one it
    /// started with, so a reload never changes a request in flight.
    pub fn snapshot(&self) -> (u64, Snapshot) {
        let published = self.shared.generation.load(Ordering::Acquire);
        if published != self.generation.get() {
            let (generation, config) = self.shared.current();
            *self.snapshot.borrow_mut() = Rc::new(config);
            self.generation.set(generation);
        }
        (self.generation.get(), self.snapshot.borrow().clone())
    }

    /// Picks a server of `group` in snapshot `generation`.
    pub fn pick_server(
        &self,
        generation: u64,
        config: &Config,
        group: usize,
    ) -> Option<SocketAddr> {
        let servers = &config.upstreams.get(group)?.servers;
        let mut b = self.balancers.borrow_mut();
        if generation > b.generation {
            b.groups = balancers_for(config);
            b.generation = generation;
        }
        if generation == b.generation {
            let i = b.groups.get_mut(group)?.pick()?;
            return servers.get(i).map(|s| s.addr);
        }
        b.fallback = b.fallback.wrapping_add(1);
        servers
            .get(b.fallback % servers.len().max(1))
            .map(|s| s.addr)
    }

    pub fn sweep_pool(&self) {
        self.pool.borrow_mut().sweep(Instant::now());
    }
}

fn balancers_for(config: &Config) -> Vec<SmoothWeighted> {
    config
        .upstreams
        .iter()
        .map(|g| SmoothWeighted::new(g.servers.iter().map(|s| s.weight)))
        .collect()
}

/// Counts a client connection as active (for the drain) while alive, and
/// remembers its socket so a drain that times out can shut it down.
pub(crate) struct ActiveGuard {
    ctx: Rc<WorkerCtx>,
    key: usize,
}

impl ActiveGuard {
    pub fn new(ctx: Rc<WorkerCtx>, fd: RawFd) -> Self {
        let key = ctx.sockets.borrow_mut().insert(fd);
        ctx.active.set(ctx.active.get() + 1);
        ActiveGuard { ctx, key }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.ctx.sockets.borrow_mut().remove(self.key);
        self.ctx.active.set(self.ctx.active.get() - 1);
    }
}

/// Shuts down (both ways) every client socket still open, so the tasks
/// blocked on them finish and close them normally.
#[allow(unsafe_code)]
pub(crate) fn shut_down_sockets(ctx: &WorkerCtx) {
    for (_, &fd) in ctx.sockets.borrow().iter() {
        // SAFETY: each fd belongs to a live connection task (its guard
        // removes it before the socket is closed); shutdown(2) neither
        // closes nor frees it, it only ends the connection.
        unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
    }
}
