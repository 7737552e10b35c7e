//! TLS over real sockets: listeners terminating TLS (SNI certificate choice,
//! default certificate, ALPN, resumption, protocol versions, reload, mTLS,
//! HSTS, handshake timeout) and upstream groups speaking TLS (verification,
//! SNI, pooling). Certificates are made per test with rcgen; the client is
//! rustls over a blocking `TcpStream`, and TLS upstreams are small rustls
//! servers (one thread per connection) that echo what they saw.

mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use ringress::{Config, IoMode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, ProtocolVersion,
    RootCertStore, ServerConfig, ServerConnection, SignatureScheme, StreamOwned,
    SupportedProtocolVersion,
};

// ---------------------------------------------------------------------------
// Certificates and files
// ---------------------------------------------------------------------------

/// A directory of PEM files for one test (unique per process and test),
/// removed on drop.
struct Dir(TempPath);

impl Dir {
    fn new() -> Dir {
        Dir(TempPath::unique_dir("tls"))
    }

    /// The absolute path of `name` in this directory (which may not exist).
    fn path(&self, name: &str) -> String {
        self.0
            .join(name)
            .to_str()
            .expect("utf-8 temp path")
            .to_string()
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write a PEM file");
        path
    }
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

/// An end-entity certificate and its key.
struct Leaf {
    der: CertificateDer<'static>,
    pem: String,
    key_der: Vec<u8>,
    key_pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (DNS names or IPs as SANs).
    fn server(&self, names: &[&str]) -> Leaf {
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate with subject `CN=<cn>,O=Example`.
    fn client(&self, cn: &str) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> Leaf {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            der: cert.der().clone(),
            pem: cert.pem(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        }
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        roots
    }

    fn write(&self, dir: &Dir, name: &str) -> String {
        dir.write(&format!("{name}.pem"), &self.pem)
    }
}

impl Leaf {
    fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.der.clone()]
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key_der.clone()).into()
    }

    /// Writes `<name>.pem` and `<name>.key`; returns the TOML entry for
    /// `certs = [...]`.
    fn write(&self, dir: &Dir, name: &str) -> String {
        let cert = dir.write(&format!("{name}.pem"), &self.pem);
        let key = dir.write(&format!("{name}.key"), &self.key_pem);
        cert_entry(&cert, &key)
    }
}

fn cert_entry(cert: &str, key: &str) -> String {
    format!(r#"{{ cert = "{cert}", key = "{key}" }}"#)
}

// ---------------------------------------------------------------------------
// Proxy configs
// ---------------------------------------------------------------------------

/// A TLS listener named "https" with the given `[listeners.tls]` keys. Put
/// in [`ConfigBuilder::sections`], it comes before the builder's plain
/// listener "main", so it is `listeners[0]` and `Proxy::addr`.
fn https_listener(tls_keys: &str) -> String {
    format!(
        "[[listeners]]\nname = \"https\"\nbind = \"127.0.0.1:0\"\n[listeners.tls]\n{tls_keys}\n"
    )
}

/// Config: TLS listener "https" (first) with `tls_keys`, plain listener
/// "main", catch-all route to `upstream`.
fn tls_config(tls_keys: &str, upstream: SocketAddr) -> String {
    ConfigBuilder::new(upstream)
        .sections(&https_listener(tls_keys))
        .build()
}

fn plain_addr(proxy: &Proxy) -> SocketAddr {
    proxy
        .handle()
        .listener_addr("main")
        .expect("plain listener bound")
}

// ---------------------------------------------------------------------------
// TLS client
// ---------------------------------------------------------------------------

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
static TLS12_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS12];

fn tls13() -> &'static [&'static SupportedProtocolVersion] {
    &TLS13_ONLY
}

fn tls12() -> &'static [&'static SupportedProtocolVersion] {
    &TLS12_ONLY
}

fn both_versions() -> &'static [&'static SupportedProtocolVersion] {
    rustls::ALL_VERSIONS
}

/// A client config trusting `ca` (or, with None, any certificate: for
/// tests that look at which certificate was served, not whether it
/// verifies), presenting `cert` when given.
fn client_config(
    ca: Option<&Ca>,
    versions: &[&'static SupportedProtocolVersion],
    cert: Option<&Leaf>,
) -> ClientConfig {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("protocol versions");
    let builder = match ca {
        Some(ca) => builder.with_root_certificates(ca.roots()),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider()))),
    };
    match cert {
        Some(leaf) => builder
            .with_client_auth_cert(leaf.chain(), leaf.key())
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    }
}

/// `config` without client-side session resumption: every handshake is a
/// full one, showing the certificate the proxy picks now.
fn no_resumption(mut config: ClientConfig) -> Arc<ClientConfig> {
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// Accepts any server certificate (signatures still checked).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Connects and completes a handshake. `name` is a DNS name (sent as SNI
/// unless the config disables it) or an IP (no SNI).
fn handshake(addr: SocketAddr, config: &Arc<ClientConfig>, name: &str) -> io::Result<Tls> {
    let server_name = ServerName::try_from(name.to_string()).expect("server name");
    let mut conn = ClientConnection::new(config.clone(), server_name).map_err(io::Error::other)?;
    let mut sock = tcp(addr);
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok(StreamOwned::new(conn, sock))
}

/// Asserts that a failure is a refusal by the proxy, not our own timeout.
fn assert_refused<T>(result: io::Result<T>, what: &str) {
    match result {
        Ok(_) => panic!("{what}: expected a refusal, but it succeeded"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{what}: timed out instead of being refused: {e}"
        ),
    }
}

/// The end-entity certificate the proxy served for `name`.
fn served_cert(addr: SocketAddr, config: &Arc<ClientConfig>, name: &str) -> io::Result<Vec<u8>> {
    let tls = handshake(addr, config, name)?;
    // A resumed session shows the certificate of the session, not one sent now.
    assert_eq!(
        tls.conn.handshake_kind(),
        Some(HandshakeKind::Full),
        "{name}: resumed; look at certificates with a `no_resumption` config"
    );
    let certs = tls.conn.peer_certificates().expect("server certificates");
    Ok(certs[0].to_vec())
}

/// An HTTP/1.1 client over TLS.
struct TlsClient {
    r: BufReader<Tls>,
}

impl TlsClient {
    fn connect(addr: SocketAddr, config: &Arc<ClientConfig>, name: &str) -> TlsClient {
        let tls = handshake(addr, config, name)
            .unwrap_or_else(|e| panic!("TLS handshake with {name} failed: {e}"));
        TlsClient {
            r: BufReader::with_capacity(64 * 1024, tls),
        }
    }

    fn conn(&self) -> &ClientConnection {
        &self.r.get_ref().conn
    }

    fn try_request(&mut self, raw: &[u8]) -> io::Result<Response> {
        let s = self.r.get_mut();
        s.write_all(raw)?;
        s.flush()?;
        read_response(&mut self.r, raw.starts_with(b"HEAD "))
    }

    fn request(&mut self, raw: &[u8]) -> Response {
        let what = String::from_utf8_lossy(&raw[..raw.len().min(60)])
            .escape_debug()
            .to_string();
        self.try_request(raw)
            .unwrap_or_else(|e| panic!("no response over TLS to {what}: {e}"))
    }
}

/// Connects, sends `raw` and reads the response: Err when the handshake,
/// the write or the read fails.
fn attempt(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    name: &str,
    raw: &[u8],
) -> io::Result<Response> {
    let tls = handshake(addr, config, name)?;
    let mut c = TlsClient {
        r: BufReader::new(tls),
    };
    c.try_request(raw)
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_head_lines(r: &mut impl BufRead) -> io::Result<String> {
    let mut raw = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("closed before a complete head (got {raw:?})"),
            ));
        }
        raw.push_str(&line);
        if line == "\r\n" {
            return Ok(raw);
        }
    }
}

fn parse_fields<'a>(lines: impl Iterator<Item = &'a str>) -> io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let (n, v) = l
            .split_once(':')
            .ok_or_else(|| bad(format!("bad field {l:?}")))?;
        out.push((n.to_string(), v.trim().to_string()));
    }
    Ok(out)
}

fn read_chunked_body(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let size_text = line.trim_end().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            loop {
                line.clear();
                if r.read_line(&mut line)? == 0 || line == "\r\n" {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        r.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(bad("chunk not followed by CRLF"));
        }
    }
}

/// Reads one response (as `common::Client` does, over any reader).
fn read_response(r: &mut impl BufRead, head_request: bool) -> io::Result<Response> {
    let raw = read_head_lines(r)?;
    let mut lines = raw.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_string();
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut resp = Response {
        version,
        status,
        headers: parse_fields(lines)?,
        raw_head: raw.clone(),
        ..Default::default()
    };
    if head_request || resp.status < 200 || resp.status == 204 || resp.status == 304 {
        return Ok(resp);
    }
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        resp.chunked = true;
        resp.body = read_chunked_body(r)?;
    } else if let Some(n) = resp.header("content-length") {
        let n: usize = n.parse().map_err(|_| bad("bad content-length"))?;
        let mut body = vec![0; n];
        r.read_exact(&mut body)?;
        resp.body = body;
    } else {
        match r.read_to_end(&mut resp.body) {
            Ok(_) => {}
            // TLS peers may close without close_notify.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(e),
        }
    }
    Ok(resp)
}

/// Reads one request on the upstream side (CL or chunked body), over any
/// reader. None on close or error.
fn read_request_from(r: &mut impl BufRead) -> Option<SeenRequest> {
    let raw = read_head_lines(r).ok()?;
    let mut lines = raw.split("\r\n");
    let mut request_line = lines.next()?.splitn(3, ' ');
    let mut req = SeenRequest {
        method: request_line.next()?.to_string(),
        target: request_line.next()?.to_string(),
        version: request_line.next()?.to_string(),
        headers: parse_fields(lines).ok()?,
        raw_head: raw.clone(),
        ..Default::default()
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        req.body = read_chunked_body(r).ok()?;
    } else if let Some(n) = req.header("content-length") {
        let mut body = vec![0; n.parse().ok()?];
        r.read_exact(&mut body).ok()?;
        req.body = body;
    }
    Some(req)
}

// ---------------------------------------------------------------------------
// Upstreams
// ---------------------------------------------------------------------------

/// Deterministic, non-repeating-looking bytes.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + i / 251) % 253) as u8).collect()
}

const BIG: usize = 1 << 20;

/// The answer of the test upstreams: `/big...` → 1 MiB of [`pattern`]
/// (chunked in 64 KiB pieces for `/bigchunked`), anything else → 200 with
/// "METHOD TARGET\n" and the request body. `tag` goes in `X-Upstream`.
fn answer(req: &SeenRequest, tag: &str) -> Vec<u8> {
    let target = req.target.rsplit('/').next().unwrap_or("");
    if target == "bigchunked" {
        let body = pattern(BIG);
        let mut out =
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Upstream: {tag}\r\n\r\n")
                .into_bytes();
        for piece in body.chunks(64 * 1024 + 3) {
            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        return out;
    }
    let body = if target == "big" {
        pattern(BIG)
    } else {
        let mut b = format!("{} {}\n", req.method, req.target).into_bytes();
        b.extend_from_slice(&req.body);
        b
    };
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Upstream: {tag}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// A plain upstream answering with [`answer`].
fn plain_upstream() -> Upstream {
    Upstream::start(|r, w, up| {
        while let Some(req) = up.record(r) {
            if w.write_all(&answer(&req, "plain")).is_err() {
                return;
            }
        }
    })
}

/// A keep-alive upstream speaking TLS with `cert`, answering with
/// [`answer`]. Records requests, accepted connections and the SNI of each
/// completed handshake.
#[derive(Clone)]
struct TlsUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    handshakes: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    sni: Arc<Mutex<Vec<Option<String>>>>,
    stop: Arc<AtomicBool>,
}

impl TlsUpstream {
    fn start(cert: &Leaf) -> TlsUpstream {
        let config = Arc::new(
            ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(cert.chain(), cert.key())
                .expect("upstream cert"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind TLS upstream");
        let up = TlsUpstream {
            addr: listener.local_addr().unwrap(),
            connections: Arc::default(),
            handshakes: Arc::default(),
            seen: Arc::default(),
            sni: Arc::default(),
            stop: Arc::default(),
        };
        let server = up.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if server.stop.load(Ordering::Acquire) {
                    break;
                }
                let Ok(sock) = conn else { continue };
                server.connections.fetch_add(1, Ordering::AcqRel);
                let (me, config) = (server.clone(), config.clone());
                thread::spawn(move || me.serve(sock, config));
            }
        });
        up
    }

    fn serve(&self, mut sock: TcpStream, config: Arc<ServerConfig>) {
        let _ = sock.set_read_timeout(Some(TIMEOUT));
        let _ = sock.set_write_timeout(Some(TIMEOUT));
        let _ = sock.set_nodelay(true);
        let Ok(mut conn) = ServerConnection::new(config) else {
            return;
        };
        while conn.is_handshaking() {
            if conn.complete_io(&mut sock).is_err() {
                return;
            }
        }
        self.handshakes.fetch_add(1, Ordering::AcqRel);
        self.sni
            .lock()
            .unwrap()
            .push(conn.server_name().map(str::to_string));
        let mut r = BufReader::new(StreamOwned::new(conn, sock));
        while let Some(req) = read_request_from(&mut r) {
            self.seen.lock().unwrap().push(req.clone());
            let w = r.get_mut();
            if w.write_all(&answer(&req, "tls")).is_err() || w.flush().is_err() {
                return;
            }
        }
    }

    fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }

    fn snis(&self) -> Vec<Option<String>> {
        self.sni.lock().unwrap().clone()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        // Only the last clone outside the accept loop stops it.
        if Arc::strong_count(&self.stop) == 2 {
            self.stop.store(true, Ordering::Release);
            let _ = TcpStream::connect(self.addr);
        }
    }
}

fn header_count(r: &Response, name: &str) -> usize {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .count()
}

/// A chunked request body: `body` cut at `sizes` (cycled).
fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut at, mut i) = (0, 0);
    while at < body.len() {
        let n = sizes[i % sizes.len()].min(body.len() - at);
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&body[at..at + n]);
        out.extend_from_slice(b"\r\n");
        at += n;
        i += 1;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

// ---------------------------------------------------------------------------
// Tests: listener TLS
// ---------------------------------------------------------------------------

/// Certificates chosen by SNI: exact names, one-label wildcards, and an
/// exact name beating a wildcard listed before it.
#[test]
fn sni_picks_exact_name_then_wildcard() {
    let dir = Dir::new();
    let ca = Ca::new("SNI CA");
    let a = ca.server(&["a.test"]);
    let wild = ca.server(&["*.b.test"]);
    let exact = ca.server(&["x.b.test"]);
    let up = Upstream::echo();
    let certs = [
        a.write(&dir, "a"),
        wild.write(&dir, "wild"),
        exact.write(&dir, "x"),
    ];
    let proxy = Proxy::start(&tls_config(
        &format!("certs = [{}]", certs.join(", ")),
        up.addr,
    ));

    // Verified against the CA and the name: the proxy serves a valid chain.
    let verified = no_resumption(client_config(Some(&ca), both_versions(), None));
    let any = no_resumption(client_config(None, both_versions(), None));
    for (name, want, label) in [
        ("a.test", &a, "a.test"),
        ("y.b.test", &wild, "*.b.test"),
        ("a.b.test", &wild, "*.b.test"),
        (
            "x.b.test",
            &exact,
            "x.b.test (exact beats the wildcard listed before it)",
        ),
    ] {
        let got = served_cert(proxy.addr, &verified, name)
            .unwrap_or_else(|e| panic!("SNI {name}: handshake failed: {e}"));
        assert!(
            got == want.der.to_vec(),
            "SNI {name}: expected the {label} certificate"
        );
    }
    // A wildcard covers exactly one label: these get the default (first).
    for name in ["z.y.b.test", "b.test"] {
        let got = served_cert(proxy.addr, &any, name).unwrap();
        assert!(
            got == a.der.to_vec(),
            "SNI {name}: expected the default (a.test) certificate"
        );
    }

    // And a request goes through on the chosen certificate.
    let mut c = TlsClient::connect(proxy.addr, &verified, "y.b.test");
    let r = c.request(&get("/sni"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "GET /sni\n");
}

/// Missing or unknown SNI gets the first certificate; with
/// `unknown_sni = "reject"` the handshake fails.
#[test]
fn unknown_or_missing_sni_default_or_reject() {
    let dir = Dir::new();
    let ca = Ca::new("default CA");
    let a = ca.server(&["a.test"]);
    let wild = ca.server(&["*.b.test"]);
    let (ea, ew) = (a.write(&dir, "a"), wild.write(&dir, "wild"));
    let up = Upstream::echo();
    let any = no_resumption(client_config(None, both_versions(), None));
    let mut no_sni = client_config(None, both_versions(), None);
    no_sni.enable_sni = false;
    let no_sni = no_resumption(no_sni);

    // The default is the first listed, whichever that is.
    for (order, first) in [(format!("{ea}, {ew}"), &a), (format!("{ew}, {ea}"), &wild)] {
        let proxy = Proxy::start(&tls_config(&format!("certs = [{order}]"), up.addr));
        let want = first.der.to_vec();
        let got = served_cert(proxy.addr, &any, "unknown.test").unwrap();
        assert!(
            got == want,
            "unknown SNI, certs [{order}]: not the first cert"
        );
        // An IP name: rustls sends no SNI.
        let got = served_cert(proxy.addr, &any, "127.0.0.1").unwrap();
        assert!(
            got == want,
            "no SNI (IP), certs [{order}]: not the first cert"
        );
        // SNI switched off with a name that would match the other cert.
        let other_name = if std::ptr::eq(first, &a) {
            "q.b.test"
        } else {
            "a.test"
        };
        let got = served_cert(proxy.addr, &no_sni, other_name).unwrap();
        assert!(
            got == want,
            "no SNI extension, certs [{order}]: not the first cert"
        );
    }

    let proxy = Proxy::start(&tls_config(
        &format!("certs = [{ea}, {ew}]\nunknown_sni = \"reject\""),
        up.addr,
    ));
    assert_refused(
        served_cert(proxy.addr, &any, "unknown.test"),
        "unknown SNI, reject",
    );
    assert_refused(
        served_cert(proxy.addr, &any, "127.0.0.1"),
        "no SNI (IP), reject",
    );
    assert_refused(
        served_cert(proxy.addr, &no_sni, "a.test"),
        "no SNI extension, reject",
    );
    // Known names still work on the rejecting listener.
    let got = served_cert(proxy.addr, &any, "a.test").expect("a.test on reject listener");
    assert!(got == a.der.to_vec());
    let got = served_cert(proxy.addr, &any, "k.b.test").expect("k.b.test on reject listener");
    assert!(got == wild.der.to_vec());
}

/// ALPN offers http/1.1 only; requests from the TLS listener carry
/// `X-Forwarded-Proto: https` (plain: `http`), the client's copy replaced.
#[test]
fn alpn_and_forwarded_proto() {
    let dir = Dir::new();
    let ca = Ca::new("ALPN CA");
    let cert = ca.server(&["a.test"]);
    let up = Upstream::echo();
    let proxy = Proxy::start(&tls_config(
        &format!("certs = [{}]", cert.write(&dir, "a")),
        up.addr,
    ));
    let with_alpn = |protos: &[&[u8]]| {
        let mut c = client_config(Some(&ca), both_versions(), None);
        c.alpn_protocols = protos.iter().map(|p| p.to_vec()).collect();
        Arc::new(c)
    };

    assert_refused(
        handshake(proxy.addr, &with_alpn(&[b"h2"]), "a.test"),
        "ALPN h2 only",
    );
    let both = TlsClient::connect(proxy.addr, &with_alpn(&[b"h2", b"http/1.1"]), "a.test");
    assert_eq!(both.conn().alpn_protocol(), Some(&b"http/1.1"[..]));
    drop(both);
    let mut none = TlsClient::connect(proxy.addr, &with_alpn(&[]), "a.test");
    assert_eq!(none.conn().alpn_protocol(), None);

    let r =
        none.request(b"GET /hello?x=1 HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-Proto: http\r\n\r\n");
    assert!(
        r.raw_head.starts_with("HTTP/1.1 200 OK\r\n"),
        "head: {:?}",
        r.raw_head
    );
    assert_eq!(r.header("x-upstream"), Some("echo"));
    assert_eq!(r.header("content-length"), Some("15"));
    assert_eq!(r.body, b"GET /hello?x=1\n");
    let seen = up.last();
    assert_eq!(seen.target, "/hello?x=1");
    assert_eq!(
        seen.header_count("x-forwarded-proto"),
        1,
        "{}",
        seen.raw_head
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("host"), Some("a.test"));

    // Keep-alive on the TLS connection, with a body.
    let r = none.request(b"POST /p HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "POST /p\nhello");

    // The plain listener of the same proxy says http.
    let mut plain = Client::connect(plain_addr(&proxy));
    let r = plain.request(b"GET /p HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-Proto: https\r\n\r\n");
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(
        seen.header_count("x-forwarded-proto"),
        1,
        "{}",
        seen.raw_head
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
}

/// TLS 1.3 resumption with tickets, on any of the two workers.
#[test]
fn tls13_resumes_with_tickets_across_workers() {
    let dir = Dir::new();
    let ca = Ca::new("resume CA");
    let cert = ca.server(&["a.test"]);
    let up = Upstream::echo();
    let proxy = Proxy::start(&tls_config(
        &format!(
            "certs = [{}]\nsession_tickets = true",
            cert.write(&dir, "a")
        ),
        up.addr,
    ));
    let config = Arc::new(client_config(Some(&ca), tls13(), None));
    for i in 0..5 {
        let mut c = TlsClient::connect(proxy.addr, &config, "a.test");
        assert_eq!(c.conn().protocol_version(), Some(ProtocolVersion::TLSv1_3));
        let want = if i == 0 {
            HandshakeKind::Full
        } else {
            HandshakeKind::Resumed
        };
        assert_eq!(c.conn().handshake_kind(), Some(want), "connection {i}");
        // A response read also takes in the tickets sent after the handshake.
        let r = c.request(&get(&format!("/r{i}")));
        assert_eq!(r.status, 200);
        assert_eq!(r.body_str(), format!("GET /r{i}\n"));
    }
}

/// TLS 1.2: the session-ID cache resumes without tickets (one worker, as
/// the cache is per worker); with the cache off too, nothing resumes; and
/// TLS 1.2 tickets resume on any worker.
#[test]
fn tls12_resumes_with_session_ids_and_tickets() {
    let dir = Dir::new();
    let ca = Ca::new("resume12 CA");
    let cert = ca.server(&["a.test"]);
    let entry = cert.write(&dir, "a");
    let up = Upstream::echo();
    let run = |tls_keys: &str, threads: usize, expect_resume: bool| {
        let proxy = Proxy::start_with(
            &tls_config(&format!("certs = [{entry}]\n{tls_keys}"), up.addr),
            threads,
            IoMode::Auto,
        );
        // A fresh client session cache per proxy.
        let config = Arc::new(client_config(Some(&ca), tls12(), None));
        for i in 0..4 {
            let mut c = TlsClient::connect(proxy.addr, &config, "a.test");
            assert_eq!(c.conn().protocol_version(), Some(ProtocolVersion::TLSv1_2));
            let want = if i > 0 && expect_resume {
                HandshakeKind::Resumed
            } else {
                HandshakeKind::Full
            };
            assert_eq!(
                c.conn().handshake_kind(),
                Some(want),
                "{tls_keys:?} ({threads} workers), connection {i}"
            );
            let r = c.request(&get("/12"));
            assert_eq!(r.status, 200);
            assert_eq!(r.body_str(), "GET /12\n");
        }
    };
    run("session_tickets = false\nsession_cache = 1024", 1, true);
    run("session_tickets = false\nsession_cache = 0", 1, false);
    run("session_tickets = true\nsession_cache = 0", 2, true);
}

/// `min_version = "1.3"` refuses a TLS 1.2-only client.
#[test]
fn min_version_13_refuses_tls12() {
    let dir = Dir::new();
    let ca = Ca::new("version CA");
    let cert = ca.server(&["a.test"]);
    let up = Upstream::echo();
    let entry = cert.write(&dir, "a");
    let proxy = Proxy::start(&tls_config(
        &format!("certs = [{entry}]\nmin_version = \"1.3\""),
        up.addr,
    ));
    let only12 = Arc::new(client_config(Some(&ca), tls12(), None));
    assert_refused(
        handshake(proxy.addr, &only12, "a.test"),
        "TLS 1.2 client on a 1.3 listener",
    );
    let any = Arc::new(client_config(Some(&ca), both_versions(), None));
    let mut c = TlsClient::connect(proxy.addr, &any, "a.test");
    assert_eq!(c.conn().protocol_version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(c.request(&get("/v")).status, 200);
    drop(c);

    // The default minimum (1.2) takes the same TLS 1.2 client.
    let proxy = Proxy::start(&tls_config(&format!("certs = [{entry}]"), up.addr));
    let mut c = TlsClient::connect(proxy.addr, &only12, "a.test");
    assert_eq!(c.conn().protocol_version(), Some(ProtocolVersion::TLSv1_2));
    assert_eq!(c.request(&get("/v")).status, 200);
}

/// A reload swaps the certificate for new connections, keeps open ones
/// working; broken certificate configs are refused with their key path
/// and leave the running certificate in place.
#[test]
fn reload_swaps_certificates_and_refuses_broken_ones() {
    let dir = Dir::new();
    let ca = Ca::new("reload CA");
    let a = ca.server(&["a.test"]);
    let b = ca.server(&["a.test"]);
    let (ea, eb) = (a.write(&dir, "a"), b.write(&dir, "b"));
    let up = Upstream::echo();
    let config_with = |certs: &str| tls_config(&format!("certs = [{certs}]"), up.addr);
    let proxy = Proxy::start(&config_with(&ea));
    let client = Arc::new(client_config(Some(&ca), both_versions(), None));
    let fresh = no_resumption(client_config(Some(&ca), both_versions(), None));

    let mut old = TlsClient::connect(proxy.addr, &client, "a.test");
    assert!(old.conn().peer_certificates().unwrap()[0] == a.der);
    assert_eq!(old.request(&get("/before")).body_str(), "GET /before\n");

    proxy.reload(&config_with(&eb));
    let got = served_cert(proxy.addr, &fresh, "a.test").unwrap();
    assert!(
        got == b.der.to_vec(),
        "a new connection after the reload got the old certificate"
    );
    let mut new = TlsClient::connect(proxy.addr, &client, "a.test");
    assert_eq!(new.request(&get("/new")).body_str(), "GET /new\n");

    // The connection opened before the reload still works.
    let r = old.request(&get("/after"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "GET /after\n");

    let b_cert = dir.path("b.pem");
    let b_key = dir.path("b.key");
    let garbage = dir.write(
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\nthis is not base64 !!\n-----END CERTIFICATE-----\n",
    );
    let a_key = dir.path("a.key");
    let cases = [
        (
            "missing key file",
            cert_entry(&b_cert, &dir.path("missing.key")),
            "listeners[0] \"https\".tls.certs[0].key",
        ),
        (
            "key not matching the certificate",
            cert_entry(&b_cert, &a_key),
            "listeners[0] \"https\".tls.certs[0].key",
        ),
        (
            "missing cert file",
            cert_entry(&dir.path("missing.pem"), &b_key),
            "listeners[0] \"https\".tls.certs[0].cert",
        ),
        (
            "garbage PEM",
            cert_entry(&garbage, &b_key),
            "listeners[0] \"https\".tls.certs[0].cert",
        ),
        (
            "second entry's key not matching",
            format!("{eb}, {}", cert_entry(&b_cert, &a_key)),
            "listeners[0] \"https\".tls.certs[1].key",
        ),
    ];
    for (what, certs, key_path) in cases {
        match Config::from_toml_str(&config_with(&certs)) {
            Ok(_) => panic!("{what}: config accepted"),
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains(key_path),
                    "{what}: error lacks {key_path}:\n{text}"
                );
            }
        }
    }
    // Still serving B.
    let got = served_cert(proxy.addr, &fresh, "a.test").unwrap();
    assert!(got == b.der.to_vec(), "the running certificate changed");
    assert_eq!(new.request(&get("/still")).status, 200);
}

/// mTLS required: no certificate or one from another CA is refused; a good
/// one passes, and its subject goes upstream in place of the client's copy.
#[test]
fn mtls_required() {
    let dir = Dir::new();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let other_ca = Ca::new("other CA");
    let cert = server_ca.server(&["a.test"]);
    let alice = client_ca.client("alice");
    let mallory = other_ca.client("mallory");
    let up = Upstream::echo();
    let proxy = Proxy::start(&tls_config(
        &format!(
            "certs = [{}]\nclient_ca = \"{}\"\nclient_cert = \"required\"\n\
             client_subject_header = \"X-Client-Subject\"",
            cert.write(&dir, "a"),
            client_ca.write(&dir, "client-ca")
        ),
        up.addr,
    ));
    let forged = b"GET /m HTTP/1.1\r\nHost: a.test\r\nX-Client-Subject: forged\r\n\r\n";

    for (v, versions) in [("1.3", tls13()), ("1.2", tls12())] {
        let config =
            |leaf: Option<&Leaf>| Arc::new(client_config(Some(&server_ca), versions, leaf));
        let before = up.requests().len();
        assert_refused(
            attempt(proxy.addr, &config(None), "a.test", &get("/none")),
            &format!("TLS {v}, no client cert"),
        );
        assert_refused(
            attempt(
                proxy.addr,
                &config(Some(&mallory)),
                "a.test",
                &get("/other"),
            ),
            &format!("TLS {v}, client cert from another CA"),
        );
        assert_eq!(
            up.requests().len(),
            before,
            "TLS {v}: a refused client reached upstream"
        );

        let mut c = TlsClient::connect(proxy.addr, &config(Some(&alice)), "a.test");
        let r = c.request(forged);
        assert_eq!(r.status, 200, "TLS {v}");
        assert_eq!(r.body_str(), "GET /m\n");
        let seen = up.last();
        assert_eq!(
            seen.header_count("x-client-subject"),
            1,
            "{}",
            seen.raw_head
        );
        let subject = seen.header("x-client-subject").unwrap();
        assert!(
            subject.contains("CN=alice") && subject.contains("O=Example"),
            "TLS {v}: subject sent upstream: {subject:?}"
        );
        assert!(!subject.contains("forged"));
    }
}

/// mTLS optional: no certificate passes without the subject header (the
/// client's forged copy removed); a good one adds it; a bad one is refused.
#[test]
fn mtls_optional() {
    let dir = Dir::new();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let other_ca = Ca::new("other CA");
    let cert = server_ca.server(&["a.test"]);
    let bob = client_ca.client("bob");
    let mallory = other_ca.client("mallory");
    let up = Upstream::echo();
    let proxy = Proxy::start(&tls_config(
        &format!(
            "certs = [{}]\nclient_ca = \"{}\"\nclient_cert = \"optional\"\n\
             client_subject_header = \"X-Client-Subject\"",
            cert.write(&dir, "a"),
            client_ca.write(&dir, "client-ca")
        ),
        up.addr,
    ));
    let forged = b"GET /o HTTP/1.1\r\nHost: a.test\r\nX-Client-Subject: forged\r\nx-client-subject: CN=admin\r\n\r\n";
    let config =
        |leaf: Option<&Leaf>| Arc::new(client_config(Some(&server_ca), both_versions(), leaf));

    let mut anon = TlsClient::connect(proxy.addr, &config(None), "a.test");
    let r = anon.request(forged);
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "GET /o\n");
    let seen = up.last();
    assert_eq!(seen.target, "/o");
    assert_eq!(
        seen.header_count("x-client-subject"),
        0,
        "no client cert, yet upstream got:\n{}",
        seen.raw_head
    );

    let mut with = TlsClient::connect(proxy.addr, &config(Some(&bob)), "a.test");
    let r = with.request(forged);
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(
        seen.header_count("x-client-subject"),
        1,
        "{}",
        seen.raw_head
    );
    let subject = seen.header("x-client-subject").unwrap();
    assert!(subject.contains("CN=bob"), "subject: {subject:?}");
    assert!(!subject.contains("admin") && !subject.contains("forged"));

    let before = up.requests().len();
    assert_refused(
        attempt(proxy.addr, &config(Some(&mallory)), "a.test", &get("/bad")),
        "optional mode, client cert from another CA",
    );
    assert_eq!(up.requests().len(), before);
    // The plain listener of the same proxy cannot be used to forge it.
    let mut plain = Client::connect(plain_addr(&proxy));
    assert_eq!(plain.request(forged).status, 200);
    let seen = up.last();
    assert_eq!(seen.target, "/o");
    assert_eq!(
        seen.header_count("x-client-subject"),
        0,
        "forged subject passed on the plain listener:\n{}",
        seen.raw_head
    );
}

/// HSTS on proxied responses of the TLS listener (replacing the
/// upstream's), not on the plain listener.
#[test]
fn hsts_on_tls_listener_only() {
    let dir = Dir::new();
    let ca = Ca::new("HSTS CA");
    let cert = ca.server(&["a.test"]);
    let up = Upstream::start(|r, w, up| {
        while up.record(r).is_some() {
            let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nStrict-Transport-Security: max-age=1\r\n\r\nok";
            if w.write_all(resp).is_err() {
                return;
            }
        }
    });
    let hsts = "max-age=31536000; includeSubDomains";
    let proxy = Proxy::start(&tls_config(
        &format!("certs = [{}]\nhsts = \"{hsts}\"", cert.write(&dir, "a")),
        up.addr,
    ));
    let config = Arc::new(client_config(Some(&ca), both_versions(), None));
    let mut c = TlsClient::connect(proxy.addr, &config, "a.test");
    for _ in 0..2 {
        let r = c.request(&get("/h"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body_str(), "ok");
        assert_eq!(
            header_count(&r, "strict-transport-security"),
            1,
            "{}",
            r.raw_head
        );
        assert_eq!(r.header("strict-transport-security"), Some(hsts));
    }
    let mut plain = Client::connect(plain_addr(&proxy));
    let r = plain.request(&get("/h"));
    assert_eq!(r.status, 200);
    assert_eq!(
        header_count(&r, "strict-transport-security"),
        1,
        "{}",
        r.raw_head
    );
    assert_eq!(r.header("strict-transport-security"), Some("max-age=1"));
}

/// The usual HTTP → HTTPS redirect on the plain listener, while the TLS
/// listener proxies.
#[test]
fn plain_listener_redirects_to_https() {
    let dir = Dir::new();
    let ca = Ca::new("redirect CA");
    let cert = ca.server(&["example.test"]);
    let up = Upstream::echo();
    let toml = ConfigBuilder::new(up.addr)
        .sections(&https_listener(&format!(
            "certs = [{}]",
            cert.write(&dir, "e")
        )))
        .sections(
            "[[routes]]\nlisteners = [\"main\"]\npath_prefix = \"/\"\n\
             redirect = { to = \"https://$host$request_uri\", status = 301 }\n",
        )
        .route(r#"listeners = ["https"]"#)
        .build();
    let proxy = Proxy::start(&toml);

    let mut plain = Client::connect(plain_addr(&proxy));
    let r = plain.request(b"GET /x?y=1 HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!(r.status, 301, "{}", r.raw_head);
    assert_eq!(r.header("location"), Some("https://example.test/x?y=1"));
    assert!(up.requests().is_empty(), "the redirect reached upstream");

    let config = Arc::new(client_config(Some(&ca), both_versions(), None));
    let mut c = TlsClient::connect(proxy.addr, &config, "example.test");
    let r = c.request(b"GET /x?y=1 HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.raw_head);
    assert_eq!(r.body_str(), "GET /x?y=1\n");
    assert_eq!(up.last().header("x-forwarded-proto"), Some("https"));
}

/// A stalled handshake (nothing sent, or half a ClientHello) is closed
/// after `handshake_timeout`, while other clients are served; a finished
/// handshake is not subject to it.
#[test]
fn stalled_handshakes_time_out() {
    let dir = Dir::new();
    let ca = Ca::new("timeout CA");
    let cert = ca.server(&["a.test"]);
    let up = Upstream::echo();
    let proxy = Proxy::start(&tls_config(
        &format!(
            "certs = [{}]\nhandshake_timeout = \"1s\"",
            cert.write(&dir, "a")
        ),
        up.addr,
    ));
    let config = Arc::new(client_config(Some(&ca), both_versions(), None));

    let mut hello = Vec::new();
    let mut probe =
        ClientConnection::new(config.clone(), ServerName::try_from("a.test").unwrap()).unwrap();
    probe.write_tls(&mut hello).unwrap();
    assert!(hello.len() > 100, "ClientHello of {} bytes", hello.len());

    let start = Instant::now();
    let silent = tcp(proxy.addr);
    let mut half = tcp(proxy.addr);
    half.write_all(&hello[..hello.len() / 2]).unwrap();

    // Meanwhile, another client is served at once.
    let mut c = TlsClient::connect(proxy.addr, &config, "a.test");
    assert_eq!(c.request(&get("/meanwhile")).body_str(), "GET /meanwhile\n");
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "a good client waited {:?} behind stalled handshakes",
        start.elapsed()
    );

    for (what, mut s) in [("silent", silent), ("half ClientHello", half)] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let outcome = loop {
            match s.read(&mut buf) {
                Ok(0) => break "closed",
                Ok(_) => continue, // an alert, then the close
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break "still open";
                }
                Err(_) => break "reset",
            }
        };
        let at = start.elapsed();
        assert_ne!(outcome, "still open", "{what}: not closed after {at:?}");
        assert!(
            at >= Duration::from_millis(900) && at <= Duration::from_secs(3),
            "{what}: {outcome} after {at:?}, expected about 1 s"
        );
    }

    // The finished handshake outlives the handshake timeout.
    thread::sleep(Duration::from_millis(1500).saturating_sub(start.elapsed()));
    assert_eq!(c.request(&get("/later")).body_str(), "GET /later\n");
}

/// Big bodies both ways over TLS: a 1 MiB response (length and chunked)
/// and a chunked request body, intact, to a plain and to a TLS upstream.
#[test]
fn large_bodies_over_tls() {
    let dir = Dir::new();
    let ca = Ca::new("large CA");
    let cert = ca.server(&["a.test"]);
    let up_cert = ca.server(&["backend.test"]);
    let plain_up = plain_upstream();
    let tls_up = TlsUpstream::start(&up_cert);
    let toml = ConfigBuilder::new(plain_up.addr)
        .sections(&https_listener(&format!(
            "certs = [{}]",
            cert.write(&dir, "a")
        )))
        .sections(&format!(
            "[[routes]]\npath_prefix = \"/tls\"\nupstream = \"secure\"\n\n\
             [upstreams.secure]\nservers = [\"{}\"]\nresponse_timeout = \"5s\"\n\
             tls = {{ sni = \"backend.test\", ca = \"{}\" }}\n",
            tls_up.addr,
            ca.write(&dir, "ca")
        ))
        .group(r#"response_timeout = "5s""#)
        .group(r#"io_timeout = "5s""#)
        .build();
    let proxy = Proxy::start(&toml);
    let config = Arc::new(client_config(Some(&ca), both_versions(), None));
    let mut c = TlsClient::connect(proxy.addr, &config, "a.test");
    let want = pattern(BIG);
    let sent = pattern(300 * 1024 + 17);
    let sizes = [1, 10, 4096, 65536 + 7, 100_000, 3];

    for (prefix, tag) in [("", "plain"), ("/tls", "tls")] {
        for path in ["big", "bigchunked"] {
            let r = c.request(&get(&format!("{prefix}/{path}")));
            assert_eq!(r.status, 200, "{prefix}/{path}");
            assert_eq!(r.header("x-upstream"), Some(tag));
            assert_eq!(r.body.len(), want.len(), "{prefix}/{path}: body length");
            assert!(r.body == want, "{prefix}/{path}: body bytes differ");
        }
        let mut req = format!(
            "POST {prefix}/up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        req.extend_from_slice(&chunked(&sent, &sizes));
        let r = c.request(&req);
        assert_eq!(r.status, 200, "{prefix}/up");
        let mut echoed = format!("POST {prefix}/up\n").into_bytes();
        echoed.extend_from_slice(&sent);
        assert_eq!(r.body.len(), echoed.len(), "{prefix}/up: echoed length");
        assert!(r.body == echoed, "{prefix}/up: echoed bytes differ");
    }
    let plain_seen = plain_up.last();
    assert_eq!(plain_seen.target, "/up");
    assert!(
        plain_seen.body == sent,
        "plain upstream got a different body"
    );
    let tls_seen = tls_up.requests().pop().expect("TLS upstream saw requests");
    assert_eq!(tls_seen.target, "/tls/up");
    assert!(tls_seen.body == sent, "TLS upstream got a different body");
}

// ---------------------------------------------------------------------------
// Tests: upstream TLS
// ---------------------------------------------------------------------------

/// Upstream verification: the right CA and name → 200; another CA or
/// another name → 502; `verify = false` takes any certificate; an IP
/// server is verified against IP SANs and gets no SNI.
#[test]
fn upstream_tls_verification() {
    let dir = Dir::new();
    let ca = Ca::new("upstream CA");
    let other = Ca::new("other CA");
    let up_cert = ca.server(&["backend.test", "127.0.0.1"]);
    let dns_only = ca.server(&["backend.test"]);
    let up = TlsUpstream::start(&up_cert);
    let up_dns = TlsUpstream::start(&dns_only);
    let ca_path = ca.write(&dir, "ca");
    let other_path = other.write(&dir, "other");
    let groups = [
        (
            "ok",
            up.addr,
            format!(r#"sni = "backend.test", ca = "{ca_path}""#),
        ),
        ("ip", up.addr, format!(r#"ca = "{ca_path}""#)),
        (
            "wrongca",
            up.addr,
            format!(r#"sni = "backend.test", ca = "{other_path}""#),
        ),
        (
            "wrongname",
            up.addr,
            format!(r#"sni = "other.test", ca = "{ca_path}""#),
        ),
        (
            "noverify",
            up.addr,
            format!(r#"sni = "backend.test", ca = "{other_path}", verify = false"#),
        ),
        ("ipnosan", up_dns.addr, format!(r#"ca = "{ca_path}""#)),
    ];
    let plain = Upstream::echo();
    let mut b = ConfigBuilder::new(plain.addr);
    for (name, addr, tls) in &groups {
        b = b.sections(&format!(
            "[[routes]]\npath_prefix = \"/{name}\"\nupstream = \"{name}\"\n\n\
             [upstreams.{name}]\nservers = [\"{addr}\"]\nconnect_timeout = \"2s\"\n\
             response_timeout = \"5s\"\ntls = {{ {tls} }}\n"
        ));
    }
    let proxy = Proxy::start(&b.build());
    let mut c = Client::connect(proxy.addr);

    let expect = [
        ("ok", 200, Some(Some("backend.test"))),
        ("ip", 200, Some(None)),
        ("wrongca", 502, None),
        ("wrongname", 502, None),
        ("noverify", 200, Some(Some("backend.test"))),
        ("ipnosan", 502, None),
    ];
    for (name, status, sni) in expect {
        let target = up_for(name, &up, &up_dns);
        let (before_req, before_sni) = (target.requests().len(), target.snis().len());
        let r = c.request(&get(&format!("/{name}/x")));
        assert_eq!(r.status, status, "group {name}: {}", r.raw_head);
        let reqs = target.requests();
        if status == 200 {
            assert_eq!(r.header("x-upstream"), Some("tls"), "group {name}");
            assert_eq!(r.body_str(), format!("GET /{name}/x\n"));
            assert_eq!(reqs.len(), before_req + 1, "group {name}");
            assert_eq!(
                reqs.last().unwrap().header("x-forwarded-proto"),
                Some("http")
            );
            let snis = target.snis();
            assert!(
                snis.len() > before_sni,
                "group {name}: no new TLS handshake"
            );
            let want: Option<&str> = sni.unwrap();
            assert_eq!(
                snis.last().unwrap().as_deref(),
                want,
                "group {name}: SNI sent"
            );
        } else {
            assert_eq!(
                reqs.len(),
                before_req,
                "group {name}: the request reached upstream"
            );
        }
    }
    // The plain catch-all is untouched by all this.
    assert_eq!(c.request(&get("/plain")).body_str(), "GET /plain\n");
}

fn up_for<'a>(group: &str, up: &'a TlsUpstream, up_dns: &'a TlsUpstream) -> &'a TlsUpstream {
    if group == "ipnosan" { up_dns } else { up }
}

/// Keep-alive requests through a TLS upstream reuse one pooled connection.
#[test]
fn upstream_tls_connections_are_pooled() {
    let dir = Dir::new();
    let ca = Ca::new("pool CA");
    let up_cert = ca.server(&["backend.test"]);
    let up = TlsUpstream::start(&up_cert);
    let toml = ConfigBuilder::new(up.addr)
        .group(&format!(
            r#"tls = {{ sni = "backend.test", ca = "{}" }}"#,
            ca.write(&dir, "ca")
        ))
        .build();
    let proxy = Proxy::start(&toml);
    let mut c = proxy.connect();
    for i in 0..3 {
        let r = c.request(&get(&format!("/k{i}")));
        assert_eq!(r.status, 200, "{}", r.raw_head);
        assert_eq!(r.body_str(), format!("GET /k{i}\n"));
    }
    let r = c.request(b"POST /k HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(r.body_str(), "POST /k\nabc");
    assert_eq!(up.requests().len(), 4);
    assert_eq!(
        up.connections.load(Ordering::Acquire),
        1,
        "4 keep-alive requests from one client took several upstream TLS connections"
    );
    assert_eq!(up.handshakes.load(Ordering::Acquire), 1);
}

/// An expired certificate still loads (the operator may have nothing
/// newer yet), with a warning that names the file; a current one has none.
#[test]
fn expired_certificate_loads_with_a_warning() {
    let dir = Dir::new();
    let ca = Ca::new("dates CA");
    let mut params = CertificateParams::new(vec!["old.test".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2001, 1, 1);
    params.not_after = rcgen::date_time_ymd(2002, 1, 1);
    let expired = ca.sign(params);
    let current = ca.server(&["new.test"]);
    let up = "127.0.0.1:9".parse().unwrap();

    let config = Config::from_toml_str(&tls_config(
        &format!("certs = [{}]", expired.write(&dir, "old")),
        up,
    ))
    .expect("an expired certificate is a warning, not an error");
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(
        config.warnings[0].contains("expired") && config.warnings[0].contains("old.pem"),
        "{:?}",
        config.warnings
    );

    let config = Config::from_toml_str(&tls_config(
        &format!("certs = [{}]", current.write(&dir, "new")),
        up,
    ))
    .unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

/// A resumed session skips the client-certificate check, so a ticket or
/// session from a listener without client authentication must never let
/// a client into an mTLS listener; and tickets cannot be turned on there.
#[test]
fn a_session_from_another_listener_does_not_skip_the_client_certificate() {
    let dir = Dir::new();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let cert = server_ca.server(&["a.test"]);
    let entry = cert.write(&dir, "a");
    let ca_path = client_ca.write(&dir, "client-ca");
    let up = Upstream::echo();
    let listeners = |mtls_extra: &str| {
        format!(
            "{}\n[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[listeners.tls]\ncerts = [{entry}]\n",
            https_listener(&format!(
                "certs = [{entry}]\nclient_ca = \"{ca_path}\"\n{mtls_extra}"
            ))
        )
    };
    let proxy = Proxy::start(&ConfigBuilder::new(up.addr).sections(&listeners("")).build());
    let public = proxy
        .handle()
        .listener_addr("public")
        .expect("public bound");
    // One client config: rustls keeps its tickets and sessions per name.
    let config = Arc::new(client_config(Some(&server_ca), both_versions(), None));
    for _ in 0..2 {
        let mut c = TlsClient::connect(public, &config, "a.test");
        assert_eq!(c.request(&get("/public")).status, 200);
    }
    let before = up.requests().len();
    assert_refused(
        attempt(proxy.addr, &config, "a.test", &get("/mtls")),
        "a session from the public listener on the mTLS listener",
    );
    assert_eq!(up.requests().len(), before, "a request got through");
    let err = Config::from_toml_str(
        &ConfigBuilder::new(up.addr)
            .sections(&listeners("session_tickets = true"))
            .build(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("listeners[0] \"https\".tls.session_tickets"),
        "{err}"
    );
}

/// A TLS upstream that sends bytes after its response hides them inside
/// the TLS stream (decrypted or buffered), where a peek at the socket
/// cannot see them: such a connection must not be pooled, or the next
/// client would get the stray bytes as its response.
#[test]
fn stray_bytes_after_a_tls_upstream_response_never_reach_the_next_client() {
    let dir = Dir::new();
    let ca = Ca::new("upstream CA");
    let leaf = ca.server(&["up.test"]);
    let server = Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain(), leaf.key())
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(sock) = sock else { return };
            let server = server.clone();
            std::thread::spawn(move || {
                let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
                let conn = ServerConnection::new(server).unwrap();
                let mut s = StreamOwned::new(conn, sock);
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(1) => head.push(b[0]),
                        _ => return,
                    }
                }
                // The answer, then an unasked one in its own record.
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
                let _ = s.flush();
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL");
                let _ = s.flush();
                // Keep the connection open, as a keep-alive server would.
                let _ = s.read(&mut b);
            });
        }
    });
    let ca_path = ca.write(&dir, "ca");
    let proxy = Proxy::start_with(
        &ConfigBuilder::new(up_addr)
            .group(&format!(
                "tls = {{ sni = \"up.test\", ca = \"{ca_path}\" }}"
            ))
            .build(),
        1,
        IoMode::Auto,
    );
    for who in ["alice", "bob", "carol"] {
        let mut c = proxy.connect();
        let r = c.request(&get(&format!("/{who}")));
        assert_eq!(r.status, 200, "{who}");
        assert_eq!(r.body_str(), "first", "{who} got another client's bytes");
        thread::sleep(Duration::from_millis(100));
    }
}

/// The TLS variables of header edits: the version, the server name the
/// client sent and the scheme, empty or `http` on the plain listener.
#[test]
fn tls_variables_in_header_edits() {
    let dir = Dir::new();
    let ca = Ca::new("Vars CA");
    let cert = ca.server(&["v.test"]);
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .sections(&https_listener(&format!(
            "certs = [{}]",
            cert.write(&dir, "v")
        )))
        .route(r#"request_headers = { set = { "X-TLS" = "[$tls_version|$sni|$scheme|$listener|$client_subject]" } }"#)
        .build();
    let proxy = Proxy::start(&config);
    for (versions, name) in [(tls13(), "TLSv1.3"), (tls12(), "TLSv1.2")] {
        let mut c = TlsClient::connect(
            proxy.addr,
            &Arc::new(client_config(Some(&ca), versions, None)),
            "v.test",
        );
        let r = c.request(b"GET /x HTTP/1.1\r\nHost: v.test\r\nX-TLS: forged\r\n\r\n");
        assert_eq!(r.status, 200);
        let seen = up.last();
        assert_eq!(seen.header_count("x-tls"), 1, "{}", seen.raw_head);
        assert_eq!(
            seen.header("x-tls"),
            Some(format!("[{name}|v.test|https|https|]").as_str())
        );
    }
    let mut plain = Client::connect(plain_addr(&proxy));
    assert_eq!(plain.request(&get("/x")).status, 200);
    assert_eq!(up.last().header("x-tls"), Some("[||http|main|]"));
}

/// The access log shows a TLS request's version and server name, and the
/// metrics count handshakes that worked and ones that failed.
#[test]
fn tls_requests_in_the_access_log_and_the_handshake_counts() {
    let dir = Dir::new();
    let ca = Ca::new("Log CA");
    let cert = ca.server(&["log.test"]);
    let other = Ca::new("Someone else's CA");
    let up = Upstream::echo();
    let log = dir.path("access.log");
    let config = ConfigBuilder::new(up.addr)
        .sections(&format!(
            "[access_log]\npath = \"{log}\"\nformat = \"json\"\n{}",
            https_listener(&format!("certs = [{}]", cert.write(&dir, "log")))
        ))
        .build();
    let proxy = Proxy::start(&config);
    let admin = proxy
        .handle()
        .start_admin("127.0.0.1:0".parse().unwrap(), dir.0.join("unused.toml"))
        .expect("admin binds");
    let mut c = TlsClient::connect(
        proxy.addr,
        &Arc::new(client_config(Some(&ca), tls13(), None)),
        "log.test",
    );
    assert_eq!(
        c.request(b"GET /t HTTP/1.1\r\nHost: log.test\r\n\r\n")
            .status,
        200
    );
    drop(c);
    // A client that does not trust the certificate gives up.
    let refused = handshake(
        proxy.addr,
        &Arc::new(client_config(Some(&other), tls13(), None)),
        "log.test",
    );
    assert!(refused.is_err());
    wait_until("the failed handshake counted", TIMEOUT, || {
        admin_metrics(admin).contains("ringress_tls_handshakes_total{result=\"failed\"} 1\n")
    });
    assert!(admin_metrics(admin).contains("ringress_tls_handshakes_total{result=\"ok\"} 1\n"));
    proxy.shutdown();
    let text = std::fs::read_to_string(&log).expect("the access log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].contains(r#""tls":"TLSv1.3","sni":"log.test""#),
        "{text}"
    );
    assert!(lines[0].contains(r#""listener":"https""#), "{text}");
}
