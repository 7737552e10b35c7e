//! What a listener's socket options do on the wire: the first request's
//! ACK waits for the response (`delayed_ack`, on by default), and
//! `defer_accept` keeps a silent new connection in the kernel, so the head
//! timeout only starts with its first bytes; a reload changes these and
//! `backlog` on a listener that is already accepting.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::thread;
use std::time::Duration;

use common::{ConfigBuilder, Proxy, Upstream, get, read_request};
use ringress::IoMode;

/// A head timeout much shorter than the wait before the request is sent.
const HEAD: &str = "300ms";
/// Silence before the request: past the head timeout, well inside the
/// kernel's one second of deferral.
const SILENCE: Duration = Duration::from_millis(600);

fn config(up: &Upstream, defer_accept: bool) -> String {
    with_listener_keys(up, &format!("defer_accept = {defer_accept}"))
}

/// The test config with `keys` added to its listener.
fn with_listener_keys(up: &Upstream, keys: &str) -> String {
    ConfigBuilder::new(up.addr)
        .sections(&format!("[timeouts]\nclient_head = \"{HEAD}\"\n"))
        .build()
        .replace(
            "bind = \"127.0.0.1:0\"",
            &format!("bind = \"127.0.0.1:0\"\n{keys}"),
        )
}

/// One worker, so every connection meets the socket a reload changed.
fn one_worker(toml: &str) -> Proxy {
    Proxy::start_with(toml, 1, IoMode::Auto)
}

/// Connects, says nothing for `SILENCE`, then sends a GET: the response
/// head's first line, or None if the proxy had closed the connection.
fn request_after_silence(proxy: &Proxy) -> Option<String> {
    let mut s = TcpStream::connect(proxy.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    thread::sleep(SILENCE);
    // The write may succeed on a connection the proxy already closed; the
    // read then sees the close.
    let _ = s.write_all(&get("/silent"));
    let mut buf = [0u8; 512];
    match s.read(&mut buf) {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            text.lines().next().map(str::to_string)
        }
    }
}

#[test]
fn without_defer_accept_a_silent_connection_meets_the_head_timeout() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(&up, false));
    assert_eq!(request_after_silence(&proxy), None);
    assert!(up.requests().is_empty());
}

#[test]
fn defer_accept_starts_the_head_timeout_at_the_first_bytes() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(&up, true));
    assert_eq!(
        request_after_silence(&proxy).as_deref(),
        Some("HTTP/1.1 200 OK")
    );
    assert_eq!(up.last().target, "/silent");
}

/// Publishes `toml` and gives every worker time to apply it: workers pick
/// up a new snapshot's listener settings on their 50 ms tick.
fn reload(proxy: &Proxy, toml: &str) {
    proxy.reload(toml);
    thread::sleep(Duration::from_millis(250));
}

#[test]
fn a_reload_turns_defer_accept_on_and_off_for_a_listener_already_accepting() {
    let up = Upstream::echo();
    let proxy = one_worker(&config(&up, false));
    assert_eq!(request_after_silence(&proxy), None);

    reload(&proxy, &config(&up, true));
    for _ in 0..2 {
        assert_eq!(
            request_after_silence(&proxy).as_deref(),
            Some("HTTP/1.1 200 OK"),
            "the reload's defer_accept did not reach the listening socket"
        );
    }

    reload(&proxy, &config(&up, false));
    assert_eq!(request_after_silence(&proxy), None);
}

/// The listen backlog of the proxy's socket on `port`, as `ss` shows it
/// (Send-Q of a listening socket).
fn backlog(port: u16) -> u32 {
    let out = std::process::Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(fields.len(), 5, "one listening socket expected: {text:?}");
    fields[2].parse().expect("Send-Q is a number")
}

#[test]
fn a_reload_changes_the_backlog_of_the_open_socket() {
    let up = Upstream::echo();
    let proxy = one_worker(&with_listener_keys(&up, "backlog = 123"));
    assert_eq!(backlog(proxy.addr.port()), 123);
    reload(&proxy, &with_listener_keys(&up, "backlog = 321"));
    assert_eq!(backlog(proxy.addr.port()), 321);
    // Still the same socket, still serving.
    assert_eq!(
        proxy.connect().request(&get("/after")).status,
        200,
        "the listener stopped serving after the reload"
    );
}

/// Segments the client has sent that the proxy's kernel has not ACKed yet.
fn unacked(s: &TcpStream) -> u32 {
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: TCP_INFO fills at most `len` bytes of `info`.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_unacked
}

/// An upstream that answers each request after 200 ms: until then the
/// ACK of a request is either held by the proxy's kernel (delayed ACKs;
/// the delayed-ACK timer is 40 ms or more) or long sent (quick ACKs).
fn slow_upstream() -> Upstream {
    Upstream::start(|r, w, _| {
        while read_request(r).is_some() {
            thread::sleep(Duration::from_millis(200));
            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if w.write_all(answer).is_err() {
                return;
            }
        }
    })
}

/// Sends a request on each of 4 new connections and looks 10 ms later at
/// how many of the client's segments are unacknowledged; returns those
/// counts. Each response must arrive and acknowledge the request.
fn unacked_10ms_after_requests(proxy: &Proxy) -> Vec<u32> {
    (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(proxy.addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(&get("/")).unwrap();
            thread::sleep(Duration::from_millis(10));
            let held = unacked(&s);
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
            assert_eq!(unacked(&s), 0, "the response acknowledges the request");
            held
        })
        .collect()
}

// Either way a single look can mislead on a loaded machine (a test
// thread descheduled past the 40 ms timer, a delivery deferred to
// ksoftirqd), so each test asks for one look of 4 to show the difference.

#[test]
fn the_first_requests_ack_rides_on_the_response() {
    let up = slow_upstream();
    let proxy = Proxy::start(&ConfigBuilder::new(up.addr).build());
    let seen = unacked_10ms_after_requests(&proxy);
    assert!(
        seen.contains(&1),
        "the proxy ACKed every request on its own, before its response: {seen:?}"
    );
}

#[test]
fn delayed_ack_false_acks_the_request_at_once() {
    let up = slow_upstream();
    let proxy = Proxy::start(&with_listener_keys(&up, "delayed_ack = false"));
    let seen = unacked_10ms_after_requests(&proxy);
    assert!(
        seen.contains(&0),
        "no request was ACKed before its response: {seen:?}"
    );
}
