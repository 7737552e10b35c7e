//! Test harness: the proxy started in-process on 127.0.0.1:0, a scriptable
//! upstream on real sockets (one thread per connection), and a raw-bytes
//! HTTP/1.1 client that reads exactly one response at a time.
#![allow(dead_code)]

pub mod cache_upstream;
pub mod temp;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use ringress::{Config, IoMode, ServerHandle, ServerOptions};

#[allow(unused_imports)] // not every test file makes temp paths
pub use temp::TempPath;

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A running proxy; shut down (drained) on drop.
pub struct Proxy {
    pub handle: Option<ServerHandle>,
    pub addr: SocketAddr,
}

impl Proxy {
    /// Starts the proxy from TOML text with two workers. Every listener
    /// should bind `127.0.0.1:0`; the first one's address is `addr`.
    pub fn start(toml: &str) -> Proxy {
        Self::start_with(toml, 2, IoMode::Auto)
    }

    /// `IoMode::Auto` unless `RINGRESS_TEST_IO` names a driver, so the
    /// whole suite can be run again on epoll (`RINGRESS_TEST_IO=epoll`).
    fn driver(requested: IoMode) -> IoMode {
        match std::env::var("RINGRESS_TEST_IO")
            .ok()
            .as_deref()
            .and_then(IoMode::parse)
        {
            Some(forced) if requested == IoMode::Auto => forced,
            _ => requested,
        }
    }

    pub fn start_with(toml: &str, threads: usize, io: IoMode) -> Proxy {
        let config =
            Config::from_toml_str(toml).unwrap_or_else(|e| panic!("bad test config:\n{e}"));
        let first = config.listeners[0].name.clone();
        let handle = ServerHandle::start(
            config,
            ServerOptions {
                threads: Some(threads),
                pin: Some(false),
                io: Some(Self::driver(io)),
                release_memory: None,
            },
        )
        .expect("proxy starts");
        let addr = handle.listener_addr(&first).expect("listener bound");
        Proxy {
            handle: Some(handle),
            addr,
        }
    }

    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().expect("running")
    }

    pub fn reload(&self, toml: &str) -> u64 {
        self.handle()
            .reload(Config::from_toml_str(toml).expect("valid reload config"))
            .expect("reload accepted")
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn shutdown(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

/// A config with one listener and one catch-all route to `upstream`.
pub fn simple_config(upstream: SocketAddr) -> String {
    ConfigBuilder::new(upstream).build()
}

/// [`simple_config`] with parts changed. Each `key = value` line given to
/// [`runtime`](Self::runtime), [`route`](Self::route) or
/// [`group`](Self::group) replaces the default line with the same key in
/// that table, or is added to it.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    runtime: Vec<String>,
    sections: String,
    route: Vec<String>,
    group: Vec<String>,
}

impl ConfigBuilder {
    pub fn new(upstream: SocketAddr) -> ConfigBuilder {
        let lines = |l: &[&str]| l.iter().map(|l| l.to_string()).collect();
        ConfigBuilder {
            runtime: lines(&[r#"drain_timeout = "2s""#]),
            sections: String::new(),
            route: lines(&[r#"path_prefix = "/""#, r#"upstream = "backend""#]),
            group: lines(&[
                &format!(r#"servers = ["{upstream}"]"#),
                r#"connect_timeout = "1s""#,
                r#"response_timeout = "2s""#,
                r#"io_timeout = "2s""#,
            ]),
        }
    }

    /// Keys of `[runtime]`.
    pub fn runtime(mut self, lines: &str) -> ConfigBuilder {
        set_keys(&mut self.runtime, lines);
        self
    }

    /// Keys of the catch-all route.
    pub fn route(mut self, lines: &str) -> ConfigBuilder {
        set_keys(&mut self.route, lines);
        self
    }

    /// Keys of the upstream group `backend`.
    pub fn group(mut self, lines: &str) -> ConfigBuilder {
        set_keys(&mut self.group, lines);
        self
    }

    /// Whole tables (`[limits]`, more `[[routes]]`, ...), placed after
    /// `[runtime]`, so before the listener and the catch-all route.
    pub fn sections(mut self, toml: &str) -> ConfigBuilder {
        self.sections.push_str(toml);
        self.sections.push('\n');
        self
    }

    pub fn build(&self) -> String {
        let [runtime, route, group] =
            [&self.runtime, &self.route, &self.group].map(|t| t.join("\n"));
        let sections = &self.sections;
        format!(
            r#"
[runtime]
{runtime}

{sections}
[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
{route}

[upstreams.backend]
{group}
"#
        )
    }
}

/// Sets each `key = value` line of `lines` in `table`: it replaces the line
/// with the same key, or is appended.
fn set_keys(table: &mut Vec<String>, lines: &str) {
    let key = |line: &str| line.split('=').next().unwrap().trim().to_string();
    for line in lines.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(line.contains('='), "not a `key = value` line: {line}");
        match table.iter_mut().find(|old| key(old) == key(line)) {
            Some(old) => *old = line.to_string(),
            None => table.push(line.to_string()),
        }
    }
}

/// A request as the upstream saw it.
#[derive(Debug, Clone, Default)]
pub struct SeenRequest {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The head exactly as received.
    pub raw_head: String,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
}

/// Reads one request (head and CL/chunked body) from an upstream-side
/// connection. None on a clean close before a request.
pub fn read_request(r: &mut BufReader<TcpStream>) -> Option<SeenRequest> {
    let mut raw = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        raw.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut lines = raw.split("\r\n");
    let mut request_line = lines.next()?.splitn(3, ' ');
    let mut req = SeenRequest {
        method: request_line.next()?.to_string(),
        target: request_line.next()?.to_string(),
        version: request_line.next()?.to_string(),
        raw_head: raw.clone(),
        ..Default::default()
    };
    for l in lines.filter(|l| !l.is_empty()) {
        let (n, v) = l.split_once(':')?;
        req.headers.push((n.to_string(), v.trim().to_string()));
    }
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        req.body = read_chunked(r)?;
    } else if let Some(n) = req.header("content-length") {
        let mut body = vec![0; n.parse().ok()?];
        r.read_exact(&mut body).ok()?;
        req.body = body;
    }
    Some(req)
}

fn read_chunked(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let size = usize::from_str_radix(line.trim_end().split(';').next()?, 16).ok()?;
        if size == 0 {
            loop {
                line.clear();
                r.read_line(&mut line).ok()?;
                if line == "\r\n" || line.is_empty() {
                    return Some(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..]).ok()?;
        let mut crlf = [0; 2];
        r.read_exact(&mut crlf).ok()?;
    }
}

type Handler = dyn Fn(&mut BufReader<TcpStream>, &mut TcpStream, &Upstream) + Send + Sync;

/// A scriptable upstream server: each accepted connection runs `handler`
/// on its own thread. Records requests seen and connections accepted.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<SeenRequest>>>,
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    pub fn start<F>(handler: F) -> Upstream
    where
        F: Fn(&mut BufReader<TcpStream>, &mut TcpStream, &Upstream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let up = Upstream {
            addr: listener.local_addr().expect("addr"),
            seen: Arc::default(),
            connections: Arc::default(),
            stop: Arc::default(),
        };
        let handler: Arc<Handler> = Arc::new(handler);
        let server = up.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if server.stop.load(Ordering::Acquire) {
                    break;
                }
                let Ok(mut stream) = conn else { continue };
                server.connections.fetch_add(1, Ordering::AcqRel);
                let (handler, me) = (handler.clone(), server.clone());
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(TIMEOUT));
                    let _ = stream.set_nodelay(true);
                    let Ok(read_half) = stream.try_clone() else {
                        return;
                    };
                    let mut reader = BufReader::new(read_half);
                    handler(&mut reader, &mut stream, &me);
                });
            }
        });
        up
    }

    /// Keep-alive server answering every request with 200 and a body that
    /// describes it: "METHOD TARGET\n" then the request body.
    pub fn echo() -> Upstream {
        Upstream::start(|r, w, up| {
            while let Some(req) = up.record(r) {
                let mut body = format!("{} {}\n", req.method, req.target).into_bytes();
                body.extend_from_slice(&req.body);
                // One write, so the proxy usually reads head and body together;
                // a HEAD answer carries the length but no body.
                let mut resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Upstream: echo\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                if req.method != "HEAD" {
                    resp.extend_from_slice(&body);
                }
                if w.write_all(&resp).is_err() {
                    return;
                }
            }
        })
    }

    /// Reads one request and records it.
    pub fn record(&self, r: &mut BufReader<TcpStream>) -> Option<SeenRequest> {
        let req = read_request(r)?;
        self.seen.lock().unwrap().push(req.clone());
        Some(req)
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> SeenRequest {
        self.requests().pop().expect("upstream saw a request")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Only the last clone stops the accept loop.
        if Arc::strong_count(&self.stop) == 2 {
            self.stop.store(true, Ordering::Release);
            let _ = TcpStream::connect(self.addr);
        }
    }
}

/// A response as the client saw it.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub raw_head: String,
    /// The body was sent chunked.
    pub chunked: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw client connection to the proxy.
pub struct Client {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to proxy");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to proxy");
    }

    /// Reads one response; `head_request` means no body follows.
    pub fn read_response_to(&mut self, head_request: bool) -> Option<Response> {
        let mut raw = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            raw.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut lines = raw.split("\r\n");
        let status_line = lines.next()?;
        let mut parts = status_line.splitn(3, ' ');
        let mut resp = Response {
            version: parts.next()?.to_string(),
            status: parts.next()?.parse().ok()?,
            raw_head: raw.clone(),
            ..Default::default()
        };
        for l in lines.filter(|l| !l.is_empty()) {
            let (n, v) = l.split_once(':')?;
            resp.headers.push((n.to_string(), v.trim().to_string()));
        }
        let no_body = head_request || resp.status < 200 || resp.status == 204 || resp.status == 304;
        if no_body {
            return Some(resp);
        }
        if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            resp.chunked = true;
            let r = &mut self.reader;
            let mut body = Vec::new();
            loop {
                line.clear();
                r.read_line(&mut line).ok()?;
                let size = usize::from_str_radix(line.trim_end(), 16).ok()?;
                if size == 0 {
                    line.clear();
                    r.read_line(&mut line).ok()?;
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                r.read_exact(&mut body[start..]).ok()?;
                let mut crlf = [0; 2];
                r.read_exact(&mut crlf).ok()?;
            }
            resp.body = body;
        } else if let Some(n) = resp.header("content-length") {
            let mut body = vec![0; n.parse().ok()?];
            self.reader.read_exact(&mut body).ok()?;
            resp.body = body;
        } else {
            self.reader.read_to_end(&mut resp.body).ok()?;
        }
        Some(resp)
    }

    pub fn read_response(&mut self) -> Response {
        self.read_response_to(false)
            .expect("a response from the proxy")
    }

    /// Sends a request and reads its response.
    pub fn request(&mut self, raw: &[u8]) -> Response {
        self.send(raw);
        self.read_response_to(raw.starts_with(b"HEAD "))
            .expect("a response from the proxy")
    }

    /// True when the proxy closed the connection (EOF or reset) within a
    /// second; a connection still open then is not closed.
    pub fn is_closed(&mut self) -> bool {
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut byte = [0u8; 1];
        let closed = match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        let _ = self.stream.set_read_timeout(Some(TIMEOUT));
        closed
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// GET request bytes for `path` with Host `host`.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test.local\r\n\r\n").into_bytes()
}

/// A port nobody listens on (bound, then released).
pub fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Waits until `done` holds, checking every 10 ms for up to `limit`;
/// panics naming `what` if it never does.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// The raw answer (head and body) to a GET of `path` from the admin
/// listener at `admin` (which ends each connection after its answer).
pub fn admin_get(admin: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(admin).expect("connect to admin");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw)
        .unwrap_or_else(|e| panic!("admin answer to {path}: {e}"));
    raw
}

/// The text of `/metrics` from the admin listener at `admin`.
pub fn admin_metrics(admin: SocketAddr) -> String {
    admin_get(admin, "/metrics")
}
