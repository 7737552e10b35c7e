//! Compression on the request path: the coding is negotiated when the
//! request is planned, and the response head decides whether this body
//! is compressed (its type, its size, its own coding, `no-transform`).
//! The head's edits follow: `Content-Encoding`, `Vary`, a weakened
//! `ETag`, and chunked (or close-delimited) framing instead of a length.

use crate::cache::policy::{ResponseControl, vary_names};
use crate::compress::{Algorithm, negotiate, type_matches};
use crate::http::ResponseHead;
use crate::http::encode::{FieldEdits, write_field};
use crate::http::fields::trim_ows;
use crate::http::{Framing, RequestHead};
use crate::pipeline::CompressRule;

/// The coding this request's response would get.
pub(crate) fn negotiated(rule: &CompressRule, req: &RequestHead<'_, '_>) -> Option<Algorithm> {
    let accept = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("accept-encoding"))
        .map(|h| h.value);
    negotiate(accept, &rule.algorithms)
}

/// Whether this response's body is one the route compresses (for some
/// client; `Vary: Accept-Encoding` follows from it even when this
/// client gets identity).
pub(crate) fn compressible(rule: &CompressRule, resp: &ResponseHead<'_, '_>) -> bool {
    if !matches!(resp.status, 200 | 203 | 404 | 410) {
        return false;
    }
    let mut typed = false;
    for h in resp.headers {
        let name = h.name.as_bytes();
        let value = trim_ows(h.value);
        if name.eq_ignore_ascii_case(b"content-encoding")
            && !value.eq_ignore_ascii_case(b"identity")
        {
            return false;
        }
        if name.eq_ignore_ascii_case(b"content-type") {
            typed = type_matches(value, &rule.types);
        }
    }
    let control = resp
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cache-control"))
        .map(|h| h.value);
    if ResponseControl::parse(control).no_transform {
        return false;
    }
    let small = match resp.content_length {
        Some(n) => n < rule.min_size,
        None => resp.framing == Framing::Empty,
    };
    typed && !small
}

/// The head changes compression makes: lines to add (written into
/// `lines`) and the upstream fields they replace.
pub(crate) struct CodingEdits {
    pub drop_etag: bool,
    pub drop_vary: bool,
}

/// Writes the compressed head's lines: `coding` None means the body goes
/// as it is but varies on `Accept-Encoding` all the same.
pub(crate) fn head_lines(
    resp: &ResponseHead<'_, '_>,
    coding: Option<Algorithm>,
    lines: &mut Vec<u8>,
) -> CodingEdits {
    let vary_any = resp
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("vary"));
    let vary_has_it =
        vary_names(resp.headers).any(|n| n.eq_ignore_ascii_case(b"accept-encoding") || n == b"*");
    let mut edits = CodingEdits {
        drop_etag: false,
        drop_vary: false,
    };
    if !vary_has_it {
        // Merged into one line with the upstream's own fields.
        edits.drop_vary = vary_any;
        lines.extend_from_slice(b"Vary: ");
        for h in resp
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("vary"))
        {
            lines.extend_from_slice(trim_ows(h.value));
            lines.extend_from_slice(b", ");
        }
        lines.extend_from_slice(b"Accept-Encoding\r\n");
    }
    let Some(coding) = coding else {
        return edits;
    };
    write_field(lines, b"Content-Encoding", coding.token().as_bytes());
    let etag = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("etag"))
        .map(|h| trim_ows(h.value));
    if let Some(tag) = etag.filter(|t| !t.starts_with(b"W/")) {
        // The compressed bytes are not the upstream's: a strong
        // validator would claim byte equality.
        edits.drop_etag = true;
        lines.extend_from_slice(b"ETag: W/");
        lines.extend_from_slice(tag);
        lines.extend_from_slice(b"\r\n");
    }
    edits
}

/// The route's edits plus the response work's (compression, cache).
pub(crate) struct ResponseEdits<'a, E> {
    pub inner: &'a E,
    pub coding: Option<&'a CodingEdits>,
    /// Whole lines added after the route's.
    pub lines: &'a [u8],
}

impl<E: FieldEdits> FieldEdits for ResponseEdits<'_, E> {
    fn drops(&self, name: &[u8]) -> bool {
        if let Some(c) = self.coding
            && ((c.drop_etag && name.eq_ignore_ascii_case(b"etag"))
                || (c.drop_vary && name.eq_ignore_ascii_case(b"vary")))
        {
            return true;
        }
        self.inner.drops(name)
    }

    fn append(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.lines);
        self.inner.append(out);
    }
}
