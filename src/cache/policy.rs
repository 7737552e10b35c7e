//! The RFC 9111 policy of a shared response cache: Cache-Control
//! directives, whether a response may be stored and for how long, age,
//! whether a stored response may be used, conditional requests,
//! `Cache-Status` (RFC 9211) and the cache key. Pure: borrowed bytes in,
//! values or bytes appended to the caller's buffer out; nothing allocates.

use crate::http::date::parse_http_date;
use crate::http::fields::trim_ows;

/// RFC 9111 1.2.2: a delta-seconds too large to represent is taken as 2^31.
const DELTA_MAX: u32 = 1 << 31;

/// One `name[=value]` member of a Cache-Control or Pragma list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Directive<'a> {
    name: &'a [u8],
    /// Without the surrounding quotes; escapes are left in place because
    /// no value this cache reads may contain one.
    value: Option<&'a [u8]>,
}

/// The members of one field value, split on commas outside quoted strings
/// (`no-cache="a, b"` is one member).
struct Directives<'a> {
    rest: &'a [u8],
}

impl<'a> Directives<'a> {
    fn new(value: &'a [u8]) -> Self {
        Directives { rest: value }
    }
}

impl<'a> Iterator for Directives<'a> {
    type Item = Directive<'a>;

    fn next(&mut self) -> Option<Directive<'a>> {
        while !self.rest.is_empty() {
            let (member, rest) = self.rest.split_at(member_end(self.rest));
            self.rest = rest.get(1..).unwrap_or_default();
            let member = trim_ows(member);
            if !member.is_empty() {
                return Some(split_directive(member));
            }
        }
        None
    }
}

/// Index of the comma that ends the first member, or the length.
fn member_end(s: &[u8]) -> usize {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in s.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => return i,
            _ => {}
        }
    }
    s.len()
}

fn split_directive(member: &[u8]) -> Directive<'_> {
    match member.iter().position(|&b| b == b'=') {
        None => Directive {
            name: member,
            value: None,
        },
        Some(i) => Directive {
            name: trim_ows(&member[..i]),
            value: Some(unquote(trim_ows(&member[i + 1..]))),
        },
    }
}

fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

/// delta-seconds (RFC 9111 1.2.2), saturated at 2^31; None unless digits.
fn delta_seconds(v: &[u8]) -> Option<u32> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u32, |acc, &b| {
        acc.saturating_mul(10)
            .saturating_add(u32::from(b - b'0'))
            .min(DELTA_MAX)
    }))
}

/// The directives this cache acts on; anything else is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    NoStore,
    NoCache,
    MaxAge,
    MaxStale,
    MinFresh,
    OnlyIfCached,
    Private,
    Public,
    SMaxage,
    MustRevalidate,
    ProxyRevalidate,
    StaleWhileRevalidate,
    StaleIfError,
    NoTransform,
    Immutable,
}

const NAMES: [(&[u8], Name); 15] = [
    (b"no-store", Name::NoStore),
    (b"no-cache", Name::NoCache),
    (b"max-age", Name::MaxAge),
    (b"max-stale", Name::MaxStale),
    (b"min-fresh", Name::MinFresh),
    (b"only-if-cached", Name::OnlyIfCached),
    (b"private", Name::Private),
    (b"public", Name::Public),
    (b"s-maxage", Name::SMaxage),
    (b"must-revalidate", Name::MustRevalidate),
    (b"proxy-revalidate", Name::ProxyRevalidate),
    (b"stale-while-revalidate", Name::StaleWhileRevalidate),
    (b"stale-if-error", Name::StaleIfError),
    (b"no-transform", Name::NoTransform),
    (b"immutable", Name::Immutable),
];

fn lookup(name: &[u8]) -> Option<Name> {
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, id)| id)
}

/// Cache-Control directives of a request (RFC 9111 5.2.1).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestControl {
    pub no_store: bool,
    pub no_cache: bool,
    pub max_age: Option<u32>,
    /// `u32::MAX` when given without a value: any staleness is accepted.
    pub max_stale: Option<u32>,
    pub min_fresh: Option<u32>,
    pub only_if_cached: bool,
}

impl RequestControl {
    /// Reads every Cache-Control field line, and Pragma only when there is
    /// no Cache-Control field (RFC 9111 5.4).
    pub fn parse<'a>(
        cache_control: impl Iterator<Item = &'a [u8]>,
        pragma: impl Iterator<Item = &'a [u8]>,
    ) -> RequestControl {
        let mut c = RequestControl::default();
        let mut has_cache_control = false;
        for value in cache_control {
            has_cache_control = true;
            Directives::new(value).for_each(|d| c.apply(d));
        }
        if !has_cache_control {
            c.no_cache = pragma
                .flat_map(Directives::new)
                .any(|d| d.name.eq_ignore_ascii_case(b"no-cache"));
        }
        c
    }

    /// The first occurrence of a valued directive wins. A malformed
    /// max-age asks for revalidation (the cautious reading); a malformed
    /// max-stale or min-fresh is ignored, so junk never buys staleness.
    fn apply(&mut self, d: Directive<'_>) {
        let delta = d.value.and_then(delta_seconds);
        match lookup(d.name) {
            Some(Name::NoStore) => self.no_store = true,
            Some(Name::NoCache) => self.no_cache = true,
            Some(Name::OnlyIfCached) => self.only_if_cached = true,
            Some(Name::MaxAge) => self.max_age = self.max_age.or(Some(delta.unwrap_or(0))),
            Some(Name::MaxStale) if d.value.is_none() => {
                self.max_stale = self.max_stale.or(Some(u32::MAX));
            }
            Some(Name::MaxStale) => self.max_stale = self.max_stale.or(delta),
            Some(Name::MinFresh) => self.min_fresh = self.min_fresh.or(delta),
            _ => {}
        }
    }
}

/// Cache-Control directives of a response (RFC 9111 5.2.2, RFC 5861,
/// RFC 8246).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResponseControl {
    /// Also set by the qualified `no-cache="field"`: a shared cache may
    /// treat it as unqualified, which is simpler and never less safe.
    pub no_store: bool,
    pub no_cache: bool,
    /// Also set by the qualified `private="field"`, for the same reason.
    pub private: bool,
    pub public: bool,
    pub max_age: Option<u32>,
    pub s_maxage: Option<u32>,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub stale_while_revalidate: Option<u32>,
    pub stale_if_error: Option<u32>,
    pub no_transform: bool,
    pub immutable: bool,
}

impl ResponseControl {
    /// Reads every Cache-Control field line of a response.
    pub fn parse<'a>(values: impl Iterator<Item = &'a [u8]>) -> ResponseControl {
        let mut c = ResponseControl::default();
        values.flat_map(Directives::new).for_each(|d| c.apply(d));
        c
    }

    fn apply(&mut self, d: Directive<'_>) {
        let delta = d.value.and_then(delta_seconds);
        match lookup(d.name) {
            Some(Name::NoStore) => self.no_store = true,
            Some(Name::NoCache) => self.no_cache = true,
            Some(Name::Private) => self.private = true,
            Some(Name::Public) => self.public = true,
            Some(Name::MustRevalidate) => self.must_revalidate = true,
            Some(Name::ProxyRevalidate) => self.proxy_revalidate = true,
            Some(Name::NoTransform) => self.no_transform = true,
            Some(Name::Immutable) => self.immutable = true,
            Some(Name::MaxAge) => self.max_age = Some(freshness(self.max_age, delta)),
            Some(Name::SMaxage) => self.s_maxage = Some(freshness(self.s_maxage, delta)),
            Some(Name::StaleWhileRevalidate) => {
                self.stale_while_revalidate = stale_window(self.stale_while_revalidate, delta);
            }
            Some(Name::StaleIfError) => {
                self.stale_if_error = stale_window(self.stale_if_error, delta);
            }
            _ => {}
        }
    }
}

/// RFC 9111 4.2.1: invalid freshness (`max-age=abc`) and conflicting
/// repeats (`max-age=60, max-age=600`) both make the response stale.
fn freshness(before: Option<u32>, now: Option<u32>) -> u32 {
    match (before, now) {
        (_, None) => 0,
        (Some(b), Some(n)) if b != n => 0,
        (_, Some(n)) => n,
    }
}

/// A malformed stale window is ignored and repeats keep the smaller one:
/// serving stale is a permission, so doubt takes it away.
fn stale_window(before: Option<u32>, now: Option<u32>) -> Option<u32> {
    match (before, now) {
        (Some(b), Some(n)) => Some(b.min(n)),
        (b, n) => b.or(n),
    }
}

/// The fields a response's `Vary` lines name (RFC 9110 12.5.5).
#[derive(Debug, Clone, Copy)]
pub enum Vary<'a> {
    None,
    /// `Vary: *` on any line: no later request can be matched to it.
    Star,
    /// The response head; [`Vary::names`] walks the names it varies on.
    Fields(&'a [httparse::Header<'a>]),
}

impl<'a> Vary<'a> {
    pub fn from_headers(headers: &'a [httparse::Header<'a>]) -> Vary<'a> {
        let mut names = vary_names(headers).peekable();
        if names.peek().is_none() {
            Vary::None
        } else if names.any(|n| n == b"*") {
            Vary::Star
        } else {
            Vary::Fields(headers)
        }
    }

    pub fn is_star(&self) -> bool {
        matches!(self, Vary::Star)
    }

    /// The varied field names as sent (compare them ignoring ASCII case);
    /// nothing for `None` and `Star`.
    pub fn names(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let headers: &'a [httparse::Header<'a>] = match self {
            Vary::Fields(h) => h,
            Vary::None | Vary::Star => &[],
        };
        vary_names(headers)
    }
}

/// Every member of every `Vary` line, trimmed, empty members skipped.
pub fn vary_names<'a>(headers: &'a [httparse::Header<'a>]) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("vary"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|n| !n.is_empty())
}

/// What the store decision and the stored entry need from a response head.
#[derive(Debug, Clone, Copy)]
pub struct ResponseFacts<'a> {
    pub status: u16,
    pub control: ResponseControl,
    pub date: Option<u64>,
    /// Expires present: Some(Some(t)) valid, Some(None) invalid (= already
    /// expired, RFC 9111 5.3).
    pub expires: Option<Option<u64>>,
    pub age: Option<u64>,
    pub last_modified: Option<u64>,
    pub etag: Option<&'a [u8]>,
    pub vary: Vary<'a>,
    pub set_cookie: bool,
    pub content_encoding: Option<&'a [u8]>,
}

impl<'a> ResponseFacts<'a> {
    /// Reads a parsed head. The facts borrow `headers` (the `Vary` names
    /// are walked from it later), so they live no longer than that array.
    /// Repeated singleton fields: the first valid one counts.
    pub fn from_headers(status: u16, headers: &'a [httparse::Header<'a>]) -> ResponseFacts<'a> {
        let cache_control = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cache-control"))
            .map(|h| h.value);
        let mut facts = ResponseFacts {
            status,
            control: ResponseControl::parse(cache_control),
            date: None,
            expires: None,
            age: None,
            last_modified: None,
            etag: None,
            vary: Vary::from_headers(headers),
            set_cookie: false,
            content_encoding: None,
        };
        headers.iter().for_each(|h| facts.note(h.name, h.value));
        facts
    }

    fn note(&mut self, name: &str, value: &'a [u8]) {
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("date") {
            self.date = self.date.or_else(|| parse_http_date(value));
        } else if is("expires") {
            self.expires = self.expires.or(Some(parse_http_date(value)));
        } else if is("age") {
            self.age = self.age.or_else(|| age_value(value));
        } else if is("last-modified") {
            self.last_modified = self.last_modified.or_else(|| parse_http_date(value));
        } else if is("etag") {
            self.etag = self.etag.or(Some(trim_ows(value)));
        } else if is("set-cookie") {
            self.set_cookie = true;
        } else if is("content-encoding") {
            self.content_encoding = self.content_encoding.or(Some(trim_ows(value)));
        }
    }
}

/// RFC 9111 5.1: the first member of a list-valued Age is used, and an
/// invalid one is ignored.
fn age_value(v: &[u8]) -> Option<u64> {
    let first = v.split(|&b| b == b',').next().unwrap_or_default();
    delta_seconds(trim_ows(first)).map(u64::from)
}

/// A cache zone's configured policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZonePolicy<'a> {
    /// Freshness for heuristically cacheable responses without explicit
    /// freshness; None turns heuristic freshness off.
    pub default_ttl: Option<u32>,
    /// Per-status freshness, used only when the upstream gave none.
    pub ttl: &'a [(u16, u32)],
    pub store_set_cookie: bool,
}

/// What the store decision needs from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFacts {
    /// GET; HEAD is never stored (it has no body to store).
    pub method_get: bool,
    pub control: RequestControl,
    pub authorization: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Store(Lifetime),
    Skip(NotStored),
}

/// How long a stored response is fresh and what may happen after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub fresh: u32,
    pub stale_while_revalidate: u32,
    pub stale_if_error: u32,
    /// must-revalidate, proxy-revalidate or s-maxage (which implies
    /// proxy-revalidate, RFC 9111 5.2.2.10): never served stale.
    pub must_revalidate: bool,
    /// Stored, but every use is revalidated first.
    pub no_cache: bool,
}

/// Why a response was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    Method,
    Status,
    RequestNoStore,
    NoStore,
    Private,
    Authorization,
    SetCookie,
    VaryStar,
    NoFreshness,
}

impl NotStored {
    /// A token for the `detail` parameter of `Cache-Status`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotStored::Method => "method",
            NotStored::Status => "status",
            NotStored::RequestNoStore => "request-no-store",
            NotStored::NoStore => "no-store",
            NotStored::Private => "private",
            NotStored::Authorization => "authorization",
            NotStored::SetCookie => "set-cookie",
            NotStored::VaryStar => "vary-star",
            NotStored::NoFreshness => "no-freshness",
        }
    }
}

/// RFC 9111 section 3 for a shared cache. `response_time` stands in for a
/// missing Date when Expires is turned into a lifetime.
///
/// A lifetime of 0 without validators is still `Store`: whether such an
/// entry is worth keeping (only for collapsing, or not at all) is the
/// caller's choice, which sees the validators in the facts.
pub fn storable(
    req: &RequestFacts,
    resp: &ResponseFacts<'_>,
    zone: &ZonePolicy<'_>,
    response_time: u64,
) -> Verdict {
    if let Some(why) = refusal(req, resp, zone) {
        return Verdict::Skip(why);
    }
    match freshness_lifetime(resp, zone, response_time) {
        Some(fresh) => Verdict::Store(lifetime(&resp.control, fresh)),
        None => Verdict::Skip(NotStored::NoFreshness),
    }
}

fn refusal(
    req: &RequestFacts,
    resp: &ResponseFacts<'_>,
    zone: &ZonePolicy<'_>,
) -> Option<NotStored> {
    let c = &resp.control;
    // RFC 9111 3.5: these three say the response is meant for sharing.
    let shareable = c.public || c.s_maxage.is_some() || c.must_revalidate;
    let why = if !req.method_get {
        NotStored::Method
    } else if !storable_status(resp.status) {
        NotStored::Status
    } else if req.control.no_store {
        NotStored::RequestNoStore
    } else if c.no_store {
        NotStored::NoStore
    } else if c.private {
        NotStored::Private
    } else if req.authorization && !shareable {
        NotStored::Authorization
    } else if resp.set_cookie && !zone.store_set_cookie {
        NotStored::SetCookie
    } else if resp.vary.is_star() {
        NotStored::VaryStar
    } else {
        return None;
    };
    Some(why)
}

/// Final statuses whose meaning this cache understands. 206 is left out
/// (ranges are not stored here) and so is 304 (it updates an entry).
fn storable_status(status: u16) -> bool {
    matches!(
        status,
        200..=205 | 300..=303 | 307 | 308 | 400..=417 | 421..=426 | 428 | 429 | 431 | 451
            | 500..=505 | 511
    )
}

/// RFC 9110 15.1.
fn heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// RFC 9111 4.2.1, then configuration. The zone's per-status `ttl`
/// applies only when the upstream sent no explicit freshness, as nginx's
/// `proxy_cache_valid` does: an origin that says `max-age` is obeyed.
fn freshness_lifetime(
    resp: &ResponseFacts<'_>,
    zone: &ZonePolicy<'_>,
    response_time: u64,
) -> Option<u32> {
    explicit_freshness(resp, response_time).or_else(|| configured_freshness(resp, zone))
}

/// The lifetime a response gives itself (`s-maxage`, `max-age`,
/// `Expires`), if it gives one: what a 304 to a revalidation renews a
/// stored response with.
pub fn explicit_lifetime(resp: &ResponseFacts<'_>, response_time: u64) -> Option<Lifetime> {
    explicit_freshness(resp, response_time).map(|fresh| lifetime(&resp.control, fresh))
}

/// Whether an entry of this age may answer a request whose upstream
/// failed (RFC 9111 4.2.4, RFC 5861 4).
pub fn usable_on_error(age: u64, life: &Lifetime, req: &RequestControl) -> bool {
    may_serve_on_error(age, life, req)
}

fn explicit_freshness(resp: &ResponseFacts<'_>, response_time: u64) -> Option<u32> {
    let c = &resp.control;
    let from_expires = |e: Option<u64>| {
        let date = resp.date.unwrap_or(response_time);
        // An invalid Expires means "already expired" (RFC 9111 5.3).
        e.map_or(0, |t| {
            t.saturating_sub(date).min(u64::from(DELTA_MAX)) as u32
        })
    };
    c.s_maxage
        .or(c.max_age)
        .or_else(|| resp.expires.map(from_expires))
}

/// Heuristic freshness is off unless the zone sets `default_ttl`; `public`
/// makes any status eligible (RFC 9111 4.2.2).
fn configured_freshness(resp: &ResponseFacts<'_>, zone: &ZonePolicy<'_>) -> Option<u32> {
    if let Some(&(_, ttl)) = zone.ttl.iter().find(|(s, _)| *s == resp.status) {
        return Some(ttl);
    }
    let eligible = heuristically_cacheable(resp.status) || resp.control.public;
    zone.default_ttl.filter(|_| eligible)
}

fn lifetime(c: &ResponseControl, fresh: u32) -> Lifetime {
    Lifetime {
        fresh,
        stale_while_revalidate: c.stale_while_revalidate.unwrap_or(0),
        stale_if_error: c.stale_if_error.unwrap_or(0),
        must_revalidate: c.must_revalidate || c.proxy_revalidate || c.s_maxage.is_some(),
        no_cache: c.no_cache,
    }
}

/// corrected_initial_age (RFC 9111 4.2.3). A Date ahead of our clock
/// counts as no apparent age rather than a negative one.
pub fn initial_age(resp: &ResponseFacts<'_>, request_time: u64, response_time: u64) -> u64 {
    let apparent = resp.date.map_or(0, |d| response_time.saturating_sub(d));
    let delay = response_time.saturating_sub(request_time);
    let corrected = resp.age.unwrap_or(0).saturating_add(delay);
    apparent.max(corrected)
}

/// current_age (RFC 9111 4.2.3); a clock that stepped back adds nothing.
pub fn current_age(initial_age: u64, response_time: u64, now: u64) -> u64 {
    initial_age.saturating_add(now.saturating_sub(response_time))
}

/// How a stored response may be used for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Fresh,
    /// Stale but within stale-while-revalidate: serve it and refresh in
    /// the background.
    StaleWhileRevalidate,
    /// Must go to the upstream (validators may be used). `if_error`: the
    /// entry may be served if the upstream fails (stale-if-error window,
    /// request max-stale, or the entry is still fresh).
    Revalidate {
        if_error: bool,
    },
}

/// RFC 9111 4.2 and 5.2 for one request. `only-if-cached` is left to the
/// caller: anything but `Fresh` or `StaleWhileRevalidate` then becomes 504.
pub fn judge(age: u64, life: &Lifetime, req: &RequestControl) -> Use {
    let fresh = u64::from(life.fresh);
    let revalidate = Use::Revalidate {
        if_error: may_serve_on_error(age, life, req),
    };
    // `max-age=0` is how browsers ask for a reload: revalidate even an
    // entry stored this second, as other shared caches do.
    let too_old = req.max_age.is_some_and(|m| m == 0 || age > u64::from(m));
    if life.no_cache || req.no_cache || too_old {
        return revalidate;
    }
    if age < fresh {
        let left = fresh - age;
        return if req.min_fresh.is_none_or(|m| left >= u64::from(m)) {
            Use::Fresh
        } else {
            revalidate
        };
    }
    // Stale from here. A client asking for min-fresh wants freshness, not
    // a stale answer it might otherwise tolerate.
    if life.must_revalidate || req.min_fresh.is_some() {
        return revalidate;
    }
    let over = age - fresh;
    if req.max_stale.is_some_and(|m| over <= u64::from(m)) {
        Use::Fresh
    } else if over < u64::from(life.stale_while_revalidate) {
        Use::StaleWhileRevalidate
    } else {
        revalidate
    }
}

/// RFC 9111 4.2.4 and RFC 5861 4: a failed upstream may be papered over
/// with the entry unless a directive forbids serving it unvalidated. The
/// stale-if-error window starts when the entry became stale.
fn may_serve_on_error(age: u64, life: &Lifetime, req: &RequestControl) -> bool {
    if life.no_cache {
        return false;
    }
    let Some(over) = age.checked_sub(u64::from(life.fresh)) else {
        return true;
    };
    // must-revalidate speaks of stale entries only: a fresh one may stand in.
    let in_window = over < u64::from(life.stale_if_error);
    let tolerated = req.max_stale.is_some_and(|m| over <= u64::from(m));
    !life.must_revalidate && (in_window || tolerated)
}

/// Weak comparison (RFC 9110 8.8.3.2) of `etag` against an If-None-Match
/// value: `*`, or a list of entity-tags. Tags may contain commas, so the
/// list is walked tag by tag; a malformed rest matches nothing.
pub fn etag_matches_weak(list: &[u8], etag: &[u8]) -> bool {
    let list = trim_ows(list);
    if list == b"*" {
        return true;
    }
    let want = opaque_tag(trim_ows(etag));
    let mut rest = list;
    loop {
        rest = skip_separators(rest);
        let Some((tag, after)) = next_entity_tag(rest) else {
            return false;
        };
        if opaque_tag(tag) == want {
            return true;
        }
        rest = after;
    }
}

fn opaque_tag(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag)
}

fn skip_separators(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t' | b','))
        .unwrap_or(s.len());
    &s[start..]
}

/// The entity-tag at the start of `s` (with any `W/`) and what follows.
fn next_entity_tag(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let prefix = if s.starts_with(b"W/") { 2 } else { 0 };
    let body = s.get(prefix..)?.strip_prefix(b"\"")?;
    let close = body.iter().position(|&b| b == b'"')?;
    let end = prefix + close + 2;
    Some((&s[..end], &s[end..]))
}

/// Whether a GET for a stored response is answered 304 (RFC 9110 13.2.2):
/// If-None-Match decides alone when present (13.1.3 says If-Modified-Since
/// is then ignored); otherwise a valid If-Modified-Since at or after
/// Last-Modified. Several If-None-Match lines may be joined with commas
/// by the caller, or checked one by one with the answers or-ed.
pub fn not_modified(
    if_none_match: Option<&[u8]>,
    if_modified_since: Option<&[u8]>,
    etag: Option<&[u8]>,
    last_modified: Option<u64>,
) -> bool {
    if let Some(list) = if_none_match {
        // `*` matches any stored representation, even one without an ETag.
        return match etag {
            Some(tag) => etag_matches_weak(list, tag),
            None => trim_ows(list) == b"*",
        };
    }
    match (if_modified_since.and_then(parse_http_date), last_modified) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// The `fwd` parameter of `Cache-Status` (RFC 9211 2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fwd {
    /// The cache was configured not to handle this request.
    #[default]
    Bypass,
    /// The request method is not cacheable.
    Method,
    /// Nothing stored for this key (`uri-miss`).
    Uri,
    /// Something stored for this key, but Vary did not match.
    VaryMiss,
    /// Not in cache, reason unspecified.
    Miss,
    /// Request directives forced it.
    Request,
    /// A stored response was stale and went for validation.
    Stale,
    /// Only part of the response was stored.
    Partial,
}

impl Fwd {
    fn token(self) -> &'static [u8] {
        match self {
            Fwd::Bypass => b"bypass",
            Fwd::Method => b"method",
            Fwd::Uri => b"uri-miss",
            Fwd::VaryMiss => b"vary-miss",
            Fwd::Miss => b"miss",
            Fwd::Request => b"request",
            Fwd::Stale => b"stale",
            Fwd::Partial => b"partial",
        }
    }
}

/// How this cache handled one request, for `Cache-Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served fresh from the cache; `ttl` is the freshness left.
    Hit { ttl: i64 },
    /// Served stale within stale-while-revalidate (a refresh follows).
    /// RFC 9211 marks staleness by a negative ttl, so `ttl` is written
    /// negative whichever sign the caller passes, with
    /// `detail=stale-while-revalidate`.
    StaleHit { ttl: i64 },
    /// Served stale because the upstream failed; as `StaleHit`, plus
    /// `detail=stale-if-error`.
    StaleIfError { ttl: i64 },
    Forward {
        fwd: Fwd,
        /// `fwd-status`: the upstream's status (e.g. 304 after validation).
        status: Option<u16>,
        stored: bool,
        collapsed: bool,
        /// e.g. a [`NotStored::as_str`] token.
        detail: Option<&'static str>,
    },
}

/// The bounds of a structured-field Integer (RFC 8941 3.3.1).
const SF_INTEGER_MAX: i64 = 999_999_999_999_999;

/// Appends a whole `Cache-Status` field line, e.g.
/// `Cache-Status: ringress; hit; ttl=12\r\n`. The cache name and detail
/// go out as tokens when they are valid ones, else as quoted strings.
pub fn write_cache_status(out: &mut Vec<u8>, cache_name: &str, s: &CacheStatus) {
    out.extend_from_slice(b"Cache-Status: ");
    push_sf_item(out, cache_name.as_bytes());
    match *s {
        CacheStatus::Hit { ttl } => push_hit(out, ttl),
        CacheStatus::StaleHit { ttl } => {
            push_hit(out, ttl.saturating_abs().saturating_neg());
            out.extend_from_slice(b"; detail=stale-while-revalidate");
        }
        CacheStatus::StaleIfError { ttl } => {
            push_hit(out, ttl.saturating_abs().saturating_neg());
            out.extend_from_slice(b"; detail=stale-if-error");
        }
        CacheStatus::Forward {
            fwd,
            status,
            stored,
            collapsed,
            detail,
        } => {
            push_forward(out, fwd, status, stored, collapsed, detail);
        }
    }
    out.extend_from_slice(b"\r\n");
}

fn push_hit(out: &mut Vec<u8>, ttl: i64) {
    out.extend_from_slice(b"; hit; ttl=");
    let ttl = ttl.clamp(-SF_INTEGER_MAX, SF_INTEGER_MAX);
    out.extend_from_slice(itoa::Buffer::new().format(ttl).as_bytes());
}

fn push_forward(
    out: &mut Vec<u8>,
    fwd: Fwd,
    status: Option<u16>,
    stored: bool,
    collapsed: bool,
    detail: Option<&str>,
) {
    out.extend_from_slice(b"; fwd=");
    out.extend_from_slice(fwd.token());
    if let Some(status) = status {
        out.extend_from_slice(b"; fwd-status=");
        out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    }
    // Booleans are written only when true: `stored` alone means ?1.
    if stored {
        out.extend_from_slice(b"; stored");
    }
    if collapsed {
        out.extend_from_slice(b"; collapsed");
    }
    if let Some(detail) = detail {
        out.extend_from_slice(b"; detail=");
        push_sf_item(out, detail.as_bytes());
    }
}

/// A structured-field Token when `v` is one, else a String; bytes a
/// String cannot carry (controls, non-ASCII) are dropped.
fn push_sf_item(out: &mut Vec<u8>, v: &[u8]) {
    if is_sf_token(v) {
        out.extend_from_slice(v);
        return;
    }
    out.push(b'"');
    for &b in v.iter().filter(|b| (b' '..=b'~').contains(*b)) {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// RFC 8941 3.3.4: ( ALPHA / "*" ) *( tchar / ":" / "/" ).
fn is_sf_token(v: &[u8]) -> bool {
    let Some((&first, rest)) = v.split_first() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == b'*')
        && rest
            .iter()
            .all(|&b| crate::http::fields::is_tchar(b) || b == b':' || b == b'/')
}

/// Separates the key's parts; no part can hold a raw one (they are
/// percent-encoded), so two different requests never share a key.
const KEY_SEP: u8 = b'\n';

/// Appends the cache key: scheme, host (lowercased, default port dropped)
/// and path (percent-encoding normalised, RFC 3986 6.2.2.2), each ended by
/// `\n`, then `?query` as sent when there is one. Dot segments and `%2F`
/// are left alone: the router has normalised what it routes on.
pub fn write_key(out: &mut Vec<u8>, tls: bool, host: &[u8], path: &[u8], query: &[u8]) {
    out.extend_from_slice(if tls { b"https" } else { b"http" });
    out.push(KEY_SEP);
    let host = without_default_port(host, tls);
    // Most hosts, paths and queries need no byte changed: copied whole.
    if host.iter().any(|&b| b.is_ascii_uppercase() || b == KEY_SEP) {
        for &b in host {
            push_key_byte(out, b.to_ascii_lowercase());
        }
    } else {
        out.extend_from_slice(host);
    }
    out.push(KEY_SEP);
    if path.iter().any(|&b| matches!(b, b'%' | b'?' | KEY_SEP)) {
        push_key_path(out, path);
    } else {
        out.extend_from_slice(path);
    }
    if !query.is_empty() {
        out.push(b'?');
        if query.contains(&KEY_SEP) {
            query.iter().for_each(|&b| push_key_byte(out, b));
        } else {
            out.extend_from_slice(query);
        }
    }
}

fn without_default_port(host: &[u8], tls: bool) -> &[u8] {
    let port: &[u8] = if tls { b":443" } else { b":80" };
    let host = host.strip_suffix(port).unwrap_or(host);
    // An empty port means the default too (RFC 3986 6.2.3).
    host.strip_suffix(b":").unwrap_or(host)
}

fn push_key_byte(out: &mut Vec<u8>, b: u8) {
    if b == KEY_SEP {
        out.extend_from_slice(b"%0A");
    } else {
        out.push(b);
    }
}

/// `%7e` and `~` name the same resource, `%2f` and `%2F` too; `/` and
/// `%2F` do not, so only unreserved characters are decoded. A raw `?`
/// is encoded so a path can never pass for a path plus query.
fn push_key_path(out: &mut Vec<u8>, path: &[u8]) {
    let mut i = 0;
    while let Some(&b) = path.get(i) {
        let decoded = match b {
            b'%' => path.get(i + 1..i + 3).and_then(hex_byte),
            _ => None,
        };
        match decoded {
            Some(v) if is_unreserved(v) => out.push(v),
            Some(v) => push_percent(out, v),
            None if b == b'?' => out.extend_from_slice(b"%3F"),
            None => push_key_byte(out, b),
        }
        i += if decoded.is_some() { 3 } else { 1 };
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    match pair {
        [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
        _ => None,
    }
}

fn push_percent(out: &mut Vec<u8>, v: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[usize::from(v >> 4)], HEX[usize::from(v & 15)]]);
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// A fixed-seed 64-bit hash of a cache key. It picks the core that owns
/// the key, so it must agree across threads and runs: no random seed.
/// FxHash-style word mixing, then the MurmurHash3 finaliser so the low
/// bits (taken modulo the core count) depend on every input bit.
pub fn key_hash(key: &[u8]) -> u64 {
    const SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;
    let step = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(SPREAD);
    let mut chunks = key.chunks_exact(8);
    let mut h = (&mut chunks).fold(key.len() as u64, |h, c| step(h, le_word(c)));
    h = step(h, le_word(chunks.remainder()));
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn le_word(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0, |w, &b| w << 8 | u64::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cc: &[&str], pragma: &[&str]) -> RequestControl {
        RequestControl::parse(
            cc.iter().map(|s| s.as_bytes()),
            pragma.iter().map(|s| s.as_bytes()),
        )
    }

    fn resp(cc: &[&str]) -> ResponseControl {
        ResponseControl::parse(cc.iter().map(|s| s.as_bytes()))
    }

    #[test]
    fn splits_members_outside_quotes() {
        let got: Vec<_> = Directives::new(br#" a, b=1 ,c="x, y",, D = "2" ,e="q\",r""#)
            .map(|d| (d.name, d.value))
            .collect();
        let want: Vec<(&[u8], Option<&[u8]>)> = vec![
            (b"a", None),
            (b"b", Some(b"1")),
            (b"c", Some(b"x, y")),
            (b"D", Some(b"2")),
            (b"e", Some(br#"q\",r"#)),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn delta_seconds_saturates_and_rejects_junk() {
        let cases: &[(&str, Option<u32>)] = &[
            ("0", Some(0)),
            ("60", Some(60)),
            ("2147483647", Some(2_147_483_647)),
            ("2147483648", Some(DELTA_MAX)),
            ("99999999999999999999999", Some(DELTA_MAX)),
            ("", None),
            ("-1", None),
            ("1.5", None),
            ("abc", None),
            ("+5", None),
        ];
        for &(v, want) in cases {
            assert_eq!(delta_seconds(v.as_bytes()), want, "{v}");
        }
    }

    #[test]
    fn request_directives() {
        let cases: &[(&[&str], &[&str], RequestControl)] = &[
            (&[], &[], RequestControl::default()),
            (
                &["No-Store, NO-CACHE", "only-if-cached"],
                &[],
                RequestControl {
                    no_store: true,
                    no_cache: true,
                    only_if_cached: true,
                    ..Default::default()
                },
            ),
            (
                &["max-age=\"30\", max-age=10", "min-fresh=5, max-stale=7"],
                &[],
                RequestControl {
                    max_age: Some(30),
                    min_fresh: Some(5),
                    max_stale: Some(7),
                    ..Default::default()
                },
            ),
            (
                &["max-stale"],
                &[],
                RequestControl {
                    max_stale: Some(u32::MAX),
                    ..Default::default()
                },
            ),
            (
                &["max-age=abc, max-stale=x, min-fresh="],
                &[],
                RequestControl {
                    max_age: Some(0),
                    ..Default::default()
                },
            ),
            (&["x-foo=1, bar"], &[], RequestControl::default()),
            (
                &[],
                &["no-cache"],
                RequestControl {
                    no_cache: true,
                    ..Default::default()
                },
            ),
            (
                &[],
                &["x, No-Cache"],
                RequestControl {
                    no_cache: true,
                    ..Default::default()
                },
            ),
            (
                &["max-age=5"],
                &["no-cache"],
                RequestControl {
                    max_age: Some(5),
                    ..Default::default()
                },
            ),
            (&[""], &["no-cache"], RequestControl::default()),
        ];
        for (cc, pragma, want) in cases {
            assert_eq!(req(cc, pragma), *want, "{cc:?} {pragma:?}");
        }
    }

    #[test]
    fn response_directives() {
        let all = resp(&[
            "public, private, no-store, no-cache, must-revalidate",
            "proxy-revalidate, no-transform, immutable, max-age=1, s-maxage=2",
            "stale-while-revalidate=3, stale-if-error=4, x-unknown=\"5\"",
        ]);
        let want = ResponseControl {
            no_store: true,
            no_cache: true,
            private: true,
            public: true,
            max_age: Some(1),
            s_maxage: Some(2),
            must_revalidate: true,
            proxy_revalidate: true,
            stale_while_revalidate: Some(3),
            stale_if_error: Some(4),
            no_transform: true,
            immutable: true,
        };
        assert_eq!(all, want);
    }

    #[test]
    fn response_values_malformed_quoted_and_repeated() {
        let cases: &[(&[&str], ResponseControl)] = &[
            (
                &["MAX-AGE=\"60\""],
                ResponseControl {
                    max_age: Some(60),
                    ..Default::default()
                },
            ),
            (
                &["max-age=abc"],
                ResponseControl {
                    max_age: Some(0),
                    ..Default::default()
                },
            ),
            (
                &["s-maxage"],
                ResponseControl {
                    s_maxage: Some(0),
                    ..Default::default()
                },
            ),
            (
                &["max-age=60", "max-age=60"],
                ResponseControl {
                    max_age: Some(60),
                    ..Default::default()
                },
            ),
            (
                &["max-age=60, max-age=600"],
                ResponseControl {
                    max_age: Some(0),
                    ..Default::default()
                },
            ),
            (
                &["max-age=99999999999"],
                ResponseControl {
                    max_age: Some(DELTA_MAX),
                    ..Default::default()
                },
            ),
            (
                &["stale-if-error=x, stale-while-revalidate"],
                ResponseControl::default(),
            ),
            (
                &["stale-if-error=60, stale-if-error=30"],
                ResponseControl {
                    stale_if_error: Some(30),
                    ..Default::default()
                },
            ),
            (
                &["no-cache=\"Set-Cookie, X-Id\", private=\"X\""],
                ResponseControl {
                    no_cache: true,
                    private: true,
                    ..Default::default()
                },
            ),
            (
                &["nocache, max-age-x=5, public-x"],
                ResponseControl::default(),
            ),
        ];
        for (cc, want) in cases {
            assert_eq!(resp(cc), *want, "{cc:?}");
        }
    }

    const T0: u64 = 1_700_000_000;

    /// A response head as (name, value) pairs.
    type Fields<'a> = &'a [(&'a str, &'a str)];

    fn heads<'h>(fields: &[(&'h str, &'h str)]) -> Vec<httparse::Header<'h>> {
        fields
            .iter()
            .map(|&(name, value)| httparse::Header {
                name,
                value: value.as_bytes(),
            })
            .collect()
    }

    const GET: RequestFacts = RequestFacts {
        method_get: true,
        control: RequestControl {
            no_store: false,
            no_cache: false,
            max_age: None,
            max_stale: None,
            min_fresh: None,
            only_if_cached: false,
        },
        authorization: false,
    };
    const ZONE: ZonePolicy<'static> = ZonePolicy {
        default_ttl: None,
        ttl: &[],
        store_set_cookie: false,
    };

    fn fresh_for(fresh: u32) -> Verdict {
        Verdict::Store(Lifetime {
            fresh,
            stale_while_revalidate: 0,
            stale_if_error: 0,
            must_revalidate: false,
            no_cache: false,
        })
    }

    fn verdict(
        req: &RequestFacts,
        status: u16,
        fields: &[(&str, &str)],
        zone: &ZonePolicy<'_>,
    ) -> Verdict {
        let h = heads(fields);
        storable(req, &ResponseFacts::from_headers(status, &h), zone, T0)
    }

    #[test]
    fn facts_from_a_head() {
        let h = heads(&[
            ("cache-control", "max-age=60"),
            ("Cache-Control", "public"),
            ("Date", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("Date", "Mon, 07 Nov 1994 08:49:37 GMT"),
            ("EXPIRES", "0"),
            ("Age", " 12, 30"),
            ("Last-Modified", "Sat, 05 Nov 1994 08:49:37 GMT"),
            ("ETag", " W/\"x\" "),
            ("Vary", "Accept-Encoding, ,accept-language"),
            ("vary", "Origin"),
            ("Set-Cookie", "a=b"),
            ("Content-Encoding", "gzip"),
        ]);
        let f = ResponseFacts::from_headers(200, &h);
        assert_eq!(
            f.control,
            ResponseControl {
                max_age: Some(60),
                public: true,
                ..Default::default()
            }
        );
        assert_eq!(f.date, Some(784_111_777));
        assert_eq!(f.expires, Some(None));
        assert_eq!(f.age, Some(12));
        assert_eq!(f.last_modified, Some(784_111_777 - 86_400));
        assert_eq!(f.etag, Some(&b"W/\"x\""[..]));
        assert!(f.set_cookie);
        assert_eq!(f.content_encoding, Some(&b"gzip"[..]));
        let names: Vec<&[u8]> = f.vary.names().collect();
        assert_eq!(
            names,
            [&b"Accept-Encoding"[..], b"accept-language", b"Origin"]
        );
        assert!(!f.vary.is_star());
    }

    #[test]
    fn facts_ignore_bad_values_and_spot_vary_star() {
        let h = heads(&[
            ("Age", "-5"),
            ("Date", "yesterday"),
            ("Vary", "Accept"),
            ("Vary", " * "),
        ]);
        let f = ResponseFacts::from_headers(200, &h);
        assert_eq!((f.age, f.date, f.expires), (None, None, None));
        assert!(f.vary.is_star());
        assert_eq!(f.vary.names().count(), 0);
        assert_eq!(vary_names(&h).count(), 2);
        let none = heads(&[("Vary", " , ")]);
        assert!(matches!(
            ResponseFacts::from_headers(200, &none).vary,
            Vary::None
        ));
    }

    #[test]
    fn refusals_in_rfc_9111_section_3() {
        let head = GET;
        let post = RequestFacts {
            method_get: false,
            ..GET
        };
        let nostore_req = RequestFacts {
            control: RequestControl {
                no_store: true,
                ..Default::default()
            },
            ..GET
        };
        let ok: &[(&str, &str)] = &[("Cache-Control", "max-age=60")];
        let cases: &[(&RequestFacts, u16, Fields<'_>, NotStored)] = &[
            (&post, 200, ok, NotStored::Method),
            (&head, 206, ok, NotStored::Status),
            (&head, 304, ok, NotStored::Status),
            (&head, 101, ok, NotStored::Status),
            (&head, 299, ok, NotStored::Status),
            (&nostore_req, 200, ok, NotStored::RequestNoStore),
            (
                &head,
                200,
                &[("Cache-Control", "max-age=60, no-store")],
                NotStored::NoStore,
            ),
            (
                &head,
                200,
                &[("Cache-Control", "max-age=60, private")],
                NotStored::Private,
            ),
            (
                &head,
                200,
                &[("Cache-Control", "private=\"x\", public")],
                NotStored::Private,
            ),
            (
                &head,
                200,
                &[("Cache-Control", "max-age=60"), ("Set-Cookie", "a=b")],
                NotStored::SetCookie,
            ),
            (
                &head,
                200,
                &[("Cache-Control", "max-age=60"), ("Vary", "*")],
                NotStored::VaryStar,
            ),
            (&head, 200, &[], NotStored::NoFreshness),
        ];
        for (req, status, fields, why) in cases {
            assert_eq!(
                verdict(req, *status, fields, &ZONE),
                Verdict::Skip(*why),
                "{status} {fields:?}"
            );
        }
        let spoken = verdict(
            &GET,
            500,
            &[("Cache-Control", "max-age=60, no-cache")],
            &ZONE,
        );
        let Verdict::Store(life) = spoken else {
            panic!("{spoken:?}")
        };
        assert!(life.no_cache);
    }

    #[test]
    fn authorization_needs_a_shared_cache_directive() {
        let auth = RequestFacts {
            authorization: true,
            ..GET
        };
        let cases: &[(&str, Verdict)] = &[
            ("max-age=60", Verdict::Skip(NotStored::Authorization)),
            (
                "max-age=60, proxy-revalidate",
                Verdict::Skip(NotStored::Authorization),
            ),
            ("max-age=60, public", fresh_for(60)),
            (
                "s-maxage=30, max-age=60",
                Verdict::Store(Lifetime {
                    must_revalidate: true,
                    ..lifetime_of(30)
                }),
            ),
            (
                "max-age=60, must-revalidate",
                Verdict::Store(Lifetime {
                    must_revalidate: true,
                    ..lifetime_of(60)
                }),
            ),
        ];
        for &(cc, want) in cases {
            assert_eq!(
                verdict(&auth, 200, &[("Cache-Control", cc)], &ZONE),
                want,
                "{cc}"
            );
        }
    }

    fn lifetime_of(fresh: u32) -> Lifetime {
        let Verdict::Store(l) = fresh_for(fresh) else {
            unreachable!()
        };
        l
    }

    #[test]
    fn set_cookie_stored_only_when_the_zone_allows() {
        let zone = ZonePolicy {
            store_set_cookie: true,
            ..ZONE
        };
        let fields = [("Cache-Control", "max-age=5"), ("Set-Cookie", "a=b")];
        assert_eq!(verdict(&GET, 200, &fields, &zone), fresh_for(5));
        let vary = [("Cache-Control", "max-age=5"), ("Vary", "Accept-Encoding")];
        assert_eq!(verdict(&GET, 200, &vary, &ZONE), fresh_for(5));
    }

    #[test]
    fn explicit_freshness_order() {
        let date = "Tue, 14 Nov 2023 22:13:20 GMT"; // T0
        let in_100 = "Tue, 14 Nov 2023 22:15:00 GMT";
        let past = "Tue, 14 Nov 2023 22:00:00 GMT";
        let cases: &[(&[(&str, &str)], u32)] = &[
            (&[("Cache-Control", "max-age=60")], 60),
            (&[("Cache-Control", "max-age=60, s-maxage=0")], 0),
            (
                &[
                    ("Cache-Control", "max-age=60"),
                    ("Expires", in_100),
                    ("Date", date),
                ],
                60,
            ),
            (&[("Expires", in_100), ("Date", date)], 100),
            (&[("Expires", in_100)], 100),
            (&[("Expires", in_100), ("Date", past)], 900),
            (&[("Expires", past), ("Date", date)], 0),
            (&[("Expires", "0"), ("Date", date)], 0),
            (&[("Cache-Control", "max-age=zzz")], 0),
        ];
        for (fields, fresh) in cases {
            let got = verdict(&GET, 200, fields, &ZONE);
            let Verdict::Store(life) = got else {
                panic!("{fields:?}: {got:?}")
            };
            assert_eq!(life.fresh, *fresh, "{fields:?}");
        }
        let s_max = verdict(&GET, 200, &[("Cache-Control", "s-maxage=7")], &ZONE);
        assert_eq!(
            s_max,
            Verdict::Store(Lifetime {
                must_revalidate: true,
                ..lifetime_of(7)
            })
        );
    }

    #[test]
    fn heuristic_and_configured_freshness() {
        let on = ZonePolicy {
            default_ttl: Some(10),
            ..ZONE
        };
        let per_status = ZonePolicy {
            default_ttl: Some(10),
            ttl: &[(302, 60), (200, 600), (500, 1)],
            ..ZONE
        };
        let no_fresh = Verdict::Skip(NotStored::NoFreshness);
        let explicit: &[(&str, &str)] = &[("Cache-Control", "max-age=5")];
        let public: &[(&str, &str)] = &[("Cache-Control", "public")];
        let cases: &[(&ZonePolicy<'_>, u16, Fields<'_>, Verdict)] = &[
            (&ZONE, 200, &[], no_fresh),
            (&on, 200, &[], fresh_for(10)),
            (&on, 404, &[], fresh_for(10)),
            (&on, 302, &[], no_fresh),
            (&on, 307, &[], no_fresh),
            (&on, 500, &[], no_fresh),
            (&on, 302, public, fresh_for(10)),
            (&per_status, 302, &[], fresh_for(60)),
            (&per_status, 500, &[], fresh_for(1)),
            (&per_status, 200, &[], fresh_for(600)),
            (&per_status, 200, explicit, fresh_for(5)),
            (&per_status, 404, &[], fresh_for(10)),
            (&on, 302, explicit, fresh_for(5)),
            (&ZONE, 500, explicit, fresh_for(5)),
            (&ZONE, 200, &[("Cache-Control", "no-cache")], no_fresh),
        ];
        for (zone, status, fields, want) in cases {
            assert_eq!(
                verdict(&GET, *status, fields, zone),
                *want,
                "{status} {fields:?} {zone:?}"
            );
        }
    }

    #[test]
    fn stale_windows_are_carried() {
        let fields = [(
            "Cache-Control",
            "max-age=1, stale-while-revalidate=2, stale-if-error=3",
        )];
        let want = Lifetime {
            stale_while_revalidate: 2,
            stale_if_error: 3,
            ..lifetime_of(1)
        };
        assert_eq!(verdict(&GET, 200, &fields, &ZONE), Verdict::Store(want));
    }

    #[test]
    fn age_calculation() {
        let at = |date: Option<u64>, age: Option<u64>| {
            let h = heads(&[]);
            let mut f = ResponseFacts::from_headers(200, &h);
            f.date = date;
            f.age = age;
            initial_age(&f, 100, 102)
        };
        // apparent_age = 102 - 95; corrected_age_value = Age + 2 (delay)
        assert_eq!(at(Some(95), None), 7);
        assert_eq!(at(Some(95), Some(3)), 7);
        assert_eq!(at(Some(95), Some(10)), 12);
        assert_eq!(at(Some(200), None), 2); // Date from a fast clock
        assert_eq!(at(None, Some(4)), 6);
        assert_eq!(at(None, Some(u64::MAX)), u64::MAX);
        assert_eq!(current_age(7, 102, 112), 17);
        assert_eq!(current_age(7, 102, 90), 7);
    }

    #[test]
    fn judge_each_directive() {
        let plain = lifetime_of(60);
        let windows = Lifetime {
            stale_while_revalidate: 10,
            stale_if_error: 100,
            ..plain
        };
        let strict = Lifetime {
            must_revalidate: true,
            ..windows
        };
        let always = Lifetime {
            no_cache: true,
            ..windows
        };
        let none = RequestControl::default();
        let r = |f: fn(&mut RequestControl)| {
            let mut c = RequestControl::default();
            f(&mut c);
            c
        };
        let no_cache = r(|c| c.no_cache = true);
        let max_age_0 = r(|c| c.max_age = Some(0));
        let max_age_30 = r(|c| c.max_age = Some(30));
        let min_fresh = r(|c| c.min_fresh = Some(20));
        let max_stale = r(|c| c.max_stale = Some(5));
        let any_stale = r(|c| c.max_stale = Some(u32::MAX));
        let reval = |if_error| Use::Revalidate { if_error };
        let cases: &[(u64, &Lifetime, &RequestControl, Use)] = &[
            (0, &plain, &none, Use::Fresh),
            (59, &plain, &none, Use::Fresh),
            (60, &plain, &none, reval(false)),
            (59, &plain, &no_cache, reval(true)),
            (1, &plain, &max_age_0, reval(true)),
            (0, &plain, &max_age_0, reval(true)),
            (30, &plain, &max_age_30, Use::Fresh),
            (31, &plain, &max_age_30, reval(true)),
            (40, &plain, &min_fresh, Use::Fresh),
            (41, &plain, &min_fresh, reval(true)),
            (65, &plain, &max_stale, Use::Fresh),
            (66, &plain, &max_stale, reval(false)),
            (1_000_000, &plain, &any_stale, Use::Fresh),
            (65, &strict, &max_stale, reval(false)),
            (60, &windows, &none, Use::StaleWhileRevalidate),
            (69, &windows, &none, Use::StaleWhileRevalidate),
            (70, &windows, &none, reval(true)),
            (159, &windows, &none, reval(true)),
            (160, &windows, &none, reval(false)),
            (65, &windows, &min_fresh, reval(true)),
            (65, &windows, &max_age_0, reval(true)),
            (60, &strict, &none, reval(false)),
            (10, &strict, &none, Use::Fresh),
            (10, &strict, &no_cache, reval(true)),
            (10, &always, &no_cache, reval(false)),
            (10, &always, &none, reval(false)),
        ];
        for (i, (age, life, req, want)) in cases.iter().enumerate() {
            assert_eq!(judge(*age, life, req), *want, "case {i}: age {age}");
        }
    }

    #[test]
    fn weak_etag_comparison() {
        let cases: &[(&str, &str, bool)] = &[
            ("\"a\"", "\"a\"", true),
            ("W/\"a\"", "\"a\"", true),
            ("\"a\"", "W/\"a\"", true),
            ("W/\"a\"", "W/\"a\"", true),
            ("\"b\", W/\"a\"", "\"a\"", true),
            (" \"b\" ,, \"a\" ", "\"a\"", true),
            ("\"x,y\", \"a\"", "\"a\"", true),
            ("\"x,y\"", "\"x,y\"", true),
            ("\"a\"", "\"A\"", false),
            ("\"b\"", "\"a\"", false),
            ("*", "\"a\"", true),
            (" * ", "W/\"a\"", true),
            ("a", "a", false),
            ("\"a", "\"a\"", false),
            ("junk, \"a\"", "\"a\"", false),
            ("w/\"a\"", "\"a\"", false),
            ("", "\"a\"", false),
            ("\"\"", "\"\"", true),
            ("\"a\"", "", false),
        ];
        for &(list, etag, want) in cases {
            assert_eq!(
                etag_matches_weak(list.as_bytes(), etag.as_bytes()),
                want,
                "{list} vs {etag}"
            );
        }
    }

    #[test]
    fn conditional_requests() {
        let lm = Some(784_111_777);
        let at_lm = "Sun, 06 Nov 1994 08:49:37 GMT";
        let before = "Sat, 05 Nov 1994 08:49:37 GMT";
        let after = "Mon, 07 Nov 1994 08:49:37 GMT";
        let tag = Some(&b"\"v1\""[..]);
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a [u8]>,
            Option<u64>,
            bool,
        );
        let cases: &[Case<'_>] = &[
            (Some("\"v1\""), None, tag, lm, true),
            (Some("W/\"v1\""), Some(before), tag, lm, true),
            (Some("\"v2\""), Some(after), tag, lm, false),
            (Some("*"), None, None, None, true),
            (Some("\"v1\""), None, None, lm, false),
            (None, Some(at_lm), tag, lm, true),
            (None, Some(after), tag, lm, true),
            (None, Some(before), tag, lm, false),
            (None, Some("not a date"), tag, lm, false),
            (None, Some(after), tag, None, false),
            (None, None, tag, lm, false),
        ];
        for &(inm, ims, etag, last_modified, want) in cases {
            let got = not_modified(
                inm.map(str::as_bytes),
                ims.map(str::as_bytes),
                etag,
                last_modified,
            );
            assert_eq!(got, want, "{inm:?} {ims:?} {etag:?} {last_modified:?}");
        }
    }

    fn status_line(name: &str, s: CacheStatus) -> String {
        let mut out = b"x".to_vec();
        write_cache_status(&mut out, name, &s);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn cache_status_strings() {
        let fwd = |fwd, status, stored, collapsed, detail| CacheStatus::Forward {
            fwd,
            status,
            stored,
            collapsed,
            detail,
        };
        let cases: &[(CacheStatus, &str)] = &[
            (CacheStatus::Hit { ttl: 57 }, "ringress; hit; ttl=57"),
            (CacheStatus::Hit { ttl: 0 }, "ringress; hit; ttl=0"),
            (
                CacheStatus::StaleHit { ttl: -3 },
                "ringress; hit; ttl=-3; detail=stale-while-revalidate",
            ),
            (
                CacheStatus::StaleHit { ttl: 3 },
                "ringress; hit; ttl=-3; detail=stale-while-revalidate",
            ),
            (
                CacheStatus::StaleHit { ttl: i64::MIN },
                "ringress; hit; ttl=-999999999999999; detail=stale-while-revalidate",
            ),
            (
                CacheStatus::StaleIfError { ttl: -40 },
                "ringress; hit; ttl=-40; detail=stale-if-error",
            ),
            (
                fwd(Fwd::Miss, None, true, false, None),
                "ringress; fwd=miss; stored",
            ),
            (
                fwd(Fwd::Stale, Some(304), true, false, None),
                "ringress; fwd=stale; fwd-status=304; stored",
            ),
            (
                fwd(Fwd::Miss, None, false, true, None),
                "ringress; fwd=miss; collapsed",
            ),
            (
                fwd(
                    Fwd::Uri,
                    Some(200),
                    false,
                    false,
                    Some(NotStored::NoStore.as_str()),
                ),
                "ringress; fwd=uri-miss; fwd-status=200; detail=no-store",
            ),
            (
                fwd(Fwd::Uri, None, true, true, None),
                "ringress; fwd=uri-miss; stored; collapsed",
            ),
            (
                fwd(Fwd::VaryMiss, None, false, false, None),
                "ringress; fwd=vary-miss",
            ),
            (
                fwd(Fwd::Request, None, false, false, None),
                "ringress; fwd=request",
            ),
            (
                fwd(Fwd::Bypass, None, false, false, None),
                "ringress; fwd=bypass",
            ),
            (
                fwd(Fwd::Method, None, false, false, None),
                "ringress; fwd=method",
            ),
            (
                fwd(Fwd::Partial, None, false, false, None),
                "ringress; fwd=partial",
            ),
            (
                fwd(Fwd::Miss, None, false, false, Some("not a \"token\"")),
                "ringress; fwd=miss; detail=\"not a \\\"token\\\"\"",
            ),
        ];
        for &(s, want) in cases {
            assert_eq!(
                status_line("ringress", s),
                format!("xCache-Status: {want}\r\n")
            );
        }
        let named = status_line("Edge Cache\u{7}", CacheStatus::Hit { ttl: 1 });
        assert_eq!(named, "xCache-Status: \"Edge Cache\"; hit; ttl=1\r\n");
        let odd = status_line("1cache", CacheStatus::Hit { ttl: 1 });
        assert_eq!(odd, "xCache-Status: \"1cache\"; hit; ttl=1\r\n");
    }

    #[test]
    fn every_not_stored_reason_is_a_token() {
        use NotStored::*;
        let all = [
            Method,
            Status,
            RequestNoStore,
            NoStore,
            Private,
            Authorization,
            SetCookie,
            VaryStar,
            NoFreshness,
        ];
        for why in all {
            assert!(is_sf_token(why.as_str().as_bytes()), "{why:?}");
        }
    }

    fn key(tls: bool, host: &str, path: &str, query: &str) -> String {
        let mut out = Vec::new();
        write_key(
            &mut out,
            tls,
            host.as_bytes(),
            path.as_bytes(),
            query.as_bytes(),
        );
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn key_normalisation() {
        let cases: &[(bool, &str, &str, &str, &str)] = &[
            (false, "Example.COM", "/a", "", "http\nexample.com\n/a"),
            (
                true,
                "example.com",
                "/a",
                "b=1&C=%7e",
                "https\nexample.com\n/a?b=1&C=%7e",
            ),
            (false, "example.com:80", "/", "", "http\nexample.com\n/"),
            (true, "example.com:443", "/", "", "https\nexample.com\n/"),
            (true, "example.com:80", "/", "", "https\nexample.com:80\n/"),
            (
                false,
                "example.com:443",
                "/",
                "",
                "http\nexample.com:443\n/",
            ),
            (
                false,
                "example.com:8080",
                "/",
                "",
                "http\nexample.com:8080\n/",
            ),
            (false, "example.com:", "/", "", "http\nexample.com\n/"),
            (false, "[::1]:80", "/", "", "http\n[::1]\n/"),
            (false, "h", "/%7e%41%2d%5F%2e", "", "http\nh\n/~A-_."),
            (
                false,
                "h",
                "/%2f%2F%3a%20%c3%a9",
                "",
                "http\nh\n/%2F%2F%3A%20%C3%A9",
            ),
            (false, "h", "/a/../b/./c", "", "http\nh\n/a/../b/./c"),
            (false, "h", "/%zz%4", "", "http\nh\n/%zz%4"),
            (false, "h", "/%", "", "http\nh\n/%"),
            (false, "h", "/a?b", "", "http\nh\n/a%3Fb"),
            (false, "h\nx", "/\n", "\n", "http\nh%0Ax\n/%0A?%0A"),
            // Copied whole: nothing in them changes.
            (
                false,
                "h.example",
                "/A/b.TXT",
                "x=Y",
                "http\nh.example\n/A/b.TXT?x=Y",
            ),
        ];
        for &(tls, host, path, query, want) in cases {
            assert_eq!(key(tls, host, path, query), want, "{host} {path} {query}");
        }
        assert_ne!(key(false, "h", "/a?b", ""), key(false, "h", "/a", "b"));
        assert_eq!(key(false, "h", "/%7E", ""), key(false, "H:80", "/~", ""));
    }

    #[test]
    fn key_hash_is_fixed_and_spreads() {
        // Pinned: owner cores must not move between runs or builds.
        assert_eq!(key_hash(b""), key_hash(b""));
        assert_eq!(key_hash(b"http\nexample.com\n/"), PINNED_HASH);
        assert_ne!(key_hash(b"a"), key_hash(b"a\0"));
        assert_ne!(key_hash(b"ab"), key_hash(b"ba"));
        let mut buckets = [0u32; 8];
        let mut k = Vec::new();
        for i in 0..8000 {
            k.clear();
            write_key(
                &mut k,
                false,
                b"example.com",
                format!("/item/{i}").as_bytes(),
                b"",
            );
            buckets[(key_hash(&k) % 8) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (850..1150).contains(&n)),
            "{buckets:?}"
        );
    }

    const PINNED_HASH: u64 = 7_340_934_504_623_373_038;

    /// Arbitrary bytes (from a fixed-seed generator, biased towards the
    /// characters the parsers branch on) never panic any parser.
    #[test]
    fn arbitrary_bytes_never_panic() {
        const ALPHABET: &[u8] = b"\",=/W*% \t0123456789aAfF-:?\\\n\xff";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut input = Vec::new();
        let mut out = Vec::new();
        for round in 0..20_000 {
            input.clear();
            for _ in 0..round % 40 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                input.push(ALPHABET[(seed % ALPHABET.len() as u64) as usize]);
            }
            let v = input.as_slice();
            _ = crate::http::date::parse_http_date(v);
            _ = ResponseControl::parse(std::iter::once(v));
            _ = RequestControl::parse(std::iter::once(v), std::iter::once(v));
            _ = etag_matches_weak(v, v);
            _ = not_modified(Some(v), Some(v), Some(v), Some(1));
            _ = age_value(v);
            out.clear();
            write_key(&mut out, round % 2 == 0, v, v, v);
        }
    }
}
