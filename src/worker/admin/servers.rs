//! Upstream servers on the admin API: `GET /upstreams` (each server's
//! state as the config, the health checks, the admin and the workers see
//! it, with its traffic figures) and runtime control, as HAProxy's `set
//! server`: `POST /upstreams/{group}/{server}/state` (`ready`, `drain`,
//! `maintenance`) and `.../weight` (a number, or `default`). Control
//! writes the server's shared health; every worker reads it at its next
//! pick (hashed groups rebuild their table on the worker's next tick).

use std::fmt::Write;
use std::time::Instant;

use super::super::ctx::WorkerCtx;
use super::super::observe::{self, ServerStats};
use super::json;
use crate::config::{Balance, Config, UpstreamGroup};
use crate::upstream::{AdminState, ServerConfig};

/// Weights the API accepts (as the config file does).
const MAX_WEIGHT: u32 = 10_000;

/// What `POST /upstreams/{group}/{server}/...` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::worker) enum Setting {
    State,
    Weight,
}

/// A control request's target: a group, and a server of it as `ip:port`
/// or as written in the config (a name that resolved to several
/// addresses names them all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::worker) struct ServerRef {
    pub group: Box<str>,
    pub server: Box<str>,
}

/// A control request's outcome: status and a body.
pub(super) type Answer = (u16, String);

/// Splits `/upstreams/{group}/{server}/{state|weight}` (segments
/// percent-decoded). None: not such a path.
pub(super) fn control_path(path: &[u8]) -> Option<(ServerRef, Setting)> {
    let rest = path.strip_prefix(b"/upstreams/")?;
    let mut parts = rest.split(|&b| b == b'/');
    let (group, server, setting) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let setting = match setting {
        b"state" => Setting::State,
        b"weight" => Setting::Weight,
        _ => return None,
    };
    let (group, server) = (percent_decode(group)?, percent_decode(server)?);
    if group.is_empty() || server.is_empty() {
        return None;
    }
    Some((ServerRef { group, server }, setting))
}

fn percent_decode(s: &[u8]) -> Option<Box<str>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(String::into_boxed_str)
}

/// Applies a control request with its body; answers with the servers'
/// new settings as JSON.
pub(super) fn control(
    config: &Config,
    target: &ServerRef,
    setting: Setting,
    body: &[u8],
) -> Answer {
    let Some(group) = config.upstreams.iter().find(|g| *g.name == *target.group) else {
        return (404, format!("no upstream group `{}`\n", target.group));
    };
    let servers: Vec<&ServerConfig> = group
        .servers
        .iter()
        .filter(|s| names(group, s, &target.server))
        .collect();
    if servers.is_empty() {
        return (
            404,
            format!("no server `{}` in group `{}`\n", target.server, group.name),
        );
    }
    let value = std::str::from_utf8(body).unwrap_or("").trim();
    match setting {
        Setting::State => {
            let Some(state) = AdminState::parse(value) else {
                return (
                    400,
                    "the body must be one of: ready, drain, maintenance\n".to_string(),
                );
            };
            for s in &servers {
                s.health.set_admin_state(state);
            }
            tracing::info!(group = %group.name, server = %target.server, state = state.name(), "admin: server state set");
        }
        Setting::Weight => {
            let weight = match value {
                "default" => None,
                n => match n.parse::<u32>() {
                    Ok(w @ 1..=MAX_WEIGHT) => Some(w),
                    _ => {
                        return (
                            400,
                            format!(
                                "the body must be a weight from 1 to {MAX_WEIGHT}, or `default` (drain a server instead of weight 0)\n"
                            ),
                        );
                    }
                },
            };
            for s in &servers {
                s.health.set_weight_override(weight);
            }
            tracing::info!(group = %group.name, server = %target.server, ?weight, "admin: server weight set");
        }
    }
    let mut out = String::from("{");
    json::key(&mut out, true, "generation");
    let _ = write!(out, "{}", config.generation);
    json::key(&mut out, false, "group");
    json::string(&mut out, &group.name);
    json::key(&mut out, false, "servers");
    out.push('[');
    for (i, s) in servers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        json::key(&mut out, true, "server");
        json::string(&mut out, &s.addr.to_string());
        json::key(&mut out, false, "state");
        json::string(&mut out, s.health.admin_state().name());
        json::key(&mut out, false, "weight");
        let _ = write!(out, "{}", effective_weight(s));
        out.push('}');
    }
    out.push_str("]}\n");
    (200, out)
}

/// Whether `name` names server `s` of `group`: its address, or its
/// `servers` entry as written.
fn names(group: &UpstreamGroup, s: &ServerConfig, name: &str) -> bool {
    s.addr.to_string() == name
        || group
            .specs
            .get(s.spec)
            .is_some_and(|spec| spec.text == name)
}

fn effective_weight(s: &ServerConfig) -> u32 {
    s.health.weight_override().unwrap_or(s.weight)
}

/// `GET /upstreams`: every server of every group, with what the workers
/// last published (each tick) and their traffic figures.
pub(super) async fn upstreams(ctx: &WorkerCtx) -> String {
    let stats = observe::server_stats(ctx).await;
    let config = ctx.snapshot().1;
    render(&config, &stats)
}

fn render(config: &Config, stats: &[ServerStats]) -> String {
    let mut out = String::from("{");
    json::key(&mut out, true, "generation");
    let _ = write!(out, "{}", config.generation);
    json::key(&mut out, false, "groups");
    out.push('[');
    for (i, group) in config.upstreams.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        json::key(&mut out, true, "name");
        json::string(&mut out, &group.name);
        json::key(&mut out, false, "balance");
        json::string(&mut out, balance_name(&group.balance));
        json::key(&mut out, false, "servers");
        out.push('[');
        for (j, s) in group.servers.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let addr = s.addr.to_string();
            let figures = stats
                .iter()
                .find(|st| st.group == group.name && st.server == addr);
            server(&mut out, group, s, &addr, figures);
        }
        out.push_str("]}");
    }
    out.push_str("]}\n");
    out
}

fn server(
    out: &mut String,
    group: &UpstreamGroup,
    s: &ServerConfig,
    addr: &str,
    figures: Option<&ServerStats>,
) {
    let view = s.health.view();
    out.push('{');
    json::key(out, true, "server");
    json::string(out, addr);
    json::key(out, false, "spec");
    json::string(out, group.specs.get(s.spec).map_or("", |spec| &spec.text));
    json::key(out, false, "state");
    json::string(out, s.health.admin_state().name());
    json::key(out, false, "health");
    json::string(
        out,
        match (group.health_check.is_some(), s.health.is_up()) {
            (false, _) => "unchecked",
            (true, true) => "up",
            (true, false) => "down",
        },
    );
    json::key(out, false, "weight");
    let _ = write!(out, "{}", effective_weight(s));
    json::key(out, false, "config_weight");
    let _ = write!(out, "{}", s.weight);
    json::key(out, false, "backup");
    out.push_str(if s.backup { "true" } else { "false" });
    json::key(out, false, "ejected_workers");
    let _ = write!(out, "{}", view.ejected_on);
    json::key(out, false, "in_flight");
    let _ = write!(out, "{}", view.in_flight);
    let figures = figures.cloned().unwrap_or_default();
    json::key(out, false, "requests");
    let _ = write!(out, "{}", figures.requests);
    json::key(out, false, "errors");
    let _ = write!(out, "{}", figures.errors);
    json::key(out, false, "latency_mean_seconds");
    match figures.latency_count {
        0 => out.push_str("null"),
        n => json::float(out, figures.latency_sum / n as f64),
    }
    out.push('}');
}

fn balance_name(b: &Balance) -> &'static str {
    match b {
        Balance::RoundRobin => "round_robin",
        Balance::LeastConn => "least_conn",
        Balance::P2c { ewma: false } => "p2c",
        Balance::P2c { ewma: true } => "p2c_ewma",
        Balance::Hash(_) => "hash",
        Balance::Random => "random",
    }
}

/// Run on each worker's tick: hashed groups follow weight changes, and
/// the worker publishes each server's in-flight count and ejection.
pub(in crate::worker) fn publish_servers(ctx: &WorkerCtx) {
    let (generation, config) = ctx.snapshot();
    let now = Instant::now();
    for (g, group) in config.upstreams.iter().enumerate() {
        let published = ctx.with_group(generation, g, |state| {
            state.refresh(group);
            for (s, server) in state.servers.iter().zip(&group.servers) {
                server
                    .health
                    .publish_view(ctx.id, s.in_flight, s.is_ejected(now));
            }
        });
        if published.is_none() {
            // No request has been balanced on this snapshot yet.
            for server in &group.servers {
                server.health.publish_view(ctx.id, 0, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_paths() {
        let (r, s) = control_path(b"/upstreams/web/10.0.0.1:80/state").unwrap();
        assert_eq!(
            (&*r.group, &*r.server, s),
            ("web", "10.0.0.1:80", Setting::State)
        );
        let (r, s) = control_path(b"/upstreams/web/%5B::1%5D:80/weight").unwrap();
        assert_eq!((&*r.server, s), ("[::1]:80", Setting::Weight));
        for bad in [
            &b"/upstreams/web/10.0.0.1:80"[..],
            b"/upstreams/web/10.0.0.1:80/other",
            b"/upstreams/web/10.0.0.1:80/state/x",
            b"/upstreams//10.0.0.1:80/state",
            b"/upstreams/web/%zz/state",
            b"/upstreams",
        ] {
            assert_eq!(control_path(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    fn config() -> Config {
        Config::from_toml_str(
            r#"
            [[listeners]]
            name = "main"
            bind = "127.0.0.1:0"
            [[routes]]
            path_prefix = "/"
            upstream = "web"
            [upstreams.web]
            servers = ["127.0.0.1:81", { addr = "127.0.0.1:82", weight = 3 }]
            "#,
        )
        .unwrap()
    }

    fn target(server: &str) -> ServerRef {
        ServerRef {
            group: "web".into(),
            server: server.into(),
        }
    }

    #[test]
    fn control_sets_state_and_weight() {
        let config = config();
        let health = &config.upstreams[0].servers[1].health;
        let (status, body) = control(&config, &target("127.0.0.1:82"), Setting::State, b"drain\n");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""state":"drain""#), "{body}");
        assert_eq!(health.admin_state(), AdminState::Drain);
        assert!(config.upstreams[0].servers[0].health.admin_ready());

        let (status, body) = control(&config, &target("127.0.0.1:82"), Setting::Weight, b"7");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""weight":7"#), "{body}");
        assert_eq!(health.weight_override(), Some(7));
        control(
            &config,
            &target("127.0.0.1:82"),
            Setting::Weight,
            b"default",
        );
        assert_eq!(health.weight_override(), None);

        for (setting, body) in [
            (Setting::State, &b"off"[..]),
            (Setting::Weight, b"0"),
            (Setting::Weight, b"10001"),
            (Setting::Weight, b"x"),
        ] {
            assert_eq!(
                control(&config, &target("127.0.0.1:82"), setting, body).0,
                400
            );
        }
        assert_eq!(
            control(&config, &target("127.0.0.1:83"), Setting::State, b"drain").0,
            404
        );
        let other = ServerRef {
            group: "nope".into(),
            server: "127.0.0.1:82".into(),
        };
        assert_eq!(control(&config, &other, Setting::State, b"drain").0, 404);
    }

    #[test]
    fn upstreams_json_merges_figures() {
        let config = config();
        let stats = [ServerStats {
            group: "web".into(),
            server: "127.0.0.1:81".into(),
            requests: 10,
            errors: 1,
            latency_sum: 0.5,
            latency_count: 10,
        }];
        let health = &config.upstreams[0].servers[0].health;
        health.prepare_views(2);
        health.publish_view(0, 4, true);
        let out = render(&config, &stats);
        assert!(out.contains(r#""server":"127.0.0.1:81","spec":"127.0.0.1:81","state":"ready","health":"unchecked","weight":1,"config_weight":1,"backup":false,"ejected_workers":1,"in_flight":4,"requests":10,"errors":1,"latency_mean_seconds":0.05}"#), "{out}");
        assert!(out.contains(r#""server":"127.0.0.1:82""#), "{out}");
        assert!(out.contains(r#""latency_mean_seconds":null"#), "{out}");
    }
}
