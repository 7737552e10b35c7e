//! Upstream response head parsing, as strict as for requests: anything
//! ambiguous is a bad gateway and the upstream connection is not reused.

use super::fields::{
    ConnectionOptions, TransferCoding, TransferEncoding, parse_content_length, trim_ows,
};
use std::mem::MaybeUninit;

use super::{Framing, Version, has_bare_lf};
use crate::error::{ErrorKind, ProxyError};

#[derive(Debug)]
pub struct ResponseHead<'h, 'b> {
    pub status: u16,
    pub reason: &'b [u8],
    pub version: Version,
    pub headers: &'h [httparse::Header<'b>],
    pub head_len: usize,
    pub framing: Framing,
    pub connection: ConnectionOptions<'b>,
    /// The upstream connection may carry another request after this body.
    pub reusable: bool,
    /// The raw Content-Length value, kept for HEAD and 304 answers.
    pub content_length: Option<u64>,
}

impl ResponseHead<'_, '_> {
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status)
    }
}

/// Whether a response with this status can carry a body (RFC 9110 6.4.1:
/// never 1xx, 204 or 304).
pub fn status_has_body(status: u16) -> bool {
    !((100..200).contains(&status) || status == 204 || status == 304)
}

/// Parses a response head; `request_is_head` decides body presence.
pub fn parse_response<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [MaybeUninit<httparse::Header<'b>>],
    max_head_size: usize,
    request_is_head: bool,
) -> Result<Option<ResponseHead<'h, 'b>>, ProxyError> {
    let bad = Err(ProxyError::upstream(ErrorKind::BadGateway));
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, headers);
    let head_len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < max_head_size => return Ok(None),
        _ => return bad,
    };
    if head_len > max_head_size || has_bare_lf(&buf[..head_len]) {
        return bad;
    }
    let (Some(minor), Some(status)) = (resp.version, resp.code) else {
        return bad;
    };
    if !(100..=999).contains(&status) {
        return bad;
    }
    let version = Version::from_minor(minor);
    let reason = resp.reason.unwrap_or("").as_bytes();
    let headers: &'h [httparse::Header<'b>] = resp.headers;

    let mut content_length = None;
    let mut cl_count = 0;
    let mut te = TransferEncoding::default();
    let mut connection = ConnectionOptions::default();
    for h in headers {
        let name = h.name.as_bytes();
        let value = trim_ows(h.value);
        if name.eq_ignore_ascii_case(b"content-length") {
            cl_count += 1;
            content_length = parse_content_length(value);
            if content_length.is_none() {
                return bad;
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te.add_value(value);
        } else if name.eq_ignore_ascii_case(b"connection") && !connection.add_value(value) {
            return bad;
        }
    }
    if cl_count > 1 || (te.present && (cl_count > 0 || version == Version::Http10)) {
        return bad;
    }
    let no_body = request_is_head || !status_has_body(status);
    let framing = if no_body {
        Framing::Empty
    } else if te.present {
        if te.verdict() != TransferCoding::Chunked {
            return bad;
        }
        Framing::Chunked
    } else {
        match content_length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    let persistent = match version {
        Version::Http11 => !connection.close,
        Version::Http10 => connection.keep_alive && !connection.close,
    };
    Ok(Some(ResponseHead {
        status,
        reason,
        version,
        headers,
        head_len,
        framing,
        connection,
        reusable: persistent && framing != Framing::Close,
        content_length,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::empty_headers;

    fn framing(raw: &[u8], head: bool) -> Result<Option<(u16, Framing, bool)>, ErrorKind> {
        let mut h = empty_headers();
        parse_response(raw, &mut h, 16384, head)
            .map(|o| o.map(|r| (r.status, r.framing, r.reusable)))
            .map_err(|e| e.kind)
    }

    #[test]
    fn framings() {
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
            Ok(Some((200, Framing::Length(5), true)))
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            Ok(Some((200, Framing::Empty, true)))
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            ),
            Ok(Some((200, Framing::Chunked, true)))
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\n\r\n", false),
            Ok(Some((200, Framing::Close, false)))
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
                false
            ),
            Ok(Some((304, Framing::Empty, true)))
        );
        assert_eq!(
            framing(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false),
            Ok(Some((200, Framing::Length(1), false)))
        );
        assert_eq!(framing(b"HTTP/1.1 200 OK\r\n", false), Ok(None));
    }

    #[test]
    fn rejects() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\nContent-Length: 1\n\n",
            b"HTTP/1.1 200 OK\r\nX: a\0\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert_eq!(
                framing(raw, false).map(|_| ()),
                Err(ErrorKind::BadGateway),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
