//! Starting and steering a running proxy: binds every listener once per
//! worker (SO_REUSEPORT), starts the pinned worker threads, publishes new
//! config snapshots, and drains on shutdown. Used by `main` and by tests.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;

use socket2::{Domain, Protocol, Socket, Type};

pub use crate::config::IoMode;
use crate::config::{AccessLogConfig, Config, ConfigError, ConfigErrors, ListenerConfig};
use crate::counters::ExitTotals;
use crate::observe::AccessSink;
use crate::shared::{NewListener, ReloadHook, Shared};
use crate::worker::{self, WorkerSpec};

/// Publishes `config`, after binding the listeners it adds, and logs
/// what changed, one line per kind of change.
fn reload(shared: &Shared, config: Config) -> Result<u64, ConfigErrors> {
    let access_log = config.access_log.clone();
    // The writer runs before the config that asks for it is published, so
    // no request on it goes unlogged; a path that cannot be opened
    // refuses the reload.
    let ready = match &access_log {
        Some(log) => start_access_log(shared, log),
        None => Ok(()),
    };
    let mut changed = Vec::new();
    let published = ready.and_then(|()| {
        shared.publish(|current| {
            bind_added_listeners(shared, current, &config)?;
            changed = super::changes(current, &config);
            Ok(Some(config))
        })
    });
    let counter = match published {
        Ok(_) => &shared.reloads_ok,
        Err(_) => &shared.reloads_failed,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if published.is_ok()
        && let (Some(log), Some(sink)) = (access_log, shared.access_log.get())
    {
        sink.retarget(&log.target);
    }
    // Always Some: the closure above always returns a config.
    let generation = published?.unwrap_or_else(|| shared.current().0);
    if changed.is_empty() {
        tracing::info!(
            generation,
            "reload: no listener, certificate, route or server changed"
        );
    }
    for line in &changed {
        tracing::info!(generation, "reload: {line}");
    }
    Ok(generation)
}

/// Starts the access log's writer if none runs yet; checks that a new
/// path can be opened.
fn start_access_log(shared: &Shared, log: &AccessLogConfig) -> Result<(), ConfigErrors> {
    let refuse = |e: io::Error| {
        ConfigErrors(vec![ConfigError::new(
            "access_log.path",
            format!("cannot open {:?}: {e}", log.target),
        )])
    };
    match shared.access_log.get() {
        Some(_) => AccessSink::check(&log.target).map_err(refuse),
        None => {
            let sink = AccessSink::start(log.target.clone(), shared.workers).map_err(refuse)?;
            if let Err(sink) = shared.access_log.set(sink) {
                sink.stop();
            }
            Ok(())
        }
    }
}

/// The admin reload: reads, validates and publishes the config file, and
/// logs the outcome; problems come back one per line.
fn reload_file(shared: &Shared, path: &Path) -> Result<u64, String> {
    let outcome = Config::from_file(path)
        .inspect_err(|_| {
            shared.reloads_failed.fetch_add(1, Ordering::Relaxed);
        })
        .and_then(|c| {
            for w in &c.warnings {
                tracing::warn!("{w}");
            }
            reload(shared, c)
        });
    match outcome {
        Ok(generation) => {
            tracing::info!(generation, "config reloaded (admin)");
            Ok(generation)
        }
        Err(errors) => {
            tracing::error!("admin reload rejected, keeping the running config:");
            let mut lines = String::new();
            for e in &errors.0 {
                tracing::error!("  {e}");
                lines.push_str(&format!("  {e}\n"));
            }
            Err(lines)
        }
    }
}

/// Binds the listeners `new` adds (every worker's socket) and hands them
/// to the workers, which start them (and stop removed ones) when they see
/// the new snapshot. A listener that cannot be bound fails the reload
/// before anything changes.
fn bind_added_listeners(
    shared: &Shared,
    current: &Config,
    new: &Config,
) -> Result<(), ConfigErrors> {
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
        match bind_reuseport(l, shared.workers) {
            Ok(sockets) => added.push((l, sockets)),
            Err(e) => errors.push(ConfigError::new(
                format!("listeners[{i}] {:?}.bind", l.name),
                format!("cannot bind {}: {e}; keeping the running config", l.bind),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let mut pending = shared.new_listeners();
    let mut bound = shared.bound();
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

/// Reloads a running proxy; cheap to clone and send to another thread.
#[derive(Clone)]
pub struct Reloader(Arc<Shared>);

impl Reloader {
    pub fn reload(&self, config: Config) -> Result<u64, ConfigErrors> {
        reload(&self.0, config)
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
        Self::launch(config, opts, false)
    }

    /// `start` for an upgrade: listeners another process (the one being
    /// replaced) already listens on are joined, and the kernel hands
    /// every new connection to this process from then on, so that the
    /// old one can be stopped without a connection waiting in its queues
    /// when it closes them (such a connection would be reset). Until the
    /// old sockets are gone the new connections all go to one worker.
    pub fn start_alongside(config: Config, opts: ServerOptions) -> io::Result<ServerHandle> {
        Self::launch(config, opts, true)
    }

    fn launch(config: Config, opts: ServerOptions, alongside: bool) -> io::Result<ServerHandle> {
        let threads = match opts.threads.unwrap_or(config.runtime.threads) {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let pin = opts.pin.unwrap_or(config.runtime.pin);
        let io_mode = opts.io.unwrap_or(config.runtime.io);

        let mut per_worker: Vec<Vec<NewListener>> = (0..threads).map(|_| Vec::new()).collect();
        let mut bound = Vec::new();
        for l in &config.listeners {
            let sockets = if alongside {
                bind_alongside(l, threads)?
            } else {
                bind_reuseport(l, threads)?
            };
            bound.push((l.name.clone(), sockets[0].local_addr()?));
            // More sockets than workers only when joining a process that
            // has more (`bind_alongside`): some workers then take two.
            for (w, socket) in sockets.into_iter().enumerate() {
                per_worker[w % threads].push(NewListener {
                    generation: 1,
                    id: l.id,
                    bind: l.bind,
                    socket,
                });
            }
        }

        let access_log = config.access_log.clone();
        let shared = Arc::new(Shared::new(config, threads, bound));
        shared.steer_hold.store(alongside, Ordering::Release);
        if let Some(log) = access_log {
            start_access_log(&shared, &log).map_err(|e| io::Error::other(e.to_string()))?;
        }
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
        for spawn in [super::health::spawn, super::discovery::spawn] {
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
        let bound = self.shared.bound();
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
        reload(&self.shared, config)
    }

    /// Binds the admin listener and hands it to worker 0, which serves it
    /// with the proxy's engine; `POST /reload` re-reads `config_file`.
    /// Returns the bound address; fails when something listens there
    /// already. The socket allows SO_REUSEPORT only so that an upgrade
    /// can take it over (`take_over_admin`).
    pub fn start_admin(&self, bind: SocketAddr, config_file: PathBuf) -> io::Result<SocketAddr> {
        if bind.port() != 0 {
            // SO_REUSEPORT would let it join another admin listener.
            super::instance::probe_alone(bind)?;
        }
        self.serve_admin(bind_admin(bind)?, config_file)
    }

    /// Binds the admin listener on an address another process (the one
    /// being upgraded) already listens on, and has the kernel hand every
    /// new admin connection to this process from now on; the old process
    /// keeps its socket but gets no more connections. The old sockets
    /// must allow SO_REUSEPORT (`start_admin` binds them so).
    pub fn take_over_admin(
        &self,
        bind: SocketAddr,
        config_file: PathBuf,
    ) -> io::Result<SocketAddr> {
        // As in `bind_alongside`: the old process has one admin socket,
        // ours is number 1 until it closes and then the only one left.
        let before = super::instance::listening_count(bind);
        let socket = bind_admin(bind)?;
        if before > 0 {
            crate::sys::steer_reuseport_group(&socket, before as u32)?;
        }
        self.serve_admin(socket, config_file)
    }

    fn serve_admin(
        &self,
        socket: std::net::TcpListener,
        config_file: PathBuf,
    ) -> io::Result<SocketAddr> {
        let addr = socket.local_addr()?;
        let token = self.shared.current().1.admin.token.is_some();
        if !addr.ip().is_loopback() && !token {
            tracing::warn!(bind = %addr, "the admin listener has no token ([admin] token) and is not on loopback");
        }
        let shared = self.shared.clone();
        let hook: ReloadHook = Arc::new(move || reload_file(&shared, &config_file));
        self.shared.queue_admin(socket, addr, hook);
        Ok(addr)
    }

    /// A handle that can reload from another thread.
    pub fn reloader(&self) -> Reloader {
        Reloader(self.shared.clone())
    }

    /// Reads, validates and publishes a config file. On error nothing
    /// changes and every problem is returned.
    pub fn reload_file(&self, path: &Path) -> Result<u64, ConfigErrors> {
        let config = Config::from_file(path).inspect_err(|_| {
            self.shared.reloads_failed.fetch_add(1, Ordering::Relaxed);
        })?;
        self.reload(config)
    }

    /// Counts a reload that failed before it reached `reload` (a file
    /// that could not be read or validated).
    pub fn reload_failed(&self) {
        self.shared.reloads_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Reopens the access log file before its next write (SIGUSR1, after
    /// logrotate moved it).
    pub fn reopen_logs(&self) {
        if let Some(sink) = self.shared.access_log.get() {
            sink.reopen();
        }
    }

    /// Stops accepting, lets open requests finish (up to the configured
    /// drain timeout), and waits for every worker to exit; then the
    /// access log writer writes what the workers handed it.
    pub fn shutdown(self) {
        self.shared.draining.store(true, Ordering::Release);
        for w in self.workers {
            let _ = w.join();
        }
        for h in self.background {
            let _ = h.join();
        }
        if let Some(sink) = self.shared.access_log.get() {
            sink.stop();
        }
    }
}

/// Binds a listener's sockets into the SO_REUSEPORT group of the process
/// being upgraded, and steers every new connection to one of ours.
///
/// The group's sockets are numbered in the order they started listening,
/// and a closed one is replaced by the group's last. With `n` old sockets
/// followed by our `m`, numbers from `n` up stay ours while the old ones
/// close, and the group shrinks to our `m` in the end. Steering to number
/// `m` with `m >= n` therefore picks one of ours until the last old
/// socket is gone; then `m` is past the end, and the kernel falls back to
/// its usual hash over our sockets, so the program needs no removing.
/// Hence at least as many sockets as the old process has.
fn bind_alongside(l: &ListenerConfig, threads: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let before = if l.bind.port() == 0 {
        0
    } else {
        super::instance::listening_count(l.bind)
    };
    let count = threads.max(before);
    let sockets = bind_reuseport(l, count)?;
    if before > 0 {
        crate::sys::steer_reuseport_group(&sockets[0], count as u32).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "listener `{}`: cannot steer connections to {}: {e}",
                    l.name, l.bind
                ),
            )
        })?;
    }
    Ok(sockets)
}

/// The admin listener's socket: SO_REUSEPORT, so an upgrade can join it.
fn bind_admin(bind: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(bind), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&bind.into())?;
    socket.listen(128)?;
    Ok(socket.into())
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
