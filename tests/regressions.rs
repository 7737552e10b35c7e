//! Regression tests, each named after what broke (found in review).

mod common;

use std::io::{BufRead, Write};
use std::thread;
use std::time::Duration;

use common::*;
use ringress::{Config, IoMode};

/// [`simple_config`] with a 1 s response timeout and `extra` group keys.
fn one_worker(upstream: std::net::SocketAddr, extra: &str) -> String {
    ConfigBuilder::new(upstream)
        .group(r#"response_timeout = "1s""#)
        .group(extra)
        .build()
}

/// Bytes an upstream sends after a complete response must never be read
/// as the next client's response (the pooled connection is checked).
#[test]
fn stray_upstream_bytes_never_reach_the_next_client() {
    let up = Upstream::start(|r, w, up| {
        while let Some(req) = up.record(r) {
            if req.method == "HEAD" {
                w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 45\r\n\r\n")
                    .unwrap();
                thread::sleep(Duration::from_millis(30));
                // A broken app sends a body after its HEAD answer anyway.
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON");
            } else {
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            }
        }
    });
    let proxy = Proxy::start_with(&one_worker(up.addr, ""), 1, IoMode::Auto);
    let mut a = proxy.connect();
    assert_eq!(
        a.request(b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n").status,
        200
    );
    thread::sleep(Duration::from_millis(150));
    let mut b = proxy.connect();
    let r = b.request(b"GET /victim HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
}

/// An upstream closing an idle keep-alive connection is noticed before a
/// POST (which is never retried) is sent on it.
#[test]
fn post_after_upstream_idle_close_succeeds() {
    let up = Upstream::start(|r, w, up| {
        let _ = r
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)));
        while up.record(r).is_some() {
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    let proxy = Proxy::start_with(&one_worker(up.addr, ""), 1, IoMode::Auto);
    let mut c = proxy.connect();
    assert_eq!(c.request(&get("/")).status, 200);
    thread::sleep(Duration::from_millis(300));
    let r = c.request(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(r.status, 200);
}

/// An upstream that answers before taking the whole body (413 and close)
/// has its answer relayed, not replaced by a 502.
#[test]
fn early_upstream_answer_to_an_upload_is_relayed() {
    let up = Upstream::start(|r, w, _| {
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
        }
        let _ = w.write_all(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig\n",
        );
        thread::sleep(Duration::from_millis(50));
    });
    let proxy = Proxy::start_with(&one_worker(up.addr, ""), 1, IoMode::Auto);
    let mut c = proxy.connect();
    let len = 8 << 20;
    c.send(format!("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n").as_bytes());
    let mut s = c.stream.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let chunk = vec![b'a'; 64 * 1024];
        let mut sent = 0;
        while sent < len && s.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
    });
    let r = c.read_response_to(false).expect("an answer");
    assert_eq!((r.status, r.body_str().as_str()), (413, "big\n"));
    assert_eq!(r.header("connection"), Some("close"));
    let _ = writer.join();
}

/// A response head that stalls after an interim 103 gets a 504; the
/// timed-out read must not leave the buffer inconsistent (it panicked).
#[test]
fn stall_after_interim_response_is_a_gateway_timeout() {
    let up = Upstream::start(|r, w, up| {
        if up.record(r).is_some() {
            let big = "a".repeat(20000);
            let head = format!("HTTP/1.1 200 OK\r\nX-Big: {big}\r\nContent-Length: 2\r\n\r\nok");
            w.write_all(head.as_bytes()).unwrap();
        }
        if up.record(r).is_some() {
            let _ =
                w.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n");
            thread::sleep(Duration::from_secs(3));
        }
    });
    let proxy = Proxy::start_with(&one_worker(up.addr, ""), 1, IoMode::Auto);
    let mut c = proxy.connect();
    assert_eq!(c.request(&get("/big")).status, 200);
    c.send(&get("/"));
    assert_eq!(c.read_response().status, 103);
    assert_eq!(c.read_response().status, 504);
    // The worker survived: a new connection is served.
    let mut d = proxy.connect();
    d.send(&get("/again"));
    assert!(d.read_response_to(false).is_some());
}

/// Routes refer to listeners by name, and a listener keeps its sockets
/// across a reload that reorders the list: a reload that swaps the order
/// (once refused, when routes held positions) must not expose a route of
/// one listener on the other's port.
#[test]
fn reload_that_reorders_listeners_keeps_routes_on_their_ports() {
    let config = |first: &str, second: &str| {
        format!(
            r#"
[[listeners]]
name = "{first}"
bind = "127.0.0.1:0"
[[listeners]]
name = "{second}"
bind = "127.0.0.1:0"
[[routes]]
path_prefix = "/admin"
listeners = ["admin"]
respond = {{ status = 200, body = "secret" }}
[[routes]]
respond = {{ status = 404, body = "no" }}
"#
        )
    };
    let proxy = Proxy::start_with(&config("public", "admin"), 1, IoMode::Auto);
    let admin = proxy.handle().listener_addr("admin").expect("admin bound");
    let reordered = Config::from_toml_str(&config("admin", "public")).unwrap();
    proxy.handle().reload(reordered).expect("accepted");
    thread::sleep(Duration::from_millis(200));
    let mut c = proxy.connect();
    assert_eq!(c.request(&get("/admin")).status, 404);
    assert_eq!(proxy.handle().listener_addr("admin"), Some(admin));
    let mut a = Client::connect(admin);
    assert_eq!(a.request(&get("/admin")).status, 200);
}

/// Durations so large that `now + d` overflows used to pass --check and
/// panic a worker.
#[test]
fn huge_durations_are_config_errors() {
    let up = "127.0.0.1:9";
    for extra in [
        "idle_timeout = \"9999999999999999h\"",
        "tunnel_idle_timeout = 9223372036854775807",
    ] {
        let err = Config::from_toml_str(&one_worker(up.parse().unwrap(), extra)).unwrap_err();
        assert!(err.to_string().contains("at most 365 days"), "{err}");
    }
}

/// During a drain the in-flight response says `Connection: close`, so a
/// client with a request pipelined behind it knows it was not served.
#[test]
fn drain_marks_the_last_response_closing() {
    let up = Upstream::start(|r, w, up| {
        while up.record(r).is_some() {
            thread::sleep(Duration::from_millis(300));
            if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
    });
    let mut proxy = Proxy::start_with(&one_worker(up.addr, ""), 1, IoMode::Auto);
    let mut c = proxy.connect();
    c.send(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz");
    thread::sleep(Duration::from_millis(100));
    let handle = proxy.handle.take().unwrap();
    let stopper = thread::spawn(move || handle.shutdown());
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.read_response_to(false).is_none());
    stopper.join().unwrap();
    assert_eq!(up.requests().len(), 1);
}

/// RFC 9110 §8.6: a 204 never carries Content-Length, even when the
/// upstream sends one.
#[test]
fn content_length_dropped_from_upstream_204() {
    let up = Upstream::start(|r, w, up| {
        while up.record(r).is_some() {
            if w.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")
                .is_err()
            {
                return;
            }
        }
    });
    let proxy = Proxy::start_with(&one_worker(up.addr, ""), 1, IoMode::Auto);
    let mut c = proxy.connect();
    let r = c.request(&get("/"));
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-length"), None, "{}", r.raw_head);
    assert_eq!(c.request(&get("/next")).status, 204);
}

/// Host patterns with a port could never match (hosts match without it).
#[test]
fn host_pattern_with_port_is_a_config_error() {
    let text = "[[listeners]]\nbind = \"127.0.0.1:0\"\n[[routes]]\nhost = \"api.example.com:8080\"\nrespond = { status = 200 }\n";
    let err = Config::from_toml_str(text).unwrap_err();
    assert!(err.to_string().contains("routes[0].host"), "{err}");
}

/// `..;` segments (dot-segments to servlet containers) and backslashes
/// are refused, so `/public/..;/admin` cannot reach `/admin` behind a
/// `/public/` route.
#[test]
fn servlet_dot_segments_and_backslashes_are_refused() {
    let up = Upstream::echo();
    let text = format!(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n[[routes]]\npath_prefix = \"/admin\"\nrespond = {{ status = 403 }}\n[[routes]]\npath_prefix = \"/public/\"\nupstream = \"b\"\n[upstreams.b]\nservers = [\"{}\"]\n",
        up.addr
    );
    let proxy = Proxy::start(&text);
    for target in [
        "/public/..;/admin",
        "/public/%2e%2e;/admin",
        "/public/.;/x",
        "/public\\..\\admin",
    ] {
        let mut c = proxy.connect();
        let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(c.request(raw.as_bytes()).status, 400, "{target}");
    }
    assert!(up.requests().is_empty());
}

/// `OPTIONS *` is routed like `/` and forwarded with its asterisk target
/// (it used to match no route: 404).
#[test]
fn options_asterisk_is_forwarded() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    let r = c.request(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.body_str().as_str()), (200, "OPTIONS *\n"));
}

/// A kept-alive connection that idles for a while still serves its next
/// requests, including one split across reads, on both drivers.
#[test]
fn requests_after_a_long_idle_gap_are_served() {
    for io in [IoMode::Auto, IoMode::Epoll] {
        let up = Upstream::echo();
        let proxy = Proxy::start_with(&simple_config(up.addr), 1, io);
        let mut c = proxy.connect();
        assert_eq!(c.request(&get("/before")).status, 200);
        thread::sleep(Duration::from_millis(800));
        // Two pipelined requests after the gap, one sent in two pieces.
        c.send(b"GET /after HTTP/1.1\r\nHo");
        thread::sleep(Duration::from_millis(50));
        c.send(b"st: x\r\n\r\nGET /again HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(c.read_response().body_str(), "GET /after\n");
        assert_eq!(c.read_response().body_str(), "GET /again\n");
    }
}

/// A burst of responses must not close pooled connections that the next
/// burst of requests needs again: with the old default bound (128 idle per
/// server) 160 lockstep clients reopened 32 upstream connections per round.
#[test]
fn default_pool_bound_keeps_a_burst_of_upstream_connections() {
    const CLIENTS: usize = 160;
    const ROUNDS: usize = 4;
    let up = Upstream::start(|r, w, up| {
        while up.record(r).is_some() {
            // Long enough for every client's request to be in flight at
            // once, so each round needs CLIENTS upstream connections.
            thread::sleep(Duration::from_millis(150));
            if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
    });
    // 160 connections opened at once overflow the test upstream's accept
    // queue (std's backlog is 128) when its accept thread falls behind:
    // a dropped handshake ACK costs a 1 s SYN-ACK retransmit, longer than
    // the default 1 s response timeout of these tests.
    let proxy = Proxy::start_with(
        &one_worker(up.addr, r#"response_timeout = "5s""#),
        1,
        IoMode::Auto,
    );
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| proxy.connect()).collect();
    for round in 0..ROUNDS {
        for c in &mut clients {
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        }
        for c in &mut clients {
            let r = c.read_response();
            assert_eq!(
                (r.status, r.body_str().as_str()),
                (200, "ok"),
                "round {round}"
            );
        }
    }
    let opened = up.connections.load(std::sync::atomic::Ordering::Acquire);
    assert_eq!(up.requests().len(), CLIENTS * ROUNDS);
    assert!(
        opened <= CLIENTS + 4,
        "{opened} upstream connections for {CLIENTS} clients over {ROUNDS} rounds"
    );
}

/// A generated answer to a HEAD request carries no body: its bytes would
/// be read as the start of the next response on the connection (a 404
/// for no route, a 502 from a dead upstream, a redirect).
#[test]
fn generated_answers_to_head_requests_have_no_body() {
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .route(r#"path_prefix = "/app/""#)
        .sections(&format!(
            r#"
[[routes]]
path_prefix = "/moved"
redirect = {{ to = "https://example.test/new", status = 301 }}

[[routes]]
path_prefix = "/dead/"
upstream = "dead"

[upstreams.dead]
servers = ["{}"]
connect_timeout = "1s"
"#,
            dead_addr()
        ))
        .build();
    let proxy = Proxy::start_with(&config, 1, IoMode::Auto);
    let mut c = proxy.connect();
    for (target, status) in [("/nothing-here", 404), ("/dead/x", 502), ("/moved", 301)] {
        c.send(format!("HEAD {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let r = c.read_response_to(true).expect("an answer to HEAD");
        assert_eq!(r.status, status, "{target}: {}", r.raw_head);
        if r.header("connection") == Some("close") {
            c = proxy.connect();
            continue;
        }
        // The next response on the connection is read from its first byte.
        let next = c.request(&get("/app/next"));
        assert_eq!(
            (next.status, next.body_str().as_str()),
            (200, "GET /app/next\n"),
            "after HEAD {target}"
        );
    }
}
