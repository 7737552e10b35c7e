//! Traffic management of upstream groups: balancing policies (round-robin
//! over many servers, least_conn, p2c with and without peak-EWMA, random,
//! consistent hashing), backup servers, max_conns, active health checks,
//! passive outlier ejection, retries with their budget and `retry_on`, and
//! the config errors of these keys.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use ringress::IoMode;

// ---------------------------------------------------------------- helpers

/// One listener, a catch-all route to group `app` with `servers`, and the
/// `extra` keys in the group.
fn config(servers: &[String], extra: &str) -> String {
    format!(
        r#"
[runtime]
drain_timeout = "1s"

[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
upstream = "app"

[upstreams.app]
servers = [{}]
connect_timeout = "1s"
response_timeout = "3s"
io_timeout = "3s"
{extra}
"#,
        servers.join(", ")
    )
}

/// Health checks every 100 ms: down after 2 failed probes, up after 2 passes.
const FAST_HEALTH: &str = r#"health_check = { path = "/healthz", interval = "100ms", timeout = "1s", healthy = 2, unhealthy = 2 }"#;

/// What a [`Backend`] does, changeable while it runs.
struct Knobs {
    /// `/healthz` answers 200 (else 500).
    healthy: AtomicBool,
    /// Other requests are read, then the connection is closed unanswered.
    broken: AtomicBool,
    /// Status of the answer to other requests.
    status: AtomicUsize,
    /// Milliseconds to wait before answering other requests.
    delay_ms: AtomicUsize,
    probes_ok: AtomicUsize,
    probes_failed: AtomicUsize,
    /// Connections whose first request was not a health probe (or that
    /// carried no request at all).
    other_conns: AtomicUsize,
}

/// A keep-alive upstream answering each request with `status` and its tag
/// as body and `X-Server` header. `/healthz` is answered 200 or 500 with
/// `Connection: close`; a target starting with `/hold` is answered after 1 s.
struct Backend {
    up: Upstream,
    tag: String,
    k: Arc<Knobs>,
}

impl Backend {
    fn start(tag: &str) -> Backend {
        let k = Arc::new(Knobs {
            healthy: AtomicBool::new(true),
            broken: AtomicBool::new(false),
            status: AtomicUsize::new(200),
            delay_ms: AtomicUsize::new(0),
            probes_ok: AtomicUsize::new(0),
            probes_failed: AtomicUsize::new(0),
            other_conns: AtomicUsize::new(0),
        });
        let knobs = k.clone();
        let name = tag.to_string();
        let up = Upstream::start(move |r, w, up| {
            let k = &knobs;
            let mut first = true;
            while let Some(req) = up.record(r) {
                let probe = req.target == "/healthz";
                if first && !probe {
                    k.other_conns.fetch_add(1, Ordering::AcqRel);
                }
                first = false;
                if probe {
                    let ok = k.healthy.load(Ordering::Acquire);
                    let counter = if ok { &k.probes_ok } else { &k.probes_failed };
                    counter.fetch_add(1, Ordering::AcqRel);
                    let status = if ok { 200 } else { 500 };
                    let _ = w.write_all(
                        format!(
                            "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhc"
                        )
                        .as_bytes(),
                    );
                    return;
                }
                if k.broken.load(Ordering::Acquire) {
                    return;
                }
                let delay = k.delay_ms.load(Ordering::Acquire);
                if delay > 0 {
                    thread::sleep(Duration::from_millis(delay as u64));
                }
                if req.target.starts_with("/hold") {
                    thread::sleep(Duration::from_secs(1));
                }
                let status = k.status.load(Ordering::Acquire);
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nX-Server: {name}\r\n\r\n{name}",
                    name.len()
                );
                if w.write_all(resp.as_bytes()).is_err() {
                    return;
                }
            }
            if first {
                k.other_conns.fetch_add(1, Ordering::AcqRel);
            }
        });
        Backend {
            up,
            tag: tag.to_string(),
            k,
        }
    }

    /// A backend that reads each request and closes without answering.
    fn broken(tag: &str) -> Backend {
        let b = Backend::start(tag);
        b.k.broken.store(true, Ordering::Release);
        b
    }

    fn with_status(tag: &str, status: usize) -> Backend {
        let b = Backend::start(tag);
        b.k.status.store(status, Ordering::Release);
        b
    }

    /// `"127.0.0.1:PORT"` for a `servers` list.
    fn entry(&self) -> String {
        format!("\"{}\"", self.up.addr)
    }

    /// Requests other than health probes.
    fn traffic(&self) -> Vec<SeenRequest> {
        self.up
            .requests()
            .into_iter()
            .filter(|r| r.target != "/healthz")
            .collect()
    }

    fn probes(&self) -> Vec<SeenRequest> {
        self.up
            .requests()
            .into_iter()
            .filter(|r| r.target == "/healthz")
            .collect()
    }

    fn accepts(&self) -> usize {
        self.up.connections.load(Ordering::Acquire)
    }

    fn set_healthy(&self, healthy: bool) {
        self.k.healthy.store(healthy, Ordering::Release);
    }

    fn probes_ok(&self) -> usize {
        self.k.probes_ok.load(Ordering::Acquire)
    }

    fn probes_failed(&self) -> usize {
        self.k.probes_failed.load(Ordering::Acquire)
    }

    /// Waits until the checker has certainly recorded two failed probes in
    /// a row (so, with `unhealthy = 2`, marked the server down): probes of
    /// one server run one after the other, so a third failing probe arriving
    /// means the first two were counted.
    fn wait_down(&self, since_failed: usize) -> Duration {
        wait_until(&format!("{} marked down", self.tag), SLOW, || {
            self.probes_failed() >= since_failed + 3
        })
    }

    /// Like [`wait_down`](Self::wait_down) for two passing probes.
    fn wait_up(&self, since_ok: usize) -> Duration {
        wait_until(&format!("{} marked up", self.tag), SLOW, || {
            self.probes_ok() >= since_ok + 3
        })
    }
}

/// Longest wait for something the proxy does in the background.
const SLOW: Duration = Duration::from_secs(5);

/// Polls `cond` every 5 ms; panics after `limit`. Returns the time taken.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

/// One request on a fresh connection.
fn fetch(addr: SocketAddr, raw: &[u8]) -> Response {
    Client::connect(addr).request(raw)
}

/// The tag of the backend that answered (`-` for a generated answer).
fn served_by(r: &Response) -> String {
    r.header("x-server").unwrap_or("-").to_string()
}

/// How many responses each tag served.
fn tally(tags: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for t in tags {
        *m.entry(t).or_insert(0) += 1;
    }
    m
}

fn one_worker(toml: &str) -> Proxy {
    Proxy::start_with(toml, 1, IoMode::Auto)
}

/// Sends `n` GETs, each on its own connection and thread, `gap` apart, so
/// that slow answers overlap later requests. Returns (status, server).
fn staggered(addr: SocketAddr, n: usize, gap: Duration) -> Vec<(u16, String)> {
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let t = thread::spawn(move || {
                let r = fetch(addr, &get(&format!("/s{i}")));
                (r.status, served_by(&r))
            });
            thread::sleep(gap);
            t
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect()
}

fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test.local\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

// -------------------------------------------------------------- balancing

#[test]
fn round_robin_spreads_evenly_over_a_hundred_servers() {
    let backends: Vec<Backend> = (0..100).map(|i| Backend::start(&i.to_string())).collect();
    let servers: Vec<String> = backends.iter().map(Backend::entry).collect();
    let toml = config(&servers, r#"balance = "round_robin""#);

    // One worker: one rotation, 10 each exactly.
    let proxy = one_worker(&toml);
    let mut c = proxy.connect();
    let mut by = Vec::new();
    for i in 0..1000 {
        let r = c.request(&get(&format!("/{i}")));
        assert_eq!(r.status, 200, "request {i}");
        by.push(served_by(&r));
    }
    let counts = tally(by);
    for b in &backends {
        assert_eq!(
            counts.get(&b.tag),
            Some(&10),
            "server {}: {counts:?}",
            b.tag
        );
        assert_eq!(b.traffic().len(), 10, "server {} saw", b.tag);
    }
    proxy.shutdown();

    // Two workers, each rotating on its own: still close to even.
    let proxy = Proxy::start_with(&toml, 2, IoMode::Auto);
    let mut by = Vec::new();
    for conn in 0..20 {
        let mut c = proxy.connect();
        for i in 0..50 {
            let r = c.request(&get(&format!("/{conn}/{i}")));
            assert_eq!(r.status, 200);
            by.push(served_by(&r));
        }
    }
    let counts = tally(by);
    assert_eq!(counts.values().sum::<usize>(), 1000);
    for b in &backends {
        let n = counts.get(&b.tag).copied().unwrap_or(0);
        assert!(
            (5..=15).contains(&n),
            "server {} got {n}: {counts:?}",
            b.tag
        );
        assert_eq!(b.traffic().len(), 10 + n);
    }
}

#[test]
fn least_conn_avoids_the_server_with_requests_in_flight() {
    let slow = Backend::start("A");
    slow.k.delay_ms.store(500, Ordering::Release);
    let fast = Backend::start("B");
    let toml = config(&[slow.entry(), fast.entry()], r#"balance = "least_conn""#);
    let proxy = one_worker(&toml);
    // 12 requests over 300 ms: A holds each of its answers for 500 ms.
    let results = staggered(proxy.addr, 12, Duration::from_millis(25));
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    let counts = tally(results.into_iter().map(|(_, by)| by));
    let (a, b) = (counts.get("A").copied(), counts.get("B").copied());
    let (a, b) = (a.unwrap_or(0), b.unwrap_or(0));
    assert_eq!(a + b, 12);
    assert!(b > a && a <= 2, "least_conn: A {a}, B {b}");
}

#[test]
fn p2c_prefers_the_less_loaded_server() {
    let slow = Backend::start("A");
    slow.k.delay_ms.store(500, Ordering::Release);
    let fast = Backend::start("B");
    let toml = config(&[slow.entry(), fast.entry()], r#"balance = "p2c""#);
    let proxy = one_worker(&toml);
    let results = staggered(proxy.addr, 120, Duration::from_millis(4));
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    let counts = tally(results.into_iter().map(|(_, by)| by));
    let b = counts.get("B").copied().unwrap_or(0);
    assert!(b >= 72, "p2c: B served {b} of 120: {counts:?}");
}

#[test]
fn p2c_with_ewma_prefers_the_faster_server() {
    // Sequential requests: nothing is ever in flight, only latency differs
    // (by 50 ms, well above scheduling noise on a loaded machine).
    let slow = Backend::start("A");
    slow.k.delay_ms.store(50, Ordering::Release);
    let fast = Backend::start("B");
    let toml = config(
        &[slow.entry(), fast.entry()],
        "balance = \"p2c\"\newma = true",
    );
    let proxy = one_worker(&toml);
    let mut c = proxy.connect();
    let mut by = Vec::new();
    for i in 0..150 {
        let r = c.request(&get(&format!("/{i}")));
        assert_eq!(r.status, 200);
        by.push(served_by(&r));
    }
    let counts = tally(by);
    let b = counts.get("B").copied().unwrap_or(0);
    assert!(b >= 90, "p2c+ewma: B served {b} of 150: {counts:?}");
}

#[test]
fn random_spreads_roughly_evenly() {
    let backends: Vec<Backend> = (0..4).map(|i| Backend::start(&format!("r{i}"))).collect();
    let servers: Vec<String> = backends.iter().map(Backend::entry).collect();
    let proxy = one_worker(&config(&servers, r#"balance = "random""#));
    let mut c = proxy.connect();
    let mut by = Vec::new();
    for i in 0..400 {
        let r = c.request(&get(&format!("/{i}")));
        assert_eq!(r.status, 200);
        by.push(served_by(&r));
    }
    let counts = tally(by);
    for b in &backends {
        let n = counts.get(&b.tag).copied().unwrap_or(0);
        assert!(
            (50..=150).contains(&n),
            "random: {} got {n}: {counts:?}",
            b.tag
        );
    }
}

// ---------------------------------------------------------------- hashing

fn user_get(user: usize, round: usize) -> Vec<u8> {
    format!("GET /u/{round} HTTP/1.1\r\nHost: test.local\r\nX-User: user-{user}\r\n\r\n")
        .into_bytes()
}

/// Sends one request per key (spread over 4 connections) and returns the
/// server of each key.
fn serve_keys(addr: SocketAddr, keys: usize, request: impl Fn(usize) -> Vec<u8>) -> Vec<String> {
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(addr)).collect();
    (0..keys)
        .map(|k| {
            let r = clients[k % 4].request(&request(k));
            assert_eq!(r.status, 200, "key {k}");
            served_by(&r)
        })
        .collect()
}

#[test]
fn header_hash_sticks_spreads_and_survives_removing_a_server() {
    let backends: Vec<Backend> = (0..10).map(|i| Backend::start(&format!("h{i}"))).collect();
    let servers: Vec<String> = backends.iter().map(Backend::entry).collect();
    let extra = r#"balance = "hash"
hash = { key = "header:X-User" }"#;
    // Two workers: the mapping is the same on both.
    let proxy = Proxy::start(&config(&servers, extra));
    let first = serve_keys(proxy.addr, 200, |k| user_get(k, 0));
    for round in 1..3 {
        let again = serve_keys(proxy.addr, 200, |k| user_get(k, round));
        let moved: Vec<usize> = (0..200).filter(|&k| again[k] != first[k]).collect();
        assert!(
            moved.is_empty(),
            "round {round}: keys changed server: {moved:?}"
        );
    }
    let counts = tally(first.iter().cloned());
    assert!(
        counts.len() >= 8,
        "200 keys on only {} servers: {counts:?}",
        counts.len()
    );

    // Remove the server with the most keys.
    let (removed, _) = counts.iter().max_by_key(|(_, n)| **n).unwrap();
    let removed = removed.clone();
    let kept: Vec<String> = backends
        .iter()
        .filter(|b| b.tag != removed)
        .map(Backend::entry)
        .collect();
    proxy.reload(&config(&kept, extra));
    let after = serve_keys(proxy.addr, 200, |k| user_get(k, 9));
    assert!(
        after.iter().all(|s| *s != removed),
        "a key still went to the removed server {removed}"
    );
    let stayed_keys: Vec<usize> = (0..200).filter(|&k| first[k] != removed).collect();
    let stayed = stayed_keys
        .iter()
        .filter(|&&k| after[k] == first[k])
        .count();
    assert!(
        stayed * 10 >= stayed_keys.len() * 9,
        "only {stayed} of {} keys off the removed server kept their server",
        stayed_keys.len()
    );
    // And the new mapping is sticky too.
    let again = serve_keys(proxy.addr, 200, |k| user_get(k, 10));
    assert_eq!(again, after);
}

#[test]
fn cookie_hash_sticks_to_the_named_cookie() {
    let backends: Vec<Backend> = (0..4).map(|i| Backend::start(&format!("c{i}"))).collect();
    let servers: Vec<String> = backends.iter().map(Backend::entry).collect();
    // `hash` alone implies balance = "hash".
    let proxy = Proxy::start(&config(&servers, r#"hash = { key = "cookie:session" }"#));
    let request = |k: usize, round: usize| {
        // Other cookies change every round; only `session` counts.
        format!(
            "GET /c HTTP/1.1\r\nHost: test.local\r\nCookie: theme=t{round}; session=s{k}; x={round}\r\n\r\n"
        )
        .into_bytes()
    };
    let first = serve_keys(proxy.addr, 40, |k| request(k, 0));
    for round in 1..3 {
        assert_eq!(serve_keys(proxy.addr, 40, |k| request(k, round)), first);
    }
    let counts = tally(first);
    assert!(
        counts.len() >= 2,
        "40 sessions all on one server: {counts:?}"
    );
}

#[test]
fn path_hash_sticks_per_path() {
    let backends: Vec<Backend> = (0..4).map(|i| Backend::start(&format!("p{i}"))).collect();
    let servers: Vec<String> = backends.iter().map(Backend::entry).collect();
    let extra = "balance = \"hash\"\nhash = { key = \"path\" }";
    let proxy = Proxy::start(&config(&servers, extra));
    let first = serve_keys(proxy.addr, 40, |k| get(&format!("/item/{k}")));
    assert_eq!(
        serve_keys(proxy.addr, 40, |k| get(&format!("/item/{k}"))),
        first
    );
    assert!(tally(first).len() >= 2);
}

#[test]
fn client_ip_hash_sends_one_client_to_one_server() {
    let backends: Vec<Backend> = (0..4).map(|i| Backend::start(&format!("i{i}"))).collect();
    let servers: Vec<String> = backends.iter().map(Backend::entry).collect();
    let extra = "balance = \"hash\"\nhash = { key = \"client_ip\" }";
    let proxy = Proxy::start(&config(&servers, extra));
    let mut by = HashSet::new();
    for i in 0..30 {
        // Fresh connections, so both workers take some.
        let r = fetch(proxy.addr, &get(&format!("/ip/{i}")));
        assert_eq!(r.status, 200);
        by.insert(served_by(&r));
    }
    assert_eq!(by.len(), 1, "127.0.0.1 went to {by:?}");
}

// ---------------------------------------------------------------- backups

#[test]
fn backup_serves_only_while_the_primary_refuses() {
    let backup = Backend::start("backup");
    let servers = [
        format!("\"{}\"", dead_addr()),
        format!(r#"{{ addr = "{}", backup = true }}"#, backup.up.addr),
    ];
    let proxy = one_worker(&config(&servers, ""));
    let mut c = proxy.connect();
    for i in 0..10 {
        let r = c.request(&get(&format!("/{i}")));
        assert_eq!((r.status, served_by(&r)), (200, "backup".into()));
    }
    let r = c.request(&post("/p", "hi"));
    assert_eq!((r.status, served_by(&r)), (200, "backup".into()));
    drop(c);
    proxy.shutdown();

    // With the primary answering, the backup gets nothing.
    let primary = Backend::start("primary");
    let backup = Backend::start("backup");
    let servers = [
        primary.entry(),
        format!(r#"{{ addr = "{}", backup = true }}"#, backup.up.addr),
    ];
    let proxy = Proxy::start(&config(&servers, ""));
    for i in 0..20 {
        let r = fetch(proxy.addr, &get(&format!("/{i}")));
        assert_eq!((r.status, served_by(&r)), (200, "primary".into()));
    }
    assert_eq!(backup.traffic().len(), 0);
    assert_eq!(backup.accepts(), 0);
}

#[test]
fn backup_takes_over_while_the_primary_is_health_checked_down() {
    let primary = Backend::start("primary");
    let backup = Backend::start("backup");
    let servers = [
        primary.entry(),
        format!(r#"{{ addr = "{}", backup = true }}"#, backup.up.addr),
    ];
    let proxy = Proxy::start(&config(&servers, FAST_HEALTH));
    let run = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                let r = fetch(proxy.addr, &get(&format!("/{i}")));
                assert_eq!(r.status, 200);
                served_by(&r)
            })
            .collect()
    };
    assert!(run(10).iter().all(|s| s == "primary"));
    assert_eq!(backup.traffic().len(), 0);

    let failed = primary.probes_failed();
    primary.set_healthy(false);
    primary.wait_down(failed);
    assert!(run(10).iter().all(|s| s == "backup"));
    let backup_share = backup.traffic().len();
    assert_eq!(backup_share, 10);

    let ok = primary.probes_ok();
    primary.set_healthy(true);
    primary.wait_up(ok);
    assert!(run(10).iter().all(|s| s == "primary"));
    assert_eq!(backup.traffic().len(), backup_share, "backup got traffic");
}

// -------------------------------------------------------------- max_conns

#[test]
fn max_conns_on_the_only_server_answers_503_at_once() {
    let only = Backend::start("only");
    let servers = [format!(r#"{{ addr = "{}", max_conns = 1 }}"#, only.up.addr)];
    let proxy = Proxy::start(&config(&servers, ""));
    let addr = proxy.addr;
    let held = thread::spawn(move || fetch(addr, &get("/hold")));
    wait_until("the held request upstream", SLOW, || {
        only.traffic().len() == 1
    });

    let started = Instant::now();
    let r = fetch(addr, &get("/second"));
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.raw_head);
    assert!(took < Duration::from_millis(500), "503 took {took:?}");
    assert_eq!(
        only.traffic().len(),
        1,
        "the second request reached the server"
    );

    let r = held.join().unwrap();
    assert_eq!((r.status, served_by(&r)), (200, "only".into()));
    thread::sleep(Duration::from_millis(50));
    // The slot is free again.
    let r = fetch(addr, &get("/third"));
    assert_eq!((r.status, served_by(&r)), (200, "only".into()));
}

#[test]
fn max_conns_sends_the_overflow_to_another_server() {
    let limited = Backend::start("limited");
    let other = Backend::start("other");
    // Weight 5: round-robin would send most requests to `limited`.
    let servers = [
        format!(
            r#"{{ addr = "{}", weight = 5, max_conns = 1 }}"#,
            limited.up.addr
        ),
        other.entry(),
    ];
    let proxy = one_worker(&config(&servers, ""));
    let addr = proxy.addr;
    let held = thread::spawn(move || fetch(addr, &get("/hold")));
    wait_until("the held request upstream", SLOW, || {
        limited.traffic().len() == 1
    });
    for i in 0..4 {
        let started = Instant::now();
        let r = fetch(addr, &get(&format!("/{i}")));
        assert_eq!((r.status, served_by(&r)), (200, "other".into()));
        assert!(started.elapsed() < Duration::from_millis(500));
    }
    let r = held.join().unwrap();
    assert_eq!((r.status, served_by(&r)), (200, "limited".into()));
    thread::sleep(Duration::from_millis(50));
    let after: Vec<String> = (0..6)
        .map(|i| served_by(&fetch(addr, &get(&format!("/after{i}")))))
        .collect();
    let to_limited = after.iter().filter(|s| *s == "limited").count();
    assert!(to_limited >= 4, "limited is free again: {after:?}");
}

// ----------------------------------------------------------- health checks

#[test]
fn failing_health_checks_take_a_server_out_and_passing_ones_bring_it_back() {
    let sick = Backend::start("sick");
    sick.set_healthy(false);
    let b = Backend::start("b");
    let c = Backend::start("c");
    let extra = r#"health_check = { path = "/healthz", interval = "100ms", timeout = "1s", healthy = 2, unhealthy = 2, host = "probe.local" }"#;
    let proxy = one_worker(&config(&[sick.entry(), b.entry(), c.entry()], extra));
    // Down after the second failed probe (~100 ms); the third one shows
    // it was counted.
    let took = sick.wait_down(0);
    assert!(
        took < Duration::from_millis(1500),
        "marked down after {took:?}"
    );
    let traffic_before = sick.traffic().len();

    let mut client = proxy.connect();
    let run = |client: &mut Client, n: usize| {
        let mut by = Vec::new();
        for i in 0..n {
            let r = client.request(&get(&format!("/{i}")));
            assert_eq!(r.status, 200);
            by.push(served_by(&r));
        }
        tally(by)
    };
    let counts = run(&mut client, 30);
    assert_eq!(counts.get("sick"), None, "{counts:?}");
    assert_eq!(sick.traffic().len(), traffic_before);
    assert_eq!((counts.get("b"), counts.get("c")), (Some(&15), Some(&15)));

    let ok = sick.probes_ok();
    sick.set_healthy(true);
    sick.wait_up(ok);
    let counts = run(&mut client, 30);
    let n = counts.get("sick").copied().unwrap_or(0);
    assert!((8..=12).contains(&n), "back up, sick got {n}: {counts:?}");

    // The probes as the server saw them.
    let probes = sick.probes();
    assert!(probes.len() >= 6, "{} probes", probes.len());
    for p in &probes {
        assert_eq!(
            (p.method.as_str(), p.target.as_str(), p.version.as_str()),
            ("GET", "/healthz", "HTTP/1.1")
        );
        assert_eq!(p.header("host"), Some("probe.local"), "{}", p.raw_head);
        assert_eq!(
            p.header("user-agent"),
            Some("ringress-health-check"),
            "{}",
            p.raw_head
        );
        assert_eq!(p.header("connection"), Some("close"), "{}", p.raw_head);
        assert!(p.body.is_empty());
    }
}

#[test]
fn every_server_down_answers_503_without_connecting() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    a.set_healthy(false);
    b.set_healthy(false);
    let proxy = Proxy::start(&config(&[a.entry(), b.entry()], FAST_HEALTH));
    a.wait_down(0);
    b.wait_down(0);
    for i in 0..10 {
        let started = Instant::now();
        let r = fetch(proxy.addr, &get(&format!("/{i}")));
        let took = started.elapsed();
        assert_eq!(r.status, 503, "{}", r.raw_head);
        assert!(took < Duration::from_millis(200), "503 took {took:?}");
    }
    thread::sleep(Duration::from_millis(100));
    for s in [&a, &b] {
        assert_eq!(s.traffic().len(), 0, "{} saw traffic", s.tag);
        assert_eq!(
            s.k.other_conns.load(Ordering::Acquire),
            0,
            "{} got a non-probe connection",
            s.tag
        );
    }
    // Without `host`, the probe names the server's host.
    let p = a.probes().pop().unwrap();
    let host = p.header("host").unwrap_or("");
    assert!(
        host == "127.0.0.1" || host == a.up.addr.to_string(),
        "{}",
        p.raw_head
    );
}

// ------------------------------------------------------- outlier ejection

#[test]
fn failing_server_is_ejected_with_doubling_back_off_and_probed_back() {
    let flaky = Backend::broken("flaky");
    let good = Backend::start("good");
    let extra = r#"outlier = { failures = 2, base_ejection = "500ms" }"#;
    let proxy = one_worker(&config(&[flaky.entry(), good.entry()], extra));
    let mut c = proxy.connect();
    // (time, accepts of `flaky`) after each request.
    let mut timeline: Vec<(Instant, usize)> = Vec::new();
    let start = Instant::now();
    let mut healed_at: Option<usize> = None;
    let mut i = 0;
    loop {
        let r = c.request(&get(&format!("/{i}")));
        i += 1;
        assert_eq!(r.status, 200, "request {i}: every GET is retried on `good`");
        let accepts = flaky.accepts();
        timeline.push((Instant::now(), accepts));
        // After the failed probe (the third connection), `flaky` heals;
        // the next probe (fourth connection) succeeds.
        if accepts >= 3 && healed_at.is_none() {
            flaky.k.broken.store(false, Ordering::Release);
            healed_at = Some(timeline.len());
        }
        if flaky.traffic().len() >= 4 + 5 || start.elapsed() > Duration::from_secs(5) {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let reached = |n: usize| {
        timeline
            .iter()
            .find(|(_, a)| *a >= n)
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("flaky never got connection {n}: {:?}", counts(&timeline)))
    };
    let ejected = reached(2);
    let probe = reached(3);
    let healed = reached(4);
    let first_gap = probe - ejected;
    let second_gap = healed - probe;
    assert!(
        first_gap >= Duration::from_millis(400) && first_gap < Duration::from_millis(1000),
        "first ejection lasted {first_gap:?} (base 500ms)"
    );
    assert!(
        second_gap >= Duration::from_millis(850) && second_gap < Duration::from_millis(1600),
        "second ejection lasted {second_gap:?} (doubled: 1s)"
    );
    // Back in the rotation after the successful probe.
    let served = flaky.traffic().len();
    assert!(
        served >= 9,
        "flaky served {served} requests (4 failed) after coming back"
    );
}

fn counts(timeline: &[(Instant, usize)]) -> Vec<usize> {
    timeline.iter().map(|(_, a)| *a).collect()
}

#[test]
fn every_server_ejected_answers_503_at_once() {
    let a = Backend::broken("a");
    let b = Backend::broken("b");
    let extra = r#"outlier = { failures = 1, base_ejection = "5s", max_ejected_percent = 100 }"#;
    let proxy = one_worker(&config(&[a.entry(), b.entry()], extra));
    let r = fetch(proxy.addr, &get("/first"));
    assert_eq!(r.status, 502, "{}", r.raw_head);
    assert_eq!((a.accepts(), b.accepts()), (1, 1));
    for i in 0..5 {
        let started = Instant::now();
        let r = fetch(proxy.addr, &get(&format!("/{i}")));
        assert_eq!(r.status, 503, "{}", r.raw_head);
        assert!(started.elapsed() < Duration::from_millis(200));
    }
    assert_eq!(
        (a.accepts(), b.accepts()),
        (1, 1),
        "an ejected server was tried"
    );
}

#[test]
fn on_5xx_makes_error_statuses_eject() {
    let bad = Backend::with_status("bad", 500);
    let good = Backend::start("good");
    let extra = r#"outlier = { failures = 2, base_ejection = "10s", on_5xx = true }"#;
    let proxy = one_worker(&config(&[bad.entry(), good.entry()], extra));
    let mut c = proxy.connect();
    let statuses: Vec<u16> = (0..20)
        .map(|i| c.request(&get(&format!("/{i}"))).status)
        .collect();
    // Two 500s (passed on: no retry_on), then `bad` is out.
    assert_eq!(
        statuses.iter().filter(|s| **s == 500).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(bad.traffic().len(), 2);
    assert_eq!(good.traffic().len(), 18);
}

#[test]
fn error_statuses_do_not_eject_without_on_5xx() {
    // With on_5xx = false a 5xx answer is not a failure for outlier
    // detection, whether passed on or retried (retry_on).
    let bad = Backend::with_status("bad", 503);
    let good = Backend::start("good");
    let servers = [bad.entry(), good.entry()];
    let outlier = "outlier = { failures = 2, base_ejection = \"10s\", on_5xx = false }";

    // Passed on: every request meeting `bad` gets its 503.
    let proxy = one_worker(&config(&servers, outlier));
    let mut c = proxy.connect();
    let n503 = (0..20)
        .filter(|i| c.request(&get(&format!("/{i}"))).status == 503)
        .count();
    assert_eq!(bad.traffic().len(), n503);
    assert!(n503 >= 8, "{n503} of 20 went to `bad`: ejected?");
    drop(c);
    proxy.shutdown();

    // Retried on `good`: `bad` must stay in the rotation all the same.
    let before = bad.traffic().len();
    let extra = format!("retry_on = [503]\nretry_budget = 1.0\n{outlier}");
    let proxy = one_worker(&config(&servers, &extra));
    let mut c = proxy.connect();
    for i in 0..20 {
        let r = c.request(&get(&format!("/{i}")));
        assert_eq!(
            (r.status, served_by(&r)),
            (200, "good".into()),
            "request {i}"
        );
    }
    let tried = bad.traffic().len() - before;
    assert!(
        tried >= 8,
        "`bad` got {tried} of 20 requests: ejected for retried 503s though on_5xx = false"
    );
}

// ---------------------------------------------------------------- retries

#[test]
fn idempotent_requests_are_retried_elsewhere_and_posts_are_not() {
    let dropper = Backend::broken("dropper");
    let good = Backend::start("good");
    let proxy = one_worker(&config(&[dropper.entry(), good.entry()], "outlier = false"));
    let mut c = proxy.connect();
    for i in 0..10 {
        let r = c.request(&get(&format!("/{i}")));
        assert_eq!((r.status, served_by(&r)), (200, "good".into()), "GET {i}");
    }
    assert!(
        dropper.accepts() >= 3,
        "dropper tried {} times",
        dropper.accepts()
    );
    drop(c);

    let mut to_dropper = 0;
    for i in 0..6 {
        let before = dropper.accepts();
        let body = format!("p{i}");
        let r = fetch(proxy.addr, &post("/p", &body));
        let good_saw = good.traffic().iter().any(|q| q.body == body.as_bytes());
        if dropper.accepts() > before {
            to_dropper += 1;
            assert_eq!(r.status, 502, "POST {i} failed on dropper: {}", r.raw_head);
            assert!(!good_saw, "POST {i} was retried on good");
        } else {
            assert_eq!((r.status, served_by(&r)), (200, "good".into()));
            assert!(good_saw);
        }
    }
    assert!(to_dropper > 0, "no POST was sent to dropper");
}

#[test]
fn retry_on_statuses_is_opt_in() {
    let unavailable = Backend::with_status("u", 503);
    let good = Backend::start("good");
    let servers = [unavailable.entry(), good.entry()];
    let proxy = one_worker(&config(&servers, "retry_on = [503]\noutlier = false"));
    let mut c = proxy.connect();
    for i in 0..10 {
        let r = c.request(&get(&format!("/{i}")));
        assert_eq!((r.status, served_by(&r)), (200, "good".into()), "GET {i}");
    }
    assert!(unavailable.traffic().len() >= 3);
    // A POST with a body is not retried: its 503 comes back.
    for i in 0..4 {
        let before = unavailable.traffic().len();
        let r = c.request(&post("/p", &format!("b{i}")));
        if unavailable.traffic().len() > before {
            assert_eq!((r.status, served_by(&r)), (503, "u".into()));
        } else {
            assert_eq!(r.status, 200);
        }
    }
    drop(c);
    proxy.shutdown();

    // Without retry_on the 503 reaches the client.
    let before = unavailable.traffic().len();
    let proxy = one_worker(&config(&servers, "outlier = false"));
    let mut c = proxy.connect();
    let mut n503 = 0;
    for i in 0..10 {
        let r = c.request(&get(&format!("/{i}")));
        if r.status == 503 {
            n503 += 1;
            assert_eq!(served_by(&r), "u");
        } else {
            assert_eq!((r.status, served_by(&r)), (200, "good".into()));
        }
    }
    assert!(n503 >= 3, "{n503} 503s");
    assert_eq!(unavailable.traffic().len() - before, n503);
}

#[test]
fn retries_zero_means_one_attempt() {
    let dropper = Backend::broken("dropper");
    let good = Backend::start("good");
    let extra = "retries = 0\noutlier = false";
    let proxy = one_worker(&config(&[dropper.entry(), good.entry()], extra));
    let mut n502 = 0;
    for i in 0..6 {
        let r = fetch(proxy.addr, &get(&format!("/{i}")));
        match r.status {
            502 => n502 += 1,
            s => assert_eq!((s, served_by(&r)), (200, "good".into())),
        }
    }
    assert!(n502 > 0);
    assert_eq!(dropper.accepts(), n502, "each failure was one attempt");
    assert_eq!(good.traffic().len(), 6 - n502);
}

#[test]
fn each_retry_goes_to_a_different_server() {
    let droppers: Vec<Backend> = (0..3).map(|i| Backend::broken(&format!("d{i}"))).collect();
    let good = Backend::start("good");
    let mut servers: Vec<String> = droppers.iter().map(Backend::entry).collect();
    servers.push(good.entry());
    let accepts = |d: &[Backend]| d.iter().map(Backend::accepts).collect::<Vec<_>>();

    // retries = 3: one dropper after another, then `good`.
    let extra = "retries = 3\nretry_budget = 1.0\noutlier = false";
    let proxy = one_worker(&config(&servers, extra));
    for i in 0..5 {
        let before = accepts(&droppers);
        let r = fetch(proxy.addr, &get(&format!("/{i}")));
        assert_eq!((r.status, served_by(&r)), (200, "good".into()), "GET {i}");
        let after = accepts(&droppers);
        for (b, a) in before.iter().zip(&after) {
            assert!(
                a - b <= 1,
                "a server was tried twice: {before:?} -> {after:?}"
            );
        }
    }
    proxy.shutdown();

    // retries = 1: two attempts at most, so two droppers in a row fail.
    let extra = "retries = 1\nretry_budget = 1.0\noutlier = false";
    let proxy = one_worker(&config(&servers, extra));
    let mut n502 = 0;
    for i in 0..8 {
        let before: usize = accepts(&droppers).iter().sum();
        let r = fetch(proxy.addr, &get(&format!("/{i}")));
        let tried: usize = accepts(&droppers).iter().sum::<usize>() - before;
        if r.status == 502 {
            n502 += 1;
            assert_eq!(tried, 2, "GET {i}");
        } else {
            assert_eq!(served_by(&r), "good");
            assert!(tried <= 1, "GET {i}: {tried} droppers tried");
        }
    }
    assert!(n502 > 0, "no GET met two droppers in a row");
}

#[test]
fn retry_budget_limits_retries_after_the_burst() {
    let unavailable = Backend::with_status("u", 503);
    let good = Backend::start("good");
    let servers = [unavailable.entry(), good.entry()];
    let run = |budget: &str| {
        let extra = format!("retry_on = [503]\nretry_budget = {budget}\noutlier = false");
        let proxy = one_worker(&config(&servers, &extra));
        let (u0, g0) = (unavailable.traffic().len(), good.traffic().len());
        let mut c = proxy.connect();
        let statuses: Vec<u16> = (0..60)
            .map(|i| c.request(&get(&format!("/{i}"))).status)
            .collect();
        let n503 = statuses.iter().filter(|s| **s == 503).count();
        let n200 = statuses.iter().filter(|s| **s == 200).count();
        assert_eq!(n200 + n503, 60, "{statuses:?}");
        let at_u = unavailable.traffic().len() - u0;
        let at_good = good.traffic().len() - g0;
        assert_eq!(at_good, n200);
        // Requests that met `u` and still got a 200 were retried.
        (n503, at_u - n503)
    };
    // No budget: only the burst of 10 retries.
    let (n503, retried) = run("0.0");
    assert!(n503 > 0, "every 503 was retried");
    assert!(
        (1..=10).contains(&retried),
        "{retried} retries with retry_budget = 0 (burst 10)"
    );
    // A budget of one retry per request: all retried.
    let (n503, retried) = run("1.0");
    assert_eq!(n503, 0);
    assert!(retried >= 20, "{retried} retries");
}

// ----------------------------------------------------------- config errors

#[test]
fn bad_traffic_keys_name_their_path() {
    let server = r#""127.0.0.1:1""#.to_string();
    let cases: [(&str, &str, &str); 10] = [
        (r#"balance = "bogus""#, "", "upstreams.app.balance"),
        (r#"hash = { key = "nope" }"#, "", "upstreams.app.hash"),
        ("retry_budget = 2", "", "upstreams.app.retry_budget"),
        ("retry_on = [200]", "", "upstreams.app.retry_on"),
        (
            r#"health_check = { expect_status = "abc" }"#,
            "",
            "upstreams.app.health_check.expect_status",
        ),
        (
            "",
            r#"{ addr = "127.0.0.1:1", backup = true }"#,
            "upstreams.app.servers",
        ),
        ("ewma = true", "", "upstreams.app.ewma"),
        (r#"balance = "hash""#, "", "upstreams.app.hash"),
        (
            "outlier = { failures = 0 }",
            "",
            "upstreams.app.outlier.failures",
        ),
        ("retries = -1", "", "upstreams.app.retries"),
    ];
    for (extra, servers, path) in cases {
        let servers = if servers.is_empty() {
            vec![server.clone()]
        } else {
            vec![servers.to_string()]
        };
        let toml = config(&servers, extra);
        let err = ringress::Config::from_toml_str(&toml)
            .err()
            .unwrap_or_else(|| panic!("accepted: {extra} {servers:?}"))
            .to_string();
        assert!(err.contains(path), "`{extra}` {servers:?}: {err}");
    }
    // Every key of the feature at once is fine.
    let full = r#"balance = "p2c"
ewma = true
health_check = { path = "/healthz", interval = "2s", timeout = "1s", healthy = 2, unhealthy = 3, expect_status = "200-399", host = "optional.host" }
outlier = { failures = 5, base_ejection = "10s", max_ejection = "5m", on_5xx = false }
retries = 3
retry_on = [502, 503]
retry_budget = 0.2"#;
    let servers = [
        server.clone(),
        r#"{ addr = "127.0.0.1:2", weight = 2, backup = true, max_conns = 10 }"#.to_string(),
    ];
    ringress::Config::from_toml_str(&config(&servers, full))
        .unwrap_or_else(|e| panic!("full config rejected: {e}"));
    let hashed = "hash = { key = \"header:X-User\" }\noutlier = false";
    ringress::Config::from_toml_str(&config(&servers, hashed))
        .unwrap_or_else(|e| panic!("hash config rejected: {e}"));
}

/// By default at most half a group (and at least one server) is ejected at
/// once: failing requests cannot take a whole group out of service.
#[test]
fn ejection_is_capped_at_half_the_group() {
    let a = Backend::broken("a");
    let b = Backend::broken("b");
    let extra = r#"outlier = { failures = 1, base_ejection = "5s" }"#;
    let proxy = one_worker(&config(&[a.entry(), b.entry()], extra));
    for i in 0..4 {
        let r = fetch(proxy.addr, &get(&format!("/{i}")));
        assert_eq!(r.status, 502, "{}", r.raw_head);
    }
    // One server is ejected; the other is still tried on every request.
    let (na, nb) = (a.accepts(), b.accepts());
    assert!(
        na.min(nb) == 1 && na.max(nb) >= 4,
        "accepts: a {na}, b {nb}"
    );
}
