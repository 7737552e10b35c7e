//! The worker's side of the auth filter: the 401 rendered with the
//! route's `WWW-Authenticate` challenge.

use super::client::Client;
use super::ctx::WorkerCtx;
use super::plan::Plan;
use crate::config::Config;
use crate::error::ProxyError;
use crate::pipeline::render_unauthorized;

/// The answer to a request the route's auth refused (`head`: to a HEAD
/// request, without its body).
pub(super) fn refused<'c>(
    c: &mut Client,
    (ctx, config): (&WorkerCtx, &Config),
    error: ProxyError,
    (close, head): (bool, bool),
) -> Plan<'c> {
    let rule = c
        .record
        .route
        .and_then(|r| config.chains.get(r))
        .and_then(|chain| chain.auth());
    let Some(rule) = rule else {
        return Plan::Error { error, close };
    };
    let refusal = ctx.auth.borrow().last;
    super::phase::refused(c, error, close, |out| {
        render_unauthorized(out, (&error, rule.challenge(refusal)), (close, head));
    })
}
