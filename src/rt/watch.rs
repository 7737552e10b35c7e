//! Waiting on one side of a relay while watching the other side for an
//! early answer: an upstream may answer (413, 401) and stop reading
//! before a client has sent all of a request body, and the client, still
//! sending or waiting to send more, must get that answer instead of
//! nothing.

use std::future::Future;
use std::time::Duration;

use monoio::net::TcpStream;

use super::deadline;

/// How long a wait runs before the peer is watched too. Most waits end
/// at once, and watching costs a readiness poll (an io_uring operation
/// and its cancellation), so it is armed only when the source pauses.
const WATCH_AFTER: Duration = Duration::from_millis(5);

/// The watched peer turned readable (sent bytes, closed or failed) while
/// the wait was still pending; the wait was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answered;

/// Runs `wait` to its end, unless `peer` turns readable first once the
/// wait has taken longer than `WATCH_AFTER`. Dropping `wait` may lose
/// bytes an io_uring read had already taken (see MONOIO.md): callers
/// stop using its source after `Answered`.
pub(crate) async fn unless_answered<F: Future>(
    wait: F,
    peer: &TcpStream,
) -> Result<F::Output, Answered> {
    let mut wait = std::pin::pin!(wait);
    if let Ok(done) = deadline::within(WATCH_AFTER, wait.as_mut()).await {
        return Ok(done);
    }
    monoio::select! {
        done = wait => Ok(done),
        _ = peer.readable(false) => Err(Answered),
    }
}
