//! An upstream group as the workers use it: its servers (as resolved and
//! as written), how it balances, checks and ejects them, its timeouts,
//! TLS and retries. Plain data; `config` builds it from the file, and
//! discovery rebuilds its servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use super::{Maglev, ServerHealth};
use crate::net::proxy_protocol::Version as ProxyVersion;

/// TLS towards an upstream group's servers.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub client: Arc<rustls::ClientConfig>,
    /// Tells pooled connections of different TLS settings apart (never 0,
    /// which is plain TCP).
    pub pool_tag: u64,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    pub weight: u32,
    /// The host as written (name or IP, without the port).
    pub host: String,
    /// Name verified (and sent as SNI) when the group speaks TLS.
    pub tls_name: Option<ServerName<'static>>,
    /// Hash of `tls_name`, so pooled TLS connections are only reused for
    /// the same name.
    pub tls_name_tag: u64,
    /// Used only when no primary server is available.
    pub backup: bool,
    /// Region (an id in `Config::geo`) for geo-targeted balancing.
    pub region: Option<u16>,
    /// Requests in flight over all workers, open tunnels included (each
    /// holds one upstream connection busy); 0 = no limit. Idle pooled
    /// connections are not counted.
    pub max_conns: u32,
    /// Shared with the health thread; kept across reloads.
    pub health: Arc<ServerHealth>,
    /// Which entry of the group's `specs` this server came from.
    pub spec: usize,
}

impl ServerConfig {
    /// Takes a place under `max_conns` for one request; false when the
    /// server is full. Always granted without a limit.
    pub fn take_place(&self) -> bool {
        self.health.try_acquire(self.max_conns)
    }

    /// Gives back a place taken by `take_place`.
    pub fn release_place(&self) {
        self.health.release(self.max_conns);
    }
}

/// A `servers` entry as written: an address, or a name that may resolve
/// to several (each becomes a server) and is re-resolved when the group
/// has a `resolve_interval`.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// `host:port` as written.
    pub text: String,
    /// Set for names (not IP literals).
    pub name: bool,
    /// Everything but the address.
    pub template: ServerConfig,
}

/// How a group picks a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
    /// Power of two random choices on requests in flight; `ewma` weighs
    /// them by each server's peak-EWMA latency.
    P2c {
        ewma: bool,
    },
    Hash(HashKey),
    Random,
}

/// What `balance = "hash"` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    /// A request header (name lower-cased).
    Header(Box<str>),
    Cookie(Box<str>),
    Path,
}

/// Active health checks of a group's servers.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub path: String,
    /// Host header of the check; the server's host when absent.
    pub host: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passes that bring a down server up.
    pub healthy: u32,
    /// Consecutive failures that take an up server down.
    pub unhealthy: u32,
    /// Statuses that pass, inclusive.
    pub expect: (u16, u16),
}

/// Passive outlier detection: ejecting servers that keep failing.
#[derive(Debug, Clone)]
pub struct Outlier {
    /// Consecutive failures (connect errors, resets, timeouts, and 5xx
    /// when `on_5xx`) that eject a server.
    pub failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    pub on_5xx: bool,
    /// Most servers (percent of the group; at least one) ejected at once,
    /// so one client sending requests that fail cannot empty a group.
    pub max_ejected_percent: u32,
}

#[derive(Debug, Clone)]
pub struct UpstreamGroup {
    pub name: String,
    pub servers: Vec<ServerConfig>,
    /// The `servers` entries as written.
    pub specs: Vec<ServerSpec>,
    /// Re-resolve server names this often (DNS-based discovery).
    pub resolve_interval: Option<Duration>,
    /// Longest one re-resolution may take; past it the known addresses stay.
    pub resolve_timeout: Duration,
    /// Host field sent upstream instead of the client's.
    pub host_header: Option<Vec<u8>>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub io_timeout: Duration,
    /// Idle pooled connections kept per server, per worker.
    pub max_idle_per_server: usize,
    /// How long an idle pooled connection may wait for reuse.
    pub idle_timeout: Duration,
    pub max_response_head_size: usize,
    /// Idle time allowed in either direction of an upgraded (WebSocket) tunnel.
    pub tunnel_idle_timeout: Duration,
    pub tls: Option<UpstreamTls>,
    /// Send a PROXY protocol header on each new upstream connection
    /// (such connections are not pooled: each carries one client).
    pub send_proxy_protocol: Option<ProxyVersion>,
    pub balance: Balance,
    /// Some server has a region: prefer servers in the client's.
    pub regional: bool,
    /// Lookup table for `Balance::Hash` (primary servers only).
    pub maglev: Option<Arc<Maglev>>,
    pub health_check: Option<HealthCheck>,
    pub outlier: Option<Outlier>,
    /// Further attempts after a failed one, each on another server.
    pub retries: u32,
    /// Response statuses retried for idempotent requests.
    pub retry_on: Vec<u16>,
    /// Retries allowed per request on average (at most 1: retries never
    /// more than double the load).
    pub retry_budget: f64,
}
