//! Access log lines: nginx's `combined` format or one JSON object per
//! line, written from a request's record into the worker's buffer with
//! no allocation.

use std::net::SocketAddr;
use std::time::SystemTime;

use super::clock::LogClock;
use crate::config::AccessFormat;
use crate::http::encode::write_ip;
use crate::pipeline::{CacheResult, Exit, Record};

/// The status logged for a request the client left before it had one
/// (nginx's 499).
pub const CLIENT_CLOSED: u16 = 499;

/// What a line shows beyond the record.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub now: SystemTime,
    /// From the request's first byte to now.
    pub duration: std::time::Duration,
    /// The route's name; None when no route matched.
    pub route: Option<&'a str>,
    pub listener: &'a str,
    /// `HTTP/1.1`; None when the head could not be parsed.
    pub proto: Option<&'static str>,
    /// The upstream server's address.
    pub upstream: Option<SocketAddr>,
    /// TLS version and server name, on TLS connections.
    pub tls: Option<&'static str>,
    pub sni: Option<&'a [u8]>,
    /// A rate limit in log mode that would have refused the request.
    pub rate_limit_logged: Option<&'a str>,
    /// The filter rule that refused the request, else the first that
    /// matched it.
    pub filter: Option<&'a str>,
}

/// The status a line and the metrics show.
pub fn logged_status(record: &Record) -> u16 {
    match (record.status, record.exit) {
        (0, Exit::ClientGone) => CLIENT_CLOSED,
        (status, _) => status,
    }
}

pub fn write_line(
    out: &mut Vec<u8>,
    clock: &mut LogClock,
    format: AccessFormat,
    r: &Record,
    cx: &Context<'_>,
) {
    match format {
        AccessFormat::Combined => combined(out, clock, r, cx),
        AccessFormat::Json => json(out, clock, r, cx),
    }
    out.push(b'\n');
}

fn num(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Milliseconds with three decimals.
fn millis(out: &mut Vec<u8>, d: std::time::Duration) {
    let us = d.as_micros() as u64;
    num(out, us / 1000);
    let frac = us % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// `$remote_addr - - [$time_local] "$request" $status $bytes_sent
/// "$http_referer" "$http_user_agent"`.
fn combined(out: &mut Vec<u8>, clock: &mut LogClock, r: &Record, cx: &Context<'_>) {
    write_ip(out, r.client_ip);
    out.extend_from_slice(b" - - [");
    clock.write_clf(cx.now, out);
    out.extend_from_slice(b"] \"");
    if r.text.method().is_empty() {
        out.push(b'-');
    } else {
        clf_escape(out, r.text.method());
        out.push(b' ');
        clf_escape(out, r.text.target());
        out.push(b' ');
        out.extend_from_slice(cx.proto.unwrap_or("-").as_bytes());
    }
    out.extend_from_slice(b"\" ");
    num(out, logged_status(r));
    out.push(b' ');
    num(out, r.bytes_out);
    for field in [r.text.referer(), r.text.user_agent()] {
        out.extend_from_slice(b" \"");
        match field {
            Some(v) => clf_escape(out, v),
            None => out.push(b'-'),
        }
        out.push(b'"');
    }
}

/// Quotes, backslashes and bytes outside printable ASCII as `\xHH`, as
/// nginx escapes its log variables.
fn clf_escape(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        } else {
            out.push(b);
        }
    }
}

/// A key with its separators, written in one piece (`,"name":`).
fn key(out: &mut Vec<u8>, with_separators: &[u8]) {
    out.extend_from_slice(with_separators);
}

fn string_or_null(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => json_string(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// A value known to need no escape, quoted.
fn raw_or_null(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => {
            out.push(b'"');
            out.extend_from_slice(v);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn json(out: &mut Vec<u8>, clock: &mut LogClock, r: &Record, cx: &Context<'_>) {
    // Room for a typical line: the pieces below then never grow it.
    out.reserve(768);
    out.extend_from_slice(b"{\"time\":\"");
    clock.write_rfc3339(cx.now, out);
    key(out, b"\",\"client\":\"");
    write_ip(out, r.client_ip);
    out.push(b'"');
    let parsed = !r.text.method().is_empty();
    key(out, b",\"method\":");
    // A method is a token (no quote, backslash or control byte).
    raw_or_null(out, parsed.then(|| r.text.method()));
    key(out, b",\"target\":");
    string_or_null(out, parsed.then(|| r.text.target()));
    key(out, b",\"proto\":");
    // The values from here on that are our own names need no escape.
    raw_or_null(out, cx.proto.filter(|_| parsed).map(str::as_bytes));
    key(out, b",\"status\":");
    num(out, logged_status(r));
    key(out, b",\"bytes_in\":");
    num(out, r.bytes_in);
    key(out, b",\"bytes_out\":");
    num(out, r.bytes_out);
    key(out, b",\"duration_ms\":");
    millis(out, cx.duration);
    key(out, b",\"upstream\":");
    match cx.upstream {
        Some(addr) => {
            out.push(b'"');
            write_ip(out, addr.ip());
            out.push(b':');
            num(out, addr.port());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    key(out, b",\"upstream_ms\":");
    match r.upstream_time {
        Some(d) => millis(out, d),
        None => out.extend_from_slice(b"null"),
    }
    key(out, b",\"route\":");
    string_or_null(out, cx.route.map(str::as_bytes));
    key(out, b",\"listener\":");
    json_string(out, cx.listener.as_bytes());
    key(out, b",\"tls\":");
    raw_or_null(out, cx.tls.map(str::as_bytes));
    key(out, b",\"sni\":");
    string_or_null(out, cx.sni);
    key(out, b",\"user_agent\":");
    string_or_null(out, r.text.user_agent());
    key(out, b",\"referer\":");
    string_or_null(out, r.text.referer());
    key(out, b",\"request_id\":");
    // Ours are hex; a peer's passed `valid_request_id`.
    let id = r.text.request_id();
    raw_or_null(out, (!id.is_empty()).then_some(id));
    key(out, b",\"generation\":");
    num(out, r.generation);
    key(out, b",\"retries\":");
    num(out, r.retries);
    key(out, b",\"exit\":");
    raw_or_null(out, Some(r.exit.name().as_bytes()));
    key(out, b",\"reason\":");
    raw_or_null(out, r.cause.map(|c| c.kind.name().as_bytes()));
    if r.cache != CacheResult::None {
        key(out, b",\"cache\":");
        raw_or_null(out, Some(r.cache.name().as_bytes()));
    }
    if let Some(limit) = cx.rate_limit_logged {
        key(out, b",\"rate_limit_logged\":");
        json_string(out, limit.as_bytes());
    }
    key(out, b",\"filter\":");
    string_or_null(out, cx.filter.map(str::as_bytes));
    out.push(b'}');
}

/// A JSON string. Bytes that are not UTF-8 are written as the code
/// points of the same value (Latin-1), so every line stays valid JSON.
pub fn json_string(out: &mut Vec<u8>, v: &[u8]) {
    out.push(b'"');
    // Most values need no escape: checked eight bytes at a time, then
    // copied whole.
    if plain(v) {
        out.extend_from_slice(v);
        out.push(b'"');
        return;
    }
    let utf8 = std::str::from_utf8(v).is_ok();
    for &b in v {
        match escape(b) {
            Some((e, n)) => out.extend_from_slice(&e[..n]),
            None if b >= 0x80 && !utf8 => out.extend_from_slice(&unicode_escape(b)),
            None => out.push(b),
        }
    }
    out.push(b'"');
}

/// A JSON string of text already known to be UTF-8, into a `String`
/// (the admin answers and the dashboard's JSON), escaped as
/// `json_string` escapes.
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        // Escapes are only ever for ASCII bytes, so `i` is a char boundary.
        if let Some((e, n)) = escape(b) {
            out.push_str(&s[run..i]);
            e[..n].iter().for_each(|&c| out.push(char::from(c)));
            run = i + 1;
        }
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// How an ASCII byte is written inside a JSON string when not as itself
/// (bytes and length).
fn escape(b: u8) -> Option<([u8; 6], usize)> {
    let short = |c: u8| Some(([b'\\', c, 0, 0, 0, 0], 2));
    match b {
        b'"' => short(b'"'),
        b'\\' => short(b'\\'),
        b'\n' => short(b'n'),
        b'\r' => short(b'r'),
        b'\t' => short(b't'),
        0..0x20 | 0x7f => Some((unicode_escape(b), 6)),
        _ => None,
    }
}

/// Whether `v` is printable ASCII without `"` or a backslash (nothing
/// to escape).
fn plain(v: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` equal to 0 sets its high bit in `zero(x)`.
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut chunks = v.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // Bytes below 0x20; at or above 0x7f; '"'; the backslash.
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let high = (x.wrapping_add(ONES) | x) & HIGH;
        if control | high | zero(x ^ (ONES * 0x22)) | zero(x ^ (ONES * 0x5c)) != 0 {
            return false;
        }
    }
    chunks
        .remainder()
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// `\u00XX` for byte `b`.
fn unicode_escape(b: u8) -> [u8; 6] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    [
        b'\\',
        b'u',
        b'0',
        b'0',
        HEX[(b >> 4) as usize],
        HEX[(b & 15) as usize],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, ProxyError};
    use crate::http::{HeadLimits, empty_headers, parse_request};
    use std::time::{Duration, Instant, UNIX_EPOCH};

    fn record() -> Record {
        let raw = b"GET /a?q=\"x\" HTTP/1.1\r\nHost: h\r\nUser-Agent: t\xe9st\r\n\r\n";
        let mut headers = empty_headers();
        let req = parse_request(raw, &mut headers, &HeadLimits::default())
            .unwrap()
            .unwrap();
        let mut r = Record::new("192.0.2.1:4000".parse().unwrap(), 1, Instant::now());
        r.reset(Instant::now(), 3, 0, 1);
        r.text.capture(&req);
        r.text.set_request_id(None, |o| o.extend_from_slice(b"id1"));
        r.status = 200;
        r.bytes_in = 50;
        r.bytes_out = 120;
        r.route = Some(0);
        r.upstream_time = Some(Duration::from_micros(1500));
        r.exit = Exit::Proxied;
        r
    }

    fn cx() -> Context<'static> {
        Context {
            now: UNIX_EPOCH + Duration::from_millis(1_796_600_308_123),
            duration: Duration::from_micros(2345),
            route: Some("api"),
            listener: "main",
            proto: Some("HTTP/1.1"),
            upstream: Some("127.0.0.1:9000".parse().unwrap()),
            tls: None,
            sni: None,
            rate_limit_logged: None,
            filter: None,
        }
    }

    fn line(format: AccessFormat, r: &Record, cx: &Context<'_>) -> String {
        let mut out = Vec::new();
        write_line(&mut out, &mut LogClock::default(), format, r, cx);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn combined_as_nginx_writes_it() {
        assert_eq!(
            line(AccessFormat::Combined, &record(), &cx()),
            "192.0.2.1 - - [06/Dec/2026:23:38:28 +0000] \"GET /a?q=\\x22x\\x22 HTTP/1.1\" \
             200 120 \"-\" \"t\\xE9st\"\n"
        );
    }

    #[test]
    fn json_line_is_one_valid_object() {
        let text = line(AccessFormat::Json, &record(), &cx());
        assert!(text.ends_with("}\n") && text.matches('\n').count() == 1);
        for part in [
            r#"{"time":"2026-12-06T23:38:28.123Z","client":"192.0.2.1","method":"GET""#,
            r#""target":"/a?q=\"x\"","proto":"HTTP/1.1","status":200"#,
            r#""bytes_in":50,"bytes_out":120,"duration_ms":"#,
            r#""upstream":"127.0.0.1:9000","upstream_ms":1.500,"route":"api","listener":"main""#,
            r#""tls":null,"sni":null,"user_agent":"t\u00e9st","referer":null"#,
            r#""request_id":"id1","generation":3,"retries":0,"exit":"proxied","reason":null,"filter":null}"#,
        ] {
            assert!(text.contains(part), "{part} not in {text}");
        }
    }

    #[test]
    fn unparsed_requests_and_gone_clients() {
        let mut r = Record::new("[2001:db8::1]:4000".parse().unwrap(), 1, Instant::now());
        r.fail(ProxyError::downstream(ErrorKind::BadRequest));
        r.status = 400;
        let cx = Context {
            route: None,
            proto: None,
            upstream: None,
            ..cx()
        };
        let text = line(AccessFormat::Json, &r, &cx);
        assert!(text.contains(r#""client":"2001:db8::1","method":null,"target":null"#));
        assert!(
            text.contains(r#""exit":"rejected","reason":"bad_request""#),
            "{text}"
        );
        let text = line(AccessFormat::Combined, &r, &cx);
        assert!(text.contains("\"-\" 400 0"), "{text}");
        r.fail(ProxyError::downstream(ErrorKind::ClientGone));
        r.status = 0;
        assert_eq!(logged_status(&r), CLIENT_CLOSED);
    }

    #[test]
    fn plain_finds_every_byte_that_needs_an_escape() {
        for len in [1, 7, 8, 9, 16, 23] {
            for pos in 0..len {
                for b in 0..=255u8 {
                    let mut v = vec![b'a'; len];
                    v[pos] = b;
                    let expect = (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
                    assert_eq!(plain(&v), expect, "byte {b:#x} at {pos} of {len}");
                }
            }
        }
        assert!(plain(b""));
    }

    #[test]
    fn text_and_bytes_are_escaped_alike() {
        for text in ["plain", "a\"b\\c\n\u{1}\u{7f}", "é and \t"] {
            let mut bytes = Vec::new();
            json_string(&mut bytes, text.as_bytes());
            let mut out = String::new();
            json_str(&mut out, text);
            assert_eq!(out.as_bytes(), bytes, "{text:?}");
        }
    }

    #[test]
    fn json_strings_escape_what_they_must() {
        let mut out = Vec::new();
        json_string(&mut out, b"a\"b\\c\n\x01\x7f\xff");
        assert_eq!(out, br#""a\"b\\c\n\u0001\u007f\u00ff""#);
        out.clear();
        json_string(&mut out, "é".as_bytes());
        assert_eq!(out, "\"é\"".as_bytes());
    }
}
