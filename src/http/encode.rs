//! Head rewriting in both directions (RFC 9110 §7.6): hop-by-hop fields
//! dropped, framing re-declared by us, X-Forwarded-* and Via added. Writes
//! into a caller-owned buffer; nothing here allocates once it is warm.

use std::io::Write;
use std::net::IpAddr;

use super::fields::{is_hop_by_hop, trim_ows};
use super::{Framing, RequestHead, ResponseHead, Version};

/// The `[forwarding]` switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardOptions {
    pub x_forwarded_for: bool,
    pub x_forwarded_proto: bool,
    pub x_forwarded_host: bool,
    pub via: bool,
    /// `X-Request-Id` sent upstream and back to the client (kept from a
    /// trusted peer, generated otherwise).
    pub request_id: bool,
    /// Request fields whose names hold `_` are passed upstream (off: left
    /// out, as nginx's `underscores_in_headers off`: CGI-style backends
    /// read `X_User` as `X-User`, so a client could forge an identity
    /// field that the stripping of `X-User` never saw).
    pub underscores_in_headers: bool,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        ForwardOptions {
            x_forwarded_for: true,
            x_forwarded_proto: true,
            x_forwarded_host: true,
            via: true,
            request_id: true,
            underscores_in_headers: false,
        }
    }
}

/// Origin hiding: response fields that would tell a client what runs
/// behind the proxy are left out, and ringress names itself instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginHiding {
    /// Lowercase names of the fields left out of every response.
    hidden: Vec<Box<[u8]>>,
    /// The whole `Server: ...\r\n` line sent instead of the upstream's
    /// (None: no `Server` field, or the upstream's passed on).
    server_line: Option<Box<[u8]>>,
}

/// Left out by default: what the origin's software and version are.
pub const HIDDEN_BY_DEFAULT: &[&str] = &["server", "x-powered-by", "x-aspnet-version"];

impl Default for OriginHiding {
    fn default() -> Self {
        OriginHiding::new(&[], &[], Some("ringress"))
    }
}

impl OriginHiding {
    /// `hide`: names left out besides the defaults; `pass`: names passed
    /// on after all; `server`: ringress's own `Server` value, used when
    /// the upstream's is left out (None or empty: none).
    pub fn new(hide: &[&str], pass: &[&str], server: Option<&str>) -> OriginHiding {
        let passed = |n: &str| pass.iter().any(|p| p.eq_ignore_ascii_case(n));
        let mut hidden: Vec<Box<[u8]>> = Vec::new();
        for name in HIDDEN_BY_DEFAULT
            .iter()
            .copied()
            .chain(hide.iter().copied())
        {
            let lower = name.to_ascii_lowercase().into_bytes().into_boxed_slice();
            if !passed(name) && !hidden.contains(&lower) {
                hidden.push(lower);
            }
        }
        let server_hidden = hidden.iter().any(|h| &**h == b"server");
        let server_line = server
            .filter(|s| !s.is_empty() && server_hidden)
            .map(|s| format!("Server: {s}\r\n").into_bytes().into_boxed_slice());
        OriginHiding {
            hidden,
            server_line,
        }
    }

    /// Whether a response field of this name is left out.
    pub fn hides(&self, name: &[u8]) -> bool {
        self.hidden
            .iter()
            .any(|h| h.len() == name.len() && name.eq_ignore_ascii_case(h))
    }

    /// Appends ringress's own `Server` line, if it sends one.
    pub fn append_server(&self, out: &mut Vec<u8>) {
        if let Some(line) = &self.server_line {
            out.extend_from_slice(line);
        }
    }
}

/// Header changes made on the way up or down, as the head encoders take
/// them: which incoming fields to drop, and what to append. The route's
/// filters implement it (see `pipeline`); `NO_EDITS` changes nothing.
pub trait FieldEdits {
    /// Whether an incoming field of this name is left out.
    fn drops(&self, name: &[u8]) -> bool;
    /// Appends whole `Name: value\r\n` lines.
    fn append(&self, out: &mut Vec<u8>);
}

/// Edits that may be absent (a route without filters).
impl<T: FieldEdits> FieldEdits for Option<T> {
    fn drops(&self, name: &[u8]) -> bool {
        self.as_ref().is_some_and(|e| e.drops(name))
    }

    fn append(&self, out: &mut Vec<u8>) {
        if let Some(e) = self {
            e.append(out);
        }
    }
}

/// No header changes.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEdits;

pub static NO_EDITS: NoEdits = NoEdits;

impl FieldEdits for NoEdits {
    fn drops(&self, _: &[u8]) -> bool {
        false
    }

    fn append(&self, _: &mut Vec<u8>) {}
}

/// What the proxy changes in a request on its way upstream.
pub struct UpstreamRequest<'a, E: FieldEdits = NoEdits> {
    /// Path after normalisation and rewriting (query appended from the request).
    pub path: &'a [u8],
    /// Host field value to send.
    pub host: &'a [u8],
    pub client_ip: IpAddr,
    pub proto: &'static str,
    /// Header names only the proxy may set (client-certificate subject
    /// headers): any copy the client sent is dropped, on every listener.
    pub reserved: &'a [Box<str>],
    /// The verified client-certificate subject to send: (name, value).
    pub client_cert: Option<(&'a [u8], &'a [u8])>,
    /// The route's request header changes.
    pub edits: &'a E,
}

const VIA_NAME: &[u8] = b"ringress";

/// Writes the request head sent upstream.
pub fn write_request_head<E: FieldEdits>(
    out: &mut Vec<u8>,
    req: &RequestHead<'_, '_>,
    up: &UpstreamRequest<'_, E>,
    fwd: &ForwardOptions,
) {
    out.extend_from_slice(req.method);
    out.push(b' ');
    out.extend_from_slice(up.path);
    out.extend_from_slice(req.query);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(up.host);
    out.extend_from_slice(b"\r\n");

    for h in req.headers {
        let name = h.name.as_bytes();
        let replaced = name.eq_ignore_ascii_case(b"host")
            || name.eq_ignore_ascii_case(b"expect")
            || (fwd.x_forwarded_for && name.eq_ignore_ascii_case(b"x-forwarded-for"))
            || (fwd.x_forwarded_proto && name.eq_ignore_ascii_case(b"x-forwarded-proto"))
            || (fwd.x_forwarded_host && name.eq_ignore_ascii_case(b"x-forwarded-host"))
            || (fwd.via && name.eq_ignore_ascii_case(b"via"))
            || up
                .reserved
                .iter()
                .any(|r| name.eq_ignore_ascii_case(r.as_bytes()))
            || up.edits.drops(name)
            || (!fwd.underscores_in_headers && name.contains(&b'_'));
        if replaced || is_hop_by_hop(name) || req.connection.names(name) {
            continue;
        }
        write_field(out, name, trim_ows(h.value));
    }

    write_framing(out, req.framing);
    if let Some(proto) = req.upgrade {
        out.extend_from_slice(b"Connection: upgrade\r\n");
        write_field(out, b"Upgrade", proto);
    }
    if fwd.x_forwarded_for {
        out.extend_from_slice(b"X-Forwarded-For: ");
        append_existing(out, req.headers, b"x-forwarded-for");
        write_ip(out, up.client_ip);
        out.extend_from_slice(b"\r\n");
    }
    if fwd.x_forwarded_proto {
        write_field(out, b"X-Forwarded-Proto", up.proto.as_bytes());
    }
    if fwd.x_forwarded_host && !req.authority.is_empty() {
        write_field(out, b"X-Forwarded-Host", req.authority);
    }
    if fwd.via {
        write_via(out, req.headers, req.version);
    }
    if let Some((name, subject)) = up.client_cert {
        write_field(out, name, subject);
    }
    up.edits.append(out);
    out.extend_from_slice(b"\r\n");
}

/// How the connection to the client continues after this response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionDirective {
    /// Persistent by default (1.1): say nothing.
    Default,
    /// A 1.0 client that asked for keep-alive.
    KeepAlive,
    Close,
    /// 101: the connection becomes a tunnel.
    Upgrade,
}

/// Writes the response head sent to the client. `body` is the framing we
/// send, which may differ from the upstream's (chunked for a 1.1 client
/// when the upstream delimits by close, close for a 1.0 client).
pub fn write_response_head(
    out: &mut Vec<u8>,
    resp: &ResponseHead<'_, '_>,
    body: Framing,
    connection: ConnectionDirective,
    via: bool,
) {
    let fields = ProxyFields {
        via,
        hsts: None,
        hiding: None,
    };
    write_response_head_with(out, resp, body, connection, &fields, &NO_EDITS);
}

/// What the proxy itself adds to or takes from every response head.
#[derive(Debug, Clone, Copy)]
pub struct ProxyFields<'a> {
    /// Add a `Via` field (and leave the upstream's out: it is extended).
    pub via: bool,
    /// A whole `Strict-Transport-Security` line (CRLF included) that
    /// replaces the upstream's own.
    pub hsts: Option<&'a [u8]>,
    /// Fields left out so the origin stays hidden, and ringress's `Server`.
    pub hiding: Option<&'a OriginHiding>,
}

/// `write_response_head`, with the proxy's own fields and `edits`.
pub fn write_response_head_with<E: FieldEdits>(
    out: &mut Vec<u8>,
    resp: &ResponseHead<'_, '_>,
    body: Framing,
    connection: ConnectionDirective,
    fields: &ProxyFields<'_>,
    edits: &E,
) {
    let (via, hsts, hiding) = (fields.via, fields.hsts, fields.hiding);
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut status = itoa::Buffer::new();
    out.extend_from_slice(status.format(resp.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(resp.reason);
    out.extend_from_slice(b"\r\n");
    let upgrade = connection == ConnectionDirective::Upgrade;
    for h in resp.headers {
        let name = h.name.as_bytes();
        let keep_upgrade = upgrade && name.eq_ignore_ascii_case(b"upgrade");
        let skip = is_hop_by_hop(name)
            || resp.connection.names(name)
            || (via && name.eq_ignore_ascii_case(b"via"))
            || (hsts.is_some() && name.eq_ignore_ascii_case(b"strict-transport-security"))
            || hiding.is_some_and(|h| h.hides(name))
            || edits.drops(name);
        if skip && !keep_upgrade {
            continue;
        }
        write_field(out, name, trim_ows(h.value));
    }
    match body {
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::Close => {}
        // RFC 9110 §8.6: never a Content-Length on 1xx or 204.
        Framing::Empty | Framing::Length(_) => {
            if let Some(n) = resp.content_length
                && resp.status >= 200
                && resp.status != 204
            {
                write_content_length(out, n);
            }
        }
    }
    match connection {
        ConnectionDirective::Default => {}
        ConnectionDirective::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        ConnectionDirective::Close => out.extend_from_slice(b"Connection: close\r\n"),
        ConnectionDirective::Upgrade => out.extend_from_slice(b"Connection: upgrade\r\n"),
    }
    if via {
        write_via(out, resp.headers, resp.version);
    }
    if let Some(line) = hsts {
        out.extend_from_slice(line);
    }
    // A route's `remove = ["Server"]` takes ours out too.
    if let Some(hiding) = hiding
        && !edits.drops(b"server")
    {
        hiding.append_server(out);
    }
    edits.append(out);
    out.extend_from_slice(b"\r\n");
}

/// A response head kept whole from an earlier response (a cache's stored
/// object): its field lines as they were stored.
pub struct StoredHead<'a> {
    pub status: u16,
    pub reason: &'a [u8],
    /// Hop-by-hop and framing fields already left out.
    pub fields: &'a FieldLines,
    /// The length of the body that follows (None: no body, as for a 304).
    pub length: Option<u64>,
}

/// Whole `Name: value\r\n` lines with the end of each name and of each
/// line found once, when they are made: a stored head is then written on
/// every hit without being scanned again (scanning it was a tenth of a
/// small cache hit's user-space instructions).
#[derive(Debug, Clone, Default)]
pub struct FieldLines {
    text: Box<[u8]>,
    /// Per line: where its name ends, where the line ends.
    ends: Box<[(u32, u32)]>,
}

impl FieldLines {
    /// Indexes `text`; a line without a colon is named by all of it.
    pub fn new(text: Vec<u8>) -> FieldLines {
        let mut ends = Vec::new();
        let mut at = 0;
        while at < text.len() {
            let rest = &text[at..];
            let len = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
            let name = memchr::memchr(b':', &rest[..len]).unwrap_or(len);
            ends.push(((at + name) as u32, (at + len) as u32));
            at += len;
        }
        FieldLines {
            text: text.into_boxed_slice(),
            ends: ends.into_boxed_slice(),
        }
    }

    /// All the lines, as one text.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Each line's name and the whole line, in order.
    pub fn lines(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut start = 0;
        self.ends.iter().map(move |&(name, end)| {
            let (name, end) = (name as usize, end as usize);
            let pair = (
                self.text.get(start..name).unwrap_or_default(),
                self.text.get(start..end).unwrap_or_default(),
            );
            start = end;
            pair
        })
    }

    /// Bytes held, index included.
    pub fn weight(&self) -> usize {
        self.text.len() + self.ends.len() * std::mem::size_of::<(u32, u32)>()
    }
}

/// Appends the field lines that `edits` keeps, each run of kept lines in
/// one copy.
fn write_kept_lines<E: FieldEdits>(out: &mut Vec<u8>, fields: &FieldLines, edits: &E) {
    let text = fields.text();
    let (mut kept_from, mut at) = (0, 0);
    for (name, line) in fields.lines() {
        if edits.drops(name) {
            out.extend_from_slice(text.get(kept_from..at).unwrap_or_default());
            kept_from = at + line.len();
        }
        at += line.len();
    }
    out.extend_from_slice(text.get(kept_from..).unwrap_or_default());
}

/// Writes a stored head as an HTTP/1.1 response head: status line, the
/// stored fields (less those `edits` drops), `Content-Length`, the
/// connection directive, then the edits' own lines.
pub fn write_stored_head<E: FieldEdits>(
    out: &mut Vec<u8>,
    head: &StoredHead<'_>,
    connection: ConnectionDirective,
    edits: &E,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(head.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.reason);
    out.extend_from_slice(b"\r\n");
    write_kept_lines(out, head.fields, edits);
    if let Some(n) = head.length {
        write_content_length(out, n);
    }
    match connection {
        ConnectionDirective::Default | ConnectionDirective::Upgrade => {}
        ConnectionDirective::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        ConnectionDirective::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    edits.append(out);
    out.extend_from_slice(b"\r\n");
}

fn write_framing(out: &mut Vec<u8>, framing: Framing) {
    match framing {
        Framing::Length(n) => write_content_length(out, n),
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::Empty | Framing::Close => {}
    }
}

pub fn write_content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes an address as `Display` would. IPv4, the common case, is written
/// octet by octet: going through `fmt` cost about 500 instructions per
/// request (callgrind).
#[inline]
pub fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            // Each octet's digits (and a dot after them) stored whole into
            // a stack buffer, then one copy: no per-digit work.
            let mut text = [0u8; 20];
            let mut len = 0;
            for octet in v4.octets() {
                let (digits, n) = OCTETS[octet as usize];
                text[len..len + 4].copy_from_slice(&digits);
                len += n as usize;
            }
            // Without the last octet's dot.
            out.extend_from_slice(&text[..len - 1]);
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Every octet's decimal digits followed by a dot, and how many bytes
/// that is.
static OCTETS: [([u8; 4], u8); 256] = octets();

const fn octets() -> [([u8; 4], u8); 256] {
    let mut table = [([0u8; 4], 0u8); 256];
    let mut n = 0;
    while n < 256 {
        let (h, t, u) = ((n / 100) as u8, (n / 10 % 10) as u8, (n % 10) as u8);
        table[n] = if n >= 100 {
            ([b'0' + h, b'0' + t, b'0' + u, b'.'], 4)
        } else if n >= 10 {
            ([b'0' + t, b'0' + u, b'.', 0], 3)
        } else {
            ([b'0' + u, b'.', 0, 0], 2)
        };
        n += 1;
    }
    table
}

/// Adds lines at the end of the head of a whole answer in `out` (head
/// and body), written by `write` and moved in place before the blank
/// line: no buffer of its own. Nothing happens without a complete head.
pub fn insert_head_lines(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let Some(end) = memchr::memmem::find(out, b"\r\n\r\n") else {
        return;
    };
    let len = out.len();
    write(out);
    let added = out.len() - len;
    out[end + 2..].rotate_right(added);
}

pub fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends every existing value of `name`, each followed by ", ", so the
/// proxy's own entry goes last on one line.
fn append_existing(out: &mut Vec<u8>, headers: &[httparse::Header<'_>], name: &[u8]) {
    for h in headers
        .iter()
        .filter(|h| h.name.as_bytes().eq_ignore_ascii_case(name))
    {
        let value = trim_ows(h.value);
        if !value.is_empty() {
            out.extend_from_slice(value);
            out.extend_from_slice(b", ");
        }
    }
}

fn write_via(out: &mut Vec<u8>, headers: &[httparse::Header<'_>], received: Version) {
    out.extend_from_slice(b"Via: ");
    append_existing(out, headers, b"via");
    out.extend_from_slice(received.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(VIA_NAME);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HeadLimits, empty_headers, parse_request, parse_response};

    /// Drops the names listed, case-insensitively.
    struct DropNames(&'static [&'static str]);

    impl FieldEdits for DropNames {
        fn drops(&self, name: &[u8]) -> bool {
            self.0
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
        }
        fn append(&self, _: &mut Vec<u8>) {}
    }

    #[test]
    fn kept_lines_are_the_lines_not_dropped_in_order() {
        let fields = "A: 1\r\nServer: x\r\nB: 2\r\nC: 3\r\nserver: y\r\nD: 4\r\n";
        let cases: [(&[&str], &str); 6] = [
            (&[], fields),
            (&["server"], "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n"),
            (&["a"], "Server: x\r\nB: 2\r\nC: 3\r\nserver: y\r\nD: 4\r\n"),
            (&["d", "c"], "A: 1\r\nServer: x\r\nB: 2\r\nserver: y\r\n"),
            (&["a", "server", "b", "c", "d"], ""),
            // A name is the text before the first colon, never a prefix.
            (&["serv", "b: 2"], fields),
        ];
        for (drop, want) in cases {
            let mut out = b"HEAD\r\n".to_vec();
            let lines = FieldLines::new(fields.as_bytes().to_vec());
            write_kept_lines(&mut out, &lines, &DropNames(drop));
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("HEAD\r\n{want}"),
                "{drop:?}"
            );
        }
        // No fields; a last line without its newline; a line with no colon
        // is named by all of it, its line end too (stored heads have none).
        let kept = |text: &[u8], drop| {
            let mut out = Vec::new();
            write_kept_lines(&mut out, &FieldLines::new(text.to_vec()), &DropNames(drop));
            out
        };
        assert!(kept(b"", &["a"]).is_empty());
        assert_eq!(kept(b"A: 1\r\nB: 2", &["a"]), b"B: 2");
        assert_eq!(kept(b"junk\nA: 1\n", &["junk", "a"]), b"junk\n");
        let lines = FieldLines::new(b"A: 1\r\nBee:2\r\nno colon\r\n".to_vec());
        let names: Vec<_> = lines.lines().map(|(n, _)| n).collect();
        assert_eq!(names, [&b"A"[..], b"Bee", b"no colon\r\n"]);
        assert_eq!(lines.weight(), 23 + 3 * 8);
    }

    #[test]
    fn request_rewrite() {
        let raw = b"POST /p?q=1 HTTP/1.1\r\nHost: shop.example\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-For: 1.2.3.4\r\nVia: 1.0 edge\r\nX-Forwarded-Proto: https\r\nContent-Length: 3\r\nX-App: yes\r\n\r\n";
        let mut h = empty_headers();
        let req = parse_request(raw, &mut h, &HeadLimits::default())
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        let up = UpstreamRequest {
            path: b"/p",
            host: b"shop.example",
            client_ip: "127.0.0.1".parse().unwrap(),
            proto: "http",
            reserved: &[],
            client_cert: None,
            edits: &NO_EDITS,
        };
        write_request_head(&mut out, &req, &up, &ForwardOptions::default());
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "POST /p?q=1 HTTP/1.1\r\nHost: shop.example\r\nX-App: yes\r\nContent-Length: 3\r\n\
             X-Forwarded-For: 1.2.3.4, 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\
             X-Forwarded-Host: shop.example\r\nVia: 1.0 edge, 1.1 ringress\r\n\r\n"
        );
    }

    #[test]
    fn response_rewrite() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: X-Up\r\nX-Up: 1\r\nTransfer-Encoding: chunked\r\nServer: app\r\n\r\n";
        let mut h = empty_headers();
        let resp = parse_response(raw, &mut h, 8192, false).unwrap().unwrap();
        let mut out = Vec::new();
        write_response_head(
            &mut out,
            &resp,
            Framing::Close,
            ConnectionDirective::Close,
            false,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nServer: app\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "10.1.22.133",
            "192.0.2.9",
            "0.0.0.0",
            "255.255.255.255",
            "10.100.9.200",
            "::1",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            let mut out = b"x".to_vec();
            write_ip(&mut out, ip);
            assert_eq!(out, format!("x{ip}").into_bytes(), "{text}");
        }
    }
}
