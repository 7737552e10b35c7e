//! The proxy's one error type: what failed, on which side, and the status it
//! becomes. Every generated answer goes through `ProxyError::status`.

use std::fmt;

/// Which side of the exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Downstream,
    Upstream,
    Internal,
}

/// What went wrong, without payload: the kind alone decides the answer.
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
    /// The client went away: close quietly.
    ClientGone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyError {
    pub kind: ErrorKind,
    pub side: Side,
}

impl ProxyError {
    pub const fn new(kind: ErrorKind, side: Side) -> Self {
        ProxyError { kind, side }
    }

    pub const fn downstream(kind: ErrorKind) -> Self {
        Self::new(kind, Side::Downstream)
    }

    pub const fn upstream(kind: ErrorKind) -> Self {
        Self::new(kind, Side::Upstream)
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
            ErrorKind::GatewayTimeout => 504,
            ErrorKind::Unavailable => 503,
            ErrorKind::ClientGone => return None,
        })
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({:?} side)", self.kind, self.side)
    }
}

impl std::error::Error for ProxyError {}
