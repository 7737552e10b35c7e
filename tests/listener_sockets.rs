//! What a listener's socket options do on the wire: the first request's
//! ACK waits for the response (delayed ACKs from the start), and
//! `defer_accept` keeps a silent new connection in the kernel, so the head
//! timeout only starts with its first bytes, also after a reload turns it
//! on for a listener that is already accepting.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::thread;
use std::time::Duration;

use common::{ConfigBuilder, Proxy, Upstream, get, read_request};

/// A head timeout much shorter than the wait before the request is sent.
const HEAD: &str = "300ms";
/// Silence before the request: past the head timeout, well inside the
/// kernel's one second of deferral.
const SILENCE: Duration = Duration::from_millis(600);

fn config(up: &Upstream, defer_accept: bool) -> String {
    ConfigBuilder::new(up.addr)
        .sections(&format!("[timeouts]\nclient_head = \"{HEAD}\"\n"))
        .build()
        .replace(
            "bind = \"127.0.0.1:0\"",
            &format!("bind = \"127.0.0.1:0\"\ndefer_accept = {defer_accept}"),
        )
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
    let proxy = Proxy::start(&config(&up, false));
    assert_eq!(request_after_silence(&proxy), None);

    reload(&proxy, &config(&up, true));
    assert_eq!(
        request_after_silence(&proxy).as_deref(),
        Some("HTTP/1.1 200 OK"),
        "the reload's defer_accept did not reach the listening socket"
    );

    reload(&proxy, &config(&up, false));
    assert_eq!(request_after_silence(&proxy), None);
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

#[test]
fn the_first_requests_ack_rides_on_the_response() {
    // The upstream answers after 200 ms: until then the proxy's kernel
    // holds the ACK of the request (the delayed-ACK timer is 40 ms or
    // more). With quick ACKs it would go out at once, within the write.
    let up = Upstream::start(|r, w, _| {
        while read_request(r).is_some() {
            thread::sleep(Duration::from_millis(200));
            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if w.write_all(answer).is_err() {
                return;
            }
        }
    });
    let proxy = Proxy::start(&ConfigBuilder::new(up.addr).build());
    // A test thread descheduled for 40 ms between the write and the look
    // would see the timer's ACK: a few tries, each on a new connection.
    let mut held = 0;
    for _ in 0..4 {
        let mut s = TcpStream::connect(proxy.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&get("/")).unwrap();
        // Loopback delivers within the write; a quick ACK would too.
        held += unacked(&s);
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
        assert_eq!(unacked(&s), 0, "the response acknowledges the request");
        if held > 0 {
            return;
        }
    }
    panic!("the proxy ACKed the request on its own, before its response, 4 times of 4");
}
