//! Starting and steering a running proxy: binds every listener once per
//! worker (SO_REUSEPORT), starts the pinned worker threads, publishes new
//! config snapshots, and drains on shutdown. Used by `main` and by tests.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};

pub use crate::config::IoMode;
use crate::config::{
    Config, ConfigError, ConfigErrors, ListenerConfig, ServerSpec, expand, servers_changed,
};
use crate::counters::{ExitTotals, WorkerCounters};
use crate::worker::{self, NewListener, WorkerSpec};

/// The state every worker reads: the published snapshot and the flags.
pub(crate) struct Shared {
    config: ArcSwap<Config>,
    /// Bumped after each publish; workers compare it to their cached one.
    pub generation: AtomicU64,
    pub draining: AtomicBool,
    publish: Mutex<()>,
    /// Worker count (each listener is bound once per worker).
    workers: usize,
    /// Sockets bound by a reload for each worker to pick up.
    new_listeners: Mutex<Vec<Vec<NewListener>>>,
    /// Listener name → bound address.
    bound: Mutex<Vec<(String, SocketAddr)>>,
    /// What each worker last published.
    pub counters: WorkerCounters,
}

impl Shared {
    /// The published snapshot and its generation (carried inside it, so
    /// the two can never disagree).
    pub fn current(&self) -> (u64, Arc<Config>) {
        let config = self.config.load_full();
        (config.generation, config)
    }

    fn reload(&self, config: Config) -> Result<u64, ConfigErrors> {
        let _serial = self.publish.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.config.load();
        self.bind_added_listeners(&current, &config)?;
        let mut config = config;
        carry_health(&current, &mut config);
        config.generation = current.generation + 1;
        let generation = config.generation;
        self.config.store(Arc::new(config));
        // Workers compare this with their cached generation per request.
        self.generation.store(generation, Ordering::Release);
        Ok(generation)
    }

    /// Binds the listeners `new` adds (every worker's socket) and hands
    /// them to the workers, which start them (and stop removed ones) when
    /// they see the new snapshot. A listener that cannot be bound fails
    /// the reload before anything changes.
    fn bind_added_listeners(&self, current: &Config, new: &Config) -> Result<(), ConfigErrors> {
        let mut added = Vec::new();
        let mut errors = Vec::new();
        for (i, l) in new.listeners.iter().enumerate() {
            if current
                .listeners
                .iter()
                .any(|o| o.id == l.id && o.bind == l.bind)
            {
                continue;
            }
            match bind_reuseport(l, self.workers) {
                Ok(sockets) => added.push((l, sockets)),
                Err(e) => errors.push(ConfigError {
                    path: format!("listeners[{i}].bind"),
                    message: format!("cannot bind {}: {e}; keeping the running config", l.bind),
                }),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let mut pending = self.new_listeners.lock().unwrap_or_else(|p| p.into_inner());
        let mut bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        bound.retain(|(name, _)| new.listeners.iter().any(|l| &l.name == name));
        for (l, sockets) in added {
            if let Some(addr) = sockets.first().and_then(|s| s.local_addr().ok()) {
                bound.retain(|(name, _)| name != &l.name);
                bound.push((l.name.clone(), addr));
            }
            for (w, socket) in sockets.into_iter().enumerate() {
                if let Some(list) = pending.get_mut(w) {
                    list.push(NewListener {
                        generation: current.generation + 1,
                        id: l.id,
                        bind: l.bind,
                        socket,
                    });
                }
            }
        }
        Ok(())
    }

    /// Publishes `group`'s servers as DNS now resolves them, if the group
    /// still has the same `servers` entries and the addresses changed.
    /// Ok(None): nothing to do.
    pub fn update_servers(
        &self,
        group: &str,
        specs: &[ServerSpec],
        addrs: &[Vec<SocketAddr>],
    ) -> Result<Option<u64>, String> {
        let _serial = self.publish.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.config.load_full();
        let Some(index) = current.upstreams.iter().position(|g| g.name == group) else {
            return Err("the group is gone".into());
        };
        let same_specs = current.upstreams[index].specs.len() == specs.len()
            && current.upstreams[index]
                .specs
                .iter()
                .zip(specs)
                .all(|(a, b)| a.text == b.text);
        if !same_specs {
            return Err("the group changed meanwhile".into());
        }
        let servers = expand(&current.upstreams[index].specs, addrs);
        let old: Vec<SocketAddr> = current.upstreams[index]
            .servers
            .iter()
            .map(|s| s.addr)
            .collect();
        let new: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        if old == new {
            return Ok(None);
        }
        if servers.iter().all(|s| s.backup) {
            return Err("no primary server would be left".into());
        }
        let mut config = (*current).clone();
        config.upstreams[index].servers = servers;
        servers_changed(&mut config.upstreams[index]);
        carry_health(&current, &mut config);
        config.generation = current.generation + 1;
        let generation = config.generation;
        self.config.store(Arc::new(config));
        self.generation.store(generation, Ordering::Release);
        Ok(Some(generation))
    }

    /// The sockets reloads up to `generation` bound for `worker`.
    pub fn take_new_listeners(&self, worker: usize, generation: u64) -> Vec<NewListener> {
        let mut all = self.new_listeners.lock().unwrap_or_else(|p| p.into_inner());
        let Some(queue) = all.get_mut(worker) else {
            return Vec::new();
        };
        let (ready, later) = std::mem::take(queue)
            .into_iter()
            .partition(|n| n.generation <= generation);
        *queue = later;
        ready
    }
}

/// Reloads a running proxy; cheap to clone and send to another thread.
#[derive(Clone)]
pub struct Reloader(Arc<Shared>);

impl Reloader {
    pub fn reload(&self, config: Config) -> Result<u64, ConfigErrors> {
        self.0.reload(config)
    }

    pub fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }
}

/// Command-line overrides of the `[runtime]` section.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub threads: Option<usize>,
    pub pin: Option<bool>,
    pub io: Option<IoMode>,
    /// Called by each worker about once a second to hand memory it freed
    /// back to the system, and with `true` just after a burst ended (the
    /// worker freed pooled buffers), to hand back all of it at once. The
    /// binary passes the allocator's collect: without it, memory freed by
    /// a burst of connections that went idle stays in the process until
    /// that thread allocates again.
    pub release_memory: Option<fn(bool)>,
}

/// A running proxy.
pub struct ServerHandle {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Health-check and DNS threads.
    background: Vec<JoinHandle<()>>,
    drivers: Vec<&'static str>,
}

impl ServerHandle {
    /// Binds the listeners and starts the workers; returns once every
    /// worker is accepting. SIGPIPE must be ignored in the process (Rust
    /// binaries do so before `main`): writes and splices to a socket the
    /// peer closed raise it, and `splice` cannot be told not to.
    pub fn start(config: Config, opts: ServerOptions) -> io::Result<ServerHandle> {
        let threads = match opts.threads.unwrap_or(config.runtime.threads) {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let pin = opts.pin.unwrap_or(config.runtime.pin);
        let io_mode = opts.io.unwrap_or(config.runtime.io);

        let mut per_worker: Vec<Vec<NewListener>> = (0..threads).map(|_| Vec::new()).collect();
        let mut bound = Vec::new();
        for l in &config.listeners {
            let sockets = bind_reuseport(l, threads)?;
            bound.push((l.name.clone(), sockets[0].local_addr()?));
            for (w, socket) in sockets.into_iter().enumerate() {
                per_worker[w].push(NewListener {
                    generation: 1,
                    id: l.id,
                    bind: l.bind,
                    socket,
                });
            }
        }

        let shared = Arc::new(Shared {
            config: ArcSwap::from_pointee(Config {
                generation: 1,
                ..config
            }),
            generation: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            publish: Mutex::new(()),
            workers: threads,
            new_listeners: Mutex::new((0..threads).map(|_| Vec::new()).collect()),
            bound: Mutex::new(bound),
            counters: WorkerCounters::new(threads),
        });
        let cores = if pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut workers = Vec::with_capacity(threads);
        for (id, listeners) in per_worker.into_iter().enumerate() {
            let spec = WorkerSpec {
                id,
                shared: shared.clone(),
                listeners,
                io: io_mode,
                ready: ready_tx.clone(),
                release_memory: opts.release_memory,
            };
            let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            let handle = std::thread::Builder::new()
                .name(format!("ringress-w{id}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    worker::run(spec);
                })?;
            workers.push(handle);
        }
        drop(ready_tx);
        let mut drivers = Vec::with_capacity(threads);
        for _ in 0..threads {
            match ready_rx.recv() {
                Ok(Ok(driver)) => drivers.push(driver),
                Ok(Err(msg)) => {
                    shared.draining.store(true, Ordering::Release);
                    return Err(io::Error::other(msg));
                }
                Err(_) => return Err(io::Error::other("a worker exited during start-up")),
            }
        }
        let mut background = Vec::new();
        for spawn in [crate::health::spawn, crate::discovery::spawn] {
            match spawn(shared.clone()) {
                Ok(h) => background.push(h),
                Err(e) => {
                    shared.draining.store(true, Ordering::Release);
                    return Err(e);
                }
            }
        }
        Ok(ServerHandle {
            shared,
            workers,
            background,
            drivers,
        })
    }

    /// The address a listener is bound to (useful with port 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        let bound = self.shared.bound.lock().unwrap_or_else(|p| p.into_inner());
        bound.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    /// The I/O driver each worker runs ("io_uring" or "epoll").
    pub fn drivers(&self) -> &[&'static str] {
        &self.drivers
    }

    /// Requests ended per exit kind, as the workers last published them
    /// (every 50 ms).
    pub fn exits(&self) -> ExitTotals {
        self.shared.counters.exits()
    }

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Generation of the published snapshot (1 at start).
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// Publishes a new snapshot; requests in flight finish on their old
    /// one. Listeners the new config adds are bound first (a bind failure
    /// refuses the whole reload); removed ones stop accepting, and their
    /// open connections finish normally.
    pub fn reload(&self, config: Config) -> Result<u64, ConfigErrors> {
        self.shared.reload(config)
    }

    /// A handle that can reload from another thread (the admin listener).
    pub fn reloader(&self) -> Reloader {
        Reloader(self.shared.clone())
    }

    /// Reads, validates and publishes a config file. On error nothing
    /// changes and every problem is returned.
    pub fn reload_file(&self, path: &Path) -> Result<u64, ConfigErrors> {
        self.reload(Config::from_file(path)?)
    }

    /// Stops accepting, lets open requests finish (up to the configured
    /// drain timeout), and waits for every worker to exit.
    pub fn shutdown(self) {
        self.shared.draining.store(true, Ordering::Release);
        for w in self.workers {
            let _ = w.join();
        }
        for h in self.background {
            let _ = h.join();
        }
    }
}

/// Servers that stay in a group across a reload keep their health (what
/// the checks found, and the requests counted against `max_conns`).
fn carry_health(old: &Config, new: &mut Config) {
    for group in &mut new.upstreams {
        let Some(old_group) = old.upstreams.iter().find(|g| g.name == group.name) else {
            continue;
        };
        for server in &mut group.servers {
            if let Some(old_server) = old_group.servers.iter().find(|s| s.addr == server.addr) {
                if group.health_check.is_none() {
                    // No checks any more: nothing will bring it back up.
                    old_server.health.set_up(true);
                }
                server.health = old_server.health.clone();
            }
        }
    }
}

/// Binds `count` sockets to the same address with SO_REUSEPORT; with port
/// 0 the first picks the port and the rest join it.
fn bind_reuseport(l: &ListenerConfig, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let mut addr = l.bind;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_tcp_nodelay(true)?;
        socket.bind(&addr.into()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("listener `{}`: cannot bind {addr}: {e}", l.name),
            )
        })?;
        crate::worker::apply_listener_options(socket2::SockRef::from(&socket), l).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("listener `{}`: cannot set up {addr}: {e}", l.name),
            )
        })?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        out.push(listener);
    }
    Ok(out)
}
