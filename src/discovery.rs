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

use crate::config::{UpstreamGroup, resolve_spec};
use crate::server::Shared;

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
            match shared.update_servers(&group.name, &group.specs, &addrs) {
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
