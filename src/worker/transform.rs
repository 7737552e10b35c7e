//! The response body relay for every plan but plain identity: each piece
//! read from the upstream is decoded from its framing, compressed when
//! the plan says so, copied for the cache when the response is being
//! stored, and written to the client as a chunk (or raw, for a length or
//! close-delimited body) at once — so a slow stream is never held back
//! and memory stays bounded by one read.

use super::cache::fill;
use super::ctx::WorkerCtx;
use super::downstream::{BodyFailure, BodyLimits, Carry, Downstream};
use super::relay::{BodyIn, RelayError};
use super::reqstate::ReqState;
use crate::compress::{Encoder, WHOLE_MAX};
use crate::rt::conn::Conn;

/// Room asked for on each read.
const READ_CHUNK: usize = 16 * 1024;

/// How the body's pieces are coded.
pub(crate) enum Coder<'a> {
    /// Passed on as they are (a stored copy is still kept).
    Identity,
    /// Through a streaming encoder (reset before use).
    Stream(&'a mut Encoder),
    /// Gathered whole and gzipped in one call by the worker's compressor
    /// at this level, at the end.
    Whole(&'a WorkerCtx, u32),
}

impl Coder<'_> {
    /// Whether a body of this framing is gathered whole: gzip, a length
    /// known and at most `WHOLE_MAX`.
    pub fn gathers(gzip: bool, input: &BodyIn) -> bool {
        gzip && matches!(input, BodyIn::Length(n) if *n <= WHOLE_MAX)
    }
}

/// Relays the body behind the head the client side has rendered.
pub(crate) async fn relay<D: Downstream>(
    c: &mut D,
    req: &mut ReqState,
    upstream: &mut Conn,
    (mut input, carry, mut coder): (BodyIn, Carry, Coder<'_>),
    limits: BodyLimits,
) -> Result<(), BodyFailure> {
    let mut plain = std::mem::take(&mut req.cache.plain);
    let mut coded = std::mem::take(&mut req.cache.coded);
    // A length-framed body is coming whole: the coder's blocks are cut
    // where it chooses (a sync flush per read cut a 20 KB page into three
    // blocks: bigger output and three block set-ups). A chunked or
    // close-delimited body may be a stream whose pieces must not wait, so
    // each read is flushed through.
    let stream = !matches!(input, BodyIn::Length(_));
    let whole = matches!(coder, Coder::Whole(..));
    if let Coder::Stream(e) = &mut coder {
        e.reset();
    }
    plain.clear();
    let result = loop {
        if !whole {
            plain.clear();
        }
        coded.clear();
        let done = match input.take_buffered(&mut req.upbuf, |d| plain.extend_from_slice(d)) {
            Ok(done) => done,
            Err(e) => break Err(e),
        };
        let data: &[u8] = match &mut coder {
            Coder::Identity => &plain,
            Coder::Whole(ctx, level) => {
                if done && let Err(error) = ctx.gzip_whole(*level, &plain, &mut coded) {
                    break Err(coding_failed(error));
                }
                &coded
            }
            Coder::Stream(e) => match encode(e, (stream, done), &plain, &mut coded) {
                Ok(()) => &coded,
                Err(error) => break Err(error),
            },
        };
        fill::keep(&mut req.cache, data);
        c.push_body(data, carry);
        if done {
            c.end_body(carry);
            fill::finish_body(&mut req.cache);
            break flush(c, req, limits).await;
        }
        // The head waits for a gathered body, to go out with it.
        if !whole && let Err(e) = flush(c, req, limits).await {
            break Err(e);
        }
        let read = req
            .upbuf
            .fill(upstream, READ_CHUNK, limits.read_timeout)
            .await;
        match read {
            Ok(0) if matches!(input, BodyIn::UntilClose) && upstream.closed_cleanly() => {
                input = BodyIn::Length(0);
            }
            Ok(0) => break Err(RelayError::Source),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                break Err(RelayError::SourceTimedOut);
            }
            Err(_) => break Err(RelayError::Source),
        }
    };
    req.cache.plain = plain;
    req.cache.coded = coded;
    c.discard_head();
    result.map_err(|error| BodyFailure { error, sent: true })
}

/// Codes one piece read (`plain`) into `coded`; `stream`: each piece is
/// flushed through (a body that may be a stream), `done`: the last one.
fn encode(
    e: &mut Encoder,
    (stream, done): (bool, bool),
    plain: &[u8],
    coded: &mut Vec<u8>,
) -> Result<(), RelayError> {
    let r = if done {
        e.write(plain, coded).and_then(|()| e.finish(coded))
    } else if plain.is_empty() {
        Ok(())
    } else if stream {
        e.write(plain, coded).and_then(|()| e.flush(coded))
    } else {
        e.write(plain, coded)
    };
    r.map_err(coding_failed)
}

fn coding_failed(_: std::io::Error) -> RelayError {
    RelayError::Invalid
}

async fn flush<D: Downstream>(
    c: &mut D,
    req: &ReqState,
    limits: BodyLimits,
) -> Result<(), RelayError> {
    // A background refresh: the client has its answer already.
    if req.cache.background {
        c.discard_head();
    }
    c.flush_body(limits.write_timeout).await
}
