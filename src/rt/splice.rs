//! Zero-copy body forwarding between two plain TCP sockets: bytes move
//! socket → pipe → socket with `splice(2)` and never enter user space.
//! Also owns the worker's pool of pipes for it.
//!
//! monoio's own splice op is handed to io_uring's worker threads, which
//! must not run beside a pinned worker; so this waits for readiness with
//! the runtime (poll on io_uring, epoll on the legacy driver) and then
//! calls `splice(2)` itself, non-blocking. io_uring sockets are blocking,
//! so they are switched to `O_NONBLOCK` while a body is spliced and back
//! after (io_uring ops never run on them meanwhile: the relay owns both).

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use monoio::net::TcpStream;

use super::conn::{Peek, peek};
use super::deadline;
use super::watch::{Answered, unless_answered};
use crate::sys;

/// A body with at least this much left is spliced; below it the copy
/// through the read buffer costs less than the pipe and readiness waits.
pub(crate) const SPLICE_MIN: u64 = 32 * 1024;
/// Pipe capacity asked for: the most one `splice` moves, and the most a
/// connection holds in the kernel between its two sockets.
const PIPE_SIZE: usize = 256 * 1024;
/// Unsent bytes the destination socket may queue while a body is spliced.
/// Without a bound the socket takes all the pipe holds and sends most of
/// it later, when the peer's ACKs open the window: on loopback that work
/// then lands on the peer's CPU (measured: 1.5× the load generator's CPU
/// per 1 MiB response). With it, the bytes wait in the pipe and go out
/// from this worker.
const NOTSENT_LOWAT: libc::c_int = 64 * 1024;
/// Smallest pipe worth splicing through (a default pipe is 64 KiB).
const MIN_PIPE: usize = 64 * 1024;
/// Bytes one body may move without the worker serving anyone else: past
/// it the relay yields to the other ready tasks and the driver (one
/// pipe's worth, as a copy yields at every read and write). Without it,
/// two sides that keep up moved 18 MiB in one 30 ms stretch while the
/// worker's other connections waited. 1 GiB over loopback took 0.85-0.89
/// s with it, 0.97-1.1 s with 1 MiB shares, and 2.2-2.7 s copied.
const FAIR_SHARE: u64 = 256 << 10;
/// Empty pipes a worker keeps for the next spliced body.
const POOL_MAX: usize = 16;

/// How a spliced body stopped early.
#[derive(Debug)]
pub(crate) enum SpliceError {
    /// No pipe of a useful size could be made (fd limit, pipe allowance),
    /// or the sockets could not be switched: copy instead, nothing moved.
    Unavailable,
    /// Reading the source failed, timed out or ended too soon.
    Source,
    /// Writing the destination failed or timed out.
    Dest,
}

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

thread_local! {
    static PIPES: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

impl Pipe {
    fn take() -> io::Result<Pipe> {
        if let Some(p) = PIPES.with(|p| p.borrow_mut().pop()) {
            return Ok(p);
        }
        let (read, write) = sys::pipe()?;
        // A smaller pipe still works (an unprivileged user past
        // pipe-user-pages-soft gets EPERM): keep what the kernel gave.
        let _ = sys::set_pipe_size(&write, PIPE_SIZE);
        let capacity = sys::pipe_size(&write).unwrap_or(0);
        if capacity < MIN_PIPE {
            // Past the user's pipe allowance the kernel hands out 8 KiB
            // pipes: two syscalls and a wait per 8 KiB cost more than
            // copying.
            return Err(io::Error::other("pipe too small"));
        }
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }

    /// Keeps an empty pipe for the next body; one still holding bytes is
    /// closed with them.
    fn give_back(self) {
        PIPES.with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < POOL_MAX {
                pool.push(self);
            }
        });
    }
}

/// The socket settings a spliced body needs, for as long as this lives;
/// then the sockets are as they were.
struct SpliceMode {
    src: RawFd,
    dst: RawFd,
    src_flags: Option<libc::c_int>,
    dst_flags: Option<libc::c_int>,
}

impl SpliceMode {
    fn set(src: RawFd, dst: RawFd) -> io::Result<SpliceMode> {
        let mut mode = SpliceMode {
            src,
            dst,
            src_flags: None,
            dst_flags: None,
        };
        mode.src_flags = set_nonblocking(src)?;
        mode.dst_flags = set_nonblocking(dst)?;
        sys::set_tcp_notsent_lowat(dst, NOTSENT_LOWAT)?;
        Ok(mode)
    }
}

impl Drop for SpliceMode {
    fn drop(&mut self) {
        // Errors are ignored: the sockets are open (their owners outlive
        // this), so these cannot fail in practice.
        let _ = sys::set_tcp_notsent_lowat(self.dst, 0);
        for (fd, flags) in [(self.src, self.src_flags), (self.dst, self.dst_flags)] {
            if let Some(flags) = flags {
                let _ = sys::set_file_flags(fd, flags);
            }
        }
    }
}

/// Sets `O_NONBLOCK`; returns the flags to restore when it was not set.
fn set_nonblocking(fd: RawFd) -> io::Result<Option<libc::c_int>> {
    let flags = sys::file_flags(fd)?;
    if flags & libc::O_NONBLOCK != 0 {
        return Ok(None);
    }
    sys::set_file_flags(fd, flags | libc::O_NONBLOCK)?;
    Ok(Some(flags))
}

/// One non-blocking `splice`. No `SPLICE_F_MORE`: the kernel already
/// holds back a partial segment while the pipe has more, and a stalled
/// source must not leave the last bytes corked.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    loop {
        match sys::splice(from, to, len, flags) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            done => return done,
        }
    }
}

/// Moves body bytes from `src` to `dst` in the kernel: exactly `want`
/// bytes, or with `None` everything until `src` ends. Returns the count
/// moved. Bytes the caller buffered must already be on their way.
/// `watch_dst`: while `src` pauses, an early answer from `dst` (it turns
/// readable) ends the forwarding as a destination failure.
pub(crate) async fn forward(
    src: &TcpStream,
    dst: &TcpStream,
    want: Option<u64>,
    (read_timeout, write_timeout): (Duration, Duration),
    watch_dst: bool,
) -> Result<u64, SpliceError> {
    let pipe = Pipe::take().map_err(|_| SpliceError::Unavailable)?;
    let (src_fd, dst_fd) = (src.as_raw_fd(), dst.as_raw_fd());
    let _mode = SpliceMode::set(src_fd, dst_fd).map_err(|_| SpliceError::Unavailable)?;
    let mut moved: u64 = 0;
    let mut held: usize = 0;
    let mut unyielded: u64 = 0;
    let result = loop {
        let left = want.map_or(u64::MAX, |w| w - moved);
        if held == 0 {
            if left == 0 {
                break Ok(moved);
            }
            let ask = left.min(pipe.capacity as u64) as usize;
            match splice(src_fd, pipe.write.as_raw_fd(), ask) {
                // 0 is also what TCP urgent data at the head of the queue
                // reads as: only a real end completes a close-delimited body.
                Ok(0) if want.is_none() && peek(src_fd) == Peek::Closed => break Ok(moved),
                Ok(0) => break Err(SpliceError::Source),
                Ok(n) => {
                    held = n;
                    moved += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    unyielded = 0;
                    let ready = deadline::within(read_timeout, src.readable(false));
                    let ready = if watch_dst {
                        match unless_answered(ready, dst).await {
                            Ok(ready) => ready,
                            Err(Answered) => break Err(SpliceError::Dest),
                        }
                    } else {
                        ready.await
                    };
                    match ready {
                        Ok(Ok(())) => continue,
                        _ => break Err(SpliceError::Source),
                    }
                }
                Err(_) => break Err(SpliceError::Source),
            }
        }
        match splice(pipe.read.as_raw_fd(), dst_fd, held) {
            Ok(n) if n > 0 => {
                held -= n;
                unyielded += n as u64;
                if unyielded >= FAIR_SHARE {
                    unyielded = 0;
                    YieldOnce(false).await;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                unyielded = 0;
                match deadline::within(write_timeout, dst.writable(false)).await {
                    Ok(Ok(())) => {}
                    _ => break Err(SpliceError::Dest),
                }
            }
            _ => break Err(SpliceError::Dest),
        }
    };
    if held == 0 {
        pipe.give_back();
    }
    result
}

/// Pending once, after asking to be polled again: the runtime runs the
/// other ready tasks and reaps the driver's completions before this task
/// goes on (monoio polls its driver between rounds of ready tasks).
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream as StdStream;

    /// The settings `forward` changes, read back: (file flags, unsent
    /// bound) per socket.
    fn settings(s: &TcpStream) -> (libc::c_int, libc::c_int) {
        let fd = s.as_raw_fd();
        let flags = sys::file_flags(fd).expect("F_GETFL");
        let lowat = sys::tcp_notsent_lowat(fd).expect("TCP_NOTSENT_LOWAT");
        (flags, lowat)
    }

    /// A connected pair: (the proxy's end, the test's end).
    async fn pair() -> (TcpStream, StdStream) {
        let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = StdStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        (ours, peer)
    }

    const BODY: usize = 300 * 1024;

    /// After a finished body, a source that ends too soon, and a relay
    /// dropped mid-way (a timeout around it), both sockets are as before.
    async fn settings_are_restored() {
        let (src, mut upstream) = pair().await;
        let (dst, client) = pair().await;
        let before = (settings(&src), settings(&dst));
        assert_eq!((before.0.1, before.1.1), (0, 0), "no bound to begin with");
        let reader = std::thread::spawn(move || {
            let mut client = client;
            let mut got = Vec::new();
            let _ = client.read_to_end(&mut got);
            got.len()
        });
        let t = Duration::from_secs(2);

        upstream.write_all(&vec![7u8; BODY]).unwrap();
        let moved = forward(&src, &dst, Some(BODY as u64), (t, t), false).await;
        assert_eq!(moved.ok(), Some(BODY as u64));
        assert_eq!((settings(&src), settings(&dst)), before, "after a body");

        // Dropped while waiting for bytes that do not come.
        let stalled = forward(&src, &dst, Some(BODY as u64), (t, t), false);
        let dropped = monoio::time::timeout(Duration::from_millis(50), stalled).await;
        assert!(dropped.is_err(), "the relay was still waiting");
        assert_eq!((settings(&src), settings(&dst)), before, "after a drop");

        // The source ends 1000 bytes short.
        upstream.write_all(&vec![7u8; BODY - 1000]).unwrap();
        drop(upstream);
        let cut = forward(&src, &dst, Some(BODY as u64), (t, t), false).await;
        assert!(matches!(cut, Err(SpliceError::Source)), "{cut:?}");
        assert_eq!((settings(&src), settings(&dst)), before, "after an error");

        // A dropped monoio socket closes through the runtime, which the
        // join below would block: end the stream by hand.
        let _ = sys::shutdown(dst.as_raw_fd());
        assert_eq!(reader.join().unwrap(), 2 * BODY - 1000);
    }

    #[test]
    fn settings_are_restored_on_epoll() {
        crate::worker::test_runtime::epoll().block_on(settings_are_restored());
    }

    #[test]
    fn settings_are_restored_on_io_uring() {
        if let Some(mut rt) = crate::worker::test_runtime::io_uring() {
            rt.block_on(settings_are_restored());
        }
    }
}
