//! Configuration: the TOML file read into one immutable, validated
//! snapshot. Reading goes raw TOML → checked values (every problem listed
//! with its key path) → the compiled `Config` the workers use.

mod compile;
mod routes;
mod tls;
mod units;
mod upstream;
mod walk;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use units::{parse_duration, parse_size};
pub use upstream::{expand, resolve_spec, servers_changed};
pub use walk::{ConfigError, ConfigErrors};

use crate::geo::Geo;
use crate::http::HeadLimits;
use crate::http::encode::ForwardOptions;
use crate::net::CidrSet;
pub use crate::net::proxy_protocol::Version as ProxyVersion;
use crate::pipeline::Chain;
use crate::router::RouteTable;
use crate::upstream::{Maglev, ServerHealth};
use rustls::pki_types::ServerName;

/// Which io_uring/epoll driver the workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// io_uring when the kernel allows it, else epoll.
    #[default]
    Auto,
    IoUring,
    Epoll,
}

impl IoMode {
    pub fn parse(s: &str) -> Option<IoMode> {
        match s {
            "auto" => Some(IoMode::Auto),
            "io_uring" | "uring" => Some(IoMode::IoUring),
            "epoll" | "legacy" => Some(IoMode::Epoll),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Worker count; 0 means one per available core.
    pub threads: usize,
    pub pin: bool,
    pub io: IoMode,
    pub drain_timeout: Duration,
    /// Forward large plain bodies with splice(2) (zero-copy).
    pub splice: bool,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub head: HeadLimits,
    /// Default request body limit for routes; 0 means unlimited.
    pub max_body_size: u64,
}

#[derive(Debug, Clone)]
pub struct ClientTimeouts {
    /// Time for a whole request head to arrive once it has started.
    pub head: Duration,
    /// Idle time allowed between requests on a kept-alive connection.
    pub keepalive: Duration,
    /// Idle time allowed on one read or write while a body streams.
    pub io: Duration,
}

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Stable identity (from the name): connections keep it across
    /// reloads that add or remove other listeners.
    pub id: u64,
    pub name: String,
    pub bind: SocketAddr,
    pub backlog: u32,
    /// TCP_DEFER_ACCEPT: the kernel hands over a connection once its first
    /// bytes arrive (or after about a second of silence), as nginx's
    /// `deferred` and HAProxy's `defer-accept` do.
    pub defer_accept: bool,
    /// New connections start with delayed ACKs (no TCP_QUICKACK), so a
    /// request's ACK rides on its response.
    pub delayed_ack: bool,
    /// Connections start with a PROXY protocol header (v1 or v2) from a
    /// peer in `trusted_proxies`; others are closed.
    pub proxy_protocol: bool,
    /// TLS termination; None for plain HTTP.
    pub tls: Option<ListenerTls>,
}

/// A TLS listener's compiled settings.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub server: Arc<rustls::ServerConfig>,
    pub handshake_timeout: Duration,
    /// `Strict-Transport-Security: ...\r\n`, ready to add to response heads.
    pub hsts: Option<Box<[u8]>>,
    /// Header that carries a verified client certificate's subject upstream.
    pub subject_header: Option<Box<str>>,
}

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
    /// Requests in flight over all workers; 0 = no limit.
    pub max_conns: u32,
    /// Shared with the health thread; kept across reloads.
    pub health: Arc<ServerHealth>,
    /// Which entry of the group's `specs` this server came from.
    pub spec: usize,
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

/// One immutable, validated configuration snapshot.
#[derive(Debug, Clone)]
pub struct Config {
    /// Set when the snapshot is published (1 at start, +1 per reload);
    /// 0 for a config not yet published.
    pub generation: u64,
    pub runtime: RuntimeSettings,
    pub limits: Limits,
    pub timeouts: ClientTimeouts,
    pub forwarding: ForwardOptions,
    /// Peers whose PROXY header and X-Forwarded-For are believed.
    pub trusted_proxies: CidrSet,
    /// Client regions (`[geo]`).
    pub geo: Arc<Geo>,
    pub listeners: Vec<ListenerConfig>,
    pub routes: RouteTable,
    /// Each route's filter chain (same positions as `routes`).
    pub chains: Vec<Chain>,
    pub upstreams: Vec<UpstreamGroup>,
    /// Every listener's `client_subject_header`: stripped from requests on
    /// all listeners, so a plain listener cannot be used to forge one.
    pub reserved_headers: Vec<Box<str>>,
    /// The admin listener's address (read at start only).
    pub admin: Option<SocketAddr>,
    /// Problems that do not stop the config (e.g. an expired certificate).
    pub warnings: Vec<String>,
}

impl Config {
    /// Position of listener `id` in this snapshot; `usize::MAX` when it
    /// was removed (its open connections still match unrestricted routes).
    pub fn listener_index(&self, id: u64) -> usize {
        self.listeners
            .iter()
            .position(|l| l.id == id)
            .unwrap_or(usize::MAX)
    }

    /// Reads and validates a config from TOML text.
    /// Relative paths in it are taken from the current directory.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        let table = Self::parse(text)?;
        compile::compile(&table, Path::new("."))
    }

    fn parse(text: &str) -> Result<toml::Table, ConfigErrors> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let mut msg = e.message().to_string();
            if let Some(span) = e.span() {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                msg = format!("line {line}: {msg}");
            }
            ConfigErrors(vec![ConfigError {
                path: String::new(),
                message: format!("TOML syntax error: {msg}"),
            }])
        })?;
        Ok(table)
    }

    /// Reads and validates a config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        let table = Self::parse(&text)?;
        // Relative paths in the file (certificates, keys) are relative to
        // the file, as in nginx.
        let base = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        compile::compile(&table, base)
    }
}
