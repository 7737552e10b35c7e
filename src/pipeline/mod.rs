//! The request pipeline: a route's chain of filters, compiled into the
//! config snapshot, and the fixed phases every request passes through.
//! Pure policy: no I/O, no runtime; the data plane calls the phases.
//!
//! Phases, in order:
//! 1. `request` — after routing; a filter may answer (access rules, rate
//!    limits and cache hits plug in here).
//! 2. `upstream_request` — edits to the head sent upstream.
//! 3. `upstream_response` — the upstream's head, before anything is
//!    decided about it (cacheability, status rules).
//! 4. `response` — edits to the client's head and the body plan.
//! 5. `log` — exactly once per request, whatever its exit, with its
//!    `Record`.
//!
//! Dispatch is a `match` over `Filter`, so a phase is a loop over a
//! slice: an empty chain costs one length check per phase.

mod auth;
mod headers;
mod limit;
mod record;
mod rules;
mod text;
mod vars;
mod waf;

pub use auth::{
    ALGORITHMS, ApiKeys, AuthRule, AuthState, JwtOptions, JwtVerifier, Refusal, RequestAuth, Users,
    WithIdentity, render_unauthorized,
};
pub use headers::{HeaderEdits, Rendered};
pub use limit::{RateLimitRule, RequestLimits, render_limited};
pub use record::{CacheResult, Exit, Record, UpstreamTry};
pub use rules::{CacheRule, CompressRule, DEFAULT_TYPES, KeyPart};
pub use text::{MAX_REQUEST_ID, RequestText, WithRequestId, add_request_id, valid_request_id};
pub use vars::{RequestId, Template, Var, Vars};
pub use waf::{
    DEFAULTS as DEFAULT_FILTERS, Entry as FilterEntry, FilterAction, FilterScratch, FilterSet,
    RuleSpec, ValueMatch, WafRule, check_regex,
};

use crate::error::{ErrorKind, ProxyError};
use crate::http::RequestHead;
use crate::http::encode::FieldEdits;

/// One filter of a route's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// `allow` / `deny`: may answer 403 in the request phase, by the
    /// client's address.
    Access(std::sync::Arc<crate::net::IpAccess>),
    /// `request_headers`: edits to the head sent upstream.
    RequestHeaders(HeaderEdits),
    /// `response_headers`: edits to the head sent to the client.
    ResponseHeaders(HeaderEdits),
    /// `cache`: answers from a zone after routing (a hit), stores
    /// responses (upstream-response phase), fills while relaying.
    Cache(CacheRule),
    /// `compress`: picks a coding per request and chooses the body plan
    /// in the response phase.
    Compress(CompressRule),
    /// `rate_limit`: may answer 429 in the request phase.
    RateLimit(RateLimitRule),
    /// `auth`: may answer 401 in the request phase, before any rate
    /// limit; edits the upstream head (credentials out, identity in).
    Auth(AuthRule),
    /// `[[filters]]` rules and the default set: may answer (deny) in the
    /// request phase.
    Waf(WafRule),
}

/// How a response body reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyPlan {
    /// As it comes (re-framed if needed): the only plan that may splice
    /// or postpone.
    #[default]
    Identity,
    /// Piece by piece through the response work: decoded from its
    /// framing, compressed and/or copied into a cache fill, re-framed.
    Transform,
}

/// A route's compiled filters, in configured order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    filters: Vec<Filter>,
}

/// The chain of a route without filters.
pub static NO_FILTERS: Chain = Chain {
    filters: Vec::new(),
};

impl Chain {
    pub fn new(filters: Vec<Filter>) -> Chain {
        Chain { filters }
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// The route's cache rule, if it caches.
    pub fn cache(&self) -> Option<&CacheRule> {
        self.filters.iter().find_map(|f| match f {
            Filter::Cache(c) => Some(c),
            _ => None,
        })
    }

    /// The route's compression rule, if it compresses.
    pub fn compress(&self) -> Option<&CompressRule> {
        self.filters.iter().find_map(|f| match f {
            Filter::Compress(c) => Some(c),
            _ => None,
        })
    }

    /// The route's IP access list, if it has one.
    pub fn ip_access(&self) -> Option<&crate::net::IpAccess> {
        self.filters.iter().find_map(|f| match f {
            Filter::Access(a) => Some(&**a),
            _ => None,
        })
    }

    /// Whether the chain edits heads (the header filters).
    pub fn edits_heads(&self) -> bool {
        self.filters
            .iter()
            .any(|f| matches!(f, Filter::RequestHeaders(_) | Filter::ResponseHeaders(_)))
    }

    /// Whether the chain's request phase guards the route (may refuse a
    /// request by who sends it or what it holds); rate limits do not.
    pub fn guards_requests(&self) -> bool {
        self.filters.iter().any(|f| match f {
            Filter::Access(_) | Filter::Auth(_) => true,
            Filter::Waf(w) => w.denies(),
            _ => false,
        })
    }

    /// The route's auth rule, if it authenticates.
    pub fn auth(&self) -> Option<&AuthRule> {
        self.filters.iter().find_map(|f| match f {
            Filter::Auth(a) => Some(a),
            _ => None,
        })
    }

    /// The route's request filter, if it has one.
    pub fn waf(&self) -> Option<&WafRule> {
        self.filters.iter().find_map(|f| match f {
            Filter::Waf(w) => Some(w),
            _ => None,
        })
    }

    /// Phase 1: may end the request with an answer.
    pub fn request(
        &self,
        record: &mut Record,
        phase: &mut RequestPhase<'_>,
    ) -> Result<(), ProxyError> {
        for filter in self.filters.iter() {
            match filter {
                Filter::Access(acl) => {
                    if !acl.allows(phase.client_ip()) {
                        return Err(ProxyError::downstream(ErrorKind::Forbidden));
                    }
                }
                Filter::RateLimit(rule) => phase.limits.check(rule)?,
                Filter::Auth(rule) => phase.auth.check(rule, phase.req, &mut record.identity)?,
                Filter::Waf(rule) => rule.check(record, phase)?,
                Filter::RequestHeaders(_)
                | Filter::ResponseHeaders(_)
                | Filter::Cache(_)
                | Filter::Compress(_) => {}
            }
        }
        Ok(())
    }

    /// Whether the chain checks limit `limit` of the snapshot.
    pub fn uses_limit(&self, limit: usize) -> bool {
        self.filters
            .iter()
            .any(|f| matches!(f, Filter::RateLimit(r) if r.limits().contains(&limit)))
    }

    /// Phase 2: the edits to apply while the upstream head is written.
    pub fn upstream_request<'a>(&'a self, vars: &'a Vars<'a>) -> PhaseEdits<'a> {
        PhaseEdits {
            chain: self,
            vars,
            side: EditSide::Request,
        }
    }

    /// Phase 3: the upstream's final head has been parsed.
    pub fn upstream_response(&self, _status: u16, _record: &mut Record) {}

    /// Phase 4: the edits to the client's head, and the body plan.
    pub fn response<'a>(&'a self, vars: &'a Vars<'a>) -> (PhaseEdits<'a>, BodyPlan) {
        let edits = PhaseEdits {
            chain: self,
            vars,
            side: EditSide::Response,
        };
        (edits, BodyPlan::Identity)
    }

    /// The response phase's edits with their lines already rendered (by
    /// `response`), for an encoder that cannot borrow the request's values.
    pub fn response_with<'a>(&'a self, lines: &'a [u8]) -> Prerendered<'a> {
        Prerendered {
            chain: self,
            side: EditSide::Response,
            lines,
        }
    }

    /// Phase 5: once per request, when it has ended.
    pub fn log(&self, _record: &Record) {}
}

/// What the request phase reads of a request: the parsed head, the
/// normalised path it was routed by, and the worker's limiter (whose key
/// input carries the client's address) and filter scratch.
pub struct RequestPhase<'a> {
    pub req: &'a RequestHead<'a, 'a>,
    pub norm_path: &'a [u8],
    pub limits: RequestLimits<'a>,
    pub auth: RequestAuth<'a>,
    pub filters: &'a mut FilterScratch,
}

impl RequestPhase<'_> {
    /// The client's address (after PROXY protocol / trusted XFF).
    pub fn client_ip(&self) -> std::net::IpAddr {
        self.limits.input.client_ip
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EditSide {
    Request,
    Response,
}

/// The header edits of one phase of a chain, bound to a request's values.
pub struct PhaseEdits<'a> {
    chain: &'a Chain,
    vars: &'a Vars<'a>,
    side: EditSide,
}

impl Chain {
    /// The header edits of one side, in order.
    fn side(&self, side: EditSide) -> impl Iterator<Item = &HeaderEdits> {
        self.filters.iter().filter_map(move |f| match (f, side) {
            (Filter::RequestHeaders(e), EditSide::Request)
            | (Filter::ResponseHeaders(e), EditSide::Response) => Some(e),
            _ => None,
        })
    }
}

impl FieldEdits for PhaseEdits<'_> {
    fn drops(&self, name: &[u8]) -> bool {
        self.chain.side(self.side).any(|e| e.drops(name))
    }

    fn append(&self, out: &mut Vec<u8>) {
        for e in self.chain.side(self.side) {
            e.with(self.vars).append(out);
        }
    }
}

/// A side's header edits whose lines were rendered beforehand.
pub struct Prerendered<'a> {
    chain: &'a Chain,
    side: EditSide,
    lines: &'a [u8],
}

impl FieldEdits for Prerendered<'_> {
    fn drops(&self, name: &[u8]) -> bool {
        self.chain.side(self.side).any(|e| e.drops(name))
    }

    fn append(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.lines);
    }
}

/// Requests ended per exit kind, counted by a worker's logging phase.
#[derive(Debug, Default)]
pub struct ExitCounts {
    counts: [std::cell::Cell<u64>; Exit::ALL.len()],
}

impl ExitCounts {
    pub fn add(&self, exit: Exit) {
        let c = &self.counts[exit as usize];
        c.set(c.get() + 1);
    }

    pub fn snapshot(&self) -> [u64; Exit::ALL.len()] {
        std::array::from_fn(|i| self.counts[i].get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn vars() -> Vars<'static> {
        Vars {
            client: SocketAddr::from(([10, 1, 2, 3], 4000)),
            host: b"h",
            tls: false,
            request_id: b"",
            route: "r",
            listener: "l",
            tls_version: "",
            sni: b"",
            client_subject: b"",
        }
    }

    fn edits(name: &str, value: &str, replace: bool) -> HeaderEdits {
        let mut e = HeaderEdits::default();
        e.push(name, &Template::parse(value).unwrap(), replace);
        e
    }

    #[test]
    fn each_side_sees_only_its_edits() {
        let chain = Chain::new(vec![
            Filter::RequestHeaders(edits("X-Real-IP", "$client_ip", true)),
            Filter::ResponseHeaders(edits("X-Served-By", "$listener", false)),
        ]);
        let v = vars();
        let up = chain.upstream_request(&v);
        let mut out = Vec::new();
        up.append(&mut out);
        assert_eq!(out, b"X-Real-IP: 10.1.2.3\r\n");
        assert!(up.drops(b"x-real-ip"));
        let (down, plan) = chain.response(&v);
        assert_eq!(plan, BodyPlan::Identity);
        out.clear();
        down.append(&mut out);
        assert_eq!(out, b"X-Served-By: l\r\n");
        assert!(!down.drops(b"x-real-ip"));
    }

    #[test]
    fn an_empty_chain_edits_nothing() {
        let chain = Chain::default();
        let v = vars();
        let mut out = Vec::new();
        chain.upstream_request(&v).append(&mut out);
        assert!(out.is_empty());
        assert!(!chain.response(&v).0.drops(b"server"));
    }

    #[test]
    fn exit_counts() {
        let counts = ExitCounts::default();
        counts.add(Exit::Proxied);
        counts.add(Exit::Proxied);
        counts.add(Exit::Timeout);
        assert_eq!(counts.snapshot()[Exit::Proxied as usize], 2);
        assert_eq!(counts.snapshot()[Exit::Timeout as usize], 1);
    }
}
