//! A scripted origin for the cache and compression tests: every request is
//! recorded (on the harness's `Upstream`), then answered by a script the
//! test can swap at any time. Replies may be delayed, sent chunked in pieces
//! that wait on a [`Gate`] the test opens, or cut off with no answer.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{SeenRequest, TIMEOUT, Upstream};

/// What the origin sends back for one request.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// Waited before anything is written.
    pub delay: Duration,
    /// Passed before anything is written (after `delay`).
    pub gate: Option<Gate>,
}

#[derive(Clone)]
pub enum Body {
    /// `Content-Length` framing; a HEAD answer gets the length, not the bytes.
    Length(Vec<u8>),
    /// `Transfer-Encoding: chunked`, one chunk per `Step::Data`.
    Chunked(Vec<Step>),
    /// No body and no framing header (204, 304).
    Empty,
    /// The connection is closed without an answer.
    Reset,
}

#[derive(Clone)]
pub enum Step {
    Data(Vec<u8>),
    /// Waits for one [`Gate::open`] before the next step.
    Wait(Gate),
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Length(body.into()),
            delay: Duration::ZERO,
            gate: None,
        }
    }

    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply::new(200, body)
    }

    pub fn not_modified() -> Reply {
        Reply {
            body: Body::Empty,
            ..Reply::new(304, "")
        }
    }

    pub fn reset() -> Reply {
        Reply {
            body: Body::Reset,
            ..Reply::new(502, "")
        }
    }

    pub fn chunked(status: u16, steps: Vec<Step>) -> Reply {
        Reply {
            body: Body::Chunked(steps),
            ..Reply::new(status, "")
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Holds the whole reply until the test opens `gate`.
    pub fn after(mut self, gate: &Gate) -> Reply {
        self.gate = Some(gate.clone());
        self
    }

    /// The bytes of the head and, for a `Length` body, the body.
    fn render(&self, head_request: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            204 => "No Content",
            304 => "Not Modified",
            404 => "Not Found",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Other",
        };
        let mut out = format!("HTTP/1.1 {} {reason}\r\n", self.status);
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        match &self.body {
            Body::Length(b) => out.push_str(&format!("Content-Length: {}\r\n", b.len())),
            Body::Chunked(_) => out.push_str("Transfer-Encoding: chunked\r\n"),
            Body::Empty | Body::Reset => {}
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        if let (Body::Length(b), false) = (&self.body, head_request) {
            out.extend_from_slice(b);
        }
        out
    }
}

type Script = dyn Fn(&SeenRequest) -> Reply + Send + Sync;

/// The scripted origin. Clones share the script and the record.
#[derive(Clone)]
pub struct Origin {
    pub up: Upstream,
    script: Arc<Mutex<Arc<Script>>>,
}

impl Origin {
    pub fn start(script: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) -> Origin {
        let script: Arc<Mutex<Arc<Script>>> = Arc::new(Mutex::new(Arc::new(script)));
        let shared = script.clone();
        let up = Upstream::start(move |r, w, up| {
            while let Some(req) = up.record(r) {
                let reply = (shared.lock().unwrap().clone())(&req);
                if !write_reply(w, &reply, req.method == "HEAD") {
                    return;
                }
            }
        });
        Origin { up, script }
    }

    /// Replaces the script for every later request.
    pub fn script(&self, script: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) {
        *self.script.lock().unwrap() = Arc::new(script);
    }

    pub fn addr(&self) -> SocketAddr {
        self.up.addr
    }

    /// Every request the origin saw.
    pub fn total(&self) -> usize {
        self.up.seen.lock().unwrap().len()
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.up.requests()
    }

    /// The request seen most recently.
    pub fn last(&self) -> SeenRequest {
        self.up.last()
    }

    /// The requests whose target is exactly `target`.
    pub fn requests_to(&self, target: &str) -> Vec<SeenRequest> {
        self.up
            .requests()
            .into_iter()
            .filter(|r| r.target == target)
            .collect()
    }

    pub fn count(&self, target: &str) -> usize {
        self.requests_to(target).len()
    }
}

/// Writes `reply`; false once the connection is done with.
fn write_reply(w: &mut TcpStream, reply: &Reply, head_request: bool) -> bool {
    if !reply.delay.is_zero() {
        thread::sleep(reply.delay);
    }
    if let Some(gate) = &reply.gate {
        gate.pass();
    }
    if let Body::Reset = reply.body {
        let _ = w.shutdown(Shutdown::Both);
        return false;
    }
    if w.write_all(&reply.render(head_request)).is_err() {
        return false;
    }
    let Body::Chunked(steps) = &reply.body else {
        return true;
    };
    if head_request {
        return true;
    }
    for step in steps {
        let sent = match step {
            Step::Data(d) => {
                let mut chunk = format!("{:x}\r\n", d.len()).into_bytes();
                chunk.extend_from_slice(d);
                chunk.extend_from_slice(b"\r\n");
                w.write_all(&chunk)
            }
            Step::Wait(gate) => {
                gate.pass();
                Ok(())
            }
        };
        if sent.is_err() {
            return false;
        }
    }
    w.write_all(b"0\r\n\r\n").is_ok()
}

/// A count of permits the test hands to a waiting origin reply.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<usize>, Condvar)>);

impl Gate {
    pub fn open(&self) {
        let (permits, cv) = &*self.0;
        *permits.lock().unwrap() += 1;
        cv.notify_all();
    }

    /// Takes one permit, waiting for it; panics (on the origin's thread,
    /// which then drops the connection) if none comes in time.
    fn pass(&self) {
        let (permits, cv) = &*self.0;
        let deadline = Instant::now() + TIMEOUT;
        let mut n = permits.lock().unwrap();
        while *n == 0 {
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("the test opened the gate in time");
            n = cv.wait_timeout(n, left).unwrap().0;
        }
        *n -= 1;
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for `t`.
pub fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!(
        "{weekday}, {day:02} {month} {year} {:02}:{:02}:{:02} GMT",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `len` bytes of deterministic, compressible text: words drawn by a
/// fixed-seed xorshift, so every run sends the same bytes.
pub fn text_body(len: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "proxy", "cache", "core", "ring", "stale", "fresh", "vary", "etag", "chunk", "zone",
        "worker", "upstream",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(WORDS[(state % 12) as usize].as_bytes());
        out.push(if state.is_multiple_of(9) { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}
