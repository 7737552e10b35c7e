//! One worker's metrics: plain counters and histograms written only by
//! that worker, keyed by label names so counts carry across reloads (a
//! Prometheus counter must never go down). Snapshot positions (listener,
//! route, group, server) map to the names once per config generation;
//! a warm request then only indexes vectors. Published by the worker on
//! its tick as a copy; the admin side merges the copies.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::Config;
use crate::error::ErrorKind;
use crate::pipeline::{CacheResult, FilterAction};

/// Upper bounds of the latency buckets, in seconds (the last bucket,
/// +Inf, is implied).
pub const BOUNDS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BOUNDS_NS: [u64; 15] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];

/// A latency histogram: non-cumulative counts per bucket (the last one
/// is +Inf) and the sum in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    pub counts: [u64; BOUNDS.len() + 1],
    pub sum_ns: u64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        let bucket = BOUNDS_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(BOUNDS.len());
        self.counts[bucket] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn add(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }
}

/// How one upstream attempt ended (label `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A response head was passed on (any status).
    Response,
    /// The connection could not be made.
    ConnectError,
    /// No answer in time.
    Timeout,
    /// Reset, closed early, or an invalid response.
    Error,
    /// A status listed in `retry_on`.
    RetryStatus,
}

impl AttemptOutcome {
    pub const NAMES: [&'static str; 5] = [
        "response",
        "connect_error",
        "timeout",
        "error",
        "retry_status",
    ];

    pub fn of_error(kind: ErrorKind, connecting: bool) -> AttemptOutcome {
        match kind {
            ErrorKind::GatewayTimeout => AttemptOutcome::Timeout,
            ErrorKind::UpstreamStatus(_) => AttemptOutcome::RetryStatus,
            _ if connecting => AttemptOutcome::ConnectError,
            _ => AttemptOutcome::Error,
        }
    }
}

/// `result` of a TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    Ok,
    Failed,
    Timeout,
}

impl Handshake {
    pub const NAMES: [&'static str; 3] = ["ok", "failed", "timeout"];
}

/// Why a client connection was closed by the connection guard: refused
/// over a listener's `max_conns` or `max_conns_per_ip`, cut for a head
/// arriving below `min_head_rate`, or closed idle under `[overload]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnClosed {
    MaxConns,
    MaxConnsPerIp,
    SlowHead,
    OverloadIdle,
}

impl ConnClosed {
    pub const NAMES: [&'static str; 4] = [
        "max_conns",
        "max_conns_per_ip",
        "slow_head",
        "overload_idle",
    ];
}

/// Names seen so far, each with a dense id (they only grow).
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub list: Vec<Box<str>>,
    ids: HashMap<Box<str>, u32>,
}

impl Names {
    pub fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.list.len() as u32;
        self.list.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }
}

/// Requests of one route: per listener and status, and their durations.
#[derive(Debug, Clone, Default)]
pub struct RouteStats {
    /// (listener id, status, count); a handful per route.
    pub codes: Vec<(u32, u16, u64)>,
    pub duration: Histogram,
    /// Requests by cache result (`CacheResult::counted`).
    pub cache: [u64; CacheResult::COUNTED.len()],
}

#[derive(Debug, Clone, Default)]
pub struct ServerStats {
    /// The server's group id.
    pub group: u32,
    pub outcomes: [u64; AttemptOutcome::NAMES.len()],
    /// Response times of attempts that got a response.
    pub latency: Histogram,
}

#[derive(Debug, Clone, Default)]
pub struct GroupStats {
    /// New and reused upstream connections.
    pub connections: [u64; 2],
}

/// Snapshot positions → ids, for one generation.
#[derive(Debug, Clone, Default)]
struct Positions {
    generation: u64,
    listeners: Vec<u32>,
    routes: Vec<u32>,
    groups: Vec<u32>,
    servers: Vec<Vec<u32>>,
    limits: Vec<u32>,
    filter_rules: Vec<u32>,
}

/// One worker's counts.
#[derive(Debug, Clone, Default)]
pub struct WorkerMetrics {
    pub listeners: Names,
    pub routes: Names,
    pub groups: Names,
    /// `group/ip:port` (a server can be in several groups).
    pub servers: Names,
    /// By route id.
    pub route_stats: Vec<RouteStats>,
    /// By server id.
    pub server_stats: Vec<ServerStats>,
    /// By group id.
    pub group_stats: Vec<GroupStats>,
    /// Generated 4xx/5xx answers, by `ErrorKind::index`.
    pub rejections: [u64; ErrorKind::NAMES.len()],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub handshakes: [u64; Handshake::NAMES.len()],
    pub log_lines_dropped: u64,
    /// Rate limits by name.
    pub limits: Names,
    /// By limit id: [refused, logged only].
    pub limit_stats: Vec<[u64; 2]>,
    /// Filter rules by id.
    pub filter_rules: Names,
    /// By filter rule id: matches by `FilterAction`.
    pub filter_stats: Vec<[u64; FilterAction::NAMES.len()]>,
    /// Connections the guard closed, by `ConnClosed`.
    pub conns_closed: [u64; ConnClosed::NAMES.len()],
    /// Gauges, set when published.
    pub active_connections: u64,
    pub idle_connections: u64,
    positions: Positions,
}

/// The label of a route: its name (routes without one are named
/// `route<index>` by the config).
fn route_name(config: &Config, index: usize) -> &str {
    config
        .routes
        .routes
        .get(index)
        .map_or("", |r| r.name.as_str())
}

impl WorkerMetrics {
    /// Maps `config`'s positions to ids (once per generation).
    #[inline(always)]
    fn positions(&mut self, config: &Config) {
        if self.positions.generation != config.generation || config.generation == 0 {
            self.map_positions(config);
        }
    }

    #[cold]
    #[inline(never)]
    fn map_positions(&mut self, config: &Config) {
        let mut p = Positions {
            generation: config.generation,
            ..Positions::default()
        };
        p.listeners = config
            .listeners
            .iter()
            .map(|l| self.listeners.id(&l.name))
            .collect();
        p.routes = (0..config.routes.routes.len())
            .map(|i| self.routes.id(route_name(config, i)))
            .collect();
        for g in &config.upstreams {
            let group = self.groups.id(&g.name);
            p.groups.push(group);
            let servers = g
                .servers
                .iter()
                .map(|s| self.servers.id(&format!("{}/{}", g.name, s.addr)))
                .collect();
            p.servers.push(servers);
        }
        p.limits = config
            .rate_limits
            .iter()
            .map(|l| self.limits.id(&l.name))
            .collect();
        self.limit_stats
            .resize_with(self.limits.list.len(), Default::default);
        p.filter_rules = config
            .filters
            .rules
            .iter()
            .map(|r| self.filter_rules.id(&r.id))
            .collect();
        self.filter_stats
            .resize_with(self.filter_rules.list.len(), Default::default);
        let no_route = self.routes.id("");
        let no_listener = self.listeners.id("");
        self.route_stats
            .resize_with(self.routes.list.len(), RouteStats::default);
        self.group_stats
            .resize_with(self.groups.list.len(), GroupStats::default);
        self.server_stats
            .resize_with(self.servers.list.len(), ServerStats::default);
        for (g, servers) in p.servers.iter().enumerate() {
            for &s in servers {
                self.server_stats[s as usize].group = p.groups[g];
            }
        }
        // Positions past the end (a removed listener, no route) use these.
        p.routes.push(no_route);
        p.listeners.push(no_listener);
        self.positions = p;
    }

    /// Counts one finished request (the logging phase).
    pub fn request(&mut self, config: &Config, req: &RequestFacts) {
        self.positions(config);
        let p = &self.positions;
        let listener = p.listeners[req.listener.min(p.listeners.len() - 1)];
        let route = p.routes[req.route.unwrap_or(usize::MAX).min(p.routes.len() - 1)];
        let stats = &mut self.route_stats[route as usize];
        match stats
            .codes
            .iter_mut()
            .find(|(l, c, _)| *l == listener && *c == req.status)
        {
            Some((_, _, n)) => *n += 1,
            None => stats.codes.push((listener, req.status, 1)),
        }
        stats.duration.observe(req.duration);
        if let Some(i) = req.cache.counted() {
            stats.cache[i] += 1;
        }
        self.bytes_in += req.bytes_in;
        self.bytes_out += req.bytes_out;
        if let Some(kind) = req.rejection {
            self.rejections[kind.index()] += 1;
        }
    }

    /// The id of a server of `config` (the same across reloads while it
    /// stays in its group).
    pub fn server_id(&mut self, config: &Config, group: usize, server: usize) -> Option<usize> {
        self.positions(config);
        Some(*self.positions.servers.get(group)?.get(server)? as usize)
    }

    /// The id of a group of `config`.
    pub fn group_id(&mut self, config: &Config, group: usize) -> Option<usize> {
        self.positions(config);
        self.positions.groups.get(group).map(|&g| g as usize)
    }

    /// Counts one upstream attempt.
    pub fn attempt(
        &mut self,
        config: &Config,
        (group, server): (usize, usize),
        outcome: AttemptOutcome,
        took: Option<Duration>,
    ) {
        if let Some(id) = self.server_id(config, group, server) {
            let s = &mut self.server_stats[id];
            s.outcomes[outcome as usize] += 1;
            if let Some(took) = took {
                s.latency.observe(took);
            }
        }
    }

    /// Counts an upstream connection, new or taken from the pool.
    pub fn connection(&mut self, config: &Config, group: usize, reused: bool) {
        self.positions(config);
        if let Some(&id) = self.positions.groups.get(group) {
            self.group_stats[id as usize].connections[usize::from(reused)] += 1;
        }
    }

    /// Counts a request over limit `limit` of `config`: refused, or only
    /// logged (`mode = "log"`).
    pub fn rate_limited(&mut self, config: &Config, limit: usize, mode: crate::limit::Mode) {
        self.positions(config);
        if let Some(&id) = self.positions.limits.get(limit) {
            self.limit_stats[id as usize][usize::from(mode == crate::limit::Mode::Log)] += 1;
        }
    }

    /// Counts a match of filter rule `rule` of `config` and what it did.
    pub fn filter_matched(&mut self, config: &Config, rule: usize, action: FilterAction) {
        self.positions(config);
        if let Some(&id) = self.positions.filter_rules.get(rule) {
            self.filter_stats[id as usize][action as usize] += 1;
        }
    }

    pub fn conn_closed(&mut self, why: ConnClosed, n: u64) {
        self.conns_closed[why as usize] += n;
    }

    pub fn handshake(&mut self, result: Handshake) {
        self.handshakes[result as usize] += 1;
    }

    /// Requests counted so far (changes whenever anything is counted).
    pub fn requests(&self) -> u64 {
        self.route_stats.iter().map(|r| r.duration.count()).sum()
    }
}

/// What the metrics take from a finished request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts {
    pub listener: usize,
    pub route: Option<usize>,
    pub status: u16,
    pub duration: Duration,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The cause of a generated 4xx/5xx answer.
    pub rejection: Option<ErrorKind>,
    pub cache: CacheResult,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_upper_bounds() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(500)); // exactly on the first bound
        h.observe(Duration::from_micros(501));
        h.observe(Duration::from_secs(60)); // +Inf
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[BOUNDS.len()], 1);
        assert_eq!(h.count(), 3);
        assert_eq!(h.sum_ns, 500_000 + 501_000 + 60_000_000_000);
        for (s, ns) in BOUNDS.iter().zip(BOUNDS_NS) {
            assert_eq!((s * 1e9).round() as u64, ns);
        }
    }

    #[test]
    fn names_get_dense_ids() {
        let mut n = Names::default();
        assert_eq!(n.id("a"), 0);
        assert_eq!(n.id("b"), 1);
        assert_eq!(n.id("a"), 0);
        assert_eq!(&*n.list[1], "b");
    }

    #[test]
    fn counts_carry_across_reloads_by_name() {
        let up = "127.0.0.1:9";
        let toml = |routes: &str| {
            format!(
                "[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\n\
                 [upstreams.app]\nservers = [\"{up}\"]\n{routes}"
            )
        };
        let one = "[[routes]]\nname = \"a\"\nupstream = \"app\"\n";
        let two = "[[routes]]\nname = \"b\"\nupstream = \"app\"\n[[routes]]\nname = \"a\"\nupstream = \"app\"\n";
        let mut c1 = Config::from_toml_str(&toml(one)).unwrap();
        c1.generation = 1;
        let mut c2 = Config::from_toml_str(&toml(two)).unwrap();
        c2.generation = 2;
        let facts = |route| RequestFacts {
            listener: 0,
            route: Some(route),
            status: 200,
            duration: Duration::from_millis(1),
            bytes_in: 10,
            bytes_out: 20,
            rejection: None,
            cache: CacheResult::None,
        };
        let mut m = WorkerMetrics::default();
        m.request(&c1, &facts(0));
        // Route "a" is at position 1 after the reload.
        m.request(&c2, &facts(1));
        m.request(&c2, &facts(0));
        m.request(
            &c2,
            &RequestFacts {
                route: None,
                status: 404,
                rejection: Some(ErrorKind::NoRoute),
                ..facts(0)
            },
        );
        let a = m.routes.id("a") as usize;
        assert_eq!(m.route_stats[a].codes, vec![(0, 200, 2)]);
        assert_eq!(m.route_stats[a].duration.count(), 2);
        let none = m.routes.id("") as usize;
        assert_eq!(m.route_stats[none].codes, vec![(0, 404, 1)]);
        assert_eq!(m.rejections[ErrorKind::NoRoute.index()], 1);
        assert_eq!(m.requests(), 4);
        assert_eq!((m.bytes_in, m.bytes_out), (40, 80));
        m.attempt(
            &c2,
            (0, 0),
            AttemptOutcome::Response,
            Some(Duration::from_millis(2)),
        );
        m.attempt(&c2, (0, 0), AttemptOutcome::ConnectError, None);
        m.attempt(&c2, (0, 5), AttemptOutcome::Error, None); // no such server
        m.connection(&c2, 0, true);
        let s = &m.server_stats[m.servers.id("app/127.0.0.1:9") as usize];
        assert_eq!(s.outcomes[0], 1);
        assert_eq!(s.outcomes[1], 1);
        assert_eq!(s.latency.count(), 1);
        assert_eq!(m.group_stats[0].connections, [0, 1]);
    }
}
