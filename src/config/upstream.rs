//! `[upstreams.NAME]` groups: servers, balancing, health checks, outlier
//! ejection, retries, timeouts and TLS.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use std::net::{SocketAddr, ToSocketAddrs};

use super::ProxyVersion;
use super::compile::host_part;
use super::suggest::not_one_of;
use super::tls::upstream_tls;
use super::walk::{Problems, TableReader};
use crate::geo::Geo;
use crate::upstream::{
    Balance, HashKey, HealthCheck, Maglev, Outlier, ServerConfig, ServerHealth, ServerSpec,
    UpstreamGroup,
};

/// The groups, and the name of every group in the file (also of those
/// with a problem, so routes naming one are not reported too).
pub(super) fn upstreams(
    root: &mut TableReader<'_>,
    p: &mut Problems,
    base: &Path,
    geo: &mut Geo,
) -> (Vec<UpstreamGroup>, Vec<String>) {
    let mut out = Vec::new();
    let Some(mut groups) = root.table(p, "upstreams") else {
        return (out, Vec::new());
    };
    let names = groups.keys();
    for name in names.clone() {
        let Some(mut t) = groups.table(p, &name) else {
            continue;
        };
        out.push(upstream_group(&mut t, p, name, base, geo));
        t.finish(p);
    }
    groups.finish(p);
    (out, names)
}

/// Reads one `[upstreams.NAME]` table into its group.
fn upstream_group(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    name: String,
    base: &Path,
    geo: &mut Geo,
) -> UpstreamGroup {
    let (mut specs, addrs) = server_specs(t, p, geo);
    let tls = upstream_tls(t, p, &mut specs, base);
    let servers = expand(&specs, &addrs);
    let resolve_interval = t.duration(p, "resolve_interval");
    if resolve_interval.is_some_and(|d| d < std::time::Duration::from_secs(1)) {
        p.add(t.key_path("resolve_interval"), "must be at least 1s");
    }
    let host_header = host_header(t, p);
    let balance = balance(t, p);
    let maglev = maglev_for(&balance, &servers);
    let send_proxy_protocol = send_proxy_protocol(t, p);
    let regional = servers.iter().any(|s| s.region.is_some());
    let health_check = health_check(t, p);
    let outlier = outlier(t, p);
    let retries = t.int(p, "retries", 0, 100).unwrap_or(3) as u32;
    let retry_on = retry_on(t, p);
    let retry_budget = retry_budget(t, p);
    let timeouts = timeouts(t, p);
    UpstreamGroup {
        name,
        servers,
        specs,
        resolve_interval,
        resolve_timeout: timeouts.resolve,
        host_header,
        connect_timeout: timeouts.connect,
        response_timeout: timeouts.response,
        io_timeout: timeouts.io,
        idle_timeout: timeouts.idle,
        tunnel_idle_timeout: timeouts.tunnel_idle,
        max_idle_per_server: t.int(p, "max_idle_per_server", 0, 100_000).unwrap_or(1024) as usize,
        max_response_head_size: max_response_head_size(t, p),
        tls,
        send_proxy_protocol,
        regional,
        balance,
        maglev,
        health_check,
        outlier,
        retries,
        retry_on,
        retry_budget,
    }
}

/// Reads `servers` and resolves each entry: the specs, and each spec's
/// addresses (none for a name that did not resolve, which is reported).
fn server_specs(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    geo: &mut Geo,
) -> (Vec<ServerSpec>, Vec<Vec<SocketAddr>>) {
    let mut specs = Vec::new();
    match t.array(p, "servers") {
        Some([]) => p.add(t.key_path("servers"), "needs at least one server"),
        Some(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("{}[{i}]", t.key_path("servers"));
                if let Some(s) = server(item, &path, p, geo) {
                    specs.push((path, s));
                }
            }
        }
        None if !t.has("servers") => p.add(t.key_path("servers"), "missing"),
        None => {}
    }
    let mut addrs = Vec::with_capacity(specs.len());
    for (path, spec) in &specs {
        match resolve_spec(spec) {
            Ok(list) => addrs.push(list),
            Err(m) => {
                p.add(path.clone(), m);
                addrs.push(Vec::new());
            }
        }
    }
    let specs: Vec<ServerSpec> = specs.into_iter().map(|(_, s)| s).collect();
    if !specs.is_empty() && specs.iter().all(|s| s.template.backup) {
        p.add(
            t.key_path("servers"),
            "needs at least one server that is not a backup",
        );
    }
    (specs, addrs)
}

/// `host_header`: the Host sent upstream instead of the client's.
fn host_header(t: &mut TableReader<'_>, p: &mut Problems) -> Option<Vec<u8>> {
    let host_header = t.str(p, "host_header").map(|h| h.as_bytes().to_vec());
    if let Some(h) = &host_header
        && (h.is_empty() || crate::http::fields::split_host(h).is_none())
    {
        p.add(t.key_path("host_header"), "is not a valid Host value");
    }
    host_header
}

/// `send_proxy_protocol = "v1" | "v2"`, if set.
fn send_proxy_protocol(t: &mut TableReader<'_>, p: &mut Problems) -> Option<ProxyVersion> {
    match t.str(p, "send_proxy_protocol") {
        None => None,
        Some("v1") => Some(ProxyVersion::V1),
        Some("v2") => Some(ProxyVersion::V2),
        Some(other) => {
            p.add(
                t.key_path("send_proxy_protocol"),
                not_one_of(other, &["v1", "v2"]),
            );
            None
        }
    }
}

/// `retry_budget`: the share of requests that may be retries (0.2 unless
/// set to a number from 0 to 1).
fn retry_budget(t: &mut TableReader<'_>, p: &mut Problems) -> f64 {
    match t.raw("retry_budget") {
        None => 0.2,
        Some(v) => match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
            Some(b) if (0.0..=1.0).contains(&b) => b,
            _ => {
                p.add(t.key_path("retry_budget"), "must be a number from 0 to 1");
                0.2
            }
        },
    }
}

/// A group's timeouts.
struct Timeouts {
    resolve: Duration,
    connect: Duration,
    response: Duration,
    io: Duration,
    idle: Duration,
    tunnel_idle: Duration,
}

/// Reads the `*_timeout` keys (each greater than zero), in this order.
fn timeouts(t: &mut TableReader<'_>, p: &mut Problems) -> Timeouts {
    let mut timeout = |key: &str, default: u64| {
        let d = t.duration(p, key).unwrap_or(Duration::from_secs(default));
        if d.is_zero() {
            p.add(t.key_path(key), "must be greater than zero");
        }
        d
    };
    Timeouts {
        resolve: timeout("resolve_timeout", 5),
        connect: timeout("connect_timeout", 5),
        response: timeout("response_timeout", 60),
        io: timeout("io_timeout", 60),
        idle: timeout("idle_timeout", 30),
        tunnel_idle: timeout("tunnel_idle_timeout", 3600),
    }
}

fn balance(t: &mut TableReader<'_>, p: &mut Problems) -> Balance {
    let ewma = t.bool(p, "ewma");
    let hash = hash_key(t, p);
    let named = t.str(p, "balance");
    let balance = match named {
        None if hash.is_some() => Balance::Hash(hash.clone().unwrap_or(HashKey::ClientIp)),
        None | Some("round_robin") => Balance::RoundRobin,
        Some("least_conn") => Balance::LeastConn,
        Some("p2c") => Balance::P2c {
            ewma: ewma.unwrap_or(false),
        },
        Some("hash") => match &hash {
            Some(key) => Balance::Hash(key.clone()),
            None => {
                p.add(
                    t.key_path("hash"),
                    "balance = \"hash\" needs hash = { key = ... }",
                );
                Balance::RoundRobin
            }
        },
        Some("random") => Balance::Random,
        Some(other) => {
            p.add(
                t.key_path("balance"),
                not_one_of(
                    other,
                    &["round_robin", "least_conn", "p2c", "hash", "random"],
                ),
            );
            Balance::RoundRobin
        }
    };
    if ewma.is_some() && !matches!(balance, Balance::P2c { .. }) {
        p.add(t.key_path("ewma"), "only applies to balance = \"p2c\"");
    }
    if hash.is_some() && !matches!(balance, Balance::Hash(_)) {
        p.add(t.key_path("hash"), "only applies to balance = \"hash\"");
    }
    balance
}

fn hash_key(t: &mut TableReader<'_>, p: &mut Problems) -> Option<HashKey> {
    let mut h = t.table(p, "hash")?;
    let key = match h.str(p, "key") {
        Some("client_ip") => Some(HashKey::ClientIp),
        Some("path") => Some(HashKey::Path),
        Some(k) => match k.split_once(':') {
            Some(("header", name)) if is_field_name(name) => {
                Some(HashKey::Header(name.to_ascii_lowercase().into()))
            }
            Some(("cookie", name)) if !name.is_empty() && is_field_name(name) => {
                Some(HashKey::Cookie(name.into()))
            }
            _ => {
                p.add(
                    h.key_path("key"),
                    format!("`{k}` is not one of client_ip, path, header:NAME, cookie:NAME"),
                );
                None
            }
        },
        None => {
            if !h.has("key") {
                p.add(h.key_path("key"), "missing");
            }
            None
        }
    };
    h.finish(p);
    key
}

fn is_field_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(crate::http::fields::is_tchar)
}

fn health_check(t: &mut TableReader<'_>, p: &mut Problems) -> Option<HealthCheck> {
    let mut h = t.table(p, "health_check")?;
    let path = h.str(p, "path").unwrap_or("/").to_string();
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        p.add(h.key_path("path"), "must start with / and have no spaces");
    }
    let host = h.str(p, "host").map(str::to_string);
    if let Some(host) = &host
        && crate::http::fields::split_host(host.as_bytes()).is_none()
    {
        p.add(h.key_path("host"), "is not a valid Host value");
    }
    let mut positive = |key: &str, default: Duration| {
        let d = h.duration(p, key).unwrap_or(default);
        if d.is_zero() {
            p.add(h.key_path(key), "must be greater than zero");
        }
        d
    };
    let interval = positive("interval", Duration::from_secs(2));
    let timeout = positive("timeout", Duration::from_secs(1));
    let healthy = h.int(p, "healthy", 1, 100).unwrap_or(2) as u32;
    let unhealthy = h.int(p, "unhealthy", 1, 100).unwrap_or(3) as u32;
    let expect = match h.str(p, "expect_status") {
        None => (200, 399),
        Some(s) => match status_range(s) {
            Some(r) => r,
            None => {
                p.add(
                    h.key_path("expect_status"),
                    format!("`{s}` is not a status or range like \"200-399\""),
                );
                (200, 399)
            }
        },
    };
    h.finish(p);
    Some(HealthCheck {
        path,
        host,
        interval,
        timeout,
        healthy,
        unhealthy,
        expect,
    })
}

fn status_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match s.split_once('-') {
        Some((lo, hi)) => (lo.trim().parse().ok()?, hi.trim().parse().ok()?),
        None => {
            let n = s.trim().parse().ok()?;
            (n, n)
        }
    };
    ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some((lo, hi))
}

fn outlier(t: &mut TableReader<'_>, p: &mut Problems) -> Option<Outlier> {
    let defaults = Outlier {
        failures: 5,
        base_ejection: Duration::from_secs(10),
        max_ejection: Duration::from_secs(300),
        on_5xx: true,
        max_ejected_percent: 50,
    };
    let value = t.raw("outlier");
    let path = t.key_path("outlier");
    let table = match value {
        None => return Some(defaults),
        Some(toml::Value::Boolean(false)) => return None,
        Some(toml::Value::Boolean(true)) => return Some(defaults),
        Some(toml::Value::Table(table)) => table,
        Some(other) => {
            p.add(
                path,
                format!("expected a table or true/false, found {}", other.type_str()),
            );
            return None;
        }
    };
    let mut o = TableReader::new(path, table);
    let failures = o.int(p, "failures", 1, 1000).unwrap_or(5) as u32;
    let base_ejection = o
        .duration(p, "base_ejection")
        .unwrap_or(defaults.base_ejection);
    let max_ejection = o
        .duration(p, "max_ejection")
        .unwrap_or(defaults.max_ejection);
    if base_ejection.is_zero() {
        p.add(o.key_path("base_ejection"), "must be greater than zero");
    }
    if max_ejection < base_ejection {
        p.add(o.key_path("max_ejection"), "must be at least base_ejection");
    }
    let on_5xx = o.bool(p, "on_5xx").unwrap_or(defaults.on_5xx);
    let max_ejected_percent = o
        .int(p, "max_ejected_percent", 0, 100)
        .map_or(defaults.max_ejected_percent, |n| n as u32);
    o.finish(p);
    Some(Outlier {
        failures,
        base_ejection,
        max_ejection,
        on_5xx,
        max_ejected_percent,
    })
}

fn retry_on(t: &mut TableReader<'_>, p: &mut Problems) -> Vec<u16> {
    let Some(items) = t.array(p, "retry_on") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.as_integer() {
            Some(n) if (500..=599).contains(&n) => out.push(n as u16),
            _ => p.add(
                format!("{}[{i}]", t.key_path("retry_on")),
                "expected a 5xx status",
            ),
        }
    }
    out
}

fn max_response_head_size(t: &mut TableReader<'_>, p: &mut Problems) -> usize {
    let n = t.size(p, "max_response_head_size").unwrap_or(32 * 1024);
    if !(1024..=1 << 20).contains(&n) {
        p.add(
            t.key_path("max_response_head_size"),
            "must be between 1KiB and 1MiB",
        );
    }
    n as usize
}

fn server(item: &toml::Value, path: &str, p: &mut Problems, geo: &mut Geo) -> Option<ServerSpec> {
    let (addr, weight, backup, max_conns, region) = match item {
        toml::Value::String(s) => (s.as_str(), 1, false, 0, None),
        toml::Value::Table(table) => {
            let mut t = TableReader::new(path.to_string(), table);
            let addr = t.str(p, "addr");
            let weight = t.int(p, "weight", 1, 10_000).unwrap_or(1) as u32;
            let backup = t.bool(p, "backup").unwrap_or(false);
            let max_conns = t.int(p, "max_conns", 0, 1_000_000).unwrap_or(0) as u32;
            let region = t.str(p, "region").map(|r| geo.intern(r));
            if addr.is_none() && !t.has("addr") {
                p.add(t.key_path("addr"), "missing");
            }
            t.finish(p);
            (addr?, weight, backup, max_conns, region)
        }
        other => {
            p.add(
                path,
                format!(
                    "expected \"host:port\" or {{ addr, weight, backup, max_conns, region }}, found {}",
                    other.type_str()
                ),
            );
            return None;
        }
    };
    let literal: Option<SocketAddr> = addr.parse().ok();
    Some(ServerSpec {
        text: addr.to_string(),
        name: literal.is_none(),
        template: ServerConfig {
            addr: literal.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            weight,
            host: host_part(addr),
            tls_name: None,
            tls_name_tag: 0,
            backup,
            region,
            max_conns,
            health: Arc::new(ServerHealth::default()),
            spec: 0,
        },
    })
}

/// Every address of a spec: the literal, or all the name resolves to
/// (sorted, so an unchanged answer in another order changes nothing).
pub fn resolve_spec(spec: &ServerSpec) -> Result<Vec<SocketAddr>, String> {
    if !spec.name {
        return Ok(vec![spec.template.addr]);
    }
    let mut addrs: Vec<SocketAddr> = spec
        .text
        .to_socket_addrs()
        .map_err(|e| format!("`{}` is not a host:port address ({e})", spec.text))?
        .collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(format!("`{}` resolves to no address", spec.text));
    }
    Ok(addrs)
}

/// The servers of `specs` given each spec's addresses.
pub fn expand(specs: &[ServerSpec], addrs: &[Vec<SocketAddr>]) -> Vec<ServerConfig> {
    let mut servers = Vec::new();
    for (i, (spec, list)) in specs.iter().zip(addrs).enumerate() {
        for &addr in list {
            servers.push(ServerConfig {
                addr,
                health: Arc::new(ServerHealth::default()),
                spec: i,
                ..spec.template.clone()
            });
        }
    }
    servers
}

/// Recomputes what depends on the server list (after discovery changed it).
pub fn servers_changed(group: &mut UpstreamGroup) {
    group.regional = group.servers.iter().any(|s| s.region.is_some());
    group.maglev = maglev_for(&group.balance, &group.servers);
}

fn maglev_for(balance: &Balance, servers: &[ServerConfig]) -> Option<Arc<Maglev>> {
    matches!(balance, Balance::Hash(_)).then(|| {
        // Backups are left out (they only serve when every primary is
        // down), so they cannot take keys from primaries.
        let ids: Vec<(String, u32)> = servers
            .iter()
            .map(|s| {
                let id = if s.backup {
                    String::new()
                } else {
                    s.addr.to_string()
                };
                (id, if s.backup { 0 } else { s.weight })
            })
            .collect();
        Arc::new(Maglev::new(&ids))
    })
}
