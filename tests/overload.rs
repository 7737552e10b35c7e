//! `[overload]`: once a listener's open connections pass
//! `keepalive_threshold`, idle keep-alive connections are closed after
//! `keepalive_timeout` instead of `timeouts.keepalive`; below it they
//! stay.

mod common;

use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, ConfigBuilder, Proxy, Upstream, get, wait_until};

fn proxy(up: &Upstream, threshold: &str) -> Proxy {
    let config = ConfigBuilder::new(up.addr)
        .sections(&format!(
            "[timeouts]\nkeepalive = \"30s\"\n\
             [overload]\nkeepalive_threshold = {threshold}\nkeepalive_timeout = \"300ms\"\n"
        ))
        .build()
        .replace("name = \"main\"\n", "name = \"main\"\nmax_conns = 10\n");
    Proxy::start(&config)
}

/// A kept-alive connection that has served one request.
fn served(p: &Proxy) -> Client {
    let mut c = p.connect();
    assert_eq!(c.request(&get("/")).status, 200);
    c
}

/// A connection in the middle of a request head: open, not idle.
fn busy(p: &Proxy) -> Client {
    let mut c = p.connect();
    c.send(b"GET /busy HTTP/1.1\r\n");
    c
}

/// True once the proxy has closed `c` (EOF or reset); false while it
/// is open (checked without blocking for long).
fn closed(c: &mut Client) -> bool {
    c.stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut b = [0u8; 1];
    match c.stream.read(&mut b) {
        Ok(0) => true,
        Ok(_) => panic!("unexpected bytes on an idle connection"),
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn check_pressure_closes_idle_first(threshold: &str) {
    let up = Upstream::echo();
    let p = proxy(&up, threshold);
    // Below the threshold (5 of 10): idle far longer than the overload
    // timeout, and still open.
    let mut idle: Vec<Client> = (0..2).map(|_| served(&p)).collect();
    thread::sleep(Duration::from_millis(1200));
    for c in idle.iter_mut() {
        assert!(!closed(c), "closed without pressure");
        assert_eq!(c.request(&get("/still")).status, 200);
    }
    // Past the threshold: the idle ones close after about 300 ms of
    // idleness, well before the 30 s keep-alive.
    let t0 = Instant::now();
    let mut busy: Vec<Client> = (0..4).map(|_| busy(&p)).collect();
    for c in idle.iter_mut() {
        wait_until(
            "an idle connection closed under pressure",
            Duration::from_secs(5),
            || closed(c),
        );
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Connections with a request under way are not idle: they stay.
    for c in busy.iter_mut() {
        assert!(!closed(c));
    }
    // Counted by reason.
    wait_overload_closes(&p, 2);
}

/// Waits until `/metrics` counts at least `n` connections closed idle
/// under pressure.
fn wait_overload_closes(p: &Proxy, n: u64) {
    let unused = std::env::temp_dir().join(format!("overload-{}.toml", std::process::id()));
    let admin = p
        .handle()
        .start_admin("127.0.0.1:0".parse().unwrap(), unused)
        .expect("admin binds");
    wait_until(
        "overload closes in /metrics",
        Duration::from_secs(5),
        || {
            let mut s = std::net::TcpStream::connect(admin).expect("admin");
            let _ =
                std::io::Write::write_all(&mut s, b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n");
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            text.lines().any(|l| {
                l.strip_prefix("ringress_connections_closed_total{reason=\"overload_idle\"} ")
                    .and_then(|c| c.parse::<u64>().ok())
                    .is_some_and(|c| c >= n)
            })
        },
    );
}

/// A connection that goes idle while the pressure is already on waits
/// only the overload timeout from the start; closing it at the end of
/// that wait counts as an overload close too, not as an ordinary
/// keep-alive timeout.
#[test]
fn idle_wait_shortened_from_the_start_counts_as_an_overload_close() {
    let up = Upstream::echo();
    let p = proxy(&up, "5");
    let mut busy: Vec<Client> = (0..4).map(|_| busy(&p)).collect();
    // Five open: the pressure is on before this one's request ends.
    let mut idle = served(&p);
    wait_until(
        "the idle connection closed under pressure",
        Duration::from_secs(5),
        || closed(&mut idle),
    );
    for c in busy.iter_mut() {
        assert!(!closed(c));
    }
    wait_overload_closes(&p, 1);
}

#[test]
fn idle_keepalive_closes_early_past_a_share_of_max_conns() {
    check_pressure_closes_idle_first("0.5");
}

#[test]
fn idle_keepalive_closes_early_past_a_connection_count() {
    check_pressure_closes_idle_first("5");
}

#[test]
fn pressure_ends_when_connections_close() {
    let up = Upstream::echo();
    let p = proxy(&up, "5");
    let mut idle: Vec<Client> = (0..3).map(|_| served(&p)).collect();
    let _busy: Vec<Client> = (0..2).map(|_| busy(&p)).collect();
    // The first close ends the pressure (4 of 5 left open).
    wait_until(
        "an idle one closed under pressure",
        Duration::from_secs(5),
        || idle.iter_mut().any(closed),
    );
    // Pressure gone (the idle ones leave too): a new idle connection
    // keeps its place past the overload timeout.
    drop(idle);
    let mut c = served(&p);
    thread::sleep(Duration::from_millis(1200));
    assert!(!closed(&mut c));
    assert_eq!(c.request(&get("/")).status, 200);
}
