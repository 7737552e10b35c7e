//! Once warm, a worker proxies keep-alive requests without allocating: a
//! counting global allocator tallies allocations made on worker threads.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;

struct CountingAlloc;

static WORKER_ALLOCS: AtomicU64 = AtomicU64::new(0);
static TRACE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static TRACED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static IS_WORKER: Cell<Option<bool>> = const { Cell::new(None) };
    static LOOKING: Cell<bool> = const { Cell::new(false) };
}

fn on_worker_thread() -> bool {
    IS_WORKER
        .try_with(|known| {
            if let Some(is) = known.get() {
                return is;
            }
            // Asking for the thread's name may allocate: don't recurse.
            if LOOKING.with(|l| l.replace(true)) {
                return false;
            }
            let is = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("ringress-w"));
            LOOKING.with(|l| l.set(false));
            known.set(Some(is));
            is
        })
        .unwrap_or(false)
}

// SAFETY: defers every operation to the system allocator unchanged; the
// counting only reads thread-locals and bumps an atomic.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_worker_alloc(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_worker_alloc(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Sizes of the first allocations counted, for the failure message.
static SIZES: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

fn note_worker_alloc(size: usize) {
    if on_worker_thread() {
        let n = WORKER_ALLOCS.fetch_add(1, Ordering::Relaxed) as usize;
        if TRACE.load(Ordering::Relaxed) {
            let i = TRACED.fetch_add(1, Ordering::Relaxed) as usize;
            if i < SIZES.len() {
                SIZES[i].store(size as u64, Ordering::Relaxed);
            }
        }
        let _ = n;
    }
}

fn traced_sizes() -> Vec<u64> {
    SIZES
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .filter(|&s| s > 0)
        .collect()
}

/// Runs `round` `n` times and fails if a worker thread allocated meanwhile.
fn assert_no_worker_allocs(n: usize, what: &str, mut round: impl FnMut()) {
    let before = WORKER_ALLOCS.load(Ordering::Relaxed);
    TRACED.store(0, Ordering::Relaxed);
    SIZES.iter().for_each(|s| s.store(0, Ordering::Relaxed));
    TRACE.store(true, Ordering::Relaxed);
    for _ in 0..n {
        round();
    }
    let during = WORKER_ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(
        during,
        0,
        "worker allocated {during} times over {n} rounds of {what} (sizes {:?})",
        traced_sizes()
    );
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

// The counter is process-wide, so the scenarios run one after another in
// a single test: a second proxy warming up in parallel would be counted.
#[test]
fn warm_requests_do_not_allocate() {
    warm_keep_alive_requests();
    warm_split_responses();
    warm_header_edit_requests();
    warm_own_answers();
    warm_logged_requests();
    warm_cache_hits();
    warm_compressed_responses();
    warm_rate_limited_requests();
    warm_guarded_requests();
    warm_authenticated_requests();
    warm_ip_access_requests();
    warm_filtered_requests();
}

/// Routes with rate limits: a client-address key in the worker's own
/// table and a header key through the shared buckets, both under their
/// limits, and a refused request's 429 (rendered, counted).
fn warm_rate_limited_requests() {
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .route(
            r#"path_prefix = "/ip"
rate_limit = ["ip", "watch"]"#,
        )
        .sections(
            r#"
[rate_limits.ip]
rate = "1000000/s"
burst = 1000
key = "client_ip"

[rate_limits.hdr]
rate = "1000000/s"
burst = 1000
key = "header:X-Api-Key"

[rate_limits.watch]
rate = "1/h"
key = "route"
mode = "log"

[rate_limits.tight]
rate = "1/h"
key = "client_ip+path"

[[routes]]
path_prefix = "/hdr"
upstream = "backend"
rate_limit = "hdr"

[[routes]]
path_prefix = "/tight"
upstream = "backend"
rate_limit = "tight"
"#,
        )
        .build();
    let proxy = Proxy::start_with(&config, 1, ringress::IoMode::Auto);
    let mut c = proxy.connect();
    let ip = get("/ip");
    let hdr = b"GET /hdr HTTP/1.1\r\nHost: test.local\r\nX-Api-Key: k1\r\n\r\n";
    let tight = get("/tight");
    assert_eq!(c.request(&tight).status, 200);
    let round = |c: &mut Client| {
        assert_eq!(c.request(&ip).status, 200);
        assert_eq!(c.request(hdr).status, 200);
        let r = c.request(&tight);
        assert_eq!(r.status, 429);
        assert!(r.header("retry-after").is_some());
    };
    for _ in 0..200 {
        round(&mut c);
    }
    assert_no_worker_allocs(500, "rate-limited requests", || {
        round(&mut c);
    });
}

/// With every connection guard on (caps, overload, head and body rates),
/// a request whose head arrives in two pieces and a chunked body (relayed
/// under the body rate's floor) allocate nothing more. (A body over the
/// 16 KiB inline size allocates without any guard: the read buffer grows
/// for it and shrinks back.)
fn warm_guarded_requests() {
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .sections(
            "[timeouts]\nmin_head_rate = \"500B/s\"\nmin_body_rate = \"1KiB/s\"\n\
             [overload]\nkeepalive_threshold = 1\nkeepalive_timeout = \"5s\"\n",
        )
        .build()
        .replace(
            "name = \"main\"\n",
            "name = \"main\"\nmax_conns = 100\nmax_conns_per_ip = 10\n",
        );
    let proxy = Proxy::start_with(&config, 1, ringress::IoMode::Auto);
    let mut c = proxy.connect();
    let post = b"POST /up HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n\
                 5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let mut head_start = get("/g");
    let head_rest = head_start.split_off(10);
    let round = |c: &mut Client| {
        c.send(&head_start);
        c.send(&head_rest);
        assert_eq!(c.read_response().status, 200);
        assert_eq!(c.request(post).body_str(), "POST /up\nhello world");
    };
    for _ in 0..200 {
        round(&mut c);
    }
    assert_no_worker_allocs(300, "warm guarded requests", || {
        round(&mut c);
    });
}

/// An upstream answering every request with `body`, cacheable for an
/// hour, as HTML.
fn html_upstream(body: &'static [u8]) -> Upstream {
    Upstream::start(move |r, w, up| {
        use std::io::Write;
        while up.record(r).is_some() {
            let head = format!(
                "HTTP/1.1 200 OK\r\nCache-Control: max-age=3600\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if w.write_all(head.as_bytes()).is_err() || w.write_all(body).is_err() {
                return;
            }
        }
    })
}

/// Cache hits, a small body (copied behind the head) and a large one
/// (written from the shared object), with and without header edits.
fn warm_cache_hits() {
    static LARGE: [u8; 64 * 1024] = [b'x'; 64 * 1024];
    let up = html_upstream(&LARGE);
    let config = ConfigBuilder::new(up.addr)
        .route(r#"cache = { zone = "main" }"#)
        .sections(
            r#"
[cache.main]
max_size = "16MiB"

[[routes]]
path_prefix = "/edited"
upstream = "backend"
cache = { zone = "main" }
response_headers = { set = { "X-Route" = "$route" } }
"#,
        )
        .build();
    let proxy = Proxy::start_with(&config, 1, ringress::IoMode::Auto);
    let mut c = proxy.connect();
    let (large, edited) = (get("/large"), get("/edited/x"));
    // The first of each is a miss that fills the cache.
    assert_eq!(c.request(&large).body.len(), LARGE.len());
    assert_eq!(c.request(&edited).status, 200);
    let round = |c: &mut Client| {
        let r = c.request(&large);
        assert_eq!(r.body.len(), LARGE.len());
        assert!(r.header("cache-status").is_some_and(|s| s.contains("hit")));
        let r = c.request(&edited);
        assert!(r.header("x-route").is_some());
    };
    for _ in 0..100 {
        round(&mut c);
    }
    assert_no_worker_allocs(300, "cache hits", || {
        round(&mut c);
    });
    assert_eq!(up.requests().len(), 2, "one fetch per key");
}

/// Responses compressed on the way (a kept encoder per worker, the relay's
/// reused buffers).
fn warm_compressed_responses() {
    static PAGE: [u8; 20 * 1024] = [b'a'; 20 * 1024];
    let up = html_upstream(&PAGE);
    let config = ConfigBuilder::new(up.addr)
        .route(r#"compress = { algorithms = ["gzip", "zstd", "br"] }"#)
        .build();
    let proxy = Proxy::start_with(&config, 1, ringress::IoMode::Auto);
    let mut c = proxy.connect();
    let requests: Vec<Vec<u8>> = ["gzip", "zstd"]
        .iter()
        .map(|coding| {
            format!("GET /page HTTP/1.1\r\nHost: test.local\r\nAccept-Encoding: {coding}\r\n\r\n")
                .into_bytes()
        })
        .collect();
    let round = |c: &mut Client| {
        for (req, coding) in requests.iter().zip(["gzip", "zstd"]) {
            let r = c.request(req);
            assert_eq!(r.header("content-encoding"), Some(coding));
        }
    };
    for _ in 0..50 {
        round(&mut c);
    }
    assert_no_worker_allocs(100, "compressed responses", || {
        round(&mut c);
    });
}

fn warm_keep_alive_requests() {
    let up = Upstream::echo();
    let proxy = Proxy::start_with(&simple_config(up.addr), 1, ringress::IoMode::Auto);
    let mut c = proxy.connect();
    let get = get("/items/42?page=1");
    let post = b"POST /items HTTP/1.1\r\nHost: test.local\r\nContent-Length: 11\r\n\r\nhello world";
    let round = |c: &mut Client| {
        assert_eq!(c.request(&get).status, 200);
        assert_eq!(c.request(post).body_str(), "POST /items\nhello world");
    };
    for _ in 0..200 {
        round(&mut c);
    }
    assert_no_worker_allocs(500, "warm requests", || {
        round(&mut c);
    });
}

fn warm_split_responses() {
    // The upstream writes head and body separately (two reads for the proxy).
    let up = Upstream::start(|r, w, up| {
        use std::io::Write;
        while let Some(req) = up.record(r) {
            let body = format!("{} {}\n", req.method, req.target);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            if w.write_all(head.as_bytes()).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
            if w.write_all(body.as_bytes()).is_err() {
                return;
            }
        }
    });
    let proxy = Proxy::start_with(&simple_config(up.addr), 1, ringress::IoMode::Auto);
    let mut c = proxy.connect();
    let get = get("/split");
    for _ in 0..100 {
        assert_eq!(c.request(&get).body_str(), "GET /split\n");
    }
    assert_no_worker_allocs(200, "warm split requests", || {
        assert_eq!(c.request(&get).body_str(), "GET /split\n");
    });
}

/// A route with a header-edit filter on both sides, with variables: its
/// phases render into the connection's buffers.
fn warm_header_edit_requests() {
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .route(
            r#"request_headers = { set = { "X-Real-IP" = "$client_ip", "X-Request-Id" = "$request_id", "X-Host" = "$host" }, remove = ["Cookie"] }
response_headers = { set = { "X-Route" = "$route", "Cache-Control" = "no-store" } }
name = "edited""#,
        )
        .build();
    let proxy = Proxy::start_with(&config, 1, ringress::IoMode::Auto);
    let mut c = proxy.connect();
    let get = b"GET /edited HTTP/1.1\r\nHost: test.local\r\nCookie: a=b\r\n\r\n";
    let round = |c: &mut Client| {
        let r = c.request(get);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-route"), Some("edited"));
    };
    for _ in 0..200 {
        round(&mut c);
    }
    assert_no_worker_allocs(500, "warm edited requests", || {
        round(&mut c);
    });
    assert_eq!(up.last().header("x-host"), Some("test.local"));
}

/// Answers the proxy makes itself, each logged: a fixed response, a
/// redirect, and a generated 404, on one keep-alive connection.
fn warm_own_answers() {
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .route(r#"path_prefix = "/app""#)
        .sections(
            r#"
[[routes]]
path_exact = "/fixed"
respond = { status = 200, body = "fixed\n" }

[[routes]]
path_prefix = "/old"
redirect = { to = "https://$host/new$request_uri", status = 308 }
"#,
        )
        .build();
    let proxy = Proxy::start_with(&config, 1, ringress::IoMode::Auto);
    let mut c = proxy.connect();
    let (fixed, old, missing) = (get("/fixed"), get("/old/x?y=1"), get("/missing"));
    let round = |c: &mut Client| {
        assert_eq!(c.request(&fixed).body_str(), "fixed\n");
        let r = c.request(&old);
        assert_eq!(r.status, 308);
        assert_eq!(
            r.header("location"),
            Some("https://test.local/new/old/x?y=1")
        );
        assert_eq!(c.request(&missing).status, 404);
    };
    for _ in 0..100 {
        round(&mut c);
    }
    assert_no_worker_allocs(300, "fixed answers, redirects and 404s", || {
        round(&mut c);
    });
}

/// With a JSON access log: lines formatted into the worker's buffer and
/// handed to the writer, request ids, metrics counted.
fn warm_logged_requests() {
    let up = Upstream::echo();
    let dir = TempPath::dir(format!("ringress-noalloc-{}", std::process::id()));
    let log = dir.join("access.log");
    let config = ConfigBuilder::new(up.addr)
        .route(r#"path_prefix = "/app""#)
        .sections(&format!(
            r#"
[access_log]
path = "{}"
format = "json"

[[routes]]
path_exact = "/fixed"
respond = {{ status = 200, body = "fixed\n" }}
"#,
            log.display()
        ))
        .build();
    let proxy = Proxy::start_with(&config, 1, ringress::IoMode::Auto);
    let mut c = proxy.connect();
    let (app, fixed, missing) = (
        b"GET /app/1 HTTP/1.1\r\nHost: test.local\r\nUser-Agent: no-alloc/1\r\n\r\n".to_vec(),
        get("/fixed"),
        get("/missing"),
    );
    let round = |c: &mut Client| {
        let r = c.request(&app);
        assert_eq!(r.status, 200);
        assert!(r.header("x-request-id").is_some());
        assert_eq!(c.request(&fixed).body_str(), "fixed\n");
        assert_eq!(c.request(&missing).status, 404);
    };
    // Long enough for buffers to go round the writer and come back.
    for _ in 0..300 {
        round(&mut c);
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_no_worker_allocs(600, "logged requests", || {
        round(&mut c);
    });
    drop(c);
    proxy.shutdown();
    let lines = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .count();
    assert_eq!(lines, 900 * 3);
}

/// Routes with auth: an API key (compared with every key), a JWT and a
/// basic password (both found in the worker's cache of verified
/// credentials after the first request), each sending its identity
/// upstream; and a request without credentials answered 401.
fn warm_authenticated_requests() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/auth");
    let dir = TempPath::dir(format!("ringress-noalloc-auth-{}", std::process::id()));
    let keys = dir.join("keys");
    std::fs::write(&keys, "k-1 billing\nk-2 other\n").expect("keys");
    let users = dir.join("users");
    let hash = bcrypt::hash("pw", 4).expect("bcrypt");
    std::fs::write(&users, format!("alice:{hash}\n")).expect("users");
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .route(&format!(
            "path_prefix = \"/key\"\nauth = {{ api_key = {{ keys = \"{}\", name_header = \"X-Key-Name\" }} }}",
            keys.display()
        ))
        .sections(&format!(
            r#"
[[routes]]
path_prefix = "/jwt"
upstream = "backend"
auth = {{ jwt = {{ jwks = "{}", algorithms = ["ES256"], claims_to_headers = {{ sub = "X-User" }} }} }}

[[routes]]
path_prefix = "/basic"
upstream = "backend"
auth = {{ basic = {{ users = "{}", identity_header = "X-User" }} }}
"#,
            data.join("jwks-ec.json").display(),
            users.display()
        ))
        .build();
    let pem = std::fs::read(data.join("ec-private.pem")).expect("key");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("ec1".into());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let token = jsonwebtoken::encode(
        &header,
        &serde_json::json!({ "sub": "user-42", "exp": exp }),
        &jsonwebtoken::EncodingKey::from_ec_pem(&pem).expect("EC key"),
    )
    .expect("token");
    let proxy = Proxy::start_with(&config, 1, ringress::IoMode::Auto);
    let mut c = proxy.connect();
    let key = b"GET /key HTTP/1.1\r\nHost: test.local\r\nX-Api-Key: k-1\r\n\r\n";
    let jwt =
        format!("GET /jwt HTTP/1.1\r\nHost: test.local\r\nAuthorization: Bearer {token}\r\n\r\n");
    let basic =
        b"GET /basic HTTP/1.1\r\nHost: test.local\r\nAuthorization: Basic YWxpY2U6cHc=\r\n\r\n";
    let missing = get("/jwt");
    let round = |c: &mut Client| {
        assert_eq!(c.request(key).status, 200);
        assert_eq!(c.request(jwt.as_bytes()).status, 200);
        assert_eq!(c.request(basic).status, 200);
        let r = c.request(&missing);
        assert_eq!(r.status, 401);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    };
    for _ in 0..200 {
        round(&mut c);
    }
    let seen = up.last();
    assert_eq!(seen.header("x-user"), Some("alice"));
    assert_no_worker_allocs(300, "authenticated requests", || {
        round(&mut c);
    });
}

/// `allow` / `deny` on the listener and a route (a trusted peer's
/// X-Forwarded-For decides the address): allowed requests and the 403.
fn warm_ip_access_requests() {
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .sections("[forwarding]\ntrusted_proxies = [\"127.0.0.1\"]\n")
        .route(
            r#"deny = ["10.0.0.1"]
                  allow = ["10.0.0.0/8", "2001:db8::/32"]"#,
        )
        .build()
        .replace(
            "name = \"main\"\n",
            "name = \"main\"\ndeny = [\"192.0.2.0/24\"]\n",
        );
    let proxy = Proxy::start_with(&config, 1, ringress::IoMode::Auto);
    let mut c = proxy.connect();
    let req = |ip: &str| format!("GET /a HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: {ip}\r\n\r\n");
    let (ok, v6, denied, off_listener) = (
        req("10.0.0.2"),
        req("2001:db8::9"),
        req("10.0.0.1"),
        req("192.0.2.5"),
    );
    let round = |c: &mut Client| {
        assert_eq!(c.request(ok.as_bytes()).status, 200);
        assert_eq!(c.request(v6.as_bytes()).status, 200);
        assert_eq!(c.request(denied.as_bytes()).status, 403);
        assert_eq!(c.request(off_listener.as_bytes()).status, 403);
    };
    for _ in 0..200 {
        round(&mut c);
    }
    assert_no_worker_allocs(300, "warm ip access requests", || {
        round(&mut c);
    });
}

/// A route with 20 filter rules (15 `[[filters]]` entries, regexes on the
/// path, the query and two headers among them, and the default set): a
/// request that passes them all (every regex group runs), one a log rule
/// notes and one a deny refuses (403, counted) allocate nothing.
fn warm_filtered_requests() {
    let up = Upstream::echo();
    let mut rules = String::new();
    for (i, cond) in [
        r#"path = { regex = '(?i)\.(php|asp|jsp)$' }"#,
        r#"path = { regex = '/(etc|proc)/' }"#,
        r#"path = { prefix = "/private/" }"#,
        r#"path = { exact = "/blocked" }"#,
        r#"query = { regex = '(?i)union.+select' }"#,
        r#"query = { regex = '(?i)<script' }"#,
        r#"query = { prefix = "debug=" }"#,
        r#"header = { name = "User-Agent", regex = '(?i)(sqlmap|nikto|nmap)' }"#,
        r#"header = { name = "User-Agent", prefix = "curl/" }"#,
        r#"header = { name = "Referer", regex = '^https?://spam\.' }"#,
        r#"header = { name = "X-Probe" }"#,
        r#"methods = ["DELETE", "PATCH"]"#,
        r#"body_size = { over = "1MiB" }"#,
        r#"path = { prefix = "/watch" }
action = "log""#,
        r#"header = { name = "X-Internal", exact = "yes" }
action = "allow""#,
    ]
    .iter()
    .enumerate()
    {
        rules.push_str(&format!("[[filters]]\nid = \"r{i}\"\n{cond}\n"));
    }
    rules.push_str("[[filters]]\ninclude = \"default\"\n");
    let config = format!("{rules}{}", ConfigBuilder::new(up.addr).build());
    let parsed = ringress::Config::from_toml_str(&config).unwrap();
    assert_eq!(parsed.chains[0].waf().unwrap().ids().count(), 20);
    let proxy = Proxy::start_with(&config, 1, ringress::IoMode::Auto);
    let mut c = proxy.connect();
    let pass = b"GET /app/page.html?q=hello HTTP/1.1\r\nHost: test.local\r\n\
                 User-Agent: Mozilla/5.0\r\nReferer: https://example.com/\r\n\r\n";
    let logged = b"GET /watch/x HTTP/1.1\r\nHost: test.local\r\nUser-Agent: a\r\n\r\n";
    let denied = b"GET /a/index.php?q=1 HTTP/1.1\r\nHost: test.local\r\n\r\n";
    let round = |c: &mut Client| {
        assert_eq!(c.request(pass).status, 200);
        assert_eq!(c.request(logged).status, 200);
        assert_eq!(c.request(denied).status, 403);
    };
    for _ in 0..200 {
        round(&mut c);
    }
    assert_no_worker_allocs(300, "requests on a route with 20 filter rules", || {
        round(&mut c);
    });
}
