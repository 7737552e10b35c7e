//! The admin API, served by worker 0 on the proxy's own engine (the same
//! parser, limits and timeouts as any client connection): liveness and
//! readiness, the running config, upstream servers and their runtime
//! control, metrics, the dashboard, and reloads. With `[admin] token`
//! every request needs `Authorization: Bearer <token>`. A reload reads
//! files and binds sockets, so it runs on a thread of its own while the
//! worker goes on serving. Each answer closes its connection.

mod auth;
mod cache;
mod json;
mod servers;

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, TryRecvError};
use std::time::{Duration, Instant};

use super::client::Client;
use super::ctx::WorkerCtx;
use super::observe;
use crate::config::Config;
use crate::http::encode::write_content_length;
use crate::http::{Framing, RequestHead, answer};
use crate::pipeline::Exit;
use crate::rt::buffer::write_all;
pub(super) use servers::publish_servers;
use servers::{ServerRef, Setting};

/// How long a reload may take before the answer gives up on it (the
/// reload itself still finishes).
const RELOAD_WAIT: Duration = Duration::from_secs(60);
/// How often the worker looks for the reload's outcome.
const RELOAD_POLL: Duration = Duration::from_millis(5);
/// Largest request body an admin endpoint reads (a state or a weight).
const MAX_BODY: u64 = 1024;

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

const DASHBOARD: &str = include_str!("../../assets/dashboard.html");

const GET: &str = "GET, HEAD";
const POST: &str = "POST";

/// An admin request, as far as its head tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// `/health`, `/healthz`: the process answers.
    Health,
    Readyz,
    Generation,
    Config,
    Upstreams,
    Metrics,
    Stats,
    Dashboard,
    Reload,
    /// `POST /upstreams/{group}/{server}/{state|weight}`.
    Control {
        target: ServerRef,
        setting: Setting,
        /// The body's length; None when not sent with Content-Length.
        body: Option<u64>,
    },
    /// `POST /cache/purge?key=URL` or `?prefix=URL` (optional `zone=`):
    /// the query string.
    CachePurge(Box<[u8]>),
    /// A token is configured and the request lacks it.
    Unauthorized,
    /// A known path with the wrong method: the ones it allows.
    WrongMethod(&'static str),
    NotFound,
}

impl Endpoint {
    pub fn of(req: &RequestHead<'_, '_>, config: &Config) -> Endpoint {
        let endpoint = match req.path {
            b"/cache/purge" if req.method == b"POST" => Endpoint::CachePurge(req.query.into()),
            b"/cache/purge" => Endpoint::WrongMethod(POST),
            path => Self::route(req.method, path, req.framing),
        };
        // The dashboard page holds no data (a browser cannot send a
        // token for it); it sends the token from its URL fragment with
        // each poll of /stats.
        if let Some(token) = &config.admin.token
            && endpoint != Endpoint::Dashboard
            && !auth::bearer_matches(token, req.header(b"authorization"))
        {
            return Endpoint::Unauthorized;
        }
        endpoint
    }

    fn route(method: &[u8], path: &[u8], framing: Framing) -> Endpoint {
        let get = matches!(method, b"GET" | b"HEAD");
        let post = method == b"POST";
        let (endpoint, allowed) = match path {
            b"/health" | b"/healthz" => (Endpoint::Health, GET),
            b"/readyz" => (Endpoint::Readyz, GET),
            b"/generation" => (Endpoint::Generation, GET),
            b"/config" => (Endpoint::Config, GET),
            b"/upstreams" => (Endpoint::Upstreams, GET),
            b"/metrics" => (Endpoint::Metrics, GET),
            b"/stats" => (Endpoint::Stats, GET),
            b"/" => (Endpoint::Dashboard, GET),
            b"/reload" => (Endpoint::Reload, POST),
            _ => match servers::control_path(path) {
                Some((target, setting)) => {
                    let body = match framing {
                        Framing::Empty => Some(0),
                        Framing::Length(n) => Some(n),
                        Framing::Chunked | Framing::Close => None,
                    };
                    let control = Endpoint::Control {
                        target,
                        setting,
                        body,
                    };
                    (control, POST)
                }
                None => return Endpoint::NotFound,
            },
        };
        match allowed {
            GET if get => endpoint,
            POST if post => endpoint,
            _ => Endpoint::WrongMethod(allowed),
        }
    }
}

/// An answer to send: status, media type, body, extra header lines.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    extra: String,
}

impl Reply {
    fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into(),
            extra: String::new(),
        }
    }

    fn text(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply::new(status, TEXT, body)
    }

    fn with_header(mut self, line: &str) -> Reply {
        self.extra.push_str(line);
        self.extra.push_str("\r\n");
        self
    }

    /// The head, with the body's length (also for HEAD requests).
    fn head(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(192 + self.extra.len());
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason(self.status).as_bytes());
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(self.content_type.as_bytes());
        out.extend_from_slice(b"\r\n");
        write_content_length(&mut out, self.body.len() as u64);
        out.extend_from_slice(b"Cache-Control: no-store\r\nConnection: close\r\n");
        out.extend_from_slice(self.extra.as_bytes());
        out.extend_from_slice(b"\r\n");
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        422 => "Unprocessable Content",
        s => answer::reason(s),
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
    let reply = match endpoint {
        Endpoint::Health => Reply::text(200, "ok\n"),
        Endpoint::Readyz => readyz(ctx),
        Endpoint::Generation => Reply::text(200, format!("{}\n", ctx.snapshot().0)),
        Endpoint::Config => Reply::new(200, JSON, config_json(&ctx.snapshot().1)),
        Endpoint::Upstreams => Reply::new(200, JSON, servers::upstreams(ctx).await),
        Endpoint::Metrics => Reply::new(200, PROMETHEUS, observe::prometheus(ctx).await),
        Endpoint::Stats => Reply::new(200, JSON, observe::stats_json(ctx).await),
        Endpoint::Dashboard => Reply::new(200, HTML, DASHBOARD),
        Endpoint::Reload => {
            let (status, body) = reload(ctx).await;
            Reply::text(status, body)
        }
        Endpoint::Control {
            target,
            setting,
            body,
        } => match read_body(c, body, timeout).await {
            Ok(body) => {
                let (status, answer) = servers::control(&ctx.snapshot().1, &target, setting, &body);
                let media = if status == 200 { JSON } else { TEXT };
                Reply::new(status, media, answer)
            }
            Err(reply) => reply,
        },
        Endpoint::CachePurge(query) => {
            let (status, body) = cache::purge(&ctx.snapshot().1, &query);
            let media = if status == 200 { JSON } else { TEXT };
            Reply::new(status, media, body)
        }
        Endpoint::Unauthorized => {
            Reply::text(401, "unauthorized\n").with_header("WWW-Authenticate: Bearer")
        }
        Endpoint::WrongMethod(allowed) => {
            Reply::text(405, "method not allowed\n").with_header(&format!("Allow: {allowed}"))
        }
        Endpoint::NotFound => Reply::text(404, "not found\n"),
    };
    send(c, reply, head_only, timeout).await
}

/// Writes the head and body, the body straight from its own buffer (a
/// metrics page can be a few hundred KiB).
async fn send(c: &mut Client, reply: Reply, head_only: bool, timeout: Duration) -> bool {
    c.record.status = reply.status;
    let head = reply.head();
    let len = head.len() + if head_only { 0 } else { reply.body.len() };
    let mut sent = write_all(&mut c.stream, head, timeout).await.is_ok();
    if sent && !head_only && !reply.body.is_empty() {
        sent = write_all(&mut c.stream, reply.body, timeout).await.is_ok();
    }
    if sent {
        c.record.bytes_out += len as u64;
    } else {
        c.record.exit = Exit::ClientGone;
    }
    sent
}

/// The request body of a control request (short: a state or a weight),
/// or the answer when it cannot be had.
async fn read_body(c: &mut Client, len: Option<u64>, timeout: Duration) -> Result<Vec<u8>, Reply> {
    let Some(len) = len else {
        return Err(Reply::text(400, "send the body with a Content-Length\n"));
    };
    if len > MAX_BODY {
        return Err(Reply::text(413, "the body is too large\n"));
    }
    let len = len as usize;
    while c.inbuf.len() < len {
        let want = len - c.inbuf.len();
        match c.inbuf.fill(&mut c.stream, want, timeout).await {
            Ok(n) if n > 0 => {}
            // Gone or too slow: the connection closes after this answer.
            _ => return Err(Reply::text(400, "the body did not arrive\n")),
        }
    }
    let body = c.inbuf.bytes()[..len].to_vec();
    c.inbuf.consume(len);
    Ok(body)
}

/// 200 while every worker accepts on its listeners; 503 before that and
/// once a drain has begun (so a load balancer in front stops sending).
fn readyz(ctx: &WorkerCtx) -> Reply {
    let shared = &ctx.shared;
    if shared.draining.load(Ordering::Acquire) || ctx.drain.is_draining() {
        return Reply::text(503, "draining\n");
    }
    let accepting = shared.accepting();
    if accepting < shared.workers {
        return Reply::text(
            503,
            format!(
                "starting: {accepting} of {} workers accepting\n",
                shared.workers
            ),
        );
    }
    Reply::text(200, "ready\n")
}

/// `GET /config`: the running config's file as JSON, secrets redacted.
fn config_json(config: &Config) -> String {
    let mut out = String::from("{");
    json::key(&mut out, true, "generation");
    out.push_str(itoa::Buffer::new().format(config.generation));
    json::key(&mut out, false, "config");
    json::toml_table(&mut out, &config.source, "");
    out.push_str("}\n");
    out
}

/// Runs the control plane's reload on a thread of its own and waits for
/// its outcome without blocking the worker.
async fn reload(ctx: &WorkerCtx) -> (u16, String) {
    let Some(hook) = ctx.shared.admin_reload.get().cloned() else {
        return (404, "not found\n".to_string());
    };
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("ringress-reload".into())
        .spawn(move || {
            let _ = tx.send(hook());
        });
    if spawned.is_err() {
        return (503, "cannot start the reload\n".to_string());
    }
    let deadline = Instant::now() + RELOAD_WAIT;
    let outcome = loop {
        match rx.try_recv() {
            Ok(outcome) => break outcome,
            Err(TryRecvError::Empty) if Instant::now() < deadline => {
                monoio::time::sleep(RELOAD_POLL).await;
            }
            Err(_) => {
                return (503, "the reload did not finish in time\n".to_string());
            }
        }
    };
    match outcome {
        Ok(generation) => (200, format!("reloaded: generation {generation}\n")),
        Err(problems) => (
            422,
            format!("reload rejected, keeping the running config:\n{problems}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &[u8], path: &[u8]) -> Endpoint {
        Endpoint::route(method, path, Framing::Empty)
    }

    #[test]
    fn endpoints() {
        assert_eq!(route(b"GET", b"/health"), Endpoint::Health);
        assert_eq!(route(b"HEAD", b"/healthz"), Endpoint::Health);
        assert_eq!(route(b"GET", b"/readyz"), Endpoint::Readyz);
        assert_eq!(route(b"GET", b"/generation"), Endpoint::Generation);
        assert_eq!(route(b"GET", b"/config"), Endpoint::Config);
        assert_eq!(route(b"GET", b"/upstreams"), Endpoint::Upstreams);
        assert_eq!(route(b"GET", b"/metrics"), Endpoint::Metrics);
        assert_eq!(route(b"GET", b"/stats"), Endpoint::Stats);
        assert_eq!(route(b"GET", b"/"), Endpoint::Dashboard);
        assert_eq!(route(b"POST", b"/reload"), Endpoint::Reload);
        assert_eq!(route(b"GET", b"/reload"), Endpoint::WrongMethod(POST));
        assert_eq!(route(b"DELETE", b"/health"), Endpoint::WrongMethod(GET));
        assert_eq!(route(b"GET", b"/nope"), Endpoint::NotFound);
        assert!(matches!(
            Endpoint::route(
                b"POST",
                b"/upstreams/web/10.0.0.1:80/state",
                Framing::Length(5)
            ),
            Endpoint::Control {
                setting: Setting::State,
                body: Some(5),
                ..
            }
        ));
        assert!(matches!(
            Endpoint::route(
                b"POST",
                b"/upstreams/web/10.0.0.1:80/weight",
                Framing::Chunked
            ),
            Endpoint::Control { body: None, .. }
        ));
        assert_eq!(
            route(b"GET", b"/upstreams/web/10.0.0.1:80/weight"),
            Endpoint::WrongMethod(POST)
        );
    }

    #[test]
    fn heads_carry_length_and_no_store() {
        let reply = Reply::text(401, "unauthorized\n").with_header("WWW-Authenticate: Bearer");
        let head = String::from_utf8(reply.head()).unwrap();
        assert_eq!(
            head,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 13\r\nCache-Control: no-store\r\nConnection: close\r\n\
             WWW-Authenticate: Bearer\r\n\r\n"
        );
    }
}
