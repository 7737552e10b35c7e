//! The request's text kept for the logging phase and the request id:
//! method, target, user agent, referer and the id, copied once out of
//! the head into one buffer reused across the connection's requests (so
//! no allocation once warm), since the head itself is gone by the time
//! the response has been sent.

use std::ops::Range;

use crate::http::RequestHead;

/// The longest request id taken from a trusted peer; a longer or
/// malformed one is replaced with our own.
pub const MAX_REQUEST_ID: usize = 128;

#[derive(Debug, Clone, Default)]
pub struct RequestText {
    /// The id goes back to the client on every answer (`[forwarding]
    /// request_id`), generated ones included.
    pub return_id: bool,
    buf: Vec<u8>,
    method: Range<u32>,
    target: Range<u32>,
    user_agent: Option<Range<u32>>,
    referer: Option<Range<u32>>,
    request_id: Range<u32>,
}

/// Whether an incoming request id can be passed on: visible ASCII, not
/// empty, bounded (it is written into heads and logs as it is).
pub fn valid_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

impl RequestText {
    pub fn clear(&mut self) {
        self.return_id = false;
        self.buf.clear();
        self.method = 0..0;
        self.target = 0..0;
        self.user_agent = None;
        self.referer = None;
        self.request_id = 0..0;
    }

    /// Takes the buffer out (for a worker's pool), leaving an empty one
    /// that holds no memory.
    pub fn take_buf(&mut self) -> Vec<u8> {
        self.clear();
        std::mem::take(&mut self.buf)
    }

    /// Uses `buf` (from a worker's pool) for the text from now on.
    pub fn use_buf(&mut self, mut buf: Vec<u8>) {
        self.clear();
        buf.clear();
        self.buf = buf;
    }

    fn push(&mut self, bytes: &[u8]) -> Range<u32> {
        let start = self.buf.len() as u32;
        self.buf.extend_from_slice(bytes);
        start..self.buf.len() as u32
    }

    /// Keeps the request line and the headers an access log shows.
    pub fn capture(&mut self, req: &RequestHead<'_, '_>) {
        self.method = self.push(req.method);
        self.target = self.push(req.target);
        for h in req.headers {
            let name = h.name.as_bytes();
            if self.user_agent.is_none() && name.eq_ignore_ascii_case(b"user-agent") {
                self.user_agent = Some(self.push(h.value));
            } else if self.referer.is_none() && name.eq_ignore_ascii_case(b"referer") {
                self.referer = Some(self.push(h.value));
            }
        }
    }

    /// Sets the request's id: `incoming` when given, else the generated
    /// one `write` renders.
    pub fn set_request_id(&mut self, incoming: Option<&[u8]>, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.buf.len() as u32;
        match incoming {
            Some(id) => self.buf.extend_from_slice(id),
            None => write(&mut self.buf),
        }
        self.request_id = start..self.buf.len() as u32;
    }

    fn get(&self, r: &Range<u32>) -> &[u8] {
        self.buf
            .get(r.start as usize..r.end as usize)
            .unwrap_or_default()
    }

    pub fn method(&self) -> &[u8] {
        self.get(&self.method)
    }

    pub fn target(&self) -> &[u8] {
        self.get(&self.target)
    }

    pub fn user_agent(&self) -> Option<&[u8]> {
        self.user_agent.as_ref().map(|r| self.get(r))
    }

    pub fn referer(&self) -> Option<&[u8]> {
        self.referer.as_ref().map(|r| self.get(r))
    }

    /// Empty when the request has none (request ids off, or a head that
    /// could not be parsed).
    pub fn request_id(&self) -> &[u8] {
        self.get(&self.request_id)
    }
}

/// Adds `X-Request-Id: id` at the end of the head of the whole answer
/// in `out` (head and body), for answers the proxy makes itself.
pub fn add_request_id(out: &mut Vec<u8>, id: &[u8]) {
    use crate::http::encode::{insert_head_lines, write_field};
    insert_head_lines(out, |out| write_field(out, b"X-Request-Id", id));
}

/// Header edits with the request id added: any incoming `X-Request-Id`
/// is dropped and ours written (`id` None: `inner` alone).
pub struct WithRequestId<'a, E> {
    pub id: Option<&'a [u8]>,
    pub inner: &'a E,
}

impl<E: crate::http::encode::FieldEdits> crate::http::encode::FieldEdits for WithRequestId<'_, E> {
    fn drops(&self, name: &[u8]) -> bool {
        (self.id.is_some() && name.eq_ignore_ascii_case(b"x-request-id")) || self.inner.drops(name)
    }

    fn append(&self, out: &mut Vec<u8>) {
        if let Some(id) = self.id {
            out.extend_from_slice(b"X-Request-Id: ");
            out.extend_from_slice(id);
            out.extend_from_slice(b"\r\n");
        }
        self.inner.append(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HeadLimits, empty_headers, parse_request};

    #[test]
    fn keeps_what_the_log_shows() {
        let raw =
            b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8\r\nReferer: http://r/\r\n\r\n";
        let mut headers = empty_headers();
        let req = parse_request(raw, &mut headers, &HeadLimits::default())
            .unwrap()
            .unwrap();
        let mut t = RequestText::default();
        t.capture(&req);
        t.set_request_id(None, |out| out.extend_from_slice(b"abc"));
        assert_eq!(t.method(), b"GET");
        assert_eq!(t.target(), b"/a?b=1");
        assert_eq!(t.user_agent(), Some(&b"curl/8"[..]));
        assert_eq!(t.referer(), Some(&b"http://r/"[..]));
        assert_eq!(t.request_id(), b"abc");
        t.clear();
        assert_eq!(t.method(), b"");
        assert_eq!(t.user_agent(), None);
        assert_eq!(t.request_id(), b"");
    }

    #[test]
    fn a_buffer_moves_to_the_next_connection_empty() {
        let mut t = RequestText::default();
        t.set_request_id(None, |out| out.extend_from_slice(b"first-id"));
        let buf = t.take_buf();
        assert!(buf.is_empty() && buf.capacity() >= 8);
        assert_eq!(t.request_id(), b"");
        let mut next = RequestText::default();
        let ptr = buf.as_ptr();
        next.use_buf(buf);
        next.set_request_id(None, |out| out.extend_from_slice(b"second"));
        assert_eq!(next.request_id(), b"second");
        assert_eq!(next.buf.as_ptr(), ptr, "the pooled buffer is the one used");
    }

    #[test]
    fn request_ids_join_answers_at_the_end_of_their_head() {
        let mut out = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno".to_vec();
        add_request_id(&mut out, b"abc");
        assert_eq!(
            out,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nX-Request-Id: abc\r\n\r\nno"
        );
        let mut head_only = b"HTTP/1.1 204 No Content\r\n\r\n".to_vec();
        add_request_id(&mut head_only, b"x");
        assert_eq!(
            head_only,
            b"HTTP/1.1 204 No Content\r\nX-Request-Id: x\r\n\r\n"
        );
    }

    #[test]
    fn request_ids_taken_from_peers() {
        assert!(valid_request_id(b"4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(valid_request_id(b"f81d4fae-7dec-11d0-a765-00a0c91e6bf6"));
        assert!(!valid_request_id(b""));
        assert!(!valid_request_id(b"a b"));
        assert!(!valid_request_id(b"a\"b"));
        assert!(!valid_request_id(&[b'a'; MAX_REQUEST_ID + 1]));
    }
}
