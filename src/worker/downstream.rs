//! The client side of a request, HTTP/1.1: every answer the proxy makes
//! itself (generated errors, fixed responses, redirects) leaves through
//! here, and the request's record learns its status, its size and
//! whether the client got it.

use std::time::Duration;

use super::client::Client;
use crate::error::ProxyError;
use crate::http::answer;
use crate::pipeline::Exit;
use crate::rt::buffer::{flush_vec, write_all};

/// Sends the generated answer for `e` (none for a client that is gone).
/// False when nothing could be sent.
pub(super) async fn answer(c: &mut Client, e: ProxyError, close: bool, timeout: Duration) -> bool {
    c.record.fail(e);
    let Some(status) = e.status() else {
        return false;
    };
    c.record.status = status;
    match answer::prerendered(status, close) {
        Some(bytes) => send_bytes(c, bytes, timeout).await,
        None => {
            c.out.clear();
            answer::render_answer(&mut c.out, status, close);
            send_out(c, timeout).await
        }
    }
}

/// Sends fixed bytes (a configured response, a pre-rendered answer).
pub(super) async fn send_bytes(c: &mut Client, bytes: &'static [u8], timeout: Duration) -> bool {
    c.record.bytes_out += bytes.len() as u64;
    let sent = write_all(&mut c.stream, bytes, timeout).await.is_ok();
    if !sent {
        c.record.exit = Exit::ClientGone;
    }
    sent
}

/// Sends what was rendered into `Client::out` (a redirect, a generated
/// answer), leaving it empty.
pub(super) async fn send_out(c: &mut Client, timeout: Duration) -> bool {
    c.record.bytes_out += c.out.len() as u64;
    let sent = flush_vec(&mut c.stream, &mut c.out, timeout).await.is_ok();
    if !sent {
        c.record.exit = Exit::ClientGone;
    }
    sent
}
