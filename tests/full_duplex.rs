//! Early answers while the client is still sending: an upstream that
//! answers an upload before reading all of its body has that answer
//! relayed to the client at once, whether the client keeps sending,
//! pauses or waits for the answer, and on every body path (copied,
//! spliced, chunked). The connection then closes.

mod common;

use std::io::{BufRead, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use ringress::IoMode;

/// Long enough that a relay waiting for the rest of the body (the old
/// behaviour) is told apart from an early answer: the client's I/O
/// timeout.
const CLIENT_IO: &str = "[timeouts]\nclient_io = \"20s\"";

/// How the test upstream treats the request after reading its head.
#[derive(Clone, Copy)]
enum After {
    /// Answers 413 and closes (unread body bytes make its kernel reset).
    AnswerAndClose,
    /// Answers 401 and keeps the connection open, reading nothing more.
    AnswerAndWait,
}

fn upstream(after: After) -> Upstream {
    Upstream::start(move |r, w, _| {
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
        }
        match after {
            After::AnswerAndClose => {
                let _ = w.write_all(
                    b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig\n",
                );
            }
            After::AnswerAndWait => {
                let _ = w.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 3\r\n\r\nno\n");
                thread::sleep(Duration::from_secs(8));
            }
        }
    })
}

fn proxy_for(up: &Upstream) -> Proxy {
    let config = ConfigBuilder::new(up.addr).sections(CLIENT_IO).build();
    Proxy::start_with(&config, 1, IoMode::Auto)
}

/// Sends `head` and `start` of the body, then waits for the answer
/// without sending more; returns it and how long it took.
fn send_part_and_wait(c: &mut Client, head: &[u8], start: &[u8]) -> (Response, Duration) {
    c.send(head);
    c.send(start);
    let sent = Instant::now();
    let r = c
        .read_response_to(false)
        .expect("the upstream's early answer, while the body is unfinished");
    (r, sent.elapsed())
}

#[test]
fn early_answer_reaches_a_client_waiting_mid_body_on_the_spliced_path() {
    let up = upstream(After::AnswerAndClose);
    let proxy = proxy_for(&up);
    let mut c = proxy.connect();
    // 1 MiB announced, 1 KiB sent: the rest would be spliced.
    let head = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n";
    let (r, took) = send_part_and_wait(&mut c, head, &[b'a'; 1024]);
    assert_eq!((r.status, r.body_str().as_str()), (413, "big\n"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    assert!(
        c.is_closed() || c.is_closed(),
        "the connection ends after the answer"
    );
}

#[test]
fn early_answer_reaches_a_client_waiting_mid_chunked_body() {
    let up = upstream(After::AnswerAndClose);
    let proxy = proxy_for(&up);
    let mut c = proxy.connect();
    // Chunked bodies are re-framed through user space, never spliced.
    let head = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (r, took) = send_part_and_wait(&mut c, head, b"400\r\n");
    assert_eq!((r.status, r.body_str().as_str()), (413, "big\n"));
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
}

#[test]
fn early_answer_from_an_upstream_that_stays_open_is_relayed() {
    let up = upstream(After::AnswerAndWait);
    let proxy = proxy_for(&up);
    let mut c = proxy.connect();
    let head = b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n";
    let (r, took) = send_part_and_wait(&mut c, head, &[b'p'; 10]);
    assert_eq!((r.status, r.body_str().as_str()), (401, "no\n"));
    // The rest of the body was never read: the connection cannot go on.
    assert_eq!(r.header("connection"), Some("close"));
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
}

/// The client keeps sending after the answer: it still gets the answer,
/// and ringress stops reading and closes within its lingering time.
#[test]
fn early_answer_reaches_a_client_that_keeps_sending_slowly() {
    let up = upstream(After::AnswerAndClose);
    let proxy = proxy_for(&up);
    let mut c = proxy.connect();
    c.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
    let mut s = c.stream.try_clone().expect("clone");
    let writer = thread::spawn(move || {
        // 100 bytes every 20 ms: far below the body's size, so the
        // client is still sending when the answer comes.
        for _ in 0..300 {
            if s.write_all(&[b'b'; 100]).is_err() {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    });
    let r = c.read_response_to(false).expect("an answer mid-upload");
    assert_eq!((r.status, r.body_str().as_str()), (413, "big\n"));
    assert!(
        writer.join().expect("writer"),
        "ringress closed the connection while the client was still sending"
    );
}

/// A body that pauses between pieces, to an upstream that reads it all
/// before answering: the pauses are not mistaken for an early answer.
#[test]
fn a_pausing_body_to_a_patient_upstream_is_forwarded_whole() {
    let up = Upstream::echo();
    let proxy = proxy_for(&up);
    for chunked in [false, true] {
        let mut c = proxy.connect();
        let pieces: Vec<Vec<u8>> = (0..5).map(|i| vec![b'a' + i as u8; 20_000]).collect();
        let total: usize = pieces.iter().map(Vec::len).sum();
        let head = if chunked {
            "POST /slow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
        } else {
            format!("POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n")
        };
        c.send(head.as_bytes());
        for p in &pieces {
            if chunked {
                c.send(format!("{:x}\r\n", p.len()).as_bytes());
                c.send(p);
                c.send(b"\r\n");
            } else {
                c.send(p);
            }
            thread::sleep(Duration::from_millis(60));
        }
        if chunked {
            c.send(b"0\r\n\r\n");
        }
        let r = c.read_response();
        assert_eq!(r.status, 200, "chunked: {chunked}");
        let want: Vec<u8> = b"POST /slow\n"
            .iter()
            .copied()
            .chain(pieces.concat())
            .collect();
        assert_eq!(r.body.len(), want.len(), "chunked: {chunked}");
        assert!(
            r.body == want,
            "chunked: {chunked}: the body arrived whole and in order"
        );
        // The connection stays usable.
        assert_eq!(c.request(&get("/after")).status, 200);
    }
}
