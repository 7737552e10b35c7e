//! Every request the proxy must refuse, over real sockets: the status, the
//! connection closed afterwards, and nothing sent upstream. Then the
//! upstream side: strict response parsing (502, connection not reused),
//! refused, silent, reset and truncating upstreams.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use ringress::IoMode;

/// The route limits used by the table: a 1 KiB body limit on `/small`,
/// a 2 KiB request-target limit, a 300 ms head timeout.
fn config(upstream: SocketAddr) -> String {
    ConfigBuilder::new(upstream)
        .runtime(r#"drain_timeout = "1s""#)
        .sections(
            r#"
[limits]
max_uri_length = 2048

[timeouts]
client_head = "300ms"

[[routes]]
path_prefix = "/small"
max_body_size = "1KiB"
upstream = "backend"
"#,
        )
        .build()
}

/// One listener, one catch-all route; `upstream_keys` go into the group
/// (in place of the default `response_timeout`).
fn upstream_config(upstream: SocketAddr, upstream_keys: &str) -> String {
    ConfigBuilder::new(upstream)
        .runtime(r#"drain_timeout = "1s""#)
        .group(upstream_keys)
        .build()
}

/// One worker, so every client connection shares one upstream pool.
fn single_worker(toml: &str) -> Proxy {
    Proxy::start_with(toml, 1, IoMode::Auto)
}

fn show(raw: &[u8]) -> String {
    String::from_utf8_lossy(&raw[..raw.len().min(120)])
        .escape_debug()
        .to_string()
}

/// True when the proxy ended the connection (EOF or reset) within a second;
/// false when it sent more bytes or left the connection open.
fn closed(c: &mut Client) -> bool {
    c.stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut byte = [0u8; 1];
    match c.reader.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
        ),
    }
}

/// Everything the proxy sends until it closes (or 2 s pass); the flag
/// says whether the connection really ended.
fn read_to_close(c: &mut Client) -> (Vec<u8>, bool) {
    c.stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.reader.read(&mut buf) {
            Ok(0) => return (all, true),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (all, true),
            Err(_) => return (all, false),
        }
    }
}

/// Asserts the upstream was never contacted (after a moment for stragglers).
fn assert_untouched(up: &Upstream, what: &str) {
    thread::sleep(Duration::from_millis(50));
    assert_eq!(
        up.connections.load(Ordering::Acquire),
        0,
        "{what}: the proxy connected upstream"
    );
    assert!(
        up.requests().is_empty(),
        "{what}: upstream saw {:?}",
        up.requests()
    );
}

/// Sends `raw` as the first request of a fresh connection and checks the
/// answer is `status` with `Connection: close`, that the connection then
/// closes, and that the upstream never heard of it.
fn assert_rejected(raw: &[u8], status: u16) {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr));
    let mut c = proxy.connect();
    c.send(raw);
    let what = show(raw);
    let r = c
        .read_response_to(false)
        .unwrap_or_else(|| panic!("{what}: no response, expected {status}"));
    assert_eq!(r.status, status, "{what}: got {}", r.raw_head);
    assert_eq!(r.header("connection"), Some("close"), "{what}");
    assert!(closed(&mut c), "{what}: connection left open");
    assert_untouched(&up, &what);
}

macro_rules! rejects {
    ($($name:ident: $raw:expr => $status:literal;)*) => {$(
        #[test]
        fn $name() {
            assert_rejected(&$raw[..], $status);
        }
    )*};
}

const P: &str = "POST /p HTTP/1.1\r\nHost: a\r\n";

fn post(fields: &str) -> Vec<u8> {
    format!("{P}{fields}\r\n").into_bytes()
}

fn get_with(fields: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n").into_bytes()
}

rejects! {
    // Framing (RFC 9112 §6).
    cl_and_te: post("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n") => 400;
    te_and_cl: post("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n") => 400;
    duplicate_cl_different: post("Content-Length: 3\r\nContent-Length: 4\r\n") => 400;
    duplicate_cl_same: post("Content-Length: 3\r\nContent-Length: 3\r\n") => 400;
    cl_list: post("Content-Length: 1, 1\r\n") => 400;
    cl_non_numeric: post("Content-Length: abc\r\n") => 400;
    cl_negative: post("Content-Length: -1\r\n") => 400;
    cl_plus_sign: post("Content-Length: +1\r\n") => 400;
    cl_hex: post("Content-Length: 0x10\r\n") => 400;
    cl_empty: post("Content-Length:\r\n") => 400;
    te_chunked_then_identity: post("Transfer-Encoding: chunked, identity\r\n") => 400;
    te_chunked_not_last_split: post("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n") => 400;
    te_chunked_twice: post("Transfer-Encoding: chunked, chunked\r\n") => 400;
    te_chunked_twice_split: post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n") => 400;
    te_empty: post("Transfer-Encoding: \r\n") => 400;
    te_on_http10: b"POST /p HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" => 400;
    te_gzip_chunked: post("Transfer-Encoding: gzip, chunked\r\n") => 501;
    te_gzip: post("Transfer-Encoding: gzip\r\n") => 501;

    // Field syntax.
    bare_cr_in_value: get_with("X-A: a\rb\r\n") => 400;
    nul_in_value: get_with("X-A: a\0b\r\n") => 400;
    ctl_0x01_in_value: get_with("X-A: a\x01b\r\n") => 400;
    del_0x7f_in_value: get_with("X-A: a\x7fb\r\n") => 400;
    space_before_colon: b"GET / HTTP/1.1\r\nHost : a\r\n\r\n" => 400;
    tab_before_colon: b"GET / HTTP/1.1\r\nHost: a\r\nX-A\t: b\r\n\r\n" => 400;
    obs_fold: get_with("X-A: a\r\n b\r\n") => 400;
    obs_fold_tab: get_with("X-A: a\r\n\tb\r\n") => 400;
    empty_field_name: get_with(": b\r\n") => 400;
    bare_lf_line_ends: b"GET / HTTP/1.1\nHost: a\n\n" => 400;
    bare_lf_one_line: b"GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n" => 400;
    bare_lf_request_line: b"GET / HTTP/1.1\nHost: a\r\n\r\n" => 400;

    // Host.
    missing_host_http11: b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n" => 400;
    two_hosts: b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" => 400;
    two_hosts_same: b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n" => 400;
    host_with_space: b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n" => 400;
    host_with_slash: b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n" => 400;
    host_with_userinfo: b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n" => 400;
    host_bad_port: b"GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n" => 400;
    host_bad_ipv6: b"GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n" => 400;

    // Request line and target.
    fragment_in_target: b"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n" => 400;
    absolute_form_userinfo: b"GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n" => 400;
    absolute_form_userinfo_password: b"GET http://user:pw@a/ HTTP/1.1\r\nHost: a\r\n\r\n" => 400;
    absolute_form_other_scheme: b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n" => 400;
    asterisk_for_get: b"GET * HTTP/1.1\r\nHost: a\r\n\r\n" => 400;
    bad_percent_escape: b"GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n" => 400;
    garbage_request_line: b"GARBAGE\r\n\r\n" => 400;
    binary_request_line: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n" => 400;
    missing_version: b"GET /\r\nHost: a\r\n\r\n" => 400;
    two_spaces_in_request_line: b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n" => 400;
    http2_preface: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" => 400;
    http_version_2: b"GET / HTTP/2.0\r\nHost: a\r\n\r\n" => 400;
    connect_method: b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n" => 501;

    // Expectations.
    expect_other: get_with("Expect: something-else\r\n") => 417;
    expect_other_post: post("Content-Length: 3\r\nExpect: 200-ok\r\n") => 417;

    // Bodies declared over the route's limit (1 KiB on /small).
    content_length_over_route_limit: b"POST /small/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n\r\n" => 413;
}

/// A head of more than the default 16 KiB.
#[test]
fn head_over_default_max_head_size() {
    let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    raw.resize(17 * 1024, b'a');
    raw.extend_from_slice(b"\r\n\r\n");
    assert_rejected(&raw, 431);
}

/// More than the default 100 fields (each one small).
#[test]
fn more_than_default_max_headers() {
    let mut raw = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..100 {
        raw.push_str(&format!("X-{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    assert_rejected(raw.as_bytes(), 431);
}

/// A complete head whose target is over `max_uri_length` (2048 here).
#[test]
fn target_over_max_uri_length() {
    let raw = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(2048));
    assert_rejected(raw.as_bytes(), 414);
}

/// A request line that never ends within the head limit is a long URI.
#[test]
fn endless_request_line_is_uri_too_long() {
    let mut raw = b"GET /".to_vec();
    raw.resize(16 * 1024 + 10, b'a');
    assert_rejected(&raw, 414);
}

/// The near misses of the table are accepted and forwarded, so the
/// "nothing upstream" checks above are not vacuous.
#[test]
fn near_misses_reach_upstream() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr));
    let mut many = String::from("GET /many HTTP/1.1\r\nHost: a\r\n");
    for i in 0..99 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let mut big = b"GET /big HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    big.resize(16 * 1024 - 4, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    let long_path = format!("/{}", "a".repeat(2047));
    let with_body = |fields: &str, body: &str| {
        let mut raw = post(fields);
        raw.extend_from_slice(body.as_bytes());
        raw
    };
    let cases: Vec<(Vec<u8>, String)> = vec![
        (
            with_body("Content-Length: 3\r\n", "abc"),
            "POST /p\nabc".into(),
        ),
        (
            with_body("Transfer-Encoding: chunked\r\n", "3\r\nabc\r\n0\r\n\r\n"),
            "POST /p\nabc".into(),
        ),
        (
            with_body(
                "Transfer-Encoding: Chunked\r\n",
                "3;ext=1\r\nabc\r\n0\r\n\r\n",
            ),
            "POST /p\nabc".into(),
        ),
        (
            b"GET /h HTTP/1.1\r\nHost: a.example:8080\r\n\r\n".to_vec(),
            "GET /h\n".into(),
        ),
        (
            b"GET /h HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n".to_vec(),
            "GET /h\n".into(),
        ),
        (
            b"GET http://a.example/abs?q HTTP/1.1\r\nHost: a.example\r\n\r\n".to_vec(),
            "GET /abs?q\n".into(),
        ),
        (
            b"GET /v HTTP/1.1\r\nHost: a\r\nX-A: a\tb c\r\n\r\n".to_vec(),
            "GET /v\n".into(),
        ),
        (get_with("Expect: 100-continue\r\n"), "GET /\n".into()),
        (
            b"GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec(),
            "GET /ten\n".into(),
        ),
        (many.into_bytes(), "GET /many\n".into()),
        (big, "GET /big\n".into()),
        (
            format!("GET {long_path} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes(),
            format!("GET {long_path}\n"),
        ),
        (
            format!(
                "POST /small/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\n\r\n{}",
                "b".repeat(1024)
            )
            .into_bytes(),
            format!("POST /small/x\n{}", "b".repeat(1024)),
        ),
    ];
    let mut c = proxy.connect();
    for (i, (raw, body)) in cases.iter().enumerate() {
        let r = c.request(raw);
        assert_eq!(r.status, 200, "case {i}: {}", show(raw));
        assert_eq!(&r.body_str(), body, "case {i}");
    }
    assert_eq!(up.requests().len(), cases.len());
}

/// `[limits] max_head_size` and `max_headers` are honoured when set.
#[test]
fn configured_head_limits() {
    let up = Upstream::echo();
    let toml = config(up.addr).replace(
        "[limits]\n",
        "[limits]\nmax_head_size = \"2KiB\"\nmax_headers = 10\n",
    );
    let proxy = Proxy::start(&toml);
    let fields = |n: usize| -> Vec<u8> {
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 1..n {
            raw.push_str(&format!("X-{i}: v\r\n"));
        }
        raw.push_str("\r\n");
        raw.into_bytes()
    };
    let sized = |n: usize| -> Vec<u8> {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
        raw.resize(n - 4, b'a');
        raw.extend_from_slice(b"\r\n\r\n");
        raw
    };
    let mut c = proxy.connect();
    assert_eq!(c.request(&fields(10)).status, 200);
    assert_eq!(c.request(&sized(2048)).status, 200);
    for (raw, what) in [
        (fields(11), "11 fields"),
        (sized(2049 + 512), "2.5 KiB head"),
    ] {
        let mut c = proxy.connect();
        c.send(&raw);
        let r = c.read_response_to(false).expect(what);
        assert_eq!(r.status, 431, "{what}");
        assert!(closed(&mut c), "{what}");
    }
    assert_eq!(up.requests().len(), 2);
}

/// A keep-alive connection that sends a bad second request: the first
/// is answered normally, the second rejected and the connection closed.
#[test]
fn rejection_after_a_good_request() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr));
    let mut c = proxy.connect();
    assert_eq!(c.request(&get("/ok")).status, 200);
    let r = c.request(&post("Content-Length: 1\r\nContent-Length: 1\r\n"));
    assert_eq!(r.status, 400);
    assert!(closed(&mut c));
    assert_eq!(up.requests().len(), 1);
}

/// Pipelined after a good request, the smuggling attempt still gets 400.
#[test]
fn pipelined_smuggling_attempt() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr));
    let mut c = proxy.connect();
    c.send(
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "GET /one\n");
    let r = c.read_response();
    assert_eq!(r.status, 400);
    assert!(closed(&mut c));
    let seen: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(seen, ["/one"]);
}

/// Invalid chunked framing in a body the proxy is streaming: the client
/// gets a 400 (or at least a close) and the upstream never sees a
/// complete request.
#[test]
fn bad_chunked_bodies() {
    let bodies: [&[u8]; 5] = [
        b"zz\r\nabc\r\n0\r\n\r\n",
        b"-1\r\nabc\r\n0\r\n\r\n",
        b"3\r\nabcd\r\n0\r\n\r\n",
        b"3\nabc\n0\n\n",
        b"0x3\r\nabc\r\n0\r\n\r\n",
    ];
    for body in bodies {
        let up = Upstream::echo();
        let proxy = Proxy::start(&config(up.addr));
        let mut c = proxy.connect();
        let mut raw = post("Transfer-Encoding: chunked\r\n");
        raw.extend_from_slice(body);
        c.send(&raw);
        let what = show(body);
        if let Some(r) = c.read_response_to(false) {
            assert_eq!(r.status, 400, "{what}: {}", r.raw_head);
        }
        assert!(closed(&mut c), "{what}: connection left open");
        thread::sleep(Duration::from_millis(50));
        assert!(
            up.requests().is_empty(),
            "{what}: upstream got {:?}",
            up.requests()
        );
    }
}

/// A chunked body that streams past the route's 1 KiB limit: 413 and a
/// close; the upstream may have seen the head but never a whole request.
#[test]
fn chunked_body_over_route_limit() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr));
    let mut c = proxy.connect();
    c.send(b"POST /small/up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = format!("200\r\n{}\r\n", "x".repeat(0x200));
    // 3 x 512 bytes, each in its own write; the last one crosses 1 KiB.
    for _ in 0..3 {
        c.send(chunk.as_bytes());
        thread::sleep(Duration::from_millis(20));
    }
    let _ = c.stream.write_all(b"0\r\n\r\n");
    let r = c.read_response_to(false).expect("an answer");
    assert_eq!(r.status, 413, "{}", r.raw_head);
    assert!(closed(&mut c), "connection left open");
    thread::sleep(Duration::from_millis(50));
    assert!(up.requests().is_empty(), "upstream got {:?}", up.requests());

    // Within the limit the same route streams through.
    let mut c = proxy.connect();
    let r = c.request(
        b"POST /small/up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "POST /small/up\nabc");
}

/// A head that starts but does not finish within `client_head` (300 ms)
/// gets 408 and a close, even when it trickles in byte by byte.
#[test]
fn slow_head_gets_408() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr));

    let mut c = proxy.connect();
    let start = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n");
    let r = c.read_response_to(false);
    let took = start.elapsed();
    assert_eq!(
        r.map(|r| r.status),
        Some(408),
        "no 408 (connection ended after {took:?})"
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
        "408 after {took:?}"
    );
    assert!(closed(&mut c));

    // Trickling bytes does not extend the deadline: it covers the whole
    // head. (A per-read timeout would answer only ~300 ms after the loop.)
    let mut c = proxy.connect();
    let start = Instant::now();
    let mut answered = false;
    for b in b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if c.stream.write_all(&[*b]).is_err() {
            answered = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
        if start.elapsed() > Duration::from_millis(1000) {
            break;
        }
    }
    let r = c.read_response_to(false);
    let took = start.elapsed();
    assert_eq!(r.map(|r| r.status), Some(408), "answered early: {answered}");
    assert!(took < Duration::from_millis(1200), "408 after {took:?}");
    assert!(closed(&mut c));
    assert_untouched(&up, "slow heads");
}

/// The head deadline also applies to the second request on a connection.
#[test]
fn slow_second_head_gets_408() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr));
    let mut c = proxy.connect();
    assert_eq!(c.request(&get("/first")).status, 200);
    // Idle for longer than client_head is fine between requests...
    thread::sleep(Duration::from_millis(400));
    assert_eq!(c.request(&get("/second")).status, 200);
    // ...but a started head must finish in time.
    c.send(b"GET /third HTTP/1.1\r\n");
    let start = Instant::now();
    let r = c.read_response_to(false);
    let took = start.elapsed();
    assert_eq!(
        r.map(|r| r.status),
        Some(408),
        "no 408 (connection ended after {took:?})"
    );
    assert!(closed(&mut c));
    assert_eq!(up.requests().len(), 2);
}

// ---------------------------------------------------------------------------
// Upstream side.
// ---------------------------------------------------------------------------

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// The first request this upstream ever sees gets `bad`, every later one
/// a valid 200 on the same keep-alive connection.
fn first_answer_bad(bad: &'static [u8]) -> Upstream {
    let count = Arc::new(AtomicUsize::new(0));
    Upstream::start(move |r, w, up| {
        while up.record(r).is_some() {
            let answer = if count.fetch_add(1, Ordering::AcqRel) == 0 {
                bad
            } else {
                OK
            };
            if w.write_all(answer).is_err() {
                return;
            }
        }
    })
}

fn assert_hides_upstream(r: &Response, upstream: SocketAddr) {
    let port = upstream.port().to_string();
    let text = format!("{}{}", r.raw_head, r.body_str());
    assert!(
        !text.contains(&port) && !text.contains(&upstream.to_string()),
        "the answer names the upstream: {text:?}"
    );
}

/// A malformed response is a 502, and that upstream connection is never
/// used again: the next request opens a new one.
fn assert_bad_response(bad: &'static [u8]) {
    let up = first_answer_bad(bad);
    let proxy = single_worker(&upstream_config(up.addr, "response_timeout = \"2s\""));
    let what = show(bad);
    let mut c = proxy.connect();
    let r = c.request(&get("/first"));
    assert_eq!(r.status, 502, "{what}: {}", r.raw_head);
    assert_hides_upstream(&r, up.addr);
    assert!(!r.body_str().contains("ok"), "{what}: leaked body");
    drop(c);
    let mut c = proxy.connect();
    let r = c.request(&get("/second"));
    assert_eq!(r.status, 200, "{what}");
    assert_eq!(r.body_str(), "ok");
    assert_eq!(
        up.connections.load(Ordering::Acquire),
        2,
        "{what}: the connection that sent a bad response was reused"
    );
}

macro_rules! bad_responses {
    ($($name:ident: $raw:expr;)*) => {$(
        #[test]
        fn $name() {
            assert_bad_response($raw);
        }
    )*};
}

bad_responses! {
    response_cl_and_te: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    response_duplicate_cl: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok";
    response_cl_list: b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok";
    response_bare_lf: b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok";
    response_nul_in_header: b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\nok";
    response_two_digit_status: b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok";
    response_no_status: b"HTTP/1.1 OK\r\nContent-Length: 2\r\n\r\nok";
    response_garbage: b"garbage\r\n\r\n";
    response_te_gzip: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok";
    response_te_chunked_then_gzip: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nok";
}

/// Control for the table above: a good response's connection IS reused
/// by the next client connection (one worker, one pool).
#[test]
fn good_response_connection_is_reused() {
    let up = first_answer_bad(OK);
    let proxy = single_worker(&upstream_config(up.addr, "response_timeout = \"2s\""));
    for path in ["/first", "/second"] {
        let mut c = proxy.connect();
        assert_eq!(c.request(&get(path)).status, 200);
    }
    assert_eq!(up.connections.load(Ordering::Acquire), 1);
}

fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn upstream_refused_is_502() {
    let addr = closed_port();
    let proxy = Proxy::start(&upstream_config(addr, "response_timeout = \"2s\""));
    let mut c = proxy.connect();
    let start = Instant::now();
    let r = c.request(&get("/"));
    assert_eq!(r.status, 502, "{}", r.raw_head);
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_hides_upstream(&r, addr);
}

#[test]
fn silent_upstream_is_504() {
    let up = Upstream::start(|r, _w, up| {
        if up.record(r).is_some() {
            // Hold the connection without answering until the proxy leaves.
            let mut byte = [0u8; 1];
            let _ = r.read(&mut byte);
        }
    });
    let proxy = Proxy::start(&upstream_config(up.addr, "response_timeout = \"300ms\""));
    let mut c = proxy.connect();
    let start = Instant::now();
    let r = c.request(&get("/slow"));
    let took = start.elapsed();
    assert_eq!(r.status, 504, "{}", r.raw_head);
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
        "504 after {took:?}"
    );
    assert_hides_upstream(&r, up.addr);
    assert_eq!(up.requests().len(), 1);
}

/// Reads one request, then ends the connection without a byte of answer:
/// with a reset (SO_LINGER 0) or a plain close.
fn hang_up(reset: bool) -> Upstream {
    Upstream::start(move |r, w, up| {
        if up.record(r).is_none() {
            return;
        }
        if reset {
            // Closing with linger 0 (when the handler returns) sends a RST.
            let _ = socket2::SockRef::from(&*w).set_linger(Some(Duration::ZERO));
        } else {
            let _ = w.shutdown(std::net::Shutdown::Both);
        }
    })
}

#[test]
fn upstream_closes_fresh_connection_is_502() {
    for reset in [false, true] {
        let up = hang_up(reset);
        let proxy = single_worker(&upstream_config(up.addr, "response_timeout = \"2s\""));
        let mut c = proxy.connect();
        let r = c.request(&get("/x"));
        assert_eq!(r.status, 502, "reset={reset}: {}", r.raw_head);
        assert_hides_upstream(&r, up.addr);
        // A fresh connection failing is not retried.
        assert_eq!(up.connections.load(Ordering::Acquire), 1, "reset={reset}");
    }
}

/// Answers one request per connection with keep-alive, then closes.
#[test]
fn pooled_connection_closed_while_idle() {
    let up = Upstream::start(|r, w, up| {
        if up.record(r).is_some() {
            let _ = w.write_all(OK);
        }
    });
    let proxy = single_worker(&upstream_config(up.addr, "response_timeout = \"2s\""));
    let mut c = proxy.connect();
    assert_eq!(c.request(&get("/one")).status, 200);
    thread::sleep(Duration::from_millis(100));
    let r = c.request(&get("/two"));
    assert_eq!(r.status, 200, "{}", r.raw_head);
    assert_eq!(r.body_str(), "ok");
    assert_eq!(up.connections.load(Ordering::Acquire), 2);
}

/// The upstream reads the second request on a pooled connection and closes
/// without answering: an idempotent request is retried on a fresh one.
#[test]
fn pooled_connection_closed_on_next_request_is_retried() {
    let up = Upstream::start(|r, w, up| {
        if up.record(r).is_some() {
            let _ = w.write_all(OK);
        }
        let _ = up.record(r);
    });
    let proxy = single_worker(&upstream_config(up.addr, "response_timeout = \"2s\""));
    let mut c = proxy.connect();
    assert_eq!(c.request(&get("/one")).status, 200);
    let r = c.request(&get("/two"));
    assert_eq!(r.status, 200, "{}", r.raw_head);
    assert_eq!(r.body_str(), "ok");
    assert_eq!(up.connections.load(Ordering::Acquire), 2);
    let seen: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(seen, ["/one", "/two", "/two"]);
}

/// Same, but a POST: not idempotent, so it is not sent twice.
#[test]
fn pooled_post_is_not_retried() {
    let up = Upstream::start(|r, w, up| {
        if up.record(r).is_some() {
            let _ = w.write_all(OK);
        }
        let _ = up.record(r);
    });
    let proxy = single_worker(&upstream_config(up.addr, "response_timeout = \"2s\""));
    let mut c = proxy.connect();
    assert_eq!(c.request(&get("/one")).status, 200);
    let r = c.request(b"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(r.status, 502, "{}", r.raw_head);
    assert_hides_upstream(&r, up.addr);
    thread::sleep(Duration::from_millis(50));
    let seen: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(seen, ["/one", "/two"]);
}

/// The upstream sends `response` to a `GET /t` and closes 50 ms later, in
/// the middle of the body: the client's connection must end too. Returns
/// the head and body the client got.
fn cut_off(response: Vec<u8>) -> (String, String) {
    cut_off_in_pieces(vec![response])
}

/// `cut_off` with the response written in pieces 100 ms apart.
fn cut_off_in_pieces(pieces: Vec<Vec<u8>>) -> (String, String) {
    let up = Upstream::start(move |r, w, up| {
        if up.record(r).is_some() {
            for (i, piece) in pieces.iter().enumerate() {
                if i > 0 {
                    thread::sleep(Duration::from_millis(100));
                }
                let _ = w.write_all(piece);
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    let proxy = Proxy::start(&upstream_config(up.addr, "response_timeout = \"2s\""));
    let mut c = proxy.connect();
    c.send(&get("/t"));
    let (bytes, ended) = read_to_close(&mut c);
    assert!(ended, "client connection left open");
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    (head.to_string(), body.to_string())
}

/// Content-Length 3000, 2000 bytes (enough to go on at once), then a
/// close: the client must not get a complete-looking response, and its
/// connection is closed.
#[test]
fn truncated_length_body_closes_client() {
    let mut response = b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n".to_vec();
    response.extend_from_slice(&[b'x'; 2000]);
    let (head, body) = cut_off(response);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Content-Length: 3000"), "{head}");
    assert_eq!(body, "x".repeat(2000));
}

/// Content-Length 100, 10 bytes, then a close. The small start of the
/// body is held back with the head (to go out in one write), so nothing
/// has reached the client when the upstream fails: it gets a 502 instead
/// of a cut-off 200, and the connection is closed.
#[test]
fn truncated_small_length_body_is_a_502() {
    let (head, body) =
        cut_off(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789".to_vec());
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(!body.contains("0123456789"), "{body:?}");
}

/// Once the head went out, nothing is held back any more: a small piece
/// after it, then a close, leaves the client a cut-off 200, never the
/// start of a 502 behind body bytes it already has.
#[test]
fn failure_after_the_head_went_out_is_never_a_502() {
    let mut start = b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n".to_vec();
    start.extend_from_slice(&[b'x'; 2000]);
    let (head, body) = cut_off_in_pieces(vec![start, vec![b'y'; 50]]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, format!("{}{}", "x".repeat(2000), "y".repeat(50)));
}

/// The same held-back start, then the upstream goes quiet past its
/// `io_timeout`: a 504, well before the upstream would have gone on.
#[test]
fn stalled_small_length_body_is_a_504() {
    let up = Upstream::start(move |r, w, up| {
        if up.record(r).is_some() {
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
            thread::sleep(Duration::from_secs(3));
        }
    });
    let proxy = Proxy::start(&upstream_config(up.addr, "io_timeout = \"300ms\""));
    let mut c = proxy.connect();
    let sent = Instant::now();
    let r = c.request(&get("/t"));
    assert_eq!(r.status, 504, "{}", r.raw_head);
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
}

/// A chunked body cut off mid-way: the client must not see a last-chunk.
#[test]
fn truncated_chunked_body_closes_client() {
    let (head, body) = cut_off(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n".to_vec(),
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.contains("0123456789"), "{body:?}");
    assert!(
        !body.ends_with("0\r\n\r\n"),
        "a complete chunked body: {body:?}"
    );
}
