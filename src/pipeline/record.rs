//! The per-request record: what happened to one request, filled along the
//! way by the data plane and read once by the logging phase. One lives in
//! each client connection and is reset per request, like the buffers.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::text::RequestText;
use super::waf::FilterAction;
use crate::error::ProxyError;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The upstream's response was passed on (any status, 101 included).
    Proxied,
    /// A configured fixed response.
    Fixed,
    /// A configured redirect.
    Redirect,
    /// Refused before any upstream was involved (400, 404, 413, 431, ...).
    Rejected,
    /// No usable answer from the upstream side (502, 503, a status kept
    /// for a retry that could not happen).
    UpstreamFailed,
    /// The client's head (408) or the upstream's answer (504) took too long.
    Timeout,
    /// The client went away, or broke off, before it had its answer.
    ClientGone,
    /// Answered from the cache.
    Cached,
}

impl Exit {
    pub const ALL: [Exit; 8] = [
        Exit::Proxied,
        Exit::Fixed,
        Exit::Redirect,
        Exit::Rejected,
        Exit::UpstreamFailed,
        Exit::Timeout,
        Exit::ClientGone,
        Exit::Cached,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Exit::Proxied => "proxied",
            Exit::Fixed => "fixed",
            Exit::Redirect => "redirect",
            Exit::Rejected => "rejected",
            Exit::UpstreamFailed => "upstream_failed",
            Exit::Timeout => "timeout",
            Exit::ClientGone => "client_gone",
            Exit::Cached => "cached",
        }
    }

    /// The exit of a request answered with a generated error.
    pub const fn of_error(e: &ProxyError) -> Exit {
        if e.is_timeout() {
            return Exit::Timeout;
        }
        match (e.status(), e.side) {
            (None, _) => Exit::ClientGone,
            (_, crate::error::Side::Downstream) => Exit::Rejected,
            _ => Exit::UpstreamFailed,
        }
    }
}

/// What the cache did for a request (`$upstream_cache_status` in nginx
/// terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheResult {
    /// The route does not cache.
    #[default]
    None,
    /// Answered from a fresh stored response.
    Hit,
    /// Answered stale within stale-while-revalidate; a refresh followed.
    Updating,
    /// Answered stale because the upstream failed (stale-if-error).
    Stale,
    /// Nothing stored: fetched.
    Miss,
    /// Stored but stale: fetched whole.
    Expired,
    /// Stored but stale: the upstream confirmed it (304).
    Revalidated,
    /// A caching route, but not a request the cache takes (method).
    Bypass,
}

impl CacheResult {
    /// Every result but `None`, in label order.
    pub const COUNTED: [CacheResult; 7] = [
        CacheResult::Hit,
        CacheResult::Updating,
        CacheResult::Stale,
        CacheResult::Miss,
        CacheResult::Expired,
        CacheResult::Revalidated,
        CacheResult::Bypass,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            CacheResult::None => "",
            CacheResult::Hit => "hit",
            CacheResult::Updating => "updating",
            CacheResult::Stale => "stale",
            CacheResult::Miss => "miss",
            CacheResult::Expired => "expired",
            CacheResult::Revalidated => "revalidated",
            CacheResult::Bypass => "bypass",
        }
    }

    /// Position in `COUNTED` (None for `None`).
    pub const fn counted(self) -> Option<usize> {
        match self {
            CacheResult::None => None,
            r => Some(r as usize - 1),
        }
    }
}

/// The upstream server that answered (or failed last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamTry {
    pub group: u32,
    pub server: u32,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct Record {
    pub start: Instant,
    /// The config generation the request ran on.
    pub generation: u64,
    /// Listener position in that snapshot.
    pub listener: usize,
    /// The client's address (after PROXY protocol).
    pub client: SocketAddr,
    /// The client's address as logged: `client`'s, or from a trusted
    /// peer's X-Forwarded-For.
    pub client_ip: IpAddr,
    /// What the logging phase shows of the request, and its id.
    pub text: RequestText,
    /// Route position in the snapshot; None when none matched.
    pub route: Option<usize>,
    /// Status sent to the client; 0 when none was.
    pub status: u16,
    /// Request bytes read: head and body.
    pub bytes_in: u64,
    /// Response bytes written: head and body.
    pub bytes_out: u64,
    pub upstream: Option<UpstreamTry>,
    /// From the upstream attempt's start to the end of its response.
    pub upstream_time: Option<Duration>,
    /// Attempts after the first (other servers, or a fresh connection).
    pub retries: u8,
    pub exit: Exit,
    /// What the cache did.
    pub cache: CacheResult,
    /// The first rate limit in `mode = "log"` that would have refused the
    /// request (its position in the snapshot's limits).
    pub rate_limit_logged: Option<u32>,
    /// The filter rule that refused the request, else the first that
    /// matched it (its position in the snapshot's filter set), and what
    /// it did.
    pub filter: Option<(u32, FilterAction)>,
    /// What failed, when something did.
    pub cause: Option<ProxyError>,
    /// The verified identity's lines for the upstream head (auth),
    /// filled in the request phase.
    pub identity: Vec<u8>,
    /// This request's number on the worker (for `$request_id`).
    pub seq: u64,
    /// The worker's start value for request ids (kept across requests).
    pub id_seed: u64,
}

impl Record {
    /// A connection's record before its first request (`start` is set
    /// when a request begins: no clock is read here).
    pub fn new(client: SocketAddr, id_seed: u64, start: Instant) -> Record {
        Record {
            start,
            generation: 0,
            listener: usize::MAX,
            client,
            client_ip: client.ip(),
            text: RequestText::default(),
            route: None,
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            upstream: None,
            upstream_time: None,
            retries: 0,
            exit: Exit::ClientGone,
            cache: CacheResult::None,
            rate_limit_logged: None,
            filter: None,
            cause: None,
            identity: Vec::new(),
            seq: 0,
            id_seed,
        }
    }

    /// Starts the record of the next request on the connection.
    pub fn reset(&mut self, start: Instant, generation: u64, listener: usize, seq: u64) {
        // Field by field: the client stays, and no whole record is built
        // and copied per request.
        self.start = start;
        self.generation = generation;
        self.listener = listener;
        self.client_ip = self.client.ip();
        self.text.clear();
        self.route = None;
        self.status = 0;
        self.bytes_in = 0;
        self.bytes_out = 0;
        self.upstream = None;
        self.upstream_time = None;
        self.retries = 0;
        self.exit = Exit::ClientGone;
        self.cache = CacheResult::None;
        self.rate_limit_logged = None;
        self.filter = None;
        self.cause = None;
        self.identity.clear();
        self.seq = seq;
    }

    /// Ends the request with a generated answer for `e` (or none).
    pub fn fail(&mut self, e: ProxyError) {
        self.exit = Exit::of_error(&e);
        self.cause = Some(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, Side};

    #[test]
    fn reset_starts_a_record_over() {
        let client = "192.0.2.1:4000".parse().unwrap();
        let t0 = Instant::now();
        let mut r = Record::new(client, 5, t0);
        r.route = Some(3);
        r.status = 502;
        r.bytes_in = 10;
        r.bytes_out = 20;
        r.upstream = Some(UpstreamTry {
            group: 1,
            server: 2,
            addr: client,
        });
        r.upstream_time = Some(Duration::from_millis(1));
        r.retries = 2;
        r.filter = Some((1, FilterAction::Log));
        r.fail(ProxyError::upstream(ErrorKind::BadGateway));
        let t1 = t0 + Duration::from_secs(1);
        r.reset(t1, 7, 1, 99);
        let fresh = Record {
            generation: 7,
            listener: 1,
            seq: 99,
            ..Record::new(client, 5, t1)
        };
        assert_eq!(format!("{r:?}"), format!("{fresh:?}"));
    }

    #[test]
    fn exit_of_each_error() {
        use ErrorKind::*;
        let table = [
            (BadRequest, Side::Downstream, Exit::Rejected),
            (NoRoute, Side::Downstream, Exit::Rejected),
            (BodyTooLarge, Side::Downstream, Exit::Rejected),
            (ClientTimeout, Side::Downstream, Exit::Timeout),
            (GatewayTimeout, Side::Upstream, Exit::Timeout),
            (BadGateway, Side::Upstream, Exit::UpstreamFailed),
            (Unavailable, Side::Upstream, Exit::UpstreamFailed),
            (UpstreamStatus(507), Side::Upstream, Exit::UpstreamFailed),
            (BadGateway, Side::Internal, Exit::UpstreamFailed),
            (ClientGone, Side::Downstream, Exit::ClientGone),
        ];
        for (kind, side, exit) in table {
            assert_eq!(
                Exit::of_error(&ProxyError::new(kind, side)),
                exit,
                "{kind:?}"
            );
        }
    }
}
