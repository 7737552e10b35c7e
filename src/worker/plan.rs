//! Turning a buffered request head into a plan: parse, normalise, route,
//! run the route's request phase, and for a proxied request write the
//! upstream head (the upstream-request phase) and keep the facts the
//! exchange needs. No I/O happens here.

use std::net::{IpAddr, SocketAddr};

use std::rc::Rc;

use super::admin::Endpoint;
use super::cache::{self, Decision, LocalObject};
use super::client::Client;
use super::coding;
use super::ctx::WorkerCtx;
use super::proxy::Exchange;
use super::reqstate::ReqState;
use crate::cache::policy::CacheStatus;
use crate::config::{Balance, Config, HashKey};
use crate::error::{ErrorKind, ProxyError};
use crate::http::encode::{UpstreamRequest, write_request_head};
use crate::http::{Framing, RequestHead, empty_headers, parse_request, path};
use crate::pipeline::{
    CacheResult, Exit, NO_FILTERS, RequestId, Vars, WithIdentity, WithRequestId, valid_request_id,
};
use crate::router::{Action, EscapedSlashes, PathRewrite, RouteQuery};
use crate::rt::clock;
use crate::shared::ADMIN_LISTENER;
use crate::upstream::hash_bytes;

/// What to do with a parsed request.
pub(super) enum Plan<'c> {
    Proxy(Exchange),
    /// A configured fixed answer.
    Respond {
        bytes: &'c [u8],
        close: bool,
    },
    /// An answer rendered into the client's output (a redirect).
    Rendered {
        close: bool,
    },
    /// An admin endpoint (`true`: a HEAD request).
    Admin(Endpoint, bool),
    /// A generated answer after a valid head.
    Error {
        error: ProxyError,
        close: bool,
    },
    /// An answer from the cache.
    Cached {
        object: Rc<LocalObject>,
        status: CacheStatus,
        close: bool,
    },
    /// Another request is fetching what this one asks for: wait for it,
    /// then plan again.
    CacheWait(futures_channel::oneshot::Receiver<()>),
}

/// A plan with the head's length and whether a body follows it.
pub(super) struct Planned<'c> {
    pub plan: Plan<'c>,
    pub head_len: usize,
    pub has_body: bool,
}

/// Parses the buffered head and turns it into a plan. Ok(None): need
/// more. `draining`: the connection ends after this request, so answers
/// the proxy makes itself say `Connection: close`.
pub(super) fn plan<'c>(
    c: &mut Client,
    work: &mut ReqState,
    ctx: &WorkerCtx,
    config: &'c Config,
    draining: bool,
) -> Result<Option<Planned<'c>>, ProxyError> {
    // Taken out while the head borrows it, so the rest of the connection
    // can be written.
    let inbuf = std::mem::take(&mut c.inbuf);
    let planned = plan_head(c, work, ctx, inbuf.bytes(), config, draining);
    c.inbuf = inbuf;
    planned
}

fn plan_head<'c>(
    c: &mut Client,
    work: &mut ReqState,
    ctx: &WorkerCtx,
    bytes: &[u8],
    config: &'c Config,
    draining: bool,
) -> Result<Option<Planned<'c>>, ProxyError> {
    let mut headers = empty_headers();
    // Known once the head parses; an answer to a head that does not is
    // a full one.
    c.head_request = false;
    let Some(req) = parse_request(bytes, &mut headers, &config.limits.head)? else {
        return Ok(None);
    };
    let head_len = req.head_len;
    let has_body = req.framing != Framing::Empty;
    c.record.bytes_in = head_len as u64;
    c.version = req.version;
    c.head_request = req.is_head();
    // After an answer the proxy generates, a request body left unread
    // would be taken for the next request: close instead.
    let close = !req.keep_alive || has_body || draining;
    if c.listener_id == ADMIN_LISTENER {
        c.record.exit = Exit::Fixed;
        let endpoint = Endpoint::of(&req, config);
        return Ok(Some(Planned {
            plan: Plan::Admin(endpoint, req.is_head()),
            head_len,
            has_body,
        }));
    }
    note_request(c, config, &req);
    if let Some(error) = listener_refuses(c, config) {
        return Ok(Some(Planned {
            plan: Plan::Error { error, close },
            head_len,
            has_body,
        }));
    }
    // Taken out for the request, so the normalised path can borrow it
    // while the client's other buffers are written.
    let mut path_buf = std::mem::take(&mut work.path_buf);
    // A path that cannot be normalised is malformed: answered and closed
    // like any other bad head.
    let mut slash_buf = std::mem::take(&mut work.slash_buf);
    let plan = path::normalize(req.path, &mut path_buf).map(|norm_path| {
        let routed = slashes(c, config, &req, norm_path, &mut slash_buf)
            .and_then(|norm_path| route(c, ctx, config, &req, norm_path).map(|r| (norm_path, r)));
        match routed {
            Ok(routed) => act(c, work, ctx, config, &req, routed, close),
            Err(error) if error.kind == ErrorKind::RateLimited => {
                super::limits::refused(c, (ctx, config), error, (close, req.is_head()))
            }
            Err(error) if error.kind == ErrorKind::Unauthorized => {
                super::auth::refused(c, (ctx, config), error, (close, req.is_head()))
            }
            Err(error) => Plan::Error { error, close },
        }
    });
    work.path_buf = path_buf;
    work.slash_buf = slash_buf;
    let plan = plan.map_err(|_| ProxyError::downstream(ErrorKind::BadRequest))?;
    Ok(Some(Planned {
        plan,
        head_len,
        has_body,
    }))
}

/// What the logging phase needs of the request, and its id: kept from a
/// trusted peer, else generated.
fn note_request(c: &mut Client, config: &Config, req: &RequestHead<'_, '_>) {
    let peer = c.peer.ip();
    let trusted = !config.trusted_proxies.is_empty() && config.trusted_proxies.contains(peer);
    c.record.client_ip = if trusted {
        forwarded_client_ip(peer, req, config)
    } else {
        peer
    };
    if config.access_log.is_some() {
        c.record.text.capture(req);
    }
    // Only a trusted peer's id is kept: no search for anyone else's.
    let incoming = if trusted {
        req.header(b"x-request-id")
            .filter(|id| valid_request_id(id))
    } else {
        None
    };
    let generated = RequestId {
        seed: c.record.id_seed,
        seq: c.record.seq,
    };
    c.record
        .text
        .set_request_id(incoming, |out| generated.write(out));
    c.record.text.return_id = config.forwarding.request_id;
}

/// The listener's `allow` / `deny` on the client's address (known per
/// request: it may come from a trusted peer's X-Forwarded-For).
fn listener_refuses(c: &Client, config: &Config) -> Option<ProxyError> {
    let access = &config.listeners.get(c.listener)?.access;
    (!access.allows(c.record.client_ip)).then(|| ProxyError::downstream(ErrorKind::Forbidden))
}

/// The path to route and forward by: the normalised path, unless it has
/// `%2F` / `%5C` in it, when the route that would serve it decoded
/// decides (`path_escaped_slashes`): refused, decoded or kept.
fn slashes<'p>(
    c: &Client,
    config: &Config,
    req: &RequestHead<'_, '_>,
    norm_path: &'p [u8],
    buf: &'p mut Vec<u8>,
) -> Result<&'p [u8], ProxyError> {
    if !path::has_escaped_slash(norm_path) {
        return Ok(norm_path);
    }
    let bad = ProxyError::downstream(ErrorKind::BadRequest);
    path::decode_slashes(norm_path, buf).map_err(|_| bad)?;
    let decoded = RouteQuery {
        listener: c.listener,
        host: req.host,
        path: buf,
        method: req.method,
        headers: req.headers,
        query: req.query,
    };
    match config.routes.escaped_slashes(&decoded) {
        EscapedSlashes::Keep => Ok(norm_path),
        EscapedSlashes::Decode => Ok(buf),
        EscapedSlashes::Reject => Err(bad),
    }
}

/// Routes the request and runs the route's request phase: the route's
/// position, or the error to answer with.
fn route(
    c: &mut Client,
    ctx: &WorkerCtx,
    config: &Config,
    req: &RequestHead<'_, '_>,
    norm_path: &[u8],
) -> Result<usize, ProxyError> {
    // `OPTIONS *` asks about the server as a whole: route it as `/`.
    let route_path: &[u8] = if norm_path == b"*" { b"/" } else { norm_path };
    let query = RouteQuery {
        listener: c.listener,
        host: req.host,
        path: route_path,
        method: req.method,
        headers: req.headers,
        query: req.query,
    };
    let index = config
        .routes
        .find_index(&query)
        .ok_or(ProxyError::downstream(ErrorKind::NoRoute))?;
    c.record.route = Some(index);
    let route = &config.routes.routes[index];
    if let Framing::Length(n) = req.framing
        && route.max_body_size != 0
        && n > route.max_body_size
    {
        return Err(ProxyError::downstream(ErrorKind::BodyTooLarge));
    }
    // A route without filters pays nothing for the phase.
    match config.chains.get(index) {
        Some(chain) if !chain.is_empty() => {
            super::phase::run(c, ctx, config, chain, (req, norm_path)).map(|()| index)
        }
        _ => Ok(index),
    }
}

/// Carries out the route's action.
fn act<'c>(
    c: &mut Client,
    work: &mut ReqState,
    ctx: &WorkerCtx,
    config: &'c Config,
    req: &RequestHead<'_, '_>,
    (norm_path, route): (&[u8], usize),
    close: bool,
) -> Plan<'c> {
    match &config.routes.routes[route].action {
        Action::Respond(r) => {
            c.record.exit = Exit::Fixed;
            c.record.status = r.status;
            Plan::Respond {
                bytes: r.bytes(close, req.is_head()),
                close,
            }
        }
        Action::Redirect(r) => {
            c.record.exit = Exit::Redirect;
            c.record.status = r.status;
            c.out.clear();
            // `$host` is the host without port, as in nginx.
            r.render(&mut c.out, req.host, (req.path, req.query), close);
            Plan::Rendered { close }
        }
        Action::Proxy { upstream, rewrite } => {
            if let Some(plan) = from_cache(c, work, ctx, config, req, (norm_path, route), close) {
                return plan;
            }
            match proxy(
                c,
                work,
                config,
                req,
                (norm_path, route),
                (*upstream, rewrite),
            ) {
                Some(exchange) => Plan::Proxy(exchange),
                // The compiled config names only groups it has.
                None => Plan::Error {
                    error: ProxyError::internal(ErrorKind::BadGateway),
                    close,
                },
            }
        }
    }
}

/// The route's response work before anything goes upstream: the coding
/// to compress with, and on a caching route the look-up, which may
/// answer (a hit, a purge), or make the request wait for another's fetch.
fn from_cache<'c>(
    c: &mut Client,
    work: &mut ReqState,
    ctx: &WorkerCtx,
    config: &Config,
    req: &RequestHead<'_, '_>,
    (norm_path, route): (&[u8], usize),
    close: bool,
) -> Option<Plan<'c>> {
    let chain = config.chains.get(route).filter(|ch| !ch.is_empty())?;
    // The response phase, and an answer from the cache, render after the
    // request bytes are gone.
    work.host_buf.clear();
    work.host_buf.extend_from_slice(req.host);
    let compress = chain.compress();
    if let Some(rule) = compress {
        work.cache.touch();
        work.cache.coding = coding::negotiated(rule, req);
    }
    let rule = chain.cache()?;
    work.cache.touch();
    let tls = c.stream.is_tls();
    cache::prepare(
        &mut work.cache,
        rule,
        req,
        norm_path,
        tls,
        compress.is_some(),
    );
    // An authenticated request is one with credentials (RFC 9111 3.5),
    // whatever header carried them: only a shareable response is stored.
    work.cache.authorization |= chain.auth().is_some();
    if req.method == b"PURGE" {
        return Some(purge(c, work, config, rule.zone, close));
    }
    if !work.cache.on {
        c.record.cache = CacheResult::Bypass;
        return None;
    }
    let zone = cache::zone_of(config, rule.zone)?;
    // The request's start, already read: no second clock read per hit.
    work.cache.request_time = clock::unix_secs_at(c.record.start);
    let plan = match cache::lookup(&mut work.cache, ctx, zone, req) {
        Decision::Hit { object, refresh } => hit(c, work, object, refresh, close),
        Decision::Wait(rx) => return Some(Plan::CacheWait(rx)),
        Decision::Forward => None,
        Decision::Unsatisfiable => return Some(only_if_cached(c, close)),
    };
    // Upstream (a miss, or a refresh behind a stale answer): the fill
    // needs the request's lines once its head is gone.
    if plan.is_none() {
        cache::keep_fields(&mut work.cache, req);
    }
    plan
}

/// A `PURGE` request: answered at once, from the purge's status.
fn purge<'c>(
    c: &mut Client,
    work: &mut ReqState,
    config: &Config,
    zone: usize,
    close: bool,
) -> Plan<'c> {
    let status = cache::purge_request(
        config,
        zone,
        c.record.client_ip,
        work.cache.hash,
        &work.cache.key,
    );
    work.cache.on = false;
    c.record.exit = Exit::Fixed;
    c.record.status = status;
    c.out.clear();
    crate::http::answer::render_answer(&mut c.out, status, close);
    Plan::Rendered { close }
}

/// A usable object: answered from the cache, or, stale within
/// `stale-while-revalidate`, answered first and then refreshed by the
/// exchange with its validators (a 304 renews it).
fn hit<'c>(
    c: &mut Client,
    work: &mut ReqState,
    object: Rc<LocalObject>,
    refresh: bool,
    close: bool,
) -> Option<Plan<'c>> {
    let ttl = object.object.ttl(work.cache.request_time);
    if !refresh {
        c.record.cache = CacheResult::Hit;
        let status = CacheStatus::Hit { ttl };
        return Some(Plan::Cached {
            object,
            status,
            close,
        });
    }
    work.cache.stale = Some(object.clone());
    work.cache.fwd = crate::cache::policy::Fwd::Stale;
    work.cache.serve_first = Some((object, CacheStatus::StaleHit { ttl }));
    work.cache.background = true;
    c.record.cache = CacheResult::Updating;
    None
}

/// `only-if-cached` without a usable object: the error model's answer
/// (504), with the cache's reason in `Cache-Status`.
fn only_if_cached<'c>(c: &mut Client, close: bool) -> Plan<'c> {
    let error = ProxyError::downstream(ErrorKind::NotCached);
    c.record.fail(error);
    c.record.exit = Exit::Cached;
    c.record.cache = CacheResult::Miss;
    let Some(status) = error.status() else {
        return Plan::Error { error, close };
    };
    c.record.status = status;
    c.out.clear();
    let cache_status = |out: &mut Vec<u8>| cache::write_refusal_status(out, "only-if-cached");
    crate::http::answer::render_answer_with(&mut c.out, status, cache_status, (close, false));
    Plan::Rendered { close }
}

/// Writes the upstream head into `ReqState::head` (the upstream-request
/// phase edits it) and keeps what the exchange needs.
fn proxy(
    c: &mut Client,
    work: &mut ReqState,
    config: &Config,
    req: &RequestHead<'_, '_>,
    (norm_path, route): (&[u8], usize),
    (group_index, rewrite): (usize, &PathRewrite),
) -> Option<Exchange> {
    let group = config.upstreams.get(group_index)?;
    let client_ip = c.record.client_ip;
    // A route with filters has its host in `host_buf` (`from_cache`).
    let chain = config.chains.get(route).unwrap_or(&NO_FILTERS);
    // Taken out while the head is written, so the variables can borrow
    // the rest of the connection.
    let mut out = std::mem::take(&mut work.head);
    let mut rewrite_buf = std::mem::take(&mut work.rewrite_buf);
    let upstream_path = rewrite.apply(norm_path, &mut rewrite_buf);
    // A route without filters needs none of the request's values.
    let values;
    let edits = if chain.is_empty() {
        None
    } else {
        values = vars(c, config, route, client_ip, req.host);
        Some(chain.upstream_request(&values))
    };
    let client_cert = config
        .listeners
        .get(c.listener)
        .and_then(|l| l.tls.as_ref())
        .and_then(|t| t.subject_header.as_deref())
        .zip(c.tls.as_ref().and_then(|t| t.subject.as_deref()))
        .map(|(name, subject)| (name.as_bytes(), subject));
    out.clear();
    write_request_head(
        &mut out,
        req,
        &UpstreamRequest {
            path: upstream_path,
            host: group.host_header.as_deref().unwrap_or(req.authority),
            client_ip: c.peer.ip(),
            proto: if c.stream.is_tls() { "https" } else { "http" },
            reserved: &config.reserved_headers,
            client_cert,
            edits: &WithIdentity {
                rule: chain.auth(),
                lines: &c.record.identity,
                inner: &WithRequestId {
                    id: config
                        .forwarding
                        .request_id
                        .then(|| c.record.text.request_id()),
                    inner: &cache::UpstreamEdits::of(&work.cache, &edits),
                },
            },
        },
        &config.forwarding,
    );
    work.head = out;
    work.rewrite_buf = rewrite_buf;
    Some(Exchange {
        group: group_index,
        framing: req.framing,
        keep_alive: req.keep_alive,
        is_head: req.is_head(),
        idempotent: req.is_idempotent(),
        expect_continue: req.expect_continue,
        upgrade: req.upgrade.is_some(),
        body_limit: config.routes.routes[route].max_body_size,
        route,
        client_ip,
        hash: match &group.balance {
            Balance::Hash(key) => hash_key(key, req, norm_path, client_ip),
            _ => None,
        },
        region: if group.regional {
            config.geo.region_of(client_ip)
        } else {
            None
        },
    })
}

/// The request's values for variables in its route's filters.
pub(super) fn vars<'a>(
    c: &'a Client,
    config: &'a Config,
    route: usize,
    client_ip: IpAddr,
    host: &'a [u8],
) -> Vars<'a> {
    let tls = c.tls.as_deref();
    Vars {
        client: SocketAddr::new(client_ip, c.peer.port()),
        host,
        tls: c.stream.is_tls(),
        request_id: c.record.text.request_id(),
        route: config.routes.routes.get(route).map_or("", |r| &r.name),
        listener: config.listeners.get(c.listener).map_or("", |l| &l.name),
        tls_version: tls.map_or("", |t| t.version),
        sni: tls.and_then(|t| t.sni.as_deref()).unwrap_or_default(),
        client_subject: tls.and_then(|t| t.subject.as_deref()).unwrap_or_default(),
    }
}

/// The client's address for balancing, geo and the log when the peer is
/// a trusted proxy: the right-most X-Forwarded-For entry that is not a
/// trusted proxy (entries further left could be forged by the client),
/// as nginx's `real_ip_recursive on` does.
fn forwarded_client_ip(peer: IpAddr, req: &RequestHead<'_, '_>, config: &Config) -> IpAddr {
    let mut client = peer;
    let entries = req
        .headers
        .iter()
        .rev()
        .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
        .flat_map(|h| h.value.rsplit(|&b| b == b','));
    for entry in entries {
        let Some(ip) = std::str::from_utf8(crate::http::fields::trim_ows(entry))
            .ok()
            .and_then(|s| s.parse::<IpAddr>().ok())
        else {
            // Garbage in the chain: trust nothing to its left.
            break;
        };
        client = ip;
        if !config.trusted_proxies.contains(ip) {
            break;
        }
    }
    client
}

/// The hash of a request's balancing key; None when the request lacks it
/// (the group then balances it round-robin).
fn hash_key(key: &HashKey, req: &RequestHead<'_, '_>, path: &[u8], client: IpAddr) -> Option<u64> {
    match key {
        HashKey::ClientIp => Some(match client {
            IpAddr::V4(ip) => hash_bytes(&ip.octets()),
            IpAddr::V6(ip) => hash_bytes(&ip.octets()),
        }),
        HashKey::Path => Some(hash_bytes(path)),
        HashKey::Header(name) => req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| hash_bytes(crate::http::fields::trim_ows(h.value))),
        HashKey::Cookie(name) => req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .flat_map(|h| h.value.split(|&b| b == b';'))
            .find_map(|pair| {
                let pair = crate::http::fields::trim_ows(pair);
                let (k, v) = pair.split_at(memchr::memchr(b'=', pair)?);
                (k == name.as_bytes()).then(|| hash_bytes(&v[1..]))
            }),
    }
}
