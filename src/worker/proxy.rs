//! The proxy exchange for one request: get an upstream connection (moving
//! to the next server when a connect fails), send the rewritten head and
//! stream the body, hand over to `response`, and pool the upstream
//! connection only when the response was read exactly to its end.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::buffer::{write_all, write_all_keep};
use super::client::Client;
use super::conn::Conn;
use super::connect::{acquire, pool_key};
use super::ctx::WorkerCtx;
use super::relay::{BodyIn, Relay, RelayError};
use super::response::respond;
use crate::config::{Config, UpstreamGroup};
use crate::error::{ErrorKind, ProxyError};
use crate::http::chunked::ChunkedDecoder;
use crate::http::{Framing, Version, answer};

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
}

/// How the client connection continues.
pub(crate) enum Next {
    KeepAlive,
    Close,
    /// Close after reading what the client still sends (an error answered
    /// before its request body was read).
    CloseLinger,
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
}

pub(crate) async fn run(
    c: &mut Client,
    ctx: &WorkerCtx,
    generation: u64,
    config: &Config,
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
    let Some(mut addr) = ctx.pick_server(generation, config, group_idx) else {
        return answer_error(c, config, 503, true, !replayable).await;
    };
    // Servers that refused or timed out a connect for this request.
    let mut failed: [Option<SocketAddr>; MAX_CONNECT_TRIES] = [None; MAX_CONNECT_TRIES];
    let mut connect_tries = 0;
    // The request head stays in `request` until the exchange ends, for a
    // retry; `c.out` takes the spare buffer for the response head.
    let mut request = std::mem::take(&mut c.out);
    c.out = std::mem::take(&mut c.spare);
    c.out.clear();
    let mut allow_pooled = true;

    let next = loop {
        let (mut upstream, reused) = match acquire(ctx, group, addr, allow_pooled).await {
            Ok(u) => u,
            Err(e) => {
                // Nothing was sent: any request may go to another
                // server of the group (as nginx's default
                // proxy_next_upstream does), each server tried once.
                failed[connect_tries] = Some(addr);
                connect_tries += 1;
                let limit = group.servers.len().min(MAX_CONNECT_TRIES);
                if connect_tries < limit
                    && let Some(next) = next_untried(ctx, generation, config, group_idx, &failed)
                {
                    tracing::debug!(worker = ctx.id, %addr, %next, "connect failed; trying the next server");
                    addr = next;
                    allow_pooled = true;
                    continue;
                }
                let close = !replayable || !ex.keep_alive;
                let status = e.status().unwrap_or(502);
                break answer_error(c, config, status, close, !replayable).await;
            }
        };
        let attempt = exchange(
            c,
            ctx,
            &mut upstream,
            config,
            group,
            &ex,
            &mut request,
            body.as_mut(),
        )
        .await;
        match attempt {
            Ok(Done::Response {
                client_keep,
                reusable,
                linger,
            }) => {
                if reusable {
                    let now = Instant::now();
                    let max = group.max_idle_per_server;
                    ctx.pool.borrow_mut().put(
                        pool_key(group, addr),
                        upstream,
                        max,
                        group.idle_timeout,
                        now,
                    );
                }
                break match (client_keep, linger) {
                    (true, _) => Next::KeepAlive,
                    (false, true) => Next::CloseLinger,
                    (false, false) => Next::Close,
                };
            }
            Ok(Done::Switched) => break Next::Tunnel(upstream, group.tunnel_idle_timeout),
            Err(Failure::Retryable(_)) if reused && allow_pooled && replayable => {
                tracing::debug!(worker = ctx.id, %addr, "pooled upstream connection failed; retrying on a fresh one");
                allow_pooled = false;
                c.upbuf.consume(c.upbuf.len());
            }
            Err(Failure::Retryable(e) | Failure::Final(e)) => {
                c.upbuf.consume(c.upbuf.len());
                let status = e.status().unwrap_or(502);
                break answer_error(c, config, status, true, !replayable).await;
            }
            Err(Failure::Client(Some(status))) => {
                break answer_error(c, config, status, true, true).await;
            }
            Err(Failure::Client(None)) => break Next::Close,
            // `exchange` turns this into an answer or a Final; kept total.
            Err(Failure::UpstreamStopped) => {
                break answer_error(c, config, 502, true, true).await;
            }
        }
    };
    request.clear();
    c.spare = request;
    next
}

/// Servers tried at most per request when connects fail.
const MAX_CONNECT_TRIES: usize = 8;

/// The next server in the group's rotation that has not failed a connect
/// for this request (the rotation may repeat heavy servers: bounded).
fn next_untried(
    ctx: &WorkerCtx,
    generation: u64,
    config: &Config,
    group_idx: usize,
    failed: &[Option<SocketAddr>],
) -> Option<SocketAddr> {
    let total_weight: u32 = config.upstreams[group_idx]
        .servers
        .iter()
        .map(|s| s.weight)
        .sum();
    (0..total_weight.min(10_000)).find_map(|_| {
        let addr = ctx.pick_server(generation, config, group_idx)?;
        (!failed.contains(&Some(addr))).then_some(addr)
    })
}

/// How one attempt ended well.
pub(super) enum Done {
    Response {
        client_keep: bool,
        reusable: bool,
        /// Close with a lingering read (client input left unread).
        linger: bool,
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
                return match respond(c, &ctx.drain, upstream, config, group, ex, true).await {
                    Ok(Done::Response { .. }) => Ok(Done::Response {
                        client_keep: false,
                        reusable: false,
                        linger: true,
                    }),
                    _ => Err(Failure::Final(ProxyError::upstream(ErrorKind::BadGateway))),
                };
            }
            Err(f) => return Err(f),
        }
    }
    respond(c, &ctx.drain, upstream, config, group, ex, false).await
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
    };
    c.out.clear();
    let result = relay
        .run(&mut c.stream, &mut c.inbuf, upstream, &mut c.out)
        .await;
    result.map_err(|e| match e {
        RelayError::Source => Failure::Client(None),
        RelayError::Invalid => Failure::Client(Some(400)),
        RelayError::TooLarge => Failure::Client(Some(413)),
        RelayError::Dest => Failure::UpstreamStopped,
    })
}
