//! The worker's side of the rate-limit filter: whether a client's bucket
//! may live in this worker alone, and the 429 rendered with its headers.

use std::net::IpAddr;

use super::client::Client;
use super::ctx::WorkerCtx;
use super::plan::Plan;
use crate::config::Config;
use crate::error::ProxyError;

use crate::pipeline::render_limited;

/// Whether the request's client address is the connection's TCP peer on
/// a listener whose connections are steered to a worker by source
/// address (so its bucket can live in this worker alone).
pub(super) fn steered(c: &Client, ctx: &WorkerCtx, config: &Config, client_ip: IpAddr) -> bool {
    config
        .listeners
        .get(c.listener)
        .is_some_and(|l| !l.proxy_protocol)
        && client_ip == c.peer.ip()
        && super::listen::steers_by_source(ctx, config)
}

/// The answer to a request a limit refused: 429 with when to come back
/// (`head`: to a HEAD request, without its body).
pub(super) fn refused<'c>(
    c: &mut Client,
    (ctx, config): (&WorkerCtx, &Config),
    error: ProxyError,
    (close, head): (bool, bool),
) -> Plan<'c> {
    let denial = ctx.limiter.borrow().last;
    let Some(limit) = denial.and_then(|d| config.rate_limits.get(d.limit)) else {
        return Plan::Error { error, close };
    };
    let wait_ns = denial.map_or(0, |d| d.wait_ns);
    super::phase::refused(c, error, close, |out| {
        render_limited(out, (&error, limit), wait_ns, (close, head));
    })
}
