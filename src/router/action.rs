//! Route actions: proxy to an upstream group (with optional path rewrite),
//! redirect, or a fixed response rendered once when the config loads.

use crate::http::answer::reason;
use crate::http::encode::write_content_length;

#[derive(Debug, Clone)]
pub enum Action {
    Proxy {
        upstream: usize,
        rewrite: PathRewrite,
    },
    Redirect(Redirect),
    Respond(Respond),
}

#[derive(Debug, Clone)]
pub enum PathRewrite {
    None,
    /// Replace what the regex matched (in the normalised path) with the
    /// template, where `$1`.. and `${name}` are its captures.
    Regex {
        regex: regex::bytes::Regex,
        to: Vec<u8>,
    },
    /// Replace the matched path prefix with this (possibly empty) string.
    Prefix {
        matched: Vec<u8>,
        replacement: Vec<u8>,
    },
}

impl PathRewrite {
    /// Writes the rewritten path into `out` and returns it, or the path as is.
    pub fn apply<'a>(&self, path: &'a [u8], out: &'a mut Vec<u8>) -> &'a [u8] {
        match self {
            PathRewrite::None => path,
            PathRewrite::Regex { regex, to } => {
                let Some(caps) = regex.captures(path) else {
                    return path;
                };
                out.clear();
                let whole = caps.get(0).map_or(0..0, |m| m.range());
                out.extend_from_slice(&path[..whole.start]);
                caps.expand(to, out);
                out.extend_from_slice(&path[whole.end..]);
                if !out.starts_with(b"/") {
                    out.insert(0, b'/');
                }
                out
            }
            PathRewrite::Prefix {
                matched,
                replacement,
            } => {
                let rest = path.strip_prefix(matched.as_slice()).unwrap_or(path);
                out.clear();
                out.extend_from_slice(replacement);
                if !out.starts_with(b"/") {
                    out.insert(0, b'/');
                }
                if out.ends_with(b"/") && rest.starts_with(b"/") {
                    out.extend_from_slice(&rest[1..]);
                } else {
                    out.extend_from_slice(rest);
                }
                out
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Redirect {
    pub status: u16,
    /// Target with `$host` and `$request_uri` placeholders left in.
    pub to: Vec<u8>,
}

impl Redirect {
    /// Writes the full redirect answer; `$request_uri` is `path` then
    /// `query` (its `?` included), as sent. Written straight into `out`:
    /// nothing is allocated per request.
    pub fn render(&self, out: &mut Vec<u8>, host: &[u8], uri: (&[u8], &[u8]), close: bool) {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason(self.status).as_bytes());
        out.extend_from_slice(b"\r\nLocation: ");
        let mut rest = self.to.as_slice();
        while let Some(at) = memchr::memchr(b'$', rest) {
            out.extend_from_slice(&rest[..at]);
            rest = &rest[at..];
            if let Some(r) = rest.strip_prefix(b"$host".as_slice()) {
                out.extend_from_slice(host);
                rest = r;
            } else if let Some(r) = rest.strip_prefix(b"$request_uri".as_slice()) {
                out.extend_from_slice(uri.0);
                out.extend_from_slice(uri.1);
                rest = r;
            } else {
                out.push(b'$');
                rest = &rest[1..];
            }
        }
        out.extend_from_slice(rest);
        out.extend_from_slice(b"\r\n");
        write_content_length(out, 0);
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// `error_pages`: the operator's own answer per status, for the answers
/// ringress generates and for upstream answers with that status (whose
/// own page is dropped, as with nginx's `proxy_intercept_errors`).
#[derive(Debug, Clone, Default)]
pub struct ErrorPages {
    pages: Vec<Respond>,
}

impl ErrorPages {
    pub fn get(&self, status: u16) -> Option<&Respond> {
        self.pages.iter().find(|p| p.status == status)
    }

    /// Adds a page, replacing one for the same status.
    pub fn set(&mut self, page: Respond) {
        self.pages.retain(|p| p.status != page.status);
        self.pages.push(page);
    }

    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }
}

/// A fixed answer, rendered in both connection forms at load time.
#[derive(Debug, Clone)]
pub struct Respond {
    pub status: u16,
    keep_alive: Vec<u8>,
    close: Vec<u8>,
    head_only_len: (usize, usize),
}

impl Respond {
    pub fn new(status: u16, body: &[u8], content_type: &str) -> Respond {
        let render = |close: bool| {
            let mut out = Vec::new();
            out.extend_from_slice(b"HTTP/1.1 ");
            out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
            out.push(b' ');
            out.extend_from_slice(reason(status).as_bytes());
            out.extend_from_slice(b"\r\n");
            if !body.is_empty() {
                out.extend_from_slice(b"Content-Type: ");
                out.extend_from_slice(content_type.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            // RFC 9110 §8.6: no Content-Length on 204 (or 304).
            if status != 204 && status != 304 {
                write_content_length(&mut out, body.len() as u64);
            }
            if close {
                out.extend_from_slice(b"Connection: close\r\n");
            }
            out.extend_from_slice(b"\r\n");
            let head = out.len();
            out.extend_from_slice(body);
            (out, head)
        };
        let (keep_alive, h1) = render(false);
        let (close, h2) = render(true);
        Respond {
            status,
            keep_alive,
            close,
            head_only_len: (h1, h2),
        }
    }

    /// The bytes to send; a HEAD request gets the head alone.
    pub fn bytes(&self, close: bool, head_request: bool) -> &[u8] {
        match (close, head_request) {
            (false, false) => &self.keep_alive,
            (true, false) => &self.close,
            (false, true) => &self.keep_alive[..self.head_only_len.0],
            (true, true) => &self.close[..self.head_only_len.1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_prefix() {
        let strip = PathRewrite::Prefix {
            matched: b"/api".to_vec(),
            replacement: b"".to_vec(),
        };
        let mut out = Vec::new();
        assert_eq!(strip.apply(b"/api/items", &mut out), b"/items");
        assert_eq!(strip.apply(b"/api", &mut out), b"/");
        let v2 = PathRewrite::Prefix {
            matched: b"/old/".to_vec(),
            replacement: b"/new/".to_vec(),
        };
        assert_eq!(v2.apply(b"/old/x", &mut out), b"/new/x");
    }

    #[test]
    fn redirect_placeholders() {
        let r = Redirect {
            status: 301,
            to: b"https://$host$request_uri".to_vec(),
        };
        let mut out = Vec::new();
        r.render(&mut out, b"a.example", (b"/p", b"?q=1"), false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(
            "HTTP/1.1 301 Moved Permanently\r\nLocation: https://a.example/p?q=1\r\n"
        ));
    }

    #[test]
    fn respond_head() {
        let r = Respond::new(403, b"forbidden\n", "text/plain");
        let full = std::str::from_utf8(r.bytes(false, false)).unwrap();
        assert!(full.ends_with("Content-Length: 10\r\n\r\nforbidden\n"));
        assert!(
            std::str::from_utf8(r.bytes(true, true))
                .unwrap()
                .ends_with("Connection: close\r\n\r\n")
        );
    }
}

#[cfg(test)]
mod rewrite_tests {
    use super::*;

    #[test]
    fn regex_rewrite_expands_captures() {
        let r = PathRewrite::Regex {
            regex: regex::bytes::Regex::new("^/old/(?P<rest>.*)$").unwrap(),
            to: b"/new/$rest".to_vec(),
        };
        let mut out = Vec::new();
        assert_eq!(r.apply(b"/old/a/b", &mut out), b"/new/a/b");
        assert_eq!(r.apply(b"/other", &mut out), b"/other");
        let r = PathRewrite::Regex {
            regex: regex::bytes::Regex::new("^/v(\\d+)/").unwrap(),
            to: b"api/$1/".to_vec(),
        };
        assert_eq!(r.apply(b"/v2/users", &mut out), b"/api/2/users");
    }
}
