//! The proxy exchange for one request: get an upstream connection, send
//! the rewritten head and stream the body, hand over to `response`, pool
//! the upstream connection only when the response was read exactly to
//! its end, and on failure let `retry::decide` say whether to go again.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::cache;
use super::connect::{acquire, pool_key};
use super::ctx::{Snapshot, WorkerCtx};
use super::downstream::{BodyLimits, Downstream};
use super::relay::{BodyIn, RelayError};
use super::reqstate::ReqState;
use super::response::respond;
use super::retry::{self, Attempt, Decision};
use crate::config::UpstreamGroup;
use crate::error::{ErrorKind, ProxyError, Retry, Side};
use crate::http::Framing;
use crate::http::chunked::ChunkedDecoder;
use crate::observe::metrics::AttemptOutcome;
use crate::pipeline::{Exit, UpstreamTry};
use crate::rt::buffer::write_all_keep;
use crate::rt::conn::Conn;
use crate::upstream::{Outcome, ServerConfig};

/// Request facts kept after its head has been rewritten into `ReqState::head`.
pub(crate) struct Exchange {
    /// The upstream group (position in the snapshot).
    pub group: usize,
    pub framing: Framing,
    pub keep_alive: bool,
    pub is_head: bool,
    pub idempotent: bool,
    pub expect_continue: bool,
    pub upgrade: bool,
    /// 0 means unlimited.
    pub body_limit: u64,
    /// The route (position in the snapshot), for its response phase.
    pub route: usize,
    /// The client's address for balancing, geo and variables.
    pub client_ip: IpAddr,
    /// Key hash for `balance = "hash"`.
    pub hash: Option<u64>,
    /// The client's region, for groups with regional servers.
    pub region: Option<u16>,
}

/// How the client connection continues.
pub(crate) enum Next {
    KeepAlive,
    Close,
    /// Close after reading what the client still sends (an error answered
    /// before its request body was read).
    CloseLinger,
    /// Close; every operation on the client socket has completed (none
    /// was dropped by a timeout), so it may be closed directly.
    CloseQuiet,
    /// Switch to a byte tunnel with this upstream (after a 101).
    Tunnel(Conn, Duration),
}

/// Request bodies up to this size travel in the same write as the head,
/// which also makes the request replayable on a fresh connection.
const INLINE_BODY: u64 = 16 * 1024;

/// What one exchange works with.
pub(super) struct Leg<'a> {
    pub ctx: &'a WorkerCtx,
    pub config: &'a Snapshot,
    pub group: &'a UpstreamGroup,
    pub ex: &'a Exchange,
}

/// How one attempt ended well.
pub(super) enum Done {
    Response {
        client_keep: bool,
        reusable: bool,
        /// Close with a lingering read (client input left unread).
        linger: bool,
        /// No operation on the client socket was dropped in flight.
        quiet: bool,
    },
    /// 101 sent to the client: the connection becomes a tunnel.
    Switched,
}

/// A failed attempt.
struct Failed {
    error: ProxyError,
    reused: bool,
    started: Instant,
}

/// Where the retries of one request stand.
struct Tries {
    server: usize,
    /// Servers this request failed on, so retries go elsewhere.
    tried: Tried,
    retries_left: u32,
    /// Pooled connections may be used (false after a stale one failed).
    allow_pooled: bool,
}

/// Runs the exchange for a request whose head has been consumed and whose
/// upstream head is in `req.head`.
pub(crate) async fn run<D: Downstream>(
    c: &mut D,
    req: &mut ReqState,
    ctx: &WorkerCtx,
    config: &Snapshot,
    ex: Exchange,
) -> Next {
    let group = &config.upstreams[ex.group];
    let leg = Leg {
        ctx,
        config,
        group,
        ex: &ex,
    };
    let mut body = take_body(c, &mut req.head, &ex);
    let replayable = body.is_none();
    let generation = config.generation;
    ctx.with_group(generation, ex.group, |g| g.earn_retry(group.retry_budget));
    let Some(server) = ctx.pick_server(generation, config, ex.group, ex.hash, &[], ex.region)
    else {
        // Every server is down, ejected or full: say so at once.
        let e = ProxyError::upstream(ErrorKind::Unavailable).retry(Retry::Unsent);
        return give_up(c, req, &leg, e, replayable).await;
    };
    let mut tries = Tries {
        server,
        tried: Tried::default(),
        retries_left: group.retries,
        allow_pooled: true,
    };
    // Taken out until the exchange ends: every attempt sends it whole.
    let mut request = std::mem::take(&mut req.head);
    let next = loop {
        let retry_status = may_retry_status(&leg, &tries, replayable);
        let sent = (&mut request, body.as_mut());
        let failed = match attempt(c, req, &leg, &tries, sent, retry_status).await {
            Ok(next) => break next,
            Err(failed) => failed,
        };
        if !go_again(c, req, &leg, &mut tries, &failed, replayable) {
            break give_up(c, req, &leg, failed.error, replayable).await;
        }
    };
    req.head = request;
    next
}

/// A small request body already buffered goes with the head (which makes
/// the request replayable); anything else is streamed after it.
fn take_body<D: Downstream>(c: &mut D, head: &mut Vec<u8>, ex: &Exchange) -> Option<BodyIn> {
    match ex.framing {
        Framing::Length(n) if n <= INLINE_BODY && c.take_whole_body(n, head) => None,
        Framing::Length(n) => Some(BodyIn::Length(n)),
        Framing::Chunked => Some(BodyIn::Chunked(ChunkedDecoder::new())),
        Framing::Empty | Framing::Close => None,
    }
}

/// Whether a `retry_on` status is held back: only when a retry can really
/// happen; otherwise the response goes to the client.
fn may_retry_status(leg: &Leg<'_>, tries: &Tries, replayable: bool) -> bool {
    let group = leg.group;
    replayable
        && leg.ex.idempotent
        && tries.retries_left > 0
        && !group.retry_on.is_empty()
        && !tries.tried.full()
        && leg
            .ctx
            .with_group(leg.config.generation, leg.ex.group, |g| {
                let mut excluded = tries.tried;
                excluded.add(tries.server);
                g.can_retry() && g.has_alternative(group, excluded.list(), Instant::now())
            })
            .unwrap_or(false)
}

/// One attempt on one server: connect (or take a pooled connection),
/// exchange, and on success settle the server and the pool.
async fn attempt<D: Downstream>(
    c: &mut D,
    req: &mut ReqState,
    leg: &Leg<'_>,
    tries: &Tries,
    (request, body): (&mut Vec<u8>, Option<&mut BodyIn>),
    retry_status: bool,
) -> Result<Next, Failed> {
    let (group, server) = (leg.group, tries.server);
    let started = Instant::now();
    c.record().upstream = Some(UpstreamTry {
        group: leg.ex.group as u32,
        server: server as u32,
        addr: group.servers[server].addr,
    });
    // The address the client connected to is asked only when a PROXY
    // header goes upstream.
    let addrs = c.addrs(group.send_proxy_protocol.is_some());
    let spec = &group.servers[server];
    let acquired = acquire(leg.ctx, group, spec, tries.allow_pooled, addrs, started);
    let (mut upstream, reused) = acquired.await.map_err(|e| Failed {
        // Nothing was sent: any request may go to another server.
        error: e.retry(Retry::Unsent),
        reused: false,
        started,
    })?;
    leg.ctx
        .requests
        .metrics
        .borrow_mut()
        .connection(leg.config, leg.ex.group, reused);
    let done = exchange(c, req, leg, &mut upstream, (request, body), retry_status)
        .await
        .map_err(|error| Failed {
            error,
            reused,
            started,
        })?;
    // One clock read for the latency, the balancer and the pool.
    let now = Instant::now();
    let elapsed = now.saturating_duration_since(started);
    let record = c.record();
    record.upstream_time = Some(elapsed);
    // A body cut off by the upstream was recorded as its failure.
    record.exit = record.cause.map_or(Exit::Proxied, |e| Exit::of_error(&e));
    let failed = record.status >= 500 && group.outlier.as_ref().is_some_and(|o| o.on_5xx);
    let outcome = match done {
        Done::Response { .. } if failed => Outcome::Failure,
        _ => Outcome::Success(elapsed),
    };
    let generation = leg.config.generation;
    let ctx = leg.ctx;
    // A tunnel keeps its place on the server until it closes (`tunnel::Held`).
    if matches!(done, Done::Switched) {
        ctx.hold_server_at(generation, leg.config, leg.ex.group, server, outcome, now);
    } else {
        ctx.finish_server_at(generation, leg.config, leg.ex.group, server, outcome, now);
    }
    ctx.requests.metrics.borrow_mut().attempt(
        leg.config,
        (leg.ex.group, server),
        AttemptOutcome::Response,
        Some(elapsed),
    );
    Ok(after_response(leg, spec, (upstream, now), done))
}

/// Pools the upstream connection when the response left it reusable, and
/// says how the client connection goes on.
fn after_response(
    leg: &Leg<'_>,
    spec: &ServerConfig,
    (mut upstream, now): (Conn, Instant),
    done: Done,
) -> Next {
    let group = leg.group;
    let Done::Response {
        client_keep,
        reusable,
        linger,
        quiet,
    } = done
    else {
        return Next::Tunnel(upstream, group.tunnel_idle_timeout);
    };
    if reusable && group.send_proxy_protocol.is_none() && !upstream.has_unread_input() {
        upstream.release_buffers();
        let key = pool_key(group, spec);
        let (max, idle) = (group.max_idle_per_server, group.idle_timeout);
        leg.ctx.pool.borrow_mut().put(key, upstream, max, idle, now);
    }
    match (client_keep, linger) {
        (true, _) => Next::KeepAlive,
        (false, true) => Next::CloseLinger,
        (false, false) if quiet => Next::CloseQuiet,
        (false, false) => Next::Close,
    }
}

/// Settles a failed attempt with the balancer and, when the retry rule
/// and the group allow, moves `tries` to the next attempt.
fn go_again<D: Downstream>(
    c: &mut D,
    req: &mut ReqState,
    leg: &Leg<'_>,
    tries: &mut Tries,
    failed: &Failed,
    replayable: bool,
) -> bool {
    let (ctx, group, generation) = (leg.ctx, leg.group, leg.config.generation);
    let decision = retry::decide(
        &failed.error,
        Attempt {
            reused: failed.reused,
            fresh_tried: !tries.allow_pooled,
            replayable,
            idempotent: leg.ex.idempotent,
        },
    );
    req.upbuf.consume(req.upbuf.len());
    c.discard_head();
    if failed.error.side != Side::Downstream {
        let connecting = !failed.reused && failed.error.retry == Retry::Unsent;
        let outcome = AttemptOutcome::of_error(failed.error.kind, connecting);
        ctx.requests.attempt_failed(
            leg.config,
            (leg.ex.group, tries.server),
            leg.ex.route,
            (&failed.error, outcome),
            decision != Decision::FreshConnection,
        );
    }
    let addr = group.servers[tries.server].addr;
    if decision == Decision::FreshConnection {
        // A pooled connection the server had closed: the server is not
        // at fault; try it again on a fresh connection.
        tracing::debug!(worker = ctx.id, %addr, "pooled upstream connection failed; retrying on a fresh one");
        tries.allow_pooled = false;
        c.record().retries = c.record().retries.saturating_add(1);
        return true;
    }
    let on_5xx = group.outlier.as_ref().is_some_and(|o| o.on_5xx);
    let outcome = retry::outcome(&failed.error, on_5xx, failed.started.elapsed());
    ctx.finish_server(generation, leg.config, leg.ex.group, tries.server, outcome);
    let Decision::NextServer { budgeted } = decision else {
        return false;
    };
    tries.tried.add(tries.server);
    if tries.retries_left == 0 || tries.tried.full() {
        return false;
    }
    // Budgeted retries repeat work an upstream may have seen.
    if budgeted && ctx.with_group(generation, leg.ex.group, |g| g.spend_retry()) != Some(true) {
        return false;
    }
    let ex = leg.ex;
    let tried = tries.tried.list();
    let Some(next) = ctx.pick_server(generation, leg.config, ex.group, ex.hash, tried, ex.region)
    else {
        return false;
    };
    tracing::debug!(worker = ctx.id, %addr, next = %group.servers[next].addr, error = %failed.error, "upstream attempt failed; trying the next server");
    tries.retries_left -= 1;
    tries.server = next;
    tries.allow_pooled = true;
    c.record().retries = c.record().retries.saturating_add(1);
    true
}

/// Answers the client with the error that ended the exchange.
async fn give_up<D: Downstream>(
    c: &mut D,
    req: &mut ReqState,
    leg: &Leg<'_>,
    e: ProxyError,
    replayable: bool,
) -> Next {
    let (close, linger) = retry::after_answer(&e, leg.ex.keep_alive, replayable);
    c.discard_head();
    let sent = if req.cache.background {
        // A failed refresh: the client was answered from the cache.
        c.record().fail(e);
        true
    } else if let Some(sent) = cache::serve_stale_on_error(c, req, leg.config, &e, close).await {
        sent
    } else {
        let page = leg.config.page(Some(leg.ex.route), &e);
        c.answer(e, close, leg.config.timeouts.io, page).await
    };
    match (sent, close, linger) {
        (true, false, _) => Next::KeepAlive,
        (true, true, true) => Next::CloseLinger,
        _ => Next::Close,
    }
}

/// Attempts per request at most (the first and its retries).
const MAX_TRIES: usize = 8;

/// Servers a request has failed on (a fixed array: no allocation).
#[derive(Clone, Copy, Default)]
struct Tried {
    list: [usize; MAX_TRIES],
    len: usize,
}

impl Tried {
    fn add(&mut self, server: usize) {
        if self.len < MAX_TRIES {
            self.list[self.len] = server;
            self.len += 1;
        }
    }

    fn full(&self) -> bool {
        self.len >= MAX_TRIES
    }

    fn list(&self) -> &[usize] {
        &self.list[..self.len]
    }
}

/// Why streaming the request body stopped.
enum SendFailure {
    /// The client's side: gone, too slow, bad framing, too large.
    Client(ProxyError),
    /// The upstream stopped taking it: it may have answered early.
    UpstreamStopped,
}

/// One attempt on one upstream connection. `request` (head plus any
/// inline body) is given back intact, so a failed attempt can be replayed.
async fn exchange<D: Downstream>(
    c: &mut D,
    req: &mut ReqState,
    leg: &Leg<'_>,
    upstream: &mut Conn,
    (request, body): (&mut Vec<u8>, Option<&mut BodyIn>),
    retry_status: bool,
) -> Result<Done, ProxyError> {
    let bytes = std::mem::take(request);
    let (written, bytes) = write_all_keep(upstream, bytes, leg.group.io_timeout).await;
    match bytes {
        Some(bytes) => *request = bytes,
        None => return Err(ProxyError::upstream(ErrorKind::GatewayTimeout)),
    }
    if written.is_err() {
        return Err(ProxyError::upstream(ErrorKind::BadGateway).retry(Retry::BeforeAnswer));
    }
    let Some(body) = body else {
        return respond(c, req, leg, upstream, false, retry_status).await;
    };
    match send_body(c, leg, upstream, body).await {
        Ok(()) => respond(c, req, leg, upstream, false, retry_status).await,
        Err(SendFailure::Client(e)) => Err(e),
        // The upstream may have answered early (413, 401, ...). Pass that
        // answer on and close, since the rest of the client's body is
        // unread.
        Err(SendFailure::UpstreamStopped) => {
            match respond(c, req, leg, upstream, true, false).await {
                Ok(Done::Response { .. }) => Ok(Done::Response {
                    client_keep: false,
                    reusable: false,
                    linger: true,
                    quiet: false,
                }),
                // A held-back head that failed keeps its 502 or 504.
                Err(e) if e.retry == Retry::No && e.side != Side::Downstream => Err(e),
                _ => Err(ProxyError::upstream(ErrorKind::BadGateway)),
            }
        }
    }
}

/// Streams the rest of the request body from the client to the upstream.
async fn send_body<D: Downstream>(
    c: &mut D,
    leg: &Leg<'_>,
    upstream: &mut Conn,
    body: &mut BodyIn,
) -> Result<(), SendFailure> {
    let gone = || SendFailure::Client(ProxyError::downstream(ErrorKind::ClientGone));
    if leg.ex.expect_continue {
        c.send_continue(leg.config.timeouts.io)
            .await
            .map_err(|_| gone())?;
    }
    let input = std::mem::replace(body, BodyIn::Length(0));
    let limit = match leg.ex.body_limit {
        0 => u64::MAX,
        n => n,
    };
    let limits = BodyLimits {
        read_timeout: leg.config.timeouts.io,
        write_timeout: leg.group.io_timeout,
        splice: leg.config.runtime.splice,
        limit,
    };
    let result = c.relay_request(upstream, input, limits).await;
    result.map_err(|e| match e {
        RelayError::Source | RelayError::SourceTimedOut => gone(),
        RelayError::TooSlow => {
            SendFailure::Client(ProxyError::downstream(ErrorKind::ClientTimeout))
        }
        RelayError::Invalid => SendFailure::Client(ProxyError::downstream(ErrorKind::BadRequest)),
        RelayError::TooLarge => {
            SendFailure::Client(ProxyError::downstream(ErrorKind::BodyTooLarge))
        }
        RelayError::Dest => SendFailure::UpstreamStopped,
    })
}
