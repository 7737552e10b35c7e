//! DNS-based discovery: a thread re-resolves the server names of groups
//! with `resolve_interval` (through the system resolver, so /etc/hosts,
//! a Consul DNS interface or a Kubernetes headless service all work) and,
//! when the addresses changed, publishes a snapshot with the new servers,
//! as a reload would: requests in flight finish on the old one. Every
//! lookup has a deadline (the group's `resolve_timeout`): a resolver that
//! never answers costs the known addresses nothing and stalls nothing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{Config, expand, resolve_spec, servers_changed};
use crate::shared::Shared;
use crate::upstream::{ServerSpec, UpstreamGroup};

const TICK: Duration = Duration::from_millis(250);

/// Lookups that overran their deadline and still hold a thread, at most.
/// Past this many the resolver is taken as hung and lookups fail at once,
/// so a resolver that never answers cannot pile up one thread per lookup.
const MAX_HUNG_LOOKUPS: usize = 4;

pub(crate) fn spawn(shared: Arc<Shared>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ringress-dns".into())
        .spawn(move || run(&shared, &Resolver::new(resolve_spec)))
}

/// How a `servers` entry is looked up: the system resolver, or a stand-in
/// in tests.
type Lookup = fn(&ServerSpec) -> Result<Vec<SocketAddr>, String>;

/// Runs lookups with a deadline. The system resolver (getaddrinfo) can
/// be neither given a timeout per call nor cancelled, so each lookup of a
/// name runs on a thread of its own and is awaited for the deadline; one
/// that overruns is left to finish on its own and its answer is dropped.
struct Resolver {
    lookup: Lookup,
    /// Lookup threads still running (the one awaited included).
    running: Arc<AtomicUsize>,
}

impl Resolver {
    fn new(lookup: Lookup) -> Resolver {
        Resolver {
            lookup,
            running: Arc::default(),
        }
    }

    /// `spec`'s addresses, or why there are none within `timeout`.
    fn resolve(&self, spec: &ServerSpec, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
        if !spec.name {
            return (self.lookup)(spec);
        }
        let hung = self.running.load(Ordering::Acquire);
        if hung >= MAX_HUNG_LOOKUPS {
            return Err(format!("{hung} earlier lookups are still unanswered"));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let (lookup, running, job) = (self.lookup, self.running.clone(), spec.clone());
        running.fetch_add(1, Ordering::AcqRel);
        let spawned = std::thread::Builder::new()
            .name("ringress-dns-lookup".into())
            .spawn(move || {
                let _ = tx.send(lookup(&job));
                running.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            self.running.fetch_sub(1, Ordering::AcqRel);
            return Err(format!("no thread for the lookup ({e})"));
        }
        match rx.recv_timeout(timeout) {
            Ok(answer) => answer,
            Err(RecvTimeoutError::Timeout) => Err(format!("no answer within {timeout:?}")),
            Err(RecvTimeoutError::Disconnected) => Err("the lookup failed".into()),
        }
    }
}

fn run(shared: &Shared, resolver: &Resolver) {
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
            let addrs = resolve_group(resolver, group);
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

/// Each spec's addresses now; a name that fails to resolve (or does not
/// within the group's `resolve_timeout`) keeps the addresses it had (a
/// DNS outage must not empty a group).
fn resolve_group(resolver: &Resolver, group: &UpstreamGroup) -> Vec<Vec<SocketAddr>> {
    group
        .specs
        .iter()
        .enumerate()
        .map(|(i, spec)| match resolver.resolve(spec, group.resolve_timeout) {
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

#[cfg(test)]
mod tests {
    //! The system resolver cannot be pointed elsewhere per process (it
    //! reads /etc/resolv.conf), so these tests give the resolver a
    //! stand-in lookup: one name never answers, the other moves.
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// `localhost:1001` never answers (its thread parks for good);
    /// `localhost:1002` now resolves to 127.0.0.9.
    fn stand_in(spec: &ServerSpec) -> Result<Vec<SocketAddr>, String> {
        if spec.text.ends_with(":1001") {
            loop {
                std::thread::park();
            }
        }
        Ok(vec![SocketAddr::from(([127, 0, 0, 9], 1002))])
    }

    fn config() -> Config {
        Config::from_toml_str(
            r#"
            [[listeners]]
            name = "main"
            bind = "127.0.0.1:0"
            [[routes]]
            path_prefix = "/a"
            upstream = "hung"
            [[routes]]
            path_prefix = "/b"
            upstream = "moved"
            [upstreams.hung]
            servers = ["localhost:1001"]
            resolve_interval = "1s"
            resolve_timeout = "100ms"
            [upstreams.moved]
            servers = ["localhost:1002"]
            resolve_interval = "1s"
            resolve_timeout = "100ms"
            "#,
        )
        .expect("valid config")
    }

    fn addrs(config: &Config, group: &str) -> Vec<SocketAddr> {
        let g = config.upstreams.iter().find(|g| g.name == group).unwrap();
        g.servers.iter().map(|s| s.addr).collect()
    }

    #[test]
    fn a_lookup_without_an_answer_times_out_and_hung_ones_are_bounded() {
        let config = config();
        let hung = &config.upstreams[0];
        assert_eq!(hung.resolve_timeout, Duration::from_millis(100));
        let resolver = Resolver::new(stand_in);
        for _ in 0..MAX_HUNG_LOOKUPS {
            let started = Instant::now();
            let kept = resolve_group(&resolver, hung);
            let took = started.elapsed();
            assert_eq!(kept, [addrs(&config, "hung")], "the known addresses stay");
            assert!(
                took >= Duration::from_millis(100) && took < Duration::from_secs(2),
                "{took:?}"
            );
        }
        // The resolver is hung: no more threads, no more waiting.
        let started = Instant::now();
        let err = resolver.resolve(&hung.specs[0], hung.resolve_timeout);
        assert!(err.is_err_and(|e| e.contains("unanswered")));
        assert!(started.elapsed() < Duration::from_millis(50));
        // A name that answers still does, on its own resolver.
        let moved = &config.upstreams[1];
        let fresh = Resolver::new(stand_in);
        assert_eq!(
            fresh.resolve(&moved.specs[0], moved.resolve_timeout),
            Ok(vec![SocketAddr::from(([127, 0, 0, 9], 1002))])
        );
    }

    #[test]
    fn a_hung_name_does_not_stall_discovery_of_the_others() {
        let config = config();
        let hung_before = addrs(&config, "hung");
        let shared = Arc::new(Shared::new(config, 1, Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, done) = (shared.clone(), done.clone());
            std::thread::spawn(move || {
                run(&shared, &Resolver::new(stand_in));
                done.store(true, Ordering::Release);
            })
        };
        // Due a second after start, then every second; each round waits
        // 100 ms for the hung name.
        let deadline = Instant::now() + Duration::from_secs(10);
        let moved = [SocketAddr::from(([127, 0, 0, 9], 1002))];
        while addrs(&shared.current().1, "moved") != moved {
            assert!(Instant::now() < deadline, "discovery never moved the group");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(addrs(&shared.current().1, "hung"), hung_before);
        shared.draining.store(true, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "discovery did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        thread.join().unwrap();
    }
}
