//! Owned I/O buffers for rent-style monoio I/O: a read buffer with a
//! consumed prefix, and helpers that move a buffer into an operation and
//! back, with a timeout. After a timed-out operation the buffer is gone and
//! the connection must be closed (an io_uring op cannot be safely dropped
//! and its socket reused: see MONOIO.md).

use std::io;
use std::time::Duration;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent,
};
use monoio::net::TcpStream;

use super::deadline;
use crate::sys::{IoVecPair, TwoBufs};

/// Bytes read but not yet consumed live in `data[pos..]`.
#[derive(Default)]
pub(crate) struct ReadBuf {
    data: Vec<u8>,
    pos: usize,
}

impl ReadBuf {
    pub fn from_vec(mut data: Vec<u8>) -> Self {
        data.clear();
        ReadBuf { data, pos: 0 }
    }

    /// The storage, for giving back to the pool (contents are dropped).
    pub fn take_vec(&mut self) -> Vec<u8> {
        self.pos = 0;
        std::mem::take(&mut self.data)
    }

    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    pub fn with_capacity(n: usize) -> Self {
        ReadBuf {
            data: Vec::with_capacity(n),
            pos: 0,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    pub fn len(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos == self.data.len()
    }

    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.data.len() {
            self.pos = 0;
            self.data.clear();
        }
    }

    /// Like `fill`, with no timeout: the read ends when `cancel` is
    /// cancelled, with `ECANCELED`, or with the bytes that had already
    /// arrived (a cancelled read loses nothing, unlike a dropped one).
    pub async fn fill_cancelable(
        &mut self,
        stream: &mut TcpStream,
        want: usize,
        cancel: CancelHandle,
    ) -> io::Result<usize> {
        self.reserve(want);
        let pos = std::mem::take(&mut self.pos);
        let buf = std::mem::take(&mut self.data);
        let start = buf.len();
        let (res, slice) = stream.cancelable_read(buf.slice_mut(start..), cancel).await;
        self.data = slice.into_inner();
        self.pos = pos;
        res
    }

    /// Takes what the socket already holds, without waiting (making room
    /// for `want` bytes): Ok(0) is end of stream, `WouldBlock` nothing
    /// there yet. One system call instead of an operation and a task
    /// wake-up, where bytes are most likely there already.
    pub fn fill_now(&mut self, fd: std::os::fd::RawFd, want: usize) -> io::Result<usize> {
        self.reserve(want);
        crate::sys::recv_now(fd, &mut self.data, want)
    }

    fn reserve(&mut self, want: usize) {
        if self.spare() < want {
            if self.pos > 0 {
                self.data.drain(..self.pos);
                self.pos = 0;
            }
            // Room for half of `want` is enough to read into (every
            // caller reads again for more): a response that arrived in
            // pieces leaves a few bytes held, and growing for those
            // would double the buffer on a warm connection, at whatever
            // request first splits that way.
            if self.spare() < want.div_ceil(2) {
                self.data.reserve(want);
            }
        }
    }

    fn spare(&self) -> usize {
        self.data.capacity() - self.data.len()
    }

    /// Reads more bytes after those held, making room for at least `want`.
    /// `Ok(0)` is end of stream; an elapsed timeout is `TimedOut`.
    pub async fn fill<S: AsyncReadRent>(
        &mut self,
        stream: &mut S,
        want: usize,
        timeout: Duration,
    ) -> io::Result<usize> {
        self.reserve(want);
        // While the buffer is lent to the operation this ReadBuf is empty
        // and consistent, so a timeout (which keeps the buffer) leaves it
        // usable, just without its bytes.
        let pos = std::mem::take(&mut self.pos);
        let buf = std::mem::take(&mut self.data);
        let start = buf.len();
        let read = stream.read(buf.slice_mut(start..));
        let (res, slice) = deadline::within(timeout, read)
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?;
        self.data = slice.into_inner();
        self.pos = pos;
        res
    }
}

/// A worker's free buffers. Connections give back their write and
/// upstream buffers while idle between requests, so an idle keep-alive
/// connection holds only its read buffer.
#[derive(Default)]
pub(crate) struct BufferPool {
    free: Vec<Vec<u8>>,
    /// Total capacity held in `free`.
    bytes: usize,
    /// Fewest buffers `free` held since the last `trim`: that many sat
    /// unused all along.
    low_water: usize,
}

/// Capacity of a fresh pooled buffer.
pub(crate) const POOLED_SIZE: usize = 4096;
/// Buffers that grew beyond this are freed rather than kept.
const MAX_POOLED_CAPACITY: usize = 64 * 1024;
/// Bytes of free buffers kept per worker; past this they are freed.
const MAX_FREE_BYTES: usize = 4 << 20;

impl BufferPool {
    pub fn take(&mut self) -> Vec<u8> {
        match self.free.pop() {
            Some(buf) => {
                self.bytes -= buf.capacity();
                self.low_water = self.low_water.min(self.free.len());
                buf
            }
            None => Vec::with_capacity(POOLED_SIZE),
        }
    }

    /// Frees the buffers no connection needed since the last call (run
    /// once a second), so a pool filled by a burst of connections that
    /// then went idle does not hold its memory for good. Returns the
    /// bytes freed.
    pub fn trim(&mut self) -> usize {
        let before = self.bytes;
        for buf in self.free.drain(..self.low_water) {
            self.bytes -= buf.capacity();
        }
        self.low_water = self.free.len();
        before - self.bytes
    }

    pub fn give(&mut self, mut buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap == 0 || cap > MAX_POOLED_CAPACITY || self.bytes + cap > MAX_FREE_BYTES {
            return;
        }
        buf.clear();
        self.bytes += cap;
        self.free.push(buf);
    }
}

/// Writes all of `buf` within `timeout`; gives the buffer back on success.
pub(crate) async fn write_all<S: AsyncWriteRent, B: IoBuf + 'static>(
    stream: &mut S,
    buf: B,
    timeout: Duration,
) -> io::Result<B> {
    let (res, buf) = deadline::within(timeout, stream.write_all(buf))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?;
    res.map(|_| buf)
}

/// Like `write_all`, but hands the buffer back after an I/O error too (not
/// after a timeout, when the operation still owns it).
pub(crate) async fn write_all_keep<S: AsyncWriteRent, B: IoBuf + 'static>(
    stream: &mut S,
    buf: B,
    timeout: Duration,
) -> (io::Result<()>, Option<B>) {
    match deadline::within(timeout, stream.write_all(buf)).await {
        Ok((res, buf)) => (res.map(|_| ()), Some(buf)),
        Err(_) => (Err(io::ErrorKind::TimedOut.into()), None),
    }
}

/// Writes the whole Vec and hands it back cleared, ready for the next head.
pub(crate) async fn flush_vec<S: AsyncWriteRent>(
    stream: &mut S,
    out: &mut Vec<u8>,
    timeout: Duration,
) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let buf = std::mem::take(out);
    let mut buf = write_all(stream, buf, timeout).await?;
    buf.clear();
    *out = buf;
    Ok(())
}

/// Writes the head in `out` and then `body` with one `writev` (one send,
/// where two writes would send the head in a packet of its own), the
/// rest of a short write with plain writes; hands `out` back cleared.
/// `vec` is the connection's iovec pair, taken and given back.
pub(crate) async fn write_head_body<S: AsyncWriteRent, B: IoBuf + 'static>(
    stream: &mut S,
    out: &mut Vec<u8>,
    body: B,
    vec: &mut Option<IoVecPair>,
    timeout: Duration,
) -> io::Result<()> {
    let head_len = out.len();
    let total = head_len + body.bytes_init();
    let bufs = TwoBufs::new(std::mem::take(out), body, vec.take().unwrap_or_default());
    let (res, bufs) = deadline::within(timeout, stream.writev(bufs))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?;
    let (head, body, pair) = bufs.into_parts();
    *vec = Some(pair);
    let n = match res {
        Ok(0) if total > 0 => Err(io::ErrorKind::WriteZero.into()),
        other => other,
    };
    let n = match n {
        Ok(n) => n,
        Err(e) => {
            *out = head;
            out.clear();
            return Err(e);
        }
    };
    let mut head = head;
    if n < head_len {
        head = write_all(stream, head.slice(n..), timeout)
            .await?
            .into_inner();
        write_all(stream, body, timeout).await?;
    } else if n < total {
        write_all(stream, body.slice(n - head_len..), timeout).await?;
    }
    *out = head;
    out.clear();
    Ok(())
}

/// Writes `data[range]` of a read buffer straight to `stream` (no copy).
pub(crate) async fn write_from_read_buf<S: AsyncWriteRent>(
    stream: &mut S,
    rb: &mut ReadBuf,
    n: usize,
    timeout: Duration,
) -> io::Result<()> {
    let (start, end) = (rb.pos, rb.pos + n);
    rb.pos = 0;
    let data = std::mem::take(&mut rb.data);
    let slice = write_all(stream, data.slice(start..end), timeout).await?;
    rb.data = slice.into_inner();
    rb.pos = start;
    rb.consume(n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    #[test]
    fn a_few_held_bytes_do_not_grow_the_buffer() {
        let mut rb = ReadBuf::with_capacity(0);
        rb.reserve(8192);
        let cap = rb.data.capacity();
        assert!(cap >= 8192);
        // A response's first piece, mostly consumed: 100 bytes held.
        rb.data.resize(4000, b'x');
        rb.consume(3900);
        rb.reserve(8192);
        assert_eq!(rb.data.capacity(), cap, "grew for 100 held bytes");
        assert_eq!(rb.bytes().len(), 100);
        assert!(rb.spare() >= 4096);
        // A head that fills more than half of it: room is made.
        rb.data.resize(cap - 10, b'y');
        rb.reserve(8192);
        assert!(rb.spare() >= 8192);
        // Never an empty read for want = 1.
        let mut one = ReadBuf::with_capacity(0);
        one.reserve(1);
        assert!(one.spare() >= 1);
    }

    #[test]
    fn fill_now_takes_what_waits_and_never_blocks() {
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        // The socket is a blocking one, as monoio's io_uring sockets are.
        let fd = server.as_raw_fd();
        let mut rb = ReadBuf::with_capacity(0);
        let empty = rb.fill_now(fd, 64).unwrap_err();
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
        assert!(rb.is_empty());
        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        client.write_all(b"Host: a\r\n\r\n").unwrap();
        for _ in 0..10_000 {
            match rb.fill_now(fd, 64) {
                Ok(n) => assert!(n > 0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
            if rb.len() >= 27 {
                break;
            }
        }
        assert_eq!(rb.bytes(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        // Bytes held stay ahead of the next ones; the peer's close is 0.
        rb.consume(4);
        client.write_all(b"!").unwrap();
        drop(client);
        let mut closed = false;
        for _ in 0..10_000 {
            match rb.fill_now(fd, 64) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert!(closed, "the peer's close was never seen");
        assert_eq!(rb.bytes(), b"/ HTTP/1.1\r\nHost: a\r\n\r\n!");
    }

    use std::io::Write;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// Bytes that reach a socket while a cancelable read waits on it are
    /// not lost when the read is cancelled: io_uring hands them back with
    /// the read; epoll reports ECANCELED and leaves them in the socket.
    async fn cancel_after_bytes_arrived() {
        let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let mut rb = ReadBuf::with_capacity(64);
        let canceller = monoio::io::Canceller::new();
        {
            let mut read = pin!(rb.fill_cancelable(&mut server, 64, canceller.handle()));
            // Submit the read, then let the bytes land before the cancel.
            let mut cx = Context::from_waker(Waker::noop());
            assert!(matches!(read.as_mut().poll(&mut cx), Poll::Pending));
            client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            let _fresh = canceller.cancel();
            match read.await {
                Ok(n) => assert_eq!(n, 18),
                Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ECANCELED), "{e}"),
            }
        }
        if rb.is_empty() {
            // Still in the socket (epoll): a plain read finds them.
            let n = rb
                .fill(&mut server, 64, Duration::from_secs(1))
                .await
                .unwrap();
            assert_eq!(n, 18);
        }
        assert_eq!(rb.bytes(), b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn cancelled_read_loses_nothing_on_epoll() {
        crate::worker::test_runtime::epoll().block_on(cancel_after_bytes_arrived());
    }

    #[test]
    fn cancelled_read_loses_nothing_on_io_uring() {
        if let Some(mut rt) = crate::worker::test_runtime::io_uring() {
            rt.block_on(cancel_after_bytes_arrived());
        }
    }

    /// A head and a body written together arrive whole and in order,
    /// also when the socket takes only part of them at first: in the head
    /// (a 6 MiB head) or in the body (a 6 MiB body), with a reader that
    /// drains slowly. The head's Vec comes back empty for reuse.
    async fn head_and_body_arrive_whole() {
        let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut vec = None;
        for (head_len, body_len) in [(300, 70_000), (6 << 20, 1000), (300, 6 << 20)] {
            // Reads exactly what is sent: on io_uring the server's close
            // would only go out once the runtime runs again.
            let reader = std::thread::spawn(move || {
                let mut client = std::net::TcpStream::connect(addr).unwrap();
                // Bytes missing fail the test rather than hang it.
                client
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                std::thread::sleep(Duration::from_millis(50));
                let mut got = vec![0; head_len + body_len];
                std::io::Read::read_exact(&mut client, &mut got).unwrap();
                got
            });
            let (mut server, _) = listener.accept().await.unwrap();
            let head: Vec<u8> = (0..head_len).map(|i| (i % 251) as u8).collect();
            let body: std::rc::Rc<Vec<u8>> =
                std::rc::Rc::new((0..body_len).map(|i| (i % 241) as u8).collect());
            let mut out = head.clone();
            write_head_body(
                &mut server,
                &mut out,
                body.clone(),
                &mut vec,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
            assert!(out.is_empty() && out.capacity() >= head_len);
            assert!(vec.is_some(), "the iovec pair is kept");
            let got = reader.join().unwrap();
            drop(server);
            assert!(got[..head_len] == head[..], "head of {head_len}");
            assert!(got[head_len..] == body[..], "body of {body_len}");
        }
    }

    #[test]
    fn head_and_body_arrive_whole_on_epoll() {
        crate::worker::test_runtime::epoll().block_on(head_and_body_arrive_whole());
    }

    #[test]
    fn head_and_body_arrive_whole_on_io_uring() {
        if let Some(mut rt) = crate::worker::test_runtime::io_uring() {
            rt.block_on(head_and_body_arrive_whole());
        }
    }

    #[test]
    fn trim_frees_only_buffers_unused_since_the_last_trim() {
        let mut pool = BufferPool::default();
        for _ in 0..10 {
            pool.give(Vec::with_capacity(POOLED_SIZE));
        }
        assert_eq!(pool.trim(), 0, "nothing freed");
        assert_eq!(pool.free.len(), 10, "just given back: kept");
        assert_eq!(pool.trim(), 10 * POOLED_SIZE, "all freed");
        assert_eq!(pool.free.len(), 0, "unused for a whole interval: freed");
        assert_eq!(pool.bytes, 0);

        for _ in 0..10 {
            pool.give(Vec::with_capacity(POOLED_SIZE));
        }
        pool.trim();
        let taken: Vec<_> = (0..4).map(|_| pool.take()).collect();
        taken.into_iter().for_each(|b| pool.give(b));
        pool.trim();
        assert_eq!(pool.free.len(), 4, "the 4 that were in use stay");
        assert_eq!(pool.bytes, 4 * POOLED_SIZE);
    }
}
