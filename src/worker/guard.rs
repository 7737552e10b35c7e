//! The connection guard: admits a new connection under its listener's
//! `max_conns` (at accept) and `max_conns_per_ip` (once the client's
//! address is known, after a PROXY header), refuses the others (closed at
//! once, or a `503` from the error model), and, under `[overload]`
//! pressure, shortens how long idle connections may stay and closes those
//! idle longer. The counts themselves are `net::conn_limit`'s, shared by
//! every worker; the place a connection takes is held by its
//! `ActiveGuard`, so it is given back however the connection ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::ctx::WorkerCtx;
use crate::config::{ClientTimeouts, Config, ListenerConfig, OverLimitAction};
use crate::error::{ErrorKind, ProxyError};
use crate::http::answer::{prerendered, render_answer};
use crate::net::conn_limit::{ConnSlot, ListenerConns, OverLimit};
use crate::observe::metrics::ConnClosed;
use crate::rt::deadline;
use crate::shared::ADMIN_LISTENER;

/// How long a refused connection may take to read its `503`.
const REFUSE_TIME: Duration = Duration::from_secs(1);
/// Bytes read away (at most) after a `503`, so closing does not reset
/// the connection under the answer.
const REFUSE_DRAIN: usize = 64 * 1024;

/// The counts a listener's accept loop admits against (None for the
/// admin listener, which is never capped).
pub(crate) fn counts(ctx: &WorkerCtx, listener_id: u64) -> Option<Arc<ListenerConns>> {
    (listener_id != ADMIN_LISTENER).then(|| ctx.shared.conns.listener(listener_id))
}

/// Takes a place for a connection just accepted on `listener_id`, or
/// says what to do with it.
pub(crate) fn admit(
    ctx: &WorkerCtx,
    conns: &Arc<ListenerConns>,
    listener_id: u64,
) -> Result<ConnSlot, OverLimitAction> {
    let config = ctx.snapshot().1;
    let caps = listener(&config, listener_id)
        .map(|l| l.caps)
        .unwrap_or_default();
    conns
        .enter(caps.max_conns)
        .map_err(|over| refused(ctx, over, caps.over_limit))
}

/// Counts the connection for the client's address (the one a PROXY
/// header gave, else the socket's peer). Peers in `trusted_proxies` are
/// not capped: a load balancer's connection carries many clients (their
/// requests are limited by `[rate_limits]` on the forwarded address).
pub(crate) fn admit_ip(
    ctx: &WorkerCtx,
    slot: &mut ConnSlot,
    listener_id: u64,
    client: SocketAddr,
) -> Result<(), OverLimitAction> {
    let config = ctx.snapshot().1;
    let Some(caps) = listener(&config, listener_id).map(|l| l.caps) else {
        return Ok(());
    };
    if caps.max_conns_per_ip == 0 || config.trusted_proxies.contains(client.ip()) {
        return Ok(());
    }
    slot.enter_ip(client.ip(), caps.max_conns_per_ip)
        .map_err(|over| refused(ctx, over, caps.over_limit))
}

fn refused(ctx: &WorkerCtx, over: OverLimit, action: OverLimitAction) -> OverLimitAction {
    let why = match over {
        OverLimit::Listener => ConnClosed::MaxConns,
        OverLimit::PerIp => ConnClosed::MaxConnsPerIp,
    };
    ctx.requests.metrics.borrow_mut().conn_closed(why, 1);
    action
}

fn listener(config: &Config, id: u64) -> Option<&ListenerConfig> {
    config.listeners.get(config.listener_index(id))
}

/// Ends a connection refused at accept: closed here and now, or
/// answered in a task of its own.
pub(crate) fn refuse_accepted(stream: TcpStream, action: OverLimitAction) {
    if action == OverLimitAction::Answer503 {
        monoio::spawn(refuse(stream, action));
    }
}

/// Ends a refused connection: closed at once, or answered `503` (the
/// error model's answer for `Unavailable`) and closed once the client
/// has read it, within `REFUSE_TIME`.
pub(crate) async fn refuse(mut stream: TcpStream, action: OverLimitAction) {
    if action == OverLimitAction::Close {
        return;
    }
    let Some(status) = ProxyError::downstream(ErrorKind::Unavailable).status() else {
        return;
    };
    let answer: Vec<u8> = match prerendered(status, true) {
        Some(bytes) => bytes.to_vec(),
        None => {
            let mut out = Vec::with_capacity(160);
            render_answer(&mut out, status, true);
            out
        }
    };
    let until = Instant::now() + REFUSE_TIME;
    let (written, _) = match deadline::within(REFUSE_TIME, stream.write_all(answer)).await {
        Ok(done) => done,
        Err(_) => return,
    };
    if written.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    // Read what the client sent (its request) until it closes: a close
    // with unread bytes would reset the connection and could destroy the
    // answer before the client reads it. A dropped read is fine here:
    // the connection is closed right after.
    let mut buf = vec![0u8; 4096];
    let mut drained = 0;
    while drained < REFUSE_DRAIN {
        let left = until.saturating_duration_since(Instant::now());
        match deadline::within(left, stream.read(buf)).await {
            Ok((Ok(n), b)) if n > 0 => {
                drained += n;
                buf = b;
            }
            _ => return,
        }
    }
}

/// When a request head that began at `started` and has `received` bytes
/// so far must be complete: `timeouts.client_head` after it began, or
/// sooner while it arrives below `min_head_rate` (then true).
pub(crate) fn head_deadline(
    timeouts: &ClientTimeouts,
    started: Instant,
    received: u64,
) -> (Instant, bool) {
    let whole = started + timeouts.head;
    match timeouts
        .min_head_rate
        .map(|r| r.deadline(started, received))
    {
        Some(by_rate) if by_rate < whole => (by_rate, true),
        _ => (whole, false),
    }
}

/// How long a connection may wait idle for its next request (`normal`:
/// the keep-alive or head timeout), shortened to `[overload]
/// keepalive_timeout` while its listener is under pressure; true when it
/// was (a close at the end of that wait counts as `overload_idle`).
pub(crate) fn idle_wait(
    ctx: &WorkerCtx,
    slot: Option<&ConnSlot>,
    listener_id: u64,
    normal: Duration,
) -> (Duration, bool) {
    let Some(slot) = slot else {
        return (normal, false);
    };
    let config = ctx.snapshot().1;
    let Some(l) = listener(&config, listener_id) else {
        return (normal, false);
    };
    let overload = &config.overload;
    let pressed = overload
        .keepalive_threshold
        .passed(slot.listener().open(), l.caps.max_conns);
    if pressed && overload.keepalive_timeout < normal {
        (overload.keepalive_timeout, true)
    } else {
        (normal, false)
    }
}

/// Counts connections closed at the end of an idle wait that `[overload]`
/// had shortened (see `idle_wait`): closed idle under pressure as much as
/// the ones the tick closes early.
pub(crate) fn count_overload_closes(ctx: &WorkerCtx, closed: usize) {
    if closed > 0 {
        ctx.requests
            .metrics
            .borrow_mut()
            .conn_closed(ConnClosed::OverloadIdle, closed as u64);
    }
}

/// On the worker's tick: closes parked connections idle longer than
/// `[overload] keepalive_timeout` on listeners under pressure. Nothing
/// is scanned while no listener is.
pub(crate) fn close_idle_under_pressure(ctx: &WorkerCtx, now: Instant) {
    if ctx.parking.len() == 0 {
        return;
    }
    let config = ctx.snapshot().1;
    let overload = &config.overload;
    let passed =
        |open: usize, max_conns: usize| overload.keepalive_threshold.passed(open, max_conns);
    let any = config
        .listeners
        .iter()
        .any(|l| passed(ctx.shared.conns.listener(l.id).open(), l.caps.max_conns));
    if !any {
        return;
    }
    let Some(idle_since) = now.checked_sub(overload.keepalive_timeout) else {
        return;
    };
    let closed = ctx.parking.close_idle(idle_since, |p| {
        let (Some(slot), Some(l)) = (p.active.slot(), listener(&config, p.listener_id)) else {
            return false;
        };
        passed(slot.listener().open(), l.caps.max_conns)
    });
    count_overload_closes(ctx, closed);
}
