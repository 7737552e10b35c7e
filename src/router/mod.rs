//! The route table: host, path, method and header matching to a route and
//! its action. Pure data, built once per config snapshot; lookups never
//! allocate. Precedence: the most specific host (exact, then the longest
//! wildcard, then any), then the longest path match (exact beats prefix of
//! equal length), then the order in the file.

mod action;

pub use action::{Action, ErrorPages, PathRewrite, Redirect, Respond};

use std::sync::Arc;

/// How a route matches the request's host (lowercase, no port, no final dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Exact(Vec<u8>),
    /// `*.example.com`: stored as `.example.com`; matches any deeper name.
    Suffix(Vec<u8>),
    Any,
}

impl HostMatch {
    pub fn parse(pattern: &str) -> Result<HostMatch, String> {
        let trimmed = pattern.trim();
        if trimmed == "*." {
            return Err(format!("`{pattern}` is not a valid wildcard host"));
        }
        let p = trimmed.trim_end_matches('.').to_ascii_lowercase();
        if p.is_empty() || p == "*" {
            return Ok(HostMatch::Any);
        }
        let ok_chars = |s: &str| {
            s.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || b == b'-'
                    || b == b'.'
                    || b == b'_'
                    || b == b':'
                    || b == b'['
                    || b == b']'
            })
        };
        if let Some(rest) = p.strip_prefix("*.") {
            if rest.is_empty() || !ok_chars(rest) {
                return Err(format!("`{pattern}` is not a valid wildcard host"));
            }
            return Ok(HostMatch::Suffix(format!(".{rest}").into_bytes()));
        }
        if !ok_chars(&p) {
            return Err(format!(
                "`{pattern}` is not a valid host (use `example.com`, `*.example.com` or `*`)"
            ));
        }
        // Hosts are matched without their port, so a pattern with one
        // could never match; IPv6 literals keep their brackets.
        if p.contains(':') && !(p.starts_with('[') && p.ends_with(']')) {
            return Err(format!(
                "`{pattern}` has a port: routes match the host without it"
            ));
        }
        Ok(HostMatch::Exact(p.into_bytes()))
    }

    /// Rank of a match (higher is more specific), None when it does not match.
    fn rank(&self, host: &[u8]) -> Option<(u8, usize)> {
        match self {
            HostMatch::Exact(h) => host.eq_ignore_ascii_case(h).then_some((2, h.len())),
            HostMatch::Suffix(s) => (host.len() > s.len()
                && host[host.len() - s.len()..].eq_ignore_ascii_case(s))
            .then_some((1, s.len())),
            HostMatch::Any => Some((0, 0)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Segment-aware: `/api` matches `/api` and `/api/x`, not `/apix`;
    /// a prefix ending in `/` matches everything below it.
    Prefix(Vec<u8>),
    Exact(Vec<u8>),
}

impl PathMatch {
    /// Matched length, None when it does not match.
    fn rank(&self, path: &[u8]) -> Option<(usize, u8)> {
        match self {
            PathMatch::Exact(p) => (path == p.as_slice()).then_some((p.len(), 1)),
            PathMatch::Prefix(p) => {
                let boundary = p.ends_with(b"/")
                    || path.len() == p.len()
                    || path.get(p.len()).is_some_and(|&b| b == b'/' || b == b'?');
                (path.starts_with(p) && boundary).then_some((p.len(), 0))
            }
        }
    }
}

/// A header condition: present (any value) or equal to a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    pub name: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// Listener indexes this route serves; empty means all.
    pub listeners: Vec<usize>,
    pub hosts: Vec<HostMatch>,
    pub path: PathMatch,
    /// Upper-case method names; empty means any.
    pub methods: Vec<Vec<u8>>,
    pub headers: Vec<HeaderMatch>,
    /// Query parameters required (raw, as sent: no percent-decoding).
    pub query: Vec<HeaderMatch>,
    /// Body limit in bytes; 0 means unlimited.
    pub max_body_size: u64,
    /// Its requests are written to the access log.
    pub access_log: bool,
    /// What is done with a request whose path has `%2F` / `%5C` and which
    /// this route would serve once they are decoded.
    pub escaped_slashes: EscapedSlashes,
    /// The top-level `error_pages` with the route's own over them.
    pub error_pages: Arc<ErrorPages>,
    pub action: Action,
}

/// `path_escaped_slashes` (Envoy's `path_with_escaped_slashes_action`):
/// for a path holding `%2F` or `%5C`, which an upstream may decode into
/// separators, so that `/admin%2Fsecret` is `/admin/secret` to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashes {
    /// Routed and forwarded as sent.
    #[default]
    Keep,
    /// Decoded: routed and forwarded as `/admin/secret`.
    Decode,
    /// Answered 400.
    Reject,
}

impl EscapedSlashes {
    pub const NAMES: [&'static str; 3] = ["reject", "decode", "keep"];

    pub fn parse(s: &str) -> Option<EscapedSlashes> {
        match s {
            "reject" => Some(EscapedSlashes::Reject),
            "decode" => Some(EscapedSlashes::Decode),
            "keep" => Some(EscapedSlashes::Keep),
            _ => None,
        }
    }
}

/// What the router needs to know about a request.
pub struct RouteQuery<'a, 'b> {
    pub listener: usize,
    pub host: &'a [u8],
    pub path: &'a [u8],
    pub method: &'a [u8],
    pub headers: &'a [httparse::Header<'b>],
    /// The query, `?` included (empty when none).
    pub query: &'a [u8],
}

/// (host kind, host pattern length, path match length, exact path): the
/// greatest wins.
type Rank = (u8, usize, usize, u8);

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub routes: Vec<Route>,
    /// The top-level `path_escaped_slashes`, for a decoded path that no
    /// route serves.
    pub escaped_slashes: EscapedSlashes,
    /// The top-level `error_pages`, for answers before a route is known.
    pub error_pages: Arc<ErrorPages>,
}

impl RouteTable {
    /// The best route for a request, by the precedence in the module docs.
    pub fn find(&self, q: &RouteQuery<'_, '_>) -> Option<&Route> {
        self.find_index(q).map(|i| &self.routes[i])
    }

    /// What to do with a request whose path has escaped separators,
    /// asked with the path decoded: the mode of the route that would
    /// serve it so, else the table's own.
    pub fn escaped_slashes(&self, decoded: &RouteQuery<'_, '_>) -> EscapedSlashes {
        self.find(decoded)
            .map_or(self.escaped_slashes, |r| r.escaped_slashes)
    }

    /// The operator's page for an answer with `status` on route `route`
    /// (None: before one was found), if there is one.
    pub fn error_page(&self, route: Option<usize>, status: u16) -> Option<&Respond> {
        let pages = match route.and_then(|i| self.routes.get(i)) {
            Some(r) => &r.error_pages,
            None => &self.error_pages,
        };
        if pages.is_empty() {
            return None;
        }
        pages.get(status)
    }

    /// Like `find`, giving the route's position.
    pub fn find_index(&self, q: &RouteQuery<'_, '_>) -> Option<usize> {
        let host = q.host.strip_suffix(b".").unwrap_or(q.host);
        let mut best: Option<(usize, Rank)> = None;
        for (index, route) in self.routes.iter().enumerate() {
            if !route.listeners.is_empty() && !route.listeners.contains(&q.listener) {
                continue;
            }
            let Some(host_rank) = route.hosts.iter().filter_map(|h| h.rank(host)).max() else {
                continue;
            };
            let Some(path_rank) = route.path.rank(q.path) else {
                continue;
            };
            if !route.methods.is_empty() && !route.methods.iter().any(|m| m == q.method) {
                continue;
            }
            if !route.headers.iter().all(|m| header_matches(m, q.headers)) {
                continue;
            }
            if !route.query.iter().all(|m| query_matches(m, q.query)) {
                continue;
            }
            let rank = (host_rank.0, host_rank.1, path_rank.0, path_rank.1);
            if best.is_none_or(|(_, r)| rank > r) {
                best = Some((index, rank));
            }
        }
        best.map(|(i, _)| i)
    }
}

fn query_matches(m: &HeaderMatch, query: &[u8]) -> bool {
    let query = query.strip_prefix(b"?").unwrap_or(query);
    query.split(|&b| b == b'&').any(|pair| {
        let (name, value) = match memchr::memchr(b'=', pair) {
            Some(at) => (&pair[..at], Some(&pair[at + 1..])),
            None => (pair, None),
        };
        name == m.name.as_slice() && m.value.as_ref().is_none_or(|v| value == Some(v.as_slice()))
    })
}

fn header_matches(m: &HeaderMatch, headers: &[httparse::Header<'_>]) -> bool {
    headers.iter().any(|h| {
        h.name.as_bytes().eq_ignore_ascii_case(&m.name)
            && m.value
                .as_ref()
                .is_none_or(|v| crate::http::fields::trim_ows(h.value) == v.as_slice())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, host: &str, path: PathMatch) -> Route {
        Route {
            name: name.into(),
            listeners: vec![],
            hosts: vec![HostMatch::parse(host).unwrap()],
            path,
            methods: vec![],
            headers: vec![],
            query: vec![],
            max_body_size: 0,
            access_log: true,
            escaped_slashes: EscapedSlashes::Keep,
            error_pages: Arc::default(),
            action: Action::Respond(Respond::new(200, b"", "text/plain")),
        }
    }

    fn prefix(p: &str) -> PathMatch {
        PathMatch::Prefix(p.as_bytes().to_vec())
    }

    fn find<'t>(t: &'t RouteTable, host: &str, path: &str) -> Option<&'t str> {
        t.find(&RouteQuery {
            listener: 0,
            host: host.as_bytes(),
            path: path.as_bytes(),
            method: b"GET",
            headers: &[],
            query: b"",
        })
        .map(|r| r.name.as_str())
    }

    #[test]
    fn precedence() {
        let t = RouteTable {
            routes: vec![
                route("root", "*", prefix("/")),
                route("api", "*", prefix("/api")),
                route("api-v2", "*", prefix("/api/v2/")),
                route("exact", "*", PathMatch::Exact(b"/api/v2/".to_vec())),
                route("wild", "*.example.com", prefix("/")),
                route("shop", "shop.example.com", prefix("/")),
            ],
            ..RouteTable::default()
        };
        assert_eq!(find(&t, "other", "/x"), Some("root"));
        assert_eq!(find(&t, "other", "/api"), Some("api"));
        assert_eq!(find(&t, "other", "/api/x"), Some("api"));
        assert_eq!(find(&t, "other", "/apix"), Some("root"));
        assert_eq!(find(&t, "other", "/api/v2/items"), Some("api-v2"));
        assert_eq!(find(&t, "other", "/api/v2/"), Some("exact"));
        assert_eq!(find(&t, "a.example.com", "/api"), Some("wild"));
        assert_eq!(find(&t, "example.com", "/api"), Some("api"));
        assert_eq!(find(&t, "SHOP.example.com.", "/api"), Some("shop"));
    }

    #[test]
    fn methods_headers_listeners() {
        let mut get_only = route("get", "*", prefix("/"));
        get_only.methods = vec![b"GET".to_vec()];
        let mut canary = route("canary", "*", prefix("/"));
        canary.headers = vec![HeaderMatch {
            name: b"x-canary".to_vec(),
            value: Some(b"1".to_vec()),
        }];
        let mut admin = route("admin", "*", prefix("/admin"));
        admin.listeners = vec![1];
        let t = RouteTable {
            routes: vec![canary, get_only, admin],
            ..RouteTable::default()
        };
        let headers = [httparse::Header {
            name: "X-Canary",
            value: b"1",
        }];
        let q = |listener, method: &'static [u8], headers| RouteQuery {
            listener,
            host: b"h",
            path: b"/admin",
            method,
            headers,
            query: b"",
        };
        assert_eq!(t.find(&q(0, b"GET", &headers)).unwrap().name, "canary");
        assert_eq!(t.find(&q(0, b"GET", &[])).unwrap().name, "get");
        assert!(t.find(&q(0, b"POST", &[])).is_none());
        assert_eq!(t.find(&q(1, b"POST", &[])).unwrap().name, "admin");
    }

    #[test]
    fn bad_hosts() {
        assert!(HostMatch::parse("exa mple.com").is_err());
        assert!(HostMatch::parse("*.").is_err());
        assert_eq!(HostMatch::parse("*").unwrap(), HostMatch::Any);
        assert!(HostMatch::parse("api.example.com:8080").is_err());
        assert!(HostMatch::parse("[::1]").is_ok());
    }
}
