//! The response half of a proxy exchange: read the upstream's head(s),
//! pass interim ones on, write the rewritten final head with the framing
//! the client gets, and relay the body.

use std::io;

use super::client::Client;
use super::plan::vars;
use super::proxy::{Done, Exchange, Leg};
use super::relay::{BodyIn, Relay, RelayError};
use crate::error::{ErrorKind, ProxyError, Retry};
use crate::http::chunked::ChunkedDecoder;
use crate::http::encode::{ConnectionDirective, write_response_head_with};
use crate::http::{Framing, Version, empty_headers, parse_response};
use crate::pipeline::{BodyPlan, NO_FILTERS};
use crate::rt::buffer::flush_vec;
use crate::rt::conn::Conn;

/// What the response head decided.
struct ResponsePlan {
    framing: Framing,
    out_framing: Framing,
    client_keep: bool,
    upstream_reusable: bool,
    interim: bool,
    switching: bool,
    status: u16,
    body: BodyPlan,
}

/// Reads the response head(s), writes the rewritten head and relays the
/// body. `closing`: the client connection ends after this response
/// (request body left unread), so the head says so; likewise when the
/// worker is draining by the time the head is written. `retry_status`:
/// a `retry_on` status is not passed on but returned as an error.
pub(super) async fn respond(
    c: &mut Client,
    leg: &Leg<'_>,
    upstream: &mut Conn,
    closing: bool,
    retry_status: bool,
) -> Result<Done, ProxyError> {
    let plan = read_head(c, leg, upstream, closing, retry_status).await?;
    c.record.status = plan.status;
    let chain = leg.config.chains.get(leg.ex.route).unwrap_or(&NO_FILTERS);
    chain.upstream_response(plan.status, &mut c.record);
    if plan.switching {
        switch(c, leg, upstream).await?;
        return Ok(Done::Switched);
    }
    let relayed = relay_body(c, leg, upstream, &plan).await;
    if let Err(e @ (RelayError::Source | RelayError::SourceTimedOut)) = &relayed
        && !c.out.is_empty()
    {
        // The upstream failed while the head was held back with the
        // start of a small body (see `Relay::postpone`): the client has
        // nothing of this response yet, so it gets a clear answer instead
        // of a cut-off one.
        c.out.clear();
        c.upbuf.consume(c.upbuf.len());
        let kind = if matches!(e, RelayError::SourceTimedOut) {
            ErrorKind::GatewayTimeout
        } else {
            ErrorKind::BadGateway
        };
        return Err(ProxyError::upstream(kind));
    }
    // Anything after the body is a protocol error on that connection.
    let reusable = relayed.is_ok() && plan.upstream_reusable && c.upbuf.is_empty();
    c.upbuf.consume(c.upbuf.len());
    c.out.clear();
    // After a failed relay the head is already on its way: all we can do
    // is close the client connection.
    Ok(Done::Response {
        client_keep: relayed.is_ok() && plan.client_keep,
        reusable,
        linger: false,
        quiet: relayed.is_ok(),
    })
}

/// Reads until the final head is parsed, passing interim ones (1xx other
/// than 101) on to a 1.1 client.
async fn read_head(
    c: &mut Client,
    leg: &Leg<'_>,
    upstream: &mut Conn,
    closing: bool,
    retry_status: bool,
) -> Result<ResponsePlan, ProxyError> {
    let (config, group, ex) = (leg.config, leg.group, leg.ex);
    let gone = || ProxyError::downstream(ErrorKind::ClientGone);
    let mut got_any = false;
    loop {
        let closing = closing || leg.ctx.drain.is_draining();
        if let Some(plan) = plan_response(c, leg, closing)? {
            if !plan.interim {
                if retry_status && group.retry_on.contains(&plan.status) {
                    // Not passed on: the caller retries on another server.
                    let status = ErrorKind::UpstreamStatus(plan.status);
                    return Err(ProxyError::upstream(status).retry(Retry::Status));
                }
                return Ok(plan);
            }
            if ex.version == Version::Http11 {
                c.record.bytes_out += c.out.len() as u64;
                flush_vec(&mut c.stream, &mut c.out, config.timeouts.io)
                    .await
                    .map_err(|_| gone())?;
            }
            c.out.clear();
            got_any = true;
            continue;
        }
        let read = c.upbuf.fill(upstream, 8192, group.response_timeout).await;
        let got_bytes = got_any || !c.upbuf.is_empty();
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

/// After a 101: the head goes out, and bytes either side already read
/// belong to the new protocol.
async fn switch(c: &mut Client, leg: &Leg<'_>, upstream: &mut Conn) -> Result<(), ProxyError> {
    let io_timeout = leg.config.timeouts.io;
    let gone = |_| ProxyError::downstream(ErrorKind::ClientGone);
    c.record.bytes_out += c.out.len() as u64;
    flush_vec(&mut c.stream, &mut c.out, io_timeout)
        .await
        .map_err(gone)?;
    if !c.upbuf.is_empty() {
        let n = c.upbuf.len();
        crate::rt::buffer::write_from_read_buf(&mut c.stream, &mut c.upbuf, n, io_timeout)
            .await
            .map_err(gone)?;
    }
    if !c.inbuf.is_empty() {
        let n = c.inbuf.len();
        crate::rt::buffer::write_from_read_buf(upstream, &mut c.inbuf, n, leg.group.io_timeout)
            .await
            .map_err(|_| ProxyError::upstream(ErrorKind::BadGateway))?;
    }
    Ok(())
}

/// Writes the head in `Client::out` and the body as the plan says.
async fn relay_body(
    c: &mut Client,
    leg: &Leg<'_>,
    upstream: &mut Conn,
    plan: &ResponsePlan,
) -> Result<(), RelayError> {
    let io_timeout = leg.config.timeouts.io;
    c.record.bytes_out += c.out.len() as u64;
    let input = match plan.framing {
        Framing::Empty => {
            return flush_vec(&mut c.stream, &mut c.out, io_timeout)
                .await
                .map_err(|_| RelayError::Dest);
        }
        Framing::Length(n) => BodyIn::Length(n),
        Framing::Chunked => BodyIn::Chunked(ChunkedDecoder::new()),
        Framing::Close => BodyIn::UntilClose,
    };
    let identity = plan.body == BodyPlan::Identity;
    let mut relay = Relay {
        input,
        chunked_out: plan.out_framing == Framing::Chunked,
        limit: u64::MAX,
        read_timeout: leg.group.io_timeout,
        write_timeout: io_timeout,
        // Only the identity plan passes bytes through untouched.
        splice: identity && leg.config.runtime.splice,
        postpone: identity,
        moved: 0,
    };
    let relayed = relay
        .run(upstream, &mut c.upbuf, &mut c.stream, &mut c.out)
        .await;
    c.record.bytes_out += relay.moved;
    relayed
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

/// Parses a buffered response head and writes the client's head into
/// `c.out`. Ok(None) means more bytes are needed.
fn plan_response(
    c: &mut Client,
    leg: &Leg<'_>,
    closing: bool,
) -> Result<Option<ResponsePlan>, ProxyError> {
    let (config, group, ex) = (leg.config, leg.group, leg.ex);
    let mut headers = empty_headers();
    let Some(resp) = parse_response(
        c.upbuf.bytes(),
        &mut headers,
        group.max_response_head_size,
        ex.is_head,
    )?
    else {
        return Ok(None);
    };
    let via = config.forwarding.via;
    let hsts = config
        .listeners
        .get(c.listener)
        .and_then(|l| l.tls.as_ref())
        .and_then(|t| t.hsts.as_deref());
    let chain = config.chains.get(ex.route).unwrap_or(&NO_FILTERS);
    let mut out = std::mem::take(&mut c.out);
    out.clear();
    let vars = vars(c, config, ex.route, ex.client_ip, &c.host_buf);
    let (edits, body) = chain.response(&vars);
    // 101 (switching to a tunnel) and other 1xx (more heads follow) carry
    // no body and end nothing: pass the head on and say which it was.
    let switching = resp.status == 101;
    if switching && !ex.upgrade {
        c.out = out;
        return Err(ProxyError::upstream(ErrorKind::BadGateway));
    }
    let plan = if resp.is_interim() {
        ResponsePlan {
            framing: Framing::Empty,
            out_framing: Framing::Empty,
            client_keep: false,
            upstream_reusable: false,
            interim: !switching,
            switching,
            status: resp.status,
            body: BodyPlan::Identity,
        }
    } else {
        final_plan(&resp, ex, closing, body)
    };
    let directive = match (switching, plan.interim, plan.client_keep, ex.version) {
        (true, _, _, _) => ConnectionDirective::Upgrade,
        (_, true, _, _) => ConnectionDirective::Default,
        (_, _, false, _) => ConnectionDirective::Close,
        (_, _, true, Version::Http11) => ConnectionDirective::Default,
        (_, _, true, _) => ConnectionDirective::KeepAlive,
    };
    write_response_head_with(
        &mut out,
        &resp,
        plan.out_framing,
        directive,
        via,
        hsts,
        &edits,
    );
    c.out = out;
    c.upbuf.consume(resp.head_len);
    Ok(Some(plan))
}

/// The framing and connection decisions for a final response head.
fn final_plan(
    resp: &crate::http::ResponseHead<'_, '_>,
    ex: &Exchange,
    closing: bool,
    body: BodyPlan,
) -> ResponsePlan {
    let out_framing = match resp.framing {
        Framing::Chunked | Framing::Close if ex.version == Version::Http11 => Framing::Chunked,
        Framing::Chunked | Framing::Close => Framing::Close,
        other => other,
    };
    // The request body was fully read (the relay finished) by the time we
    // get here, so only the client's wish and the framing decide.
    let client_keep = ex.keep_alive && !closing && out_framing != Framing::Close;
    ResponsePlan {
        framing: resp.framing,
        out_framing,
        client_keep,
        upstream_reusable: resp.reusable,
        interim: false,
        switching: false,
        status: resp.status,
        body,
    }
}
