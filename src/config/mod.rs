//! Configuration: the TOML file read into one immutable, validated
//! snapshot. Reading goes raw TOML → checked values (every problem listed
//! with its key path) → the compiled `Config` the workers use.

mod access;
mod auth;
mod cache;
mod compile;
mod files;
mod filters;
mod guard;
mod limits;
mod locate;
mod observe;
mod pages;
mod routes;
mod suggest;
mod tls;
mod units;
mod upstream;
mod walk;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use cache::{CacheZone, ZoneSlot};
pub use guard::{ConnCaps, MinRate, OverLimitAction, Overload, Threshold};
pub use observe::{
    AccessFormat, AccessLogConfig, AdminConfig, LogTarget, ProcessFormat, ProcessLog,
};
pub use units::{parse_duration, parse_size};
pub use upstream::{expand, resolve_spec, servers_changed};
pub use walk::{ConfigError, ConfigErrors};

use crate::error::ProxyError;
use crate::geo::Geo;
use crate::http::HeadLimits;
use crate::http::encode::{ForwardOptions, OriginHiding};
use crate::net::CidrSet;
pub use crate::net::proxy_protocol::Version as ProxyVersion;
use crate::pipeline::Chain;
use crate::router::{Respond, RouteTable};
// Built here, owned by `upstream`; re-exported so `config::UpstreamGroup`
// and the rest keep resolving.
pub use crate::upstream::{
    Balance, HashKey, HealthCheck, Outlier, ServerConfig, ServerSpec, UpstreamGroup, UpstreamTls,
};

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
    /// Least rate a request head must arrive at (None: only `head`).
    pub min_head_rate: Option<MinRate>,
    /// Least rate a request body must arrive at (None: only `io`).
    pub min_body_rate: Option<MinRate>,
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
    /// Requests on it are written to the access log (`access_log = false`
    /// leaves them out; they are still counted in the metrics).
    pub access_log: bool,
    /// `max_conns`, `max_conns_per_ip`, `over_limit`.
    pub caps: ConnCaps,
    /// `allow` / `deny`: checked on every request, before routing.
    pub access: Arc<crate::net::IpAccess>,
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

/// One immutable, validated configuration snapshot.
#[derive(Debug, Clone)]
pub struct Config {
    /// Set when the snapshot is published (1 at start, +1 per reload);
    /// 0 for a config not yet published.
    pub generation: u64,
    pub runtime: RuntimeSettings,
    pub limits: Limits,
    pub timeouts: ClientTimeouts,
    /// `[overload]`.
    pub overload: Overload,
    pub forwarding: ForwardOptions,
    /// Response fields left out and ringress's `Server` (`[forwarding]`
    /// `hide_headers`, `pass_headers`, `server`).
    pub origin_hiding: OriginHiding,
    /// Peers whose PROXY header and X-Forwarded-For are believed.
    pub trusted_proxies: CidrSet,
    /// Client regions (`[geo]`).
    pub geo: Arc<Geo>,
    pub listeners: Vec<ListenerConfig>,
    pub routes: RouteTable,
    /// Each route's filter chain (same positions as `routes`).
    pub chains: Vec<Chain>,
    /// `[cache.NAME]` zones, in file order.
    pub caches: Vec<CacheZone>,
    /// `[rate_limits.NAME]`, in file order.
    pub rate_limits: Vec<crate::limit::RateLimit>,
    /// `[[filters]]` and the default set, compiled; routes' chains hold
    /// their selection.
    pub filters: Arc<crate::pipeline::FilterSet>,
    pub upstreams: Vec<UpstreamGroup>,
    /// Every listener's `client_subject_header`: stripped from requests on
    /// all listeners, so a plain listener cannot be used to forge one.
    pub reserved_headers: Vec<Box<str>>,
    /// The admin listener (its address is read at start only).
    pub admin: AdminConfig,
    /// `[access_log]`; None when there is none.
    pub access_log: Option<AccessLogConfig>,
    /// `[log]`: the process log (read at start only).
    pub log: ProcessLog,
    /// Problems that do not stop the config (e.g. an expired certificate).
    pub warnings: Vec<String>,
    /// The TOML it was compiled from (the admin API's `GET /config`).
    pub source: Arc<toml::Table>,
}

impl Config {
    /// The operator's page for the answer to `e` on route `route` (None:
    /// before a route was found), if there is one.
    pub fn page(&self, route: Option<usize>, e: &ProxyError) -> Option<&Respond> {
        self.routes.error_page(route, e.status()?)
    }

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
        compile::compile(&table, text, Path::new("."))
    }

    fn parse(text: &str) -> Result<toml::Table, ConfigErrors> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let span = e.span();
            let line = span
                .as_ref()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let mut error = ConfigError::new("", locate::syntax_message(text, e.message(), span));
            error.line = line;
            ConfigErrors(vec![error])
        })?;
        Ok(table)
    }

    /// Reads and validates a config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError::new(
                "",
                format!("cannot read {}: {e}", path.display()),
            )])
        })?;
        let table = Self::parse(&text)?;
        // Relative paths in the file (certificates, keys) are relative to
        // the file, as in nginx.
        let base = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        compile::compile(&table, &text, base)
    }
}
