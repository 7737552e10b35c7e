//! One client connection over HTTP/1.1: the PROXY header and TLS
//! handshake, then per request: wait for it (parking the connection when
//! it idles), read its head, have `plan` decide, carry the plan out, and
//! run the logging phase once; loop while the connection stays
//! persistent. Requests on a connection are handled strictly in order,
//! which is what makes pipelining correct.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::Canceller;
use monoio::net::TcpStream;

use super::admin;
use super::cache;
use super::ctx::{ActiveGuard, Snapshot, WorkerCtx};
use super::downstream::Downstream;
use super::guard;
use super::parking::Parked;
use super::plan::{Plan, Planned, plan};
use super::proxy::{self, Next};
use super::reqstate::ReqState;
use super::requests::ConnFacts;
use super::tunnel;
use crate::config::{Config, MinRate};
use crate::error::{ErrorKind, ProxyError};
use crate::http::Version;
use crate::net::conn_limit::ConnSlot;
use crate::observe::metrics::Handshake;
use crate::pipeline::Record;
use crate::rt::buffer::{BufferPool, ReadBuf};
use crate::rt::conn::Conn;
use crate::rt::deadline;
use crate::shared::ADMIN_LISTENER;
use crate::tls::{TlsStream, client_subject};

/// How long a new connection may still send its first request once a
/// drain has begun.
const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(200);

/// Cancellers kept for reuse per worker.
const MAX_FREE_CANCELLERS: usize = 1024;

/// Record text buffers kept for reuse per worker.
const MAX_FREE_TEXT_BUFS: usize = 1024;

/// Room asked for when reading a request head.
const HEAD_READ: usize = 4096;

pub(crate) struct Client {
    pub stream: Conn,
    /// What the TLS handshake told (None on plain connections; boxed:
    /// most connections are plain and every byte here is copied when
    /// the connection's task moves).
    pub tls: Option<Box<TlsFacts>>,
    pub peer: SocketAddr,
    /// The address the client connected to, when a PROXY header said.
    pub local: Option<SocketAddr>,
    /// The listener that accepted the connection.
    pub listener_id: u64,
    /// Its position in the snapshot of the current request.
    pub listener: usize,
    pub inbuf: ReadBuf,
    /// What goes to the client next: a response head, small bodies, a
    /// rendered answer.
    pub out: Vec<u8>,
    /// What happened to the current request.
    pub record: Record,
    /// The current request's HTTP version (decides the response's framing).
    pub version: Version,
    /// The current request is a HEAD: answers go without a body.
    pub head_request: bool,
    /// `timeouts.min_body_rate` of the current request's snapshot.
    pub body_rate: Option<MinRate>,
    /// Counts the connection as open, and lets a drain shut it down.
    active: ActiveGuard,
    /// Cancels the wait for a request that turns idle; kept across
    /// requests because making one allocates.
    canceller: Option<Canceller>,
    /// When the last request ended (the logging phase's clock read): the
    /// start of the wait for the next one, so that wait reads no clock.
    ended: Option<Instant>,
    /// The iovec pair of a stored head and body written together, made
    /// at the connection's first such write.
    pub iovecs: Option<crate::sys::IoVecPair>,
    /// The socket is in the worker's parking set (see `Parked::in_set`).
    in_parking_set: bool,
    /// Bytes are most likely waiting on the socket, and nothing was read
    /// through this `Client` yet: it woke readable from parking, or was
    /// accepted on a listener with `defer_accept` (which hands over a
    /// connection once its first bytes are in). Not for other new
    /// connections: measured under `wrk`, half of their first reads
    /// found nothing yet, and a system call that finds nothing costs
    /// about what it saves when it finds the request.
    fresh: bool,
}

impl Client {
    /// Gives the write and upstream buffers back to the worker while the
    /// connection waits for its next request.
    fn park_buffers(&mut self, req: &mut ReqState, ctx: &WorkerCtx) {
        self.stream.release_buffers();
        let mut pool = ctx.buffers.borrow_mut();
        self.give_exchange_buffers(req, &mut pool);
        // The read buffer stays (the next read needs it) but goes back to
        // its usual size if a large head or body made it grow.
        if self.inbuf.capacity() > 2 * HEAD_READ {
            pool.give(self.inbuf.take_vec());
            self.inbuf = ReadBuf::with_capacity(HEAD_READ);
        }
    }

    /// Gives every buffer back to the worker when the connection ends, so
    /// the next connection takes warm ones instead of allocating four.
    fn recycle(&mut self, ctx: &WorkerCtx) {
        let mut pool = ctx.buffers.borrow_mut();
        pool.give(std::mem::take(&mut self.out));
        pool.give(self.inbuf.take_vec());
        drop(pool);
        let mut cancellers = ctx.cancellers.borrow_mut();
        if let Some(canceller) = self.canceller.take()
            && cancellers.len() < MAX_FREE_CANCELLERS
        {
            cancellers.push(canceller);
        }
        let mut texts = ctx.text_bufs.borrow_mut();
        let text = self.record.text.take_buf();
        if text.capacity() > 0 && texts.len() < MAX_FREE_TEXT_BUFS {
            texts.push(text);
        }
    }

    /// The write buffer and the exchange's, which only a request being
    /// served needs.
    fn give_exchange_buffers(&mut self, req: &mut ReqState, pool: &mut BufferPool) {
        pool.give(std::mem::take(&mut self.out));
        req.park_buffers(pool);
    }

    fn unpark_buffers(&mut self, req: &mut ReqState, ctx: &WorkerCtx) {
        let mut pool = ctx.buffers.borrow_mut();
        if self.out.capacity() == 0 {
            self.out = pool.take();
        }
        req.unpark_buffers(&mut pool);
    }
}

/// Serves a connection accepted on a listener (with its place among the
/// listener's counted connections, see `guard`).
pub(crate) async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    (listener_id, mut slot): (u64, Option<ConnSlot>),
    ctx: Rc<WorkerCtx>,
) {
    let admin = listener_id == ADMIN_LISTENER;
    let mut active = ActiveGuard::new(ctx.clone(), socket.as_raw_fd(), admin);
    // TCP_NODELAY is set on the listening socket (server.rs), and Linux
    // copies it to every accepted socket: no setsockopt per connection.
    let mut socket = socket;
    let mut inbuf = ReadBuf::from_vec(ctx.buffers.borrow_mut().take());
    let (peer, local) = match proxy_header(&mut socket, peer, listener_id, &mut inbuf, &ctx).await {
        Some(addrs) => addrs,
        None => return,
    };
    let over = match &mut slot {
        Some(slot) => guard::admit_ip(&ctx, slot, listener_id, peer).err(),
        None => None,
    };
    if let Some(action) = over {
        drop((slot, active));
        guard::refuse(socket, action).await;
        return;
    }
    active.hold(slot);
    let Some((stream, tls)) = handshake(socket, peer, listener_id, &ctx, &mut inbuf).await else {
        return;
    };
    let mut c = Client::new(stream, (peer, local), listener_id, inbuf, active, &ctx);
    c.tls = tls.map(Box::new);
    c.fresh = deferred(&ctx, listener_id);
    let req = ReqState::take(&ctx);
    run(c, req, ctx, true).await;
}

/// Serves requests on a connection until it closes, or until it idles
/// long enough to be handed to a small `idle` task (`first`: no request
/// was served yet).
///
/// Not an `async fn`: one keeps its arguments twice in its future (as
/// arguments and as the locals they are moved to), and this future is
/// copied whole when a connection's task is spawned; the block below
/// uses the captured arguments in place.
#[allow(clippy::manual_async_fn)]
fn run(
    mut c: Client,
    mut req: ReqState,
    ctx: Rc<WorkerCtx>,
    mut first: bool,
) -> impl Future<Output = ()> {
    async move {
        loop {
            skip_empty_lines(&mut c.inbuf);
            if c.inbuf.is_empty() {
                c.park_buffers(&mut req, &ctx);
                match await_request(&mut c, &ctx, first).await {
                    Wait::Request => {}
                    Wait::Idle(deadline, overload) => {
                        req.give_back(&ctx);
                        // After a drain began nothing wakes parked
                        // connections: close instead.
                        if !ctx.drain.is_draining()
                            && let Some(parked) = c.park(&ctx, first, overload)
                        {
                            ctx.parking.park(parked, deadline);
                        }
                        return;
                    }
                    Wait::Close => {
                        c.recycle(&ctx);
                        req.give_back(&ctx);
                        return;
                    }
                }
            }
            first = false;
            // Taken once the request has begun, so a connection that idled
            // through a reload serves its next request on the new config.
            let config = ctx.snapshot().1;
            c.listener = config.listener_index(c.listener_id);
            let started = Instant::now();
            c.ended = None;
            let seq = ctx.requests.next_seq();
            c.record.reset(started, config.generation, c.listener, seq);
            c.body_rate = config.timeouts.min_body_rate;
            let end = serve_request(&mut c, &mut req, &ctx, &config, started).await;
            log_phase(&mut c, &ctx, &config, &end);
            cache::end_request(&mut req.cache, &config);
            match end {
                End::KeepAlive => {}
                End::Close { linger, quiet } => {
                    // Closing with pipelined input unread would reset the
                    // connection under the answer just written: read it
                    // away first.
                    // Not after a client timeout: its read was dropped, and
                    // reading again could lose bytes or (TLS) fail.
                    let lingered = (linger || !c.inbuf.is_empty()) && !timed_out(&c.record);
                    if lingered {
                        lingering_close(&mut c).await;
                    }
                    c.recycle(&ctx);
                    req.give_back(&ctx);
                    if quiet && !lingered {
                        close_client(c);
                    }
                    return;
                }
                End::Gone => {
                    c.recycle(&ctx);
                    req.give_back(&ctx);
                    return;
                }
                End::Tunnel(upstream, idle) => {
                    // The tunnel needs none of the buffers.
                    c.recycle(&ctx);
                    req.give_back(&ctx);
                    // Boxed: a tunnel is rare and long, and its future
                    // would otherwise make every connection's larger.
                    return Box::pin(run_tunnel(c, (upstream, idle), &ctx, &config)).await;
                }
            }
        }
    }
}

/// Relays bytes both ways after a 101 until either side closes, then runs
/// the request's logging phase.
async fn run_tunnel(
    c: Client,
    (upstream, idle): (Conn, Duration),
    ctx: &WorkerCtx,
    config: &Config,
) {
    let Client {
        stream,
        active,
        mut record,
        tls,
        version,
        ..
    } = c;
    let held = tunnel::Held::new(ctx, config, &record);
    let (sent, received) = tunnel::run(stream, upstream, idle).await;
    drop(held);
    record.bytes_in += sent;
    record.bytes_out += received;
    let facts = conn_facts(version, tls.as_deref());
    let sink = ctx.shared.access_log.get();
    ctx.requests
        .log(&record, config, (&facts, Instant::now()), sink);
    drop(active);
}

/// The request ended on a client timeout (a head or body too slow).
fn timed_out(record: &Record) -> bool {
    record
        .cause
        .is_some_and(|e| e.kind == ErrorKind::ClientTimeout)
}

fn conn_facts(version: Version, tls: Option<&TlsFacts>) -> ConnFacts<'_> {
    ConnFacts {
        proto: Some(match version {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }),
        tls: tls.map(|t| t.version),
        sni: tls.and_then(|t| t.sni.as_deref()),
    }
}

/// Empty lines before a request (some clients send a CRLF after a
/// request body) are ignored, as RFC 9112 section 2.2 allows: they do not
/// start a request, its head timeout or its log line. At most two, so a
/// client sending nothing but empty lines still runs into the head
/// timeout.
fn skip_empty_lines(inbuf: &mut ReadBuf) {
    let bytes = inbuf.bytes();
    let n = match bytes {
        [b'\r', b'\n', b'\r', b'\n', ..] => 4,
        [b'\r', b'\n', ..] | [b'\n', b'\n', ..] => 2,
        [b'\n', ..] => 1,
        _ => 0,
    };
    inbuf.consume(n);
}

/// How a request left its connection.
enum End {
    KeepAlive,
    /// Close: `linger` while the client may still be sending (an answer
    /// before its body was read, see `lingering_close`); `quiet` when
    /// every client operation completed (none was dropped by a timeout),
    /// so the socket can be closed with close(2).
    Close {
        linger: bool,
        quiet: bool,
    },
    /// Done without anything more to say or read.
    Gone,
    /// Switch to a byte tunnel with this upstream (after a 101).
    Tunnel(Conn, Duration),
}

/// Reads, plans and carries out one request, filling its record.
async fn serve_request(
    c: &mut Client,
    req: &mut ReqState,
    ctx: &WorkerCtx,
    config: &Snapshot,
    started: Instant,
) -> End {
    let planned = loop {
        let Some(planned) = next_request(c, req, ctx, config, started).await else {
            return End::Gone;
        };
        let Plan::CacheWait(rx) = planned.plan else {
            break planned;
        };
        cache::wait_for_fill(&mut req.cache, rx).await;
    };
    let write_timeout = config.timeouts.io;
    // The answers below never read a body, so it is unread if there is one.
    let linger = planned.has_body;
    c.inbuf.consume(planned.head_len);
    let (sent, close) = match planned.plan {
        Plan::Proxy(exchange) => {
            // Stale within stale-while-revalidate: the client is answered
            // first, then the exchange refreshes the object unseen.
            if let Some((object, status)) = req.cache.serve_first.take() {
                let close = !exchange.keep_alive;
                let now = req.cache.request_time;
                if !cache::serve(c, req, config, &object, (status, now), close).await {
                    return End::Close {
                        linger: false,
                        quiet: false,
                    };
                }
            }
            let next = proxy::run(c, req, ctx, config, exchange).await;
            return after_exchange(next, ctx.drain.is_draining());
        }
        Plan::Respond { bytes, close } => {
            c.out.clear();
            c.out.extend_from_slice(bytes);
            (c.send_rendered(write_timeout).await, close)
        }
        Plan::Rendered { close } => (c.send_rendered(write_timeout).await, close),
        Plan::Error { error, close } => {
            let page = config.page(c.record.route, &error);
            (c.answer(error, close, write_timeout, page).await, close)
        }
        Plan::Cached {
            object,
            status,
            close,
        } => {
            let now = req.cache.request_time;
            let sent = cache::serve(c, req, config, &object, (status, now), close).await;
            (sent, close)
        }
        // Taken by the loop above.
        Plan::CacheWait(_) => (false, true),
        // Each admin answer ends its connection, as tools expect.
        Plan::Admin(endpoint, head) => {
            // Boxed: the admin's future holds monoio timers (cache-padded),
            // which would make every request's future larger.
            let sent = Box::pin(admin::serve(c, ctx, endpoint, head, write_timeout)).await;
            (sent, true)
        }
    };
    if sent && !close && !ctx.drain.is_draining() {
        End::KeepAlive
    } else {
        End::Close {
            linger,
            quiet: false,
        }
    }
}

/// How the connection goes on after a proxy exchange.
fn after_exchange(next: Next, draining: bool) -> End {
    let close = |linger, quiet| End::Close { linger, quiet };
    match next {
        Next::KeepAlive if draining => close(false, false),
        Next::KeepAlive => End::KeepAlive,
        Next::Close => close(false, false),
        Next::CloseQuiet => close(false, true),
        Next::CloseLinger => close(true, false),
        Next::Tunnel(upstream, idle) => End::Tunnel(upstream, idle),
    }
}

/// Closes a client connection that is done, with no operation on it in
/// flight (else `into_raw_fd` would panic). On io_uring, monoio 0.2.4
/// closes a dropped socket with a CLOSE operation it never awaits and
/// drops at once, which also queues an ASYNC_CANCEL for it: two
/// submissions, two completions and a boxed op per connection. A plain
/// close(2) is one system call and the same kernel work.
fn close_client(c: Client) {
    use std::os::fd::IntoRawFd;
    let Client { stream, active, .. } = c;
    drop(active);
    match stream {
        Conn::Plain(socket) if !monoio::utils::is_legacy() => {
            // `into_raw_fd` panics when an operation still holds the
            // socket (checked against monoio 0.2.4, whose `try_unwrap`
            // behind it is where an upgrade should be re-read). `quiet`
            // rules that out; should it ever be wrong, the socket is
            // dropped (closed the usual way) during the unwind and the
            // worker carries on.
            let taken = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                socket.into_raw_fd()
            }));
            if let Ok(fd) = taken {
                // Just taken out of the only handle on it, with no
                // operation in flight: nothing else will close it.
                crate::sys::close_fd(fd);
            }
        }
        other => drop(other),
    }
}

/// On a `proxy_protocol` listener, reads the PROXY header (v1 or v2) and
/// returns the client and destination addresses it gives; bytes after it
/// stay in `inbuf`. Other listeners: the socket's peer. None: close (a
/// peer not in `trusted_proxies`, a bad or missing header, a timeout).
async fn proxy_header(
    socket: &mut TcpStream,
    peer: SocketAddr,
    listener_id: u64,
    inbuf: &mut ReadBuf,
    ctx: &WorkerCtx,
) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let (wanted, trusted, timeout) = {
        let config = ctx.snapshot().1;
        let index = config.listener_index(listener_id);
        let wanted = config
            .listeners
            .get(index)
            .is_some_and(|l| l.proxy_protocol);
        (
            wanted,
            config.trusted_proxies.contains(peer.ip()),
            config.timeouts.head,
        )
    };
    if !wanted {
        return Some((peer, None));
    }
    if !trusted {
        tracing::debug!(worker = ctx.id, %peer, "PROXY protocol from an untrusted peer; closing");
        return None;
    }
    let deadline = Instant::now() + timeout;
    loop {
        match crate::net::proxy_protocol::parse(inbuf.bytes()) {
            Ok(Some((header, len))) => {
                inbuf.consume(len);
                return Some((header.source.unwrap_or(peer), header.destination));
            }
            Ok(None) => {}
            Err(_) => {
                tracing::debug!(worker = ctx.id, %peer, "bad PROXY protocol header; closing");
                return None;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match inbuf.fill(socket, 512, left).await {
            Ok(n) if n > 0 => {}
            _ => return None,
        }
    }
}

/// Runs the TLS handshake on a TLS listener (bounded by its handshake
/// timeout, in this connection's own task, so a stalled client holds
/// nothing but its socket). None: the connection is done.
async fn handshake(
    socket: TcpStream,
    peer: SocketAddr,
    listener_id: u64,
    ctx: &WorkerCtx,
    inbuf: &mut ReadBuf,
) -> Option<(Conn, Option<TlsFacts>)> {
    let tls = {
        let config = ctx.snapshot().1;
        let index = config.listener_index(listener_id);
        let tls = config.listeners.get(index).and_then(|l| l.tls.as_ref());
        tls.map(|t| (t.server.clone(), t.handshake_timeout))
    };
    let Some((server, timeout)) = tls else {
        return Some((Conn::Plain(socket), None));
    };
    let accept = TlsStream::accept(socket, server, inbuf.bytes());
    let accepted = deadline::within(timeout, accept).await;
    inbuf.consume(inbuf.len());
    let result = match &accepted {
        Ok(Ok(_)) => Handshake::Ok,
        Ok(Err(_)) => Handshake::Failed,
        Err(_) => Handshake::Timeout,
    };
    ctx.requests.metrics.borrow_mut().handshake(result);
    match accepted {
        Ok(Ok(stream)) => {
            let facts = TlsFacts::of(stream.session());
            Some((Conn::Tls(Box::new(stream)), Some(facts)))
        }
        Ok(Err(e)) => {
            tracing::debug!(worker = ctx.id, %peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(worker = ctx.id, %peer, "TLS handshake timed out");
            None
        }
    }
}

/// What a finished handshake tells about the client, for the proxy's
/// headers and variables.
pub(crate) struct TlsFacts {
    /// Subject of the client's verified certificate.
    pub subject: Option<Box<[u8]>>,
    /// The server name the client asked for.
    pub sni: Option<Box<[u8]>>,
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
}

impl TlsFacts {
    fn of(session: &rustls::Connection) -> TlsFacts {
        let subject = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| client_subject(leaf))
            .map(|s| s.into_bytes().into_boxed_slice());
        let sni = match session {
            rustls::Connection::Server(s) => s.server_name(),
            rustls::Connection::Client(_) => None,
        };
        let version = match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "",
        };
        TlsFacts {
            subject,
            sni: sni.map(|n| n.as_bytes().into()),
            version,
        }
    }
}

/// How long, and how much, we keep reading from a client we are closing on.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Closes our side, then reads and discards what the client still sends
/// (for a while). Closing a socket with unread input makes the kernel send
/// a reset, which can destroy the answer we just wrote before the client
/// reads it; reading until the client's FIN avoids that.
async fn lingering_close(c: &mut Client) {
    use monoio::io::AsyncWriteRent;
    if c.stream.shutdown().await.is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut drained = 0;
    while drained < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        c.inbuf.consume(c.inbuf.len());
        match c.inbuf.fill(&mut c.stream, 16 * 1024, left).await {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// How long a plain connection waits for its next request holding a read
/// buffer and its whole task (plus up to one worker tick, 50 ms); past
/// this it is handed to `idle`, which holds neither. Connections under load never get there; idle ones shrink
/// from about 9 KiB to a few hundred bytes.
const HOT_WAIT: Duration = Duration::from_millis(250);

/// How long a cancelled read may take to report back.
const CANCEL_WAIT: Duration = Duration::from_secs(1);

/// How the wait for a request ended.
#[derive(Debug, PartialEq)]
enum Wait {
    /// Bytes are buffered in `inbuf`.
    Request,
    /// Nothing came within `HOT_WAIT`: wait on in an `idle` task until
    /// this deadline (true: one `[overload]` shortened).
    Idle(Instant, bool),
    /// Closed, timed out, failed or draining: close quietly.
    Close,
}

/// The logging phase: once per request, whatever its end (the admin
/// listener's requests are neither logged nor counted; a tunnel's, once
/// it closes). Its clock read marks the request's end.
fn log_phase(c: &mut Client, ctx: &WorkerCtx, config: &Config, end: &End) {
    if c.listener_id == ADMIN_LISTENER || matches!(end, End::Tunnel(..)) {
        return;
    }
    let ended = Instant::now();
    c.ended = Some(ended);
    let sink = ctx.shared.access_log.get();
    ctx.requests
        .log(&c.record, config, (&c.facts(), ended), sink);
}

/// Waits for the first bytes of a request: up to the head timeout on a new
/// connection, the keep-alive timeout between requests, and no longer
/// than the start of a drain.
async fn await_request(c: &mut Client, ctx: &WorkerCtx, first: bool) -> Wait {
    let timeouts = &ctx.snapshot().1.timeouts;
    let wait = if first {
        timeouts.head
    } else {
        timeouts.keepalive
    };
    let (wait, overload) = guard::idle_wait(ctx, c.active.slot(), c.listener_id, wait);
    if let Some(waited) = take_waiting(c) {
        return waited;
    }
    let drained = async {
        ctx.drain.wait().await;
        // A connection accepted just before the drain began has most
        // likely sent its request already: it gets a short grace.
        if first {
            deadline::sleep_until(Instant::now() + FIRST_REQUEST_GRACE).await;
        }
    };
    let read = match &mut c.stream {
        Conn::Plain(socket) if wait > HOT_WAIT => {
            // A cancelled read hands back its buffer and any bytes that
            // had arrived, so nothing is lost when the wait turns idle.
            // Right after a request, its end stands for now.
            let now = c.ended.take().unwrap_or_else(Instant::now);
            let deadline = now + wait;
            let canceller = c
                .canceller
                .get_or_insert_with(|| ctx.cancellers.borrow_mut().pop().unwrap_or_default());
            let fill = c
                .inbuf
                .fill_cancelable(socket, HEAD_READ, canceller.handle());
            let mut fill = std::pin::pin!(fill);
            // The hot wait uses the thread's deadline slab, not a monoio
            // timer: cheaper per request (see `deadline`).
            let draining = monoio::select! {
                r = &mut fill => return waited(r),
                _ = deadline::sleep_until(now + HOT_WAIT) => false,
                _ = drained => true,
            };
            // A cancelled canceller hands back a fresh one: keep it (it
            // goes to the worker's pool when the connection parks).
            if let Some(spent) = c.canceller.take() {
                c.canceller = Some(spent.cancel());
            }
            // A cancel is only a request to the driver: bound the wait for
            // its answer too (dropping the read then is fine: we close).
            let settled = deadline::sleep_until(Instant::now() + CANCEL_WAIT);
            let read = monoio::select! {
                r = fill => r,
                _ = settled => return Wait::Close,
            };
            return after_cancel(read, draining, (deadline, overload));
        }
        // Dropping this read on drain may lose bytes in flight: we close
        // then anyway. (TLS keeps reading here: rustls may hold bytes a
        // readiness wait would not see.)
        stream => {
            let fill = c.inbuf.fill(stream, HEAD_READ, wait);
            monoio::select! {
                r = fill => r,
                _ = drained => return Wait::Close,
            }
        }
    };
    if overload
        && read
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
    {
        guard::count_overload_closes(ctx, 1);
    }
    waited(read)
}

/// Whether the listener hands connections over once their first bytes
/// are in (`defer_accept`).
fn deferred(ctx: &WorkerCtx, listener_id: u64) -> bool {
    let config = &ctx.snapshot().1;
    let index = config.listener_index(listener_id);
    config.listeners.get(index).is_some_and(|l| l.defer_accept)
}

/// On a fresh plain connection (see `Client::fresh`), takes the bytes
/// that most likely wait already with one system call: no read
/// operation, canceller or task wake-up. None: nothing there, wait.
fn take_waiting(c: &mut Client) -> Option<Wait> {
    if !std::mem::take(&mut c.fresh) {
        return None;
    }
    let Conn::Plain(socket) = &c.stream else {
        return None;
    };
    match c.inbuf.fill_now(socket.as_raw_fd(), HEAD_READ) {
        Ok(0) => Some(Wait::Close),
        Ok(_) => Some(Wait::Request),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(_) => Some(Wait::Close),
    }
}

/// What a cancelled hot wait turns into: bytes that raced the cancel
/// are a request (served with `Connection: close` during a drain); a
/// clean cancel parks the connection until `idle`'s deadline, unless a
/// drain caused it.
fn after_cancel(read: std::io::Result<usize>, draining: bool, idle: (Instant, bool)) -> Wait {
    match read {
        Ok(n) if n > 0 => Wait::Request,
        Err(e) if !draining && e.raw_os_error() == Some(libc::ECANCELED) => {
            Wait::Idle(idle.0, idle.1)
        }
        _ => Wait::Close,
    }
}

fn waited(read: std::io::Result<usize>) -> Wait {
    match read {
        Ok(n) if n > 0 => Wait::Request,
        _ => Wait::Close,
    }
}

impl Client {
    /// Gives every buffer back and keeps only what `Parked` holds. None
    /// for TLS, which never parks.
    fn park(mut self, ctx: &WorkerCtx, first: bool, overload: bool) -> Option<Parked> {
        self.recycle(ctx);
        let Client {
            stream,
            peer,
            local,
            listener_id,
            active,
            in_parking_set,
            ..
        } = self;
        match stream {
            Conn::Plain(socket) => Some(Parked {
                socket,
                peer,
                local,
                listener_id,
                active,
                in_set: in_parking_set,
                first,
                overload,
            }),
            Conn::Tls(_) => {
                debug_assert!(false, "a TLS connection never parks");
                None
            }
        }
    }

    fn unpark(p: Parked, ctx: &WorkerCtx) -> Client {
        let inbuf = ReadBuf::from_vec(ctx.buffers.borrow_mut().take());
        let addrs = (p.peer, p.local);
        let mut c = Client::new(
            Conn::Plain(p.socket),
            addrs,
            p.listener_id,
            inbuf,
            p.active,
            ctx,
        );
        c.in_parking_set = p.in_set;
        c.fresh = true;
        c
    }

    /// What the access log shows of the connection.
    fn facts(&self) -> ConnFacts<'_> {
        conn_facts(self.version, self.tls.as_deref())
    }

    /// The address the client connected to, as the socket says.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.stream.socket().local_addr().ok()
    }

    /// A plain connection's state before its first request; `addrs`: the
    /// client's address and the one it connected to, if a PROXY header
    /// said.
    fn new(
        stream: Conn,
        addrs: (SocketAddr, Option<SocketAddr>),
        listener_id: u64,
        inbuf: ReadBuf,
        active: ActiveGuard,
        ctx: &WorkerCtx,
    ) -> Client {
        let mut record = Record::new(addrs.0, ctx.requests.seed(), ctx.requests.epoch());
        if let Some(text) = ctx.text_bufs.borrow_mut().pop() {
            record.text.use_buf(text);
        }
        Client {
            stream,
            tls: None,
            peer: addrs.0,
            local: addrs.1,
            listener_id,
            listener: usize::MAX,
            inbuf,
            out: Vec::new(),
            record,
            version: Version::Http11,
            head_request: false,
            body_rate: None,
            active,
            canceller: None,
            ended: None,
            iovecs: None,
            in_parking_set: false,
            fresh: false,
        }
    }
}

/// The worker's one task for parked connections: each whose socket turns
/// readable (its next request, a close, an error) goes back to a request
/// task. A drain closes them all at once.
pub(crate) async fn wake_parked(ctx: Rc<WorkerCtx>, watcher: monoio::net::UnixStream) {
    let mut woken = Vec::new();
    loop {
        let ready = monoio::select! {
            r = watcher.readable(false) => r,
            _ = ctx.drain.wait() => break,
        };
        if let Err(e) = ready {
            // Parked connections still close at their deadlines.
            tracing::warn!(worker = ctx.id, error = %e, "idle connections can no longer be watched");
            break;
        }
        ctx.parking.take_ready(&mut woken);
        for parked in woken.drain(..) {
            let first = parked.first;
            let c = Client::unpark(parked, &ctx);
            let req = ReqState::take(&ctx);
            // Boxed for the reason given in `listen::accept_loop`.
            monoio::spawn(crate::rt::boxed_future(|| run(c, req, ctx.clone(), first)));
        }
    }
    if ctx.drain.is_draining() {
        ctx.parking.clear();
    }
}

/// Reads until a full request head is buffered and planned. None means
/// the connection is done (closed, too slow, or answered with an error
/// that ends it); the record says which.
async fn next_request<'c>(
    c: &mut Client,
    req: &mut ReqState,
    ctx: &WorkerCtx,
    config: &'c Config,
    started: Instant,
) -> Option<Planned<'c>> {
    let mut try_parse = true;
    loop {
        let planned = if try_parse {
            c.unpark_buffers(req, ctx);
            plan(c, req, ctx, config, ctx.drain.is_draining())
        } else {
            Ok(None)
        };
        match planned {
            Ok(Some(planned)) => return Some(planned),
            // A head still coming holds only its read buffer: a client
            // trickling one (slowloris) does not hold the three exchange
            // buffers (12 KiB) too.
            Ok(None) => c.give_exchange_buffers(req, &mut ctx.buffers.borrow_mut()),
            Err(e) => {
                if c.answer(e, true, config.timeouts.io, config.page(None, &e))
                    .await
                {
                    lingering_close(c).await;
                }
                return None;
            }
        }
        // The head's whole time, or sooner when it trickles below
        // `min_head_rate`; recomputed as bytes arrive (each earns time).
        let (deadline, by_rate) =
            guard::head_deadline(&config.timeouts, started, c.inbuf.len() as u64);
        let left = deadline.saturating_duration_since(Instant::now());
        match c.inbuf.fill(&mut c.stream, HEAD_READ, left).await {
            Ok(0) => return None,
            // A head can only have completed if a line ended in the new
            // bytes; parsing again otherwise would make a client that
            // trickles bytes cost quadratic time. Past the size limit we
            // parse anyway, to refuse the head.
            Ok(n) => {
                let held = c.inbuf.bytes();
                try_parse = memchr::memchr(b'\n', &held[held.len() - n..]).is_some()
                    || held.len() >= config.limits.head.max_head_size;
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                // A head started but did not finish in time: 408, then
                // close (the timed-out read was dropped: the connection
                // is done either way).
                if by_rate {
                    let slow = crate::observe::metrics::ConnClosed::SlowHead;
                    ctx.requests.metrics.borrow_mut().conn_closed(slow, 1);
                }
                let timeout = ProxyError::downstream(ErrorKind::ClientTimeout);
                let page = config.page(None, &timeout);
                c.answer(timeout, true, config.timeouts.io, page).await;
                return None;
            }
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn a_cancelled_wait_keeps_bytes_that_raced_the_cancel() {
        let idle = (Instant::now(), true);
        let canceled = || Err(io::Error::from_raw_os_error(libc::ECANCELED));
        assert_eq!(after_cancel(Ok(12), false, idle), Wait::Request);
        assert_eq!(after_cancel(Ok(12), true, idle), Wait::Request);
        assert_eq!(
            after_cancel(canceled(), false, idle),
            Wait::Idle(idle.0, true)
        );
        assert_eq!(after_cancel(canceled(), true, idle), Wait::Close);
        assert_eq!(after_cancel(Ok(0), false, idle), Wait::Close);
        let reset = Err(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(after_cancel(reset, false, idle), Wait::Close);
    }
}
