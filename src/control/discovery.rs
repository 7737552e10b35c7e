//! DNS-based discovery: a thread re-resolves the server names of groups
//! with `resolve_interval` (through the system resolver, so /etc/hosts,
//! a Consul DNS interface or a Kubernetes headless service all work) and,
//! when the addresses changed, publishes a snapshot with the new servers,
//! as a reload would: requests in flight finish on the old one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{Config, expand, resolve_spec, servers_changed};
use crate::shared::Shared;
use crate::upstream::{ServerSpec, UpstreamGroup};

const TICK: Duration = Duration::from_millis(250);

pub(crate) fn spawn(shared: Arc<Shared>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ringress-dns".into())
        .spawn(move || run(&shared))
}

fn run(shared: &Shared) {
    let mut due: HashMap<String, Instant> = HashMap::new();
    while !shared.draining.load(Ordering::Acquire) {
        std::thread::sleep(TICK);
        let (_, config) = shared.current();
        let now = Instant::now();
        due.retain(|name, _| config.upstreams.iter().any(|g| &g.name == name));
        for group in &config.upstreams {
            let Some(interval) = group.resolve_interval else {
                continue;
            };
            if !group.specs.iter().any(|s| s.name) {
                continue;
            }
            let next = due.entry(group.name.clone()).or_insert(now + interval);
            if now < *next {
                continue;
            }
            *next = now + interval;
            let addrs = resolve_group(group);
            match update_servers(shared, &group.name, &group.specs, &addrs) {
                Ok(Some(generation)) => tracing::info!(
                    group = %group.name,
                    servers = addrs.iter().map(Vec::len).sum::<usize>(),
                    generation,
                    "DNS changed the group's servers"
                ),
                Ok(None) => {}
                Err(why) => tracing::debug!(group = %group.name, %why, "DNS update skipped"),
            }
        }
    }
}

/// Each spec's addresses now; a name that fails to resolve keeps the
/// addresses it had (a DNS outage must not empty a group).
fn resolve_group(group: &UpstreamGroup) -> Vec<Vec<SocketAddr>> {
    group
        .specs
        .iter()
        .enumerate()
        .map(|(i, spec)| match resolve_spec(spec) {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(group = %group.name, server = %spec.text, error = %e, "re-resolving failed; keeping the known addresses");
                group
                    .servers
                    .iter()
                    .filter(|s| s.spec == i)
                    .map(|s| s.addr)
                    .collect()
            }
        })
        .collect()
}

/// Publishes `group`'s servers as DNS now resolves them, if the group
/// still has the same `servers` entries and the addresses changed.
/// Ok(None): nothing to do.
fn update_servers(
    shared: &Shared,
    group: &str,
    specs: &[ServerSpec],
    addrs: &[Vec<SocketAddr>],
) -> Result<Option<u64>, String> {
    shared.publish(|current| {
        let Some(index) = current.upstreams.iter().position(|g| g.name == group) else {
            return Err("the group is gone".into());
        };
        let same_specs = current.upstreams[index].specs.len() == specs.len()
            && current.upstreams[index]
                .specs
                .iter()
                .zip(specs)
                .all(|(a, b)| a.text == b.text);
        if !same_specs {
            return Err("the group changed meanwhile".into());
        }
        let servers = expand(&current.upstreams[index].specs, addrs);
        let old: Vec<SocketAddr> = current.upstreams[index]
            .servers
            .iter()
            .map(|s| s.addr)
            .collect();
        let new: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        if old == new {
            return Ok(None);
        }
        if servers.iter().all(|s| s.backup) {
            return Err("no primary server would be left".into());
        }
        let mut config = Config::clone(current);
        config.upstreams[index].servers = servers;
        servers_changed(&mut config.upstreams[index]);
        Ok(Some(config))
    })
}
