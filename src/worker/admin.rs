//! The admin endpoints, served by worker 0 on the proxy's own engine (the
//! same parser, limits and timeouts as any client connection):
//! `GET /health`, `GET /generation`, `POST /reload`. A reload reads files
//! and binds sockets, so it runs on a thread of its own while the worker
//! goes on serving. Bind the listener to loopback or a management network
//! only: it has no authentication.

use std::sync::mpsc::{self, TryRecvError};
use std::time::{Duration, Instant};

use super::client::Client;
use super::ctx::WorkerCtx;
use super::downstream::Downstream;
use crate::router::Respond;

/// The answers an admin endpoint gives (its own, not generated errors).
const OK: u16 = 200;
const NOT_FOUND: u16 = 404;
const METHOD_NOT_ALLOWED: u16 = 405;
const UNPROCESSABLE: u16 = 422;
const UNAVAILABLE: u16 = 503;

/// How long a reload may take before the answer gives up on it (the
/// reload itself still finishes).
const RELOAD_WAIT: Duration = Duration::from_secs(60);
/// How often the worker looks for the reload's outcome.
const RELOAD_POLL: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    Health,
    Generation,
    Reload,
    Metrics,
    Stats,
    /// A known path with the wrong method.
    WrongMethod,
    NotFound,
}

impl Endpoint {
    pub fn of(method: &[u8], path: &[u8]) -> Endpoint {
        match (method, path) {
            (b"GET" | b"HEAD", b"/health") => Endpoint::Health,
            (b"GET" | b"HEAD", b"/generation") => Endpoint::Generation,
            (b"POST", b"/reload") => Endpoint::Reload,
            (b"GET" | b"HEAD", b"/metrics") => Endpoint::Metrics,
            (b"GET" | b"HEAD", b"/stats") => Endpoint::Stats,
            (_, b"/health" | b"/generation" | b"/reload" | b"/metrics" | b"/stats") => {
                Endpoint::WrongMethod
            }
            _ => Endpoint::NotFound,
        }
    }
}

/// Answers one admin request (the connection closes after it).
pub(super) async fn serve(
    c: &mut Client,
    ctx: &WorkerCtx,
    endpoint: Endpoint,
    head_only: bool,
    timeout: Duration,
) -> bool {
    let mut content_type = "text/plain; charset=utf-8";
    let (status, body) = match endpoint {
        Endpoint::Metrics => {
            content_type = "text/plain; version=0.0.4; charset=utf-8";
            (OK, super::observe::prometheus(ctx).await)
        }
        Endpoint::Stats => {
            content_type = "application/json";
            (OK, super::observe::stats_json(ctx).await)
        }
        Endpoint::Health => (OK, "ok\n".to_string()),
        Endpoint::Generation => (OK, format!("{}\n", ctx.snapshot().0)),
        Endpoint::Reload => reload(ctx).await,
        Endpoint::WrongMethod => (METHOD_NOT_ALLOWED, "method not allowed\n".to_string()),
        Endpoint::NotFound => (NOT_FOUND, "not found\n".to_string()),
    };
    c.record.status = status;
    let answer = Respond::new(status, body.as_bytes(), content_type);
    c.out.clear();
    c.out.extend_from_slice(answer.bytes(true, head_only));
    c.send_rendered(timeout).await
}

/// Runs the control plane's reload on a thread of its own and waits for
/// its outcome without blocking the worker.
async fn reload(ctx: &WorkerCtx) -> (u16, String) {
    let Some(hook) = ctx.shared.admin_reload.get().cloned() else {
        return (NOT_FOUND, "not found\n".to_string());
    };
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("ringress-reload".into())
        .spawn(move || {
            let _ = tx.send(hook());
        });
    if spawned.is_err() {
        return (UNAVAILABLE, "cannot start the reload\n".to_string());
    }
    let deadline = Instant::now() + RELOAD_WAIT;
    let outcome = loop {
        match rx.try_recv() {
            Ok(outcome) => break outcome,
            Err(TryRecvError::Empty) if Instant::now() < deadline => {
                monoio::time::sleep(RELOAD_POLL).await;
            }
            Err(_) => {
                return (
                    UNAVAILABLE,
                    "the reload did not finish in time\n".to_string(),
                );
            }
        }
    };
    match outcome {
        Ok(generation) => (OK, format!("reloaded: generation {generation}\n")),
        Err(problems) => (
            UNPROCESSABLE,
            format!("reload rejected, keeping the running config:\n{problems}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(Endpoint::of(b"GET", b"/health"), Endpoint::Health);
        assert_eq!(Endpoint::of(b"HEAD", b"/health"), Endpoint::Health);
        assert_eq!(Endpoint::of(b"GET", b"/generation"), Endpoint::Generation);
        assert_eq!(Endpoint::of(b"POST", b"/reload"), Endpoint::Reload);
        assert_eq!(Endpoint::of(b"GET", b"/reload"), Endpoint::WrongMethod);
        assert_eq!(Endpoint::of(b"DELETE", b"/health"), Endpoint::WrongMethod);
        assert_eq!(Endpoint::of(b"GET", b"/"), Endpoint::NotFound);
    }
}
