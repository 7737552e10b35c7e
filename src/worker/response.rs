//! The response half of a proxy exchange: read the upstream's head(s),
//! run the route's upstream-response and response phases, and hand each
//! head and the body to the client side (`Downstream`), which decides how
//! they go on the wire.

use std::io;
use std::rc::Rc;

use super::cache::fill::HeadOutcome;
use super::cache::{self, LocalObject};
use super::coding::{self, CodingEdits, ResponseEdits};
use crate::cache::policy::{self, CacheStatus, Fwd};
use crate::compress::{Algorithm, Encoder, gzip_level};

use super::downstream::{BodyFailure, BodyLimits, Carry, Downstream, Head, HeadKind};
use super::proxy::{Done, Exchange, Leg};
use super::relay::{BodyIn, RelayError, source_failure};
use super::reqstate::ReqState;
use super::transform::{self, Coder};
use crate::error::{ErrorKind, ProxyError, Retry};
use crate::http::chunked::ChunkedDecoder;
use crate::http::encode::{FieldEdits, ProxyFields};
use crate::http::{Framing, ResponseHead, empty_headers, parse_response};
use crate::pipeline::{BodyPlan, CacheResult, NO_FILTERS, Record, WithRequestId};
use crate::router::Respond;
use crate::rt::buffer::ReadBuf;
use crate::rt::conn::Conn;

/// What a response head decided.
struct ResponsePlan {
    kind: HeadKind,
    /// The upstream's framing of the body.
    framing: Framing,
    carry: Carry,
    upstream_reusable: bool,
    status: u16,
    body: BodyPlan,
    /// Compress the body with this coding.
    compress: Option<Algorithm>,
    /// A 304 to the cache's revalidation: answer from this object.
    refreshed: Option<Rc<LocalObject>>,
}

/// Reads the response head(s), hands them and the body to the client
/// side. `closing`: the client connection ends after this response
/// (request body left unread); likewise when the worker is draining by
/// the time the head is rendered. `retry_status`: a `retry_on` status is
/// not passed on but returned as an error.
pub(super) async fn respond<D: Downstream>(
    c: &mut D,
    req: &mut ReqState,
    leg: &Leg<'_>,
    upstream: &mut Conn,
    closing: bool,
    retry_status: bool,
) -> Result<Done, ProxyError> {
    let plan = read_head(c, req, leg, upstream, closing, retry_status).await?;
    if let Some(object) = plan.refreshed.clone() {
        return answer_refreshed(c, req, leg, object, &plan).await;
    }
    if plan.status >= 500 && plan.kind == HeadKind::Final && cache::stale_usable(&req.cache) {
        return Ok(answer_stale(c, req, leg, &plan).await);
    }
    if let Some(page) = error_page(req, leg, &plan) {
        return Ok(answer_page(c, req, leg, page, &plan).await);
    }
    c.record().status = plan.status;
    if req.cache.result != CacheResult::None {
        c.record().cache = req.cache.result;
    }
    let chain = leg.config.chains.get(leg.ex.route).unwrap_or(&NO_FILTERS);
    chain.upstream_response(plan.status, c.record());
    if plan.kind == HeadKind::Switching {
        c.send_head(leg.config.timeouts.io).await?;
        c.switch_over(upstream, &mut req.upbuf, limits(leg, false))
            .await?;
        return Ok(Done::Switched);
    }
    // Awaited here rather than in a helper: each async layer on the
    // request path costs its state machine per request.
    let relayed = match body_input(plan.framing) {
        // A background refresh: the client has its answer already.
        None if req.cache.background => {
            c.discard_head();
            Ok(())
        }
        None => c
            .send_head(leg.config.timeouts.io)
            .await
            .map_err(|_| BodyFailure {
                error: RelayError::Dest,
                sent: true,
            }),
        // Only the identity plan passes bytes through untouched, so only
        // it may splice or hold a small head back.
        Some(input) if plan.body == BodyPlan::Identity => {
            let limits = limits(leg, leg.config.runtime.splice);
            c.relay_response((upstream, &mut req.upbuf), input, plan.carry, limits)
                .await
        }
        Some(input) => {
            let limits = limits(leg, false);
            let level = compress_level(leg);
            let mut encoder = stream_encoder(leg, &plan, &input, level);
            let coder = match (&mut encoder, plan.compress) {
                (Some(e), _) => Coder::Stream(e),
                (None, Some(_)) => Coder::Whole(leg.ctx, gzip_level(level)),
                (None, None) => Coder::Identity,
            };
            let relayed =
                transform::relay(c, req, upstream, (input, plan.carry, coder), limits).await;
            if let Some(e) = encoder {
                leg.ctx.give_encoder(level, e);
            }
            relayed
        }
    };
    settle(c.record(), &mut req.upbuf, &plan, relayed)
}

/// The route's configured compression level, if any.
fn compress_level(leg: &Leg<'_>) -> Option<u32> {
    let chain = leg.config.chains.get(leg.ex.route)?;
    chain.compress().and_then(|r| r.level)
}

/// A streaming encoder from the worker's pool for a body that is
/// compressed as it streams. None for an uncompressed body, and for a
/// whole small one, which needs no encoder held through the relay's
/// waits: the worker's compressor takes it at once.
fn stream_encoder(
    leg: &Leg<'_>,
    plan: &ResponsePlan,
    input: &BodyIn,
    level: Option<u32>,
) -> Option<Encoder> {
    let alg = plan.compress?;
    let gzip = alg == Algorithm::Gzip;
    (!Coder::gathers(gzip, input)).then(|| leg.ctx.take_encoder(alg, level))
}

/// The route's page for an upstream's error status, which replaces its
/// answer (not for a background refresh: the client has its answer).
fn error_page<'c>(req: &ReqState, leg: &Leg<'c>, plan: &ResponsePlan) -> Option<&'c Respond> {
    if plan.status < 400 || plan.kind != HeadKind::Final || req.cache.background {
        return None;
    }
    leg.config
        .routes
        .error_page(Some(leg.ex.route), plan.status)
}

/// How the exchange ends once the body was relayed (or not).
fn settle(
    record: &mut Record,
    upbuf: &mut ReadBuf,
    plan: &ResponsePlan,
    relayed: Result<(), BodyFailure>,
) -> Result<Done, ProxyError> {
    match &relayed {
        // The upstream failed while the head was held back with the
        // start of a small body: the client has nothing of this response
        // yet, so it gets a clear answer instead of a cut-off one.
        Err(BodyFailure {
            error: e @ (RelayError::Source | RelayError::SourceTimedOut),
            sent: false,
        }) => {
            upbuf.consume(upbuf.len());
            return Err(source_failure(e));
        }
        // Cut off after the head went out: the log says the upstream failed.
        Err(BodyFailure {
            error: e @ (RelayError::Source | RelayError::SourceTimedOut),
            ..
        }) => record.fail(source_failure(e)),
        _ => {}
    }
    // Anything after the body is a protocol error on that connection.
    let reusable = relayed.is_ok() && plan.upstream_reusable && upbuf.is_empty();
    upbuf.consume(upbuf.len());
    // After a failed relay the head is already on its way: all we can do
    // is close the client connection.
    Ok(Done::Response {
        client_keep: relayed.is_ok() && plan.carry.keep_alive,
        reusable,
        linger: false,
        quiet: relayed.is_ok(),
    })
}

/// Reads until the final head is parsed, passing interim ones (1xx other
/// than 101) on.
async fn read_head<D: Downstream>(
    c: &mut D,
    req: &mut ReqState,
    leg: &Leg<'_>,
    upstream: &mut Conn,
    closing: bool,
    retry_status: bool,
) -> Result<ResponsePlan, ProxyError> {
    let (group, ex) = (leg.group, leg.ex);
    let mut got_any = false;
    loop {
        let closing = closing || leg.ctx.drain.is_draining();
        if let Some(plan) = next_head(c, req, leg, closing)? {
            if plan.kind != HeadKind::Interim {
                if retry_status && group.retry_on.contains(&plan.status) {
                    // Not passed on: the caller retries on another server.
                    c.discard_head();
                    let status = ErrorKind::UpstreamStatus(plan.status);
                    return Err(ProxyError::upstream(status).retry(Retry::Status));
                }
                return Ok(plan);
            }
            if !req.cache.background {
                c.send_head(leg.config.timeouts.io).await?;
            }
            got_any = true;
            continue;
        }
        let read = req.upbuf.fill(upstream, 8192, group.response_timeout).await;
        let got_bytes = got_any || !req.upbuf.is_empty();
        match read {
            Ok(0) => {
                let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
                return Err(response_read_failure(&eof, got_bytes, ex));
            }
            Ok(_) => {}
            Err(e) => return Err(response_read_failure(&e, got_bytes, ex)),
        }
    }
}

/// How the upstream's body arrives; None when there is none.
fn body_input(framing: Framing) -> Option<BodyIn> {
    match framing {
        Framing::Empty => None,
        Framing::Length(n) => Some(BodyIn::Length(n)),
        Framing::Chunked => Some(BodyIn::Chunked(ChunkedDecoder::new())),
        Framing::Close => Some(BodyIn::UntilClose),
    }
}

/// Response bodies: read from the upstream, written to the client.
fn limits(leg: &Leg<'_>, splice: bool) -> BodyLimits {
    BodyLimits {
        read_timeout: leg.group.io_timeout,
        write_timeout: leg.config.timeouts.io,
        splice,
        limit: u64::MAX,
    }
}

fn response_read_failure(e: &io::Error, got_bytes: bool, ex: &Exchange) -> ProxyError {
    if e.kind() == io::ErrorKind::TimedOut {
        return ProxyError::upstream(ErrorKind::GatewayTimeout);
    }
    let err = ProxyError::upstream(ErrorKind::BadGateway);
    if !got_bytes && ex.idempotent {
        err.retry(Retry::BeforeAnswer)
    } else {
        err
    }
}

/// Parses a buffered response head and has the client side render it.
/// Ok(None) means more bytes are needed.
fn next_head<D: Downstream>(
    c: &mut D,
    req: &mut ReqState,
    leg: &Leg<'_>,
    closing: bool,
) -> Result<Option<ResponsePlan>, ProxyError> {
    // Taken out while the head borrows it, so the client side can render.
    let upbuf = std::mem::take(&mut req.upbuf);
    let planned = plan_head(c, req, leg, upbuf.bytes(), closing);
    req.upbuf = upbuf;
    let planned = planned?;
    if let Some((_, head_len)) = &planned {
        req.upbuf.consume(*head_len);
    }
    Ok(planned.map(|(plan, _)| plan))
}

/// The head's plan and length: the upstream-response phase's view of it,
/// the response phase's edits and body plan, rendered by the client side.
fn plan_head<D: Downstream>(
    c: &mut D,
    req: &mut ReqState,
    leg: &Leg<'_>,
    bytes: &[u8],
    closing: bool,
) -> Result<Option<(ResponsePlan, usize)>, ProxyError> {
    let (config, ex) = (leg.config, leg.ex);
    let mut headers = empty_headers();
    let max = leg.group.max_response_head_size;
    let Some(resp) = parse_response(bytes, &mut headers, max, ex.is_head)? else {
        return Ok(None);
    };
    let kind = match resp.status {
        101 if !ex.upgrade => return Err(ProxyError::upstream(ErrorKind::BadGateway)),
        101 => HeadKind::Switching,
        _ if resp.is_interim() => HeadKind::Interim,
        _ => HeadKind::Final,
    };
    let chain = config.chains.get(ex.route).unwrap_or(&NO_FILTERS);
    // The edits' lines are rendered first, so rendering the head needs
    // nothing of the connection but its output.
    // The rewrite buffer is free once the upstream head is written.
    let mut lines = std::mem::take(&mut req.rewrite_buf);
    lines.clear();
    let body = if chain.is_empty() {
        BodyPlan::Identity
    } else {
        let vars = c.vars(config, ex.route, ex.client_ip, &req.host_buf);
        let (edits, body) = chain.response(&vars);
        edits.append(&mut lines);
        body
    };
    let hsts = config
        .listeners
        .get(c.listener())
        .and_then(|l| l.tls.as_ref())
        .and_then(|t| t.hsts.as_deref());
    let work = if kind == HeadKind::Final && !chain.is_empty() {
        response_work(req, leg, &resp)
    } else {
        Work::default()
    };
    let head = Head {
        resp: &resp,
        kind,
        close: closing || !ex.keep_alive,
        reframe: work.compress.is_some(),
        fields: ProxyFields {
            via: config.forwarding.via,
            hsts,
            hiding: Some(&config.origin_hiding),
        },
    };
    // A route without filters edits nothing: skip the per-field checks.
    let prerendered = chain.response_with(&lines);
    let work_lines = std::mem::take(&mut req.cache.lines);
    let edits = (!chain.is_empty()).then(|| ResponseEdits {
        inner: &prerendered,
        coding: work.coding.as_ref(),
        lines: &work_lines,
    });
    // Taken out while the head is rendered, so the id can be borrowed.
    let text = std::mem::take(&mut c.record().text);
    let edits = WithRequestId {
        id: (config.forwarding.request_id && kind == HeadKind::Final).then(|| text.request_id()),
        inner: &edits,
    };
    let carry = c.render_head(&head, &edits);
    c.record().text = text;
    req.rewrite_buf = lines;
    req.cache.lines = work_lines;
    let mut plan = plan(&resp, kind, carry, body);
    if !chain.is_empty() {
        let transform =
            work.compress.is_some() || req.cache.pending.is_some() || req.cache.background;
        if transform {
            plan.body = BodyPlan::Transform;
        }
        plan.compress = work.compress;
        plan.refreshed = work.refreshed;
    }
    Ok(Some((plan, resp.head_len)))
}

/// What the route's response work decided for a final head.
#[derive(Default)]
struct Work {
    coding: Option<CodingEdits>,
    compress: Option<Algorithm>,
    refreshed: Option<Rc<LocalObject>>,
}

/// The compression and cache filters on a final head: the coding (and
/// its head edits), whether the response is stored, and `Cache-Status`,
/// with their lines in `req.cache.lines`.
fn response_work(req: &mut ReqState, leg: &Leg<'_>, resp: &ResponseHead<'_, '_>) -> Work {
    let chain = leg.config.chains.get(leg.ex.route).unwrap_or(&NO_FILTERS);
    let mut work = Work::default();
    let mut lines = std::mem::take(&mut req.cache.lines);
    lines.clear();
    if let Some(rule) = chain.compress()
        && coding::compressible(rule, resp)
    {
        work.compress = req.cache.coding;
        work.coding = Some(coding::head_lines(resp, work.compress, &mut lines));
    }
    if let Some(rule) = chain.cache()
        && req.cache.on
    {
        let coding = work.coding.as_ref();
        match cache::on_response_head(&mut req.cache, leg.config, rule, resp, coding, &mut lines) {
            HeadOutcome::Relay => {}
            HeadOutcome::Refreshed(object) => work.refreshed = Some(object),
        }
        if resp.framing == Framing::Empty && req.cache.pending.is_some() {
            cache::store_empty(&mut req.cache);
        }
    } else if chain.cache().is_some() {
        // A method the cache does not take (RFC 9211 `fwd=method`).
        let status = CacheStatus::Forward {
            fwd: Fwd::Method,
            status: None,
            stored: false,
            collapsed: false,
            detail: None,
        };
        policy::write_cache_status(&mut lines, cache::CACHE_NAME, &status);
    }
    req.cache.lines = lines;
    work
}

/// stale-if-error on an upstream's 5xx: the stored object instead (the
/// upstream's body is left unread, so its connection is not reused).
async fn answer_stale<D: Downstream>(
    c: &mut D,
    req: &mut ReqState,
    leg: &Leg<'_>,
    plan: &ResponsePlan,
) -> Done {
    c.discard_head();
    req.upbuf.consume(req.upbuf.len());
    let e = ProxyError::upstream(ErrorKind::UpstreamStatus(plan.status));
    let close = !plan.carry.keep_alive;
    let sent = cache::serve_stale_on_error(c, req, leg.config, &e, close).await == Some(true);
    Done::Response {
        client_keep: sent && !close,
        reusable: false,
        linger: false,
        quiet: sent,
    }
}

/// An upstream answer whose status has an operator's page (`error_pages`):
/// the page goes to the client in its place. The upstream's body is left
/// unread, so its connection is reused only when there was none.
async fn answer_page<D: Downstream>(
    c: &mut D,
    req: &mut ReqState,
    leg: &Leg<'_>,
    page: &Respond,
    plan: &ResponsePlan,
) -> Done {
    c.discard_head();
    let reusable = plan.upstream_reusable && plan.framing == Framing::Empty && req.upbuf.is_empty();
    req.upbuf.consume(req.upbuf.len());
    let close = !plan.carry.keep_alive;
    let sent = c.send_page(page, close, leg.config.timeouts.io).await;
    Done::Response {
        client_keep: sent && !close,
        reusable,
        linger: false,
        quiet: sent,
    }
}

/// The upstream confirmed the stored object (304): the client gets it
/// from the cache, with its own conditional answered.
async fn answer_refreshed<D: Downstream>(
    c: &mut D,
    req: &mut ReqState,
    leg: &Leg<'_>,
    object: Rc<LocalObject>,
    plan: &ResponsePlan,
) -> Result<Done, ProxyError> {
    c.discard_head();
    let close = !plan.carry.keep_alive;
    let status = CacheStatus::Forward {
        fwd: req.cache.fwd,
        status: Some(304),
        stored: true,
        collapsed: false,
        detail: None,
    };
    let reusable = plan.upstream_reusable && req.upbuf.is_empty();
    req.upbuf.consume(req.upbuf.len());
    let sent = if req.cache.background {
        true
    } else {
        c.record().cache = CacheResult::Revalidated;
        let now = cache::now_secs();
        cache::serve(c, req, leg.config, &object, (status, now), close).await
    };
    Ok(Done::Response {
        client_keep: sent && !close,
        reusable,
        linger: false,
        quiet: sent,
    })
}

fn plan(resp: &ResponseHead<'_, '_>, kind: HeadKind, carry: Carry, body: BodyPlan) -> ResponsePlan {
    ResponsePlan {
        kind,
        framing: if kind == HeadKind::Final {
            resp.framing
        } else {
            Framing::Empty
        },
        carry,
        upstream_reusable: kind == HeadKind::Final && resp.reusable,
        status: resp.status,
        body,
        compress: None,
        refreshed: None,
    }
}
