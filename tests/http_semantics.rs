//! HTTP/1.1 message semantics through the proxy (RFC 9112, RFC 9110 §7.6):
//! persistence, pipelining, HTTP/1.0 clients, body framing both ways,
//! bodiless responses, 100-continue, 1xx, Upgrade tunnels, hop-by-hop
//! fields, forwarding fields and path normalisation. Every test speaks raw
//! bytes over real sockets on 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use ringress::IoMode;

// ---------------------------------------------------------------- helpers

/// An upstream that records each request and answers it with whatever
/// `respond` writes; `respond` returns false to close the connection.
fn scripted<F>(respond: F) -> Upstream
where
    F: Fn(&SeenRequest, &mut TcpStream) -> bool + Send + Sync + 'static,
{
    Upstream::start(move |r, w, up| {
        while let Some(req) = up.record(r) {
            if !respond(&req, w) {
                return;
            }
        }
    })
}

/// Like `Upstream::echo`, but correct for HEAD (length only, no body),
/// which `Upstream::echo` is not.
fn head_aware_echo() -> Upstream {
    scripted(|req, w| {
        let mut body = format!("{} {}\n", req.method, req.target).into_bytes();
        body.extend_from_slice(&req.body);
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        let ok = w.write_all(head.as_bytes());
        if req.method == "HEAD" {
            ok.is_ok()
        } else {
            ok.and_then(|_| w.write_all(&body)).is_ok()
        }
    })
}

/// Two workers on the given I/O driver (`Proxy::start` uses Auto, which is
/// io_uring where the kernel allows it).
fn start(toml: &str, io: IoMode) -> Proxy {
    Proxy::start_with(toml, 2, io)
}

fn conns(up: &Upstream) -> usize {
    up.connections.load(Ordering::Acquire)
}

/// Deterministic, non-repeating-looking bytes, so reordering or loss shows.
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 9) ^ (i >> 17)) as u8 ^ seed)
        .collect()
}

/// Byte-exact comparison that does not print megabytes on failure.
#[track_caller]
fn assert_bytes(actual: &[u8], expected: &[u8], what: &str) {
    if actual == expected {
        return;
    }
    let first_diff = actual
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(actual.len().min(expected.len()));
    panic!(
        "{what}: got {} bytes, expected {}; first difference at byte {first_diff}",
        actual.len(),
        expected.len()
    );
}

fn set_timeout(c: &Client, d: Duration) {
    c.stream.set_read_timeout(Some(d)).unwrap();
}

/// True only on a real end of stream (a read timeout is not a close, unlike
/// `Client::is_closed`). Set a short read timeout first.
fn at_eof(c: &mut Client) -> bool {
    let mut byte = [0u8; 1];
    matches!(c.reader.read(&mut byte), Ok(0))
}

/// Reads exactly `n` bytes from the client side (for tunnels).
fn read_exact(c: &mut Client, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    c.reader.read_exact(&mut buf).expect("tunnel bytes");
    buf
}

const MIB8: usize = 8 << 20;

// ------------------------------------------------------ 1. keep-alive

#[test]
fn keep_alive_reuses_one_upstream_connection() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    for i in 0..5 {
        let r = c.request(&get(&format!("/k/{i}")));
        assert_eq!(r.status, 200);
        assert_eq!(r.version, "HTTP/1.1");
        assert_eq!(r.body_str(), format!("GET /k/{i}\n"));
        assert_eq!(
            r.header("connection"),
            None,
            "1.1 keep-alive needs no Connection"
        );
    }
    let r = c.request(b"POST /k/post HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(r.body_str(), "POST /k/post\nabc");
    assert_eq!(conns(&up), 1, "all requests share one upstream connection");
    assert_eq!(up.requests().len(), 6);
    // Upstream requests are HTTP/1.1 and carry no Connection field.
    for seen in up.requests() {
        assert_eq!(seen.version, "HTTP/1.1");
        assert_eq!(seen.header("connection"), None);
    }
}

#[test]
fn upstream_close_does_not_close_the_client_connection() {
    // The upstream says `Connection: close` but leaves the socket open (and
    // would answer more): only the proxy's own rule keeps it from reusing it.
    let up = scripted(|req, w| {
        let body = format!("{} {}", req.method, req.target);
        write!(
            w,
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .is_ok()
    });
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    for i in 0..3 {
        let r = c.request(&get(&format!("/c{i}")));
        assert_eq!(r.status, 200);
        assert_eq!(r.body_str(), format!("GET /c{i}"));
        assert_eq!(
            r.header("connection"),
            None,
            "the upstream's Connection: close is hop-by-hop"
        );
    }
    assert_eq!(conns(&up), 3, "a closed upstream connection is not reused");
}

#[test]
fn http11_connection_close_is_honoured() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    let r = c.request(b"GET /bye HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "GET /bye\n");
    assert_eq!(r.header("connection"), Some("close"));
    set_timeout(&c, Duration::from_secs(2));
    assert!(at_eof(&mut c), "the proxy closes after Connection: close");
    // The close is hop-by-hop: the upstream connection stays reusable.
    assert_eq!(up.last().header("connection"), None);
    let mut c = proxy.connect();
    let r = c.request(&get("/again"));
    assert_eq!(r.status, 200);
}

// ------------------------------------------------------ 2. pipelining

#[test]
fn pipelined_requests_are_answered_in_order() {
    pipelining(IoMode::Auto);
}

#[test]
fn pipelined_requests_are_answered_in_order_epoll() {
    pipelining(IoMode::Epoll);
}

fn pipelining(io: IoMode) {
    let up = head_aware_echo();
    let proxy = start(&simple_config(up.addr), io);
    let mut c = proxy.connect();
    let big = pattern(40 * 1024, 7);
    let mut batch = Vec::new();
    batch.extend_from_slice(&get("/one"));
    batch.extend_from_slice(
        b"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
    );
    batch.extend_from_slice(&get("/three"));
    batch.extend_from_slice(
        b"POST /four HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    );
    batch.extend_from_slice(
        format!(
            "PUT /five HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            big.len()
        )
        .as_bytes(),
    );
    batch.extend_from_slice(&big);
    batch.extend_from_slice(b"HEAD /six HTTP/1.1\r\nHost: a\r\n\r\n");
    batch.extend_from_slice(&get("/seven"));
    c.send(&batch);

    let expect: [(&str, &[u8]); 5] = [
        ("GET /one\n", b""),
        ("POST /two\n", b"hello world"),
        ("GET /three\n", b""),
        ("POST /four\n", b"abcde"),
        ("PUT /five\n", &big),
    ];
    for (prefix, body) in expect {
        let r = c.read_response();
        assert_eq!(r.status, 200, "{prefix}");
        let mut want = prefix.as_bytes().to_vec();
        want.extend_from_slice(body);
        assert_bytes(&r.body, &want, prefix);
    }
    let head = c.read_response_to(true).expect("HEAD response");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("10"));
    let r = c.read_response();
    assert_eq!(r.body_str(), "GET /seven\n");

    let targets: Vec<String> = up.requests().iter().map(|s| s.target.clone()).collect();
    assert_eq!(
        targets,
        ["/one", "/two", "/three", "/four", "/five", "/six", "/seven"]
    );
    assert_eq!(conns(&up), 1);
}

// ------------------------------------------------------ 3. HTTP/1.0

#[test]
fn http10_client_closes_by_default() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    let r = c.request(b"GET /ten HTTP/1.0\r\nHost: a\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.version, "HTTP/1.1");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.body_str(), "GET /ten\n");
    set_timeout(&c, Duration::from_secs(2));
    assert!(
        at_eof(&mut c),
        "proxy closes a 1.0 connection without keep-alive"
    );
    // The upstream still got a 1.1 request with a Host.
    let seen = up.last();
    assert_eq!(seen.version, "HTTP/1.1");
    assert_eq!(seen.header("host"), Some("a"));
}

#[test]
fn http10_client_keep_alive_when_asked() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    for i in 0..3 {
        let r = c.request(
            format!("GET /ka{i} HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert!(r.header("content-length").is_some());
        assert_eq!(r.body_str(), format!("GET /ka{i}\n"));
    }
    // A POST with a body on the same connection, then a closing request.
    let r = c.request(
        b"POST /ka-post HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert_eq!(r.header("connection"), Some("keep-alive"));
    assert_eq!(r.body_str(), "POST /ka-post\nhi");
    let r = c.request(b"GET /last HTTP/1.0\r\nHost: a\r\n\r\n");
    assert_eq!(r.header("connection"), Some("close"));
    set_timeout(&c, Duration::from_secs(2));
    assert!(at_eof(&mut c));
    assert_eq!(conns(&up), 1);
    // The keep-alive token is hop-by-hop.
    for seen in up.requests() {
        assert_eq!(seen.header("connection"), None);
        assert_eq!(seen.header("keep-alive"), None);
    }
}

// ------------------------------------------------------ 4. request bodies

#[test]
fn content_length_and_chunked_request_bodies_reach_upstream() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();

    let r = c.request(b"POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world");
    assert_eq!(r.body_str(), "POST /cl\nhello world");
    let seen = up.last();
    assert_eq!(seen.header("content-length"), Some("11"));
    assert_eq!(seen.header("transfer-encoding"), None);

    let r = c.request(
        b"POST /ch HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6;ext=1\r\n world\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "POST /ch\nhello world0123456789");
    let seen = up.last();
    assert_eq!(seen.header("transfer-encoding"), Some("chunked"));
    assert_eq!(seen.header("content-length"), None);
    assert_eq!(seen.body, b"hello world0123456789");
    assert!(!seen.raw_head.contains("ext=1"));

    // The connection is still in step after the chunked body.
    let r = c.request(&get("/after"));
    assert_eq!(r.body_str(), "GET /after\n");

    // Body split across writes with pauses: streamed, not lost.
    c.send(b"PUT /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01");
    thread::sleep(Duration::from_millis(30));
    c.send(b"2345");
    thread::sleep(Duration::from_millis(30));
    c.send(b"6789");
    let r = c.read_response();
    assert_eq!(r.body_str(), "PUT /slow\n0123456789");
    assert_eq!(conns(&up), 1);
}

#[test]
fn large_content_length_request_body_streams_intact() {
    large_cl_request(IoMode::Auto);
}

#[test]
fn large_content_length_request_body_streams_intact_epoll() {
    large_cl_request(IoMode::Epoll);
}

fn large_cl_request(io: IoMode) {
    let up = Upstream::echo();
    let proxy = start(&simple_config(up.addr), io);
    let mut c = proxy.connect();
    let body = pattern(MIB8, 0x5a);
    c.send(format!("POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: {MIB8}\r\n\r\n").as_bytes());
    for piece in body.chunks(64 * 1024 + 17) {
        c.send(piece);
    }
    let r = c.read_response();
    assert_eq!(r.status, 200);
    let mut want = b"POST /big\n".to_vec();
    want.extend_from_slice(&body);
    assert_bytes(&r.body, &want, "echoed 8 MiB body");
    let seen = up.last();
    assert_eq!(
        seen.header("content-length"),
        Some(MIB8.to_string().as_str())
    );
    assert_bytes(&seen.body, &body, "upstream's copy");
    // Still usable afterwards.
    assert_eq!(c.request(&get("/next")).body_str(), "GET /next\n");
}

#[test]
fn large_chunked_request_body_is_rechunked_intact() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    let body = pattern(MIB8, 0xa5);
    c.send(b"POST /bigchunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut off = 0;
    let mut size = 1;
    while off < body.len() {
        let n = size.min(body.len() - off);
        let mut frame = format!("{n:x}\r\n").into_bytes();
        frame.extend_from_slice(&body[off..off + n]);
        frame.extend_from_slice(b"\r\n");
        c.send(&frame);
        off += n;
        // Sizes from 1 byte to ~100 KiB, varying.
        size = (size * 7 + 13) % 100_000 + 1;
    }
    c.send(b"0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    let mut want = b"POST /bigchunk\n".to_vec();
    want.extend_from_slice(&body);
    assert_bytes(&r.body, &want, "echoed chunked body");
    let seen = up.last();
    assert_eq!(seen.header("transfer-encoding"), Some("chunked"));
    assert_eq!(seen.header("content-length"), None);
    assert_bytes(&seen.body, &body, "upstream's copy");
    assert_eq!(c.request(&get("/next")).body_str(), "GET /next\n");
}

#[test]
fn large_response_bodies_stream_intact() {
    large_responses(IoMode::Auto);
}

#[test]
fn large_response_bodies_stream_intact_epoll() {
    large_responses(IoMode::Epoll);
}

fn large_responses(io: IoMode) {
    let body = pattern(MIB8, 0x3c);
    let served = body.clone();
    let up = scripted(move |req, w| {
        let ok = if req.target == "/cl" {
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                served.len()
            )
            .and_then(|_| w.write_all(&served))
        } else {
            // Chunked in uneven chunks.
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for piece in served.chunks(50_001) {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            w.write_all(&out)
        };
        ok.is_ok()
    });
    let proxy = start(&simple_config(up.addr), io);
    let mut c = proxy.connect();
    let r = c.request(&get("/cl"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(MIB8.to_string().as_str()));
    assert!(!r.chunked);
    assert_bytes(&r.body, &body, "8 MiB Content-Length response");
    let r = c.request(&get("/chunked"));
    assert_eq!(r.status, 200);
    assert!(r.chunked);
    assert_bytes(&r.body, &body, "8 MiB chunked response");
    assert_eq!(conns(&up), 1);
}

// ------------------------------------------------------ 5. response framing

fn chunked_upstream() -> Upstream {
    scripted(|_, w| {
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: chunked\r\n\r\n";
        let ok = w
            .write_all(head)
            .and_then(|_| w.write_all(b"5\r\nhello\r\n"))
            .and_then(|_| {
                thread::sleep(Duration::from_millis(20));
                w.write_all(b"6;name=v\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n")
            });
        ok.is_ok()
    })
}

#[test]
fn chunked_response_to_http11_client_stays_chunked() {
    let up = chunked_upstream();
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    for _ in 0..2 {
        let r = c.request(&get("/chunked"));
        assert_eq!(r.status, 200);
        assert!(r.chunked, "1.1 client gets chunked: {}", r.raw_head);
        assert_eq!(r.header("content-length"), None);
        assert_eq!(r.header("x-kind"), Some("chunked"));
        assert_eq!(r.body_str(), "hello world");
    }
    assert_eq!(
        conns(&up),
        1,
        "a complete chunked response leaves the upstream reusable"
    );
}

#[test]
fn chunked_response_to_http10_client_is_close_delimited() {
    let up = chunked_upstream();
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    c.send(b"GET /chunked HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(!r.chunked);
    assert_eq!(r.header("transfer-encoding"), None, "{}", r.raw_head);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("connection"), Some("close"));
    // read_response read to EOF: the proxy closed, and the raw body is exact.
    assert_eq!(r.body_str(), "hello world");
}

fn close_delimited_upstream() -> Upstream {
    scripted(|_, w| {
        let _ = w.write_all(b"HTTP/1.1 200 OK\r\nX-Kind: eof\r\n\r\nfirst-");
        thread::sleep(Duration::from_millis(20));
        let _ = w.write_all(&pattern(100_000, 1));
        thread::sleep(Duration::from_millis(20));
        let _ = w.write_all(b"-last");
        false
    })
}

fn close_delimited_body() -> Vec<u8> {
    let mut b = b"first-".to_vec();
    b.extend_from_slice(&pattern(100_000, 1));
    b.extend_from_slice(b"-last");
    b
}

#[test]
fn close_delimited_response_is_chunked_to_http11_client() {
    close_delimited_to_11(IoMode::Auto);
}

#[test]
fn close_delimited_response_is_chunked_to_http11_client_epoll() {
    close_delimited_to_11(IoMode::Epoll);
}

fn close_delimited_to_11(io: IoMode) {
    let up = close_delimited_upstream();
    let proxy = start(&simple_config(up.addr), io);
    let mut c = proxy.connect();
    let r = c.request(&get("/eof"));
    assert_eq!(r.status, 200);
    assert!(r.chunked, "{}", r.raw_head);
    assert_eq!(r.header("x-kind"), Some("eof"));
    assert_bytes(&r.body, &close_delimited_body(), "close-delimited body");
    // The client connection survives: the chunked framing told it where the end was.
    let r = c.request(&get("/eof2"));
    assert_eq!(r.status, 200);
    assert_bytes(&r.body, &close_delimited_body(), "second body");
    assert_eq!(conns(&up), 2);
}

#[test]
fn close_delimited_response_to_http10_client_closes() {
    let up = close_delimited_upstream();
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    let r = c.request(b"GET /eof HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(!r.chunked);
    assert_eq!(r.header("connection"), Some("close"));
    assert_bytes(&r.body, &close_delimited_body(), "raw close-delimited body");
}

/// An upstream that writes its head, waits `gap`, then writes the body:
/// what nginx does serving a file (the head, then `sendfile`).
fn split_write_upstream(head: Vec<u8>, body: Vec<u8>, gap: Duration) -> Upstream {
    scripted(move |_, w| {
        w.write_all(&head).is_ok() && {
            thread::sleep(gap);
            w.write_all(&body).is_ok()
        }
    })
}

/// The first bytes the client can read after sending `request`, and when
/// they came (from the send). Raw reads: one `read` is what one write of
/// the proxy's (one segment, on loopback) delivered.
fn first_read(c: &mut Client, request: &[u8]) -> (Vec<u8>, Duration) {
    let sent = Instant::now();
    c.send(request);
    let mut buf = vec![0; 4096];
    let n = c.stream.read(&mut buf).expect("first read");
    buf.truncate(n);
    (buf, sent.elapsed())
}

#[test]
fn small_body_after_a_separate_head_goes_out_with_it() {
    small_body_with_head(IoMode::Auto);
}

#[test]
fn small_body_after_a_separate_head_goes_out_with_it_epoll() {
    small_body_with_head(IoMode::Epoll);
}

/// A head and a small length-framed body that the upstream writes apart
/// reach the client in one write: the head alone would cost a segment of
/// its own (as nginx's postpone_output avoids too).
fn small_body_with_head(io: IoMode) {
    let up = split_write_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Kind: split\r\n\r\n".to_vec(),
        b"hello".to_vec(),
        Duration::from_millis(150),
    );
    let proxy = start(&simple_config(up.addr), io);
    let mut c = proxy.connect();
    for _ in 0..2 {
        let (got, _) = first_read(&mut c, &get("/split"));
        let got = String::from_utf8_lossy(&got);
        assert!(
            got.starts_with("HTTP/1.1 200 OK\r\n") && got.contains("X-Kind: split\r\n"),
            "{got:?}"
        );
        assert!(
            got.ends_with("\r\n\r\nhello"),
            "head and body in one read: {got:?}"
        );
    }
    assert_eq!(conns(&up), 1);
}

#[test]
fn larger_body_start_is_not_held_back() {
    larger_body_start(IoMode::Auto);
}

#[test]
fn larger_body_start_is_not_held_back_epoll() {
    larger_body_start(IoMode::Epoll);
}

fn larger_body_start(io: IoMode) {
    // 2000 bytes are past the postpone bound: the head and what came with
    // it go out at once, before the rest of the body arrives.
    let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 2005\r\n\r\n".to_vec();
    head.extend_from_slice(&[b'a'; 2000]);
    let up = split_write_upstream(head, b"hello".to_vec(), Duration::from_millis(600));
    let proxy = start(&simple_config(up.addr), io);
    let mut c = proxy.connect();
    let (got, when) = first_read(&mut c, &get("/big-start"));
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{got:?}");
    assert!(
        when < Duration::from_millis(450),
        "the head and the body's start came after {when:?}, with the rest of the body"
    );
}

#[test]
fn chunked_pieces_are_not_held_back() {
    chunked_pieces(IoMode::Auto);
}

#[test]
fn chunked_pieces_are_not_held_back_epoll() {
    chunked_pieces(IoMode::Epoll);
}

fn chunked_pieces(io: IoMode) {
    // A stream (server-sent events and the like): each piece goes on as
    // it comes, however small.
    let up = split_write_upstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nevent1\r\n".to_vec(),
        b"6\r\nevent2\r\n0\r\n\r\n".to_vec(),
        Duration::from_millis(600),
    );
    let proxy = start(&simple_config(up.addr), io);
    let mut c = proxy.connect();
    let sent = Instant::now();
    c.send(&get("/events"));
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(6).any(|w| w == b"event1") {
        let n = c.stream.read(&mut buf).expect("read");
        assert!(n > 0, "closed early: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    let when = sent.elapsed();
    assert!(
        when < Duration::from_millis(450),
        "the first piece came after {when:?}, with the second"
    );
    assert!(
        !got.windows(6).any(|w| w == b"event2"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

// ------------------------------------------------------ 6. bodiless responses

#[test]
fn head_response_keeps_length_and_has_no_body() {
    let up = scripted(|req, w| {
        let ok = match req.method.as_str() {
            // The upstream announces the GET length but sends no body.
            "HEAD" => w.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\n\r\n",
            ),
            _ => w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nget"),
        };
        ok.is_ok()
    });
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    let start = Instant::now();
    for _ in 0..2 {
        let r = c.request(b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("1234"));
        assert_eq!(r.header("transfer-encoding"), None);
        assert_eq!(r.header("content-type"), Some("text/plain"));
        // Next request on the same connection: no body bytes in between.
        let r = c.request(&get("/g"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body_str(), "get");
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "HEAD must not wait for a body ({:?})",
        start.elapsed()
    );
    assert_eq!(conns(&up), 1);
    assert_eq!(up.requests()[0].method, "HEAD");
}

#[test]
fn no_content_and_not_modified_have_no_body() {
    let up = scripted(|req, w| {
        let ok = match req.target.as_str() {
            "/204" => w.write_all(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"),
            // A 304 may carry the representation's Content-Length.
            "/304" => w.write_all(
                b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 99\r\n\r\n",
            ),
            _ => w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        };
        ok.is_ok()
    });
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    let start = Instant::now();
    for _ in 0..2 {
        let r = c.request(&get("/204"));
        assert_eq!(r.status, 204);
        assert_eq!(r.header("x-a"), Some("1"));
        assert_eq!(r.header("transfer-encoding"), None, "{}", r.raw_head);
        assert_eq!(r.header("content-length"), None, "{}", r.raw_head);
        let r = c.request(&get("/ok"));
        assert_eq!(r.body_str(), "ok");

        let r = c.request(b"GET /304 HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"v1\"\r\n\r\n");
        assert_eq!(r.status, 304);
        assert_eq!(r.header("etag"), Some("\"v1\""));
        assert_eq!(r.header("transfer-encoding"), None, "{}", r.raw_head);
        let r = c.request(&get("/ok"));
        assert_eq!(r.body_str(), "ok");
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "204/304 must not wait for a body ({:?})",
        start.elapsed()
    );
    assert_eq!(conns(&up), 1);
}

// ------------------------------------------------------ 7. Expect: 100-continue

#[test]
fn expect_continue_gets_100_before_body() {
    expect_continue(IoMode::Auto);
}

#[test]
fn expect_continue_gets_100_before_body_epoll() {
    expect_continue(IoMode::Epoll);
}

fn expect_continue(io: IoMode) {
    let up = Upstream::echo();
    let proxy = start(&simple_config(up.addr), io);
    let mut c = proxy.connect();
    set_timeout(&c, Duration::from_secs(2));
    c.send(b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
    let interim = c
        .read_response_to(false)
        .expect("100 Continue before the body is sent");
    assert_eq!(interim.status, 100);
    assert_eq!(interim.version, "HTTP/1.1");
    c.send(b"hello world");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "POST /e\nhello world");
    let seen = up.last();
    assert_eq!(seen.header("expect"), None, "Expect is not forwarded");
    assert_eq!(seen.body, b"hello world");

    // Chunked body with Expect.
    c.send(
        b"POST /e2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
    );
    let interim = c.read_response_to(false).expect("100 Continue");
    assert_eq!(interim.status, 100);
    c.send(b"4\r\nabcd\r\n0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "POST /e2\nabcd");
    assert_eq!(up.last().header("expect"), None);

    // A client that sends the body without waiting still gets its answer,
    // and the connection stays in step.
    c.send(b"POST /e3 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nxyz");
    let mut r = c.read_response();
    while r.status == 100 {
        r = c.read_response();
    }
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "POST /e3\nxyz");
    assert_eq!(c.request(&get("/after")).body_str(), "GET /after\n");
}

#[test]
fn expect_continue_over_body_limit_gets_413_without_100() {
    let up = Upstream::echo();
    let proxy = Proxy::start(
        &ConfigBuilder::new(up.addr)
            .route(r#"max_body_size = "1KiB""#)
            .build(),
    );
    let mut c = proxy.connect();
    set_timeout(&c, Duration::from_secs(2));
    c.send(
        b"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 4096\r\nExpect: 100-continue\r\n\r\n",
    );
    let r = c.read_response();
    assert_eq!(r.status, 413, "no 100 Continue first: {}", r.raw_head);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(at_eof(&mut c));
    assert!(up.requests().is_empty(), "nothing reached the upstream");

    // Under the limit the same route still answers 100.
    let mut c = proxy.connect();
    set_timeout(&c, Duration::from_secs(2));
    c.send(b"POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.read_response();
    assert_eq!(interim.status, 100);
    c.send(&[b'x'; 1024]);
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), "POST /ok\n".len() + 1024);
}

#[test]
fn chunked_body_over_limit_gets_413() {
    let up = Upstream::echo();
    let proxy = Proxy::start(
        &ConfigBuilder::new(up.addr)
            .route(r#"max_body_size = "1KiB""#)
            .build(),
    );
    let mut c = proxy.connect();
    set_timeout(&c, Duration::from_secs(2));
    // No length up front: the limit is enforced while streaming.
    let mut req =
        b"POST /big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n".to_vec();
    req.extend_from_slice(&[b'x'; 2000]);
    req.extend_from_slice(b"\r\n0\r\n\r\n");
    c.send(&req);
    let r = c.read_response();
    assert_eq!(r.status, 413, "{}", r.raw_head);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(at_eof(&mut c));
    assert!(
        up.requests().is_empty(),
        "the upstream never got a complete request"
    );
}

// ------------------------------------------------------ 8. 1xx interim

fn early_hints_upstream() -> Upstream {
    scripted(|_, w| {
        let ok = w
            .write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            .and_then(|_| {
                thread::sleep(Duration::from_millis(20));
                w.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </app.js>; rel=preload\r\n\r\n")
            })
            .and_then(|_| {
                thread::sleep(Duration::from_millis(20));
                w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
            });
        ok.is_ok()
    })
}

#[test]
fn early_hints_forwarded_to_http11_client() {
    let up = early_hints_upstream();
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    for _ in 0..2 {
        c.send(&get("/hints"));
        let first = c.read_response();
        assert_eq!(first.status, 103);
        assert_eq!(first.header("link"), Some("</style.css>; rel=preload"));
        let second = c.read_response();
        assert_eq!(second.status, 103);
        assert_eq!(second.header("link"), Some("</app.js>; rel=preload"));
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.body_str(), "final");
    }
}

#[test]
fn early_hints_not_sent_to_http10_client() {
    let up = early_hints_upstream();
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    let r = c.request(b"GET /hints HTTP/1.0\r\nHost: a\r\n\r\n");
    assert_eq!(
        r.status, 200,
        "a 1.0 client cannot take 1xx: {}",
        r.raw_head
    );
    assert_eq!(r.body_str(), "final");
}

// ------------------------------------------------------ 9. Upgrade

/// Answers an upgrade request with 101 (plus `greeting` in the same
/// write), then echoes bytes until EOF. Other requests get 200.
fn websocket_upstream(greeting: &'static [u8]) -> Upstream {
    Upstream::start(move |r, w, up| {
        while let Some(req) = up.record(r) {
            if req.header("upgrade").is_some() {
                let mut out = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                    .to_vec();
                out.extend_from_slice(greeting);
                if w.write_all(&out).is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                loop {
                    match r.read(&mut buf) {
                        // The client half-closed: the way back still works.
                        Ok(0) => {
                            let _ = w.write_all(b"BYE");
                            return;
                        }
                        Err(_) => return,
                        Ok(n) => {
                            if w.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain")
                .is_err()
            {
                return;
            }
        }
    })
}

const WS_REQUEST: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[test]
fn websocket_upgrade_tunnels_bytes_both_ways() {
    websocket_tunnel(IoMode::Auto);
}

#[test]
fn websocket_upgrade_tunnels_bytes_both_ways_epoll() {
    websocket_tunnel(IoMode::Epoll);
}

fn websocket_tunnel(io: IoMode) {
    let up = websocket_upstream(b"HELLO");
    let proxy = start(&simple_config(up.addr), io);
    let mut c = proxy.connect();
    set_timeout(&c, Duration::from_secs(2));
    c.send(WS_REQUEST);
    let r = c.read_response();
    assert_eq!(r.status, 101);
    assert_eq!(r.header("upgrade"), Some("websocket"), "{}", r.raw_head);
    assert!(
        r.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("upgrade")),
        "{}",
        r.raw_head
    );
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(
        read_exact(&mut c, 5),
        b"HELLO",
        "bytes the upstream sent with its 101"
    );

    let seen = up.last();
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert!(
        seen.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("upgrade")),
        "{}",
        seen.raw_head
    );
    assert_eq!(
        seen.header("sec-websocket-key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );

    let big = pattern(100_000, 9);
    let msgs: [&[u8]; 3] = [b"ping", b"\x81\x05hello", &big];
    for msg in msgs {
        c.send(msg);
        assert_bytes(
            &read_exact(&mut c, msg.len()),
            msg,
            "echo through the tunnel",
        );
    }
    // A half-close passes through: the upstream sees EOF and can still
    // answer; its close then reaches the client.
    c.shutdown_write();
    assert_eq!(read_exact(&mut c, 3), b"BYE");
    assert!(at_eof(&mut c));
}

#[test]
fn websocket_bytes_sent_before_101_reach_upstream() {
    let up = websocket_upstream(b"");
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    set_timeout(&c, Duration::from_secs(2));
    let mut bytes = WS_REQUEST.to_vec();
    bytes.extend_from_slice(b"EARLY");
    c.send(&bytes);
    let r = c.read_response();
    assert_eq!(r.status, 101);
    assert_eq!(read_exact(&mut c, 5), b"EARLY");
    c.send(b"late");
    assert_eq!(read_exact(&mut c, 4), b"late");
}

#[test]
fn upgrade_refused_with_200_stays_http() {
    let up = scripted(|req, w| {
        let body = format!("{} {}", req.method, req.target);
        write!(
            w,
            "HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .is_ok()
    });
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    let r = c.request(WS_REQUEST);
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "GET /ws");
    assert_eq!(r.header("upgrade"), None, "{}", r.raw_head);
    assert!(
        !r.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("upgrade"))
    );
    // Still plain HTTP on both sides.
    let r = c.request(&get("/next"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "GET /next");
    let seen = up.last();
    assert_eq!(seen.target, "/next");
    assert_eq!(seen.header("upgrade"), None);
}

#[test]
fn upgrade_from_http10_client_is_not_forwarded() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    let r = c.request(
        b"GET /ws HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.header("upgrade"), None);
    assert_eq!(seen.header("connection"), None);
}

#[test]
fn unsolicited_101_is_a_bad_gateway() {
    let up = scripted(|_, w| {
        let _ = w.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nRAW",
        );
        false
    });
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    let r = c.request(&get("/not-an-upgrade"));
    assert_eq!(r.status, 502, "{}", r.raw_head);
    assert!(!r.body_str().contains("RAW"));
}

// ------------------------------------------------------ 10. hop-by-hop fields

#[test]
fn hop_by_hop_fields_removed_both_directions() {
    let up = scripted(|_, w| {
        w.write_all(
            b"HTTP/1.1 200 OK\r\nConnection: X-Bar\r\nX-Bar: internal\r\n\
              Keep-Alive: timeout=99\r\nProxy-Connection: keep-alive\r\n\
              X-Public: yes\r\nContent-Length: 2\r\n\r\nok",
        )
        .is_ok()
    });
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    let r = c.request(
        b"GET /hop HTTP/1.1\r\nHost: a\r\nConnection: X-Foo, keep-alive\r\nConnection: X-Baz\r\n\
          X-Foo: secret\r\nX-Baz: also-secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
          Trailer: X-Checksum\r\nProxy-Connection: keep-alive\r\nX-End-To-End: kept\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "ok");
    let seen = up.last();
    for name in [
        "connection",
        "x-foo",
        "x-baz",
        "keep-alive",
        "te",
        "trailer",
        "proxy-connection",
        "transfer-encoding",
    ] {
        assert_eq!(
            seen.header(name),
            None,
            "{name} reached upstream:\n{}",
            seen.raw_head
        );
    }
    assert_eq!(seen.header("x-end-to-end"), Some("kept"));

    for name in ["x-bar", "keep-alive", "proxy-connection"] {
        assert_eq!(
            r.header(name),
            None,
            "{name} reached client:\n{}",
            r.raw_head
        );
    }
    assert!(
        !r.header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("x-bar")),
        "{}",
        r.raw_head
    );
    assert_eq!(r.header("x-public"), Some("yes"));
    // The client connection stays persistent.
    assert_eq!(c.request(&get("/again")).status, 200);
}

// ------------------------------------------------------ 11. forwarding fields

#[test]
fn forwarding_fields_added_and_appended() {
    let up = scripted(|req, w| {
        let via = if req.target == "/via" {
            "Via: 1.1 app\r\n"
        } else {
            ""
        };
        write!(w, "HTTP/1.1 200 OK\r\n{via}Content-Length: 2\r\n\r\nok").is_ok()
    });
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    let r = c.request(
        b"GET /fwd HTTP/1.1\r\nHost: shop.example:8080\r\nX-Forwarded-For: 1.2.3.4\r\n\
          X-Forwarded-Proto: https\r\nX-Forwarded-Host: spoofed.example\r\nVia: 1.0 edge\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("via"), Some("1.1 ringress"));
    let seen = up.last();
    assert_eq!(seen.header("host"), Some("shop.example:8080"), "Host kept");
    assert_eq!(seen.header("x-forwarded-for"), Some("1.2.3.4, 127.0.0.1"));
    assert_eq!(seen.header_count("x-forwarded-for"), 1);
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header_count("x-forwarded-proto"), 1);
    assert_eq!(seen.header("x-forwarded-host"), Some("shop.example:8080"));
    assert_eq!(seen.header_count("x-forwarded-host"), 1);
    assert_eq!(seen.header("via"), Some("1.0 edge, 1.1 ringress"));
    assert_eq!(seen.header_count("via"), 1);

    // Several X-Forwarded-For lines are folded in order; the response Via
    // is appended to the upstream's.
    let r = c.request(
        b"GET /via HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n\r\n",
    );
    assert_eq!(r.header("via"), Some("1.1 app, 1.1 ringress"));
    let seen = up.last();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("1.2.3.4, 5.6.7.8, 127.0.0.1")
    );
    assert_eq!(seen.header("via"), Some("1.1 ringress"));
    assert_eq!(seen.header("x-forwarded-host"), Some("a"));

    // A 1.0 client is recorded as such in Via.
    c.request(b"GET /ten HTTP/1.0\r\nHost: a\r\n\r\n");
    assert_eq!(up.last().header("via"), Some("1.0 ringress"));
}

#[test]
fn forwarding_fields_can_be_switched_off() {
    let up = scripted(|_, w| {
        w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_ok()
    });
    let top = "[forwarding]\nx_forwarded_for = false\nx_forwarded_proto = false\n\
               x_forwarded_host = false\nvia = false\n";
    let proxy = Proxy::start(&ConfigBuilder::new(up.addr).sections(top).build());
    let mut c = proxy.connect();
    let r = c.request(&get("/plain"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("via"), None);
    let seen = up.last();
    for name in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "via",
    ] {
        assert_eq!(seen.header(name), None, "{name} added:\n{}", seen.raw_head);
    }
    // Values the client sent pass through untouched.
    c.request(
        b"GET /pass HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\n\
          X-Forwarded-Host: orig.example\r\nVia: 1.0 edge\r\n\r\n",
    );
    let seen = up.last();
    assert_eq!(seen.header("x-forwarded-for"), Some("1.2.3.4"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-host"), Some("orig.example"));
    assert_eq!(seen.header("via"), Some("1.0 edge"));
}

#[test]
fn host_header_override_replaces_host() {
    let up = Upstream::echo();
    let proxy = Proxy::start(
        &ConfigBuilder::new(up.addr)
            .group(r#"host_header = "internal.example""#)
            .build(),
    );
    let mut c = proxy.connect();
    let r = c.request(b"GET /h HTTP/1.1\r\nHost: public.example\r\n\r\n");
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.header("host"), Some("internal.example"));
    assert_eq!(seen.header_count("host"), 1);
    assert_eq!(seen.header("x-forwarded-host"), Some("public.example"));
}

#[test]
fn absolute_form_target_is_sent_in_origin_form() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    let r =
        c.request(b"GET http://abs.example:8080/p/./q?x=1 HTTP/1.1\r\nHost: other.example\r\n\r\n");
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.target, "/p/q?x=1");
    // RFC 9112 §3.2.2: the target's authority replaces Host.
    assert_eq!(seen.header("host"), Some("abs.example:8080"));
    assert_eq!(seen.header_count("host"), 1);
    assert_eq!(seen.header("x-forwarded-host"), Some("abs.example:8080"));
}

// ------------------------------------------------------ 12. path normalisation

#[test]
fn path_is_normalised_and_query_preserved() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    for (sent, forwarded) in [
        ("/a/./b//c", "/a/b/c"),
        ("/a/./b//c?x=/./y&z=%2e%2E//", "/a/b/c?x=/./y&z=%2e%2E//"),
        ("/p/q/../r?", "/p/r?"),
        ("/%7euser/x%2fy", "/~user/x%2Fy"),
        ("/plain/path?q=1&r=2", "/plain/path?q=1&r=2"),
    ] {
        let r = c.request(&get(sent));
        assert_eq!(r.status, 200, "{sent}");
        assert_eq!(r.body_str(), format!("GET {forwarded}\n"), "{sent}");
        assert_eq!(up.last().target, forwarded, "{sent}");
    }
}
