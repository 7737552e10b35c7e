//! Request head parsing: httparse for the syntax, then the RFC 9112 rules
//! httparse leaves to us (framing, Host, line ends, target form). A head
//! that passes here is safe to forward; anything else gets one error kind.

use super::fields::{
    ConnectionOptions, TransferCoding, TransferEncoding, parse_content_length, split_host, trim_ows,
};
use std::mem::MaybeUninit;

use super::{Framing, HeadLimits, Version, has_bare_lf};
use crate::error::{ErrorKind, ProxyError};

/// A parsed, validated request head borrowing the read buffer.
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    pub method: &'b [u8],
    /// The request-target exactly as received.
    pub target: &'b [u8],
    /// Path part of the target (origin-form path, or "*" for asterisk-form).
    pub path: &'b [u8],
    /// Query including its leading '?', or empty.
    pub query: &'b [u8],
    pub version: Version,
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of the head, including the final CRLF.
    pub head_len: usize,
    /// Authority the request is for (absolute-form target, else Host), with port.
    pub authority: &'b [u8],
    /// `authority` without its port, for routing.
    pub host: &'b [u8],
    pub framing: Framing,
    pub connection: ConnectionOptions<'b>,
    /// The client may keep the connection open after this exchange.
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// Upgrade protocol requested (`Connection: upgrade` + `Upgrade`), 1.1 only.
    pub upgrade: Option<&'b [u8]>,
}

impl RequestHead<'_, '_> {
    pub fn is_head(&self) -> bool {
        self.method == b"HEAD"
    }

    /// RFC 9110 §9.2.2 idempotent methods: safe to send twice.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.method,
            b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
        )
    }

    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.as_bytes().eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Parses a request head from the start of `buf`.
///
/// `Ok(None)` means more bytes are needed; errors are already mapped to the
/// kind the client is answered with.
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [MaybeUninit<httparse::Header<'b>>],
    limits: &HeadLimits,
) -> Result<Option<RequestHead<'h, 'b>>, ProxyError> {
    let bad = |kind| Err(ProxyError::downstream(kind));
    let max_headers = limits.max_headers.min(headers.len());
    let mut req = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut headers[..max_headers],
    );
    let head_len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() < limits.max_head_size {
                Ok(None)
            } else if memchr::memchr(b'\n', buf).is_none() {
                bad(ErrorKind::UriTooLong)
            } else {
                bad(ErrorKind::HeadTooLarge)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return bad(ErrorKind::HeadTooLarge),
        Err(_) => return bad(ErrorKind::BadRequest),
    };
    if head_len > limits.max_head_size {
        return bad(ErrorKind::HeadTooLarge);
    }
    if has_bare_lf(&buf[..head_len]) {
        return bad(ErrorKind::BadRequest);
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return bad(ErrorKind::BadRequest);
    };
    let (method, target) = (method.as_bytes(), target.as_bytes());
    if target.len() > limits.max_uri_length {
        return bad(ErrorKind::UriTooLong);
    }
    if method == b"CONNECT" {
        return bad(ErrorKind::MethodNotImplemented);
    }
    let version = Version::from_minor(minor);
    let headers: &'h [httparse::Header<'b>] = req.headers;
    build_head(method, target, version, headers, head_len)
}

fn build_head<'h, 'b>(
    method: &'b [u8],
    target: &'b [u8],
    version: Version,
    headers: &'h [httparse::Header<'b>],
    head_len: usize,
) -> Result<Option<RequestHead<'h, 'b>>, ProxyError> {
    let bad = |kind| Err(ProxyError::downstream(kind));
    let Some(form) = split_target(method, target) else {
        return bad(ErrorKind::BadRequest);
    };
    let f = match Fields::scan(headers, version) {
        Ok(f) => f,
        Err(kind) => return bad(kind),
    };
    if f.host_count > 1 || (version == Version::Http11 && f.host_count == 0) {
        return bad(ErrorKind::BadRequest);
    }
    let host_field = f.host.unwrap_or(b"");
    let authority = form.authority.unwrap_or(host_field);
    let Some(host) = split_host(authority) else {
        return bad(ErrorKind::BadRequest);
    };
    // In origin form the authority is the Host field, checked just above.
    if form.authority.is_some() && split_host(host_field).is_none() {
        return bad(ErrorKind::BadRequest);
    }
    let framing = match f.framing(version) {
        Ok(framing) => framing,
        Err(kind) => return bad(kind),
    };
    let connection = f.connection;
    let keep_alive = match version {
        Version::Http11 => !connection.close,
        Version::Http10 => connection.keep_alive && !connection.close,
    };
    // Only a 1.1 client can switch protocols, and h2c is not ours to pass on.
    let upgrade = match f.upgrade {
        Some(proto)
            if connection.upgrade
                && f.upgrade_count == 1
                && version == Version::Http11
                && !proto.eq_ignore_ascii_case(b"h2c") =>
        {
            Some(proto)
        }
        _ => None,
    };
    Ok(Some(RequestHead {
        method,
        target,
        path: form.path,
        query: form.query,
        version,
        headers,
        head_len,
        authority,
        host,
        framing,
        connection,
        keep_alive,
        expect_continue: f.expect_continue,
        upgrade,
    }))
}

/// What the fields that shape a request say, gathered in one pass.
#[derive(Default)]
struct Fields<'b> {
    host: Option<&'b [u8]>,
    host_count: u32,
    content_length: Option<u64>,
    cl_count: u32,
    te: TransferEncoding,
    connection: ConnectionOptions<'b>,
    expect_continue: bool,
    upgrade: Option<&'b [u8]>,
    upgrade_count: u32,
}

impl<'b> Fields<'b> {
    fn scan(headers: &[httparse::Header<'b>], version: Version) -> Result<Fields<'b>, ErrorKind> {
        let mut f = Fields::default();
        for h in headers {
            let name = h.name.as_bytes();
            let value = trim_ows(h.value);
            if name.eq_ignore_ascii_case(b"host") {
                f.host_count += 1;
                f.host = Some(value);
            } else if name.eq_ignore_ascii_case(b"content-length") {
                f.cl_count += 1;
                f.content_length = parse_content_length(value);
                if f.content_length.is_none() {
                    return Err(ErrorKind::BadRequest);
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                f.te.add_value(value);
            } else if name.eq_ignore_ascii_case(b"connection") {
                if !f.connection.add_value(value) {
                    return Err(ErrorKind::BadRequest);
                }
            } else if name.eq_ignore_ascii_case(b"expect") {
                if !value.eq_ignore_ascii_case(b"100-continue") {
                    return Err(ErrorKind::ExpectationFailed);
                }
                // RFC 9110 §10.1.1: a 1.0 client's 100-continue is ignored.
                f.expect_continue = version == Version::Http11;
            } else if name.eq_ignore_ascii_case(b"upgrade") {
                f.upgrade_count += 1;
                f.upgrade = Some(value);
            }
        }
        Ok(f)
    }

    /// How the body is delimited (RFC 9112 section 6.3), refusing the
    /// combinations a smuggling attempt would use.
    fn framing(&self, version: Version) -> Result<Framing, ErrorKind> {
        if self.te.present {
            if self.cl_count > 0 || version == Version::Http10 {
                return Err(ErrorKind::BadRequest);
            }
            return match self.te.verdict() {
                TransferCoding::Chunked => Ok(Framing::Chunked),
                TransferCoding::Unsupported => Err(ErrorKind::UnsupportedCoding),
                TransferCoding::Invalid => Err(ErrorKind::BadRequest),
            };
        }
        if self.cl_count > 1 {
            return Err(ErrorKind::BadRequest);
        }
        Ok(match self.content_length {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        })
    }
}

struct TargetForm<'b> {
    authority: Option<&'b [u8]>,
    path: &'b [u8],
    query: &'b [u8],
}

/// Splits origin-form, absolute-form (http/https) or asterisk-form targets.
fn split_target<'b>(method: &[u8], target: &'b [u8]) -> Option<TargetForm<'b>> {
    // Visible ASCII only, never a fragment (RFC 9112 §3.2), and no
    // backslash, which is not a URI character and some servers read as '/'.
    if target.is_empty()
        || !target
            .iter()
            .all(|&b| (0x21..0x7f).contains(&b) && b != b'#' && b != b'\\')
    {
        return None;
    }
    if target == b"*" {
        return (method == b"OPTIONS").then_some(TargetForm {
            authority: None,
            path: target,
            query: b"",
        });
    }
    if target[0] != b'/' {
        let url = split_absolute(target)?;
        return Some(TargetForm {
            authority: Some(url.authority),
            path: url.path,
            query: url.query,
        });
    }
    let (path, query) = split_query(target);
    Some(TargetForm {
        authority: None,
        path,
        query,
    })
}

/// An absolute URL's parts.
pub struct AbsoluteUrl<'b> {
    pub https: bool,
    pub authority: &'b [u8],
    /// `/` when the URL has none.
    pub path: &'b [u8],
    /// With its leading `?`, or empty.
    pub query: &'b [u8],
}

/// Splits `http://authority/path?query` (scheme in any case); None for
/// another scheme, an empty authority or one with userinfo.
pub fn split_absolute(url: &[u8]) -> Option<AbsoluteUrl<'_>> {
    let (https, after_scheme) = match strip_prefix_ignore_case(url, b"http://") {
        Some(rest) => (false, rest),
        None => (true, strip_prefix_ignore_case(url, b"https://")?),
    };
    let end = after_scheme
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(after_scheme.len());
    let authority = &after_scheme[..end];
    if authority.is_empty() || authority.contains(&b'@') {
        return None;
    }
    let (path, query) = split_query(&after_scheme[end..]);
    // An absolute URL with an empty path means "/".
    let path = if path.is_empty() { &b"/"[..] } else { path };
    Some(AbsoluteUrl {
        https,
        authority,
        path,
        query,
    })
}

/// Path and query (with its `?`) of what follows the authority.
fn split_query(rest: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'?', rest) {
        Some(q) => (&rest[..q], &rest[q..]),
        None => (rest, &b""[..]),
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::empty_headers;

    fn parse(raw: &[u8]) -> Result<Option<(Framing, bool, Vec<u8>)>, ErrorKind> {
        let mut h = empty_headers();
        parse_request(raw, &mut h, &HeadLimits::default())
            .map(|o| o.map(|r| (r.framing, r.keep_alive, r.host.to_vec())))
            .map_err(|e| e.kind)
    }

    macro_rules! rejects {
        ($($name:ident: $raw:expr => $kind:ident;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(parse($raw).map(|_| ()), Err(ErrorKind::$kind));
            }
        )*};
    }

    rejects! {
        both_cl_and_te: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" => BadRequest;
        duplicate_cl_same_value: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n" => BadRequest;
        cl_list: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n" => BadRequest;
        cl_negative: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -3\r\n\r\n" => BadRequest;
        te_not_last_chunked: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n" => BadRequest;
        te_unknown: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" => UnsupportedCoding;
        te_on_http10: b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" => BadRequest;
        missing_host: b"GET / HTTP/1.1\r\n\r\n" => BadRequest;
        duplicate_host: b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" => BadRequest;
        bad_host: b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n" => BadRequest;
        space_before_colon: b"GET / HTTP/1.1\r\nHost : a\r\n\r\n" => BadRequest;
        nul_in_value: b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n" => BadRequest;
        bare_cr_in_value: b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n" => BadRequest;
        bare_lf_line_end: b"GET / HTTP/1.1\nHost: a\n\n" => BadRequest;
        obs_fold: b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n" => BadRequest;
        fragment_in_target: b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n" => BadRequest;
        connect_method: b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n" => MethodNotImplemented;
        expect_other: b"GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n" => ExpectationFailed;
        userinfo_absolute: b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n" => BadRequest;
        absolute_form_bad_host_field: b"GET http://a/ HTTP/1.1\r\nHost: a b\r\n\r\n" => BadRequest;
        http2_preface: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" => BadRequest;
    }

    #[test]
    fn partial_then_limits() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        let mut long = b"GET /".to_vec();
        long.resize(20_000, b'a');
        assert_eq!(parse(&long).map(|_| ()), Err(ErrorKind::UriTooLong));
        let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        big.resize(20_000, b'a');
        assert_eq!(parse(&big).map(|_| ()), Err(ErrorKind::HeadTooLarge));
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..120 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many).map(|_| ()), Err(ErrorKind::HeadTooLarge));
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(
            parse(b"GET /x HTTP/1.1\r\nHost: Example.com:80\r\n\r\n"),
            Ok(Some((Framing::Empty, true, b"Example.com".to_vec())))
        );
        assert_eq!(
            parse(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(Some((Framing::Chunked, true, b"a".to_vec())))
        );
        assert_eq!(
            parse(b"POST /x HTTP/1.0\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n"),
            Ok(Some((Framing::Length(5), true, b"".to_vec())))
        );
        assert_eq!(
            parse(b"GET /x HTTP/1.0\r\n\r\n"),
            Ok(Some((Framing::Empty, false, b"".to_vec())))
        );
        // absolute-form: the target's authority wins over Host.
        assert_eq!(
            parse(b"GET http://b.example/p?q HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok(Some((Framing::Empty, true, b"b.example".to_vec())))
        );
    }

    #[test]
    fn upgrade_needs_connection_option() {
        let mut h = empty_headers();
        let raw =
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        let req = parse_request(raw, &mut h, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(req.upgrade, Some(&b"websocket"[..]));
        let mut h = empty_headers();
        let raw = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";
        let req = parse_request(raw, &mut h, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(req.upgrade, None);
    }
}
