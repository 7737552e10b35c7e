//! What the exchange of one request works with besides the client side:
//! the upstream head it sends, the upstream's bytes, the buffers the
//! phases write into, and the cache's view of the request. Kept apart
//! from the client side (`Downstream`), so the exchange borrows both at
//! once and works the same whatever the client speaks. One per
//! connection while it is served, from a per-worker pool.

use super::cache::CacheReq;
use super::ctx::WorkerCtx;
use crate::rt::buffer::{BufferPool, ReadBuf};

/// States kept for reuse per worker: enough for the connections a worker
/// opens and closes between two of its ticks, not for a whole burst (a
/// burst's parked connections would otherwise leave a state each behind).
const MAX_FREE: usize = 32;
/// Buffers of a kept state larger than this are freed (a large head, a
/// gathered body): a kept state is small.
const KEEP_CAPACITY: usize = 4096;

#[derive(Default)]
pub(crate) struct ReqState {
    /// The upstream request head (and a small body sent with it), kept
    /// until the exchange ends so a retry can resend it.
    pub head: Vec<u8>,
    /// The upstream's response bytes.
    pub upbuf: ReadBuf,
    /// The normalised request path.
    pub path_buf: Vec<u8>,
    /// The path with its escaped separators decoded.
    pub slash_buf: Vec<u8>,
    /// Rewritten path, then the response phase's rendered lines.
    pub rewrite_buf: Vec<u8>,
    /// The request's host, kept for the response phase's variables.
    pub host_buf: Vec<u8>,
    /// The response work of the current request: cache and compression
    /// (boxed: it is large, and a state moves in and out of the pool).
    pub cache: Box<CacheReq>,
}

impl ReqState {
    /// A state from the worker's pool (warm: no allocation).
    pub fn take(ctx: &WorkerCtx) -> ReqState {
        ctx.req_states.borrow_mut().pop().unwrap_or_default()
    }

    /// Gives the state and its buffers back when the connection ends or
    /// parks.
    pub fn give_back(mut self, ctx: &WorkerCtx) {
        self.park_buffers(&mut ctx.buffers.borrow_mut());
        let mut free = ctx.req_states.borrow_mut();
        if free.len() < MAX_FREE {
            for buf in [
                &mut self.path_buf,
                &mut self.slash_buf,
                &mut self.rewrite_buf,
                &mut self.host_buf,
            ] {
                if buf.capacity() > KEEP_CAPACITY {
                    *buf = Vec::new();
                }
            }
            self.cache.trim(KEEP_CAPACITY);
            free.push(self);
        }
    }

    /// Gives the head and upstream buffers to the worker while the
    /// connection waits for its next request.
    pub fn park_buffers(&mut self, pool: &mut BufferPool) {
        pool.give(std::mem::take(&mut self.head));
        pool.give(self.upbuf.take_vec());
    }

    pub fn unpark_buffers(&mut self, pool: &mut BufferPool) {
        if self.head.capacity() == 0 {
            self.head = pool.take();
        }
        if self.upbuf.capacity() == 0 {
            self.upbuf = ReadBuf::from_vec(pool.take());
        }
    }
}
