//! Listener connection caps (`max_conns`, `max_conns_per_ip`,
//! `over_limit`), exact over two workers: a connection over a cap is
//! closed at once (or answered 503) and never served, and a place comes
//! back when a connection ends.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Client, ConfigBuilder, Proxy, Upstream, get, wait_until};

fn proxy(up: &Upstream, listener_keys: &str, timeouts: &str) -> Proxy {
    proxy_on(up, listener_keys, timeouts, 2)
}

/// With one worker, connections are accepted in the order they were made.
fn proxy_on(up: &Upstream, listener_keys: &str, timeouts: &str, workers: usize) -> Proxy {
    let config = ConfigBuilder::new(up.addr)
        .sections(&format!("[timeouts]\n{timeouts}\n"))
        .build()
        .replace(
            "name = \"main\"\nbind = \"127.0.0.1:0\"\n",
            &format!("name = \"main\"\nbind = \"127.0.0.1:0\"\n{listener_keys}\n"),
        );
    Proxy::start_with(&config, workers, ringress::IoMode::Auto)
}

/// How one connection fared: served (200), refused with a status, or
/// closed without a byte.
#[derive(Debug, PartialEq)]
enum Fate {
    Served,
    Answered(u16),
    Closed,
}

/// Connects from `source` (an address of 127/8) to `to`.
fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local: SocketAddr = format!("{source}:0").parse().expect("source address");
    socket
        .bind(&local.into())
        .expect("bind the client's source");
    socket.connect(&to.into()).expect("connect");
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Sends a GET on `s` and reads what comes back; a served connection
/// stays open (keep-alive) and keeps its place.
fn fate(s: &mut TcpStream) -> Fate {
    // A refused connection may be closed before or while we write.
    let _ = s.write_all(&get("/"));
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                // The echo upstream's answer is complete with its body.
                if text.starts_with("HTTP/1.1 200") && text.ends_with("GET /\n") {
                    return Fate::Served;
                }
            }
        }
    }
    match got.get(9..12).and_then(|s| std::str::from_utf8(s).ok()) {
        Some(code) => Fate::Answered(code.parse().expect("a status")),
        None => Fate::Closed,
    }
}

fn tally(fates: &[Fate]) -> (usize, usize, usize) {
    let served = fates.iter().filter(|f| **f == Fate::Served).count();
    let refused_503 = fates.iter().filter(|f| **f == Fate::Answered(503)).count();
    let closed = fates.iter().filter(|f| **f == Fate::Closed).count();
    (served, refused_503, closed)
}

#[test]
fn max_conns_serves_exactly_the_cap_and_closes_the_rest() {
    let up = Upstream::echo();
    let p = proxy(&up, "max_conns = 4", "keepalive = \"30s\"");
    let mut conns: Vec<TcpStream> = (0..7).map(|_| connect_from("127.0.0.1", p.addr)).collect();
    let fates: Vec<Fate> = conns.iter_mut().map(fate).collect();
    assert_eq!(tally(&fates), (4, 0, 3), "{fates:?}");
    // Two served connections end: two new ones get their places, and no more.
    let mut served: Vec<TcpStream> = conns
        .into_iter()
        .zip(&fates)
        .filter(|(_, f)| **f == Fate::Served)
        .map(|(c, _)| c)
        .collect();
    served.truncate(2);
    let mut admitted = Vec::new();
    wait_until("two places given back", Duration::from_secs(5), || {
        let mut c = connect_from("127.0.0.1", p.addr);
        if fate(&mut c) == Fate::Served {
            admitted.push(c);
        }
        admitted.len() == 2
    });
    let mut extra = connect_from("127.0.0.1", p.addr);
    assert_eq!(fate(&mut extra), Fate::Closed);
    // The served ones still work.
    for c in served.iter_mut().chain(admitted.iter_mut()) {
        assert_eq!(fate(c), Fate::Served);
    }
}

#[test]
fn over_limit_503_answers_through_the_error_model() {
    let up = Upstream::echo();
    let p = proxy(
        &up,
        "max_conns = 2\nover_limit = \"503\"",
        "keepalive = \"30s\"",
    );
    let mut conns: Vec<TcpStream> = (0..5).map(|_| connect_from("127.0.0.1", p.addr)).collect();
    let fates: Vec<Fate> = conns.iter_mut().map(fate).collect();
    assert_eq!(tally(&fates), (2, 3, 0), "{fates:?}");
    // The answer is the error model's 503 with Connection: close.
    let mut c = Client::connect(p.addr);
    let r = c.request(&get("/"));
    assert_eq!(r.status, 503);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed());
}

#[test]
fn per_ip_caps_are_independent_per_source_address() {
    let up = Upstream::echo();
    let p = proxy(&up, "max_conns_per_ip = 2", "keepalive = \"30s\"");
    let mut conns = Vec::new();
    for source in ["127.0.0.2", "127.0.0.3"] {
        let mut mine: Vec<TcpStream> = (0..4).map(|_| connect_from(source, p.addr)).collect();
        let fates: Vec<Fate> = mine.iter_mut().map(fate).collect();
        assert_eq!(tally(&fates), (2, 0, 2), "{source}: {fates:?}");
        conns.push(mine);
    }
    // One of 127.0.0.2's served connections closes: 127.0.0.2 may open
    // one more, 127.0.0.3 still none.
    let first = &mut conns[0];
    let at = first
        .iter_mut()
        .position(|c| fate(c) == Fate::Served)
        .expect("a served connection");
    drop(first.remove(at));
    let mut again = None;
    wait_until(
        "127.0.0.2's place given back",
        Duration::from_secs(5),
        || {
            let mut c = connect_from("127.0.0.2", p.addr);
            let served = fate(&mut c) == Fate::Served;
            if served {
                again = Some(c);
            }
            served
        },
    );
    assert_eq!(fate(&mut connect_from("127.0.0.3", p.addr)), Fate::Closed);
}

#[test]
fn a_place_comes_back_when_a_connection_times_out() {
    let up = Upstream::echo();
    // One worker: the silent connection is accepted (and admitted) first.
    let p = proxy_on(&up, "max_conns = 1", "client_head = \"300ms\"", 1);
    // Holds the only place without sending anything, until client_head.
    let t0 = Instant::now();
    let mut silent = connect_from("127.0.0.1", p.addr);
    let mut c = connect_from("127.0.0.1", p.addr);
    assert_eq!(fate(&mut c), Fate::Closed);
    let mut buf = [0u8; 16];
    assert!(matches!(silent.read(&mut buf), Ok(0) | Err(_)));
    assert!(t0.elapsed() < Duration::from_secs(3));
    wait_until(
        "the timed-out place given back",
        Duration::from_secs(5),
        || fate(&mut connect_from("127.0.0.1", p.addr)) == Fate::Served,
    );
}

#[test]
fn caps_are_checked_by_the_config() {
    let text = |keys: &str| {
        format!(
            "[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\n{keys}\n\
             [[routes]]\npath_prefix = \"/\"\nrespond = {{ status = 200 }}\n"
        )
    };
    let err = ringress::Config::from_toml_str(&text(
        "max_conns = -1\nmax_conns_per_ip = \"many\"\nover_limit = \"drop\"",
    ))
    .expect_err("bad caps")
    .to_string();
    for path in [
        "line 4: listeners[0] \"main\".max_conns: -1 is out of range",
        "line 5: listeners[0] \"main\".max_conns_per_ip: expected an integer",
        "line 6: listeners[0] \"main\".over_limit: `drop` is not one of close, 503",
    ] {
        assert!(err.contains(path), "{path} missing in:\n{err}");
    }
    let ok = ringress::Config::from_toml_str(&text("max_conns = 10\nover_limit = \"503\""));
    assert!(ok.is_ok(), "{:?}", ok.err().map(|e| e.to_string()));
}

/// A TLS listener: a connection whose handshake fails gives its
/// address's place back. With `over_limit = "503"` a refused connection reads a plain
/// 503, so an admitted one is told apart by not getting it.
#[test]
fn a_failed_tls_handshake_gives_its_place_back() {
    let up = Upstream::echo();
    let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples/certs");
    let tls = format!(
        "max_conns_per_ip = 1\nover_limit = \"503\"\n[listeners.tls]\n\
         certs = [{{ cert = \"{certs}/localhost.pem\", key = \"{certs}/localhost.key\" }}]\n\
         handshake_timeout = \"5s\""
    );
    // One worker: `first` is accepted before any probe.
    let p = proxy_on(&up, &tls, "client_head = \"5s\"", 1);
    let not_tls = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = |s: &mut TcpStream| {
        let _ = s.write_all(not_tls);
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got.starts_with(b"HTTP/1.1 503")
    };
    // The first holds its address's only place while it says nothing
    // (the only other connections from 127.0.0.5 are the probes).
    let mut first = connect_from("127.0.0.5", p.addr);
    wait_until(
        "the first connection admitted",
        Duration::from_secs(5),
        || answer(&mut connect_from("127.0.0.5", p.addr)),
    );
    // Its handshake fails on a plain-text request: the place comes back.
    assert!(!answer(&mut first), "the admitted connection got a 503");
    wait_until("the place given back", Duration::from_secs(5), || {
        !answer(&mut connect_from("127.0.0.5", p.addr))
    });
}

/// Refusals are counted in `/metrics` by reason.
#[test]
fn refusals_are_counted_in_the_metrics() {
    let up = Upstream::echo();
    let p = proxy(&up, "max_conns_per_ip = 1", "keepalive = \"30s\"");
    let unused = std::env::temp_dir().join(format!("conn-limits-{}.toml", std::process::id()));
    let admin = p
        .handle()
        .start_admin("127.0.0.1:0".parse().unwrap(), unused)
        .expect("admin binds");
    let mut held = connect_from("127.0.0.6", p.addr);
    assert_eq!(fate(&mut held), Fate::Served);
    for _ in 0..3 {
        assert_eq!(fate(&mut connect_from("127.0.0.6", p.addr)), Fate::Closed);
    }
    let wanted = "ringress_connections_closed_total{reason=\"max_conns_per_ip\"} 3";
    wait_until("three refusals in /metrics", Duration::from_secs(5), || {
        let mut s = TcpStream::connect(admin).expect("admin");
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.contains(wanted)
    });
}

/// A WebSocket tunnel keeps its place until it ends.
#[test]
fn a_tunnel_holds_its_place_until_it_ends() {
    // Answers an upgrade with 101 and echoes until the client leaves;
    // anything else gets the echo upstream's kind of answer.
    let up = Upstream::start(|r, w, up| {
        while let Some(req) = up.record(r) {
            if req.header("upgrade").is_some() {
                let _ = w.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                );
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = r.read(&mut buf) {
                    if w.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                return;
            }
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nGET /\n");
        }
    });
    let p = proxy(&up, "max_conns_per_ip = 1", "keepalive = \"30s\"");
    let mut ws = connect_from("127.0.0.7", p.addr);
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .unwrap();
    let mut head = [0u8; 12];
    ws.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    assert_eq!(fate(&mut connect_from("127.0.0.7", p.addr)), Fate::Closed);
    drop(ws);
    wait_until(
        "the tunnel's place given back",
        Duration::from_secs(5),
        || fate(&mut connect_from("127.0.0.7", p.addr)) == Fate::Served,
    );
}
