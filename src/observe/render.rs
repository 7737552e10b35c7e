//! Merges the workers' published metrics and renders them: Prometheus
//! text exposition for `/metrics`, the dashboard's JSON for `/stats`.
//! Runs on the admin side only, when asked.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::access::json_str;
use super::metrics::{AttemptOutcome, BOUNDS, ConnClosed, Handshake, Histogram, WorkerMetrics};
use crate::config::Config;
use crate::error::ErrorKind;
use crate::pipeline::CacheResult;

/// What the control side adds to the workers' counts.
#[derive(Debug, Clone, Default)]
pub struct Process {
    pub generation: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Access log lines lost to write errors (the writer's count).
    pub log_write_failures: u64,
    pub workers: usize,
    pub uptime_s: f64,
    pub time_ms: u64,
}

#[derive(Debug, Clone, Default)]
pub struct UpstreamTotals {
    pub outcomes: [u64; AttemptOutcome::NAMES.len()],
    pub latency: Histogram,
}

impl UpstreamTotals {
    pub fn requests(&self) -> u64 {
        self.outcomes.iter().sum()
    }

    pub fn errors(&self) -> u64 {
        self.requests() - self.outcomes[AttemptOutcome::Response as usize]
    }
}

/// Every worker's counts summed, by label values.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// (listener, route, status) → requests.
    pub requests: BTreeMap<(String, String, u16), u64>,
    /// route → durations.
    pub durations: BTreeMap<String, Histogram>,
    /// route → requests by cache result.
    pub cache: BTreeMap<String, [u64; CacheResult::COUNTED.len()]>,
    /// (group, server address) → attempts.
    pub servers: BTreeMap<(String, String), UpstreamTotals>,
    /// group → [new, reused] connections.
    pub connections: BTreeMap<String, [u64; 2]>,
    /// rate limit → [refused, logged only].
    pub limited: BTreeMap<String, [u64; 2]>,
    /// filter rule → matches by action (`FilterAction::NAMES`).
    pub filtered: BTreeMap<String, [u64; 3]>,
    pub rejections: [u64; ErrorKind::NAMES.len()],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub handshakes: [u64; Handshake::NAMES.len()],
    pub log_lines_dropped: u64,
    pub conns_closed: [u64; ConnClosed::NAMES.len()],
    pub active: u64,
    pub idle: u64,
}

pub fn merge<'a>(workers: impl IntoIterator<Item = &'a WorkerMetrics>) -> Totals {
    let mut t = Totals::default();
    for w in workers {
        for (route_id, stats) in w.route_stats.iter().enumerate() {
            let route = &w.routes.list[route_id];
            for &(listener, code, n) in &stats.codes {
                let listener = w.listeners.list[listener as usize].to_string();
                *t.requests
                    .entry((listener, route.to_string(), code))
                    .or_default() += n;
            }
            if stats.cache.iter().any(|&n| n > 0) {
                let e = t.cache.entry(route.to_string()).or_default();
                for (a, b) in e.iter_mut().zip(&stats.cache) {
                    *a += b;
                }
            }
            if stats.duration.count() > 0 {
                t.durations
                    .entry(route.to_string())
                    .or_default()
                    .add(&stats.duration);
            }
        }
        for (id, s) in w.server_stats.iter().enumerate() {
            let group = w.groups.list[s.group as usize].to_string();
            let full = &w.servers.list[id];
            let addr = full.strip_prefix(&format!("{group}/")).unwrap_or(full);
            let e = t.servers.entry((group, addr.to_string())).or_default();
            for (a, b) in e.outcomes.iter_mut().zip(&s.outcomes) {
                *a += b;
            }
            e.latency.add(&s.latency);
        }
        for (id, g) in w.group_stats.iter().enumerate() {
            let e = t
                .connections
                .entry(w.groups.list[id].to_string())
                .or_default();
            e[0] += g.connections[0];
            e[1] += g.connections[1];
        }
        for (id, counts) in w.limit_stats.iter().enumerate() {
            let e = t.limited.entry(w.limits.list[id].to_string()).or_default();
            e[0] += counts[0];
            e[1] += counts[1];
        }
        for (id, counts) in w.filter_stats.iter().enumerate() {
            if counts.iter().any(|&n| n > 0) {
                let e = t
                    .filtered
                    .entry(w.filter_rules.list[id].to_string())
                    .or_default();
                for (a, b) in e.iter_mut().zip(counts) {
                    *a += b;
                }
            }
        }
        for (a, b) in t.rejections.iter_mut().zip(&w.rejections) {
            *a += b;
        }
        for (a, b) in t.handshakes.iter_mut().zip(&w.handshakes) {
            *a += b;
        }
        for (a, b) in t.conns_closed.iter_mut().zip(&w.conns_closed) {
            *a += b;
        }
        t.bytes_in += w.bytes_in;
        t.bytes_out += w.bytes_out;
        t.log_lines_dropped += w.log_lines_dropped;
        t.active += w.active_connections;
        t.idle += w.idle_connections;
    }
    t
}

/// A label value with `\`, `"` and newlines escaped.
fn label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn help(out: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

/// One sample: `name{k="v",...} value`.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            label(out, v);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

fn histogram(out: &mut String, name: &str, labels: &[(&str, &str)], h: &Histogram) {
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    for (i, n) in h.counts.iter().enumerate() {
        cumulative += n;
        let le = BOUNDS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", &le));
        sample(out, &bucket, &with_le, cumulative);
    }
    sample(out, &format!("{name}_sum"), labels, h.sum_ns as f64 / 1e9);
    sample(out, &format!("{name}_count"), labels, cumulative);
}

/// The Prometheus text exposition (format 0.0.4).
pub fn prometheus(t: &Totals, config: &Config, p: &Process) -> String {
    let mut out = String::with_capacity(16 * 1024);
    requests(&mut out, t);
    cache(&mut out, t, config);
    rate_limits(&mut out, t);
    filters(&mut out, t);
    upstreams(&mut out, t, config);
    process(&mut out, t, p);
    out
}

/// Requests by listener, route and status, and their durations.
fn requests(o: &mut String, t: &Totals) {
    help(
        o,
        "ringress_requests_total",
        "counter",
        "Requests answered, by listener, route and status.",
    );
    for ((listener, route, code), n) in &t.requests {
        let code = code.to_string();
        sample(
            o,
            "ringress_requests_total",
            &[("listener", listener), ("route", route), ("code", &code)],
            n,
        );
    }
    help(
        o,
        "ringress_request_duration_seconds",
        "histogram",
        "Time from a request's first byte to the end of its answer, by route.",
    );
    for (route, h) in &t.durations {
        histogram(
            o,
            "ringress_request_duration_seconds",
            &[("route", route)],
            h,
        );
    }
}

/// Requests over each rate limit, refused or (`mode = "log"`) only
/// counted.
fn rate_limits(o: &mut String, t: &Totals) {
    if t.limited.is_empty() {
        return;
    }
    help(
        o,
        "ringress_rate_limited_total",
        "counter",
        "Requests over a rate limit, by limit and action (rejected: answered 429; logged: mode = \"log\", let through).",
    );
    for (limit, [refused, logged]) in &t.limited {
        sample(
            o,
            "ringress_rate_limited_total",
            &[("limit", limit), ("action", "rejected")],
            refused,
        );
        sample(
            o,
            "ringress_rate_limited_total",
            &[("limit", limit), ("action", "logged")],
            logged,
        );
    }
}

/// Requests each filter rule matched, by what it did (a deny in
/// `filters_mode = "log"` counts as log).
fn filters(o: &mut String, t: &Totals) {
    if t.filtered.is_empty() {
        return;
    }
    help(
        o,
        "ringress_filter_matches_total",
        "counter",
        "Requests a filter rule matched, by rule id and action (deny: refused; allow: let through, later rules skipped; log: noted only).",
    );
    for (rule, counts) in &t.filtered {
        for (action, n) in crate::pipeline::FilterAction::NAMES.iter().zip(counts) {
            if *n > 0 {
                sample(
                    o,
                    "ringress_filter_matches_total",
                    &[("rule", rule), ("action", action)],
                    n,
                );
            }
        }
    }
}

/// Cache results by route; each zone's size, objects and evictions.
fn cache(o: &mut String, t: &Totals, config: &Config) {
    if config.caches.is_empty() && t.cache.is_empty() {
        return;
    }
    help(
        o,
        "ringress_cache_requests_total",
        "counter",
        "Requests on caching routes, by what the cache did (hit, updating, stale, miss, expired, revalidated, bypass).",
    );
    for (route, counts) in &t.cache {
        for (result, n) in CacheResult::COUNTED.iter().zip(counts) {
            sample(
                o,
                "ringress_cache_requests_total",
                &[("route", route), ("result", result.name())],
                n,
            );
        }
    }
    // Each zone's figures read once (its shards are locked to count them),
    // in the order of `gauges`.
    let zones: Vec<(&str, [u64; 4])> = config
        .caches
        .iter()
        .filter_map(|z| {
            let store = z.store.get()?;
            let (bytes, objects) = store.usage();
            let values = [bytes as u64, z.max_size, objects as u64, store.evictions()];
            Some((z.name.as_str(), values))
        })
        .collect();
    let gauges: [(&str, &str, &str); 4] = [
        (
            "ringress_cache_bytes",
            "gauge",
            "Bytes stored in the zone (heads, bodies, keys).",
        ),
        ("ringress_cache_max_bytes", "gauge", "The zone's max_size."),
        (
            "ringress_cache_objects",
            "gauge",
            "Keys stored in the zone.",
        ),
        (
            "ringress_cache_evictions_total",
            "counter",
            "Keys evicted to make room.",
        ),
    ];
    for (i, (name, kind, text)) in gauges.iter().enumerate() {
        help(o, name, kind, text);
        for (zone, values) in &zones {
            sample(o, name, &[("zone", zone)], values[i]);
        }
    }
}

/// Upstream attempts, response times, health and connections.
fn upstreams(o: &mut String, t: &Totals, config: &Config) {
    help(
        o,
        "ringress_upstream_requests_total",
        "counter",
        "Attempts sent to upstream servers, by outcome.",
    );
    for ((group, server), s) in &t.servers {
        for (name, n) in AttemptOutcome::NAMES.iter().zip(&s.outcomes) {
            sample(
                o,
                "ringress_upstream_requests_total",
                &[("group", group), ("server", server), ("outcome", name)],
                n,
            );
        }
    }
    help(
        o,
        "ringress_upstream_response_seconds",
        "histogram",
        "Upstream response times (attempt start to end of response), by group.",
    );
    let mut per_group: BTreeMap<&str, Histogram> = BTreeMap::new();
    for ((group, _), s) in &t.servers {
        per_group.entry(group).or_default().add(&s.latency);
    }
    for (group, h) in &per_group {
        histogram(
            o,
            "ringress_upstream_response_seconds",
            &[("group", group)],
            h,
        );
    }
    help(
        o,
        "ringress_upstream_health",
        "gauge",
        "1 when the server is up (health checks), else 0.",
    );
    for g in &config.upstreams {
        for s in &g.servers {
            let addr = s.addr.to_string();
            let up = u8::from(s.health.is_up());
            sample(
                o,
                "ringress_upstream_health",
                &[("group", &g.name), ("server", &addr)],
                up,
            );
        }
    }
    help(
        o,
        "ringress_upstream_connections_total",
        "counter",
        "Upstream connections used, new or reused from the pool.",
    );
    for (group, [new, reused]) in &t.connections {
        sample(
            o,
            "ringress_upstream_connections_total",
            &[("group", group), ("kind", "new")],
            new,
        );
        sample(
            o,
            "ringress_upstream_connections_total",
            &[("group", group), ("kind", "reused")],
            reused,
        );
    }
}

/// Client connections, bytes, rejections, handshakes, the config and the
/// log.
fn process(o: &mut String, t: &Totals, p: &Process) {
    help(
        o,
        "ringress_connections",
        "gauge",
        "Open client connections: serving a request, or idle between requests.",
    );
    sample(o, "ringress_connections", &[("state", "active")], t.active);
    sample(o, "ringress_connections", &[("state", "idle")], t.idle);
    help(
        o,
        "ringress_bytes_total",
        "counter",
        "Bytes read from and written to clients (heads and bodies).",
    );
    sample(
        o,
        "ringress_bytes_total",
        &[("direction", "in")],
        t.bytes_in,
    );
    sample(
        o,
        "ringress_bytes_total",
        &[("direction", "out")],
        t.bytes_out,
    );
    help(
        o,
        "ringress_rejections_total",
        "counter",
        "Answers ringress generated itself (4xx/5xx), by cause.",
    );
    for (name, n) in ErrorKind::NAMES.iter().zip(&t.rejections) {
        if *name != "client_gone" {
            sample(o, "ringress_rejections_total", &[("reason", name)], n);
        }
    }
    help(
        o,
        "ringress_tls_handshakes_total",
        "counter",
        "TLS handshakes with clients, by result.",
    );
    for (name, n) in Handshake::NAMES.iter().zip(&t.handshakes) {
        sample(o, "ringress_tls_handshakes_total", &[("result", name)], n);
    }
    help(
        o,
        "ringress_connections_closed_total",
        "counter",
        "Client connections refused over a listener's caps, cut for a slow head, or closed idle under overload.",
    );
    for (name, n) in ConnClosed::NAMES.iter().zip(&t.conns_closed) {
        sample(
            o,
            "ringress_connections_closed_total",
            &[("reason", name)],
            n,
        );
    }
    help(
        o,
        "ringress_config_generation",
        "gauge",
        "Generation of the running config (1 at start, +1 per reload).",
    );
    sample(o, "ringress_config_generation", &[], p.generation);
    help(
        o,
        "ringress_config_reloads_total",
        "counter",
        "Reloads, by result.",
    );
    sample(
        o,
        "ringress_config_reloads_total",
        &[("result", "ok")],
        p.reloads_ok,
    );
    sample(
        o,
        "ringress_config_reloads_total",
        &[("result", "failed")],
        p.reloads_failed,
    );
    help(
        o,
        "ringress_log_lines_dropped_total",
        "counter",
        "Access log lines dropped because the writer fell behind or could not write.",
    );
    sample(
        o,
        "ringress_log_lines_dropped_total",
        &[],
        t.log_lines_dropped + p.log_write_failures,
    );
}

fn json_histogram(out: &mut String, h: &Histogram) {
    out.push_str("{\"le\":[");
    for (i, b) in BOUNDS.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{b}");
    }
    out.push_str("],\"counts\":[");
    for (i, n) in h.counts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{n}");
    }
    let _ = write!(
        out,
        "],\"sum\":{},\"count\":{}}}",
        h.sum_ns as f64 / 1e9,
        h.count()
    );
}

fn json_status(out: &mut String, classes: &[u64; 5]) {
    let _ = write!(
        out,
        "{{\"1xx\":{},\"2xx\":{},\"3xx\":{},\"4xx\":{},\"5xx\":{}}}",
        classes[0], classes[1], classes[2], classes[3], classes[4]
    );
}

fn class(code: u16) -> usize {
    (usize::from(code / 100)).clamp(1, 5) - 1
}

/// The dashboard's JSON (see `assets/dashboard.html`).
pub fn stats_json(t: &Totals, config: &Config, p: &Process) -> String {
    let mut out = String::with_capacity(4096);
    let mut status = [0u64; 5];
    let mut routes: BTreeMap<&str, (u64, [u64; 5])> = BTreeMap::new();
    for ((_, route, code), n) in &t.requests {
        status[class(*code)] += n;
        let r = routes.entry(route).or_default();
        r.0 += n;
        r.1[class(*code)] += n;
    }
    let mut latency = Histogram::default();
    for h in t.durations.values() {
        latency.add(h);
    }
    let _ = write!(
        out,
        "{{\"time_ms\":{},\"uptime_s\":{:.3},\"generation\":{},\"workers\":{},\"requests\":{},\
         \"bytes_in\":{},\"bytes_out\":{},\"connections\":{{\"active\":{},\"idle\":{}}},\"status\":",
        p.time_ms,
        p.uptime_s,
        p.generation,
        p.workers,
        status.iter().sum::<u64>(),
        t.bytes_in,
        t.bytes_out,
        t.active,
        t.idle
    );
    json_status(&mut out, &status);
    out.push_str(",\"latency\":");
    json_histogram(&mut out, &latency);
    out.push_str(",\"routes\":[");
    for (i, (name, (n, classes))) in routes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        json_str(&mut out, name);
        let _ = write!(out, ",\"requests\":{n},\"status\":");
        json_status(&mut out, classes);
        out.push_str(",\"latency\":");
        json_histogram(
            &mut out,
            t.durations.get(*name).unwrap_or(&Histogram::default()),
        );
        out.push('}');
    }
    out.push_str("],\"upstreams\":[");
    let mut first = true;
    for g in &config.upstreams {
        for s in &g.servers {
            let addr = s.addr.to_string();
            let totals = t.servers.get(&(g.name.clone(), addr.clone()));
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str("{\"group\":");
            json_str(&mut out, &g.name);
            out.push_str(",\"server\":");
            json_str(&mut out, &addr);
            let _ = write!(
                out,
                ",\"healthy\":{},\"requests\":{},\"errors\":{}}}",
                s.health.is_up(),
                totals.map_or(0, UpstreamTotals::requests),
                totals.map_or(0, UpstreamTotals::errors)
            );
        }
    }
    out.push_str("]}");
    out
}
