//! The cache on the request path. After routing, a GET or HEAD on a
//! caching route is looked up (`lookup`): a usable object is answered
//! from (`serve`), a stale one is revalidated, a miss is fetched by one
//! request while the others wait (`Plan::CacheWait`). On the way back the
//! response head decides whether it is stored (`fill`), and the body
//! relay keeps a copy while the client gets it.

pub(crate) mod fill;
mod local;
mod purge;
mod serve;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) use fill::{Pending, on_response_head, store_empty};
pub(crate) use local::{LocalObject, LocalRefs, SharedBody};
pub(crate) use purge::{purge, purge_request};
pub(crate) use serve::{
    CACHE_NAME, serve, serve_stale_on_error, stale_usable, write_refusal_status,
};

use crate::cache::object::Object;
use crate::cache::policy::{self, CacheStatus, Fwd, RequestControl, Use};
use crate::cache::zone::{Lookup, PASS_SECS, Zone};
use crate::compress::Algorithm;
use crate::config::Config;
use crate::http::RequestHead;
use crate::http::encode::{FieldEdits, write_field};
use crate::http::fields::trim_ows;
use crate::pipeline::{CacheResult, CacheRule, KeyPart};

use super::ctx::WorkerCtx;

/// What the cache knows of the current request (reused per connection).
#[derive(Default)]
pub(crate) struct CacheReq {
    /// The request goes through a zone (a GET or HEAD on a caching route).
    pub on: bool,
    pub zone: usize,
    pub key: Vec<u8>,
    pub hash: u64,
    pub is_head: bool,
    pub control: RequestControl,
    pub authorization: bool,
    /// The request's header lines (`Name: value\r\n`), for the values a
    /// response varies on once the head is gone.
    pub fields: Vec<u8>,
    /// Where the request's `If-None-Match` and `If-Modified-Since` values
    /// are in `fields`.
    pub if_none_match: Option<(u32, u32)>,
    pub if_modified_since: Option<(u32, u32)>,
    /// The coding negotiated for this request on a compressing route.
    pub coding: Option<Algorithm>,
    /// The route compresses: stored responses vary on the coding
    /// negotiated from `Accept-Encoding`, not on its text.
    pub varies_on_coding: bool,
    /// This request fetches the key for the others (it must complete).
    pub filling: bool,
    /// It waited for another request's fill already.
    pub waited: bool,
    /// The stored object being revalidated (or kept for stale-if-error).
    pub stale: Option<Rc<LocalObject>>,
    /// Why it went upstream, for `Cache-Status`.
    pub fwd: Fwd,
    /// The response to store once its body is complete.
    pub pending: Option<Pending>,
    pub body: Vec<u8>,
    /// Unix seconds the request was sent (and looked up).
    pub request_time: u64,
    /// Served stale within stale-while-revalidate: the exchange that
    /// follows refreshes the object, and the client sees none of it.
    pub background: bool,
    /// A stale object to answer with before that exchange.
    pub serve_first: Option<(Rc<LocalObject>, CacheStatus)>,
    /// The response said it cannot be stored (the key then passes).
    pub uncacheable: bool,
    /// What the response head made of the request, for its record.
    pub result: CacheResult,
    /// Header lines the response work adds (`Cache-Status`, coding).
    pub lines: Vec<u8>,
    /// The body relay's pieces: as read, and compressed.
    pub plain: Vec<u8>,
    pub coded: Vec<u8>,
    /// Something was set for this request (routes without response work
    /// skip the reset).
    touched: bool,
}

impl CacheReq {
    /// Frees buffers a large request or body made grow, before the state
    /// is kept for another connection.
    pub fn trim(&mut self, keep: usize) {
        for buf in [
            &mut self.key,
            &mut self.fields,
            &mut self.body,
            &mut self.lines,
            &mut self.plain,
            &mut self.coded,
        ] {
            if buf.capacity() > keep {
                *buf = Vec::new();
            }
        }
    }

    /// Marks the request as one with response work to reset after it.
    pub fn touch(&mut self) {
        self.touched = true;
    }

    /// Back to "no cache" for the next request, keeping the buffers.
    fn reset(&mut self) {
        self.touched = false;
        self.uncacheable = false;
        self.on = false;
        self.result = CacheResult::None;
        self.filling = false;
        self.waited = false;
        self.background = false;
        self.serve_first = None;
        self.stale = None;
        self.pending = None;
        self.coding = None;
        self.varies_on_coding = false;
        self.body.clear();
    }
}

/// What the look-up decided.
pub(crate) enum Decision {
    /// Answer from this object (fresh, or stale within
    /// stale-while-revalidate: `refresh` then says to fetch it anew in
    /// the background).
    Hit {
        object: Rc<LocalObject>,
        refresh: bool,
    },
    /// Another request is fetching it: wait, then plan again.
    Wait(futures_channel::oneshot::Receiver<()>),
    /// Go upstream (revalidating `CacheReq::stale` when set).
    Forward,
    /// `only-if-cached` and nothing usable.
    Unsatisfiable,
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The zone's storage in this snapshot.
pub(crate) fn zone_of(config: &Config, zone: usize) -> Option<&Arc<Zone>> {
    config.caches.get(zone)?.store.get()
}

/// Notes what the cache needs of a request on a caching route: its key,
/// its directives and the values its variants are told apart by.
pub(crate) fn prepare(
    c: &mut CacheReq,
    rule: &CacheRule,
    req: &RequestHead<'_, '_>,
    norm_path: &[u8],
    tls: bool,
    compresses: bool,
) {
    c.zone = rule.zone;
    c.is_head = req.is_head();
    c.varies_on_coding = compresses;
    c.key.clear();
    let query = req.query.strip_prefix(b"?").unwrap_or(req.query);
    policy::write_key(&mut c.key, tls, req.host, norm_path, query);
    for part in &rule.key {
        add_key_part(&mut c.key, part, req);
    }
    c.hash = policy::key_hash(&c.key);
    // A request that asks to switch protocols is never answered stored.
    if !matches!(req.method, b"GET" | b"HEAD") || req.upgrade.is_some() {
        return;
    }
    c.on = true;
    let values = |name: &'static [u8]| {
        req.headers
            .iter()
            .filter(move |h| h.name.as_bytes().eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    c.control = RequestControl::parse(values(b"cache-control"), values(b"pragma"));
    c.authorization = req.header(b"authorization").is_some();
    // Only the client's validators are kept now (a hit answers them after
    // the head is gone); the other lines only if the request goes
    // upstream (`keep_fields`): a hit copies no more than it needs.
    c.fields.clear();
    c.if_none_match = None;
    c.if_modified_since = None;
    for h in req.headers {
        let name = h.name.as_bytes();
        let slot = if name.eq_ignore_ascii_case(b"if-none-match") && c.if_none_match.is_none() {
            &mut c.if_none_match
        } else if name.eq_ignore_ascii_case(b"if-modified-since") {
            &mut c.if_modified_since
        } else {
            continue;
        };
        let value = trim_ows(h.value);
        let start = c.fields.len() + name.len() + 2;
        write_field(&mut c.fields, name, value);
        *slot = Some((start as u32, (start + value.len()) as u32));
    }
    c.fwd = Fwd::Miss;
}

/// Keeps the request's header lines for the fill, which reads the values
/// its response varies on once the head is gone. After `prepare`, for a
/// request that goes upstream; the validators' places stay as noted.
pub(crate) fn keep_fields(c: &mut CacheReq, req: &RequestHead<'_, '_>) {
    if !c.on {
        return;
    }
    for h in req.headers {
        write_field(&mut c.fields, h.name.as_bytes(), trim_ows(h.value));
    }
}

fn add_key_part(key: &mut Vec<u8>, part: &KeyPart, req: &RequestHead<'_, '_>) {
    key.push(b'\n');
    match part {
        KeyPart::Header(name) => {
            key.extend_from_slice(req.header(name).unwrap_or(b""));
        }
        KeyPart::Cookie(name) => {
            let value = req
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
                .flat_map(|h| h.value.split(|&b| b == b';'))
                .find_map(|pair| {
                    let pair = trim_ows(pair);
                    let (n, v) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
                    (n == &name[..]).then_some(&v[1..])
                });
            key.extend_from_slice(value.unwrap_or(b""));
        }
    }
}

/// The request's value of a field it was stored under (`b""` when it has
/// none), from the lines `keep_fields` kept; `accept-encoding` is the
/// coding negotiated on compressing routes.
pub(crate) fn request_value<'a>(c: &'a CacheReq, name: &[u8]) -> &'a [u8] {
    negotiated(c, name).unwrap_or_else(|| field_value(&c.fields, name).unwrap_or(b""))
}

/// `request_value` from the request's head, while it is there.
fn live_value<'a>(c: &'a CacheReq, req: &'a RequestHead<'_, '_>, name: &[u8]) -> &'a [u8] {
    negotiated(c, name).unwrap_or_else(|| req.header(name).map_or(b"", trim_ows))
}

/// On a compressing route, the coding negotiated stands for the
/// request's `Accept-Encoding`.
fn negotiated<'a>(c: &'a CacheReq, name: &[u8]) -> Option<&'a [u8]> {
    (c.varies_on_coding && name == b"accept-encoding")
        .then(|| c.coding.map_or(&b""[..], |a| a.token().as_bytes()))
}

impl CacheReq {
    /// A value noted by `prepare`.
    pub fn noted(&self, at: Option<(u32, u32)>) -> Option<&[u8]> {
        at.and_then(|(a, b)| self.fields.get(a as usize..b as usize))
    }
}

/// The first value of `name` in header lines.
pub(crate) fn field_value<'a>(fields: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    fields.split(|&b| b == b'\n').find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (n, v) = line.split_at(colon);
        n.eq_ignore_ascii_case(name)
            .then(|| trim_ows(v[1..].strip_suffix(b"\r").unwrap_or(&v[1..])))
    })
}

/// Looks the prepared request up: in this worker's references first (no
/// lock), then in the key's shard.
pub(crate) fn lookup(
    c: &mut CacheReq,
    ctx: &WorkerCtx,
    zone: &Arc<Zone>,
    req: &RequestHead<'_, '_>,
) -> Decision {
    lookup_once(c, ctx, zone, req, false)
}

/// `lookup`; `again`: this is the second look, after the stale object
/// found first was replaced before its refresh could begin.
fn lookup_once(
    c: &mut CacheReq,
    ctx: &WorkerCtx,
    zone: &Arc<Zone>,
    req: &RequestHead<'_, '_>,
    again: bool,
) -> Decision {
    let zid = local::zone_id(zone);
    let now = c.request_time;
    let found = {
        let accepts = |o: &Object| o.matches(|name| live_value(c, req, name));
        let mut refs = ctx.cache_refs.borrow_mut();
        match refs.find(zid, c.hash, &c.key, accepts) {
            Some(local) => Some(local),
            None => match zone.lookup((c.hash, &c.key, now), false, accepts) {
                Lookup::Found(object) => Some(refs.add(zid, c.hash, &c.key, object)),
                _ => None,
            },
        }
    };
    if let Some(local) = found {
        if local.count_use() {
            zone.touch(c.hash, &c.key);
        }
        let age = local.object.age(now);
        match policy::judge(age, &local.object.life, &c.control) {
            Use::Fresh => {
                return Decision::Hit {
                    object: local,
                    refresh: false,
                };
            }
            Use::StaleWhileRevalidate => {
                let refresh = zone.begin_refresh(c.hash, &c.key, &local.object);
                // A refresh stored a newer object since this one was
                // found: that one is most likely fresh.
                if !refresh && !again && !local.object.is_alive() {
                    return lookup_once(c, ctx, zone, req, true);
                }
                // The refresh completes the fetch it registered.
                c.filling = refresh;
                return Decision::Hit {
                    object: local,
                    refresh,
                };
            }
            Use::Revalidate { .. } => {
                c.fwd = if c.control.no_cache || c.control.max_age.is_some() {
                    Fwd::Request
                } else {
                    Fwd::Stale
                };
                c.stale = Some(local);
            }
        }
    }
    if c.control.only_if_cached {
        return Decision::Unsatisfiable;
    }
    miss(c, zone, now, req)
}

/// Nothing fresh: become the request that fetches the key, or wait for
/// the one that is.
fn miss(c: &mut CacheReq, zone: &Zone, now: u64, req: &RequestHead<'_, '_>) -> Decision {
    let at = (c.hash, &c.key[..], now);
    if c.waited {
        // Once is enough: after a wait, go upstream (filling if nobody is).
        c.filling = matches!(zone.lookup(at, true, |_| false), Lookup::Fill);
        return Decision::Forward;
    }
    match zone.lookup(at, true, |o| o.matches(|name| live_value(c, req, name))) {
        Lookup::Wait(rx) => Decision::Wait(rx),
        Lookup::Fill => {
            c.filling = true;
            Decision::Forward
        }
        // Not stored last time: no queueing; a storable answer is stored.
        Lookup::Pass => Decision::Forward,
        // Stored between the two look-ups: take it on the next plan.
        Lookup::Found(_) => Decision::Wait(closed_receiver()),
    }
}

/// How long a request waits for another's fetch of the same key before
/// going upstream itself (nginx's `proxy_cache_lock_timeout` default).
const FILL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits (bounded) for the fetch another request is making.
pub(crate) async fn wait_for_fill(c: &mut CacheReq, rx: futures_channel::oneshot::Receiver<()>) {
    // The thread's deadline slab, not a monoio timer: a monoio `Sleep` is
    // cache-padded and would make every request's future larger.
    let _ = crate::rt::deadline::within(FILL_WAIT, rx).await;
    c.waited = true;
}

fn closed_receiver() -> futures_channel::oneshot::Receiver<()> {
    let (_, rx) = futures_channel::oneshot::channel();
    rx
}

/// Ends the request's part in the cache (its logging phase): a fill that
/// did not store anything releases its waiters.
#[inline]
pub(crate) fn end_request(c: &mut CacheReq, config: &Config) {
    if !c.touched {
        return;
    }
    if c.filling {
        c.filling = false;
        if let Some(zone) = zone_of(config, c.zone) {
            let pass = c.uncacheable.then(|| c.request_time + PASS_SECS);
            zone.complete(c.hash, &c.key, None, pass);
        }
    }
    c.reset();
}

/// The cache's changes to the head sent upstream: a fetch for the cache
/// drops the client's own validators (the stored response must be a full
/// one) and a revalidation sends the stored object's.
pub(crate) struct UpstreamEdits<'a, E> {
    inner: &'a E,
    on: bool,
    stale: Option<&'a Object>,
}

impl<'a, E: FieldEdits> UpstreamEdits<'a, E> {
    pub fn of(c: &'a CacheReq, inner: &'a E) -> Self {
        UpstreamEdits {
            inner,
            on: c.on,
            stale: c.stale.as_ref().map(|s| &*s.object),
        }
    }
}

impl<E: FieldEdits> FieldEdits for UpstreamEdits<'_, E> {
    fn drops(&self, name: &[u8]) -> bool {
        (self.on
            && (name.eq_ignore_ascii_case(b"if-none-match")
                || name.eq_ignore_ascii_case(b"if-modified-since")))
            || self.inner.drops(name)
    }

    fn append(&self, out: &mut Vec<u8>) {
        self.inner.append(out);
        let Some(stale) = self.stale else {
            return;
        };
        if let Some(etag) = &stale.etag {
            write_field(out, b"If-None-Match", etag);
        } else if let Some(t) = stale.last_modified {
            out.extend_from_slice(b"If-Modified-Since: ");
            crate::http::date::write_http_date(t, out);
            out.extend_from_slice(b"\r\n");
        }
    }
}
