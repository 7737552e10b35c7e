//! Streams one message body from a source to a destination in bounded
//! memory, decoding the source framing (length, chunked, until close) and
//! encoding the destination framing (raw or chunked). Used both ways:
//! request bodies to the upstream, response bodies to the client. The rest
//! of a large raw body between two plain sockets is handed to `splice`.

use std::time::{Duration, Instant};

use monoio::io::AsyncWriteRent;

use crate::config::MinRate;
use crate::error::{ErrorKind, ProxyError};
use crate::http::chunked::{ChunkedDecoder, LAST_CHUNK, encode_chunk};
use crate::rt::buffer::{ReadBuf, flush_vec, write_from_read_buf};
use crate::rt::conn::Conn;
use crate::rt::splice::{self, SPLICE_MIN, SpliceError};
use crate::rt::watch::{Answered, unless_answered};

/// Largest amount copied into the head buffer to send in one write; above
/// it, body bytes are written straight from the read buffer.
const COALESCE_LIMIT: usize = 32 * 1024;
/// Room asked for on each read of a body.
const READ_CHUNK: usize = 16 * 1024;
/// With `postpone`, less than this is not written while more of a
/// length-framed body is still to come (nginx's `postpone_output`
/// default, about one segment's payload).
const POSTPONE_BELOW: usize = 1460;

/// How the body arrives.
pub(crate) enum BodyIn {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

impl BodyIn {
    /// Hands the body bytes buffered in `buf` to `sink` (decoded from the
    /// chunked coding) and consumes them; true when the body is complete.
    /// An until-close body is complete only when its source closes.
    pub fn take_buffered(
        &mut self,
        buf: &mut ReadBuf,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<bool, RelayError> {
        match self {
            BodyIn::Length(left) => {
                let n = (*left).min(buf.len() as u64) as usize;
                sink(&buf.bytes()[..n]);
                buf.consume(n);
                *left -= n as u64;
                Ok(*left == 0)
            }
            BodyIn::Chunked(decoder) => {
                let used = decoder
                    .decode(buf.bytes(), sink)
                    .map_err(|_| RelayError::Invalid)?;
                buf.consume(used);
                Ok(decoder.is_done())
            }
            BodyIn::UntilClose => {
                let n = buf.len();
                sink(buf.bytes());
                buf.consume(n);
                Ok(false)
            }
        }
    }
}

/// Why a relay stopped early.
#[derive(Debug)]
pub(crate) enum RelayError {
    /// Reading the source failed, or it ended too soon (for a body that
    /// lasts until close: a TLS close without `close_notify`).
    Source,
    /// Reading the source timed out.
    SourceTimedOut,
    /// Writing the destination failed or timed out, or it answered
    /// before taking the whole body (see `Relay::watch_dest`).
    Dest,
    /// The source framing was invalid (bad chunk).
    Invalid,
    /// More body than `limit` allows.
    TooLarge,
    /// The source fell below its `floor` rate (a read was dropped: close
    /// without reading it again).
    TooSlow,
}

/// The error a response body cut off by its upstream is recorded as.
pub(crate) fn source_failure(e: &RelayError) -> ProxyError {
    match e {
        RelayError::SourceTimedOut => ProxyError::upstream(ErrorKind::GatewayTimeout),
        _ => ProxyError::upstream(ErrorKind::BadGateway),
    }
}

pub(crate) struct Relay {
    pub input: BodyIn,
    /// Re-encode as chunked (else raw bytes).
    pub chunked_out: bool,
    /// Body limit in bytes (u64::MAX for none).
    pub limit: u64,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Splice the rest of a large raw body when both ends are plain TCP.
    pub splice: bool,
    /// Keep a small head and body start (under `POSTPONE_BELOW` bytes) of
    /// a length-framed body with less than `SPLICE_MIN` to come until more
    /// of it arrives, instead of writing them alone. Upstreams that write the head and the body separately
    /// (nginx serving a file: the head, then `sendfile`) often have only
    /// the head read when the response begins; written at once, a
    /// 100-byte response left for the client in two segments 42 % of the
    /// time, which cost 1-2 µs of kernel TCP work per request (nginx, as a
    /// proxy, holds it back by default). Never for chunked or
    /// until-close bodies, which may be streams (server-sent events)
    /// whose pieces must not wait for the next one.
    pub postpone: bool,
    /// While the source pauses, watch the destination for an early
    /// answer (request bodies: an upstream that answers before taking
    /// the whole body); one ends the relay as `RelayError::Dest`.
    pub watch_dest: bool,
    /// Body bytes moved so far (decoded: without chunk framing).
    pub moved: u64,
    /// The least rate the source must keep (request bodies, with
    /// `timeouts.min_body_rate`).
    pub floor: Option<RateFloor>,
}

/// A least rate for a body. Only the time spent waiting for the source
/// counts: a destination slow to take the bytes does not make the
/// source look slow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateFloor {
    rate: MinRate,
    waited: Duration,
}

impl RateFloor {
    /// A floor of `rate`, nothing waited yet (None: no floor).
    pub fn start(rate: Option<MinRate>) -> Option<RateFloor> {
        rate.map(|rate| RateFloor {
            rate,
            waited: Duration::ZERO,
        })
    }
}

impl Relay {
    /// Relays the body. `out` may already hold a head to send first; it is
    /// flushed and left empty. Body bytes already in `src_buf` are used first.
    /// When reading the source fails while `postpone` holds the head back,
    /// `out` is left holding it: nothing reached `dst`. Postponing ends
    /// with the first write, so `out` is empty after any failure once
    /// something was written.
    pub async fn run(
        &mut self,
        src: &mut Conn,
        src_buf: &mut ReadBuf,
        dst: &mut Conn,
        out: &mut Vec<u8>,
    ) -> Result<(), RelayError> {
        loop {
            let done = self.drain_buffered(src_buf, dst, out).await?;
            if self.moved > self.limit {
                return Err(RelayError::TooLarge);
            }
            if done {
                break;
            }
            // Not for a body large enough to splice: its head goes first,
            // and the body after it without passing through `out`.
            let hold = self.postpone
                && out.len() < POSTPONE_BELOW
                && matches!(self.input, BodyIn::Length(left) if left < SPLICE_MIN);
            if !hold {
                flush_vec(dst, out, self.write_timeout)
                    .await
                    .map_err(|_| RelayError::Dest)?;
                // The head is out: holding later pieces would only delay
                // them, and a failure now must not look like nothing was sent.
                self.postpone = false;
                // Only with `out` flushed: what is spliced goes after it.
                if let Some(want) = self.splice_rest(self.moved)
                    && let (Conn::Plain(from), Conn::Plain(to)) = (&*src, &*dst)
                {
                    let waits = (self.read_timeout, self.write_timeout);
                    match splice::forward(from, to, want, waits, self.watch_dest).await {
                        Ok(n) => {
                            self.moved += n;
                            break;
                        }
                        Err(SpliceError::Unavailable) => self.splice = false,
                        Err(SpliceError::Source) => return Err(RelayError::Source),
                        Err(SpliceError::Dest) => return Err(RelayError::Dest),
                    }
                }
            }
            let (timeout, by_floor) = self.read_limit();
            let waiting = self.floor.map(|_| Instant::now());
            let read = src_buf.fill(src, READ_CHUNK, timeout);
            // Plain upstreams only: a TLS one turns readable for its own
            // records too (TLS 1.3 session tickets), not just an answer.
            let read = match &*dst {
                Conn::Plain(peer) if self.watch_dest => unless_answered(read, peer)
                    .await
                    .map_err(|Answered| RelayError::Dest)?,
                _ => read.await,
            };
            if let (Some(floor), Some(since)) = (&mut self.floor, waiting) {
                floor.waited += since.elapsed();
            }
            let n = read.map_err(|e| match e.kind() {
                std::io::ErrorKind::TimedOut if by_floor => RelayError::TooSlow,
                std::io::ErrorKind::TimedOut => RelayError::SourceTimedOut,
                _ => RelayError::Source,
            })?;
            if n == 0 {
                // A TLS source closed without `close_notify` cut the body
                // short: relayed as a failure (no last chunk), never as
                // complete.
                if matches!(self.input, BodyIn::UntilClose) && src.closed_cleanly() {
                    break;
                }
                return Err(RelayError::Source);
            }
        }
        if self.chunked_out {
            out.extend_from_slice(LAST_CHUNK);
        }
        flush_vec(dst, out, self.write_timeout)
            .await
            .map_err(|_| RelayError::Dest)
    }

    /// How long the next read of the source may take: `read_timeout`, or
    /// less when the floor rate's deadline comes first (then true).
    fn read_limit(&self) -> (Duration, bool) {
        let Some(floor) = self.floor else {
            return (self.read_timeout, false);
        };
        let left = floor
            .rate
            .allowance(self.moved)
            .saturating_sub(floor.waited);
        if left < self.read_timeout {
            (left, true)
        } else {
            (self.read_timeout, false)
        }
    }

    /// What is left to splice once the buffered bytes are gone: `Some(None)`
    /// for everything until close, `Some(Some(n))` for `n` bytes, `None`
    /// when the body is copied (re-chunked, small, or splice is off).
    fn splice_rest(&self, seen: u64) -> Option<Option<u64>> {
        // A spliced body is read by the kernel, unrated.
        if !self.splice || self.chunked_out || self.floor.is_some() {
            return None;
        }
        match self.input {
            BodyIn::Length(left)
                if left >= SPLICE_MIN && seen.saturating_add(left) <= self.limit =>
            {
                Some(Some(left))
            }
            // Unknown length: splice once the body has proved large.
            BodyIn::UntilClose if seen >= SPLICE_MIN && self.limit == u64::MAX => Some(None),
            _ => None,
        }
    }

    /// Moves buffered body bytes towards `dst`; true when the body is complete.
    async fn drain_buffered<W: AsyncWriteRent>(
        &mut self,
        src_buf: &mut ReadBuf,
        dst: &mut W,
        out: &mut Vec<u8>,
    ) -> Result<bool, RelayError> {
        let chunked_out = self.chunked_out;
        match &mut self.input {
            BodyIn::Length(remaining) => {
                let take = (*remaining).min(src_buf.len() as u64) as usize;
                *remaining -= take as u64;
                self.moved += take as u64;
                if pass_leading(take, src_buf, dst, out, chunked_out, self.write_timeout).await? {
                    self.postpone = false;
                }
                Ok(*remaining == 0)
            }
            BodyIn::Chunked(_) => {
                let moved = &mut self.moved;
                self.input.take_buffered(src_buf, |data| {
                    *moved += data.len() as u64;
                    emit(out, data, chunked_out);
                })
            }
            BodyIn::UntilClose => {
                let n = src_buf.len();
                self.moved += n as u64;
                if pass_leading(n, src_buf, dst, out, chunked_out, self.write_timeout).await? {
                    self.postpone = false;
                }
                Ok(false)
            }
        }
    }
}

/// Sends the first `n` buffered bytes on as they are (re-chunked if asked):
/// copied behind what `out` holds when small, else written straight from
/// the read buffer after flushing `out`. True when it wrote to `dst`.
async fn pass_leading<W: AsyncWriteRent>(
    n: usize,
    src_buf: &mut ReadBuf,
    dst: &mut W,
    out: &mut Vec<u8>,
    chunked_out: bool,
    timeout: Duration,
) -> Result<bool, RelayError> {
    if n == 0 {
        return Ok(false);
    }
    if chunked_out || out.len() + n <= COALESCE_LIMIT {
        emit(out, &src_buf.bytes()[..n], chunked_out);
        src_buf.consume(n);
        return Ok(false);
    }
    flush_vec(dst, out, timeout)
        .await
        .map_err(|_| RelayError::Dest)?;
    write_from_read_buf(dst, src_buf, n, timeout)
        .await
        .map_err(|_| RelayError::Dest)?;
    Ok(true)
}

fn emit(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if chunked {
        encode_chunk(out, data);
    } else {
        out.extend_from_slice(data);
    }
}
