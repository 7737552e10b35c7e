//! Everything one worker owns: its view of the config snapshot, balancer
//! state, the idle upstream pool and the drain signal. Single-threaded
//! (Rc/Cell/RefCell); the only shared reads are the snapshot and flags.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use slab::Slab;

use super::cache::LocalRefs;
use super::drain::Drain;
use super::listen::Accepting;
use super::parking::Parking;
use super::reqstate::ReqState;
use super::requests::Requests;
use crate::compress::{Algorithm, Encoder, WholeGzip};
use crate::config::Config;
use crate::net::conn_limit::ConnSlot;
use crate::rt::buffer::BufferPool;
use crate::rt::conn::Conn;
use crate::shared::Shared;
use crate::sys;
use crate::upstream::{GroupState, IdlePool, Outcome, Rng};

/// A worker's handle on a config snapshot. The Rc makes each clone a plain
/// increment on this core; cloning the shared Arc per request would bounce
/// its reference count between cores.
#[allow(clippy::redundant_allocation)]
pub(crate) type Snapshot = Rc<Arc<Config>>;

/// Compressors kept per worker: one per response being compressed at
/// once is made, and this many survive for the next ones.
const MAX_KEPT_ENCODERS: usize = 8;

pub(crate) struct WorkerCtx {
    pub id: usize,
    pub shared: Arc<Shared>,
    snapshot: RefCell<Snapshot>,
    generation: Cell<u64>,
    balancers: RefCell<Balancers>,
    pub pool: RefCell<IdlePool<Conn>>,
    pub drain: Drain,
    /// Idle connections parked between requests.
    pub parking: Parking,
    pub active: Cell<usize>,
    /// Of those, connections to the admin listener.
    pub admin_open: Cell<usize>,
    pub buffers: RefCell<BufferPool>,
    /// Unused read cancellers of closed connections (making one costs two
    /// allocations, see `client::await_request`).
    pub cancellers: RefCell<Vec<monoio::io::Canceller>>,
    /// The request-text buffers of closed connections' records (a new
    /// connection's first request id would otherwise allocate one).
    pub text_bufs: RefCell<Vec<Vec<u8>>>,
    /// Exchange states of closed or parked connections, for reuse.
    pub req_states: RefCell<Vec<ReqState>>,
    sockets: RefCell<Slab<RawFd>>,
    /// Accept loops running on this worker.
    pub listeners: RefCell<Vec<Accepting>>,
    /// Request numbering and the logging phase's counts.
    pub requests: Requests,
    /// References to cached objects: the lock-free hit path.
    pub cache_refs: RefCell<LocalRefs>,
    /// Compressors kept for the next response (making one allocates its
    /// window and tables).
    pub encoders: RefCell<Vec<(Option<u32>, Encoder)>>,
    /// The gzip compressor for small bodies known whole.
    pub whole_gzip: RefCell<Option<WholeGzip>>,
    /// Rate-limit buckets and leases of this worker.
    pub limiter: RefCell<crate::limit::Limiter>,
    /// Verified credentials of the auth filter.
    pub auth: RefCell<crate::pipeline::AuthState>,
    /// Regex caches and match sets of the request filters.
    pub filter_scratch: RefCell<crate::pipeline::FilterScratch>,
}

struct Balancers {
    /// Generation the balancers were built for.
    generation: u64,
    /// The snapshot they were built for (to carry state over on reload).
    config: Option<Snapshot>,
    groups: Vec<GroupState>,
    /// Fallback rotation for requests still on an older snapshot.
    fallback: usize,
    rng: Rng,
}

impl WorkerCtx {
    pub fn new(id: usize, shared: Arc<Shared>) -> std::io::Result<Self> {
        let (generation, config) = shared.current();
        let groups = config.upstreams.iter().map(GroupState::new).collect();
        let config: Snapshot = Rc::new(config);
        let seed =
            (id as u64) ^ std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
        Ok(WorkerCtx {
            id,
            shared,
            snapshot: RefCell::new(config.clone()),
            generation: Cell::new(generation),
            balancers: RefCell::new(Balancers {
                generation,
                config: Some(config),
                groups,
                fallback: 0,
                rng: Rng::new(seed.wrapping_add(std::ptr::addr_of!(id) as u64)),
            }),
            pool: RefCell::new(IdlePool::default()),
            drain: Drain::default(),
            cancellers: RefCell::default(),
            text_bufs: RefCell::default(),
            req_states: RefCell::default(),
            parking: Parking::new()?,
            active: Cell::new(0),
            admin_open: Cell::new(0),
            buffers: RefCell::new(BufferPool::default()),
            sockets: RefCell::new(Slab::new()),
            listeners: RefCell::new(Vec::new()),
            requests: Requests::new(id, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            cache_refs: RefCell::default(),
            encoders: RefCell::default(),
            whole_gzip: RefCell::default(),
            limiter: RefCell::default(),
            auth: RefCell::default(),
            filter_scratch: RefCell::default(),
        })
    }

    /// Gzips a whole small body in one call. The worker's one
    /// compressor serves every response: the call never waits, so no two
    /// responses need it at once (a streaming encoder is held across the
    /// relay's waits, one per response in flight).
    pub fn gzip_whole(&self, level: u32, input: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        let mut whole = self.whole_gzip.borrow_mut();
        let gzip = match &mut *whole {
            Some(g) if g.level() == level => g,
            slot => slot.insert(WholeGzip::new(level)),
        };
        gzip.compress(input, out)
    }

    /// A compressor for `alg` at `level`, kept or new.
    pub fn take_encoder(&self, alg: Algorithm, level: Option<u32>) -> Encoder {
        let mut kept = self.encoders.borrow_mut();
        match kept
            .iter()
            .position(|(l, e)| e.algorithm() == alg && *l == level)
        {
            Some(i) => kept.swap_remove(i).1,
            None => Encoder::new(alg, level),
        }
    }

    /// Keeps a compressor made for `level` for a later response (a few
    /// per worker).
    pub fn give_encoder(&self, level: Option<u32>, encoder: Encoder) {
        let mut kept = self.encoders.borrow_mut();
        if kept.len() < MAX_KEPT_ENCODERS {
            kept.push((level, encoder));
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

    /// Picks a server of `group` for a request on snapshot `generation`
    /// (not one of `tried`), counting it in flight until `finish`.
    pub fn pick_server(
        &self,
        generation: u64,
        config: &Snapshot,
        group: usize,
        hash: Option<u64>,
        tried: &[usize],
        region: Option<u16>,
    ) -> Option<usize> {
        let g = config.upstreams.get(group)?;
        let mut b = self.balancers.borrow_mut();
        if generation > b.generation {
            let mut groups: Vec<GroupState> =
                config.upstreams.iter().map(GroupState::new).collect();
            if let Some(old) = b.config.clone()
                && old.generation == b.generation
            {
                for (state, new_group) in groups.iter_mut().zip(&config.upstreams) {
                    if let Some(k) = old.upstreams.iter().position(|o| o.name == new_group.name)
                        && let Some(old_state) = b.groups.get(k)
                    {
                        state.carry_over(new_group, old_state, &old.upstreams[k]);
                    }
                }
            }
            b.groups = groups;
            b.generation = generation;
            b.config = Some(config.clone());
        }
        if generation == b.generation {
            let now = Instant::now();
            let Balancers { groups, rng, .. } = &mut *b;
            let regions = region.map_or(&[][..], |r| config.geo.preference(r));
            return groups
                .get_mut(group)?
                .pick(g, hash, tried, regions, rng, now);
        }
        // A request still on an older snapshot: plain rotation over that
        // snapshot's servers, skipping those tried.
        let n = g.servers.len();
        for _ in 0..n {
            b.fallback = b.fallback.wrapping_add(1);
            let i = b.fallback % n.max(1);
            if !tried.contains(&i) && g.servers[i].take_place() {
                return Some(i);
            }
        }
        None
    }

    /// Ends an attempt on a server picked by `pick_server`.
    pub fn finish_server(
        &self,
        generation: u64,
        config: &Config,
        group: usize,
        server: usize,
        outcome: Outcome,
    ) {
        self.finish_server_at(generation, config, group, server, outcome, Instant::now());
    }

    /// `finish_server` for a caller that has just read the clock.
    pub fn finish_server_at(
        &self,
        generation: u64,
        config: &Config,
        group: usize,
        server: usize,
        outcome: Outcome,
        now: Instant,
    ) {
        let Some(g) = config.upstreams.get(group) else {
            return;
        };
        let mut b = self.balancers.borrow_mut();
        if generation == b.generation
            && let Some(state) = b.groups.get_mut(group)
        {
            state.finish(g, server, outcome, now);
        } else if let Some(s) = g.servers.get(server) {
            s.release_place();
        }
    }

    /// `finish_server_at` for an attempt that became a tunnel: its outcome
    /// counts now, while the server keeps it in flight (and under
    /// `max_conns`) until `release_server` when the tunnel closes.
    pub fn hold_server_at(
        &self,
        generation: u64,
        config: &Config,
        group: usize,
        server: usize,
        outcome: Outcome,
        now: Instant,
    ) {
        let Some(g) = config.upstreams.get(group) else {
            return;
        };
        let mut b = self.balancers.borrow_mut();
        if generation == b.generation
            && let Some(state) = b.groups.get_mut(group)
        {
            state.settle(g, server, outcome, now);
        }
    }

    /// Ends what `hold_server_at` kept counted.
    pub fn release_server(&self, generation: u64, config: &Config, group: usize, server: usize) {
        let Some(g) = config.upstreams.get(group) else {
            return;
        };
        let mut b = self.balancers.borrow_mut();
        if generation == b.generation
            && let Some(state) = b.groups.get_mut(group)
        {
            state.release(g, server);
        } else if let Some(s) = g.servers.get(server) {
            s.release_place();
        }
    }

    /// Runs `f` on the group's balancer state when `generation` is current.
    pub fn with_group<R>(
        &self,
        generation: u64,
        group: usize,
        f: impl FnOnce(&mut GroupState) -> R,
    ) -> Option<R> {
        let mut b = self.balancers.borrow_mut();
        if generation != b.generation {
            return None;
        }
        b.groups.get_mut(group).map(f)
    }

    pub fn sweep_pool(&self) {
        self.pool.borrow_mut().sweep(Instant::now());
    }
}

/// Counts a client connection as active (for the drain) while alive, and
/// remembers its socket so a drain that times out can shut it down.
pub(crate) struct ActiveGuard {
    ctx: Rc<WorkerCtx>,
    key: usize,
    /// An admin connection (left out of the connection metrics).
    admin: bool,
    /// Its place among the listener's counted connections (`guard`),
    /// given back when the connection ends, however it ends.
    slot: Option<ConnSlot>,
}

impl ActiveGuard {
    pub fn new(ctx: Rc<WorkerCtx>, fd: RawFd, admin: bool) -> Self {
        let key = ctx.sockets.borrow_mut().insert(fd);
        ctx.active.set(ctx.active.get() + 1);
        if admin {
            ctx.admin_open.set(ctx.admin_open.get() + 1);
        }
        ActiveGuard {
            ctx,
            key,
            admin,
            slot: None,
        }
    }

    /// Holds the connection's counted place until the connection ends.
    pub fn hold(&mut self, slot: Option<ConnSlot>) {
        self.slot = slot;
    }

    pub fn slot(&self) -> Option<&ConnSlot> {
        self.slot.as_ref()
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.ctx.sockets.borrow_mut().remove(self.key);
        self.ctx.active.set(self.ctx.active.get() - 1);
        if self.admin {
            self.ctx.admin_open.set(self.ctx.admin_open.get() - 1);
        }
    }
}

/// Shuts down (both ways) every client socket still open, so the tasks
/// blocked on them finish and close them normally.
pub(crate) fn shut_down_sockets(ctx: &WorkerCtx) {
    for (_, &fd) in ctx.sockets.borrow().iter() {
        // Each fd belongs to a live connection task (its guard removes it
        // before the socket is closed); shutdown(2) neither closes nor
        // frees it, it only ends the connection.
        let _ = sys::shutdown(fd);
    }
}
