//! The response half of a proxy exchange: read the upstream's head(s),
//! pass interim ones on, write the rewritten final head with the framing
//! the client gets, and relay the body.

use std::io;

use super::buffer::flush_vec;
use super::client::Client;
use super::conn::Conn;
use super::drain::Drain;
use super::proxy::{Done, Exchange, Failure};
use super::relay::{BodyIn, Relay, RelayError};
use crate::config::{Config, UpstreamGroup};
use crate::error::{ErrorKind, ProxyError};
use crate::http::chunked::ChunkedDecoder;
use crate::http::encode::{ConnectionDirective, NO_EDITS, write_response_head_with};
use crate::http::{Framing, Version, empty_headers, parse_response};

/// What the response head decided.
struct ResponsePlan {
    framing: Framing,
    out_framing: Framing,
    client_keep: bool,
    upstream_reusable: bool,
    interim: bool,
    switching: bool,
    status: u16,
}

/// Reads the response head(s), writes the rewritten head and relays the
/// body. `closing`: the client connection ends after this response
/// (request body left unread), so the head says so; likewise when the
/// worker is draining by the time the head is written.
#[allow(clippy::too_many_arguments)]
pub(super) async fn respond(
    c: &mut Client,
    drain: &Drain,
    upstream: &mut Conn,
    config: &Config,
    group: &UpstreamGroup,
    ex: &Exchange,
    closing: bool,
    retry_status: bool,
) -> Result<Done, Failure> {
    let mut got_any = false;
    let plan = loop {
        let planned = plan_response(c, config, group, ex, closing || drain.is_draining())
            .map_err(Failure::Final)?;
        if let Some(plan) = planned {
            if plan.interim {
                // 1xx other than 101: pass to a 1.1 client, then read on.
                if ex.version == Version::Http11 {
                    flush_vec(&mut c.stream, &mut c.out, config.timeouts.io)
                        .await
                        .map_err(|_| Failure::Client(None))?;
                }
                c.out.clear();
                got_any = true;
                continue;
            }
            if retry_status && group.retry_on.contains(&plan.status) {
                // Not passed on: the caller retries on another server.
                return Err(Failure::Status(plan.status));
            }
            break plan;
        }
        let n = c
            .upbuf
            .fill(upstream, 8192, group.response_timeout)
            .await
            .map_err(|e| response_read_failure(&e, got_any || !c.upbuf.is_empty(), ex))?;
        if n == 0 {
            let err = io::Error::from(io::ErrorKind::UnexpectedEof);
            return Err(response_read_failure(
                &err,
                got_any || !c.upbuf.is_empty(),
                ex,
            ));
        }
    };

    if plan.switching {
        flush_vec(&mut c.stream, &mut c.out, config.timeouts.io)
            .await
            .map_err(|_| Failure::Client(None))?;
        // Bytes the upstream sent after its 101 belong to the new protocol.
        if !c.upbuf.is_empty() {
            let n = c.upbuf.len();
            super::buffer::write_from_read_buf(&mut c.stream, &mut c.upbuf, n, config.timeouts.io)
                .await
                .map_err(|_| Failure::Client(None))?;
        }
        if !c.inbuf.is_empty() {
            let n = c.inbuf.len();
            super::buffer::write_from_read_buf(upstream, &mut c.inbuf, n, group.io_timeout)
                .await
                .map_err(|_| Failure::Final(ProxyError::upstream(ErrorKind::BadGateway)))?;
        }
        return Ok(Done::Switched);
    }

    let input = match plan.framing {
        Framing::Empty => None,
        Framing::Length(n) => Some(BodyIn::Length(n)),
        Framing::Chunked => Some(BodyIn::Chunked(ChunkedDecoder::new())),
        Framing::Close => Some(BodyIn::UntilClose),
    };
    let relayed = match input {
        None => flush_vec(&mut c.stream, &mut c.out, config.timeouts.io)
            .await
            .map_err(|_| RelayError::Dest),
        Some(input) => {
            let relay = Relay {
                input,
                chunked_out: plan.out_framing == Framing::Chunked,
                limit: u64::MAX,
                read_timeout: group.io_timeout,
                write_timeout: config.timeouts.io,
                splice: config.runtime.splice,
                postpone: true,
            };
            relay
                .run(upstream, &mut c.upbuf, &mut c.stream, &mut c.out)
                .await
        }
    };
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
        return Err(Failure::Final(ProxyError::upstream(kind)));
    }
    // Anything after the body is a protocol error on that connection.
    let reusable = relayed.is_ok() && plan.upstream_reusable && c.upbuf.is_empty();
    c.upbuf.consume(c.upbuf.len());
    c.out.clear();
    // After a failed relay the head is already on its way: all we can do
    // is close the client connection.
    let client_keep = relayed.is_ok() && plan.client_keep;
    Ok(Done::Response {
        client_keep,
        reusable,
        linger: false,
        quiet: relayed.is_ok(),
        status: plan.status,
    })
}

fn response_read_failure(e: &io::Error, got_bytes: bool, ex: &Exchange) -> Failure {
    if e.kind() == io::ErrorKind::TimedOut {
        return Failure::Final(ProxyError::upstream(ErrorKind::GatewayTimeout));
    }
    let err = ProxyError::upstream(ErrorKind::BadGateway);
    if !got_bytes && ex.idempotent {
        Failure::Retryable(err)
    } else {
        Failure::Final(err)
    }
}

/// Parses a buffered response head and writes the client's head into
/// `c.out`. Ok(None) means more bytes are needed.
fn plan_response(
    c: &mut Client,
    config: &Config,
    group: &UpstreamGroup,
    ex: &Exchange,
    closing: bool,
) -> Result<Option<ResponsePlan>, ProxyError> {
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
    let edits = config
        .routes
        .routes
        .get(ex.route)
        .map_or(&NO_EDITS, |r| &r.response_headers);
    c.out.clear();
    // 101 (switching to a tunnel) and other 1xx (more heads follow) carry
    // no body and end nothing: pass the head on and say which it was.
    if resp.is_interim() {
        let switching = resp.status == 101;
        if switching && !ex.upgrade {
            return Err(ProxyError::upstream(ErrorKind::BadGateway));
        }
        let directive = if switching {
            ConnectionDirective::Upgrade
        } else {
            ConnectionDirective::Default
        };
        write_response_head_with(
            &mut c.out,
            &resp,
            Framing::Empty,
            directive,
            via,
            hsts,
            edits,
        );
        let head_len = resp.head_len;
        let status = resp.status;
        c.upbuf.consume(head_len);
        return Ok(Some(ResponsePlan {
            framing: Framing::Empty,
            out_framing: Framing::Empty,
            client_keep: false,
            upstream_reusable: false,
            interim: !switching,
            switching,
            status,
        }));
    }
    let client_11 = ex.version == Version::Http11;
    let out_framing = match resp.framing {
        Framing::Chunked | Framing::Close if client_11 => Framing::Chunked,
        Framing::Chunked | Framing::Close => Framing::Close,
        other => other,
    };
    // The request body was fully read (the relay finished) by the time we
    // get here, so only the client's wish and the framing decide.
    let client_keep = ex.keep_alive && !closing && out_framing != Framing::Close;
    let directive = match (client_keep, client_11) {
        (false, _) => ConnectionDirective::Close,
        (true, true) => ConnectionDirective::Default,
        (true, false) => ConnectionDirective::KeepAlive,
    };
    write_response_head_with(&mut c.out, &resp, out_framing, directive, via, hsts, edits);
    let plan = ResponsePlan {
        framing: resp.framing,
        out_framing,
        client_keep,
        upstream_reusable: resp.reusable,
        interim: false,
        switching: false,
        status: resp.status,
    };
    let head_len = resp.head_len;
    c.upbuf.consume(head_len);
    Ok(Some(plan))
}
