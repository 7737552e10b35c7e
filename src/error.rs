//! The proxy's one error type: what failed, on which side, and whether the
//! request may be tried again. `ProxyError::status` is the only place a
//! generated answer's status is chosen; nothing else names one.

use std::fmt;

/// Which side of the exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Downstream,
    Upstream,
    Internal,
}

/// What went wrong. The kind alone decides the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed request syntax or framing.
    BadRequest,
    /// Request head larger than the limit (or too many fields).
    HeadTooLarge,
    /// Request-target longer than the limit.
    UriTooLong,
    /// Declared or streamed body over the route's limit.
    BodyTooLarge,
    /// A transfer coding we do not implement.
    UnsupportedCoding,
    /// A method we do not implement (CONNECT).
    MethodNotImplemented,
    /// An `Expect` value other than 100-continue.
    ExpectationFailed,
    /// The client did not send a full head in time.
    ClientTimeout,
    /// No route matched.
    NoRoute,
    /// Upstream refused, reset, or sent an invalid response.
    BadGateway,
    /// Upstream did not connect or answer in time.
    GatewayTimeout,
    /// No server available, or the proxy is draining.
    Unavailable,
    /// The upstream answered a status listed in `retry_on` and no retry
    /// was left: the client gets that status, generated (the upstream's
    /// own answer was not kept).
    UpstreamStatus(u16),
    /// The client went away: close quietly.
    ClientGone,
    /// `Cache-Control: only-if-cached` and nothing usable stored
    /// (RFC 9111 5.2.1.7: 504).
    NotCached,
    /// Over a route's rate limit.
    RateLimited,
    /// The client's address is denied by an `allow`/`deny` list.
    Forbidden,
    /// Missing or wrong credentials on a route with `auth`.
    Unauthorized,
    /// A request filter's `deny` rule, with the status it answers.
    Filtered(u16),
}

impl ErrorKind {
    /// Every kind's name, by `index` (metrics labels, log reasons).
    pub const NAMES: [&'static str; 19] = [
        "bad_request",
        "head_too_large",
        "uri_too_long",
        "body_too_large",
        "unsupported_coding",
        "method_not_implemented",
        "expectation_failed",
        "client_timeout",
        "no_route",
        "bad_gateway",
        "gateway_timeout",
        "unavailable",
        "upstream_status",
        "client_gone",
        "not_cached",
        "rate_limited",
        "forbidden",
        "unauthorized",
        "filtered",
    ];

    pub const fn index(self) -> usize {
        match self {
            ErrorKind::BadRequest => 0,
            ErrorKind::HeadTooLarge => 1,
            ErrorKind::UriTooLong => 2,
            ErrorKind::BodyTooLarge => 3,
            ErrorKind::UnsupportedCoding => 4,
            ErrorKind::MethodNotImplemented => 5,
            ErrorKind::ExpectationFailed => 6,
            ErrorKind::ClientTimeout => 7,
            ErrorKind::NoRoute => 8,
            ErrorKind::BadGateway => 9,
            ErrorKind::GatewayTimeout => 10,
            ErrorKind::Unavailable => 11,
            ErrorKind::UpstreamStatus(_) => 12,
            ErrorKind::ClientGone => 13,
            ErrorKind::NotCached => 14,
            ErrorKind::RateLimited => 15,
            ErrorKind::Forbidden => 16,
            ErrorKind::Unauthorized => 17,
            ErrorKind::Filtered(_) => 18,
        }
    }

    pub const fn name(self) -> &'static str {
        Self::NAMES[self.index()]
    }
}

/// Whether, and how, a failed attempt may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Never: the failure is final for this request.
    No,
    /// Nothing reached the upstream (the connect failed): any request may
    /// go to another server, and no retry budget is spent.
    Unsent,
    /// The upstream failed before answering: a replayable idempotent
    /// request may go to another server (budgeted), and a reused pooled
    /// connection may be replaced by a fresh one to the same server.
    BeforeAnswer,
    /// The upstream answered a status listed in `retry_on`.
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyError {
    pub kind: ErrorKind,
    pub side: Side,
    pub retry: Retry,
}

impl ProxyError {
    pub const fn new(kind: ErrorKind, side: Side) -> Self {
        ProxyError {
            kind,
            side,
            retry: Retry::No,
        }
    }

    pub const fn downstream(kind: ErrorKind) -> Self {
        Self::new(kind, Side::Downstream)
    }

    pub const fn upstream(kind: ErrorKind) -> Self {
        Self::new(kind, Side::Upstream)
    }

    pub const fn internal(kind: ErrorKind) -> Self {
        Self::new(kind, Side::Internal)
    }

    pub const fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The status code sent to the client, or `None` to close quietly.
    pub const fn status(&self) -> Option<u16> {
        Some(match self.kind {
            ErrorKind::BadRequest => 400,
            ErrorKind::HeadTooLarge => 431,
            ErrorKind::UriTooLong => 414,
            ErrorKind::BodyTooLarge => 413,
            ErrorKind::UnsupportedCoding => 501,
            ErrorKind::MethodNotImplemented => 501,
            ErrorKind::ExpectationFailed => 417,
            ErrorKind::ClientTimeout => 408,
            ErrorKind::NoRoute => 404,
            ErrorKind::BadGateway => 502,
            ErrorKind::GatewayTimeout | ErrorKind::NotCached => 504,
            ErrorKind::Unavailable => 503,
            ErrorKind::RateLimited => 429,
            ErrorKind::Forbidden => 403,
            ErrorKind::Unauthorized => 401,
            ErrorKind::UpstreamStatus(status) | ErrorKind::Filtered(status) => status,
            ErrorKind::ClientGone => return None,
        })
    }

    /// A timeout on either side (the client's head, the upstream's answer).
    pub const fn is_timeout(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::ClientTimeout | ErrorKind::GatewayTimeout
        )
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({:?} side)", self.kind, self.side)
    }
}

impl std::error::Error for ProxyError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every generated answer's status, from the one mapping.
    #[test]
    fn error_to_status_table() {
        use ErrorKind::*;
        let table: &[(ErrorKind, Option<u16>)] = &[
            (BadRequest, Some(400)),
            (HeadTooLarge, Some(431)),
            (UriTooLong, Some(414)),
            (BodyTooLarge, Some(413)),
            (UnsupportedCoding, Some(501)),
            (MethodNotImplemented, Some(501)),
            (ExpectationFailed, Some(417)),
            (ClientTimeout, Some(408)),
            (NoRoute, Some(404)),
            (BadGateway, Some(502)),
            (GatewayTimeout, Some(504)),
            (Unavailable, Some(503)),
            (RateLimited, Some(429)),
            (Forbidden, Some(403)),
            (Unauthorized, Some(401)),
            (Filtered(406), Some(406)),
            (UpstreamStatus(507), Some(507)),
            (UpstreamStatus(503), Some(503)),
            (ClientGone, None),
        ];
        for &(kind, status) in table {
            for side in [Side::Downstream, Side::Upstream, Side::Internal] {
                let e = ProxyError::new(kind, side);
                assert_eq!(e.status(), status, "{e}");
                // How it may be retried never changes its answer.
                assert_eq!(e.retry(Retry::BeforeAnswer).status(), status);
            }
        }
    }

    #[test]
    fn only_timeouts_are_timeouts() {
        assert!(ProxyError::downstream(ErrorKind::ClientTimeout).is_timeout());
        assert!(ProxyError::upstream(ErrorKind::GatewayTimeout).is_timeout());
        assert!(!ProxyError::upstream(ErrorKind::BadGateway).is_timeout());
    }
}
