//! The cache as an operator meets it: its objects survive a reload that
//! keeps the zone, a renamed zone starts empty, and every request on a
//! caching route shows what the cache did in `/metrics` and in the JSON
//! access log.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::*;

/// An upstream answering every request with its target, fresh for an
/// hour.
fn cacheable() -> Upstream {
    Upstream::start(|r, w, up| {
        while let Some(req) = up.record(r) {
            let body = req.target.clone();
            let head = format!(
                "HTTP/1.1 200 OK\r\nCache-Control: max-age=3600\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if w.write_all(head.as_bytes()).is_err() || w.write_all(body.as_bytes()).is_err() {
                return;
            }
        }
    })
}

fn config(up: SocketAddr, zone: &str, extra: &str) -> String {
    ConfigBuilder::new(up)
        .route(&format!(
            "cache = {{ zone = \"{zone}\" }}\nname = \"cached\""
        ))
        .sections(&format!("[cache.{zone}]\nmax_size = \"8MiB\"\n{extra}"))
        .build()
}

fn cache_status(proxy: &Proxy, path: &str) -> String {
    let r = proxy.connect().request(&get(path));
    assert_eq!(r.status, 200);
    r.header("cache-status").unwrap_or("").to_string()
}

#[test]
fn a_reload_keeps_the_zone_and_its_objects_and_a_new_name_starts_empty() {
    let up = cacheable();
    let proxy = Proxy::start(&config(up.addr, "main", ""));
    assert_eq!(cache_status(&proxy, "/a"), "ringress; fwd=miss; stored");
    assert!(cache_status(&proxy, "/a").starts_with("ringress; hit"));

    proxy.reload(&config(up.addr, "main", "max_object = \"1MiB\""));
    assert!(cache_status(&proxy, "/a").starts_with("ringress; hit"));
    assert_eq!(up.requests().len(), 1, "the object survived the reload");

    proxy.reload(&config(up.addr, "other", ""));
    assert_eq!(cache_status(&proxy, "/a"), "ringress; fwd=miss; stored");
    assert_eq!(up.requests().len(), 2);
}

fn admin_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to admin");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("an admin answer");
    raw
}

#[test]
fn metrics_and_the_access_log_say_what_the_cache_did() {
    let up = cacheable();
    let dir = TempPath::dir(format!("ringress-cache-ops-{}", std::process::id()));
    let log = dir.join("access.log");
    let toml = ConfigBuilder::new(up.addr)
        .route("cache = { zone = \"main\" }\nname = \"cached\"")
        .sections(&format!(
            "[cache.main]\nmax_size = \"8MiB\"\n\n[access_log]\npath = \"{}\"\nformat = \"json\"\n",
            log.display()
        ))
        .build();
    let proxy = Proxy::start(&toml);
    let admin = proxy
        .handle()
        .start_admin("127.0.0.1:0".parse().unwrap(), dir.join("unused.toml"))
        .expect("admin binds");
    cache_status(&proxy, "/m");
    for _ in 0..3 {
        cache_status(&proxy, "/m");
    }
    let post = b"POST /m HTTP/1.1\r\nHost: test.local\r\nContent-Length: 0\r\n\r\n";
    let r = proxy.connect().request(post);
    assert_eq!(r.header("cache-status"), Some("ringress; fwd=method"));

    let metrics = admin_get(admin, "/metrics");
    for (result, n) in [("hit", 3), ("miss", 1), ("bypass", 1)] {
        let line =
            format!("ringress_cache_requests_total{{route=\"cached\",result=\"{result}\"}} {n}\n");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    assert!(
        metrics.contains("ringress_cache_objects{zone=\"main\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("ringress_cache_max_bytes{zone=\"main\"} 8388608\n"));

    drop(proxy);
    let text = std::fs::read_to_string(&log).unwrap();
    // Each worker hands its lines over on its own: sorted, not in order.
    let mut caches: Vec<&str> = text
        .lines()
        .map(|l| {
            l.split("\"cache\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("-")
        })
        .collect();
    caches.sort();
    assert_eq!(caches, ["bypass", "hit", "hit", "hit", "miss"]);
}

/// Concurrent misses collapse into one fetch; but once a key's response
/// said it cannot be stored, the next requests for it go upstream side by
/// side instead of queueing behind one another (hit-for-miss), until a
/// storable answer comes.
#[test]
fn a_key_that_cannot_be_stored_is_not_queued_behind_one_fetch() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::{Duration, Instant};

    const TOGETHER: usize = 4;
    let in_flight = Arc::new((Mutex::new(0usize), Condvar::new()));
    let served = Arc::new(AtomicUsize::new(0));
    let storable = Arc::new(AtomicBool::new(false));
    let (flight, count, store) = (in_flight.clone(), served.clone(), storable.clone());
    let up = Upstream::start(move |r, w, up| {
        while up.record(r).is_some() {
            let first = count.fetch_add(1, Ordering::SeqCst) == 0;
            // After the first, each answer waits (at most 3 s) until
            // TOGETHER requests are at the origin at once.
            let body = if first || store.load(Ordering::SeqCst) {
                "alone"
            } else {
                let (lock, cv) = &*flight;
                let mut n = lock.lock().unwrap();
                *n += 1;
                cv.notify_all();
                let deadline = Instant::now() + Duration::from_secs(3);
                while *n < TOGETHER && Instant::now() < deadline {
                    n = cv.wait_timeout(n, Duration::from_millis(50)).unwrap().0;
                }
                if *n >= TOGETHER { "together" } else { "queued" }
            };
            let control = if store.load(Ordering::SeqCst) {
                "max-age=60"
            } else {
                "private"
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nCache-Control: {control}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if w.write_all(head.as_bytes()).is_err() || w.write_all(body.as_bytes()).is_err() {
                return;
            }
        }
    });
    let proxy = Proxy::start(&config(up.addr, "main", ""));
    let first = proxy.connect().request(&get("/me"));
    assert_eq!(
        first.header("cache-status"),
        Some("ringress; fwd=miss; detail=private")
    );

    let bodies: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..TOGETHER)
            .map(|_| s.spawn(|| proxy.connect().request(&get("/me")).body_str()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        bodies,
        vec!["together"; TOGETHER],
        "all at the origin at once"
    );

    // A storable answer ends the pass: stored, then a hit.
    storable.store(true, Ordering::SeqCst);
    let r = proxy.connect().request(&get("/me"));
    assert_eq!(r.header("cache-status"), Some("ringress; fwd=miss; stored"));
    let hit = proxy.connect().request(&get("/me"));
    assert!(
        hit.header("cache-status")
            .is_some_and(|s| s.starts_with("ringress; hit"))
    );
    assert_eq!(served.load(Ordering::SeqCst), TOGETHER + 2);
}

/// `$host` in the response's edits is the request's host on a proxied
/// answer and on one from the cache (both render after the request's
/// bytes are gone).
#[test]
fn response_edits_see_the_host_on_misses_and_hits() {
    let up = cacheable();
    let toml = ConfigBuilder::new(up.addr)
        .route(
            "cache = { zone = \"main\" }\nresponse_headers = { set = { \"X-Host\" = \"$host\" } }",
        )
        .sections("[cache.main]\nmax_size = \"8MiB\"\n")
        .build();
    let proxy = Proxy::start(&toml);
    let req = b"GET /h HTTP/1.1\r\nHost: shop.example:8080\r\n\r\n";
    let miss = proxy.connect().request(req);
    assert_eq!(
        miss.header("cache-status"),
        Some("ringress; fwd=miss; stored")
    );
    assert_eq!(miss.header("x-host"), Some("shop.example"));
    let hit = proxy.connect().request(req);
    assert!(
        hit.header("cache-status")
            .is_some_and(|s| s.starts_with("ringress; hit"))
    );
    assert_eq!(hit.header("x-host"), Some("shop.example"));
}
