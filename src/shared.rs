//! The state workers and the control threads share: the published config
//! snapshot with its generation, the drain flag, which workers accept
//! (readiness), and the listening sockets bound for workers to pick up. Publishing is serialised here; what to
//! publish (reloads, DNS updates) is decided by the control plane.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::cache::zone::Zone;
use crate::config::Config;
use crate::counters::WorkerCounters;
use crate::net::conn_limit::ConnCounts;
use crate::observe::AccessSink;
use crate::observe::metrics::WorkerMetrics;
use crate::upstream::ServerConfig;

/// The id of the admin listener (configured listeners have smaller ones).
pub(crate) const ADMIN_LISTENER: u64 = u64::MAX;

/// Re-reads the config file and publishes it: the generation, or every
/// problem found, one per line. Set by the control plane, called by the
/// admin endpoint off the worker.
pub(crate) type ReloadHook = Arc<dyn Fn() -> Result<u64, String> + Send + Sync>;

/// A socket handed to a worker: the listener's id and configured address.
pub(crate) struct NewListener {
    /// The snapshot that added it: a worker still on an older one leaves
    /// it queued.
    pub generation: u64,
    pub id: u64,
    pub bind: SocketAddr,
    pub socket: std::net::TcpListener,
}

/// The state every worker reads: the published snapshot and the flags.
pub(crate) struct Shared {
    config: ArcSwap<Config>,
    /// Bumped after each publish; workers compare it to their cached one.
    pub generation: AtomicU64,
    pub draining: AtomicBool,
    publish: Mutex<()>,
    /// Worker count (each listener is bound once per worker).
    pub workers: usize,
    /// Sockets bound by a reload for each worker to pick up.
    new_listeners: Mutex<Vec<Vec<NewListener>>>,
    /// Listener name → bound address.
    bound: Mutex<Vec<(String, SocketAddr)>>,
    /// What each worker last published.
    pub counters: WorkerCounters,
    /// What `POST /reload` on the admin listener runs.
    pub admin_reload: OnceLock<ReloadHook>,
    /// The admin socket waits in worker 0's queue.
    pub admin_queued: AtomicBool,
    /// Each worker's metrics as it last published them.
    pub metrics: Box<[Mutex<WorkerMetrics>]>,
    /// Raised by a scrape; each worker publishes on its next tick and
    /// answers with the value in `published`.
    pub scrape: AtomicU64,
    pub published: Box<[AtomicU64]>,
    /// The access log's writer, once a config asked for one.
    pub access_log: OnceLock<AccessSink>,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    pub started: Instant,
    /// Per worker: its listeners have accepted connections since start.
    accepting: Box<[AtomicBool]>,
    /// Steering by source address is not to be relied on until the next
    /// publish: started alongside a process being upgraded (whose
    /// sockets share our SO_REUSEPORT groups and whose steering the
    /// upgrade needs), or a worker could not attach it. Rate limits on
    /// the client's address then use the shared buckets (still exact).
    pub steer_hold: AtomicBool,
    /// Open client connections per listener and address, over all
    /// workers (`max_conns`, `max_conns_per_ip`, `[overload]`).
    pub conns: ConnCounts,
}

impl Shared {
    /// Publishes `config` as generation 1.
    pub fn new(config: Config, workers: usize, bound: Vec<(String, SocketAddr)>) -> Shared {
        prepare_views(&config, workers);
        prepare_caches(None, &config, workers);
        let mut config = config;
        crate::limit::carry_over(None, &mut config.rate_limits, workers);
        Shared {
            config: ArcSwap::from_pointee(Config {
                generation: 1,
                ..config
            }),
            generation: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            publish: Mutex::new(()),
            workers,
            new_listeners: Mutex::new((0..workers).map(|_| Vec::new()).collect()),
            bound: Mutex::new(bound),
            counters: WorkerCounters::new(workers),
            admin_reload: OnceLock::new(),
            admin_queued: AtomicBool::new(false),
            metrics: (0..workers).map(|_| Mutex::default()).collect(),
            scrape: AtomicU64::new(0),
            published: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            access_log: OnceLock::new(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            started: Instant::now(),
            accepting: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            steer_hold: AtomicBool::new(false),
            conns: ConnCounts::default(),
        }
    }

    /// The published snapshot and its generation (carried inside it, so
    /// the two can never disagree).
    pub fn current(&self) -> (u64, Arc<Config>) {
        let config = self.config.load_full();
        (config.generation, config)
    }

    /// Runs `change` on the published snapshot with every other publisher
    /// held off, and publishes the config it returns, if any, as the next
    /// generation. Servers that stay in a group keep their health.
    pub fn publish<E>(
        &self,
        change: impl FnOnce(&Arc<Config>) -> Result<Option<Config>, E>,
    ) -> Result<Option<u64>, E> {
        let _serial = self.publish.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.config.load_full();
        let Some(mut config) = change(&current)? else {
            return Ok(None);
        };
        carry_health(&current, &mut config);
        prepare_views(&config, self.workers);
        prepare_caches(Some(&current), &config, self.workers);
        crate::limit::carry_over(
            Some(&current.rate_limits),
            &mut config.rate_limits,
            self.workers,
        );
        self.steer_hold.store(false, Ordering::Release);
        config.generation = current.generation + 1;
        let generation = config.generation;
        self.config.store(Arc::new(config));
        // Workers compare this with their cached generation per request.
        self.generation.store(generation, Ordering::Release);
        Ok(Some(generation))
    }

    /// The sockets queued for each worker (index: worker id).
    pub fn new_listeners(&self) -> MutexGuard<'_, Vec<Vec<NewListener>>> {
        self.new_listeners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sockets reloads up to `generation` bound for `worker`.
    pub fn take_new_listeners(&self, worker: usize, generation: u64) -> Vec<NewListener> {
        let mut all = self.new_listeners();
        let Some(queue) = all.get_mut(worker) else {
            return Vec::new();
        };
        let (ready, later) = std::mem::take(queue)
            .into_iter()
            .partition(|n| n.generation <= generation);
        *queue = later;
        ready
    }

    /// Hands the admin listener's socket to worker 0, which serves it
    /// with the proxy's own engine.
    pub fn queue_admin(&self, socket: std::net::TcpListener, bind: SocketAddr, reload: ReloadHook) {
        let _ = self.admin_reload.set(reload);
        if let Some(queue) = self.new_listeners().get_mut(0) {
            queue.push(NewListener {
                generation: 0,
                id: ADMIN_LISTENER,
                bind,
                socket,
            });
        }
        self.admin_queued.store(true, Ordering::Release);
    }

    /// Worker `worker` runs accept loops on its listeners.
    pub fn mark_accepting(&self, worker: usize) {
        if let Some(flag) = self.accepting.get(worker) {
            flag.store(true, Ordering::Release);
        }
    }

    /// Workers that have started accepting.
    pub fn accepting(&self) -> usize {
        self.accepting
            .iter()
            .filter(|f| f.load(Ordering::Acquire))
            .count()
    }

    /// Listener name → bound address.
    pub fn bound(&self) -> MutexGuard<'_, Vec<(String, SocketAddr)>> {
        self.bound.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Servers that stay in a group across a new snapshot keep their health
/// (what the checks found, the requests counted against `max_conns`, what
/// the workers published). What the admin API set for a server stays
/// while the new snapshot leaves that server's settings as they were; a
/// reload that changes them (a new weight, say) puts it back to those.
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
                if !same_settings(old_server, server) {
                    old_server.health.clear_admin();
                }
                server.health = old_server.health.clone();
            }
        }
    }
}

/// Makes room in each server's health for what the workers publish, here
/// rather than on a worker's tick.
fn prepare_views(config: &Config, workers: usize) {
    for server in config.upstreams.iter().flat_map(|g| &g.servers) {
        server.health.prepare_views(workers);
    }
}

/// Gives each cache zone its storage: the running config's zone of the
/// same name (resized, so its objects survive the reload), else a new one
/// with a shard per worker.
fn prepare_caches(old: Option<&Config>, config: &Config, workers: usize) {
    for zone in &config.caches {
        let running = old
            .and_then(|o| o.caches.iter().find(|z| z.name == zone.name))
            .and_then(|z| z.store.get());
        let store = match running {
            Some(store) => {
                store.resize(zone.max_size, zone.max_object);
                store.clone()
            }
            None => Arc::new(Zone::new(
                &zone.name,
                zone.max_size,
                zone.max_object,
                workers,
            )),
        };
        // Already set when this config was published before.
        let _ = zone.store.0.set(store);
    }
}

/// The settings of a server the admin API can override or that decide how
/// it is picked.
fn same_settings(a: &ServerConfig, b: &ServerConfig) -> bool {
    a.weight == b.weight
        && a.backup == b.backup
        && a.max_conns == b.max_conns
        && a.region == b.region
        && a.host == b.host
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::AdminState;

    fn config(weight: u32) -> Config {
        Config::from_toml_str(&format!(
            r#"
            [[listeners]]
            name = "main"
            bind = "127.0.0.1:0"
            [[routes]]
            path_prefix = "/"
            upstream = "web"
            [upstreams.web]
            servers = ["127.0.0.1:81", {{ addr = "127.0.0.1:82", weight = {weight} }}]
            "#
        ))
        .unwrap()
    }

    fn admin_state(shared: &Shared, server: usize) -> (AdminState, Option<u32>) {
        let health = &shared.current().1.upstreams[0].servers[server].health;
        (health.admin_state(), health.weight_override())
    }

    #[test]
    fn admin_settings_last_until_a_reload_changes_the_server() {
        let shared = Shared::new(config(2), 1, Vec::new());
        for s in &shared.current().1.upstreams[0].servers {
            s.health.set_admin_state(AdminState::Drain);
            s.health.set_weight_override(Some(5));
        }
        let publish = |c: Config| shared.publish(|_| Ok::<_, ()>(Some(c))).unwrap();
        publish(config(2));
        assert_eq!(admin_state(&shared, 0), (AdminState::Drain, Some(5)));
        assert_eq!(admin_state(&shared, 1), (AdminState::Drain, Some(5)));
        // The second server's weight changes: it is back to its config.
        publish(config(3));
        assert_eq!(admin_state(&shared, 0), (AdminState::Drain, Some(5)));
        assert_eq!(admin_state(&shared, 1), (AdminState::Ready, None));
    }

    #[test]
    fn readiness_counts_each_worker_once() {
        let shared = Shared::new(config(1), 2, Vec::new());
        assert_eq!(shared.accepting(), 0);
        shared.mark_accepting(1);
        shared.mark_accepting(1);
        assert_eq!(shared.accepting(), 1);
        shared.mark_accepting(0);
        shared.mark_accepting(7);
        assert_eq!(shared.accepting(), 2);
    }
}
