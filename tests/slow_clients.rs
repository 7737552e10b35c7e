//! Slow clients: a request head trickled below `timeouts.min_head_rate`
//! is cut with 408 once its grace and earned time are over; a body below
//! `timeouts.min_body_rate` is cut with 408 and the connection closed;
//! clients slow but above the rates are served.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{ConfigBuilder, Proxy, Upstream};

fn proxy(up: &Upstream, timeouts: &str) -> Proxy {
    let config = ConfigBuilder::new(up.addr)
        .sections(&format!("[timeouts]\n{timeouts}\n"))
        .build();
    Proxy::start(&config)
}

/// Writes `chunks` to `s`, one every `gap`, from another thread, until
/// they are all sent or a write fails (the proxy closed); `stop` ends it
/// early.
fn trickle(
    s: &TcpStream,
    chunks: Vec<Vec<u8>>,
    gap: Duration,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    let mut w = s.try_clone().expect("clone");
    thread::spawn(move || {
        for chunk in chunks {
            if stop.load(Ordering::Relaxed) || w.write_all(&chunk).is_err() {
                return;
            }
            thread::sleep(gap);
        }
    })
}

/// Reads until the proxy closes (bounded by the socket's read timeout):
/// what came, and when the close came.
fn read_to_close(s: &mut TcpStream) -> (String, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), Instant::now())
}

fn bytes(s: &str) -> Vec<Vec<u8>> {
    s.bytes().map(|b| vec![b]).collect()
}

#[test]
fn a_trickled_head_is_cut_at_its_rate_deadline() {
    let up = Upstream::echo();
    // 100 B/s after 1 s: ten bytes a second is cut after about 1.1 s,
    // long before client_head.
    let p = proxy(
        &up,
        "client_head = \"10s\"\nmin_head_rate = \"100B/s\"\nhead_rate_grace = \"1s\"",
    );
    let mut s = TcpStream::connect(p.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let head = "GET / HTTP/1.1\r\nHost: test.local\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let writer = trickle(&s, bytes(head), Duration::from_millis(100), stop.clone());
    let (got, closed_at) = read_to_close(&mut s);
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let took = closed_at - t0;
    assert!(got.starts_with("HTTP/1.1 408 "), "{got:?}");
    // Grace 1 s plus about 11 bytes' worth (0.11 s); the deadline fires up
    // to 10 ms late, the test thread may be late too.
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_millis(2500),
        "cut after {took:?}"
    );
    assert!(up.requests().is_empty(), "nothing reached the upstream");
    // Counted as a slow head (not as a plain head timeout).
    let unused = std::env::temp_dir().join(format!("slow-clients-{}.toml", std::process::id()));
    let admin = p
        .handle()
        .start_admin("127.0.0.1:0".parse().unwrap(), unused)
        .expect("admin binds");
    let wanted = "ringress_connections_closed_total{reason=\"slow_head\"} 1";
    common::wait_until("the slow head in /metrics", Duration::from_secs(5), || {
        let mut s = TcpStream::connect(admin).expect("admin");
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.contains(wanted)
    });
}

#[test]
fn a_slow_head_above_the_rate_is_served() {
    let up = Upstream::echo();
    let p = proxy(
        &up,
        "client_head = \"10s\"\nmin_head_rate = \"100B/s\"\nhead_rate_grace = \"500ms\"",
    );
    let mut s = TcpStream::connect(p.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    // About 200 B/s: 20 bytes every 100 ms, 1.5 s in all.
    let head = format!(
        "GET /slow HTTP/1.1\r\nHost: test.local\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(230)
    );
    let chunks = head.as_bytes().chunks(20).map(<[u8]>::to_vec).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = trickle(&s, chunks, Duration::from_millis(100), stop);
    let (got, _) = read_to_close(&mut s);
    writer.join().expect("writer");
    assert!(got.starts_with("HTTP/1.1 200 "), "{got:?}");
    assert!(got.ends_with("GET /slow\n"), "{got:?}");
}

#[test]
fn a_body_below_min_body_rate_is_cut_with_408() {
    let up = Upstream::echo();
    let p = proxy(
        &up,
        "client_io = \"10s\"\nmin_body_rate = \"1KiB/s\"\nbody_rate_grace = \"1s\"",
    );
    let mut s = TcpStream::connect(p.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let head = "POST /upload HTTP/1.1\r\nHost: test.local\r\nContent-Length: 50000\r\n\r\n";
    // The head and 1,024 bytes at once (one second earned), then ten
    // bytes every 100 ms: cut about 2 s after the body began.
    let mut first = head.as_bytes().to_vec();
    first.extend_from_slice(&[b'x'; 1024]);
    let mut chunks = vec![first];
    chunks.extend((0..100).map(|_| vec![b'y'; 10]));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let writer = trickle(&s, chunks, Duration::from_millis(100), stop.clone());
    let (got, closed_at) = read_to_close(&mut s);
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let took = closed_at - t0;
    assert!(got.starts_with("HTTP/1.1 408 "), "{got:?}");
    assert!(got.contains("Connection: close"), "{got:?}");
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_millis(4000),
        "cut after {took:?}"
    );
}

#[test]
fn a_slow_body_above_the_rate_is_served() {
    let up = Upstream::echo();
    let p = proxy(
        &up,
        "client_io = \"10s\"\nmin_body_rate = \"1KiB/s\"\nbody_rate_grace = \"500ms\"",
    );
    let mut s = TcpStream::connect(p.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    // 6,000 bytes, 1,000 every 250 ms: about 4 KB/s.
    let head = "POST /upload HTTP/1.1\r\nHost: test.local\r\nContent-Length: 6000\r\nConnection: close\r\n\r\n";
    let mut chunks = vec![head.as_bytes().to_vec()];
    chunks.extend((0..6).map(|_| vec![b'z'; 1000]));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = trickle(&s, chunks, Duration::from_millis(250), stop);
    let (got, _) = read_to_close(&mut s);
    writer.join().expect("writer");
    assert!(got.starts_with("HTTP/1.1 200 "), "{got:?}");
    assert_eq!(up.last().body.len(), 6000);
}

#[test]
fn rates_are_checked_by_the_config() {
    let text = "[timeouts]\nmin_head_rate = \"fast\"\nmin_body_rate = 12.5\nhead_rate_grace = \"soon\"\n\
                [overload]\nkeepalive_threshold = 1.5\nkeepalive_timeout = \"0s\"\n\
                [[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\n\
                [[routes]]\npath_prefix = \"/\"\nrespond = { status = 200 }\n";
    let err = ringress::Config::from_toml_str(text)
        .expect_err("bad rates")
        .to_string();
    for wanted in [
        "timeouts.min_head_rate: `fast` is not a rate",
        "timeouts.min_body_rate: expected a rate like \"500B/s\", found float",
        "timeouts.head_rate_grace:",
        "overload.keepalive_threshold: expected a share of max_conns",
        "overload.keepalive_timeout: must be greater than zero",
    ] {
        assert!(err.contains(wanted), "{wanted} missing in:\n{err}");
    }
}
