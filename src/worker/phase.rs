//! The request phase as a worker runs it: the route's chain given the
//! parsed request, this worker's limiter and the request's key values,
//! and its cache of verified credentials; what the filters noted (limits
//! in log mode, filter rule matches) counted in the metrics.

use super::client::Client;
use super::ctx::WorkerCtx;
use super::limits::steered;
use super::plan::Plan;
use crate::config::Config;
use crate::error::ProxyError;
use crate::http::RequestHead;
use crate::limit::{KeyInput, Mode};
use crate::pipeline::{Chain, RequestAuth, RequestLimits, RequestPhase};

/// Runs the route's request phase with this worker's limiter and auth
/// cache.
pub(super) fn run(
    c: &mut Client,
    ctx: &WorkerCtx,
    config: &Config,
    chain: &Chain,
    (req, norm_path): (&RequestHead<'_, '_>, &[u8]),
) -> Result<(), ProxyError> {
    let client_ip = c.record.client_ip;
    let mut limiter = ctx.limiter.borrow_mut();
    limiter.events.clear();
    let limits = RequestLimits {
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
    let mut auth = ctx.auth.borrow_mut();
    let mut filters = ctx.filter_scratch.borrow_mut();
    filters.events.clear();
    let mut phase = RequestPhase {
        req,
        norm_path,
        limits,
        auth: RequestAuth {
            state: &mut auth,
            generation: config.generation,
            route: c.record.route.unwrap_or(usize::MAX),
        },
        filters: &mut filters,
    };
    let result = chain.request(&mut c.record, &mut phase);
    if !filters.events.is_empty() {
        let mut metrics = ctx.requests.metrics.borrow_mut();
        for &(rule, action) in &filters.events {
            metrics.filter_matched(config, rule as usize, action);
        }
    }
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

/// The answer to a request a filter refused with an answer of its own
/// (the 401's challenge, the 429's wait): the refusal recorded, the
/// answer rendered into the client's output by `render`.
pub(super) fn refused<'c>(
    c: &mut Client,
    error: ProxyError,
    close: bool,
    render: impl FnOnce(&mut Vec<u8>),
) -> Plan<'c> {
    c.record.fail(error);
    c.record.status = error.status().unwrap_or_default();
    c.out.clear();
    render(&mut c.out);
    Plan::Rendered { close }
}
