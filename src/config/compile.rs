//! Turns a parsed TOML table into a `Config`, checking every value and every
//! cross-reference and collecting all problems before giving up.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::locate::Locator;
use super::observe;
use super::routes::routes;
use super::suggest::not_one_of;
use super::tls::listener_tls;
use super::upstream::upstreams;
use super::walk::{ConfigError, ConfigErrors, Problems, TableReader};
use super::{
    ClientTimeouts, Config, IoMode, Limits, ListenerConfig, RuntimeSettings, UpstreamGroup,
};
use crate::geo::{Geo, MmdbField};
use crate::http::encode::{ForwardOptions, OriginHiding};
use crate::http::{HeadLimits, MAX_HEADERS};
use crate::net::{Cidr, CidrSet};
use crate::router::{Action, RouteTable};

/// `text` is what `table` was parsed from, looked at again (with spans)
/// only when there is a problem or a warning to place.
pub fn compile(table: &toml::Table, text: &str, base: &Path) -> Result<Config, ConfigErrors> {
    let mut p = Problems::default();
    let mut warnings = Vec::new();
    let mut root = TableReader::new(String::new(), table);

    let runtime = section(&mut root, &mut p, "runtime", runtime);
    let limits = section(&mut root, &mut p, "limits", limits);
    let timeouts = section(&mut root, &mut p, "timeouts", timeouts);
    let overload = section(&mut root, &mut p, "overload", super::guard::overload);
    let (forwarding, trusted_proxies, origin_hiding) =
        section(&mut root, &mut p, "forwarding", forwarding);
    let (listeners, listener_names) = listeners(&mut root, &mut p, base, &mut warnings);
    let admin = section(&mut root, &mut p, "admin", observe::admin);
    let access_present = root.has("access_log");
    let access_log = section(&mut root, &mut p, "access_log", |t, p| {
        observe::access_log(t, p, base, access_present)
    });
    let log = section(&mut root, &mut p, "log", |t, p| {
        observe::process_log(t, p, base)
    });
    let mut geo = section(&mut root, &mut p, "geo", |t, p| geo(t, p, base));
    let (upstreams, upstream_names) = upstreams(&mut root, &mut p, base, &mut geo);
    let caches = super::cache::zones(&mut root, &mut p);
    let (rate_limits, limit_names) = super::limits::rate_limits(&mut root, &mut p);
    let filters = super::filters::filters(&mut root, &mut p, table);
    let (routes, chains) = routes(
        &mut root,
        &mut p,
        &listener_names,
        &upstream_names,
        (limits.max_body_size, base),
        (&caches, (&rate_limits, &limit_names)),
        &filters,
    );
    root.finish(&mut p);
    warn_unused_upstreams(&mut p, &upstreams, &routes);
    super::limits::warn_unused(&mut p, &rate_limits, &chains);
    super::filters::warn_unused(&mut p, &filters.set, &chains);
    place(&mut p, text);
    warnings.extend(p.warnings.iter().map(ConfigError::to_string));

    if p.errors.is_empty() {
        let reserved_headers = reserved_headers(&listeners);
        Ok(Config {
            reserved_headers,
            generation: 0,
            runtime,
            limits,
            timeouts,
            overload,
            forwarding,
            origin_hiding,
            trusted_proxies,
            geo: Arc::new(geo),
            listeners,
            routes,
            chains,
            caches,
            rate_limits,
            filters: filters.set,
            upstreams,
            admin,
            access_log,
            log,
            warnings,
            source: Arc::new(table.clone()),
        })
    } else {
        Err(ConfigErrors(p.errors))
    }
}

/// An upstream group no route proxies to is most likely a route that
/// names the wrong group, or one left over.
fn warn_unused_upstreams(p: &mut Problems, upstreams: &[UpstreamGroup], routes: &RouteTable) {
    for (i, group) in upstreams.iter().enumerate() {
        let used = routes
            .routes
            .iter()
            .any(|r| matches!(r.action, Action::Proxy { upstream, .. } if upstream == i));
        if !used {
            p.warn(
                format!("upstreams.{}", group.name),
                "no route uses this upstream",
            );
        }
    }
}

/// Gives every problem and warning its line and its entries' names, and
/// puts them in file order.
fn place(p: &mut Problems, text: &str) {
    if p.errors.is_empty() && p.warnings.is_empty() {
        return;
    }
    let Some(locator) = Locator::new(text) else {
        return;
    };
    for e in p.errors.iter_mut().chain(p.warnings.iter_mut()) {
        locator.place(e);
    }
    // In file order (the walk goes section by section); those without a
    // line (a missing section) first.
    p.errors.sort_by_key(|e| e.line);
    p.warnings.sort_by_key(|e| e.line);
}

fn reserved_headers(listeners: &[ListenerConfig]) -> Vec<Box<str>> {
    let mut out: Vec<Box<str>> = Vec::new();
    for name in listeners
        .iter()
        .filter_map(|l| l.tls.as_ref()?.subject_header.clone())
    {
        if !out.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            out.push(name);
        }
    }
    out
}

/// Reads an optional section with `read`, defaults when absent.
fn section<T>(
    root: &mut TableReader<'_>,
    p: &mut Problems,
    key: &str,
    read: impl FnOnce(&mut TableReader<'_>, &mut Problems) -> T,
) -> T {
    let empty = toml::Table::new();
    let mut t = match root.table(p, key) {
        Some(t) => t,
        None => TableReader::new(key.to_string(), &empty),
    };
    let value = read(&mut t, p);
    t.finish(p);
    value
}

fn runtime(t: &mut TableReader<'_>, p: &mut Problems) -> RuntimeSettings {
    let io = match t.str(p, "io") {
        Some(s) => IoMode::parse(s).unwrap_or_else(|| {
            p.add(
                t.key_path("io"),
                not_one_of(s, &["auto", "io_uring", "epoll"]),
            );
            IoMode::Auto
        }),
        None => IoMode::Auto,
    };
    RuntimeSettings {
        threads: t.int(p, "threads", 0, 1024).unwrap_or(0) as usize,
        pin: t.bool(p, "pin").unwrap_or(true),
        io,
        drain_timeout: t
            .duration(p, "drain_timeout")
            .unwrap_or(Duration::from_secs(30)),
        splice: t.bool(p, "splice").unwrap_or(true),
    }
}

fn limits(t: &mut TableReader<'_>, p: &mut Problems) -> Limits {
    let d = HeadLimits::default();
    let max_head_size = t.size(p, "max_head_size").unwrap_or(d.max_head_size as u64);
    if !(1024..=1 << 20).contains(&max_head_size) {
        p.add(t.key_path("max_head_size"), "must be between 1KiB and 1MiB");
    }
    Limits {
        head: HeadLimits {
            max_head_size: max_head_size as usize,
            max_uri_length: t
                .int(p, "max_uri_length", 16, 1 << 20)
                .unwrap_or(d.max_uri_length as i64) as usize,
            max_headers: t
                .int(p, "max_headers", 1, MAX_HEADERS as i64)
                .unwrap_or(d.max_headers as i64) as usize,
        },
        max_body_size: t.size(p, "max_body_size").unwrap_or(10 << 20),
    }
}

fn timeouts(t: &mut TableReader<'_>, p: &mut Problems) -> ClientTimeouts {
    let mut read = |key: &str, default: u64| {
        let d = t.duration(p, key).unwrap_or(Duration::from_secs(default));
        if d.is_zero() {
            p.add(t.key_path(key), "must be greater than zero");
        }
        d
    };
    let (head, keepalive, io) = (
        read("client_head", 30),
        read("keepalive", 60),
        read("client_io", 60),
    );
    // A head trickled slower than 500 B/s after 5 s is an attack, not a
    // slow network (mod_reqtimeout's MinRate); bodies are not rated unless
    // asked (long streaming uploads are legitimate).
    let head_rate = (500, Duration::from_secs(5));
    let body_rate = (0, Duration::from_secs(10));
    ClientTimeouts {
        head,
        keepalive,
        io,
        min_head_rate: super::guard::min_rate(t, p, "min_head_rate", "head_rate_grace", head_rate),
        min_body_rate: super::guard::min_rate(t, p, "min_body_rate", "body_rate_grace", body_rate),
    }
}

fn forwarding(
    t: &mut TableReader<'_>,
    p: &mut Problems,
) -> (ForwardOptions, CidrSet, OriginHiding) {
    let d = ForwardOptions::default();
    let trusted = cidrs(t, p, "trusted_proxies");
    let options = ForwardOptions {
        x_forwarded_for: t.bool(p, "x_forwarded_for").unwrap_or(d.x_forwarded_for),
        x_forwarded_proto: t
            .bool(p, "x_forwarded_proto")
            .unwrap_or(d.x_forwarded_proto),
        x_forwarded_host: t.bool(p, "x_forwarded_host").unwrap_or(d.x_forwarded_host),
        via: t.bool(p, "via").unwrap_or(d.via),
        request_id: t.bool(p, "request_id").unwrap_or(d.request_id),
        underscores_in_headers: t
            .bool(p, "underscores_in_headers")
            .unwrap_or(d.underscores_in_headers),
    };
    (options, trusted, origin_hiding(t, p))
}

/// `hide_headers`, `pass_headers` and `server` of `[forwarding]`.
fn origin_hiding(t: &mut TableReader<'_>, p: &mut Problems) -> OriginHiding {
    let mut names = |key: &str| {
        let list = t.strings(p, key).unwrap_or_default();
        for name in &list {
            if name.is_empty() || !name.bytes().all(crate::http::fields::is_tchar) {
                p.add(
                    t.key_path(key),
                    format!("{name:?} is not a header field name"),
                );
            }
        }
        list
    };
    let hide = names("hide_headers");
    let pass = names("pass_headers");
    let server = t.str(p, "server");
    if let Some(s) = server
        && s.bytes().any(|b| b.is_ascii_control() || !b.is_ascii())
    {
        p.add(
            t.key_path("server"),
            "must be printable ASCII (\"\" sends none)",
        );
    }
    OriginHiding::new(&hide, &pass, server.or(Some("ringress")))
}

/// `[geo]`: regions by address range, an optional mmdb, nearest regions.
fn geo(t: &mut TableReader<'_>, p: &mut Problems, base: &Path) -> Geo {
    let mut geo = Geo::default();
    if let Some(mut regions) = t.table(p, "regions") {
        for name in regions.keys() {
            let id = geo.intern(&name);
            for c in cidrs(&mut regions, p, &name).0 {
                geo.add_range(c, id);
            }
        }
        regions.finish(p);
    }
    let field = match t.str(p, "mmdb_field") {
        None | Some("country") => MmdbField::Country,
        Some("continent") => MmdbField::Continent,
        Some(other) => {
            p.add(
                t.key_path("mmdb_field"),
                not_one_of(other, &["country", "continent"]),
            );
            MmdbField::Country
        }
    };
    if let Some(path) = t.str(p, "mmdb") {
        let path = if Path::new(path).is_absolute() {
            Path::new(path).to_path_buf()
        } else {
            base.join(path)
        };
        if let Err(m) = geo.open_mmdb(&path, field) {
            p.add(t.key_path("mmdb"), m);
        }
    }
    if let Some(mut nearest) = t.table(p, "nearest") {
        for name in nearest.keys() {
            let id = geo.intern(&name);
            for other in nearest.strings(p, &name).unwrap_or_default() {
                let other = geo.intern(other);
                geo.add_nearest(id, other);
            }
        }
        nearest.finish(p);
    }
    geo
}

/// A list of address ranges under `key`.
pub(super) fn cidrs(t: &mut TableReader<'_>, p: &mut Problems, key: &str) -> CidrSet {
    let path = t.key_path(key);
    let mut out = Vec::new();
    for (i, s) in t
        .strings(p, key)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match Cidr::parse(s) {
            Ok(c) => out.push(c),
            Err(m) => p.add(format!("{path}[{i}]"), m),
        }
    }
    CidrSet(out)
}

/// The host of `host:port` (an IPv6 address without its brackets).
pub(super) fn host_part(addr: &str) -> String {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => addr,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

pub(super) fn resolve(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    match addr.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| format!("`{addr}` resolves to no address")),
        Err(e) => Err(format!("`{addr}` is not a host:port address ({e})")),
    }
}

/// Iterates an array of tables under `key`, giving each a reader.
pub(super) fn each_table<'a>(
    root: &mut TableReader<'a>,
    p: &mut Problems,
    key: &str,
    mut f: impl FnMut(&mut TableReader<'a>, &mut Problems),
) {
    let Some(items) = root.array(p, key) else {
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", root.key_path(key));
        match item.as_table() {
            Some(table) => {
                let mut t = TableReader::new(path, table);
                f(&mut t, p);
                t.finish(p);
            }
            None => p.add(path, "expected a table"),
        }
    }
}

/// The listeners, and the name of every `[[listeners]]` entry (also of
/// those with a problem, so routes naming one are not reported too).
fn listeners(
    root: &mut TableReader<'_>,
    p: &mut Problems,
    base: &Path,
    warnings: &mut Vec<String>,
) -> (Vec<ListenerConfig>, Vec<String>) {
    let mut out: Vec<ListenerConfig> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    if !root.has("listeners") {
        p.add("listeners", "at least one [[listeners]] entry is required");
        return (out, names);
    }
    each_table(root, p, "listeners", |t, p| {
        let name = t
            .str(p, "name")
            .map(str::to_string)
            .unwrap_or_else(|| format!("listener{}", names.len()));
        if names.contains(&name) {
            p.add(
                t.key_path("name"),
                format!("listener name `{name}` is used twice"),
            );
        }
        names.push(name.clone());
        let backlog = t.int(p, "backlog", 1, 65535).unwrap_or(4096) as u32;
        let defer_accept = t.bool(p, "defer_accept").unwrap_or(false);
        let delayed_ack = t.bool(p, "delayed_ack").unwrap_or(true);
        let proxy_protocol = t.bool(p, "proxy_protocol").unwrap_or(false);
        let access_log = t.bool(p, "access_log").unwrap_or(true);
        let caps = super::guard::ConnCaps::read(t, p);
        let access = super::access::ip_access(t, p);
        let bind = match t.str(p, "bind") {
            Some(b) => resolve(b).map_err(|m| p.add(t.key_path("bind"), m)).ok(),
            None => {
                p.add(t.key_path("bind"), "missing (e.g. bind = \"0.0.0.0:8080\")");
                None
            }
        };
        // Read even when the bind is bad, or its keys would all be unknown.
        let tls = listener_tls(t, p, &name, base, warnings);
        if let Some(bind) = bind {
            if bind.port() != 0 && out.iter().any(|l| l.bind == bind) {
                p.add(
                    t.key_path("bind"),
                    format!("{bind} is bound by another listener"),
                );
            }
            out.push(ListenerConfig {
                id: crate::upstream::hash_bytes(name.as_bytes()),
                name,
                bind,
                backlog,
                defer_accept,
                delayed_ack,
                proxy_protocol,
                tls,
                access_log,
                caps,
                access,
            });
        }
    });
    (out, names)
}
