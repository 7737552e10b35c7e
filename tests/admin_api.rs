//! The admin API over real sockets: the token, readiness through a
//! drain, the JSON endpoints, and runtime server control (drain,
//! maintenance, weight) on two workers under load with no failed request.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "s3cret-token";

/// An admin answer: status, head, body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// One admin request with extra header lines and a body; the listener
/// closes after each answer.
fn admin_with(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect to admin");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: admin.test\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("an admin answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length: usize = header(head, "content-length")
        .expect("Content-Length")
        .parse()
        .unwrap();
    if method != "HEAD" {
        assert_eq!(length, body.len(), "{head}");
    }
    assert_eq!(header(head, "cache-control"), Some("no-store"), "{head}");
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn admin(addr: SocketAddr, method: &str, path: &str) -> Answer {
    admin_with(addr, method, path, "", "")
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// `/upstreams`' object for `server` (servers hold no nested objects).
fn server_json(upstreams: &str, server: SocketAddr) -> String {
    let start = upstreams
        .find(&format!(r#"{{"server":"{server}""#))
        .unwrap_or_else(|| panic!("{server} in {upstreams}"));
    let end = upstreams[start..].find('}').expect("object end");
    upstreams[start..=start + end].to_string()
}

/// Starts a proxy with the admin listener; returns it with the admin
/// address, once `/readyz` says every worker accepts, and the config
/// file the admin listener reloads from (removed when dropped).
fn proxy_with_admin(config: &str, headers: &str) -> (Proxy, SocketAddr, TempPath) {
    let proxy = Proxy::start_with(config, 2, ringress::IoMode::Auto);
    let file = TempPath::file(format!(
        "ringress-admin-api-{}-{}.toml",
        std::process::id(),
        proxy.addr.port()
    ));
    std::fs::write(&file, config).unwrap();
    let addr = proxy
        .handle()
        .start_admin("127.0.0.1:0".parse().unwrap(), file.to_path_buf())
        .expect("admin binds");
    wait_until("readyz 200", TIMEOUT, || {
        admin_with(addr, "GET", "/readyz", headers, "").status == 200
    });
    (proxy, addr, file)
}

/// Echoes like `Upstream::echo`, after a second for paths under `/slow`.
fn upstream() -> Upstream {
    Upstream::start(|r, w, up| {
        while let Some(req) = up.record(r) {
            if req.target.starts_with("/slow") {
                thread::sleep(Duration::from_secs(1));
            }
            let body = format!("{} {}\n", req.method, req.target);
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

#[test]
fn the_token_guards_every_endpoint() {
    let up = upstream();
    let config = ConfigBuilder::new(up.addr)
        .sections(&format!("[admin]\ntoken = \"{TOKEN}\""))
        .build();
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let (_proxy, addr, _file) = proxy_with_admin(&config, &auth);

    for path in ["/health", "/readyz", "/config", "/upstreams", "/metrics"] {
        let a = admin(addr, "GET", path);
        assert_eq!(a.status, 401, "{path}: {}", a.head);
        assert_eq!(header(&a.head, "www-authenticate"), Some("Bearer"));
    }
    for wrong in [
        "Authorization: Bearer s3cret-tokeN\r\n",
        "Authorization: Bearer s3cret-token2\r\n",
        "Authorization: Bearer s3cret\r\n",
        "Authorization: Basic czNjcmV0LXRva2Vu\r\n",
    ] {
        assert_eq!(
            admin_with(addr, "GET", "/health", wrong, "").status,
            401,
            "{wrong}"
        );
    }
    let control = format!("/upstreams/backend/{}/state", up.addr);
    assert_eq!(admin_with(addr, "POST", &control, "", "drain").status, 401);
    assert!(
        server_json(
            &admin_with(addr, "GET", "/upstreams", &auth, "").body,
            up.addr
        )
        .contains(r#""state":"ready""#)
    );

    let ok = admin_with(addr, "GET", "/health", &auth, "");
    assert_eq!((ok.status, ok.body.as_str()), (200, "ok\n"));
    let healthz = admin_with(
        addr,
        "GET",
        "/healthz",
        "authorization: bearer s3cret-token\r\n",
        "",
    );
    assert_eq!(healthz.status, 200);

    // The running config, its generation, and no token.
    let config = admin_with(addr, "GET", "/config", &auth, "");
    assert_eq!(config.status, 200);
    assert_eq!(
        header(&config.head, "content-type"),
        Some("application/json")
    );
    assert!(
        config.body.starts_with(r#"{"generation":1,"config":{"#),
        "{}",
        config.body
    );
    assert!(
        config.body.contains(r#""token":"<redacted>""#),
        "{}",
        config.body
    );
    assert!(!config.body.contains(TOKEN), "{}", config.body);
    assert!(
        config
            .body
            .contains(&format!(r#""servers":["{}"]"#, up.addr)),
        "{}",
        config.body
    );

    let metrics = admin_with(addr, "GET", "/metrics", &auth, "");
    assert_eq!(metrics.status, 200);
    assert_eq!(
        header(&metrics.head, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let stats = admin_with(addr, "GET", "/stats", &auth, "");
    assert_eq!(stats.status, 200);
    assert_eq!(
        header(&stats.head, "content-type"),
        Some("application/json")
    );
    let page = admin_with(addr, "GET", "/", &auth, "");
    assert_eq!(page.status, 200);
    assert_eq!(
        header(&page.head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let head = admin_with(addr, "HEAD", "/config", &auth, "");
    assert_eq!((head.status, head.body.as_str()), (200, ""));
}

#[test]
fn readyz_says_503_while_a_drain_waits_for_a_slow_request() {
    let up = upstream();
    let config = ConfigBuilder::new(up.addr)
        .runtime(r#"drain_timeout = "10s""#)
        .build();
    let (proxy, addr, _file) = proxy_with_admin(&config, "");
    assert_eq!(admin(addr, "GET", "/readyz").body, "ready\n");

    let target = proxy.addr;
    let slow = thread::spawn(move || Client::connect(target).request(&get("/slow/1")));
    wait_until("the slow request upstream", TIMEOUT, || {
        up.requests().iter().any(|r| r.target == "/slow/1")
    });
    let started = Instant::now();
    let stopping = thread::spawn(move || proxy.shutdown());

    wait_until("readyz 503", TIMEOUT, || {
        admin(addr, "GET", "/readyz").status == 503
    });
    let draining = admin(addr, "GET", "/readyz");
    assert_eq!(
        (draining.status, draining.body.as_str()),
        (503, "draining\n")
    );
    assert_eq!(admin(addr, "GET", "/health").status, 200);

    // The request in flight finishes, then the proxy stops and the admin
    // listener with it.
    let resp = slow.join().expect("the slow request");
    assert_eq!(resp.status, 200);
    stopping.join().expect("shutdown");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(TcpStream::connect(addr).is_err(), "admin listener closed");
}

/// Clients sending requests in a loop, each tagged with the phase it was
/// sent in (`/load/{phase}/{n}`); failures are kept.
struct Load {
    phase: Arc<AtomicUsize>,
    /// The phase each client's current request is tagged with.
    at: Arc<Vec<AtomicUsize>>,
    done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    const MAX_TIME: Duration = Duration::from_secs(60);

    fn start(target: SocketAddr, clients: usize) -> Load {
        let load = Load {
            phase: Arc::default(),
            at: Arc::new((0..clients).map(|_| AtomicUsize::new(0)).collect()),
            done: Arc::default(),
            stop: Arc::default(),
            failures: Arc::default(),
            clients: Vec::new(),
        };
        let clients = (0..clients)
            .map(|id| {
                let (phase, at, done, stop, failures) = (
                    load.phase.clone(),
                    load.at.clone(),
                    load.done.clone(),
                    load.stop.clone(),
                    load.failures.clone(),
                );
                thread::spawn(move || {
                    let started = Instant::now();
                    let mut c = Client::connect(target);
                    let mut n = 0;
                    while !stop.load(Ordering::Acquire) && started.elapsed() < Self::MAX_TIME {
                        n += 1;
                        // Read before sending: a request of phase p left
                        // after the API call that began p had answered.
                        let p = phase.load(Ordering::Acquire);
                        at[id].store(p, Ordering::Release);
                        let req = get(&format!("/load/{p}/{id}-{n}"));
                        let resp = c
                            .stream
                            .write_all(&req)
                            .ok()
                            .and_then(|()| c.read_response_to(false));
                        match resp {
                            Some(r) if r.status == 200 => {
                                done.fetch_add(1, Ordering::AcqRel);
                            }
                            other => {
                                let what = other.map(|r| r.status);
                                failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("request {n} of client {id}: {what:?}"));
                                c = Client::connect(target);
                            }
                        }
                    }
                })
            })
            .collect();
        Load { clients, ..load }
    }

    /// Makes an API call between two phases: requests sent while it is
    /// under way are tagged with an odd phase (not looked at), those sent
    /// after its answer with the next even one. The call waits until no
    /// request of the phase before is in flight, so each even phase's
    /// requests were all picked between two calls. Then waits for
    /// `requests` more to succeed. Returns the call's result.
    fn change<R>(&self, call: impl FnOnce() -> R, requests: usize) -> R {
        let transition = self.phase.fetch_add(1, Ordering::AcqRel) + 1;
        wait_until("the phase's requests answered", TIMEOUT, || {
            self.at
                .iter()
                .all(|p| p.load(Ordering::Acquire) == transition)
        });
        let answer = call();
        self.phase.fetch_add(1, Ordering::AcqRel);
        self.wait(requests);
        answer
    }

    fn wait(&self, requests: usize) {
        let until = self.done.load(Ordering::Acquire) + requests;
        wait_until("requests under load", TIMEOUT, || {
            self.done.load(Ordering::Acquire) >= until
        });
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Release);
        for c in self.clients {
            c.join().expect("load client");
        }
        self.failures.lock().unwrap().clone()
    }
}

/// Requests `up` saw after the `step`th API call answered (and before
/// the next one began).
fn seen_in(up: &Upstream, step: usize) -> usize {
    let prefix = format!("/load/{}/", 2 * step);
    up.requests()
        .iter()
        .filter(|r| r.target.starts_with(&prefix))
        .count()
}

fn set(admin_addr: SocketAddr, server: SocketAddr, setting: &str, value: &str) -> String {
    let a = admin_with(
        admin_addr,
        "POST",
        &format!("/upstreams/backend/{server}/{setting}"),
        "",
        value,
    );
    assert_eq!(a.status, 200, "{setting} {value}: {}", a.body);
    a.body
}

#[test]
fn drain_maintenance_and_weight_under_load_fail_no_request() {
    let (a, b) = (upstream(), upstream());
    let config = ConfigBuilder::new(a.addr)
        .group(&format!(r#"servers = ["{}", "{}"]"#, a.addr, b.addr))
        .build();
    let (proxy, admin_addr, _file) = proxy_with_admin(&config, "");

    // A slow request in flight on b: draining b lets it finish.
    let target = proxy.addr;
    let mut slow = Vec::new();
    for i in 0..8 {
        let path = format!("/slow/{i}");
        slow.push(thread::spawn(move || {
            Client::connect(target).request(&get(&path))
        }));
        thread::sleep(Duration::from_millis(20));
        if b.requests().iter().any(|r| r.target.starts_with("/slow")) {
            break;
        }
    }
    wait_until("a slow request on b", TIMEOUT, || {
        b.requests().iter().any(|r| r.target.starts_with("/slow"))
    });
    // The workers publish what is in flight on their tick.
    wait_until("b's request in flight in /upstreams", TIMEOUT, || {
        server_json(&admin(admin_addr, "GET", "/upstreams").body, b.addr)
            .contains(r#""in_flight":1"#)
    });

    let load = Load::start(proxy.addr, 3);
    load.wait(200);
    assert!(seen_in(&a, 0) > 0 && seen_in(&b, 0) > 0);

    // 1: b drained.
    let answer = load.change(|| set(admin_addr, b.addr, "state", "drain"), 300);
    assert!(answer.contains(r#""state":"drain""#), "{answer}");
    let upstreams = admin(admin_addr, "GET", "/upstreams").body;
    assert!(
        server_json(&upstreams, b.addr).contains(r#""state":"drain""#),
        "{upstreams}"
    );
    assert!(
        server_json(&upstreams, a.addr).contains(r#""state":"ready""#),
        "{upstreams}"
    );
    for s in slow {
        assert_eq!(s.join().expect("slow request").status, 200);
    }

    // 2: back.
    load.change(|| set(admin_addr, b.addr, "state", "ready"), 300);

    // 3: b in maintenance.
    load.change(|| set(admin_addr, b.addr, "state", "maintenance"), 300);
    let upstreams = admin(admin_addr, "GET", "/upstreams").body;
    assert!(
        server_json(&upstreams, b.addr).contains(r#""state":"maintenance""#),
        "{upstreams}"
    );

    // 4: back.
    load.change(|| set(admin_addr, b.addr, "state", "ready"), 300);

    // 5: a weighs 9, b 1.
    let answer = load.change(|| set(admin_addr, a.addr, "weight", "9"), 500);
    assert!(answer.contains(r#""weight":9"#), "{answer}");
    let upstreams = admin(admin_addr, "GET", "/upstreams").body;
    assert!(
        server_json(&upstreams, a.addr).contains(r#""weight":9,"config_weight":1"#),
        "{upstreams}"
    );

    let failures = load.finish();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    let (a_seen, b_seen): (Vec<usize>, Vec<usize>) =
        (0..=5).map(|p| (seen_in(&a, p), seen_in(&b, p))).unzip();
    assert_eq!(
        b_seen[1], 0,
        "drained b got requests: {a_seen:?} {b_seen:?}"
    );
    assert_eq!(
        b_seen[3], 0,
        "b in maintenance got requests: {a_seen:?} {b_seen:?}"
    );
    assert!(b_seen[2] > 0 && b_seen[4] > 0, "b back: {b_seen:?}");
    let share = a_seen[5] as f64 / (a_seen[5] + b_seen[5]) as f64;
    assert!(
        (0.8..0.97).contains(&share),
        "a's share at weight 9 to 1: {share} ({a_seen:?} {b_seen:?})"
    );

    // Bad control requests change nothing.
    let bad = |path: &str, body: &str| admin_with(admin_addr, "POST", path, "", body).status;
    let state = format!("/upstreams/backend/{}/state", b.addr);
    assert_eq!(bad(&state, "off"), 400);
    assert_eq!(
        bad(&format!("/upstreams/backend/{}/weight", b.addr), "0"),
        400
    );
    assert_eq!(bad(&state, &"x".repeat(2000)), 413);
    assert_eq!(bad("/upstreams/backend/127.0.0.1:1/state", "drain"), 404);
    assert_eq!(
        bad(&format!("/upstreams/nope/{}/state", b.addr), "drain"),
        404
    );
    assert_eq!(admin(admin_addr, "GET", &state).status, 405);
}

#[test]
fn admin_settings_last_until_a_reload_changes_the_server() {
    let (a, b) = (upstream(), upstream());
    let builder =
        ConfigBuilder::new(a.addr).group(&format!(r#"servers = ["{}", "{}"]"#, a.addr, b.addr));
    let (proxy, admin_addr, _file) = proxy_with_admin(&builder.build(), "");
    set(admin_addr, a.addr, "state", "drain");
    set(admin_addr, b.addr, "weight", "4");

    // The same servers: both settings stay.
    assert_eq!(proxy.reload(&builder.build()), 2);
    let upstreams = admin(admin_addr, "GET", "/upstreams").body;
    assert!(
        server_json(&upstreams, a.addr).contains(r#""state":"drain""#),
        "{upstreams}"
    );
    assert!(
        server_json(&upstreams, b.addr).contains(r#""weight":4"#),
        "{upstreams}"
    );

    // b's weight changes in the file: b follows the file, a keeps its drain.
    let changed = builder.group(&format!(
        r#"servers = ["{}", {{ addr = "{}", weight = 2 }}]"#,
        a.addr, b.addr
    ));
    assert_eq!(proxy.reload(&changed.build()), 3);
    let upstreams = admin(admin_addr, "GET", "/upstreams").body;
    assert!(upstreams.starts_with(r#"{"generation":3,"#), "{upstreams}");
    assert!(
        server_json(&upstreams, a.addr).contains(r#""state":"drain""#),
        "{upstreams}"
    );
    assert!(
        server_json(&upstreams, b.addr)
            .contains(r#""state":"ready","health":"unchecked","weight":2,"config_weight":2"#),
        "{upstreams}"
    );
    // Drained a gets nothing.
    for _ in 0..10 {
        assert_eq!(proxy.connect().request(&get("/x")).status, 200);
    }
    assert!(a.requests().is_empty());
}
