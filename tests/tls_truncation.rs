//! A response body delimited by the close of a TLS upstream is complete
//! only when the upstream ended the session with `close_notify`; a TCP
//! close without it is a cut, relayed as a failure (no last chunk) and
//! logged as the upstream's.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;

use common::{ConfigBuilder, Proxy, TIMEOUT, TempPath, wait_until};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection};

/// How the upstream ends its close-delimited body.
#[derive(Clone, Copy)]
enum End {
    /// TCP close without `close_notify`.
    Cut,
    /// `close_notify`, then the TCP close.
    CloseNotify,
}

const BODY: &[u8] = b"the first part of a body";

/// A TLS upstream (self-signed) answering one request per connection with
/// a head that has no length and `BODY`, then ending as `end` says.
fn tls_upstream(end: End) -> SocketAddr {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let chain = vec![CertificateDer::from(key.cert.der().to_vec())];
    let private = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        // Bounded: the test makes one request.
        for conn in listener.incoming().take(4) {
            let Ok(sock) = conn else { continue };
            let config = config.clone();
            thread::spawn(move || serve(sock, config, end));
        }
    });
    addr
}

fn serve(mut sock: TcpStream, config: Arc<ServerConfig>, end: End) {
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut tls = ServerConnection::new(config).unwrap();
    let mut head = Vec::new();
    {
        let mut stream = rustls::Stream::new(&mut tls, &mut sock);
        let mut reader = BufReader::new(&mut stream);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => head.extend_from_slice(line.as_bytes()),
            }
        }
    }
    let mut stream = rustls::Stream::new(&mut tls, &mut sock);
    let mut answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    answer.extend_from_slice(BODY);
    if stream
        .write_all(&answer)
        .and_then(|_| stream.flush())
        .is_err()
    {
        return;
    }
    if let End::CloseNotify = end {
        tls.send_close_notify();
        while tls.wants_write() {
            if tls.write_tls(&mut sock).is_err() {
                return;
            }
        }
    }
    let _ = sock.shutdown(Shutdown::Both);
}

/// The proxy in front of `upstream`, logging to `log`; with `gzip`, the
/// route compresses (the body then goes through the transform relay).
fn proxy(upstream: SocketAddr, log: &Path, gzip: bool) -> Proxy {
    let compress = match gzip {
        true => r#"compress = { algorithms = ["gzip"], min_size = 1 }"#,
        false => "",
    };
    let config = ConfigBuilder::new(upstream)
        .group("tls = { verify = false }")
        .route(compress)
        .sections(&format!(
            "[access_log]\npath = \"{}\"\nformat = \"json\"\n",
            log.display()
        ))
        .build();
    Proxy::start(&config)
}

const REQUEST: &[u8] = b"GET /body HTTP/1.1\r\nHost: test.local\r\n\r\n";
const GZIP_REQUEST: &[u8] =
    b"GET /body HTTP/1.1\r\nHost: test.local\r\nAccept-Encoding: gzip\r\n\r\n";

/// Sends one HTTP/1.1 GET and reads everything until the proxy closes.
fn fetch_raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

/// The access log's line for the request, once written.
fn logged(log: &Path) -> serde_json::Value {
    let mut line = String::new();
    wait_until("the access log line", TIMEOUT, || {
        line = std::fs::read_to_string(log).unwrap_or_default();
        line.ends_with('\n')
    });
    serde_json::from_str(line.lines().next().unwrap()).expect("a JSON line")
}

/// The access log's file for the test `name`, removed on drop.
fn log_path(name: &str) -> TempPath {
    TempPath::file(format!(
        "ringress-tls-truncation-{}-{name}.log",
        std::process::id()
    ))
}

#[test]
fn a_tls_body_cut_without_close_notify_is_relayed_as_cut() {
    cut("cut", false);
}

#[test]
fn a_compressed_tls_body_cut_without_close_notify_is_relayed_as_cut() {
    cut("cut-gzip", true);
}

fn cut(name: &str, gzip: bool) {
    let log = log_path(name);
    let proxy = proxy(tls_upstream(End::Cut), &log, gzip);
    let raw = fetch_raw(proxy.addr, if gzip { GZIP_REQUEST } else { REQUEST });
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{raw}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert_eq!(head.contains("content-encoding: gzip"), gzip, "{head}");
    if !gzip {
        let data = String::from_utf8_lossy(BODY);
        assert!(
            body.contains(&*data),
            "the body so far is passed on: {body:?}"
        );
    }
    assert!(!body.ends_with("0\r\n\r\n"), "no last chunk: {body:?}");
    let line = logged(&log);
    assert_eq!(line["exit"], "upstream_failed", "{line}");
    assert_eq!(line["reason"], "bad_gateway", "{line}");
}

#[test]
fn a_tls_body_ended_with_close_notify_is_complete() {
    clean("clean", false);
}

#[test]
fn a_compressed_tls_body_ended_with_close_notify_is_complete() {
    clean("clean-gzip", true);
}

fn clean(name: &str, gzip: bool) {
    let log = log_path(name);
    let proxy = proxy(tls_upstream(End::CloseNotify), &log, gzip);
    let raw = fetch_raw_keep_alive(proxy.addr, if gzip { GZIP_REQUEST } else { REQUEST });
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(body.ends_with("\r\n0\r\n\r\n"), "the last chunk: {body:?}");
    if !gzip {
        let data = String::from_utf8_lossy(BODY);
        assert_eq!(body, format!("{:x}\r\n{data}\r\n0\r\n\r\n", BODY.len()));
    }
    let line = logged(&log);
    assert_eq!(line["exit"], "proxied", "{line}");
    assert_eq!(line["reason"], serde_json::Value::Null, "{line}");
}

/// Reads one chunked response to its last chunk (the connection stays
/// open: the response was complete).
fn fetch_raw_keep_alive(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !raw.ends_with(b"\r\n0\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&raw).into_owned()
}
