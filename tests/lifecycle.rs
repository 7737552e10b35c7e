//! Lifecycle of a running proxy: config reloads (under traffic, with a
//! request in flight, rejected ones), graceful drain and its timeout, both
//! I/O drivers, and many concurrent connections.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use ringress::IoMode;

// ---------------------------------------------------------------- helpers

/// A keep-alive echo upstream whose answers carry `tag`: an `X-Upstream`
/// header and a body "TAG METHOD TARGET\n" followed by the request body.
fn tagged(tag: &'static str) -> Upstream {
    Upstream::start(move |r, w, up| {
        while let Some(req) = up.record(r) {
            let mut body = format!("{tag} {} {}\n", req.method, req.target).into_bytes();
            body.extend_from_slice(&req.body);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Upstream: {tag}\r\n\r\n",
                body.len()
            );
            if w.write_all(head.as_bytes())
                .and_then(|_| w.write_all(&body))
                .is_err()
            {
                return;
            }
        }
    })
}

/// An upstream that waits `delay` before answering each request with
/// "slow TARGET\n".
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

/// An upstream that reads a request and never answers; it holds the
/// connection until the proxy closes it (or the harness timeout).
fn silent() -> Upstream {
    Upstream::start(|r, _w, up| {
        if up.record(r).is_some() {
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest);
        }
    })
}

/// Both upstream groups defined; the catch-all route points at `target`.
fn ab_config(a: SocketAddr, b: SocketAddr, target: &str) -> String {
    format!(
        r#"
[runtime]
drain_timeout = "2s"

[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
path_prefix = "/"
upstream = "{target}"

[upstreams.a]
servers = ["{a}"]
connect_timeout = "1s"
response_timeout = "2s"

[upstreams.b]
servers = ["{b}"]
connect_timeout = "1s"
response_timeout = "2s"
"#
    )
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
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
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

/// Reads until EOF or error. Ok(bytes) when the peer closed (or reset)
/// within `limit`; Err(bytes) when the connection was still open.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Result<Vec<u8>, Vec<u8>> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Err(got);
            }
            Err(_) => return Ok(got),
        }
    }
}

// ----------------------------------------------------------------- reload

#[derive(Default)]
struct TrafficStats {
    ok: AtomicUsize,
    by_a: AtomicUsize,
    by_b: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl TrafficStats {
    /// Checks one response to `GET path` and counts who served it.
    fn check(&self, path: &str, result: Result<Response, String>) -> bool {
        let failure = match result {
            Ok(r) if r.status == 200 => {
                let body = r.body_str();
                if body == format!("A GET {path}\n") && r.header("x-upstream") == Some("A") {
                    self.by_a.fetch_add(1, Ordering::Relaxed);
                    self.ok.fetch_add(1, Ordering::Relaxed);
                    return true;
                } else if body == format!("B GET {path}\n") && r.header("x-upstream") == Some("B") {
                    self.by_b.fetch_add(1, Ordering::Relaxed);
                    self.ok.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                format!("GET {path}: unexpected answer {:?} / {body:?}", r.raw_head)
            }
            Ok(r) => format!("GET {path}: status {} ({})", r.status, r.body_str().trim()),
            Err(e) => format!("GET {path}: {e}"),
        };
        self.failures.lock().unwrap().push(failure);
        false
    }
}

#[test]
fn reload_under_traffic_fails_no_request() {
    let a = tagged("A");
    let b = tagged("B");
    let to_a = ab_config(a.addr, b.addr, "a");
    let to_b = ab_config(a.addr, b.addr, "b");
    let proxy = Proxy::start(&to_a);
    let addr = proxy.addr;
    let gen_before = proxy.handle().generation();

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(TrafficStats::default());
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (stop, stats) = (stop.clone(), stats.clone());
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Acquire) {
                    // Five requests on one kept-alive connection...
                    match try_connect(addr) {
                        Ok(mut c) => {
                            for _ in 0..5 {
                                n += 1;
                                let path = format!("/ka/{t}/{n}");
                                if !stats.check(&path, try_request(&mut c, &get(&path))) {
                                    break;
                                }
                            }
                        }
                        Err(e) => stats.failures.lock().unwrap().push(e),
                    }
                    // ...then one on a connection of its own.
                    n += 1;
                    let path = format!("/new/{t}/{n}");
                    let raw = format!(
                        "GET {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n"
                    );
                    let result =
                        try_connect(addr).and_then(|mut c| try_request(&mut c, raw.as_bytes()));
                    stats.check(&path, result);
                }
            })
        })
        .collect();

    // 21 reloads ~70 ms apart, alternating B, A, ..., ending on B.
    let reloads = 21;
    for i in 0..reloads {
        thread::sleep(Duration::from_millis(70));
        proxy.reload(if i % 2 == 0 { &to_b } else { &to_a });
    }
    thread::sleep(Duration::from_millis(70));
    stop.store(true, Ordering::Release);
    for c in clients {
        c.join().expect("client thread");
    }

    let failures = stats.failures.lock().unwrap();
    let ok = stats.ok.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during reloads; first ones: {:#?}",
        failures.len(),
        failures.len() + ok,
        &failures[..failures.len().min(10)]
    );
    let (by_a, by_b) = (
        stats.by_a.load(Ordering::Relaxed),
        stats.by_b.load(Ordering::Relaxed),
    );
    assert!(
        ok > 100,
        "too little traffic to mean anything: {ok} requests"
    );
    assert!(by_a > 0 && by_b > 0, "A served {by_a}, B served {by_b}");
    assert_eq!(
        proxy.handle().generation(),
        gen_before + reloads,
        "each reload bumps the generation"
    );

    // The final config routes to B, for new connections and kept-alive ones.
    for i in 0..10 {
        let path = format!("/after/{i}");
        let r = proxy.connect().request(&get(&path));
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body_str(),
            format!("B GET {path}\n"),
            "after the final reload"
        );
    }
    let mut c = proxy.connect();
    for i in 0..5 {
        let path = format!("/after-ka/{i}");
        let r = c.request(&get(&path));
        assert_eq!(
            r.body_str(),
            format!("B GET {path}\n"),
            "after the final reload"
        );
    }
}

#[test]
fn idle_keepalive_connection_uses_config_published_while_it_was_idle() {
    let a = tagged("A");
    let b = tagged("B");
    let proxy = Proxy::start(&ab_config(a.addr, b.addr, "a"));
    let mut c = proxy.connect();
    assert_eq!(c.request(&get("/one")).body_str(), "A GET /one\n");
    // The connection sits idle between requests while the config changes.
    thread::sleep(Duration::from_millis(100));
    proxy.reload(&ab_config(a.addr, b.addr, "b"));
    thread::sleep(Duration::from_millis(100));
    let r = c.request(&get("/two"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body_str(),
        "B GET /two\n",
        "a request sent after a reload must be routed by the new config, \
         even on a connection opened before it"
    );
}

#[test]
fn request_in_flight_finishes_on_old_snapshot_after_its_route_is_removed() {
    let up = slow(Duration::from_millis(500));
    let old = format!(
        r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
path_prefix = "/slow"
upstream = "slow"

[[routes]]
path_prefix = "/"
respond = {{ status = 200, body = "old config\n" }}

[upstreams.slow]
servers = ["{}"]
response_timeout = "3s"
"#,
        up.addr
    );
    let new = r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
path_prefix = "/"
respond = { status = 200, body = "new config\n" }
"#;
    let proxy = Proxy::start(&old);
    let gen1 = proxy.handle().generation();
    let mut c = proxy.connect();
    let started = Instant::now();
    c.send(&get("/slow/x"));
    assert!(
        wait_until(Duration::from_secs(2), || up.requests().len() == 1),
        "the slow upstream never got the request"
    );
    let gen2 = proxy.reload(new);
    assert!(gen2 > gen1);
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "the reload must happen while the request is in flight"
    );

    let r = c.read_response();
    assert_eq!(r.status, 200, "request in flight during reload: {r:?}");
    assert_eq!(r.body_str(), "slow /slow/x\n");
    assert!(started.elapsed() >= Duration::from_millis(450));

    // Next request on the same connection, and on a new one: new config.
    let r = c.request(&get("/slow/x"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "new config\n");
    let r = proxy.connect().request(&get("/slow/y"));
    assert_eq!(r.body_str(), "new config\n");
    assert_eq!(
        up.requests().len(),
        1,
        "the removed route still reached the upstream"
    );
}

#[test]
fn rejected_reload_keeps_old_config() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&simple_config(up.addr));
    let gen1 = proxy.handle().generation();
    let dir = TempPath::unique_dir("lifecycle-bad-reload");

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
path_prefix = "/"
upstream = "nowhere"

[upstreams.x]
servers = []
"#,
    )
    .unwrap();
    let err = proxy
        .handle()
        .reload_file(&bad)
        .expect_err("a config with errors must be rejected");
    let text = err.to_string();
    let paths: Vec<&str> = err.0.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"routes[0].upstream"), "{text}");
    assert!(paths.contains(&"upstreams.x.servers"), "{text}");
    assert!(text.contains("routes[0].upstream: "), "{text}");
    assert!(text.contains("nowhere"), "{text}");
    assert!(text.contains("upstreams.x.servers: "), "{text}");
    assert_eq!(
        proxy.handle().generation(),
        gen1,
        "rejected reload bumped generation"
    );

    let syntax = dir.join("syntax.toml");
    std::fs::write(&syntax, "[[listeners]\nname = 1\n").unwrap();
    let err = proxy
        .handle()
        .reload_file(&syntax)
        .expect_err("syntax error");
    assert!(err.to_string().contains("line 1"), "{err}");

    let missing = dir.join("does-not-exist.toml");
    let err = proxy
        .handle()
        .reload_file(&missing)
        .expect_err("missing file");
    assert!(err.to_string().contains("does-not-exist.toml"), "{err}");
    assert_eq!(proxy.handle().generation(), gen1);

    // Traffic still flows on the old config, old and new connections.
    let mut c = proxy.connect();
    for i in 0..3 {
        let r = c.request(&get(&format!("/still/{i}")));
        assert_eq!(r.status, 200);
        assert_eq!(r.body_str(), format!("GET /still/{i}\n"));
    }
    assert_eq!(proxy.connect().request(&get("/x")).body_str(), "GET /x\n");

    // A good file afterwards is taken.
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
path_prefix = "/"
respond = { status = 200, body = "from file\n" }
"#,
    )
    .unwrap();
    let gen2 = proxy.handle().reload_file(&good).expect("good file");
    assert_eq!(gen2, gen1 + 1);
    assert_eq!(proxy.handle().generation(), gen2);
    assert_eq!(
        proxy.connect().request(&get("/x")).body_str(),
        "from file\n"
    );
}

// ------------------------------------------------------------------ drain

fn drain_config(up: SocketAddr, drain_timeout: &str) -> String {
    ConfigBuilder::new(up)
        .runtime(&format!(r#"drain_timeout = "{drain_timeout}""#))
        .sections(
            r#"
[timeouts]
keepalive = "30s"
client_head = "10s"

[[routes]]
path_prefix = "/fast"
respond = { status = 200, body = "fast\n" }
"#,
        )
        .group("response_timeout = \"10s\"\nio_timeout = \"10s\"")
        .build()
}

/// Runs `proxy.shutdown()` on its own thread; the receiver gets how long
/// it took.
fn shutdown_in_background(proxy: Proxy) -> mpsc::Receiver<Duration> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let t = Instant::now();
        proxy.shutdown();
        let _ = tx.send(t.elapsed());
    });
    rx
}

/// What became of the connections made while a drain was under way.
struct Late {
    /// How many of the 8 the kernel accepted.
    accepted: usize,
    /// What any of them got back (there should be nothing).
    answered: Vec<Vec<u8>>,
    /// How many were left open with no answer.
    hung: usize,
    /// Held open until the test is done with them.
    _streams: Vec<TcpStream>,
}

/// Connects 8 times to `addr` during a drain, sends `GET /fast` on each, and
/// 150 ms later sorts out what became of them.
fn connect_during_drain(addr: SocketAddr) -> Late {
    let mut late: Vec<TcpStream> = (0..8)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    for s in &mut late {
        let _ = s.write_all(&get("/fast"));
    }
    thread::sleep(Duration::from_millis(150));
    let (mut answered, mut hung) = (Vec::new(), 0);
    for s in &mut late {
        match read_until_closed(s, Duration::from_millis(50)) {
            Ok(b) | Err(b) if !b.is_empty() => answered.push(b),
            Ok(_) => {}
            Err(_) => hung += 1,
        }
    }
    Late {
        accepted: late.len(),
        answered,
        hung,
        _streams: late,
    }
}

#[test]
fn graceful_drain_finishes_in_flight_and_closes_idle() {
    let up = slow(Duration::from_millis(700));
    // One worker, so that every connection below shares it (see
    // drain_refuses_new_connections_* for two workers).
    let proxy = Proxy::start_with(&drain_config(up.addr, "5s"), 1, IoMode::Auto);
    let addr = proxy.addr;

    let mut idle = proxy.connect();
    assert_eq!(idle.request(&get("/fast")).body_str(), "fast\n");

    let mut busy = proxy.connect();
    busy.send(&get("/slow"));
    assert!(
        wait_until(Duration::from_secs(2), || up.requests().len() == 1),
        "the slow upstream never got the request"
    );

    let t0 = Instant::now();
    let done = shutdown_in_background(proxy);

    // The idle keep-alive connection goes at once (keep-alive is 30 s).
    let closed = read_until_closed(&mut idle.stream, Duration::from_secs(2));
    let idle_closed_after = t0.elapsed();
    assert_eq!(
        closed
            .as_deref()
            .map_err(|b| String::from_utf8_lossy(b).into_owned()),
        Ok(&b""[..]),
        "idle keep-alive connection must be closed without bytes on drain"
    );
    assert!(
        idle_closed_after < Duration::from_millis(500),
        "idle connection closed only after {idle_closed_after:?}"
    );

    // New connections while draining get no response.
    thread::sleep(Duration::from_millis(100));
    assert!(
        done.try_recv().is_err(),
        "shutdown returned with a request in flight"
    );
    let mut problems = Vec::new();
    let late = connect_during_drain(addr);
    for b in &late.answered {
        problems.push(format!(
            "a connection made during drain was answered: {:?}",
            String::from_utf8_lossy(b)
        ));
    }
    if late.hung > 0 {
        problems.push(format!(
            "{} of {} connections made 100 ms into the drain were accepted \
             and left open with no answer (expected: refused, or closed at once)",
            late.hung, late.accepted
        ));
    }

    // The request in flight completes, and the connection ends after it.
    let r = busy.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "slow /slow\n");
    let says_close = r
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    if !(says_close || busy.is_closed()) {
        problems.push("connection stays open after the last response of a drain".into());
    }

    let took = done
        .recv_timeout(Duration::from_secs(4))
        .expect("shutdown returns once the in-flight request is done");
    if took < Duration::from_millis(400) {
        problems.push(format!(
            "shutdown did not wait for the request in flight ({took:?})"
        ));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Two workers, one request in flight: the worker that holds it keeps
/// draining, the other has nothing to wait for. Connections made during
/// the drain must be refused (or closed unanswered) whichever worker's
/// listener SO_REUSEPORT hands them to.
fn drain_refuses_new_connections(io: IoMode) {
    let up = slow(Duration::from_millis(800));
    let proxy = Proxy::start_with(&drain_config(up.addr, "5s"), 2, io);
    let addr = proxy.addr;
    let mut busy = proxy.connect();
    busy.send(&get("/slow"));
    assert!(
        wait_until(Duration::from_secs(2), || up.requests().len() == 1),
        "the slow upstream never got the request"
    );
    let done = shutdown_in_background(proxy);
    thread::sleep(Duration::from_millis(200));
    let late = connect_during_drain(addr);
    assert!(
        late.answered.is_empty(),
        "answered during drain: {:?}",
        late.answered
    );
    let r = busy.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "slow /slow\n"));
    done.recv_timeout(Duration::from_secs(4)).expect("shutdown");
    assert_eq!(
        late.hung, 0,
        "{io:?}: {} of 8 connections made during the drain ({} accepted by \
         the kernel) were left open with no answer",
        late.hung, late.accepted
    );
}

#[test]
fn drain_refuses_new_connections_epoll() {
    drain_refuses_new_connections(IoMode::Epoll);
}

#[test]
fn drain_refuses_new_connections_io_uring() {
    if !io_uring_available() {
        return;
    }
    drain_refuses_new_connections(IoMode::IoUring);
}

/// After `shutdown()` returns, the listening port no longer takes
/// connections: the listeners were closed, not leaked.
fn shutdown_releases_listeners(io: IoMode) {
    let mut still_accepting = 0;
    for _ in 0..5 {
        let up = Upstream::echo();
        let proxy = Proxy::start_with(&simple_config(up.addr), 2, io);
        let addr = proxy.addr;
        assert_eq!(proxy.connect().request(&get("/x")).status, 200);
        proxy.shutdown();
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.write_all(&get("/x"));
            match read_until_closed(&mut s, Duration::from_millis(200)) {
                Ok(b) => assert!(b.is_empty(), "answered after shutdown"),
                Err(_) => still_accepting += 1,
            }
        }
    }
    assert_eq!(
        still_accepting, 0,
        "{io:?}: in {still_accepting} of 5 runs the port still accepted connections \
         (into a queue nobody serves) after shutdown() returned"
    );
}

#[test]
fn shutdown_releases_listeners_epoll() {
    shutdown_releases_listeners(IoMode::Epoll);
}

#[test]
fn shutdown_releases_listeners_io_uring() {
    if !io_uring_available() {
        return;
    }
    shutdown_releases_listeners(IoMode::IoUring);
}

#[test]
fn drain_closes_connection_that_never_sent_a_request() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&drain_config(up.addr, "2s"));
    // Connected, accepted, but no request bytes yet (client_head is 10 s).
    let mut quiet = proxy.connect();
    thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    let done = shutdown_in_background(proxy);
    let closed = read_until_closed(&mut quiet.stream, Duration::from_secs(1));
    let closed_after = t0.elapsed();
    let took = done.recv_timeout(Duration::from_secs(5)).expect("shutdown");
    assert!(
        closed.is_ok() && closed_after < Duration::from_millis(600),
        "a connection that never sent a request was not closed at drain start \
         (still open {closed_after:?} in; shutdown took {took:?} with drain_timeout 2s)"
    );
    assert!(took < Duration::from_millis(600), "shutdown took {took:?}");
}

#[test]
fn drain_timeout_bounds_shutdown() {
    let up = silent();
    let proxy = Proxy::start(&drain_config(up.addr, "300ms"));
    let mut c = proxy.connect();
    c.send(&get("/never"));
    assert!(
        wait_until(Duration::from_secs(2), || up.requests().len() == 1),
        "upstream never got the request"
    );
    let done = shutdown_in_background(proxy);
    let took = done
        .recv_timeout(Duration::from_secs(5))
        .expect("shutdown must not wait for a stuck upstream");
    assert!(
        took < Duration::from_millis(1500),
        "shutdown took {took:?} with drain_timeout 300ms"
    );
    assert!(
        took >= Duration::from_millis(250),
        "shutdown did not drain at all ({took:?})"
    );
    // The stuck client connection is not left open behind a stopped proxy.
    let got = read_until_closed(&mut c.stream, Duration::from_secs(2));
    let text = match &got {
        Ok(b) | Err(b) => String::from_utf8_lossy(b).into_owned(),
    };
    assert!(
        got.is_ok(),
        "client connection still open after shutdown: {text:?}"
    );
    assert!(!text.starts_with("HTTP/1.1 200"), "{text:?}");
}

// ---------------------------------------------------------------- drivers

/// Echo upstream that answers `/chunked...` with a chunked body.
fn chunking_upstream() -> Upstream {
    Upstream::start(|r, w, up| {
        while let Some(req) = up.record(r) {
            let out = if req.target.starts_with("/chunked") {
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                 6\r\nhello \r\n8\r\nchunked \r\n5\r\nworld\r\n0\r\n\r\n"
                    .to_string()
                    .into_bytes()
            } else {
                let mut body = format!("{} {}\n", req.method, req.target).into_bytes();
                body.extend_from_slice(&req.body);
                let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                    .into_bytes();
                out.extend_from_slice(&body);
                out
            };
            if w.write_all(&out).is_err() {
                return;
            }
        }
    })
}

fn exchange_on_driver(io: IoMode, want: &str) {
    let up = chunking_upstream();
    let proxy = Proxy::start_with(&simple_config(up.addr), 2, io);
    assert_eq!(proxy.handle().drivers(), &[want, want][..]);
    let mut c = proxy.connect();

    let r = c.request(&get("/a"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "GET /a\n"));

    let r = c.request(b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!((r.status, r.body_str().as_str()), (200, "POST /p\nhello"));

    let r = c.request(
        b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n",
    );
    assert_eq!((r.status, r.body_str().as_str()), (200, "POST /c\nabcdef"));

    let r = c.request(&get("/chunked"));
    assert_eq!(r.status, 200);
    assert!(
        r.chunked,
        "chunked upstream body relayed chunked: {}",
        r.raw_head
    );
    assert_eq!(r.body_str(), "hello chunked world");

    let r = c.request(&get("/after"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "GET /after\n"));

    let bodies: Vec<Vec<u8>> = up.requests().into_iter().map(|s| s.body).collect();
    assert_eq!(bodies[1], b"hello");
    assert_eq!(bodies[2], b"abcdef");
    proxy.shutdown();
}

#[test]
fn exchange_on_epoll_driver() {
    exchange_on_driver(IoMode::Epoll, "epoll");
}

/// Whether `IoMode::Auto` picks io_uring here; prints a note when not.
fn io_uring_available() -> bool {
    let probe = Proxy::start_with(
        &simple_config("127.0.0.1:9".parse().unwrap()),
        1,
        IoMode::Auto,
    );
    let auto = probe.handle().drivers().to_vec();
    probe.shutdown();
    let yes = auto.first() == Some(&"io_uring");
    if !yes {
        eprintln!("NOTE: io_uring is not available here (auto picked {auto:?}); skipping");
    }
    yes
}

#[test]
fn exchange_on_io_uring_driver() {
    if !io_uring_available() {
        return;
    }
    exchange_on_driver(IoMode::IoUring, "io_uring");
}

// ------------------------------------------------------------ concurrency

#[test]
fn two_hundred_concurrent_connections() {
    const CONNS: usize = 200;
    const REQUESTS: usize = 5;
    let up = Upstream::echo();
    // The test upstream's accept queue is std's 128: a burst of 200 new
    // upstream connections may see a SYN retransmitted after 1 s, which
    // simple_config's 1 s connect timeout would turn into a 504.
    let config = ConfigBuilder::new(up.addr)
        .group(r#"connect_timeout = "5s""#)
        .build();
    assert!(config.contains("connect_timeout = \"5s\""));
    let proxy = Proxy::start_with(&config, 2, IoMode::Auto);
    assert_eq!(proxy.handle().worker_count(), 2);
    let addr = proxy.addr;
    let barrier = Arc::new(Barrier::new(CONNS));
    let clients: Vec<_> = (0..CONNS)
        .map(|i| {
            let barrier = barrier.clone();
            thread::spawn(move || -> Result<usize, String> {
                let conn = try_connect(addr);
                // Every connection is open before any request is sent.
                barrier.wait();
                let mut c = conn?;
                for j in 0..REQUESTS {
                    let path = format!("/c{i}/r{j}");
                    let r = try_request(&mut c, &get(&path)).map_err(|e| format!("{path}: {e}"))?;
                    if r.status != 200 || r.body_str() != format!("GET {path}\n") {
                        return Err(format!("{path}: {} {:?}", r.status, r.body_str()));
                    }
                }
                Ok(REQUESTS)
            })
        })
        .collect();
    let mut ok = 0;
    let mut failures = Vec::new();
    for c in clients {
        match c.join().expect("client thread") {
            Ok(n) => ok += n,
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} connections failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert_eq!(ok, CONNS * REQUESTS);
    assert_eq!(up.requests().len(), CONNS * REQUESTS);
}
