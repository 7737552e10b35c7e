//! The client side of a request: the one interface through which the
//! exchange, the proxy's own answers and the body relays reach the
//! client, and its HTTP/1.1 implementation on `Client`. The exchange says
//! what a response is (a head as a structure, the route's edits, how much
//! body follows, whether the connection should end); the session decides
//! how that goes on the wire (framing, `Connection`, interim heads for
//! 1.0 clients) and keeps the request's record of what was sent. An
//! HTTP/2 stream or a cache-served body would be another implementation.

use std::time::Duration;

use super::cache::SharedBody;
use super::client::Client;
use super::relay::{BodyIn, Relay, RelayError};
use std::net::{IpAddr, SocketAddr};

use crate::config::Config;
use crate::error::{ErrorKind, ProxyError};
use crate::http::chunked::{LAST_CHUNK, encode_chunk};
use crate::http::encode::{
    ConnectionDirective, FieldEdits, ProxyFields, StoredHead, write_response_head_with,
    write_stored_head,
};
use crate::http::{Framing, ResponseHead, Version, answer};
use crate::pipeline::{Exit, Record, Vars, add_request_id};
use crate::router::Respond;
use crate::rt::buffer::{ReadBuf, flush_vec, write_all, write_from_read_buf, write_head_body};
use crate::rt::conn::Conn;

/// Which head of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadKind {
    /// 1xx other than 101: the final head follows.
    Interim,
    /// 101: the connection becomes a tunnel.
    Switching,
    Final,
}

/// A response head as the exchange hands it to the client side.
pub(crate) struct Head<'a, 'h, 'b> {
    /// The upstream's head: status, reason, fields, its framing.
    pub resp: &'a ResponseHead<'h, 'b>,
    pub kind: HeadKind,
    /// The connection should end after this response.
    pub close: bool,
    /// The body's length changes (compression): no length, chunked or
    /// close-delimited instead.
    pub reframe: bool,
    /// What the proxy adds and takes away: `Via`, HSTS, origin hiding.
    pub fields: ProxyFields<'a>,
}

/// How a final response travels to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Carry {
    /// The framing the client gets (may differ from the upstream's).
    pub framing: Framing,
    /// The connection stays open after the body.
    pub keep_alive: bool,
}

/// Time limits and options of one body relay.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Splicing allowed (the identity plan on plain sockets only).
    pub splice: bool,
    /// Most body bytes accepted (`u64::MAX`: no limit).
    pub limit: u64,
}

/// A response body that did not reach its end.
#[derive(Debug)]
pub(crate) struct BodyFailure {
    pub error: RelayError,
    /// Some of the response (its head at least) reached the client.
    pub sent: bool,
}

/// The client side of a request.
pub(crate) trait Downstream {
    /// What happened to the request.
    fn record(&mut self) -> &mut Record;
    /// The request's values for the variables of its route's filters.
    fn vars<'a>(
        &'a self,
        config: &'a Config,
        route: usize,
        client_ip: IpAddr,
        host: &'a [u8],
    ) -> Vars<'a>;
    /// The listener's position in the current snapshot.
    fn listener(&self) -> usize;
    /// The client's address, and the one it connected to (from a PROXY
    /// header, else asked of the socket when `local` is wanted).
    fn addrs(&self, local: bool) -> (SocketAddr, Option<SocketAddr>);
    /// Appends a request body of `len` bytes to `to` when all of it has
    /// arrived with the head; false (nothing taken) otherwise.
    fn take_whole_body(&mut self, len: u64, to: &mut Vec<u8>) -> bool;
    /// Renders a response head with the route's edits, to be sent with
    /// `send_head` or ahead of the body; says how a final one travels.
    fn render_head<E: FieldEdits>(&mut self, head: &Head<'_, '_, '_>, edits: &E) -> Carry;
    /// Drops a rendered head that will not be sent (the exchange retries
    /// or answers instead).
    fn discard_head(&mut self);
    /// Sends an interim or switching head rendered by `render_head`.
    async fn send_head(&mut self, timeout: Duration) -> Result<(), ProxyError>;
    /// After a 101 was sent: bytes either side already read belong to
    /// the new protocol and are passed on.
    async fn switch_over(
        &mut self,
        upstream: &mut Conn,
        upbuf: &mut ReadBuf,
        limits: BodyLimits,
    ) -> Result<(), ProxyError>;
    /// Sends the rendered final head and the body read from `upstream`
    /// (bytes already read in `upbuf` first) as it comes: the identity
    /// plan, which alone may splice or hold a small head back.
    async fn relay_response(
        &mut self,
        upstream: (&mut Conn, &mut ReadBuf),
        input: BodyIn,
        carry: Carry,
        limits: BodyLimits,
    ) -> Result<(), BodyFailure>;
    /// `100 Continue` before the request body is read, if the client
    /// still waits for it.
    async fn send_continue(&mut self, timeout: Duration) -> Result<(), ProxyError>;
    /// Streams the request body to `upstream`.
    async fn relay_request(
        &mut self,
        upstream: &mut Conn,
        input: BodyIn,
        limits: BodyLimits,
    ) -> Result<(), RelayError>;
    /// The generated answer for `e` (none for a client that is gone), or
    /// the operator's `page` for its status. False when nothing could be
    /// sent.
    async fn answer(
        &mut self,
        e: ProxyError,
        close: bool,
        timeout: Duration,
        page: Option<&Respond>,
    ) -> bool;
    /// Sends the operator's page in place of a response with its status.
    async fn send_page(&mut self, page: &Respond, close: bool, timeout: Duration) -> bool;
    /// Sends an answer rendered in full (a fixed response, a redirect).
    async fn send_rendered(&mut self, timeout: Duration) -> bool;
    /// Renders a stored response's head (an answer from the cache) with
    /// its edits, to be sent with `send_stored`.
    fn render_stored<E: FieldEdits>(&mut self, head: &StoredHead<'_>, close: bool, edits: &E);
    /// Sends the rendered stored head and `body` (None: head only).
    /// False when the client is gone.
    async fn send_stored(&mut self, body: Option<&SharedBody>, timeout: Duration) -> bool;
    /// Queues a piece of a response body (the transform plan's output),
    /// framed as `carry` says, behind the head or earlier pieces.
    fn push_body(&mut self, data: &[u8], carry: Carry);
    /// Queues the body's end (the last chunk, when chunked).
    fn end_body(&mut self, carry: Carry);
    /// Sends what is queued: the head, if still held, and body pieces.
    async fn flush_body(&mut self, timeout: Duration) -> Result<(), RelayError>;
}

impl Downstream for Client {
    fn record(&mut self) -> &mut Record {
        &mut self.record
    }

    fn vars<'a>(
        &'a self,
        config: &'a Config,
        route: usize,
        client_ip: IpAddr,
        host: &'a [u8],
    ) -> Vars<'a> {
        super::plan::vars(self, config, route, client_ip, host)
    }

    fn listener(&self) -> usize {
        self.listener
    }

    fn addrs(&self, local: bool) -> (SocketAddr, Option<SocketAddr>) {
        let local = match self.local {
            None if local => self.local_addr(),
            given => given,
        };
        (self.peer, local)
    }

    fn take_whole_body(&mut self, len: u64, to: &mut Vec<u8>) -> bool {
        if (self.inbuf.len() as u64) < len {
            return false;
        }
        to.extend_from_slice(&self.inbuf.bytes()[..len as usize]);
        self.inbuf.consume(len as usize);
        self.record.bytes_in += len;
        true
    }

    fn render_head<E: FieldEdits>(&mut self, head: &Head<'_, '_, '_>, edits: &E) -> Carry {
        let client_11 = self.version == Version::Http11;
        let resp = head.resp;
        let (framing, keep_alive, directive) = match head.kind {
            // A 1.0 client gets no interim heads.
            HeadKind::Interim if !client_11 => {
                self.out.clear();
                return no_body();
            }
            HeadKind::Interim => (Framing::Empty, false, ConnectionDirective::Default),
            HeadKind::Switching => (Framing::Empty, false, ConnectionDirective::Upgrade),
            HeadKind::Final => {
                let upstream = match resp.framing {
                    Framing::Length(_) | Framing::Empty if head.reframe => Framing::Chunked,
                    other => other,
                };
                let framing = match upstream {
                    Framing::Chunked | Framing::Close if client_11 => Framing::Chunked,
                    Framing::Chunked | Framing::Close => Framing::Close,
                    other => other,
                };
                let keep = !head.close && framing != Framing::Close;
                let directive = match (keep, client_11) {
                    (false, _) => ConnectionDirective::Close,
                    (true, true) => ConnectionDirective::Default,
                    (true, false) => ConnectionDirective::KeepAlive,
                };
                (framing, keep, directive)
            }
        };
        self.out.clear();
        write_response_head_with(&mut self.out, resp, framing, directive, &head.fields, edits);
        Carry {
            framing,
            keep_alive,
        }
    }

    fn discard_head(&mut self) {
        self.out.clear();
    }

    async fn send_head(&mut self, timeout: Duration) -> Result<(), ProxyError> {
        self.send_out(timeout)
            .await
            .map_err(|_| ProxyError::downstream(ErrorKind::ClientGone))
    }

    async fn switch_over(
        &mut self,
        upstream: &mut Conn,
        upbuf: &mut ReadBuf,
        limits: BodyLimits,
    ) -> Result<(), ProxyError> {
        let gone = |_| ProxyError::downstream(ErrorKind::ClientGone);
        if !upbuf.is_empty() {
            let n = upbuf.len();
            write_from_read_buf(&mut self.stream, upbuf, n, limits.write_timeout)
                .await
                .map_err(gone)?;
        }
        if !self.inbuf.is_empty() {
            let n = self.inbuf.len();
            write_from_read_buf(upstream, &mut self.inbuf, n, limits.read_timeout)
                .await
                .map_err(|_| ProxyError::upstream(ErrorKind::BadGateway))?;
        }
        Ok(())
    }

    async fn relay_response(
        &mut self,
        (upstream, upbuf): (&mut Conn, &mut ReadBuf),
        input: BodyIn,
        carry: Carry,
        limits: BodyLimits,
    ) -> Result<(), BodyFailure> {
        let head = self.out.len() as u64;
        let chunked_out = carry.framing == Framing::Chunked;
        let mut relay = relay(input, chunked_out, limits, true);
        let relayed = relay
            .run(upstream, upbuf, &mut self.stream, &mut self.out)
            .await;
        // A head held back (see `Relay::postpone`) is still in `out`
        // when the upstream failed: nothing reached the client.
        let sent = self.out.is_empty();
        if sent {
            self.record.bytes_out += head + relay.moved;
        }
        self.out.clear();
        relayed.map_err(|error| BodyFailure { error, sent })
    }

    async fn send_continue(&mut self, timeout: Duration) -> Result<(), ProxyError> {
        // A client that sent body bytes already is not waiting for it.
        if !self.inbuf.is_empty() {
            return Ok(());
        }
        write_all(&mut self.stream, answer::CONTINUE, timeout)
            .await
            .map(|_| ())
            .map_err(|_| ProxyError::downstream(ErrorKind::ClientGone))
    }

    async fn relay_request(
        &mut self,
        upstream: &mut Conn,
        input: BodyIn,
        limits: BodyLimits,
    ) -> Result<(), RelayError> {
        let chunked_out = matches!(input, BodyIn::Chunked(_));
        // The head went out on its own already: nothing to hold back.
        let mut relay = relay(input, chunked_out, limits, false);
        relay.watch_dest = true;
        relay.floor = super::relay::RateFloor::start(self.body_rate);
        self.out.clear();
        let result = relay
            .run(&mut self.stream, &mut self.inbuf, upstream, &mut self.out)
            .await;
        self.record.bytes_in += relay.moved;
        result
    }

    async fn answer(
        &mut self,
        e: ProxyError,
        close: bool,
        timeout: Duration,
        page: Option<&Respond>,
    ) -> bool {
        self.record.fail(e);
        let Some(status) = e.status() else {
            return false;
        };
        if let Some(page) = page {
            return self.send_page(page, close, timeout).await;
        }
        self.record.status = status;
        match answer::prerendered(status, close) {
            Some(bytes) if !self.record.text.return_id => {
                // A HEAD request gets the head alone (RFC 9110 9.3.2):
                // body bytes would be read as the next response.
                let bytes = if self.head_request {
                    answer::head_of(bytes)
                } else {
                    bytes
                };
                self.record.bytes_out += bytes.len() as u64;
                let sent = write_all(&mut self.stream, bytes, timeout).await.is_ok();
                self.sent(sent)
            }
            Some(bytes) => {
                self.out.clear();
                self.out.extend_from_slice(bytes);
                self.send_rendered(timeout).await
            }
            None => {
                self.out.clear();
                answer::render_answer(&mut self.out, status, close);
                self.send_rendered(timeout).await
            }
        }
    }

    async fn send_page(&mut self, page: &Respond, close: bool, timeout: Duration) -> bool {
        self.record.status = page.status;
        self.out.clear();
        self.out.extend_from_slice(page.bytes(close, false));
        self.send_rendered(timeout).await
    }

    async fn send_rendered(&mut self, timeout: Duration) -> bool {
        if self.head_request {
            let head = answer::head_of(&self.out).len();
            self.out.truncate(head);
        }
        let text = &self.record.text;
        if text.return_id && !text.request_id().is_empty() {
            add_request_id(&mut self.out, text.request_id());
        }
        let sent = self.send_out(timeout).await.is_ok();
        self.sent(sent)
    }

    fn render_stored<E: FieldEdits>(&mut self, head: &StoredHead<'_>, close: bool, edits: &E) {
        let directive = match (close, self.version) {
            (true, _) => ConnectionDirective::Close,
            (false, Version::Http10) => ConnectionDirective::KeepAlive,
            (false, Version::Http11) => ConnectionDirective::Default,
        };
        self.out.clear();
        write_stored_head(&mut self.out, head, directive, edits);
    }

    async fn send_stored(&mut self, body: Option<&SharedBody>, timeout: Duration) -> bool {
        let small = body.is_none_or(|b| b.len() <= COPY_BODY);
        if small {
            if let Some(body) = body {
                self.out.extend_from_slice(body.as_slice());
            }
            let sent = self.send_out(timeout).await.is_ok();
            return self.sent(sent);
        }
        let Some(body) = body else {
            return false;
        };
        self.record.bytes_out += body.len() as u64;
        // The shared body is written from where it is stored: no copy.
        let sent = if let Conn::Plain(socket) = &mut self.stream {
            // Head and body in one send.
            self.record.bytes_out += self.out.len() as u64;
            let (out, vec) = (&mut self.out, &mut self.iovecs);
            write_head_body(socket, out, body.clone(), vec, timeout)
                .await
                .is_ok()
        } else {
            self.send_out(timeout).await.is_ok()
                && write_all(&mut self.stream, body.clone(), timeout)
                    .await
                    .is_ok()
        };
        self.sent(sent)
    }

    fn push_body(&mut self, data: &[u8], carry: Carry) {
        if data.is_empty() {
            return;
        }
        if carry.framing == Framing::Chunked {
            encode_chunk(&mut self.out, data);
        } else {
            self.out.extend_from_slice(data);
        }
    }

    fn end_body(&mut self, carry: Carry) {
        if carry.framing == Framing::Chunked {
            self.out.extend_from_slice(LAST_CHUNK);
        }
    }

    async fn flush_body(&mut self, timeout: Duration) -> Result<(), RelayError> {
        self.send_out(timeout).await.map_err(|_| RelayError::Dest)
    }
}

impl Client {
    /// Sends what `out` holds (counted in the record as sent) and leaves
    /// it empty; nothing to do when it is empty.
    async fn send_out(&mut self, timeout: Duration) -> std::io::Result<()> {
        self.record.bytes_out += self.out.len() as u64;
        flush_vec(&mut self.stream, &mut self.out, timeout).await
    }

    /// Notes in the record that an answer did not reach the client.
    pub(crate) fn sent(&mut self, sent: bool) -> bool {
        if !sent {
            self.record.exit = Exit::ClientGone;
        }
        sent
    }
}

/// Stored bodies up to this size go in the same write as the head.
const COPY_BODY: usize = 16 * 1024;

/// A body relay with these limits, counting from zero.
fn relay(input: BodyIn, chunked_out: bool, limits: BodyLimits, postpone: bool) -> Relay {
    Relay {
        input,
        chunked_out,
        limit: limits.limit,
        read_timeout: limits.read_timeout,
        write_timeout: limits.write_timeout,
        splice: limits.splice,
        postpone,
        watch_dest: false,
        moved: 0,
        floor: None,
    }
}

fn no_body() -> Carry {
    Carry {
        framing: Framing::Empty,
        keep_alive: false,
    }
}
