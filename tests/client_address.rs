//! The client's address: PROXY protocol v1/v2 on listeners (trusted peers
//! only, in front of plain HTTP and TLS), PROXY headers sent to upstreams,
//! `trusted_proxies` with the right-most untrusted X-Forwarded-For entry,
//! and geo-targeted balancing by config ranges and by a MaxMind DB file
//! (written by a minimal encoder in this file). Real sockets on 127.0.0.1,
//! raw bytes in and out.

mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use ringress::{Config, IoMode};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

// ---------------------------------------------------------------------------
// PROXY headers, written here independently of the proxy's encoder
// ---------------------------------------------------------------------------

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// `PROXY TCP4|TCP6 src dst sport dport\r\n`.
fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

/// A v2 PROXY (command 1) header over TCP for `src` → `dst`.
fn v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&[0x11, 0, 12]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.extend_from_slice(&[0x21, 0, 36]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

/// `v2(src, dst)` with TLVs after the addresses (ALPN and an AWS-style
/// vendor TLV), as load balancers send them: they are skipped.
fn v2_with_tlvs(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = v2(src, dst);
    let tlvs = [
        &[0x01, 0x00, 0x08][..],
        b"http/1.1",
        &[0xEA, 0x00, 0x05, 0x01],
        b"vpce",
    ]
    .concat();
    let len = u16::from_be_bytes([out[14], out[15]]) + tlvs.len() as u16;
    out[14..16].copy_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&tlvs);
    out
}

/// A v2 LOCAL header (the balancer's own health check) with one TLV.
fn v2_local() -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x20, 0x00, 0x00, 0x04, 0x04, 0x00, 0x01, b'x']);
    out
}

// ---------------------------------------------------------------------------
// Configs and helpers
// ---------------------------------------------------------------------------

/// `[forwarding]` with `trusted_proxies = [list]` (list already quoted).
fn trusted(list: &str) -> String {
    format!("[forwarding]\ntrusted_proxies = [{list}]\n")
}

/// A PROXY-protocol listener "lb" placed before the builder's plain "main",
/// so it is `Proxy::addr`; `extra` adds keys or a `[listeners.tls]` table.
fn lb_listener(extra: &str) -> String {
    format!(
        "[[listeners]]\nname = \"lb\"\nbind = \"127.0.0.1:0\"\nproxy_protocol = true\n{extra}\n"
    )
}

/// Config: `[forwarding]` trusting `trusted_list`, PROXY listener "lb",
/// plain listener "main", everything to `upstream`.
fn lb_config(trusted_list: &str, upstream: SocketAddr) -> String {
    ConfigBuilder::new(upstream)
        .sections(&trusted(trusted_list))
        .sections(&lb_listener(""))
        .build()
}

fn main_addr(proxy: &Proxy) -> SocketAddr {
    proxy.handle().listener_addr("main").expect("main bound")
}

/// A raw connection with bounded reads and writes.
fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A [`Client`] over an already connected socket (after a PROXY header).
fn client_on(stream: TcpStream) -> Client {
    Client {
        reader: BufReader::new(stream.try_clone().unwrap()),
        stream,
    }
}

/// Writes `bytes` (errors ignored: the proxy may already have closed),
/// then reads until the proxy closes. Ok(bytes received before the close,
/// EOF or reset); Err when the connection is still open after 3 s.
fn answer_before_close(s: &mut TcpStream, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let _ = s.write_all(bytes);
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "still open after 3 s (got {:?})",
                        String::from_utf8_lossy(&got)
                    ));
                }
            }
            Err(_) => return Ok(got),
        }
    }
}

/// Asserts that the proxy closes a connection sent `bytes` without a byte
/// of answer.
fn assert_closed_silently(addr: SocketAddr, bytes: &[u8], what: &str) {
    let mut s = tcp(addr);
    match answer_before_close(&mut s, bytes) {
        Ok(got) => assert!(
            got.is_empty(),
            "{what}: expected a silent close, got {:?}",
            String::from_utf8_lossy(&got)
        ),
        Err(e) => panic!("{what}: {e}"),
    }
}

/// GET `path` with `X-Forwarded-For: xff`.
fn get_xff(path: &str, xff: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test.local\r\nX-Forwarded-For: {xff}\r\n\r\n")
        .into_bytes()
}

/// Sends `n` requests with `xff` on one keep-alive connection; each must
/// be answered 200 by an echo upstream.
fn send_n(addr: SocketAddr, n: usize, xff: &str, tag: &str) {
    let mut c = Client::connect(addr);
    for i in 0..n {
        let path = format!("/{tag}/{i}");
        let r = c.request(&get_xff(&path, xff));
        assert_eq!(
            (r.status, r.body_str()),
            (200, format!("GET {path}\n")),
            "xff {xff}, request {i}"
        );
    }
}

/// Requests each upstream saw whose target starts with `/tag/`.
fn tagged(ups: &[&Upstream], tag: &str) -> Vec<usize> {
    let prefix = format!("/{tag}/");
    ups.iter()
        .map(|u| {
            u.requests()
                .iter()
                .filter(|r| r.target.starts_with(&prefix))
                .count()
        })
        .collect()
}

/// A temp directory for one test, removed on drop.
struct Dir(TempPath);

impl Dir {
    fn new() -> Dir {
        Dir(TempPath::unique_dir("client-addr"))
    }

    fn write(&self, name: &str, contents: &[u8]) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write a test file");
        path.to_str().expect("utf-8 temp path").to_string()
    }
}

// ---------------------------------------------------------------------------
// 1. PROXY headers in: the source becomes the client address
// ---------------------------------------------------------------------------

#[test]
fn proxy_v1_and_v2_sources_become_x_forwarded_for() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&lb_config(r#""127.0.0.1/32""#, up.addr));
    let cases: [(&str, Vec<u8>, &str); 7] = [
        (
            "v1 TCP4",
            v1(sa("192.0.2.10:40000"), sa("198.51.100.1:80")),
            "192.0.2.10",
        ),
        (
            "v1 TCP6",
            v1(sa("[2001:db8::7]:40001"), sa("[2001:db8::1]:80")),
            "2001:db8::7",
        ),
        (
            "v2 IPv4",
            v2(sa("203.0.113.5:1234"), sa("198.51.100.1:80")),
            "203.0.113.5",
        ),
        (
            "v2 IPv6",
            v2(sa("[2001:db8:ab::9]:5678"), sa("[2001:db8::1]:80")),
            "2001:db8:ab::9",
        ),
        (
            "v2 IPv4 with TLVs",
            v2_with_tlvs(sa("203.0.113.6:1234"), sa("198.51.100.1:80")),
            "203.0.113.6",
        ),
        // UNKNOWN / LOCAL: the socket's own address stays the client's.
        ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n".to_vec(), "127.0.0.1"),
        ("v2 LOCAL", v2_local(), "127.0.0.1"),
    ];
    for (what, header, source) in cases {
        let before = up.requests().len();
        // Header, a GET and a POST with a body, all in one write: none of
        // the bytes after the header may be lost.
        let mut bytes = header.clone();
        bytes.extend_from_slice(&get("/first"));
        bytes.extend_from_slice(
            b"POST /second HTTP/1.1\r\nHost: test.local\r\nContent-Length: 5\r\n\r\nhello",
        );
        let mut c = client_on(tcp(proxy.addr));
        c.send(&bytes);
        let r1 = c.read_response();
        assert_eq!(
            (r1.status, r1.body_str()),
            (200, "GET /first\n".into()),
            "{what}"
        );
        let r2 = c.read_response();
        assert_eq!(
            (r2.status, r2.body_str()),
            (200, "POST /second\nhello".into()),
            "{what}"
        );
        // A later request on the same connection keeps the client address.
        let r3 = c.request(&get("/third"));
        assert_eq!((r3.status, r3.body_str()), (200, "GET /third\n".into()));
        let seen = up.requests();
        assert_eq!(seen.len(), before + 3, "{what}");
        for req in &seen[before..] {
            assert_eq!(
                req.header("x-forwarded-for"),
                Some(source),
                "{what}: {}",
                req.raw_head
            );
            assert_eq!(req.header_count("x-forwarded-for"), 1, "{what}");
        }
    }
    // An X-Forwarded-For sent after the header is kept, the PROXY source
    // appended.
    let mut c = client_on(tcp(proxy.addr));
    let mut bytes = v1(sa("192.0.2.44:1000"), sa("198.51.100.1:80"));
    bytes.extend_from_slice(&get_xff("/xff", "10.0.0.1"));
    c.send(&bytes);
    assert_eq!(c.read_response().status, 200);
    assert_eq!(
        up.last().header("x-forwarded-for"),
        Some("10.0.0.1, 192.0.2.44")
    );
}

#[test]
fn proxy_header_split_across_writes() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&lb_config(r#""127.0.0.1""#, up.addr));
    let headers = [
        (
            "v1",
            v1(sa("192.0.2.21:999"), sa("198.51.100.1:80")),
            "192.0.2.21",
        ),
        (
            "v2",
            v2(sa("[2001:db8::21]:999"), sa("[2001:db8::1]:80")),
            "2001:db8::21",
        ),
    ];
    for (what, header, source) in headers {
        for chunk in [1, 5, 13] {
            let mut bytes = header.clone();
            let path = format!("/split/{what}/{chunk}");
            bytes.extend_from_slice(&get(&path));
            let mut c = client_on(tcp(proxy.addr));
            // The header in pieces (the last piece also carries the start
            // of the request), then the rest of the request.
            let cut = header.len() + 3;
            for piece in bytes[..cut].chunks(chunk) {
                c.send(piece);
                thread::sleep(Duration::from_millis(15));
            }
            c.send(&bytes[cut..]);
            let r = c.read_response();
            assert_eq!(
                (r.status, r.body_str()),
                (200, format!("GET {path}\n")),
                "{what} in pieces of {chunk}"
            );
            assert_eq!(up.last().header("x-forwarded-for"), Some(source));
        }
    }
}

// ---------------------------------------------------------------------------
// 2. Untrusted peers, missing and malformed headers
// ---------------------------------------------------------------------------

#[test]
fn untrusted_peer_on_a_proxy_listener_is_closed_silently() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&lb_config(r#""10.0.0.0/8""#, up.addr));
    let mut valid = v1(sa("192.0.2.1:1000"), sa("198.51.100.1:80"));
    valid.extend_from_slice(&get("/sneaky"));
    assert_closed_silently(proxy.addr, &valid, "valid v1 from untrusted 127.0.0.1");
    let mut valid2 = v2(sa("192.0.2.1:1000"), sa("198.51.100.1:80"));
    valid2.extend_from_slice(&get("/sneaky2"));
    assert_closed_silently(proxy.addr, &valid2, "valid v2 from untrusted 127.0.0.1");
    // The plain listener of the same proxy still serves.
    let mut c = Client::connect(main_addr(&proxy));
    let r = c.request(&get("/plain"));
    assert_eq!((r.status, r.body_str()), (200, "GET /plain\n".into()));
    assert_eq!(up.requests().len(), 1, "nothing from the PROXY listener");
}

#[test]
fn missing_or_malformed_proxy_headers_are_closed_silently() {
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .sections("[timeouts]\nclient_head = \"500ms\"\n")
        .sections(&trusted(r#""127.0.0.1/32""#))
        .sections(&lb_listener(""))
        .build();
    let proxy = Proxy::start(&config);
    let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120], b"\r\n"].concat();
    let mut v2_bad_version = V2_SIGNATURE.to_vec();
    v2_bad_version.extend_from_slice(&[0x31, 0x11, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
    let mut v2_udp = V2_SIGNATURE.to_vec();
    v2_udp.extend_from_slice(&[0x21, 0x42, 0, 36]);
    v2_udp.extend_from_slice(&[0; 36]);
    let bad: [(&str, Vec<u8>); 8] = [
        ("plain HTTP, no header", get("/no-header")),
        (
            "v1 garbage",
            b"PROXY TCP4 garbage here 1 2\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "v1 bad port",
            b"PROXY TCP4 192.0.2.1 198.51.100.1 70000 80\r\n".to_vec(),
        ),
        (
            "v1 family mismatch",
            b"PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n".to_vec(),
        ),
        ("v1 over 107 bytes", long),
        ("v2 version 3", v2_bad_version),
        ("v2 UDP over IPv6", v2_udp),
        (
            "TLS ClientHello instead",
            b"\x16\x03\x01\x00\x05hello".to_vec(),
        ),
    ];
    for (what, bytes) in &bad {
        assert_closed_silently(proxy.addr, bytes, what);
    }
    // A header started and never finished: closed by the head timeout.
    let started = Instant::now();
    assert_closed_silently(proxy.addr, b"PROXY TCP4 192.0.2.1 ", "stalled v1 header");
    assert_closed_silently(proxy.addr, &V2_SIGNATURE[..7], "stalled v2 signature");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Meanwhile good connections are served, on both listeners.
    let mut c = client_on(tcp(proxy.addr));
    let mut bytes = v2(sa("192.0.2.99:1"), sa("198.51.100.1:80"));
    bytes.extend_from_slice(&get("/good"));
    c.send(&bytes);
    let r = c.read_response();
    assert_eq!((r.status, r.body_str()), (200, "GET /good\n".into()));
    assert_eq!(up.last().header("x-forwarded-for"), Some("192.0.2.99"));
    let mut plain = Client::connect(main_addr(&proxy));
    assert_eq!(plain.request(&get("/plain")).status, 200);
    // On the plain listener a PROXY line is not a header but a bad request.
    let mut plain = Client::connect(main_addr(&proxy));
    plain.send(&v1(sa("192.0.2.1:1"), sa("198.51.100.1:80")));
    plain.send(&get("/after"));
    match plain.read_response_to(false) {
        None => {}
        Some(r) => assert_eq!(r.status, 400, "{}", r.raw_head),
    }
    assert_eq!(
        up.requests()
            .iter()
            .map(|r| r.target.as_str())
            .collect::<Vec<_>>(),
        ["/good", "/plain"]
    );
}

/// Sends `bytes` on a new connection to `addr`: Some(status) when
/// answered, None when closed without an answer.
fn try_once(addr: SocketAddr, bytes: &[u8]) -> Option<u16> {
    let mut s = tcp(addr);
    let got = answer_before_close_or_answer(&mut s, bytes);
    let line = String::from_utf8_lossy(&got);
    line.split(' ').nth(1).and_then(|s| s.parse().ok())
}

/// Like [`answer_before_close`], but returns as soon as a status line
/// arrived (the connection may stay open).
fn answer_before_close_or_answer(s: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    let _ = s.write_all(bytes);
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    got
}

/// Polls (bounded) until `try_once` gives `want`.
fn eventually(addr: SocketAddr, bytes: &[u8], want: Option<u16>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let got = try_once(addr, bytes);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: got {got:?}, want {want:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reload_changes_trust_and_proxy_protocol() {
    let up = Upstream::echo();
    let build = |trusted_list: &str, pp: bool| {
        ConfigBuilder::new(up.addr)
            .sections(&trusted(trusted_list))
            .sections(&format!(
                "[[listeners]]\nname = \"lb\"\nbind = \"127.0.0.1:0\"\nproxy_protocol = {pp}\n"
            ))
            .build()
    };
    let proxy = Proxy::start(&build(r#""10.0.0.0/8""#, true));
    let lb = || proxy.handle().listener_addr("lb").expect("lb bound");
    let mut with_header = v1(sa("192.0.2.55:1"), sa("198.51.100.1:80"));
    with_header.extend_from_slice(&get("/reload"));
    assert_eq!(try_once(lb(), &with_header), None, "untrusted at first");
    // Trust 127.0.0.1: the same header is now believed.
    proxy.reload(&build(r#""127.0.0.0/8""#, true));
    eventually(lb(), &with_header, Some(200), "trusted after reload");
    assert_eq!(up.last().header("x-forwarded-for"), Some("192.0.2.55"));
    assert_eq!(
        try_once(lb(), &get("/bare")),
        None,
        "headerless still closed"
    );
    // PROXY protocol off: plain requests are served, a header is not one.
    proxy.reload(&build(r#""127.0.0.0/8""#, false));
    eventually(lb(), &get("/bare"), Some(200), "plain after reload");
    assert_eq!(up.last().header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(try_once(lb(), &with_header), Some(400));
}

// ---------------------------------------------------------------------------
// 3. PROXY header before TLS
// ---------------------------------------------------------------------------

struct TlsFiles {
    _dir: Dir,
    roots: RootCertStore,
    cert: String,
    key: String,
}

/// A CA and a server certificate for `localhost`, written to PEM files.
fn tls_files() -> TlsFiles {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "client-address test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca_der: CertificateDer<'static> = ca_cert.der().clone();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();

    let dir = Dir::new();
    let cert_path = dir.write("server.pem", cert.pem().as_bytes());
    let key_path = dir.write("server.key", key.serialize_pem().as_bytes());
    let mut roots = RootCertStore::empty();
    roots.add(ca_der).unwrap();
    TlsFiles {
        _dir: dir,
        roots,
        cert: cert_path,
        key: key_path,
    }
}

/// Reads one response (Content-Length framed) from any reader.
fn read_response_from(r: &mut impl BufRead) -> io::Result<Response> {
    let mut raw = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("closed before a complete head: {raw:?}"),
            ));
        }
        raw.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut lines = raw.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let mut resp = Response {
        version: parts.next().unwrap_or_default().to_string(),
        status: parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?,
        raw_head: raw.clone(),
        ..Default::default()
    };
    for l in lines.filter(|l| !l.is_empty()) {
        if let Some((n, v)) = l.split_once(':') {
            resp.headers.push((n.to_string(), v.trim().to_string()));
        }
    }
    let n: usize = resp
        .header("content-length")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no Content-Length: {raw:?}")))?;
    resp.body = vec![0; n];
    r.read_exact(&mut resp.body)?;
    Ok(resp)
}

#[test]
fn proxy_v2_header_then_tls_handshake() {
    let up = Upstream::echo();
    let files = tls_files();
    let tls = format!(
        "[listeners.tls]\ncerts = [{{ cert = \"{}\", key = \"{}\" }}]\n",
        files.cert, files.key
    );
    let config = ConfigBuilder::new(up.addr)
        .sections(&trusted(r#""127.0.0.1/32""#))
        .sections(&lb_listener(&tls))
        .build();
    let proxy = Proxy::start(&config);
    let client_config = Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(files.roots.clone())
            .with_no_client_auth(),
    );
    let name = ServerName::try_from("localhost").unwrap();
    for (what, source, together) in [
        // The header in its own write, then the handshake.
        ("separate writes", sa("192.0.2.80:5555"), false),
        // The header and the ClientHello in one segment.
        ("one write", sa("[2001:db8::80]:5555"), true),
    ] {
        let header = v2(
            source,
            if source.is_ipv4() {
                sa("198.51.100.1:443")
            } else {
                sa("[2001:db8::1]:443")
            },
        );
        let mut sock = tcp(proxy.addr);
        let mut conn = ClientConnection::new(client_config.clone(), name.clone()).unwrap();
        if together {
            let mut first = header.clone();
            while conn.wants_write() {
                conn.write_tls(&mut first).unwrap();
            }
            sock.write_all(&first).unwrap();
        } else {
            sock.write_all(&header).unwrap();
            thread::sleep(Duration::from_millis(20));
        }
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)
                .unwrap_or_else(|e| panic!("{what}: handshake failed: {e}"));
        }
        let mut r = BufReader::new(StreamOwned::new(conn, sock));
        for i in 0..2 {
            let path = format!("/tls/{i}");
            r.get_mut().write_all(&get(&path)).unwrap();
            r.get_mut().flush().unwrap();
            let resp = read_response_from(&mut r)
                .unwrap_or_else(|e| panic!("{what}: no response over TLS: {e}"));
            assert_eq!(
                (resp.status, resp.body_str()),
                (200, format!("GET {path}\n")),
                "{what}"
            );
            let seen = up.last();
            assert_eq!(
                seen.header("x-forwarded-for"),
                Some(source.ip().to_string().as_str()),
                "{what}"
            );
            assert_eq!(seen.header("x-forwarded-proto"), Some("https"), "{what}");
        }
    }
    // TLS without the header is refused like any headerless connection.
    assert_closed_silently(
        proxy.addr,
        b"\x16\x03\x01\x00\x2f\x01\x00\x00\x2b\x03\x03",
        "ClientHello without a PROXY header",
    );
}

// ---------------------------------------------------------------------------
// 4. PROXY headers sent to upstreams
// ---------------------------------------------------------------------------

/// Reads a PROXY header (v1 line or v2 block) off an upstream connection.
fn read_proxy_header(r: &mut BufReader<TcpStream>) -> Vec<u8> {
    let mut out = Vec::new();
    let first = match r.fill_buf() {
        Ok(b) if !b.is_empty() => b[0],
        _ => return out,
    };
    if first == b'P' {
        let _ = r.read_until(b'\n', &mut out);
        return out;
    }
    out.resize(16, 0);
    if r.read_exact(&mut out).is_err() {
        return out;
    }
    let len = usize::from(u16::from_be_bytes([out[14], out[15]]));
    out.resize(16 + len, 0);
    let _ = r.read_exact(&mut out[16..]);
    out
}

/// PROXY header bytes and the connection's peer (the proxy's own end).
type SeenHeaders = Arc<Mutex<Vec<(Vec<u8>, SocketAddr)>>>;

/// An upstream that records the PROXY header of each connection, then
/// answers every request 200 "ok".
fn proxy_protocol_upstream() -> (Upstream, SeenHeaders) {
    let headers: SeenHeaders = Arc::default();
    let seen = headers.clone();
    let up = Upstream::start(move |r, w, up| {
        let header = read_proxy_header(r);
        let peer = w.peer_addr().expect("peer address");
        seen.lock().unwrap().push((header, peer));
        while up.record(r).is_some() {
            if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
    });
    (up, headers)
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

#[test]
fn send_proxy_protocol_v1_and_v2_on_each_new_connection() {
    // Header mismatches of both versions, reported together.
    let mut wrong = Vec::new();
    for version in ["v1", "v2"] {
        let (up, headers) = proxy_protocol_upstream();
        let config = ConfigBuilder::new(up.addr)
            .group(&format!("send_proxy_protocol = \"{version}\""))
            .build();
        let proxy = Proxy::start(&config);
        let mut c = proxy.connect();
        let client = c.stream.local_addr().unwrap();
        for i in 0..2 {
            let r = c.request(&get(&format!("/pp/{i}")));
            assert_eq!((r.status, r.body_str()), (200, "ok".into()), "{version}");
        }
        // Not pooled: each request had its own connection and header.
        assert_eq!(up.connections.load(Ordering::Acquire), 2, "{version}");
        assert_eq!(up.requests().len(), 2);
        // The requests themselves still say who the client is.
        assert_eq!(up.last().header("x-forwarded-for"), Some("127.0.0.1"));
        // Source: the client; destination: the listener it connected to.
        let expected = match version {
            "v1" => v1(client, proxy.addr),
            _ => v2(client, proxy.addr),
        };
        let got = headers.lock().unwrap().clone();
        assert_eq!(got.len(), 2, "{version}");
        for (h, proxy_end) in &got {
            if h != &expected {
                wrong.push(format!(
                    "{version} (client {client}, listener {}, the proxy's end of this \
                     upstream connection {proxy_end}):\n  expected {}\n  got      {}",
                    proxy.addr,
                    show(&expected),
                    show(h)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn proxy_header_in_is_passed_on_to_upstreams() {
    for (version, source, destination) in [
        ("v2", sa("192.0.2.10:4321"), sa("198.51.100.1:443")),
        ("v1", sa("[2001:db8::10]:4321"), sa("[2001:db8::1]:443")),
    ] {
        let (up, headers) = proxy_protocol_upstream();
        let config = ConfigBuilder::new(up.addr)
            .group(&format!("send_proxy_protocol = \"{version}\""))
            .sections(&trusted(r#""127.0.0.1/32""#))
            .sections(&lb_listener(""))
            .build();
        let proxy = Proxy::start(&config);
        let mut c = client_on(tcp(proxy.addr));
        let mut bytes = v1(source, destination);
        bytes.extend_from_slice(&get("/chained"));
        c.send(&bytes);
        assert_eq!(c.read_response().status, 200, "{version}");
        let expected = match version {
            "v1" => v1(source, destination),
            _ => v2(source, destination),
        };
        let got = headers.lock().unwrap().clone();
        assert_eq!(got.len(), 1, "{version}");
        assert_eq!(show(&got[0].0), show(&expected), "{version}");
        assert_eq!(
            up.last().header("x-forwarded-for"),
            Some(source.ip().to_string().as_str())
        );
    }
}

// ---------------------------------------------------------------------------
// 5./6. Geo by config ranges; trusted proxies and the X-Forwarded-For walk
// ---------------------------------------------------------------------------

/// Group `backend` with an eu server, a us server and one without region.
fn geo_config(trusted_list: &str, eu: SocketAddr, us: SocketAddr, any: SocketAddr) -> String {
    ConfigBuilder::new(any)
        .sections(&trusted(trusted_list))
        .sections(
            "[geo]\n\
             regions = { eu = [\"10.1.0.0/16\", \"2001:db8:e0::/48\"], us = [\"10.2.0.0/16\", \"127.0.0.0/8\"] }\n\
             nearest = { eu = [\"us\"] }\n",
        )
        .group(&format!(
            r#"servers = [ {{ addr = "{eu}", region = "eu" }}, {{ addr = "{us}", region = "us" }}, "{any}" ]"#
        ))
        .build()
}

#[test]
fn geo_ranges_pick_the_clients_region() {
    let (eu, us, any) = (Upstream::echo(), Upstream::echo(), Upstream::echo());
    let ups = [&eu, &us, &any];
    let proxy = Proxy::start(&geo_config(r#""127.0.0.1/32""#, eu.addr, us.addr, any.addr));
    send_n(proxy.addr, 20, "10.1.2.3", "eu");
    assert_eq!(tagged(&ups, "eu"), [20, 0, 0], "EU client");
    send_n(proxy.addr, 20, "10.2.0.9", "us");
    assert_eq!(tagged(&ups, "us"), [0, 20, 0], "US client");
    // The forwarded header is the client's plus the peer, as before.
    assert_eq!(
        us.last().header("x-forwarded-for"),
        Some("10.2.0.9, 127.0.0.1")
    );
    // No region: every server takes a share.
    send_n(proxy.addr, 30, "192.0.2.1", "none");
    let spread = tagged(&ups, "none");
    assert!(
        spread.iter().all(|&n| n >= 5),
        "no-region client: {spread:?}"
    );
}

#[test]
fn untrusted_peer_x_forwarded_for_is_ignored_for_geo() {
    let (eu, us, any) = (Upstream::echo(), Upstream::echo(), Upstream::echo());
    let ups = [&eu, &us, &any];
    // 127.0.0.1 is not trusted: the client is the peer (region us).
    let proxy = Proxy::start(&geo_config(r#""10.9.9.9/32""#, eu.addr, us.addr, any.addr));
    send_n(proxy.addr, 20, "10.1.2.3", "forged");
    assert_eq!(tagged(&ups, "forged"), [0, 20, 0]);
    assert_eq!(
        us.last().header("x-forwarded-for"),
        Some("10.1.2.3, 127.0.0.1")
    );
    // Without X-Forwarded-For the peer's region too.
    let mut c = proxy.connect();
    for i in 0..5 {
        assert_eq!(c.request(&get(&format!("/bare/{i}"))).status, 200);
    }
    assert_eq!(tagged(&ups, "bare"), [0, 5, 0]);
}

#[test]
fn x_forwarded_for_walk_stops_at_the_first_untrusted_entry() {
    let (eu, us, any) = (Upstream::echo(), Upstream::echo(), Upstream::echo());
    let ups = [&eu, &us, &any];
    let proxy = Proxy::start(&geo_config(r#""127.0.0.1/32""#, eu.addr, us.addr, any.addr));
    // A trusted hop on the right is skipped.
    send_n(proxy.addr, 10, "10.1.2.3, 127.0.0.1", "skip");
    assert_eq!(tagged(&ups, "skip"), [10, 0, 0]);
    // The right-most untrusted entry wins; entries to its left (forgeable)
    // do not count, garbage or not.
    send_n(proxy.addr, 10, "10.1.2.3, garbage, 10.2.0.9", "rightmost");
    assert_eq!(tagged(&ups, "rightmost"), [0, 10, 0]);
    // Garbage stops the walk: nothing to its left is believed (the client
    // is then a trusted address, 127.0.0.1, region us), never 10.1.2.3.
    send_n(proxy.addr, 10, "10.1.2.3, garbage, 127.0.0.1", "garbage");
    assert_eq!(tagged(&ups, "garbage"), [0, 10, 0]);
    // IPv6 entries.
    send_n(proxy.addr, 5, "2001:db8:e0::42, 127.0.0.1", "v6");
    assert_eq!(tagged(&ups, "v6"), [5, 0, 0]);
    // Several X-Forwarded-For fields form one list, the last field last.
    let mut c = proxy.connect();
    for i in 0..5 {
        let raw = format!(
            "GET /fields/{i} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.2.0.9\r\nX-Forwarded-For: 10.1.2.3, 127.0.0.1\r\n\r\n"
        );
        assert_eq!(c.request(raw.as_bytes()).status, 200);
    }
    assert_eq!(tagged(&ups, "fields"), [5, 0, 0]);
}

#[test]
fn proxy_source_through_a_trusted_proxy_chain_decides_the_region() {
    let (eu, us, any) = (Upstream::echo(), Upstream::echo(), Upstream::echo());
    let ups = [&eu, &us, &any];
    // Trust the socket peer and the 10.1/16 hop the PROXY header names.
    let config = ConfigBuilder::new(any.addr)
        .sections(&trusted(r#""127.0.0.1/32", "10.1.0.0/16""#))
        .sections(&lb_listener(""))
        .sections(
            "[geo]\nregions = { eu = [\"10.1.0.0/16\"], us = [\"10.2.0.0/16\"] }\n",
        )
        .group(&format!(
            r#"servers = [ {{ addr = "{}", region = "eu" }}, {{ addr = "{}", region = "us" }}, "{}" ]"#,
            eu.addr, us.addr, any.addr
        ))
        .build();
    let proxy = Proxy::start(&config);
    // PROXY source 10.2.0.5 (us) without XFF → us.
    for (i, (source, xff, tag)) in [
        ("10.2.0.5:1000", None, "pp-us"),
        ("10.1.0.5:1000", None, "pp-eu"),
        // The PROXY source is a trusted hop: its XFF names the client.
        ("10.1.0.5:1000", Some("10.2.7.7"), "pp-via"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = client_on(tcp(proxy.addr));
        let mut bytes = v1(sa(source), sa("198.51.100.1:80"));
        let path = format!("/{tag}/{i}");
        bytes.extend_from_slice(&match xff {
            Some(x) => get_xff(&path, x),
            None => get(&path),
        });
        c.send(&bytes);
        assert_eq!(c.read_response().status, 200, "{tag}");
    }
    assert_eq!(tagged(&ups, "pp-us"), [0, 1, 0]);
    assert_eq!(tagged(&ups, "pp-eu"), [1, 0, 0]);
    assert_eq!(tagged(&ups, "pp-via"), [0, 1, 0]);
}

#[test]
fn hash_on_client_ip_uses_the_proxy_source() {
    let ups: Vec<Upstream> = (0..3).map(|_| Upstream::echo()).collect();
    let servers: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr)).collect();
    let config = ConfigBuilder::new(ups[0].addr)
        .sections(&trusted(r#""127.0.0.1/32""#))
        .sections(&lb_listener(""))
        .group(&format!("servers = [{}]", servers.join(", ")))
        .group("balance = \"hash\"\nhash = { key = \"client_ip\" }")
        .build();
    let proxy = Proxy::start(&config);
    let refs: Vec<&Upstream> = ups.iter().collect();
    // One client IP from many source ports (connections): one server.
    for port in 0..8u16 {
        let mut c = client_on(tcp(proxy.addr));
        let mut bytes = v2(
            SocketAddr::new("192.0.2.77".parse().unwrap(), 2000 + port),
            sa("198.51.100.1:80"),
        );
        bytes.extend_from_slice(&get(&format!("/same/{port}")));
        c.send(&bytes);
        assert_eq!(c.read_response().status, 200);
    }
    let same = tagged(&refs, "same");
    assert!(same.contains(&8), "one client IP spread: {same:?}");
    // Many client IPs: more than one server.
    for i in 0..30u8 {
        let mut c = client_on(tcp(proxy.addr));
        let mut bytes = v1(
            SocketAddr::new(IpAddr::from([198, 18, i, 1]), 3000),
            sa("198.51.100.1:80"),
        );
        bytes.extend_from_slice(&get(&format!("/many/{i}")));
        c.send(&bytes);
        assert_eq!(c.read_response().status, 200);
    }
    let many = tagged(&refs, "many");
    assert!(
        many.iter().filter(|&&n| n > 0).count() >= 2,
        "30 client IPs on one server: {many:?}"
    );
}

#[test]
fn eu_client_falls_back_to_the_nearest_region() {
    // The eu server answers, but fails its health check: once it is down,
    // EU clients go to us (their nearest), never to the region-less one.
    let eu = Upstream::start(|r, w, up| {
        while let Some(req) = up.record(r) {
            let resp: &[u8] = if req.target == "/health" {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\neu"
            };
            if w.write_all(resp).is_err() {
                return;
            }
        }
    });
    let (us, any) = (Upstream::echo(), Upstream::echo());
    let ups = [&eu, &us, &any];
    let config = ConfigBuilder::new(any.addr)
        .sections(&trusted(r#""127.0.0.1/32""#))
        .sections(
            "[geo]\nregions = { eu = [\"10.1.0.0/16\"], us = [\"10.2.0.0/16\"] }\nnearest = { eu = [\"us\"] }\n",
        )
        .group(&format!(
            r#"servers = [ {{ addr = "{}", region = "eu" }}, {{ addr = "{}", region = "us" }}, "{}" ]"#,
            eu.addr, us.addr, any.addr
        ))
        .group(r#"health_check = { path = "/health", interval = "100ms", timeout = "500ms", unhealthy = 1, healthy = 1 }"#)
        .build();
    let proxy = Proxy::start_with(&config, 1, IoMode::Auto);
    // Wait (bounded) for the first failed probe to take eu down.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut c = proxy.connect();
    let mut i = 0;
    loop {
        let r = c.request(&get_xff(&format!("/wait/{i}"), "10.1.2.3"));
        assert_eq!(r.status, 200);
        if r.body_str() != "eu" {
            break;
        }
        assert!(Instant::now() < deadline, "eu server never marked down");
        i += 1;
        thread::sleep(Duration::from_millis(50));
    }
    send_n(proxy.addr, 20, "10.1.2.3", "fallback");
    assert_eq!(tagged(&ups, "fallback"), [0, 20, 0]);
    assert_eq!(tagged(&ups, "wait")[2], 0, "region-less server used");
}

#[test]
fn refused_regional_servers_fall_back_nearest_then_any() {
    let (us, any) = (Upstream::echo(), Upstream::echo());
    let ups = [&us, &any];
    // eu refuses connections: its requests go to us, the nearest.
    let proxy = Proxy::start(&geo_config(
        r#""127.0.0.1/32""#,
        dead_addr(),
        us.addr,
        any.addr,
    ));
    send_n(proxy.addr, 20, "10.1.2.3", "eu-dead");
    assert_eq!(tagged(&ups, "eu-dead"), [20, 0]);
    drop(proxy);
    // eu and us both refuse: the region-less server.
    let proxy = Proxy::start(&geo_config(
        r#""127.0.0.1/32""#,
        dead_addr(),
        dead_addr(),
        any.addr,
    ));
    send_n(proxy.addr, 10, "10.1.2.3", "both-dead");
    assert_eq!(tagged(&ups, "both-dead"), [0, 10]);
}

// ---------------------------------------------------------------------------
// 7. MaxMind DB
// ---------------------------------------------------------------------------

/// A minimal MaxMind DB writer (format 2.0): a binary search tree with
/// 24-bit records, a data section, and the metadata map.
mod mmdb {
    use std::net::Ipv4Addr;

    /// The values this test needs.
    pub enum V {
        Str(String),
        U16(u16),
        U32(u32),
        U64(u64),
        Map(Vec<(&'static str, V)>),
        Arr(Vec<V>),
    }

    pub fn s(v: &str) -> V {
        V::Str(v.to_string())
    }

    fn control(out: &mut Vec<u8>, ty: u8, size: usize) {
        let (low, extra): (u8, Vec<u8>) = match size {
            0..29 => (size as u8, vec![]),
            29..285 => (29, vec![(size - 29) as u8]),
            285..65_821 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
            _ => panic!("too big for this writer"),
        };
        if ty <= 7 {
            out.push((ty << 5) | low);
        } else {
            // Extended type: type 0 in the control byte, then type - 7.
            out.push(low);
            out.push(ty - 7);
        }
        out.extend_from_slice(&extra);
    }

    fn uint(out: &mut Vec<u8>, ty: u8, v: u64) {
        let bytes = v.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        control(out, ty, 8 - skip);
        out.extend_from_slice(&bytes[skip..]);
    }

    pub fn encode(v: &V, out: &mut Vec<u8>) {
        match v {
            V::Str(s) => {
                control(out, 2, s.len());
                out.extend_from_slice(s.as_bytes());
            }
            V::U16(n) => uint(out, 5, u64::from(*n)),
            V::U32(n) => uint(out, 6, u64::from(*n)),
            V::U64(n) => uint(out, 9, *n),
            V::Map(entries) => {
                control(out, 7, entries.len());
                for (k, v) in entries {
                    encode(&s(k), out);
                    encode(v, out);
                }
            }
            V::Arr(items) => {
                control(out, 11, items.len());
                for v in items {
                    encode(v, out);
                }
            }
        }
    }

    #[derive(Clone, Copy)]
    enum Rec {
        Empty,
        Node(usize),
        Data(usize),
    }

    /// A GeoLite2-Country-like record.
    pub fn geo_record(country: &str, continent: &str) -> V {
        V::Map(vec![
            (
                "continent",
                V::Map(vec![
                    ("code", s(continent)),
                    ("geoname_id", V::U32(6255148)),
                ]),
            ),
            ("country", V::Map(vec![("iso_code", s(country))])),
        ])
    }

    /// A database mapping IPv4 networks to records. `ip_version` 6: an
    /// IPv6 tree with IPv4 at `::/96` (as MaxMind's own files); 4: an
    /// IPv4-only tree.
    pub fn build(ip_version: u16, networks: &[(Ipv4Addr, u8, V)]) -> Vec<u8> {
        let depth: u32 = if ip_version == 6 { 128 } else { 32 };
        let mut data = Vec::new();
        let mut nodes: Vec<[Rec; 2]> = vec![[Rec::Empty; 2]];
        for (net, len, record) in networks {
            let offset = data.len();
            encode(record, &mut data);
            let bits = u128::from(u32::from(*net));
            let len = u32::from(*len) + depth - 32;
            let mut node = 0;
            for i in 0..len {
                let bit = ((bits >> (depth - 1 - i)) & 1) as usize;
                if i == len - 1 {
                    nodes[node][bit] = Rec::Data(offset);
                    break;
                }
                node = match nodes[node][bit] {
                    Rec::Node(n) => n,
                    Rec::Empty => {
                        nodes.push([Rec::Empty; 2]);
                        let n = nodes.len() - 1;
                        nodes[node][bit] = Rec::Node(n);
                        n
                    }
                    Rec::Data(_) => panic!("overlapping networks"),
                };
            }
        }
        let count = nodes.len();
        let mut out = Vec::new();
        for pair in &nodes {
            for rec in pair {
                let v = match *rec {
                    Rec::Empty => count,
                    Rec::Node(n) => n,
                    Rec::Data(off) => count + 16 + off,
                };
                assert!(v < 1 << 24);
                out.extend_from_slice(&(v as u32).to_be_bytes()[1..]);
            }
        }
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        let metadata = V::Map(vec![
            ("node_count", V::U32(count as u32)),
            ("record_size", V::U16(24)),
            ("ip_version", V::U16(ip_version)),
            ("database_type", s("ringress-test-Country")),
            ("languages", V::Arr(vec![s("en")])),
            ("binary_format_major_version", V::U16(2)),
            ("binary_format_minor_version", V::U16(0)),
            ("build_epoch", V::U64(1_700_000_000)),
            (
                "description",
                V::Map(vec![("en", s("ringress client_address test"))]),
            ),
        ]);
        encode(&metadata, &mut out);
        out
    }
}

/// 10.50.0.0/16 → DE / EU, 10.60.0.0/16 → US / NA.
fn test_mmdb(ip_version: u16) -> Vec<u8> {
    mmdb::build(
        ip_version,
        &[
            (
                "10.50.0.0".parse().unwrap(),
                16,
                mmdb::geo_record("DE", "EU"),
            ),
            (
                "10.60.0.0".parse().unwrap(),
                16,
                mmdb::geo_record("US", "NA"),
            ),
        ],
    )
}

#[test]
fn test_mmdb_reads_back_with_maxminddb() {
    use maxminddb::PathElement::Key;
    for ip_version in [6, 4] {
        let reader = maxminddb::Reader::from_source(test_mmdb(ip_version))
            .unwrap_or_else(|e| panic!("ip_version {ip_version}: {e}"));
        assert_eq!(reader.metadata().ip_version, ip_version);
        assert_eq!(reader.metadata().database_type, "ringress-test-Country");
        for (ip, country, continent) in [
            ("10.50.1.1", Some("DE"), Some("EU")),
            ("10.50.255.254", Some("DE"), Some("EU")),
            ("10.60.1.1", Some("US"), Some("NA")),
            ("10.70.1.1", None, None),
            ("192.0.2.1", None, None),
        ] {
            let found = reader.lookup(ip.parse().unwrap()).unwrap();
            let c: Option<&str> = found
                .decode_path(&[Key("country"), Key("iso_code")])
                .unwrap();
            let k: Option<&str> = found.decode_path(&[Key("continent"), Key("code")]).unwrap();
            assert_eq!((c, k), (country, continent), "v{ip_version} {ip}");
            assert_eq!(found.has_data(), country.is_some(), "v{ip_version} {ip}");
        }
    }
}

/// Group with servers in regions `a` and `b` and one without; `[geo]`
/// reads `mmdb` by `field`, plus `extra` keys.
fn mmdb_config(
    mmdb: &str,
    field: &str,
    extra: &str,
    (a, ra): (SocketAddr, &str),
    (b, rb): (SocketAddr, &str),
    any: SocketAddr,
) -> String {
    ConfigBuilder::new(any)
        .sections(&trusted(r#""127.0.0.1/32""#))
        .sections(&format!(
            "[geo]\nmmdb = \"{mmdb}\"\nmmdb_field = \"{field}\"\n{extra}\n"
        ))
        .group(&format!(
            r#"servers = [ {{ addr = "{a}", region = "{ra}" }}, {{ addr = "{b}", region = "{rb}" }}, "{any}" ]"#
        ))
        .build()
}

#[test]
fn mmdb_country_and_continent_pick_regions() {
    let dir = Dir::new();
    let (a, b, any) = (Upstream::echo(), Upstream::echo(), Upstream::echo());
    let ups = [&a, &b, &any];
    for (ip_version, field, ra, rb) in [
        (6, "country", "de", "us"),
        (4, "country", "DE", "US"),
        (6, "continent", "eu", "na"),
        (4, "continent", "EU", "na"),
    ] {
        let path = dir.write(
            &format!("geo-{ip_version}-{field}.mmdb"),
            &test_mmdb(ip_version),
        );
        let config = mmdb_config(&path, field, "", (a.addr, ra), (b.addr, rb), any.addr);
        let proxy = Proxy::start(&config);
        let tag = format!("{field}{ip_version}{ra}");
        send_n(proxy.addr, 10, "10.50.1.1", &format!("{tag}-a"));
        assert_eq!(tagged(&ups, &format!("{tag}-a")), [10, 0, 0], "{tag} 10.50");
        send_n(proxy.addr, 10, "10.60.1.1", &format!("{tag}-b"));
        assert_eq!(tagged(&ups, &format!("{tag}-b")), [0, 10, 0], "{tag} 10.60");
        // Not in the database: every server takes a share.
        send_n(proxy.addr, 15, "10.70.1.1", &format!("{tag}-none"));
        let spread = tagged(&ups, &format!("{tag}-none"));
        assert!(spread.iter().all(|&n| n > 0), "{tag} 10.70: {spread:?}");
    }
}

#[test]
fn config_ranges_take_precedence_over_the_mmdb() {
    let dir = Dir::new();
    let path = dir.write("geo.mmdb", &test_mmdb(6));
    let (de, us, any) = (Upstream::echo(), Upstream::echo(), Upstream::echo());
    let ups = [&de, &us, &any];
    let config = mmdb_config(
        &path,
        "country",
        "regions = { us = [\"10.50.1.0/24\"] }",
        (de.addr, "de"),
        (us.addr, "us"),
        any.addr,
    );
    let proxy = Proxy::start(&config);
    send_n(proxy.addr, 10, "10.50.1.1", "range");
    assert_eq!(tagged(&ups, "range"), [0, 10, 0], "the range says us");
    send_n(proxy.addr, 10, "10.50.2.1", "db");
    assert_eq!(
        tagged(&ups, "db"),
        [10, 0, 0],
        "outside the range: the mmdb's de"
    );
}

#[test]
fn missing_or_garbage_mmdb_is_a_config_error() {
    let dir = Dir::new();
    let garbage = dir.write("garbage.mmdb", b"this is not a MaxMind DB at all\n");
    let missing = dir.0.join("missing.mmdb");
    let missing = missing.to_str().unwrap();
    let up: SocketAddr = sa("127.0.0.1:9");
    for path in [missing, garbage.as_str()] {
        let text = ConfigBuilder::new(up)
            .sections(&format!("[geo]\nmmdb = \"{path}\"\n"))
            .build();
        let err = Config::from_toml_str(&text).unwrap_err().to_string();
        assert!(err.contains("geo.mmdb"), "{path}: {err}");
    }
}

// ---------------------------------------------------------------------------
// 8. Config errors with key paths
// ---------------------------------------------------------------------------

#[test]
fn config_errors_name_their_keys() {
    let up: SocketAddr = sa("127.0.0.1:9");
    let cases: [(ConfigBuilder, &str); 7] = [
        (
            ConfigBuilder::new(up).sections(&trusted(r#""10.0.0.0/33", "127.0.0.1""#)),
            "forwarding.trusted_proxies[0]",
        ),
        (
            ConfigBuilder::new(up).sections(&trusted(r#""127.0.0.1", "not-an-ip""#)),
            "forwarding.trusted_proxies[1]",
        ),
        (
            ConfigBuilder::new(up).group("send_proxy_protocol = \"v3\""),
            "upstreams.backend.send_proxy_protocol",
        ),
        (
            ConfigBuilder::new(up).sections("[geo]\nmmdb_field = \"city\"\n"),
            "geo.mmdb_field",
        ),
        (
            ConfigBuilder::new(up).sections("[geo]\nregions = { eu = [\"10.1.0.0/99\"] }\n"),
            "geo.regions.eu[0]",
        ),
        (
            ConfigBuilder::new(up).sections(
                "[[listeners]]\nname = \"lb\"\nbind = \"127.0.0.1:0\"\nproxy_protocol = \"yes\"\n",
            ),
            r#"listeners[0] "lb".proxy_protocol"#,
        ),
        (
            ConfigBuilder::new(up).sections("[geo]\nnearest = { eu = 5 }\n"),
            "geo.nearest.eu",
        ),
    ];
    for (builder, key) in cases {
        let text = builder.build();
        let err = match Config::from_toml_str(&text) {
            Ok(_) => panic!("{key}: accepted:\n{text}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(key), "expected {key} in: {err}");
    }
    // And the valid forms load.
    let ok = ConfigBuilder::new(up)
        .sections(&trusted(r#""127.0.0.1", "10.0.0.0/8", "2001:db8::/32""#))
        .sections("[geo]\nmmdb_field = \"continent\"\nregions = { eu = [\"10.1.0.0/16\"] }\nnearest = { eu = [\"us\"] }\n")
        .group("send_proxy_protocol = \"v2\"")
        .build();
    Config::from_toml_str(&ok).unwrap_or_else(|e| panic!("{e}"));
}
