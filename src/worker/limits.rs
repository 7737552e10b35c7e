//! The worker's side of the rate-limit filter: the request phase run
//! with this worker's limiter and the request's key values, refusals
//! counted in the metrics, and the 429 rendered with its headers.

use std::net::IpAddr;

use super::client::Client;
use super::ctx::WorkerCtx;
use super::plan::Plan;
use crate::config::Config;
use crate::error::ProxyError;
use crate::http::RequestHead;
use crate::limit::{KeyInput, Mode};
use crate::pipeline::{Chain, RequestLimits, render_limited};

/// Runs the route's request phase with this worker's limiter.
pub(super) fn request_phase(
    c: &mut Client,
    ctx: &WorkerCtx,
    config: &Config,
    chain: &Chain,
    (req, norm_path): (&RequestHead<'_, '_>, &[u8]),
) -> Result<(), ProxyError> {
    let client_ip = c.record.client_ip;
    let mut limiter = ctx.limiter.borrow_mut();
    limiter.events.clear();
    let mut limits = RequestLimits {
        limiter: &mut limiter,
        limits: (config.generation, &config.rate_limits),
        input: KeyInput {
            client_ip,
            steered: steered(c, ctx, config, client_ip),
            route: c
                .record
                .route
                .and_then(|i| config.routes.routes.get(i))
                .map_or("", |r| r.name.as_str()),
            path: norm_path,
            headers: req.headers,
        },
    };
    let result = chain.request(&mut c.record, &mut limits);
    if !limiter.events.is_empty() {
        let mut metrics = ctx.requests.metrics.borrow_mut();
        for &(limit, mode) in &limiter.events {
            metrics.rate_limited(config, limit, mode);
            if mode == Mode::Log && c.record.rate_limit_logged.is_none() {
                c.record.rate_limit_logged = Some(limit as u32);
            }
        }
    }
    result
}

/// Whether the request's client address is the connection's TCP peer on
/// a listener whose connections are steered to a worker by source
/// address (so its bucket can live in this worker alone).
fn steered(c: &Client, ctx: &WorkerCtx, config: &Config, client_ip: IpAddr) -> bool {
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
    c.record.fail(error);
    c.record.status = error.status().unwrap_or_default();
    c.out.clear();
    render_limited(
        &mut c.out,
        (&error, limit),
        denial.map_or(0, |d| d.wait_ns),
        (close, head),
    );
    Plan::Rendered { close }
}
