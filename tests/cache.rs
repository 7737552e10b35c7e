//! The response cache over real sockets, as a shared cache (RFC 9111) that
//! names every outcome in one `Cache-Status` field (RFC 9211): what is
//! stored and why not, freshness and `Age`, revalidation, stale answers,
//! collapsed misses, purge, eviction and the key.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::cache_upstream::*;
use common::*;

const STORED: &str = "ringress; fwd=miss; stored";
const MAIN: &str = r#"{ zone = "main" }"#;
const TOKEN: &str = "purge-token";

/// Entries are written with `max-age=1`; ages count whole seconds, so the
/// remaining freshness is negative (and the entry surely stale) only once
/// two seconds have passed since the store.
const STALE_AFTER: Duration = Duration::from_millis(2200);

/// `[cache.main]`: these defaults, each replaced by the line of `lines`
/// with the same key; other lines of `lines` are added.
fn zone(lines: &str) -> String {
    let mut table: Vec<String> = [
        r#"max_size = "64MiB""#,
        r#"max_object = "1MiB""#,
        r#"purge_from = ["127.0.0.1/32"]"#,
    ]
    .map(String::from)
    .to_vec();
    let key = |l: &str| l.split('=').next().unwrap().trim().to_string();
    for line in lines.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match table.iter_mut().find(|old| key(old) == key(line)) {
            Some(old) => *old = line.to_string(),
            None => table.push(line.to_string()),
        }
    }
    format!("[cache.main]\n{}\n", table.join("\n"))
}

fn config(origin: &Origin, zone_lines: &str, cache: &str) -> ConfigBuilder {
    ConfigBuilder::new(origin.addr())
        .sections(&zone(zone_lines))
        .route(&format!("cache = {cache}"))
}

/// A proxy whose catch-all route caches in `main`.
fn cached(origin: &Origin, zone_lines: &str) -> Proxy {
    Proxy::start(&config(origin, zone_lines, MAIN).build())
}

/// One request on a new connection; `headers` are whole lines.
fn request(proxy: &Proxy, method: &str, path: &str, headers: &str) -> Response {
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: test.local\r\n{headers}\r\n");
    proxy.connect().request(raw.as_bytes())
}

fn fetch(proxy: &Proxy, path: &str) -> Response {
    request(proxy, "GET", path, "")
}

fn fetch_with(proxy: &Proxy, path: &str, headers: &str) -> Response {
    request(proxy, "GET", path, headers)
}

/// The one `Cache-Status` field.
fn cache_status(r: &Response) -> &str {
    let all: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cache-status"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(all.len(), 1, "exactly one Cache-Status:\n{}", r.raw_head);
    all[0]
}

/// The remaining freshness of a plain fresh hit.
fn hit_ttl(r: &Response) -> i64 {
    cache_status(r)
        .strip_prefix("ringress; hit; ttl=")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("a fresh hit:\n{}", r.raw_head))
}

/// The (negative) remaining freshness of a stale hit served for `detail`.
fn stale_ttl(r: &Response, detail: &str) -> i64 {
    let ttl: i64 = cache_status(r)
        .strip_prefix("ringress; hit; ttl=")
        .and_then(|t| t.strip_suffix(&format!("; detail={detail}")))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("a stale hit ({detail}):\n{}", r.raw_head));
    assert!(ttl < 0, "stale, so a negative ttl:\n{}", r.raw_head);
    ttl
}

fn age(r: &Response) -> u64 {
    r.header("age")
        .unwrap_or_else(|| panic!("Age on a hit:\n{}", r.raw_head))
        .parse()
        .expect("Age is whole seconds")
}

fn assert_within(what: &str, value: i64, range: std::ops::RangeInclusive<i64>) {
    assert!(range.contains(&value), "{what} = {value}, not in {range:?}");
}

/// Waits out the freshness of entries stored with `max-age=1` at `stored`.
fn let_expire(stored: Instant) {
    // Time itself is the event here: freshness is counted in seconds.
    if let Some(left) = (stored + STALE_AFTER).checked_duration_since(Instant::now()) {
        thread::sleep(left);
    }
}

fn max_age(seconds: u32, body: &str) -> Reply {
    Reply::ok(body).header("Cache-Control", &format!("max-age={seconds}"))
}

#[test]
fn a_stored_response_is_served_from_cache_with_ttl_and_age() {
    let origin = Origin::start(|req| {
        max_age(60, &format!("body of {}\n", req.target)).header("X-Origin", "one")
    });
    let proxy = cached(&origin, "");
    let miss = fetch(&proxy, "/page");
    assert_eq!(miss.status, 200);
    assert_eq!(cache_status(&miss), STORED);
    assert_eq!(miss.header("age"), None, "{}", miss.raw_head);
    assert_eq!(miss.body, b"body of /page\n");

    let mut c = proxy.connect();
    for _ in 0..3 {
        let hit = c.request(&get("/page"));
        assert_eq!(hit.status, 200);
        assert_eq!(hit.body, b"body of /page\n");
        assert_eq!(hit.header("content-length"), Some("14"));
        assert_eq!(hit.header("x-origin"), Some("one"));
        assert_eq!(hit.header("cache-control"), Some("max-age=60"));
        assert_within("ttl", hit_ttl(&hit), 58..=60);
        assert!(age(&hit) <= 2, "{}", hit.raw_head);
    }
    assert_eq!(origin.count("/page"), 1);
}

#[test]
fn a_large_hit_arrives_whole_and_the_connection_goes_on() {
    // Over the size a hit copies behind its head: head and body leave in
    // one vectored write, straight from the stored body.
    let body = text_body(300 * 1024);
    let sent = body.clone();
    let origin =
        Origin::start(move |_| Reply::ok(sent.clone()).header("Cache-Control", "max-age=60"));
    let proxy = cached(&origin, "");
    assert_eq!(cache_status(&fetch(&proxy, "/big")), STORED);
    let mut c = proxy.connect();
    for i in 0..3 {
        let hit = c.request(&get("/big"));
        assert_eq!(hit.status, 200, "hit {i}");
        assert_eq!(hit.header("content-length"), Some("307200"), "hit {i}");
        assert!(hit.body == body, "hit {i}: {} bytes", hit.body.len());
        assert_within("ttl", hit_ttl(&hit), 58..=60);
        // A HEAD on the same connection: the head alone.
        let head = c.request(b"HEAD /big HTTP/1.1\r\nHost: test.local\r\n\r\n");
        assert_eq!(head.status, 200, "head {i}");
        assert_eq!(head.header("content-length"), Some("307200"), "head {i}");
        assert!(head.body.is_empty(), "head {i}");
    }
    assert_eq!(origin.count("/big"), 1);
}

#[test]
fn age_starts_at_the_origins_age_and_grows() {
    let origin = Origin::start(|_| max_age(60, "aged").header("Age", "5"));
    let proxy = cached(&origin, "");
    let miss = fetch(&proxy, "/aged");
    assert_eq!(cache_status(&miss), STORED);
    assert_eq!(miss.header("age"), Some("5"));

    let first = fetch(&proxy, "/aged");
    let (age1, ttl1) = (age(&first), hit_ttl(&first));
    assert!((5..=7).contains(&age1), "{}", first.raw_head);
    assert_within("ttl", ttl1, 53..=55);
    // Time itself is what is measured.
    thread::sleep(Duration::from_millis(1100));
    let later = fetch(&proxy, "/aged");
    assert!(age(&later) > age1, "{}", later.raw_head);
    assert!(hit_ttl(&later) < ttl1, "{}", later.raw_head);
    assert_eq!(origin.count("/aged"), 1);
}

#[test]
fn head_is_answered_from_a_stored_get() {
    let origin = Origin::start(|_| max_age(60, "0123456789").header("Content-Type", "text/plain"));
    let proxy = cached(&origin, "");
    assert_eq!(cache_status(&fetch(&proxy, "/h")), STORED);

    let mut c = proxy.connect();
    let head = c.request(b"HEAD /h HTTP/1.1\r\nHost: test.local\r\n\r\n");
    assert_eq!(head.status, 200);
    assert_within("ttl", hit_ttl(&head), 58..=60);
    assert_eq!(head.header("content-length"), Some("10"));
    assert_eq!(head.header("content-type"), Some("text/plain"));
    // No body followed the head: the next answer starts with its own
    // status line.
    let get = c.request(&get("/h"));
    assert_eq!((get.status, get.body_str().as_str()), (200, "0123456789"));
    assert_within("ttl", hit_ttl(&get), 58..=60);
    assert_eq!(origin.total(), 1);
}

#[test]
fn other_methods_go_upstream() {
    let origin = Origin::start(|req| {
        let body = format!("{} {} {}", req.method, req.target, req.body.len());
        max_age(60, &body)
    });
    let proxy = cached(&origin, "");
    assert_eq!(cache_status(&fetch(&proxy, "/m")), STORED);
    for n in 1..=2 {
        let post = proxy
            .connect()
            .request(b"POST /m HTTP/1.1\r\nHost: test.local\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!(post.status, 200);
        assert_eq!(post.body_str(), "POST /m 3");
        let posts = origin
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count();
        assert_eq!(posts, n);
    }
}

#[test]
fn freshness_is_s_maxage_then_max_age_then_expires() {
    let origin = Origin::start(|req| {
        let now = SystemTime::now();
        let date = http_date(now);
        let past = http_date(now - Duration::from_secs(3600));
        let later = http_date(now + Duration::from_secs(30));
        let reply = Reply::ok(req.target.clone()).header("Date", &date);
        match req.target.as_str() {
            "/s-maxage" => reply.header("Cache-Control", "max-age=1, s-maxage=60"),
            "/max-age" => reply
                .header("Cache-Control", "max-age=60")
                .header("Expires", &past),
            "/expires" => reply.header("Expires", &later),
            _ => Reply::new(404, ""),
        }
    });
    let proxy = cached(&origin, "");
    for (path, ttl) in [("/s-maxage", 60), ("/max-age", 60), ("/expires", 30)] {
        let miss = fetch(&proxy, path);
        assert_eq!(cache_status(&miss), STORED, "{path}");
        let hit = fetch(&proxy, path);
        assert_eq!(hit.body_str(), path);
        assert_within(path, hit_ttl(&hit), ttl - 3..=ttl);
        assert_eq!(origin.count(path), 1, "{path}");
    }
}

#[test]
fn responses_that_may_not_be_stored_say_why() {
    let origin = Origin::start(|req| match req.target.as_str() {
        "/no-store" => Reply::ok("x").header("Cache-Control", "no-store, max-age=60"),
        "/private" => Reply::ok("x").header("Cache-Control", "private, max-age=60"),
        "/set-cookie" => max_age(60, "x").header("Set-Cookie", "sid=1; Path=/"),
        "/vary-star" => max_age(60, "x").header("Vary", "*"),
        "/no-freshness" => Reply::ok("x"),
        "/authorization" => max_age(60, "x"),
        _ => Reply::new(404, ""),
    });
    let proxy = cached(&origin, "");
    let cases = [
        ("/no-store", "", "no-store"),
        ("/private", "", "private"),
        ("/set-cookie", "", "set-cookie"),
        ("/vary-star", "", "vary-star"),
        ("/no-freshness", "", "no-freshness"),
        (
            "/authorization",
            "Authorization: Bearer abc\r\n",
            "authorization",
        ),
    ];
    for (path, headers, reason) in cases {
        for n in 1..=2 {
            let r = fetch_with(&proxy, path, headers);
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(
                cache_status(&r),
                format!("ringress; fwd=miss; detail={reason}"),
                "{path}"
            );
            assert_eq!(origin.count(path), n, "{path} is fetched every time");
        }
    }
}

#[test]
fn a_request_with_no_store_is_not_stored() {
    let origin = Origin::start(|_| max_age(60, "x"));
    let proxy = cached(&origin, "");
    let r = fetch_with(&proxy, "/ask", "Cache-Control: no-store\r\n");
    assert_eq!(r.status, 200);
    // The request's directive, told apart from the response's `no-store`.
    assert_eq!(
        cache_status(&r),
        "ringress; fwd=miss; detail=request-no-store"
    );
    assert_eq!(cache_status(&fetch(&proxy, "/ask")), STORED);
    assert_eq!(origin.count("/ask"), 2);
}

#[test]
fn answers_to_authorized_requests_are_stored_when_the_origin_allows() {
    let origin = Origin::start(|req| {
        let cc = match req.target.as_str() {
            "/public" => "public, max-age=60",
            "/s-maxage" => "s-maxage=60",
            _ => "must-revalidate, max-age=60",
        };
        Reply::ok(req.target.clone()).header("Cache-Control", cc)
    });
    let proxy = cached(&origin, "");
    let auth = "Authorization: Bearer abc\r\n";
    for path in ["/public", "/s-maxage", "/must-revalidate"] {
        assert_eq!(
            cache_status(&fetch_with(&proxy, path, auth)),
            STORED,
            "{path}"
        );
        let hit = fetch_with(&proxy, path, auth);
        assert_eq!(hit.body_str(), path);
        assert_within(path, hit_ttl(&hit), 58..=60);
        assert_eq!(origin.count(path), 1, "{path}");
    }
}

#[test]
fn set_cookie_is_stored_when_the_zone_allows_it() {
    let origin = Origin::start(|_| max_age(60, "with cookie").header("Set-Cookie", "a=1"));
    let proxy = cached(&origin, "store_set_cookie = true");
    assert_eq!(cache_status(&fetch(&proxy, "/c")), STORED);
    let hit = fetch(&proxy, "/c");
    assert_eq!(hit.body_str(), "with cookie");
    assert_within("ttl", hit_ttl(&hit), 58..=60);
    assert_eq!(origin.count("/c"), 1);
}

#[test]
fn vary_stores_variants_apart() {
    let origin = Origin::start(|req| {
        let lang = req.header("accept-language").unwrap_or("none");
        max_age(60, &format!("lang {lang}")).header("Vary", "Accept-Language")
    });
    let proxy = cached(&origin, "");
    let steps = [
        ("en", true),
        ("en", false),
        ("fr", true),
        ("fr", false),
        ("en", false),
    ];
    for (lang, miss) in steps {
        let r = fetch_with(&proxy, "/v", &format!("Accept-Language: {lang}\r\n"));
        assert_eq!(r.body_str(), format!("lang {lang}"));
        if miss {
            // RFC 9211 has its own name for a miss of this variant alone.
            let status = cache_status(&r);
            assert!(
                [STORED, "ringress; fwd=vary-miss; stored"].contains(&status),
                "{lang}: {status}"
            );
        } else {
            assert_within(lang, hit_ttl(&r), 58..=60);
        }
    }
    assert_eq!(origin.count("/v"), 2);
}

#[test]
fn default_ttl_gives_heuristic_freshness() {
    let origin = Origin::start(|req| match req.target.as_str() {
        "/plain" => Reply::ok("no headers"),
        _ => Reply::new(500, "broken"),
    });
    let proxy = cached(&origin, r#"default_ttl = "10s""#);
    assert_eq!(cache_status(&fetch(&proxy, "/plain")), STORED);
    let hit = fetch(&proxy, "/plain");
    assert_eq!(hit.body_str(), "no headers");
    assert_within("ttl", hit_ttl(&hit), 8..=10);
    assert_eq!(origin.count("/plain"), 1);

    // The default is heuristic freshness, which a 500 never gets (RFC 9111
    // section 4.2.2); either reason names that.
    for n in 1..=2 {
        let r = fetch(&proxy, "/error");
        assert_eq!(r.status, 500);
        let status = cache_status(&r);
        assert!(
            ["status", "no-freshness"]
                .map(|d| format!("ringress; fwd=miss; detail={d}"))
                .contains(&status.to_string()),
            "{status}"
        );
        assert_eq!(origin.count("/error"), n);
    }
}

#[test]
fn ttl_per_status_applies_only_without_explicit_freshness() {
    let origin = Origin::start(|req| match req.target.as_str() {
        "/ok" => Reply::ok("ok"),
        "/explicit" => max_age(20, "explicit"),
        _ => Reply::new(404, "gone"),
    });
    let cache = r#"{ zone = "main", ttl = { 200 = "60s", 404 = "5s" } }"#;
    let proxy = Proxy::start(&config(&origin, "", cache).build());
    for (path, status, ttl) in [
        ("/ok", 200, 60),
        ("/explicit", 200, 20),
        ("/missing", 404, 5),
    ] {
        let miss = fetch(&proxy, path);
        assert_eq!(miss.status, status, "{path}");
        assert_eq!(cache_status(&miss), STORED, "{path}");
        let hit = fetch(&proxy, path);
        assert_eq!(hit.status, status, "{path}");
        assert_within(path, hit_ttl(&hit), ttl - 2..=ttl);
        assert_eq!(origin.count(path), 1, "{path}");
    }
}

#[test]
fn request_no_cache_and_max_age_zero_go_upstream_with_validators() {
    let served = Arc::new(AtomicUsize::new(0));
    let n = served.clone();
    // Ignores conditionals: every answer is a full 200.
    let origin = Origin::start(move |req| {
        if req.target == "/no-validators" {
            return max_age(60, "plain");
        }
        let v = n.fetch_add(1, Ordering::AcqRel) + 1;
        max_age(60, &format!("version {v}")).header("ETag", "\"e1\"")
    });
    let proxy = cached(&origin, "");
    assert_eq!(cache_status(&fetch(&proxy, "/r")), STORED);
    for (n, directive) in [(2, "no-cache"), (3, "max-age=0")] {
        let r = fetch_with(&proxy, "/r", &format!("Cache-Control: {directive}\r\n"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body_str(), format!("version {n}"));
        assert_eq!(
            cache_status(&r),
            "ringress; fwd=request; fwd-status=200; stored",
            "{directive}"
        );
        assert_eq!(origin.count("/r"), n);
        assert_eq!(origin.last().header("if-none-match"), Some("\"e1\""));
    }
    let hit = fetch(&proxy, "/r");
    assert_eq!(hit.body_str(), "version 3");
    assert_within("ttl", hit_ttl(&hit), 58..=60);
    assert_eq!(origin.count("/r"), 3);

    // Nothing to validate with: the request goes up unconditional.
    assert_eq!(cache_status(&fetch(&proxy, "/no-validators")), STORED);
    let r = fetch_with(&proxy, "/no-validators", "Cache-Control: no-cache\r\n");
    assert_eq!(r.body_str(), "plain");
    assert_eq!(
        cache_status(&r),
        "ringress; fwd=request; fwd-status=200; stored"
    );
    let seen = origin.last();
    assert_eq!(seen.target, "/no-validators");
    assert_eq!(seen.header("if-none-match"), None);
    assert_eq!(seen.header("if-modified-since"), None);
    assert_eq!(origin.count("/no-validators"), 2);
}

#[test]
fn only_if_cached_answers_504_on_a_miss() {
    let origin = Origin::start(|_| max_age(60, "here"));
    let proxy = cached(&origin, "");
    let only = "Cache-Control: only-if-cached\r\n";
    let miss = fetch_with(&proxy, "/absent", only);
    assert_eq!(miss.status, 504);
    cache_status(&miss);
    assert_eq!(origin.total(), 0);

    assert_eq!(cache_status(&fetch(&proxy, "/present")), STORED);
    let hit = fetch_with(&proxy, "/present", only);
    assert_eq!((hit.status, hit.body_str().as_str()), (200, "here"));
    assert_within("ttl", hit_ttl(&hit), 58..=60);
    assert_eq!(origin.total(), 1);
}

#[test]
fn a_stale_entry_with_an_etag_is_revalidated_by_a_304() {
    let origin = Origin::start(|req| {
        if req.header("if-none-match") == Some("\"v1\"") {
            Reply::not_modified()
                .header("ETag", "\"v1\"")
                .header("Cache-Control", "max-age=60")
        } else {
            max_age(1, "stored body").header("ETag", "\"v1\"")
        }
    });
    let proxy = cached(&origin, "");
    assert_eq!(cache_status(&fetch(&proxy, "/e")), STORED);
    let_expire(Instant::now());

    let r = fetch(&proxy, "/e");
    assert_eq!((r.status, r.body_str().as_str()), (200, "stored body"));
    assert_eq!(
        cache_status(&r),
        "ringress; fwd=stale; fwd-status=304; stored"
    );
    assert_eq!(r.header("etag"), Some("\"v1\""));
    assert_eq!(origin.count("/e"), 2);
    assert_eq!(origin.last().header("if-none-match"), Some("\"v1\""));
    // Fresh again, for the 304's max-age.
    let hit = fetch(&proxy, "/e");
    assert_eq!(hit.body_str(), "stored body");
    assert_within("ttl", hit_ttl(&hit), 57..=60);
    assert_eq!(origin.count("/e"), 2);
}

#[test]
fn a_stale_entry_with_last_modified_is_revalidated_by_if_modified_since() {
    const LAST_MODIFIED: &str = "Tue, 01 Dec 2026 10:00:00 GMT";
    let origin = Origin::start(|req| {
        if req.header("if-modified-since").is_some() {
            Reply::not_modified().header("Cache-Control", "max-age=60")
        } else {
            max_age(1, "dated body").header("Last-Modified", LAST_MODIFIED)
        }
    });
    let proxy = cached(&origin, "");
    assert_eq!(cache_status(&fetch(&proxy, "/lm")), STORED);
    let_expire(Instant::now());

    let r = fetch(&proxy, "/lm");
    assert_eq!((r.status, r.body_str().as_str()), (200, "dated body"));
    assert_eq!(
        cache_status(&r),
        "ringress; fwd=stale; fwd-status=304; stored"
    );
    let seen = origin.last();
    assert_eq!(seen.header("if-modified-since"), Some(LAST_MODIFIED));
    assert_eq!(seen.header("if-none-match"), None);
    let hit = fetch(&proxy, "/lm");
    assert_eq!(hit.body_str(), "dated body");
    assert_within("ttl", hit_ttl(&hit), 57..=60);
    assert_eq!(origin.count("/lm"), 2);
}

#[test]
fn a_stale_entry_is_replaced_by_a_full_200() {
    let origin = Origin::start(|_| max_age(1, "v1").header("ETag", "\"v1\""));
    let proxy = cached(&origin, "");
    assert_eq!(cache_status(&fetch(&proxy, "/s")), STORED);
    origin.script(|_| max_age(60, "v2").header("ETag", "\"v2\""));
    let_expire(Instant::now());

    let r = fetch(&proxy, "/s");
    assert_eq!((r.status, r.body_str().as_str()), (200, "v2"));
    assert_eq!(
        cache_status(&r),
        "ringress; fwd=stale; fwd-status=200; stored"
    );
    assert_eq!(origin.last().header("if-none-match"), Some("\"v1\""));
    let hit = fetch(&proxy, "/s");
    assert_eq!(
        (hit.body_str().as_str(), hit.header("etag")),
        ("v2", Some("\"v2\""))
    );
    assert_within("ttl", hit_ttl(&hit), 57..=60);
    assert_eq!(origin.count("/s"), 2);
}

#[test]
fn client_conditionals_are_answered_from_the_cache() {
    const LAST_MODIFIED: &str = "Tue, 01 Dec 2026 10:00:00 GMT";
    let origin = Origin::start(|_| {
        max_age(60, "tagged")
            .header("ETag", "\"t1\"")
            .header("Last-Modified", LAST_MODIFIED)
    });
    let proxy = cached(&origin, "");
    assert_eq!(cache_status(&fetch(&proxy, "/t")), STORED);

    let cases = [
        ("If-None-Match: \"t1\"", 304),
        ("If-None-Match: W/\"t1\"", 304),
        ("If-None-Match: \"other\", \"t1\"", 304),
        ("If-None-Match: *", 304),
        ("If-None-Match: \"other\"", 200),
        (&format!("If-Modified-Since: {LAST_MODIFIED}") as &str, 304),
        ("If-Modified-Since: Wed, 02 Dec 2026 10:00:00 GMT", 304),
        ("If-Modified-Since: Mon, 30 Nov 2026 10:00:00 GMT", 200),
    ];
    // One connection: a 304 with a stray body would break the next answer.
    let mut c = proxy.connect();
    for (condition, status) in cases {
        let r = c.request(
            format!("GET /t HTTP/1.1\r\nHost: test.local\r\n{condition}\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, status, "{condition}:\n{}", r.raw_head);
        assert_within(condition, hit_ttl(&r), 58..=60);
        if status == 304 {
            assert_eq!(r.header("etag"), Some("\"t1\""), "{condition}");
            assert_eq!(r.header("content-length"), None, "{}", r.raw_head);
        } else {
            assert_eq!(r.body_str(), "tagged");
        }
    }
    assert_eq!(c.request(&get("/t")).body_str(), "tagged");
    assert_eq!(origin.total(), 1);
}

#[test]
fn no_cache_responses_are_revalidated_every_time() {
    let origin = Origin::start(|req| {
        let reply = if req.header("if-none-match") == Some("\"n1\"") {
            Reply::not_modified()
        } else {
            Reply::ok("must check")
        };
        reply
            .header("ETag", "\"n1\"")
            .header("Cache-Control", "no-cache, max-age=60")
    });
    let proxy = cached(&origin, "");
    assert_eq!(cache_status(&fetch(&proxy, "/nc")), STORED);
    for n in 2..=4 {
        let r = fetch(&proxy, "/nc");
        assert_eq!((r.status, r.body_str().as_str()), (200, "must check"));
        assert_eq!(
            cache_status(&r),
            "ringress; fwd=stale; fwd-status=304; stored"
        );
        assert_eq!(origin.count("/nc"), n);
        assert_eq!(origin.last().header("if-none-match"), Some("\"n1\""));
    }
}

#[test]
fn stale_while_revalidate_answers_at_once_and_refreshes_behind() {
    let origin = Origin::start(|_| {
        Reply::ok("v1").header("Cache-Control", "max-age=1, stale-while-revalidate=30")
    });
    let proxy = cached(&origin, "");
    assert_eq!(cache_status(&fetch(&proxy, "/swr")), STORED);
    // The refresh is held at the origin until the stale answer is in.
    let gate = Gate::default();
    let held = gate.clone();
    origin.script(move |_| max_age(60, "v2").after(&held));
    let_expire(Instant::now());

    let stale = fetch(&proxy, "/swr");
    assert_eq!((stale.status, stale.body_str().as_str()), (200, "v1"));
    stale_ttl(&stale, "stale-while-revalidate");
    assert!(age(&stale) >= 2, "{}", stale.raw_head);
    wait_until("the background refresh at the origin", TIMEOUT, || {
        origin.count("/swr") == 2
    });
    gate.open();
    wait_until("the refreshed entry", TIMEOUT, || {
        fetch(&proxy, "/swr").body == b"v2"
    });
    let hit = fetch(&proxy, "/swr");
    assert_eq!(hit.body_str(), "v2");
    assert_within("ttl", hit_ttl(&hit), 57..=60);
    assert_eq!(origin.count("/swr"), 2, "one background request");
}

#[test]
fn stale_if_error_serves_stale_when_the_origin_fails() {
    let origin = Origin::start(|_| {
        Reply::ok("kept").header("Cache-Control", "max-age=1, stale-if-error=60")
    });
    let proxy = cached(&origin, "");
    for path in ["/answers-503", "/resets"] {
        assert_eq!(cache_status(&fetch(&proxy, path)), STORED, "{path}");
    }
    origin.script(|req| match req.target.as_str() {
        "/answers-503" => Reply::new(503, "down"),
        _ => Reply::reset(),
    });
    let_expire(Instant::now());

    for path in ["/answers-503", "/resets"] {
        let r = fetch(&proxy, path);
        assert_eq!((r.status, r.body_str().as_str()), (200, "kept"), "{path}");
        stale_ttl(&r, "stale-if-error");
        assert!(origin.count(path) >= 2, "{path} was tried upstream");
    }
}

#[test]
fn must_revalidate_is_never_served_stale() {
    let origin = Origin::start(|req| {
        let cc = match req.target.as_str() {
            "/sie" => "max-age=1, stale-if-error=60, must-revalidate",
            _ => "max-age=1, stale-while-revalidate=60, proxy-revalidate",
        };
        Reply::ok("old").header("Cache-Control", cc)
    });
    let proxy = cached(&origin, "");
    for path in ["/sie", "/swr"] {
        assert_eq!(cache_status(&fetch(&proxy, path)), STORED, "{path}");
    }
    origin.script(|req| match req.target.as_str() {
        "/sie" => Reply::reset(),
        _ => max_age(60, "new"),
    });
    let_expire(Instant::now());

    let failed = fetch(&proxy, "/sie");
    assert!(
        matches!(failed.status, 502 | 504),
        "an error, not the stale body:\n{}",
        failed.raw_head
    );
    assert_ne!(failed.body_str(), "old");

    let refreshed = fetch(&proxy, "/swr");
    assert_eq!(
        (refreshed.status, refreshed.body_str().as_str()),
        (200, "new")
    );
    assert_eq!(
        cache_status(&refreshed),
        "ringress; fwd=stale; fwd-status=200; stored"
    );
    assert_eq!(origin.count("/swr"), 2);
}

#[test]
fn concurrent_misses_collapse_into_one_fetch() {
    let body = text_body(4096);
    let sent = body.clone();
    let origin = Origin::start(move |_| {
        Reply::ok(sent.clone())
            .header("Cache-Control", "max-age=60")
            .delay(Duration::from_millis(300))
    });
    let proxy = cached(&origin, "");
    let mut clients: Vec<Client> = (0..20).map(|_| proxy.connect()).collect();
    for c in &mut clients {
        c.send(&get("/collapse"));
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let r = c.read_response();
        assert_eq!(r.status, 200, "client {i}");
        assert!(r.body == body, "client {i}: {} bytes", r.body.len());
        cache_status(&r);
    }
    assert_eq!(origin.count("/collapse"), 1);
}

#[test]
fn objects_over_max_object_stream_whole_and_are_not_stored() {
    let body = text_body(200 * 1024);
    let sent = body.clone();
    let origin = Origin::start(move |req| {
        let reply = if req.target == "/chunked" {
            let pieces = sent.chunks(4096).map(|p| Step::Data(p.to_vec())).collect();
            Reply::chunked(200, pieces)
        } else {
            Reply::ok(sent.clone())
        };
        reply.header("Cache-Control", "max-age=60")
    });
    let proxy = cached(&origin, r#"max_object = "64KiB""#);
    for path in ["/length", "/chunked"] {
        for n in 1..=2 {
            let r = fetch(&proxy, path);
            assert_eq!(r.status, 200, "{path}");
            assert!(r.body == body, "{path}: {} bytes", r.body.len());
            if path == "/length" {
                assert_eq!(r.header("content-length"), Some("204800"));
            }
            let status = cache_status(&r);
            assert!(status.starts_with("ringress; fwd=miss"), "{path}: {status}");
            // A length says "too large" up front; a chunked body is only
            // found too large on the way, after its head said `stored`:
            // the next request going upstream shows it was let go.
            if path == "/length" {
                assert_eq!(status, "ringress; fwd=miss; detail=too-large");
            }
            assert_eq!(origin.count(path), n, "{path}");
        }
    }
}

#[test]
fn purge_drops_an_entry_for_every_worker() {
    let origin = Origin::start(|_| max_age(60, "purge me"));
    let proxy = cached(&origin, "");
    assert_eq!(cache_status(&fetch(&proxy, "/p")), STORED);
    hit_ttl(&fetch(&proxy, "/p"));

    let purge = request(&proxy, "PURGE", "/p", "");
    assert_eq!(purge.status, 200, "{}", purge.raw_head);
    assert_eq!(origin.count("/p"), 1, "PURGE is not forwarded");
    // New connections, so both workers ask: one fetch refills the entry
    // for all of them.
    for i in 0..8 {
        let r = fetch(&proxy, "/p");
        assert_eq!(r.body_str(), "purge me");
        if i == 0 {
            assert_eq!(cache_status(&r), STORED);
        } else {
            hit_ttl(&r);
        }
    }
    assert_eq!(origin.count("/p"), 2);

    assert_eq!(request(&proxy, "PURGE", "/never-stored", "").status, 404);
    assert_eq!(origin.total(), 2);
}

#[test]
fn purge_from_outside_purge_from_is_forbidden() {
    let origin = Origin::start(|_| max_age(60, "kept"));
    let proxy = cached(&origin, r#"purge_from = ["10.0.0.0/8"]"#);
    assert_eq!(cache_status(&fetch(&proxy, "/k")), STORED);
    assert_eq!(request(&proxy, "PURGE", "/k", "").status, 403);
    hit_ttl(&fetch(&proxy, "/k"));
    assert_eq!(origin.count("/k"), 1);
}

/// One admin request; the listener closes after each answer.
fn admin(addr: SocketAddr, method: &str, path: &str, auth: bool) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to admin");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let auth = if auth {
        format!("Authorization: Bearer {TOKEN}\r\n")
    } else {
        String::new()
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: admin.test\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("an admin answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

fn purged(answer: (u16, String)) -> u64 {
    assert_eq!(answer.0, 200, "{}", answer.1);
    let json: serde_json::Value = serde_json::from_str(&answer.1).expect("a JSON answer");
    json["purged"].as_u64().expect("a purged count")
}

#[test]
fn the_admin_api_purges_by_prefix_and_by_key() {
    let origin = Origin::start(|req| max_age(60, &req.target));
    let toml = config(&origin, "", MAIN)
        .sections(&format!("[admin]\ntoken = \"{TOKEN}\""))
        .build();
    let proxy = Proxy::start(&toml);
    let file = TempPath::file(format!(
        "ringress-cache-admin-{}-{}.toml",
        std::process::id(),
        proxy.addr.port()
    ));
    std::fs::write(&file, &toml).unwrap();
    let admin_addr = proxy
        .handle()
        .start_admin("127.0.0.1:0".parse().unwrap(), file.to_path_buf())
        .expect("admin binds");

    let paths = [
        "/static/a.css",
        "/static/b.js",
        "/exact/path?q=1",
        "/exact/path?q=2",
        "/other",
    ];
    for path in paths {
        assert_eq!(cache_status(&fetch(&proxy, path)), STORED, "{path}");
    }
    let by_prefix = "/cache/purge?prefix=http://test.local/static/&zone=main";
    assert_eq!(admin(admin_addr, "POST", by_prefix, false).0, 401);
    hit_ttl(&fetch(&proxy, "/static/a.css"));
    assert_eq!(purged(admin(admin_addr, "POST", by_prefix, true)), 2);
    for path in ["/static/a.css", "/static/b.js"] {
        assert_eq!(cache_status(&fetch(&proxy, path)), STORED, "{path}");
    }
    hit_ttl(&fetch(&proxy, "/other"));

    let by_key = "/cache/purge?key=http://test.local/exact/path?q=1";
    assert_eq!(purged(admin(admin_addr, "POST", by_key, true)), 1);
    assert_eq!(cache_status(&fetch(&proxy, "/exact/path?q=1")), STORED);
    hit_ttl(&fetch(&proxy, "/exact/path?q=2"));
    let counts: Vec<usize> = paths.iter().map(|p| origin.count(p)).collect();
    assert_eq!(counts, [2, 2, 2, 1, 1]);
}

#[test]
fn eviction_keeps_the_zone_within_max_size_and_the_hot_object() {
    const OBJECT: usize = 8 * 1024;
    let origin =
        Origin::start(|_| Reply::ok(vec![b'o'; OBJECT]).header("Cache-Control", "max-age=60"));
    let proxy = cached(&origin, "max_size = \"256KiB\"\nmax_object = \"64KiB\"");
    let mut c = proxy.connect();
    assert_eq!(cache_status(&c.request(&get("/hot"))), STORED);
    for i in 0..100 {
        let r = c.request(&get(&format!("/obj/{i}")));
        assert_eq!((r.status, r.body.len()), (200, OBJECT), "/obj/{i}");
        let status = cache_status(&r);
        assert!(
            status.starts_with("ringress; fwd=miss"),
            "/obj/{i}: {status}"
        );
        let hot = c.request(&get("/hot"));
        assert_eq!(hot.body.len(), OBJECT);
        hit_ttl(&hot);
    }
    assert_eq!(origin.count("/hot"), 1);

    // Probing with only-if-cached neither fetches nor stores.
    let only = "Cache-Control: only-if-cached\r\n";
    let cached_objects = (0..100)
        .filter(|i| fetch_with(&proxy, &format!("/obj/{i}"), only).status == 200)
        .count();
    let budget = 256 * 1024 / OBJECT;
    assert!(
        (1..budget).contains(&cached_objects),
        "{cached_objects} objects of {OBJECT} bytes kept besides /hot in 256 KiB"
    );
    assert_eq!(fetch_with(&proxy, "/obj/0", only).status, 504);
    assert_eq!(origin.total(), 101);
    assert_eq!(cache_status(&fetch(&proxy, "/obj/0")), STORED);
    assert_eq!(origin.count("/obj/0"), 2);
}

#[test]
fn one_fetch_serves_every_worker() {
    let origin = Origin::start(|_| max_age(60, "shared"));
    let proxy = cached(&origin, "");
    assert_eq!(cache_status(&fetch(&proxy, "/shared")), STORED);
    // Each connection lands on either worker.
    for i in 0..16 {
        let r = fetch(&proxy, "/shared");
        assert_eq!(r.body_str(), "shared", "connection {i}");
        hit_ttl(&r);
    }
    assert_eq!(origin.count("/shared"), 1);
}

#[test]
fn the_key_holds_host_path_and_query() {
    let origin = Origin::start(|req| {
        max_age(
            60,
            &format!("{} {}", req.header("host").unwrap(), req.target),
        )
    });
    let proxy = cached(&origin, "");
    let steps = [
        ("test.local", "/a?x=1", true),
        ("test.local", "/a?x=2", true),
        ("test.local", "/a?x=1", false),
        ("other.local", "/a?x=1", true),
        ("test.local", "/a", true),
        ("test.local", "/a?x=2", false),
    ];
    for (host, target, miss) in steps {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let r = proxy.connect().request(raw.as_bytes());
        assert_eq!(r.body_str(), format!("{host} {target}"));
        if miss {
            assert_eq!(cache_status(&r), STORED, "{host}{target}");
        } else {
            hit_ttl(&r);
        }
    }
    assert_eq!(origin.total(), 4);
}

#[test]
fn key_additions_split_entries_by_header_and_cookie() {
    let origin = Origin::start(|req| {
        let body = format!(
            "{} | {}",
            req.header("accept-language").unwrap_or("-"),
            req.header("cookie").unwrap_or("-")
        );
        max_age(60, &body)
    });
    let cache = r#"{ zone = "main", key = ["header:Accept-Language", "cookie:lang"] }"#;
    let proxy = Proxy::start(&config(&origin, "", cache).build());
    let steps = [
        ("Accept-Language: en\r\n", "en | -", true),
        ("Accept-Language: en\r\n", "en | -", false),
        ("Accept-Language: fr\r\n", "fr | -", true),
        (
            "Accept-Language: en\r\nCookie: lang=de; sid=1\r\n",
            "en | lang=de; sid=1",
            true,
        ),
        // Only the `lang` cookie is in the key.
        (
            "Accept-Language: en\r\nCookie: sid=2; lang=de\r\n",
            "en | lang=de; sid=1",
            false,
        ),
        (
            "Accept-Language: en\r\nCookie: lang=it\r\n",
            "en | lang=it",
            true,
        ),
    ];
    for (headers, body, miss) in steps {
        let r = fetch_with(&proxy, "/k", headers);
        assert_eq!(r.body_str(), body, "{headers}");
        if miss {
            assert_eq!(cache_status(&r), STORED, "{headers}");
        } else {
            hit_ttl(&r);
        }
    }
    assert_eq!(origin.count("/k"), 4);
}
