//! Rate limits over real sockets: the 429 and its headers, log mode,
//! exactness with two workers (a client-address key steered to one
//! worker, a header key through the shared buckets, a client known from
//! X-Forwarded-For), bounded key tables under a flood of keys, limits
//! shared through a real redis-server by two proxies, and Redis down.

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use redis_server::Redis;
use ringress::Config;

/// Requests answered 200 and 429 by `addr` to `conns` connections, each
/// sending `request` back to back for `run` (and at most 100,000 each);
/// with the seconds it took.
fn hammer(addr: SocketAddr, conns: usize, run: Duration, request: &[u8]) -> (u64, u64, f64) {
    hammer_after(addr, conns, run, (b"", request))
}

/// `hammer` with `preamble` sent first on each connection.
fn hammer_after(
    addr: SocketAddr,
    conns: usize,
    run: Duration,
    (preamble, request): (&[u8], &[u8]),
) -> (u64, u64, f64) {
    let start = Instant::now();
    let deadline = start + run;
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let request = request.to_vec();
            let preamble = preamble.to_vec();
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.send(&preamble);
                let (mut ok, mut limited) = (0u64, 0u64);
                for _ in 0..100_000 {
                    if Instant::now() >= deadline {
                        break;
                    }
                    match c.request(&request).status {
                        200 => ok += 1,
                        429 => limited += 1,
                        other => panic!("unexpected status {other}"),
                    }
                }
                (ok, limited)
            })
        })
        .collect();
    let (mut ok, mut limited) = (0, 0);
    for t in threads {
        let (o, l) = t.join().expect("client thread");
        ok += o;
        limited += l;
    }
    (ok, limited, start.elapsed().as_secs_f64())
}

/// Asserts that `ok` requests in `secs` are `burst` plus 100/s ± 5 %.
fn assert_hundred_per_second(what: &str, (ok, limited, secs): (u64, u64, f64), burst: u64) {
    let rate = (ok - burst.min(ok)) as f64 / secs;
    eprintln!("{what}: {ok} let through, {limited} refused in {secs:.2} s: {rate:.1}/s");
    assert!(limited > 0, "{what}: the client never went over the limit");
    assert!(
        (95.0..=105.0).contains(&rate),
        "{what}: {rate:.1}/s, not 100 ± 5 %"
    );
}

fn limited_config(upstream: SocketAddr, limit: &str) -> String {
    ConfigBuilder::new(upstream)
        .sections(&format!("[rate_limits.api]\n{limit}\n"))
        .route(r#"rate_limit = "api""#)
        .build()
}

#[test]
fn over_the_limit_is_answered_429_with_when_to_come_back() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&limited_config(
        up.addr,
        "rate = \"1/m\"\nburst = 2\nkey = \"client_ip\"",
    ));
    let mut c = proxy.connect();
    for _ in 0..2 {
        assert_eq!(c.request(&get("/a")).status, 200);
    }
    let r = c.request(&get("/a"));
    assert_eq!(r.status, 429);
    assert_eq!(r.body_str(), "Too Many Requests\n");
    // One request frees up a minute after the first: up to 60 s to wait.
    let retry: u64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(r.header("RateLimit-Policy"), Some("\"api\";q=1;w=60"));
    assert_eq!(
        r.header("RateLimit"),
        Some(format!("\"api\";r=0;t={retry}").as_str())
    );
    // Still the same connection, and nothing more reached the upstream.
    assert_eq!(c.request(&get("/b")).status, 429);
    assert_eq!(up.requests().len(), 2);
    // A HEAD gets the head alone (then the connection still reads
    // answers right).
    c.send(b"HEAD /a HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.read_response_to(true).expect("an answer to HEAD");
    assert_eq!(head.status, 429);
    assert_eq!(head.header("content-length"), Some("18"));
    assert!(head.body.is_empty());
    assert_eq!(c.request(&get("/c")).status, 429);
}

#[test]
fn a_route_can_use_several_limits_and_log_mode_only_counts() {
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .sections(
            "[rate_limits.watch]\nrate = \"1/h\"\nkey = \"route\"\nmode = \"log\"\n\
             [rate_limits.keys]\nrate = \"1/h\"\nburst = 3\nkey = \"header:X-Api-Key\"\n\
             [[routes]]\npath_prefix = \"/free\"\nupstream = \"backend\"\n",
        )
        .route(r#"rate_limit = ["watch", "keys"]"#)
        .build();
    let proxy = Proxy::start(&config);
    let dir = std::env::temp_dir();
    let admin = proxy
        .handle()
        .start_admin("127.0.0.1:0".parse().unwrap(), dir.join("unused.toml"))
        .expect("admin binds");
    let mut c = proxy.connect();
    let with_key = b"GET / HTTP/1.1\r\nHost: t\r\nX-Api-Key: k1\r\n\r\n";
    // `watch` would refuse all but the first; it only counts. `keys`
    // lets three through per key, and none without the header counts.
    let statuses: Vec<u16> = (0..5).map(|_| c.request(with_key).status).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(c.request(&get("/")).status, 200);
    assert_eq!(up.requests().len(), 4);
    // A route without limits counts nothing (nor again what the last
    // limited request did).
    for _ in 0..3 {
        assert_eq!(c.request(&get("/free")).status, 200);
    }
    let metrics = admin_metrics(admin);
    // `watch` saw 6 requests and would have refused 5 (the 429s were
    // refused by `keys` after `watch` had counted them).
    assert!(
        metrics.contains("ringress_rate_limited_total{limit=\"watch\",action=\"logged\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ringress_rate_limited_total{limit=\"keys\",action=\"rejected\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("ringress_rejections_total"), "{metrics}");
}

#[test]
fn a_client_on_eight_connections_gets_the_rate_across_two_workers() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&limited_config(
        up.addr,
        "rate = \"100/s\"\nburst = 10\nkey = \"client_ip\"",
    ));
    let got = hammer(proxy.addr, 8, Duration::from_millis(2500), &get("/"));
    assert_hundred_per_second("client_ip", got, 10);
}

#[test]
fn a_header_key_gets_the_rate_across_two_workers() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&limited_config(
        up.addr,
        "rate = \"100/s\"\nburst = 10\nkey = \"header:X-Api-Key\"",
    ));
    let req = b"GET / HTTP/1.1\r\nHost: t\r\nX-Api-Key: team-a\r\n\r\n";
    let got = hammer(proxy.addr, 8, Duration::from_millis(2500), req);
    assert_hundred_per_second("header", got, 10);
}

#[test]
fn a_client_from_x_forwarded_for_gets_the_rate_across_two_workers() {
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .sections(
            "[forwarding]\ntrusted_proxies = [\"127.0.0.1\"]\n\
             [rate_limits.api]\nrate = \"100/s\"\nburst = 10\nkey = \"client_ip\"\n",
        )
        .route(r#"rate_limit = "api""#)
        .build();
    let proxy = Proxy::start(&config);
    // The real client is not the TCP peer: its bucket is the shared one.
    let req = b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n";
    let got = hammer(proxy.addr, 8, Duration::from_millis(2500), req);
    assert_hundred_per_second("client_ip from X-Forwarded-For", got, 10);
    // Another client behind the same proxy has its own bucket.
    let other = b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.10\r\n\r\n";
    assert_eq!(proxy.connect().request(other).status, 200);
}

/// 4,000 requests on one connection: each 40th a pair with the busy key,
/// the others each with a new key. How many of the busy key's 200 were
/// let through, and in how many seconds.
fn flood(addr: SocketAddr, request: impl Fn(&str) -> String) -> (u64, f64) {
    let mut c = Client::connect(addr);
    let start = Instant::now();
    let mut busy_ok = 0;
    for i in 0..4_000u32 {
        if i % 40 == 0 {
            for _ in 0..2 {
                busy_ok += u64::from(c.request(request("busy").as_bytes()).status == 200);
            }
            continue;
        }
        let key = format!("flood-{i}");
        // Every fresh key is let through once: its bucket was full.
        assert_eq!(c.request(request(&key).as_bytes()).status, 200, "{key}");
    }
    (busy_ok, start.elapsed().as_secs_f64())
}

#[test]
fn a_client_from_proxy_protocol_gets_the_rate_across_two_workers() {
    let up = Upstream::echo();
    let config = format!(
        "[forwarding]\ntrusted_proxies = [\"127.0.0.1\"]\n\
         [rate_limits.api]\nrate = \"100/s\"\nburst = 10\nkey = \"client_ip\"\n\
         [[listeners]]\nname = \"lb\"\nbind = \"127.0.0.1:0\"\nproxy_protocol = true\n\
         [[routes]]\nupstream = \"backend\"\nrate_limit = \"api\"\n\
         [upstreams.backend]\nservers = [\"{}\"]\n",
        up.addr
    );
    let proxy = Proxy::start(&config);
    // The TCP peer is the load balancer: the client's bucket is shared.
    let preamble = b"PROXY TCP4 203.0.113.9 127.0.0.1 5000 80\r\n";
    let got = hammer_after(
        proxy.addr,
        8,
        Duration::from_millis(2500),
        (preamble, &get("/")),
    );
    assert_hundred_per_second("client_ip from PROXY protocol", got, 10);
}

#[test]
fn a_flood_of_keys_does_not_free_a_busy_key() {
    let up = Upstream::echo();
    // One set of 8 keys per table, and 39 new keys between two of the
    // busy key's pairs: least-recently-used would forget it every time.
    // The busy key may send 5 at once, then 10/s.
    let limit = |key: &str| {
        limited_config(
            up.addr,
            &format!("rate = \"10/s\"\nburst = 5\nkey = \"{key}\"\nmax_keys = 8"),
        )
    };
    // Through the shared buckets (a header), and through the worker's
    // own table (the client's address and the path).
    let header = Proxy::start(&limit("header:X-Api-Key"));
    let by_header = flood(header.addr, |key| {
        format!("GET / HTTP/1.1\r\nHost: t\r\nX-Api-Key: {key}\r\n\r\n")
    });
    let path = Proxy::start(&limit("client_ip+path"));
    let by_path = flood(path.addr, |key| {
        format!("GET /{key} HTTP/1.1\r\nHost: t\r\n\r\n")
    });
    for (what, (busy_ok, secs)) in [("header", by_header), ("client_ip+path", by_path)] {
        let most = 5 + (10.0 * secs).ceil() as u64 + 1;
        eprintln!("{what}: busy key {busy_ok} of 200 let through in {secs:.2} s (at most {most})");
        assert!((5..=most).contains(&busy_ok), "{what}: {busy_ok} > {most}");
    }
}

#[test]
fn bad_limits_are_listed_with_their_key_paths() {
    let toml = r#"
[rate_limits.a]
rate = "100/d"
key = "cookie"
mode = "block"
burst = 0

[rate_limits.b]
rate = "5/s"
key = "header:"
store = "memcached://x"
on_store_error = "maybe"

[rate_limits.c]
key = "route"

[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
respond = { status = 200 }
rate_limit = ["a", "nope"]
"#;
    let errors = Config::from_toml_str(toml).unwrap_err().to_string();
    for expected in [
        "rate_limits.a.rate: expected a rate like",
        "rate_limits.a.key: \"cookie\" is not one of",
        "rate_limits.a.mode: `block` is not one of enforce, log",
        "rate_limits.a.burst: 0 is out of range",
        "rate_limits.b.key: \"header:\": expected a header name",
        "rate_limits.b.store: expected \"redis://HOST:PORT\"",
        "rate_limits.b.on_store_error: `maybe` is not one of allow, deny",
        "rate_limits.c.rate: is required",
        "no [rate_limits.nope]",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
    // A limit with problems of its own is not reported again by its route.
    assert!(!errors.contains("no [rate_limits.a]"), "{errors}");
    // And `--check` prints the same.
    let dir = TempPath::dir(format!("ringress-rl-check-{}", std::process::id()));
    let file = dir.join("bad.toml");
    std::fs::write(&file, toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringress"))
        .arg("--check")
        .arg("-c")
        .arg(&file)
        .output()
        .expect("run ringress --check");
    assert_eq!(out.status.code(), Some(2));
    let printed =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        printed.contains("rate_limits.b.on_store_error"),
        "{printed}"
    );
    assert!(printed.contains("9 problem(s)"), "{printed}");
}

/// A config whose route uses a limit in `redis`.
fn redis_config(upstream: SocketAddr, redis: &Redis, rest: &str) -> String {
    ConfigBuilder::new(upstream)
        .sections(&format!(
            "[rate_limits.global]\nrate = \"100/s\"\nburst = 10\nkey = \"header:X-Api-Key\"\n\
             store = \"{}\"\n{rest}\n",
            redis.url()
        ))
        .route(r#"rate_limit = "global""#)
        .build()
}

#[test]
fn two_proxies_sharing_a_redis_limit_together_get_its_rate() {
    let redis = Redis::start();
    let up = Upstream::echo();
    // Two processes (each its own buckets, store thread and key names).
    let base = TempPath::dir(format!("ringress-rl-two-{}", std::process::id()));
    let (dir_a, dir_b) = (base.join("a"), base.join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let (mut a, addr_a) = spawn_binary(&dir_a, &redis_config(up.addr, &redis, ""));
    let (mut b, addr_b) = spawn_binary(&dir_b, &redis_config(up.addr, &redis, ""));
    let req = b"GET / HTTP/1.1\r\nHost: t\r\nX-Api-Key: shared\r\n\r\n";
    let run = Duration::from_millis(2500);
    let one = thread::spawn(move || hammer(addr_a, 4, run, req));
    let two = hammer(addr_b, 4, run, req);
    let one = one.join().expect("first proxy's clients");
    for child in [&mut a, &mut b] {
        let _ = child.kill();
        let _ = child.wait();
    }
    // Batching error: each process may let through one request per key
    // before Redis has counted it (the credit), and hold one more (the
    // batch at 100/s): well within the 5 % either way.
    let total = (one.0 + two.0, one.1 + two.1, one.2.max(two.2));
    assert_hundred_per_second("two processes on one Redis limit", total, 10);
    assert!(one.0 > 0 && two.0 > 0, "{one:?} {two:?}");
}

/// The binary serving `config` (with a listener on a free port), its
/// stderr in `log`.
fn spawn_binary(dir: &std::path::Path, config: &str) -> (std::process::Child, SocketAddr) {
    let addr = dead_addr();
    let config = config.replace("127.0.0.1:0", &addr.to_string());
    let file = dir.join("ringress.toml");
    std::fs::write(&file, config).unwrap();
    let log = std::fs::File::create(dir.join("log")).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ringress"))
        .arg("--config")
        .arg(&file)
        .args(["--no-pin", "--threads", "2", "--log", "info"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("ringress runs");
    wait_until("ringress to listen", TIMEOUT, || {
        TcpStream::connect(addr).is_ok()
    });
    (child, addr)
}

#[test]
fn with_redis_down_a_limit_fails_as_configured_and_says_so_once() {
    let mut redis = Redis::start();
    let up = Upstream::echo();
    let dir = TempPath::dir(format!("ringress-rl-down-{}", std::process::id()));
    let config = ConfigBuilder::new(up.addr)
        .sections(&format!(
            "[rate_limits.open]\nrate = \"1/h\"\nkey = \"route\"\nstore = \"{url}\"\n\
             [rate_limits.closed]\nrate = \"100/s\"\nkey = \"route\"\nstore = \"{url}\"\n\
             on_store_error = \"deny\"\n\
             [[routes]]\npath_prefix = \"/closed\"\nupstream = \"backend\"\nrate_limit = \"closed\"\n",
            url = redis.url()
        ))
        .route(r#"rate_limit = "open""#)
        .build();
    let (mut child, addr) = spawn_binary(&dir, &config);
    let mut c = Client::connect(addr);
    // Up: one request per hour on `open`, and the rest of it refused.
    assert_eq!(c.request(&get("/")).status, 200);
    wait_until("Redis to count the first request", TIMEOUT, || {
        c.request(&get("/")).status == 429
    });
    assert_eq!(c.request(&get("/closed")).status, 200);
    redis.kill();
    let log = dir.join("log");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("the store to be reported down", TIMEOUT, || {
        read_log().matches("rate limit store unreachable").count() >= 2
    });
    // Down: `open` lets everything through, `closed` refuses everything.
    for _ in 0..20 {
        assert_eq!(c.request(&get("/")).status, 200);
        assert_eq!(c.request(&get("/closed")).status, 429);
    }
    // Said once per limit, however many requests and retries.
    thread::sleep(Duration::from_millis(300));
    let text = read_log();
    assert_eq!(
        text.matches("rate limit store unreachable").count(),
        2,
        "{text}"
    );
    assert!(
        text.contains("on_store_error = \\\"deny\\\"") || text.contains("refusing requests"),
        "{text}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_reload_keeps_the_counts_of_a_limit_it_keeps() {
    let up = Upstream::echo();
    let hourly = |rate: &str| {
        limited_config(
            up.addr,
            &format!("rate = \"{rate}\"\nkey = \"header:X-Api-Key\""),
        )
    };
    let proxy = Proxy::start(&hourly("1/h"));
    let req = b"GET / HTTP/1.1\r\nHost: t\r\nX-Api-Key: k\r\n\r\n";
    assert_eq!(proxy.connect().request(req).status, 200);
    assert_eq!(proxy.connect().request(req).status, 429);
    // The same limit after a reload: the key is still over it.
    proxy.reload(&hourly("1/h"));
    assert_eq!(proxy.connect().request(req).status, 429);
    // A changed limit starts afresh.
    proxy.reload(&hourly("2/h"));
    let statuses: Vec<u16> = (0..3)
        .map(|_| proxy.connect().request(req).status)
        .collect();
    assert_eq!(statuses, [200, 429, 429]);
}

/// A process started with `--upgrade` steers every new connection to
/// itself; its own steering by source address must not undo that while
/// the old process still listens (the old one's queued connections would
/// be reset when it closes its sockets).
#[test]
fn an_upgrade_keeps_its_steering_over_the_steering_by_address() {
    use ringress::{ServerHandle, ServerOptions};
    let port = dead_addr().port();
    let config = |body: &str| {
        Config::from_toml_str(&format!(
            "[rate_limits.api]\nrate = \"100000/s\"\nburst = 1000\nkey = \"client_ip\"\n\
             [[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:{port}\"\n\
             [[routes]]\nrespond = {{ status = 200, body = \"{body}\" }}\nrate_limit = \"api\"\n"
        ))
        .expect("config")
    };
    let opts = || ServerOptions {
        threads: Some(2),
        pin: Some(false),
        io: None,
        release_memory: None,
    };
    let old = ServerHandle::start(config("old"), opts()).expect("old starts");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(Client::connect(addr).request(&get("/")).body_str(), "old");
    let new = ServerHandle::start_alongside(config("new"), opts()).expect("new starts");
    for i in 0..20 {
        let r = Client::connect(addr).request(&get("/"));
        assert_eq!(r.body_str(), "new", "connection {i}");
    }
    old.shutdown();
    new.shutdown();
}

/// A limit in log mode names itself in the JSON access line of each
/// request it would have refused, and only there.
#[test]
fn log_mode_names_the_limit_in_the_access_log() {
    let up = Upstream::echo();
    let log = TempPath::file(format!("ringress-rl-log-{}.json", std::process::id()));
    let config = ConfigBuilder::new(up.addr)
        .sections(&format!(
            "[access_log]\npath = \"{}\"\nformat = \"json\"\n\
             [rate_limits.watch]\nrate = \"1/h\"\nkey = \"route\"\nmode = \"log\"\n",
            log.display()
        ))
        .route(r#"rate_limit = "watch""#)
        .build();
    let proxy = Proxy::start(&config);
    let mut c = proxy.connect();
    for i in 0..3 {
        let r = c.request(&get(&format!("/n{i}")));
        assert_eq!(r.status, 200, "log mode never refuses");
    }
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("three access lines", TIMEOUT, || {
        read().lines().count() >= 3
    });
    let text = read();
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines[0].contains("rate_limit_logged"), "{}", lines[0]);
    for line in &lines[1..3] {
        assert!(line.contains(r#""rate_limit_logged":"watch""#), "{line}");
    }
}
