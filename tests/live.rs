//! Live changes to a running proxy: 50 reloads under load (servers, an
//! upstream group and its route, and a listener coming and going), listeners
//! added, re-addressed and removed by reloads, a reload refused because a
//! listener cannot be bound, the admin listener of the binary, and a
//! zero-downtime binary upgrade (a second process on the same port through
//! SO_REUSEPORT, then SIGTERM to the first).

mod common;

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use ringress::{Config, Reloader};

const BIN: &str = env!("CARGO_BIN_EXE_ringress");

// ---------------------------------------------------------------- helpers

/// A keep-alive echo upstream whose answers carry `tag`: an `X-Upstream`
/// header and a body "TAG METHOD TARGET\n" followed by the request body.
fn tagged(tag: &'static str) -> Upstream {
    Upstream::start(move |r, w, up| {
        while let Some(req) = up.record(r) {
            let mut body = format!("{tag} {} {}\n", req.method, req.target).into_bytes();
            body.extend_from_slice(&req.body);
            let mut resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Upstream: {tag}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            resp.extend_from_slice(&body);
            if w.write_all(&resp).is_err() {
                return;
            }
        }
    })
}

/// A keep-alive upstream that waits `delay` before answering each request
/// with "slow TARGET\n".
fn slow(delay: Duration) -> Upstream {
    Upstream::start(move |r, w, up| {
        while let Some(req) = up.record(r) {
            thread::sleep(delay);
            let body = format!("slow {}\n", req.target);
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if w.write_all(resp.as_bytes()).is_err() {
                return;
            }
        }
    })
}

/// Polls `cond` every 5 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A client connection that reports failures instead of panicking.
fn try_connect(addr: SocketAddr) -> Result<Client, String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let read_half = stream.try_clone().map_err(|e| e.to_string())?;
    Ok(Client {
        reader: BufReader::new(read_half),
        stream,
    })
}

fn try_request(c: &mut Client, raw: &[u8]) -> Result<Response, String> {
    c.stream.write_all(raw).map_err(|e| format!("write: {e}"))?;
    c.read_response_to(false)
        .ok_or_else(|| "no (complete) response".to_string())
}

/// True when the response says the connection ends after it.
fn says_close(r: &Response) -> bool {
    r.header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

/// One GET with `Connection: close` on a new connection: (status, body),
/// or what went wrong.
fn fetch(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    fetch_within(addr, path, Duration::from_secs(2))
}

/// [`fetch`] waiting at most `limit` for the answer.
fn fetch_within(addr: SocketAddr, path: &str, limit: Duration) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(limit)).map_err(|e| e.to_string())?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: live.test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read: {e} after {} bytes", raw.len()))?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let parsed = raw.split_once("\r\n\r\n").and_then(|(head, body)| {
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    });
    parsed.ok_or_else(|| format!("no (whole) answer: {raw:?}"))
}

/// Polls `fetch` every 25 ms until `want` holds for its answer, up to
/// `limit`; else the last answer or error, with how long it tried.
fn poll_fetch(
    addr: SocketAddr,
    path: &str,
    limit: Duration,
    want: impl Fn(&(u16, String)) -> bool,
) -> Result<(u16, String), String> {
    let start = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let got = fetch(addr, path);
        if got.as_ref().is_ok_and(&want) {
            return got;
        }
        if start.elapsed() >= limit {
            return Err(format!(
                "{attempts} attempts in {:?}, the last: {got:?}",
                start.elapsed()
            ));
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// True once a connect to `addr` is refused (nothing listens), polling
/// every 20 ms up to `limit`.
fn refused_within(addr: SocketAddr, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return true,
            _ => {}
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap().port()
}

/// How a connection we expect the proxy to close ended.
#[derive(Debug, PartialEq)]
enum End {
    /// Orderly close (FIN), with no bytes before it.
    Eof,
    /// Closed, but bytes came first (shown) or it was reset.
    Other(String),
    /// Still open after the limit.
    Open,
}

fn how_it_ends(stream: &mut TcpStream, limit: Duration) -> End {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) if got.is_empty() => return End::Eof,
            Ok(0) => return End::Other(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return End::Open;
            }
            Err(e) => return End::Other(format!("{e} after {got:?}")),
        }
    }
}

/// Sets the flag when dropped, so helper threads stop even when the test
/// panics half-way.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

// ------------------------------------------------- 50 reloads under load

/// Upstream addresses for the configs the load test cycles through.
struct LoadConfigs {
    servers: [SocketAddr; 3],
    group: SocketAddr,
    slow: SocketAddr,
}

impl LoadConfigs {
    /// `servers` (indexes into S1..S3) in group `backend` behind the
    /// catch-all route; `/slow` always to the slow upstream; with
    /// `group`, `/g/` to the group `grp` (upstream G); with `extra`, a
    /// second listener and a route only it serves.
    fn build(&self, servers: &[usize], group: bool, extra: bool) -> String {
        let list = servers
            .iter()
            .map(|&i| format!("\"{}\"", self.servers[i]))
            .collect::<Vec<_>>()
            .join(", ");
        let mut toml = String::from(
            r#"
[runtime]
drain_timeout = "2s"

[[listeners]]
name = "main"
bind = "127.0.0.1:0"
"#,
        );
        if extra {
            toml.push_str(
                r#"
[[listeners]]
name = "extra"
bind = "127.0.0.1:0"

[[routes]]
path_prefix = "/x-only"
listeners = ["extra"]
respond = { status = 200, body = "extra only\n" }
"#,
            );
        }
        if group {
            toml.push_str(
                r#"
[[routes]]
path_prefix = "/g/"
upstream = "grp"
"#,
            );
        }
        toml.push_str(&format!(
            r#"
[[routes]]
path_prefix = "/slow"
upstream = "slow"

[[routes]]
path_prefix = "/"
upstream = "backend"

[upstreams.backend]
servers = [{list}]
connect_timeout = "1s"
response_timeout = "2s"

[upstreams.slow]
servers = ["{slow}"]
connect_timeout = "1s"
response_timeout = "3s"
"#,
            slow = self.slow
        ));
        if group {
            toml.push_str(&format!(
                r#"
[upstreams.grp]
servers = ["{}"]
connect_timeout = "1s"
response_timeout = "2s"
"#,
                self.group
            ));
        }
        toml
    }

    /// The i-th config of the cycle: the server set changes with i % 5,
    /// the group and its route come and go every two reloads, the extra
    /// listener every reload.
    fn nth(&self, i: usize) -> String {
        const SETS: [&[usize]; 5] = [&[0], &[0, 1], &[1, 2], &[2], &[0, 1, 2]];
        self.build(SETS[i % 5], i % 4 >= 2, i % 2 == 1)
    }
}

/// What the load threads saw.
#[derive(Default)]
struct Load {
    keepalive_gets: AtomicUsize,
    fresh_gets: AtomicUsize,
    posts: AtomicUsize,
    group_gets: AtomicUsize,
    slow_ok: AtomicUsize,
    /// Slow requests during which the generation changed.
    slow_spanning: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Load {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }

    fn total(&self) -> usize {
        [
            &self.keepalive_gets,
            &self.fresh_gets,
            &self.posts,
            &self.group_gets,
            &self.slow_ok,
        ]
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .sum::<usize>()
            + self.failures.lock().unwrap().len()
    }
}

/// Checks an answer of a tagged echo upstream whose tag is one of `tags`.
fn expect_echo(
    r: &Response,
    method: &str,
    path: &str,
    body: &str,
    tags: &[&str],
) -> Result<(), String> {
    if r.status != 200 {
        return Err(format!(
            "{method} {path}: status {} ({})",
            r.status,
            r.body_str().trim()
        ));
    }
    let tag = r.header("x-upstream").unwrap_or("");
    if !tags.contains(&tag) {
        return Err(format!(
            "{method} {path}: from {tag:?}, not one of {tags:?}"
        ));
    }
    let want = format!("{tag} {method} {path}\n{body}");
    if r.body_str() != want {
        return Err(format!(
            "{method} {path}: body {:?}, want {want:?}",
            r.body_str()
        ));
    }
    Ok(())
}

/// One load thread: sequential requests on a keep-alive connection (GETs
/// to the catch-all route and to `/g/`, POSTs with a body), and every 8th
/// a GET on a connection of its own. Ends when `stop` is set (or after
/// 30 s at most).
fn load_thread(t: usize, addr: SocketAddr, stop: &AtomicBool, load: &Load) {
    let started = Instant::now();
    let mut conn: Option<Client> = None;
    let mut k = 0usize;
    while !stop.load(Ordering::Acquire) && started.elapsed() < Duration::from_secs(30) {
        k += 1;
        let (method, path, body, fresh, counter) = match k % 8 {
            0 => (
                "GET",
                format!("/t{t}/fresh/{k}"),
                String::new(),
                true,
                &load.fresh_gets,
            ),
            3 => (
                "POST",
                format!("/t{t}/post/{k}"),
                format!("payload {t} {k}\n"),
                false,
                &load.posts,
            ),
            5 | 6 => (
                "GET",
                format!("/g/t{t}/{k}"),
                String::new(),
                false,
                &load.group_gets,
            ),
            _ => (
                "GET",
                format!("/t{t}/ka/{k}"),
                String::new(),
                false,
                &load.keepalive_gets,
            ),
        };
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: live.test\r\n");
        if fresh {
            raw.push_str("Connection: close\r\n");
        }
        if !body.is_empty() {
            raw.push_str(&format!(
                "Content-Type: text/plain\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        raw.push_str("\r\n");
        raw.push_str(&body);

        let mut c = match if fresh { None } else { conn.take() } {
            Some(c) => c,
            None => match try_connect(addr) {
                Ok(c) => c,
                Err(e) => {
                    load.fail(format!("{method} {path}: {e}"));
                    continue;
                }
            },
        };
        let tags: &[&str] = if path.starts_with("/g/") {
            // G while the `/g/` route exists, else the catch-all route.
            &["S1", "S2", "S3", "G"]
        } else {
            &["S1", "S2", "S3"]
        };
        match try_request(&mut c, raw.as_bytes())
            .map_err(|e| format!("{method} {path}: {e}"))
            .and_then(|r| expect_echo(&r, method, &path, &body, tags).map(|()| r))
        {
            Ok(r) => {
                counter.fetch_add(1, Ordering::Relaxed);
                if !fresh && !says_close(&r) {
                    conn = Some(c);
                }
            }
            Err(e) => load.fail(e),
        }
    }
}

/// Sequential 300 ms requests to `/slow/N` on a keep-alive connection,
/// counting those a reload happened during.
fn slow_thread(addr: SocketAddr, reloader: &Reloader, stop: &AtomicBool, load: &Load) {
    let started = Instant::now();
    let mut conn: Option<Client> = None;
    let mut k = 0;
    while !stop.load(Ordering::Acquire) && started.elapsed() < Duration::from_secs(30) {
        k += 1;
        let path = format!("/slow/{k}");
        let mut c = match conn.take().map_or_else(|| try_connect(addr), Ok) {
            Ok(c) => c,
            Err(e) => {
                load.fail(format!("GET {path}: {e}"));
                continue;
            }
        };
        let before = reloader.generation();
        match try_request(&mut c, &get(&path)) {
            Ok(r) if r.status == 200 && r.body_str() == format!("slow {path}\n") => {
                load.slow_ok.fetch_add(1, Ordering::Relaxed);
                if reloader.generation() > before {
                    load.slow_spanning.fetch_add(1, Ordering::Relaxed);
                }
                if !says_close(&r) {
                    conn = Some(c);
                }
            }
            Ok(r) => load.fail(format!(
                "GET {path}: {} {:?}",
                r.status,
                r.body_str().trim()
            )),
            Err(e) => load.fail(format!("GET {path}: {e}")),
        }
    }
}

#[test]
fn reload_50_times_under_load_fails_nothing() {
    let servers = [tagged("S1"), tagged("S2"), tagged("S3")];
    let grp = tagged("G");
    let slow_up = slow(Duration::from_millis(300));
    let configs = LoadConfigs {
        servers: servers.each_ref().map(|u| u.addr),
        group: grp.addr,
        slow: slow_up.addr,
    };
    let proxy = Proxy::start(&configs.nth(0));
    assert_eq!(proxy.handle().worker_count(), 2);
    let addr = proxy.addr;
    let gen0 = proxy.handle().generation();

    // Opened before the first reload, used again after the last one.
    let mut long = proxy.connect();
    let r = long.request(&get("/long/0"));
    expect_echo(&r, "GET", "/long/0", "", &["S1"]).unwrap();

    // Reload 1 happens while a slow request is in flight.
    let mut in_flight = proxy.connect();
    let sent = Instant::now();
    in_flight.send(&get("/slow/first"));
    assert!(
        wait_until(Duration::from_secs(2), || slow_up.requests().len() == 1),
        "the slow upstream never got the request"
    );
    assert_eq!(proxy.reload(&configs.nth(1)), gen0 + 1);
    assert!(
        sent.elapsed() < Duration::from_millis(250),
        "the reload must happen while the request is in flight"
    );
    let r = in_flight.read_response();
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "slow /slow/first\n"),
        "a request in flight across a reload"
    );

    // Reloads 2..=50 under load.
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load::default());
    let mut threads = Vec::new();
    for t in 0..4 {
        let (stop, load) = (stop.clone(), load.clone());
        threads.push(thread::spawn(move || load_thread(t, addr, &stop, &load)));
    }
    {
        let (stop, load) = (stop.clone(), load.clone());
        let reloader = proxy.handle().reloader();
        threads.push(thread::spawn(move || {
            slow_thread(addr, &reloader, &stop, &load)
        }));
    }
    let stopper = StopOnDrop(stop.clone());
    thread::sleep(Duration::from_millis(100));
    let reload_started = Instant::now();
    for i in 2..=50usize {
        let generation = proxy.reload(&configs.nth(i));
        assert_eq!(generation, gen0 + i as u64, "reload {i}");
        // 20..69 ms apart: sometimes two reloads fall within one worker
        // tick (50 ms), sometimes not.
        thread::sleep(Duration::from_millis(20 + (i as u64 * 37) % 50));
    }
    let reload_time = reload_started.elapsed();
    thread::sleep(Duration::from_millis(100));
    drop(stopper);
    for t in threads {
        t.join().expect("load thread");
    }

    let failures = load.failures.lock().unwrap().clone();
    let total = load.total();
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed during 50 reloads; first ones: {:#?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
    let counts = [
        ("keep-alive GETs", &load.keepalive_gets),
        ("new-connection GETs", &load.fresh_gets),
        ("POSTs", &load.posts),
        ("GETs to /g/", &load.group_gets),
        ("slow GETs", &load.slow_ok),
    ]
    .map(|(what, n)| (what, n.load(Ordering::Relaxed)));
    eprintln!("50 reloads in {reload_time:?} under load: {counts:?}");
    for (what, n) in counts {
        assert!(n >= 3, "too few {what} during the reloads: {counts:?}");
    }
    assert!(total >= 200, "too little load to mean much: {counts:?}");
    // Only the last one may have started after the last reload.
    let (spanning, slow_ok) = (
        load.slow_spanning.load(Ordering::Relaxed),
        load.slow_ok.load(Ordering::Relaxed),
    );
    assert!(
        spanning + 1 >= slow_ok,
        "only {spanning} of {slow_ok} slow requests had a reload happen during them"
    );

    // Settle on a known config: the extra listener removed, then (after
    // every worker has seen that) added again; only S3 in `backend`.
    proxy.reload(&configs.build(&[2], true, false));
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        proxy.reload(&configs.build(&[2], true, true)),
        gen0 + 52,
        "each reload bumps the generation"
    );

    let r = long.request(&get("/long/1"));
    expect_echo(&r, "GET", "/long/1", "", &["S3"])
        .expect("the connection opened before the 52 reloads, after them");
    for n in 0..10 {
        let path = format!("/after/{n}");
        let r = try_connect(addr)
            .and_then(|mut c| try_request(&mut c, &get(&path)))
            .unwrap();
        expect_echo(&r, "GET", &path, "", &["S3"]).expect("only S3 is left in the group");
    }
    let r = long.request(&get("/g/final"));
    expect_echo(&r, "GET", "/g/final", "", &["G"]).expect("the /g/ route is back");

    let extra = proxy.handle().listener_addr("extra").expect("extra bound");
    assert_eq!(
        poll_fetch(extra, "/x-only", Duration::from_secs(1), |_| true),
        Ok((200, "extra only\n".to_string())),
        "the extra listener serves its own route"
    );
    assert_eq!(
        fetch(addr, "/x-only"),
        Ok((200, "S3 GET /x-only\n".to_string())),
        "the main listener does not serve the extra listener's route"
    );

    for (up, name) in servers.iter().zip(["S1", "S2", "S3"]) {
        assert!(!up.requests().is_empty(), "{name} never got a request");
    }
    assert!(
        !grp.requests().is_empty(),
        "the group G never got a request"
    );
}

// --------------------------------------------------- listeners on reload

/// A main listener and, with `extra_bind`, a listener "extra" there with a
/// route only it serves (`body` is that route's answer); everything else
/// goes to `up`.
fn extra_config(up: SocketAddr, extra_bind: Option<&str>, body: &str) -> String {
    let mut toml = String::from(
        r#"
[runtime]
drain_timeout = "2s"

[[listeners]]
name = "main"
bind = "127.0.0.1:0"
"#,
    );
    if let Some(bind) = extra_bind {
        toml.push_str(&format!(
            r#"
[[listeners]]
name = "extra"
bind = "{bind}"

[[routes]]
path_prefix = "/only-extra"
listeners = ["extra"]
respond = {{ status = 200, body = "{body}" }}
"#
        ));
    }
    toml.push_str(&format!(
        r#"
[[routes]]
path_prefix = "/fixed"
respond = {{ status = 200, body = "{body}" }}

[[routes]]
path_prefix = "/"
upstream = "backend"

[upstreams.backend]
servers = ["{up}"]
connect_timeout = "1s"
response_timeout = "2s"
"#
    ));
    toml
}

#[test]
fn listener_added_and_removed_by_reload() {
    let up = tagged("E");
    let proxy = Proxy::start(&extra_config(up.addr, None, "x\\n"));
    assert_eq!(proxy.handle().listener_addr("extra"), None);
    // Past the workers' first tick: a reload before it is another test
    // (reload_right_after_start_reaches_every_worker).
    thread::sleep(Duration::from_millis(150));

    // Added: bound by the reload itself, served within a second.
    proxy.reload(&extra_config(up.addr, Some("127.0.0.1:0"), "x\\n"));
    let first = proxy
        .handle()
        .listener_addr("extra")
        .expect("the reload binds the new listener before it returns");
    assert_eq!(
        poll_fetch(first, "/probe", Duration::from_secs(1), |_| true),
        Ok((200, "E GET /probe\n".to_string())),
        "the added listener does not serve within 1 s"
    );
    assert_eq!(fetch(first, "/only-extra"), Ok((200, "x\n".to_string())));
    assert_eq!(
        fetch(proxy.addr, "/only-extra"),
        Ok((200, "E GET /only-extra\n".to_string())),
        "a route restricted to `extra` matched on `main`"
    );
    let mut kept = Client::connect(first);
    let r = kept.request(&get("/kept/1"));
    expect_echo(&r, "GET", "/kept/1", "", &["E"]).unwrap();

    // Re-addressed: the new address serves, the old one is closed, and
    // the connection accepted on the old one carries on.
    let port = free_port();
    proxy.reload(&extra_config(
        up.addr,
        Some(&format!("127.0.0.1:{port}")),
        "x\\n",
    ));
    let second = proxy.handle().listener_addr("extra").unwrap();
    assert_eq!(second, SocketAddr::from(([127, 0, 0, 1], port)));
    assert_eq!(
        poll_fetch(second, "/probe", Duration::from_secs(1), |_| true),
        Ok((200, "E GET /probe\n".to_string())),
        "the re-addressed listener does not serve within 1 s"
    );
    assert!(
        refused_within(first, Duration::from_secs(1)),
        "the old address of a re-addressed listener still accepts"
    );
    let r = kept.request(&get("/kept/2"));
    expect_echo(&r, "GET", "/kept/2", "", &["E"]).unwrap();
    let mut kept2 = Client::connect(second);
    assert_eq!(kept2.request(&get("/only-extra")).body_str(), "x\n");

    // Removed: new connects are refused; open connections keep working,
    // with routes that have no `listeners` restriction.
    let gen1 = proxy.reload(&extra_config(up.addr, None, "y\\n"));
    assert_eq!(proxy.handle().listener_addr("extra"), None);
    assert!(
        refused_within(second, Duration::from_secs(1)),
        "a removed listener still accepts after 1 s"
    );
    for n in 3..6 {
        let path = format!("/kept/{n}");
        let r = kept.request(&get(&path));
        expect_echo(&r, "GET", &path, "", &["E"])
            .expect("a connection of a removed listener (accepted at its first address)");
        let r = kept2.request(&get(&path));
        expect_echo(&r, "GET", &path, "", &["E"]).expect("a connection of a removed listener");
    }
    let r = kept2.request(&get("/fixed"));
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "y\n"),
        "an open connection of a removed listener uses the new config"
    );
    let r = kept2.request(&get("/only-extra"));
    expect_echo(&r, "GET", "/only-extra", "", &["E"])
        .expect("the route restricted to the removed listener is gone");
    assert_eq!(fetch(proxy.addr, "/fixed"), Ok((200, "y\n".to_string())));
    assert_eq!(proxy.handle().generation(), gen1);
}

/// A reload removes a listener and the next adds it back before the
/// workers' next tick (50 ms): the second reload binds a new port (port 0)
/// and reports it; that port must serve, and the first one must close.
#[test]
fn listener_removed_and_added_back_at_once_serves_its_new_address() {
    let up = tagged("E");
    let proxy = Proxy::start(&extra_config(up.addr, None, "x\\n"));
    let with = extra_config(up.addr, Some("127.0.0.1:0"), "x\\n");
    let without = extra_config(up.addr, None, "x\\n");
    // Past the workers' first tick (see
    // reload_right_after_start_reaches_every_worker).
    thread::sleep(Duration::from_millis(150));

    proxy.reload(&with);
    let first = proxy.handle().listener_addr("extra").unwrap();
    assert!(
        poll_fetch(first, "/p", Duration::from_secs(1), |r| r.0 == 200).is_ok(),
        "the added listener does not serve within 1 s"
    );
    // Back to back, well within one tick.
    proxy.reload(&without);
    proxy.reload(&with);
    let second = proxy.handle().listener_addr("extra").unwrap();
    assert_ne!(
        first, second,
        "a port-0 listener added again gets a new port"
    );
    thread::sleep(Duration::from_millis(200));

    let serves = poll_fetch(second, "/p", Duration::from_secs(1), |r| r.0 == 200);
    let old_closed = refused_within(first, Duration::from_secs(1));
    assert!(
        serves.is_ok() && old_closed,
        "after remove + add within one tick: listener_addr(\"extra\") = {second} \
         answers {serves:?} (want a 200); the previous address {first} \
         {} (want refused)",
        if old_closed {
            "is closed"
        } else {
            "still accepts"
        }
    );
}

/// A reload that adds a listener right after `start` returns, before the
/// workers have run their first tick: every worker must still start
/// accepting on its socket of the new listener. With two workers a
/// connection lands on either socket (SO_REUSEPORT), so 8 connections that
/// all get answered mean both accept. The window is narrow (about one run
/// in four hits it), so this tries 16 fresh proxies.
#[test]
fn reload_right_after_start_reaches_every_worker() {
    let up = tagged("E");
    for round in 0..16 {
        let proxy = Proxy::start(&extra_config(up.addr, None, "x\\n"));
        proxy.reload(&extra_config(up.addr, Some("127.0.0.1:0"), "x\\n"));
        let extra = proxy.handle().listener_addr("extra").unwrap();
        // Both workers have ticked (50 ms) by then.
        thread::sleep(Duration::from_millis(120));
        for n in 0..8 {
            let got = fetch_within(extra, "/only-extra", Duration::from_millis(500));
            assert_eq!(
                got,
                Ok((200, "x\n".to_string())),
                "round {round}, connection {n} to the listener added right after \
                 start: a worker is not accepting on it"
            );
        }
        proxy.shutdown();
    }
}

#[test]
fn reload_with_unbindable_listener_is_refused() {
    let up = tagged("E");
    let proxy = Proxy::start(&extra_config(up.addr, None, "old\\n"));
    let gen1 = proxy.handle().generation();

    // A foreign socket, without SO_REUSEPORT, holds the port.
    let blocker = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = blocker.local_addr().unwrap();
    // Also adds a second, bindable listener: it must not stay bound.
    let free = free_port();
    let bad = extra_config(up.addr, Some(&taken.to_string()), "new\\n").replace(
        "\n[[routes]]\npath_prefix = \"/fixed\"",
        &format!(
            "\n[[listeners]]\nname = \"third\"\nbind = \"127.0.0.1:{free}\"\n\n\
             [[routes]]\npath_prefix = \"/fixed\""
        ),
    );
    assert!(bad.contains("name = \"third\""));
    let config = Config::from_toml_str(&bad).expect("valid config text");
    let err = proxy
        .handle()
        .reload(config)
        .expect_err("a reload whose new listener cannot be bound")
        .to_string();
    assert!(
        err.contains("listeners[1] \"extra\".bind"),
        "the error should name the listener's key path: {err}"
    );
    assert!(
        !err.contains("listeners[2]"),
        "only the unbindable listener is a problem: {err}"
    );

    // Nothing changed.
    assert_eq!(proxy.handle().generation(), gen1);
    assert_eq!(proxy.handle().listener_addr("extra"), None);
    assert_eq!(proxy.handle().listener_addr("third"), None);
    assert_eq!(
        fetch(proxy.addr, "/fixed"),
        Ok((200, "old\n".to_string())),
        "a refused reload changed the served config"
    );
    assert_eq!(
        fetch(proxy.addr, "/any"),
        Ok((200, "E GET /any\n".to_string()))
    );
    // The bindable listener of the refused reload was released (a plain
    // bind, without SO_REUSEPORT, fails while any socket holds the port).
    drop(
        TcpListener::bind(("127.0.0.1", free))
            .expect("the listener bound by a refused reload still holds its port"),
    );
    // And the foreign socket got no connections from us.
    blocker.set_nonblocking(true).unwrap();
    assert!(blocker.accept().is_err());

    // Once the port is free the same reload goes through.
    drop(blocker);
    let gen2 = proxy.reload(&bad);
    assert_eq!(gen2, gen1 + 1);
    assert_eq!(proxy.handle().listener_addr("extra"), Some(taken));
    assert_eq!(
        poll_fetch(taken, "/only-extra", Duration::from_secs(1), |_| true),
        Ok((200, "new\n".to_string()))
    );
    assert_eq!(fetch(proxy.addr, "/fixed"), Ok((200, "new\n".to_string())));
}

// ------------------------------------------------------------ the binary

/// A scratch directory under the system temp dir, removed on drop.
struct TempDir(TempPath);

impl TempDir {
    fn new(name: &str) -> TempDir {
        TempDir(TempPath::unique_dir(&format!("live-{name}")))
    }

    fn write(&self, file: &str, text: &str) -> PathBuf {
        let path = self.0.join(file);
        std::fs::write(&path, text).expect("write config");
        path
    }
}

/// A running ringress process, killed on drop if still alive; its stdout
/// and stderr are collected by background threads.
struct Running {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Running {
    /// Starts the binary on `config` with one worker (and the driver
    /// `RINGRESS_TEST_IO` names, if any).
    fn spawn(config: &Path) -> Running {
        Self::spawn_with(config, &[])
    }

    /// `spawn` with more arguments (`--upgrade`).
    fn spawn_with(config: &Path, extra: &[&str]) -> Running {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(config)
            .args(["--threads", "1", "--no-pin", "--log", "info"])
            .args(extra);
        if let Ok(io) = std::env::var("RINGRESS_TEST_IO")
            && !io.is_empty()
        {
            cmd.args(["--io", &io]);
        }
        let mut child = cmd
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringress");
        let log = Arc::new(Mutex::new(String::new()));
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        for mut pipe in [out, err] {
            let log = log.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    log.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Running { child, log }
    }

    /// Sends a signal with kill(1), e.g. "TERM".
    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to `limit` for the process to exit.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then exit 0 within `limit`.
    fn stop(&mut self, limit: Duration) {
        self.signal("TERM");
        let status = self.wait_exit(limit);
        assert_eq!(
            status.map(|s| s.code()),
            Some(Some(0)),
            "exit after SIGTERM (None: still running); log:\n{}",
            self.log()
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An answer of the admin listener.
#[derive(Debug)]
struct Admin {
    status: u16,
    head: String,
    body: String,
}

fn admin(addr: SocketAddr, method: &str, path: &str) -> Option<Admin> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: admin.test\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some(Admin {
        status: head.split(' ').nth(1)?.parse().ok()?,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// A config with an admin listener, `/hello` answering `body`, and with
/// `extra` a second listener on that port.
fn admin_config(port: u16, admin_port: u16, body: &str, extra: Option<u16>) -> String {
    let extra = extra.map_or(String::new(), |p| {
        format!("[[listeners]]\nname = \"extra\"\nbind = \"127.0.0.1:{p}\"\n")
    });
    format!(
        r#"
[runtime]
drain_timeout = "2s"

[admin]
bind = "127.0.0.1:{admin_port}"

[[listeners]]
name = "main"
bind = "127.0.0.1:{port}"

{extra}
[[routes]]
path_prefix = "/hello"
respond = {{ status = 200, body = "{body}" }}

[[routes]]
path_prefix = "/"
respond = {{ status = 404, body = "nothing here\n" }}
"#
    )
}

#[test]
fn admin_post_reload() {
    let dir = TempDir::new("admin");
    let (port, admin_port, extra_port) = (free_port(), free_port(), free_port());
    let main: SocketAddr = ([127, 0, 0, 1], port).into();
    let adm: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    let extra: SocketAddr = ([127, 0, 0, 1], extra_port).into();
    let path = dir.write(
        "ringress.toml",
        &admin_config(port, admin_port, "v1\\n", None),
    );
    let mut p = Running::spawn(&path);

    // GET /health, once the process is up.
    let end = Instant::now() + Duration::from_secs(5);
    let health = loop {
        match admin(adm, "GET", "/health") {
            Some(a) => break a,
            None if Instant::now() < end => thread::sleep(Duration::from_millis(25)),
            None => panic!("the admin listener is not up after 5 s; log:\n{}", p.log()),
        }
    };
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert!(
        health.head.to_lowercase().contains("connection: close"),
        "{}",
        health.head
    );
    assert_eq!(fetch(main, "/hello"), Ok((200, "v1\n".to_string())));
    assert_eq!(admin(adm, "GET", "/generation").unwrap().body, "1\n");

    // A good rewrite (new body, and a listener added): published by the
    // time the answer comes.
    dir.write(
        "ringress.toml",
        &admin_config(port, admin_port, "v2\\n", Some(extra_port)),
    );
    let r = admin(adm, "POST", "/reload").expect("an answer to POST /reload");
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "reloaded: generation 2\n"),
        "log:\n{}",
        p.log()
    );
    assert_eq!(fetch(main, "/hello"), Ok((200, "v2\n".to_string())));
    assert_eq!(
        poll_fetch(extra, "/hello", Duration::from_secs(1), |_| true),
        Ok((200, "v2\n".to_string())),
        "the listener added by POST /reload does not serve"
    );
    assert_eq!(admin(adm, "GET", "/generation").unwrap().body, "2\n");

    // A broken rewrite: 422 with the key path, the old config stays.
    dir.write(
        "ringress.toml",
        &admin_config(port, admin_port, "v3\\n", Some(extra_port))
            .replace("status = 200", "status = 99"),
    );
    let r = admin(adm, "POST", "/reload").expect("an answer to POST /reload");
    assert_eq!(r.status, 422, "{r:?}");
    assert!(
        r.body.contains("routes[0].respond.status"),
        "the 422 should list the problem with its key path: {:?}",
        r.body
    );
    assert_eq!(fetch(main, "/hello"), Ok((200, "v2\n".to_string())));
    assert_eq!(fetch(extra, "/hello"), Ok((200, "v2\n".to_string())));
    assert_eq!(admin(adm, "GET", "/generation").unwrap().body, "2\n");

    // Wrong methods and unknown paths.
    for (method, path, status) in [
        ("GET", "/reload", 405),
        ("POST", "/health", 405),
        ("DELETE", "/generation", 405),
        ("GET", "/nope", 404),
        // `/` is the dashboard (GET only).
        ("POST", "/", 405),
    ] {
        let r = admin(adm, method, path).expect("an admin answer");
        assert_eq!(r.status, status, "{method} {path}: {r:?}");
        assert!(
            r.head.to_lowercase().contains("connection: close"),
            "{method} {path}: {}",
            r.head
        );
    }
    assert_eq!(admin(adm, "GET", "/generation").unwrap().body, "2\n");

    p.stop(Duration::from_secs(4));
    assert!(fetch(main, "/hello").is_err(), "answered after exit");
}

/// `net.ipv4.tcp_migrate_req` switched on for a test, and restored after.
struct MigrateReq {
    restore: Option<String>,
}

const MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

impl MigrateReq {
    /// (guard, whether migration is on).
    fn enable() -> (MigrateReq, bool) {
        let none = MigrateReq { restore: None };
        // Missing before Linux 5.14: connections still queued on a closing
        // listener are reset instead of moved to another socket of the
        // SO_REUSEPORT group.
        let Ok(old) = std::fs::read_to_string(MIGRATE_REQ) else {
            return (none, false);
        };
        if old.trim() == "1" {
            return (none, true);
        }
        // Writable as root (per network namespace).
        if std::fs::write(MIGRATE_REQ, "1").is_err() {
            return (none, false);
        }
        let on = std::fs::read_to_string(MIGRATE_REQ).is_ok_and(|v| v.trim() == "1");
        (
            MigrateReq {
                restore: Some(old.trim().to_string()),
            },
            on,
        )
    }
}

impl Drop for MigrateReq {
    fn drop(&mut self) {
        if let Some(old) = &self.restore {
            let _ = std::fs::write(MIGRATE_REQ, old);
        }
    }
}

/// One GET /hello on a new connection: Ok(body) for a 200.
fn hello_once(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: live.test\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read: {e} after {} bytes", raw.len()))?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, body)) = raw.split_once("\r\n\r\n") else {
        return Err(format!("closed without a (whole) answer: {raw:?}"));
    };
    match head.split(' ').nth(1) {
        Some("200") => Ok(body.to_string()),
        _ => Err(format!("not a 200: {head:?}")),
    }
}

fn upgrade_config(port: u16, slow: SocketAddr, body: &str) -> String {
    format!(
        r#"
[runtime]
drain_timeout = "5s"

[[listeners]]
name = "main"
bind = "127.0.0.1:{port}"

[[routes]]
path_prefix = "/slow"
upstream = "slow"

[[routes]]
path_prefix = "/hello"
respond = {{ status = 200, body = "{body}" }}

[upstreams.slow]
servers = ["{slow}"]
connect_timeout = "1s"
response_timeout = "3s"
"#
    )
}

#[test]
fn binary_upgrade_hands_over_the_port() {
    let (_migrate, migrating) = MigrateReq::enable();
    let slow_up = slow(Duration::from_millis(300));
    let dir = TempDir::new("upgrade");
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let config_a = dir.write("a.toml", &upgrade_config(port, slow_up.addr, "A\\n"));
    let config_b = dir.write("b.toml", &upgrade_config(port, slow_up.addr, "B\\n"));

    let mut a = Running::spawn(&config_a);
    assert_eq!(
        poll_fetch(addr, "/hello", Duration::from_secs(5), |_| true),
        Ok((200, "A\n".to_string())),
        "A did not come up; log:\n{}",
        a.log()
    );
    // Two keep-alive connections to A: one will have a request in flight
    // when A is told to stop, the other will be idle.
    let mut busy = Client::connect(addr);
    let mut idle = Client::connect(addr);
    assert_eq!(busy.request(&get("/hello")).body_str(), "A\n");
    assert_eq!(idle.request(&get("/hello")).body_str(), "A\n");

    // Requests on new connections all along, each timed.
    type Sample = (Instant, Result<String, String>);
    let stop = Arc::new(AtomicBool::new(false));
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let seen_b = Arc::new(AtomicUsize::new(0));
    let client = {
        let (stop, samples, seen_b) = (stop.clone(), samples.clone(), seen_b.clone());
        thread::spawn(move || {
            let started = Instant::now();
            while !stop.load(Ordering::Acquire) && started.elapsed() < Duration::from_secs(20) {
                let at = Instant::now();
                let got = hello_once(addr);
                if got.as_deref() == Ok("B\n") {
                    seen_b.fetch_add(1, Ordering::Relaxed);
                }
                samples.lock().unwrap().push((at, got));
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let stopper = StopOnDrop(stop.clone());
    thread::sleep(Duration::from_millis(200));

    // B on the same port (refused without `--upgrade`), until it answers.
    let mut b = Running::spawn_with(&config_b, &["--upgrade"]);
    assert!(
        wait_until(Duration::from_secs(5), || seen_b.load(Ordering::Relaxed)
            > 0),
        "B never answered; log of B:\n{}",
        b.log()
    );
    // Both run for a while; the connections A accepted are still A's.
    let overlap_from = Instant::now();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(busy.request(&get("/hello")).body_str(), "A\n");
    assert_eq!(idle.request(&get("/hello")).body_str(), "A\n");

    // SIGTERM to A while `busy` has a request in flight.
    busy.send(&get("/slow/busy"));
    assert!(
        wait_until(Duration::from_secs(2), || slow_up.requests().len() == 1),
        "the slow upstream never got the request"
    );
    let term_at = Instant::now();
    a.signal("TERM");

    // The idle connection is closed (cleanly), the busy one gets its
    // answer, marked as the last, then is closed.
    assert_eq!(
        how_it_ends(&mut idle.stream, Duration::from_secs(2)),
        End::Eof,
        "the idle keep-alive connection to A during A's drain"
    );
    let r = busy
        .read_response_to(false)
        .expect("the request in flight when A was told to stop is answered");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "slow /slow/busy\n")
    );
    assert!(
        says_close(&r),
        "the answer finishing A's drain should say `Connection: close`: {}",
        r.raw_head
    );
    assert_eq!(
        how_it_ends(&mut busy.stream, Duration::from_secs(2)),
        End::Eof,
        "the busy connection after its last answer"
    );

    let status = a.wait_exit(Duration::from_secs(5));
    let exit_at = Instant::now();
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "A's exit after SIGTERM (None: still running); log of A:\n{}",
        a.log()
    );
    thread::sleep(Duration::from_secs(1));
    drop(stopper);
    client.join().expect("client thread");

    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let total = samples.len();
    let failures: Vec<(Duration, &String)> = samples
        .iter()
        .filter_map(|(at, got)| {
            let since_term = at.saturating_duration_since(term_at);
            got.as_ref().err().map(|e| (since_term, e))
        })
        .collect();
    let by_a = samples
        .iter()
        .filter(|(_, g)| g.as_deref() == Ok("A\n"))
        .count();
    let by_b = samples
        .iter()
        .filter(|(_, g)| g.as_deref() == Ok("B\n"))
        .count();
    eprintln!(
        "upgrade: {total} requests, {by_a} by A, {by_b} by B, {} failed; \
         tcp_migrate_req {}; A exited {:?} after SIGTERM",
        failures.len(),
        if migrating { "on" } else { "unavailable" },
        exit_at - term_at
    );
    assert_eq!(
        by_a + by_b + failures.len(),
        total,
        "answers from neither A nor B"
    );
    let overlap: Vec<_> = samples
        .iter()
        .filter(|(at, _)| (overlap_from..term_at).contains(at))
        .collect();
    let overlap_by = |who: &str| {
        overlap
            .iter()
            .filter(|(_, g)| g.as_deref() == Ok(who))
            .count()
    };
    // B steers every new connection to itself; A keeps the ones it had.
    assert!(
        overlap_by("A\n") == 0 && overlap_by("B\n") > 0,
        "while both ran, only B should have taken new connections: A {}, B {} of {}",
        overlap_by("A\n"),
        overlap_by("B\n"),
        overlap.len()
    );
    let after_exit: Vec<_> = samples.iter().filter(|(at, _)| *at > exit_at).collect();
    assert!(after_exit.len() >= 50, "too few requests after A exited");
    assert!(
        after_exit.iter().all(|(_, g)| g.as_deref() == Ok("B\n")),
        "after A exited only B may answer: {:?}",
        after_exit
            .iter()
            .filter(|(_, g)| g.as_deref() != Ok("B\n"))
            .take(5)
            .collect::<Vec<_>>()
    );
    if migrating {
        // Connections queued on A's listener when it closes move to B's.
        assert!(
            failures.is_empty(),
            "{} of {total} requests failed during the upgrade (with \
             tcp_migrate_req on); (time since SIGTERM, error): {:#?}",
            failures.len(),
            &failures[..failures.len().min(10)]
        );
    } else {
        // Without migration the kernel resets what is still in A's accept
        // queue when A closes its listener: failures are allowed only
        // around that moment.
        let window = (term_at - Duration::from_millis(200))..(exit_at + Duration::from_millis(200));
        let outside: Vec<_> = samples
            .iter()
            .filter(|(at, g)| g.is_err() && !window.contains(at))
            .collect();
        assert!(
            outside.is_empty(),
            "failures outside A's close: {outside:?}"
        );
        assert!(
            failures.len() * 20 <= total,
            "more than 5% failed: {} of {total}",
            failures.len()
        );
        assert!(samples[total - 50..].iter().all(|(_, g)| g.is_ok()));
    }

    // B serves on its own, and stops cleanly too.
    assert_eq!(fetch(addr, "/hello"), Ok((200, "B\n".to_string())));
    b.stop(Duration::from_secs(4));
}
