//! The two-way byte tunnel after a 101 Switching Protocols (WebSocket):
//! each direction copies until end of stream, then shuts the other side's
//! write half, so half-closes pass through. Says how many bytes went
//! each way, for the request's record. While it is open the upstream
//! server counts it in flight and against its `max_conns` (`Held`).

use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::ctx::WorkerCtx;
use crate::config::Config;
use crate::pipeline::Record;
use crate::rt::conn::Conn;
use crate::rt::deadline;

/// A tunnel's place on its upstream server, taken when the request was
/// balanced and kept past the 101 (see `WorkerCtx::hold_server_at`);
/// given back when this is dropped, however the tunnel ends.
pub(crate) struct Held<'a> {
    ctx: &'a WorkerCtx,
    config: &'a Config,
    generation: u64,
    /// (group, server) positions in `config`.
    server: Option<(usize, usize)>,
}

impl<'a> Held<'a> {
    /// The place of the server `record` says the tunnel's request went
    /// to, on the snapshot the request ran on.
    pub fn new(ctx: &'a WorkerCtx, config: &'a Config, record: &Record) -> Held<'a> {
        Held {
            ctx,
            config,
            generation: record.generation,
            server: record
                .upstream
                .map(|u| (u.group as usize, u.server as usize)),
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some((group, server)) = self.server {
            self.ctx
                .release_server(self.generation, self.config, group, server);
        }
    }
}

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
