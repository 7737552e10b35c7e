//! Getting an upstream connection: a pooled one that is still usable, or a
//! new one within the group's connect timeout.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use super::ctx::WorkerCtx;
use crate::error::{ErrorKind, ProxyError};

/// An idle pooled connection or a fresh one; `reused` says which.
pub(crate) async fn acquire(
    ctx: &WorkerCtx,
    addr: SocketAddr,
    connect_timeout: Duration,
    allow_pooled: bool,
) -> Result<(TcpStream, bool), ProxyError> {
    if allow_pooled {
        let now = Instant::now();
        loop {
            let Some(conn) = ctx.pool.borrow_mut().take(&addr, now) else {
                break;
            };
            // Always checked: stray bytes an upstream sent after its last
            // response (or its close) must never reach the next client.
            if idle_conn_usable(&conn) {
                return Ok((conn, true));
            }
        }
    }
    match monoio::time::timeout(connect_timeout, TcpStream::connect_addr(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok((stream, false))
        }
        Ok(Err(e)) => {
            tracing::debug!(worker = ctx.id, %addr, error = %e, "upstream connect failed");
            Err(ProxyError::upstream(ErrorKind::BadGateway))
        }
        Err(_) => {
            tracing::debug!(worker = ctx.id, %addr, "upstream connect timed out");
            Err(ProxyError::upstream(ErrorKind::GatewayTimeout))
        }
    }
}

/// Whether an idle connection can carry a request: the peer has not closed
/// it and sent nothing unasked. One non-blocking MSG_PEEK, on either driver.
#[allow(unsafe_code)]
fn idle_conn_usable(stream: &TcpStream) -> bool {
    let fd = stream.as_raw_fd();
    let mut byte = 0u8;
    // SAFETY: `fd` is the open socket owned by `stream`, borrowed for this
    // call only; the buffer is one valid, writable byte; MSG_DONTWAIT keeps
    // the call from blocking whatever the socket's mode.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}
