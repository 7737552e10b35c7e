//! The two-way byte tunnel after a 101 Switching Protocols (WebSocket):
//! each direction copies until end of stream, then shuts the other side's
//! write half, so half-closes pass through. Says how many bytes went
//! each way, for the request's record.

use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use crate::rt::conn::Conn;
use crate::rt::deadline;

/// Bytes (client to upstream, upstream to client).
pub(crate) async fn run(client: Conn, upstream: Conn, idle: Duration) -> (u64, u64) {
    let (client_read, client_write) = client.into_split();
    let (up_read, up_write) = upstream.into_split();
    monoio::join!(
        pump(client_read, up_write, idle),
        pump(up_read, client_write, idle)
    )
}

/// Copies until end of stream, an error or `idle`; the bytes written.
async fn pump<R: AsyncReadRent, W: AsyncWriteRent>(mut from: R, mut to: W, idle: Duration) -> u64 {
    let mut copied = 0;
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        let Ok((res, b)) = deadline::within(idle, from.read(buf)).await else {
            break;
        };
        buf = b;
        match res {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let Ok((res, b)) = deadline::within(idle, to.write_all(buf)).await else {
            break;
        };
        buf = b;
        if res.is_err() {
            break;
        }
        copied += buf.len() as u64;
        buf.clear();
    }
    let _ = to.shutdown().await;
    copied
}
