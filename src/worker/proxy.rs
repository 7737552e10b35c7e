//! The proxy exchange for one request: get an upstream connection (moving
//! to the next server when a connect fails), send the rewritten head and
//! stream the body, hand over to `response`, and pool the upstream
//! connection only when the response was read exactly to its end.

use std::time::{Duration, Instant};

use super::buffer::{write_all, write_all_keep};
use super::client::Client;
use super::conn::Conn;
use super::connect::{acquire, pool_key};
use super::ctx::{Snapshot, WorkerCtx};
use super::relay::{BodyIn, Relay, RelayError};
use super::response::respond;
use crate::config::{Config, UpstreamGroup};
use crate::error::{ErrorKind, ProxyError};
use crate::http::chunked::ChunkedDecoder;
use crate::http::{Framing, Version, answer};
use crate::upstream::Outcome;

/// Request facts kept after its head has been rewritten into `Client::out`.
pub(crate) struct Exchange {
    pub head_len: usize,
    pub framing: Framing,
    pub keep_alive: bool,
    pub is_head: bool,
    pub idempotent: bool,
    pub expect_continue: bool,
    pub upgrade: bool,
    pub version: Version,
    /// 0 means unlimited.
    pub body_limit: u64,
    /// The route (position in the snapshot), for its response edits.
    pub route: usize,
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

/// Why the upstream attempt failed, and whether it may be retried.
pub(super) enum Failure {
    /// Nothing usable came back; retry on a fresh connection if allowed.
    Retryable(ProxyError),
    Final(ProxyError),
    /// The client went away or broke its own framing: close, with the
    /// answer given if any.
    Client(Option<u16>),
    /// Writing the request body upstream failed: the upstream may have
    /// answered early.
    UpstreamStopped,
    /// The upstream answered a status listed in `retry_on` (only when a
    /// retry was possible; nothing was sent to the client).
    Status(u16),
}

pub(crate) async fn run(
    c: &mut Client,
    ctx: &WorkerCtx,
    generation: u64,
    config: &Snapshot,
    group_idx: usize,
    ex: Exchange,
) -> Next {
    let group = &config.upstreams[group_idx];
    c.inbuf.consume(ex.head_len);
    let mut body = match ex.framing {
        Framing::Length(n) if n <= INLINE_BODY && c.inbuf.len() as u64 >= n => {
            c.out.extend_from_slice(&c.inbuf.bytes()[..n as usize]);
            c.inbuf.consume(n as usize);
            None
        }
        Framing::Length(n) => Some(BodyIn::Length(n)),
        Framing::Chunked => Some(BodyIn::Chunked(ChunkedDecoder::new())),
        Framing::Empty | Framing::Close => None,
    };
    let replayable = body.is_none();
    ctx.with_group(generation, group_idx, |g| g.earn_retry(group.retry_budget));
    // Servers this request failed on, so retries go elsewhere.
    let mut tried = Tried::default();
    let Some(mut server) = ctx.pick_server(generation, config, group_idx, ex.hash, &[], ex.region)
    else {
        // Every server is down, ejected or full: say so at once.
        return answer_error(c, config, 503, !replayable || !ex.keep_alive, !replayable).await;
    };
    let mut retries_left = group.retries;
    // The request head stays in `request` until the exchange ends, for a
    // retry; `c.out` takes the spare buffer for the response head.
    let mut request = std::mem::take(&mut c.out);
    c.out = std::mem::take(&mut c.spare);
    c.out.clear();
    let mut allow_pooled = true;
    let retry = |tried: &mut Tried, failed: usize, retries_left: &mut u32, budgeted: bool| {
        tried.add(failed);
        if *retries_left == 0 || tried.full() {
            return None;
        }
        // Budgeted retries repeat work an upstream may have seen.
        if budgeted && ctx.with_group(generation, group_idx, |g| g.spend_retry()) != Some(true) {
            return None;
        }
        let next = ctx.pick_server(
            generation,
            config,
            group_idx,
            ex.hash,
            tried.list(),
            ex.region,
        )?;
        *retries_left -= 1;
        Some(next)
    };

    let next = loop {
        let addr = group.servers[server].addr;
        let started = Instant::now();
        // The address the client connected to: from its PROXY header,
        // else the accepted socket's (asked only when a header is sent).
        let local = match (c.local, group.send_proxy_protocol) {
            (None, Some(_)) => c.stream.socket().local_addr().ok(),
            (local, _) => local,
        };
        let client = (c.peer, local);
        let (mut upstream, reused) = match acquire(
            ctx,
            group,
            &group.servers[server],
            allow_pooled,
            client,
            started,
        )
        .await
        {
            Ok(u) => u,
            Err(e) => {
                ctx.finish_server(generation, config, group_idx, server, Outcome::Failure);
                // Nothing was sent: any request may go to another server
                // (as nginx's default proxy_next_upstream does), and no
                // budget is spent: nothing reached an upstream.
                if let Some(next) = retry(&mut tried, server, &mut retries_left, false) {
                    tracing::debug!(worker = ctx.id, %addr, next = %group.servers[next].addr, "connect failed; trying the next server");
                    server = next;
                    allow_pooled = true;
                    continue;
                }
                let close = !replayable || !ex.keep_alive;
                let status = e.status().unwrap_or(502);
                break answer_error(c, config, status, close, !replayable).await;
            }
        };
        // A status worth retrying is only held back when a retry can
        // really happen; otherwise the response goes to the client.
        let retry_status = replayable
            && ex.idempotent
            && retries_left > 0
            && !group.retry_on.is_empty()
            && !tried.full()
            && ctx
                .with_group(generation, group_idx, |g| {
                    let mut excluded = tried;
                    excluded.add(server);
                    g.can_retry() && g.has_alternative(group, excluded.list(), Instant::now())
                })
                .unwrap_or(false);
        let attempt = exchange(
            c,
            ctx,
            &mut upstream,
            config,
            group,
            &ex,
            &mut request,
            body.as_mut(),
            retry_status,
        )
        .await;
        match attempt {
            Ok(Done::Response {
                client_keep,
                reusable,
                linger,
                quiet,
                status,
            }) => {
                let failed = status >= 500 && group.outlier.as_ref().is_some_and(|o| o.on_5xx);
                // One clock read for the latency, the balancer and the pool.
                let now = Instant::now();
                let outcome = if failed {
                    Outcome::Failure
                } else {
                    Outcome::Success(now.saturating_duration_since(started))
                };
                ctx.finish_server_at(generation, config, group_idx, server, outcome, now);
                if reusable && group.send_proxy_protocol.is_none() && !upstream.has_unread_input() {
                    upstream.release_buffers();
                    let max = group.max_idle_per_server;
                    ctx.pool.borrow_mut().put(
                        pool_key(group, &group.servers[server]),
                        upstream,
                        max,
                        group.idle_timeout,
                        now,
                    );
                }
                break match (client_keep, linger) {
                    (true, _) => Next::KeepAlive,
                    (false, true) => Next::CloseLinger,
                    (false, false) if quiet => Next::CloseQuiet,
                    (false, false) => Next::Close,
                };
            }
            Ok(Done::Switched) => {
                let now = Instant::now();
                let outcome = Outcome::Success(now.saturating_duration_since(started));
                ctx.finish_server_at(generation, config, group_idx, server, outcome, now);
                break Next::Tunnel(upstream, group.tunnel_idle_timeout);
            }
            Err(Failure::Retryable(_)) if reused && allow_pooled && replayable => {
                // A pooled connection the server had closed: the server
                // is not at fault; try it again on a fresh connection.
                tracing::debug!(worker = ctx.id, %addr, "pooled upstream connection failed; retrying on a fresh one");
                allow_pooled = false;
                c.upbuf.consume(c.upbuf.len());
            }
            Err(Failure::Retryable(e)) => {
                ctx.finish_server(generation, config, group_idx, server, Outcome::Failure);
                c.upbuf.consume(c.upbuf.len());
                if replayable
                    && ex.idempotent
                    && let Some(next) = retry(&mut tried, server, &mut retries_left, true)
                {
                    tracing::debug!(worker = ctx.id, %addr, next = %group.servers[next].addr, "upstream failed before answering; retrying on the next server");
                    server = next;
                    allow_pooled = true;
                    continue;
                }
                let status = e.status().unwrap_or(502);
                break answer_error(c, config, status, true, !replayable).await;
            }
            Err(Failure::Status(status)) => {
                // A 5xx counts against the server only where the group
                // says so, as for a 5xx passed to the client.
                let outcome = if group.outlier.as_ref().is_some_and(|o| o.on_5xx) {
                    Outcome::Failure
                } else {
                    Outcome::Success(started.elapsed())
                };
                ctx.finish_server(generation, config, group_idx, server, outcome);
                c.upbuf.consume(c.upbuf.len());
                c.out.clear();
                if let Some(next) = retry(&mut tried, server, &mut retries_left, true) {
                    tracing::debug!(worker = ctx.id, %addr, status, next = %group.servers[next].addr, "retrying a failed status on the next server");
                    server = next;
                    allow_pooled = true;
                    continue;
                }
                // The budget or the servers ran out in between: the
                // client gets the status (generated: the original is gone).
                break answer_error(c, config, status, !ex.keep_alive, false).await;
            }
            Err(Failure::Final(e)) => {
                ctx.finish_server(generation, config, group_idx, server, Outcome::Failure);
                c.upbuf.consume(c.upbuf.len());
                let status = e.status().unwrap_or(502);
                break answer_error(c, config, status, true, !replayable).await;
            }
            Err(Failure::Client(answer)) => {
                ctx.finish_server(generation, config, group_idx, server, Outcome::Neutral);
                match answer {
                    Some(status) => break answer_error(c, config, status, true, true).await,
                    None => break Next::Close,
                }
            }
            // `exchange` turns this into an answer or a Final; kept total.
            Err(Failure::UpstreamStopped) => {
                ctx.finish_server(generation, config, group_idx, server, Outcome::Failure);
                break answer_error(c, config, 502, true, true).await;
            }
        }
    };
    request.clear();
    c.spare = request;
    next
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

/// How one attempt ended well.
pub(super) enum Done {
    Response {
        client_keep: bool,
        reusable: bool,
        /// Close with a lingering read (client input left unread).
        linger: bool,
        /// No operation on the client socket was dropped in flight.
        quiet: bool,
        /// The final status passed on.
        status: u16,
    },
    /// 101 sent to the client: the connection becomes a tunnel.
    Switched,
}

/// Sends a generated answer. `linger` when the client may still be
/// sending a body we did not read.
async fn answer_error(
    c: &mut Client,
    config: &Config,
    status: u16,
    close: bool,
    linger: bool,
) -> Next {
    let answer = answer::error_answer(status, close);
    let sent = write_all(&mut c.stream, answer, config.timeouts.io).await;
    match (sent.is_ok(), close, linger) {
        (true, false, _) => Next::KeepAlive,
        (true, true, true) => Next::CloseLinger,
        _ => Next::Close,
    }
}

/// One attempt on one upstream connection. `request` (head plus any
/// inline body) is given back intact, so a failed attempt can be replayed.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    c: &mut Client,
    ctx: &WorkerCtx,
    upstream: &mut Conn,
    config: &Config,
    group: &UpstreamGroup,
    ex: &Exchange,
    request: &mut Vec<u8>,
    body: Option<&mut BodyIn>,
    retry_status: bool,
) -> Result<Done, Failure> {
    let bytes = std::mem::take(request);
    let (written, bytes) = write_all_keep(upstream, bytes, group.io_timeout).await;
    match bytes {
        Some(bytes) => *request = bytes,
        None => {
            return Err(Failure::Final(ProxyError::upstream(
                ErrorKind::GatewayTimeout,
            )));
        }
    }
    if written.is_err() {
        return Err(Failure::Retryable(ProxyError::upstream(
            ErrorKind::BadGateway,
        )));
    }
    if let Some(body) = body {
        match send_body(c, upstream, config, group, ex, body).await {
            Ok(()) => {}
            // The upstream stopped taking the body: it may have answered
            // early (413, 401, ...). Pass that answer on and close, since
            // the rest of the client's body is unread.
            Err(Failure::UpstreamStopped) => {
                return match respond(c, &ctx.drain, upstream, config, group, ex, true, false).await
                {
                    Ok(Done::Response { status, .. }) => Ok(Done::Response {
                        client_keep: false,
                        reusable: false,
                        linger: true,
                        quiet: false,
                        status,
                    }),
                    // A held-back head that failed keeps its 502 or 504.
                    Err(f @ Failure::Final(_)) => Err(f),
                    _ => Err(Failure::Final(ProxyError::upstream(ErrorKind::BadGateway))),
                };
            }
            Err(f) => return Err(f),
        }
    }
    respond(
        c,
        &ctx.drain,
        upstream,
        config,
        group,
        ex,
        false,
        retry_status,
    )
    .await
}

/// Streams the rest of the request body from the client to the upstream.
async fn send_body(
    c: &mut Client,
    upstream: &mut Conn,
    config: &Config,
    group: &UpstreamGroup,
    ex: &Exchange,
    body: &mut BodyIn,
) -> Result<(), Failure> {
    if ex.expect_continue && c.inbuf.is_empty() {
        write_all(&mut c.stream, answer::CONTINUE, config.timeouts.io)
            .await
            .map_err(|_| Failure::Client(None))?;
    }
    let input = std::mem::replace(body, BodyIn::Length(0));
    let chunked_out = matches!(input, BodyIn::Chunked(_));
    let relay = Relay {
        input,
        chunked_out,
        limit: if ex.body_limit == 0 {
            u64::MAX
        } else {
            ex.body_limit
        },
        read_timeout: config.timeouts.io,
        write_timeout: group.io_timeout,
        splice: config.runtime.splice,
        // The head went out on its own already (see above).
        postpone: false,
    };
    c.out.clear();
    let result = relay
        .run(&mut c.stream, &mut c.inbuf, upstream, &mut c.out)
        .await;
    result.map_err(|e| match e {
        RelayError::Source | RelayError::SourceTimedOut => Failure::Client(None),
        RelayError::Invalid => Failure::Client(Some(400)),
        RelayError::TooLarge => Failure::Client(Some(413)),
        RelayError::Dest => Failure::UpstreamStopped,
    })
}
