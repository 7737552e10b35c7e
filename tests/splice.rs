//! Large bodies between plain sockets go through a kernel pipe (splice):
//! the bytes arrive intact both ways, keep-alive and upstream reuse hold
//! after them, `runtime.splice = false` copies instead, and an upstream
//! that stops or stalls mid-body, or a client that stops reading, ends
//! the exchange as the copying path does.
//!
//! Whether a pipe was used is read from /proc/self/fd: the proxy runs in
//! this process and nothing else here makes pipes. The tests take turns
//! (one lock) so one test's pipes do not show up in another's count.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use ringress::IoMode;

static SERIAL: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pipe descriptors open in this process.
fn pipes_open() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("pipe:"))
        })
        .count()
}

/// `n` bytes that differ per position and per `seed`, so a lost, doubled
/// or reordered piece shows.
fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Keep-alive upstream answering `GET /size/N` with N pattern bytes
/// (Content-Length), written in 64 KiB pieces so the proxy meets the body
/// over many reads.
fn sized_upstream() -> Upstream {
    Upstream::start(|r, w, up| {
        while let Some(req) = up.record(r) {
            let n: usize = req
                .target
                .strip_prefix("/size/")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let body = pattern(n, n as u64);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
            if w.write_all(head.as_bytes()).is_err() {
                return;
            }
            for piece in body.chunks(64 * 1024) {
                if w.write_all(piece).is_err() {
                    return;
                }
            }
        }
    })
}

/// Reads until EOF, a reset or `limit`; returns the bytes and whether the
/// connection ended (rather than the time running out).
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

/// Upstream answering one request with a head that declares `declared`
/// body bytes, then only the first `sent` pattern bytes of `seed`; it
/// waits `then` before closing.
fn partial_upstream(declared: usize, sent: usize, seed: u64, then: Duration) -> Upstream {
    Upstream::start(move |r, w, up| {
        if up.record(r).is_some() {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\n\r\n");
            let _ = w.write_all(head.as_bytes());
            let _ = w.write_all(&pattern(sent, seed));
            std::thread::sleep(then);
        }
    })
}

/// Where the head ends in raw response bytes.
fn body_start(raw: &[u8]) -> usize {
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .expect("a response head")
}

#[test]
fn large_responses_arrive_intact_and_keep_both_connections() {
    let _turn = one_at_a_time();
    let before = pipes_open();
    let up = sized_upstream();
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    // Spliced, copied (too small), spliced again: one client connection,
    // one upstream connection throughout.
    for n in [3 << 20, 1000, 70_000, 5 << 20] {
        let r = c.request(&get(&format!("/size/{n}")));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some(n.to_string().as_str()));
        assert!(r.body == pattern(n, n as u64), "{n}-byte body differs");
    }
    assert_eq!(
        up.connections.load(Ordering::Acquire),
        1,
        "the upstream connection is reused after spliced bodies"
    );
    assert!(pipes_open() > before, "large bodies went through a pipe");
    proxy.shutdown();
    assert_eq!(
        pipes_open(),
        before,
        "the workers' pipes are closed when they exit"
    );
}

#[test]
fn splice_off_copies_without_a_pipe() {
    let _turn = one_at_a_time();
    let before = pipes_open();
    let up = sized_upstream();
    let proxy = Proxy::start(
        &ConfigBuilder::new(up.addr)
            .runtime("splice = false")
            .build(),
    );
    let mut c = proxy.connect();
    let n = 3 << 20;
    let r = c.request(&get(&format!("/size/{n}")));
    assert_eq!(r.status, 200);
    assert!(r.body == pattern(n, n as u64), "body differs");
    assert_eq!(pipes_open(), before, "no pipe with splice = false");
}

#[test]
fn upload_is_spliced_to_the_upstream() {
    let _turn = one_at_a_time();
    let before = pipes_open();
    // The answer is small (the body's length and a sum), so a pipe can
    // only have come from the upload.
    let up = Upstream::start(|r, w, up| {
        while let Some(req) = up.record(r) {
            let sum: u64 = req.body.iter().map(|&b| u64::from(b)).sum();
            let text = format!("{} {sum}", req.body.len());
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", text.len());
            if w.write_all(format!("{head}{text}").as_bytes()).is_err() {
                return;
            }
        }
    });
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    let body = pattern(3 << 20, 7);
    c.send(
        format!(
            "POST /up HTTP/1.1\r\nHost: test.local\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    // In pieces, so the proxy splices while the client is still sending.
    for piece in body.chunks(100_000) {
        c.send(piece);
    }
    let r = c.read_response();
    assert_eq!(r.status, 200);
    let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
    assert_eq!(r.body_str(), format!("{} {sum}", body.len()));
    assert!(up.last().body == body, "the upstream got the body intact");
    assert!(pipes_open() > before, "the body went through a pipe");
    // The connection still serves requests, on the same upstream connection.
    let r = c.request(&get("/after"));
    assert_eq!(r.body_str(), "0 0");
    assert_eq!(up.connections.load(Ordering::Acquire), 1);
}

/// A transfer cut while its pipe held bytes (the client stopped reading)
/// must not leave those bytes to the next body on the same worker.
#[test]
fn a_cut_transfer_leaves_nothing_for_the_next_body() {
    let _turn = one_at_a_time();
    let up = sized_upstream();
    let proxy = Proxy::start_with(
        &ConfigBuilder::new(up.addr)
            .sections("[timeouts]\nclient_io = \"300ms\"\n")
            .build(),
        1,
        IoMode::Auto,
    );
    for round in 0..3 {
        let mut stalled = proxy.connect();
        stalled.send(&get(&format!("/size/{}", 64 << 20)));
        // Long enough for the buffers to fill and client_io to pass.
        std::thread::sleep(Duration::from_millis(1000));
        drop(stalled);
        let n = 3 << 20;
        let r = proxy.connect().request(&get(&format!("/size/{n}")));
        assert!(
            r.body == pattern(n, n as u64),
            "round {round}: the body after a cut transfer differs"
        );
    }
}

#[test]
fn close_delimited_response_is_spliced_to_an_http10_client() {
    let _turn = one_at_a_time();
    let before = pipes_open();
    let n = 2 << 20;
    let up = Upstream::start(move |r, w, up| {
        if up.record(r).is_some() {
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            for piece in pattern(n, 3).chunks(64 * 1024) {
                if w.write_all(piece).is_err() {
                    return;
                }
            }
        }
    });
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    c.send(b"GET /stream HTTP/1.0\r\nHost: test.local\r\n\r\n");
    let (raw, closed) = read_until_closed(&mut c.stream, Duration::from_secs(10));
    assert!(closed, "the body ends with the connection");
    let start = body_start(&raw);
    let head = String::from_utf8_lossy(&raw[..start]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(raw[start..] == pattern(n, 3)[..], "body differs");
    assert!(pipes_open() > before, "the body went through a pipe");
}

#[test]
fn upstream_closing_mid_body_closes_the_client() {
    let _turn = one_at_a_time();
    // The connection closes 1 MiB short.
    let up = partial_upstream(2 << 20, 1 << 20, 5, Duration::ZERO);
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    c.send(&get("/short"));
    let (raw, closed) = read_until_closed(&mut c.stream, Duration::from_secs(5));
    assert!(closed, "the client connection is closed");
    let start = body_start(&raw);
    assert!(
        raw[start..] == pattern(1 << 20, 5)[..],
        "what came is intact"
    );
}

#[test]
fn stalled_upstream_mid_body_meets_the_io_timeout() {
    let _turn = one_at_a_time();
    let up = partial_upstream(2 << 20, 512 << 10, 9, Duration::from_secs(4));
    let proxy = Proxy::start(
        &ConfigBuilder::new(up.addr)
            .group(r#"io_timeout = "300ms""#)
            .build(),
    );
    let mut c = proxy.connect();
    let sent = Instant::now();
    c.send(&get("/stall"));
    let (raw, closed) = read_until_closed(&mut c.stream, Duration::from_secs(3));
    let took = sent.elapsed();
    assert!(
        closed,
        "closed after the stall, not after the upstream gave up"
    );
    assert!(
        took >= Duration::from_millis(250),
        "not before the timeout: {took:?}"
    );
    let start = body_start(&raw);
    assert!(
        raw[start..] == pattern(512 << 10, 9)[..],
        "what came is intact"
    );
}

#[test]
fn client_that_stops_reading_is_closed_after_client_io() {
    let _turn = one_at_a_time();
    let upstream_cut = Arc::new(AtomicBool::new(false));
    let cut = upstream_cut.clone();
    let up = Upstream::start(move |r, w, up| {
        if up.record(r).is_some() {
            let piece = pattern(64 * 1024, 11);
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 268435456\r\n\r\n");
            for _ in 0..4096 {
                if w.write_all(&piece).is_err() {
                    // The proxy gave up on this exchange and closed it.
                    cut.store(true, Ordering::Release);
                    return;
                }
            }
        }
    });
    let proxy = Proxy::start(
        &ConfigBuilder::new(up.addr)
            .sections("[timeouts]\nclient_io = \"300ms\"\n")
            .build(),
    );
    let mut c = proxy.connect();
    c.send(&get("/big"));
    // Read nothing while the buffers between us fill and the proxy waits.
    std::thread::sleep(Duration::from_millis(1500));
    let (raw, closed) = read_until_closed(&mut c.stream, Duration::from_secs(10));
    assert!(closed, "the proxy closed the stalled client");
    assert!(raw.len() < 256 << 20, "the body was cut short");
    let start = Instant::now();
    while !upstream_cut.load(Ordering::Acquire) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        upstream_cut.load(Ordering::Acquire),
        "the upstream connection was closed too"
    );
}
