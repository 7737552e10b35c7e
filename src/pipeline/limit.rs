//! The rate-limit filter: a route's `rate_limit` names, checked in the
//! request phase against the worker's `Limiter`. The 429 it leads to is
//! rendered here too, with its `Retry-After` and the `RateLimit-Policy` /
//! `RateLimit` fields of the IETF httpapi draft
//! (draft-ietf-httpapi-ratelimit-headers): `"NAME";q=COUNT;w=SECONDS`
//! for the policy, `"NAME";r=0;t=SECONDS` for the state.

use crate::error::{ErrorKind, ProxyError};
use crate::http::answer::render_answer_with;
use crate::limit::{KeyInput, Limiter, RateLimit};

/// `rate_limit = "NAME"` or `["a", "b"]`: positions in
/// `Config::rate_limits`, in the route's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitRule {
    limits: Vec<usize>,
}

impl RateLimitRule {
    pub fn new(limits: Vec<usize>) -> RateLimitRule {
        RateLimitRule { limits }
    }

    pub fn limits(&self) -> &[usize] {
        &self.limits
    }
}

/// What the request phase needs to check a route's limits.
pub struct RequestLimits<'a> {
    pub limiter: &'a mut Limiter,
    /// The snapshot's generation and its limits.
    pub limits: (u64, &'a [RateLimit]),
    pub input: KeyInput<'a>,
}

impl RequestLimits<'_> {
    pub(super) fn check(&mut self, rule: &RateLimitRule) -> Result<(), ProxyError> {
        self.limiter
            .check(self.limits, &rule.limits, &self.input)
            .map_err(|_| ProxyError::downstream(ErrorKind::RateLimited))
    }
}

/// Renders the answer to a request `limit` refused, `wait_ns` before it
/// may try again; `head`: a HEAD request (the length, no body).
pub fn render_limited(
    out: &mut Vec<u8>,
    (error, limit): (&ProxyError, &RateLimit),
    wait_ns: u64,
    (close, head): (bool, bool),
) {
    let status = error.status().unwrap_or(429);
    // Whole seconds, rounded up: a client that waits that long is let in.
    let secs = wait_ns.div_ceil(1_000_000_000).max(1);
    let fields = |out: &mut Vec<u8>| {
        let mut n = itoa::Buffer::new();
        out.extend_from_slice(b"Retry-After: ");
        out.extend_from_slice(n.format(secs).as_bytes());
        out.extend_from_slice(b"\r\nRateLimit-Policy: \"");
        out.extend_from_slice(limit.name.as_bytes());
        out.extend_from_slice(b"\";q=");
        out.extend_from_slice(n.format(limit.count).as_bytes());
        out.extend_from_slice(b";w=");
        out.extend_from_slice(n.format(limit.period_s).as_bytes());
        out.extend_from_slice(b"\r\nRateLimit: \"");
        out.extend_from_slice(limit.name.as_bytes());
        out.extend_from_slice(b"\";r=0;t=");
        out.extend_from_slice(n.format(secs).as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    render_answer_with(out, status, fields, (close, head));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_429_says_when_to_come_back() {
        let limit = crate::config::Config::from_toml_str(
            "[rate_limits.api]\nrate = \"100/m\"\nkey = \"client_ip\"\n\
             [[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\
             [[routes]]\nrespond = { status = 200 }\nrate_limit = \"api\"\n",
        )
        .unwrap()
        .rate_limits
        .remove(0);
        let mut out = Vec::new();
        let e = ProxyError::downstream(ErrorKind::RateLimited);
        render_limited(&mut out, (&e, &limit), 1_500_000_000, (false, false));
        let get = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Retry-After: 2\r\nRateLimit-Policy: \"api\";q=100;w=60\r\n\
             RateLimit: \"api\";r=0;t=2\r\nContent-Length: 18\r\n\r\nToo Many Requests\n";
        assert_eq!(String::from_utf8(out).unwrap(), get);
        // A HEAD gets the same head, closing, and no body.
        let mut out = Vec::new();
        render_limited(&mut out, (&e, &limit), 1_500_000_000, (true, true));
        let head = get.replace(
            "\r\n\r\nToo Many Requests\n",
            "\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(String::from_utf8(out).unwrap(), head);
    }
}
