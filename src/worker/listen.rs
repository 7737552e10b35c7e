//! A worker's listening sockets: adopted from those the main thread binds
//! (at start and on reloads that add listeners), each served by an accept
//! loop, and stopped without leaking an accept when a reload removes the
//! listener or the worker drains (the admin listener last, so `/readyz`
//! can say 503 all through a drain); readiness (the worker accepts on
//! its listeners) for `/readyz`; and the socket options they carry
//! (backlog, deferred accept, delayed ACKs), set at bind time and again
//! when a reload changes them.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use monoio::io::Canceller;
use monoio::net::TcpListener;
use monoio::task::JoinHandle;

use super::client;
use super::ctx::WorkerCtx;
use super::guard;
use crate::config::{Config, ListenerConfig};
use crate::shared::{ADMIN_LISTENER, NewListener};
use crate::sys;

pub(crate) struct Accepting {
    id: u64,
    bind: SocketAddr,
    /// A second descriptor of the listening socket, for setting its
    /// options on reloads (the accept loop owns the first). Dropped when
    /// the entry leaves the list, before the loop ends.
    options: std::net::TcpListener,
    /// What `apply_options` last put on the socket (None: the bind-time
    /// options of the snapshot that added it, maybe not the newest).
    applied: Option<SocketOptions>,
    canceller: Canceller,
    stopped: Rc<Cell<bool>>,
    done: JoinHandle<()>,
    /// Whether this worker put the steering by source address on the
    /// socket's group.
    steering: bool,
}

/// Starts accepting on a socket bound by the main thread.
pub(crate) fn start(ctx: &Rc<WorkerCtx>, new: NewListener) -> std::io::Result<()> {
    new.socket.set_nonblocking(monoio::utils::is_legacy())?;
    let options = new.socket.try_clone()?;
    let listener = TcpListener::from_std(new.socket)?;
    let canceller = Canceller::new();
    let stopped = Rc::new(Cell::new(false));
    let done = monoio::spawn(accept_loop(
        ctx.clone(),
        new.id,
        listener,
        canceller.handle(),
        stopped.clone(),
    ));
    ctx.listeners.borrow_mut().push(Accepting {
        id: new.id,
        bind: new.bind,
        options,
        applied: None,
        canceller,
        stopped,
        done,
        steering: false,
    });
    if new.id != ADMIN_LISTENER {
        ctx.shared.mark_accepting(ctx.id);
    }
    steer(ctx, &ctx.snapshot().1);
    Ok(())
}

/// Whether connections are steered to workers by source address: when a
/// rate limit without a store is keyed on the client's address (its
/// buckets then live in one worker each, see `crate::limit`), and not
/// while an upgrade's steering holds the groups. Only then: steering by
/// address alone puts every connection from one address (a NAT, a load
/// balancer, a benchmark on loopback) on one worker.
pub(crate) fn steers_by_source(ctx: &WorkerCtx, config: &Config) -> bool {
    config
        .rate_limits
        .iter()
        .any(|l| l.key.on_client() && l.store.is_none())
        && !ctx
            .shared
            .steer_hold
            .load(std::sync::atomic::Ordering::Relaxed)
}

/// Puts the steering by source address on the groups of this worker's
/// listeners (those without PROXY protocol, whose peer is the client),
/// or takes it off, as `config` wants. Every worker does the same to the
/// same groups, so whichever is first, the result is one program.
fn steer(ctx: &WorkerCtx, config: &Config) {
    let on = steers_by_source(ctx, config);
    let groups = ctx.shared.workers as u32;
    for a in ctx.listeners.borrow_mut().iter_mut() {
        let Some(l) = config.listeners.iter().find(|l| l.id == a.id) else {
            continue;
        };
        let want = on && !l.proxy_protocol;
        if a.steering == want {
            continue;
        }
        let done = if want {
            sys::steer_by_source(&a.options, groups)
        } else {
            sys::unsteer(&a.options)
        };
        match done {
            Ok(()) => a.steering = want,
            Err(e) => {
                // Not relied on until the next publish: the client's
                // address is counted in the shared buckets meanwhile.
                ctx.shared
                    .steer_hold
                    .store(true, std::sync::atomic::Ordering::Release);
                tracing::warn!(worker = ctx.id, listener = %l.name, error = %e,
                    "cannot steer connections by source address: rate limits on the \
                     client address use the buckets shared by the workers")
            }
        }
    }
}

/// Makes the running accept loops match `config`: stops those of removed
/// listeners and starts the ones the main thread bound for new listeners.
pub(crate) fn sync(ctx: &Rc<WorkerCtx>, config: &Config) {
    // The admin listener is not in the config's list: it stays until
    // the worker stops.
    let wanted = |id: u64, bind: SocketAddr| {
        id == ADMIN_LISTENER
            || config
                .listeners
                .iter()
                .any(|l| l.id == id && l.bind == bind)
    };
    let mut removed = Vec::new();
    ctx.listeners.borrow_mut().retain_mut(|a| {
        let keep = wanted(a.id, a.bind);
        if !keep {
            removed.push(std::mem::take(&mut a.canceller));
            a.stopped.set(true);
        }
        keep
    });
    for canceller in removed {
        canceller.cancel();
    }
    for new in ctx.shared.take_new_listeners(ctx.id, config.generation) {
        if !wanted(new.id, new.bind) {
            continue;
        }
        // Bound by a later reload (the listener was removed and added
        // back between two ticks): the new socket replaces the old one.
        let mut old = Vec::new();
        ctx.listeners.borrow_mut().retain_mut(|a| {
            let same = a.id == new.id && a.bind == new.bind;
            if same {
                old.push(std::mem::take(&mut a.canceller));
                a.stopped.set(true);
            }
            !same
        });
        for canceller in old {
            canceller.cancel();
        }
        let bind = new.bind;
        if let Err(e) = start(ctx, new) {
            tracing::error!(worker = ctx.id, %bind, error = %e, "cannot start the new listener");
        }
    }
    // Every listener takes this snapshot's socket options, also one just
    // started from a socket bound for an earlier reload. The address is
    // not bound again, so connections queued on the socket stay.
    for a in ctx.listeners.borrow_mut().iter_mut() {
        let Some(l) = config.listeners.iter().find(|l| l.id == a.id) else {
            continue;
        };
        let wanted = SocketOptions::of(l);
        if a.applied == Some(wanted) {
            continue;
        }
        match apply_options(socket2::SockRef::from(&a.options), l) {
            Ok(()) => a.applied = Some(wanted),
            Err(e) => tracing::warn!(worker = ctx.id, listener = %l.name, error = %e,
                "cannot apply the listener's socket options"),
        }
    }
    steer(ctx, config);
}

/// The listener settings that live on its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SocketOptions {
    backlog: u32,
    defer_accept: bool,
    delayed_ack: bool,
}

impl SocketOptions {
    fn of(l: &ListenerConfig) -> SocketOptions {
        SocketOptions {
            backlog: l.backlog,
            defer_accept: l.defer_accept,
            delayed_ack: l.delayed_ack,
        }
    }
}

/// Puts a listener's options on its listening socket, at bind time and on
/// reloads: Linux lets a listening socket take a new backlog (`listen`
/// again) and these options without closing it.
pub(crate) fn apply_options(socket: socket2::SockRef<'_>, l: &ListenerConfig) -> io::Result<()> {
    socket.listen(l.backlog as i32)?;
    // Delayed ACKs from the start: the ACK of a request rides on its
    // response instead of going out alone, one packet fewer per new
    // connection (HAProxy's tcp-smart-accept, on in its HTTP mode). After
    // `listen`, which resets the socket's ACK state; accepted sockets
    // inherit it.
    socket.set_tcp_quickack(!l.delayed_ack)?;
    // Seconds of silence before the kernel hands over a connection anyway
    // (rounded up to one SYN-ACK retransmission); 0 turns it off.
    sys::set_tcp_defer_accept(&*socket, if l.defer_accept { 1 } else { 0 })
}

/// Stops every accept loop but the admin listener's (which answers
/// `/readyz` with 503 while the drain lasts) and waits until their
/// sockets are closed.
pub(crate) async fn stop_serving(ctx: &Rc<WorkerCtx>) {
    let (admin, serving) = std::mem::take(&mut *ctx.listeners.borrow_mut())
        .into_iter()
        .partition(|a| a.id == ADMIN_LISTENER);
    *ctx.listeners.borrow_mut() = admin;
    stop(serving).await;
}

/// Stops every accept loop and waits until their sockets are closed.
pub(crate) async fn stop_all(ctx: &Rc<WorkerCtx>) {
    let all = std::mem::take(&mut *ctx.listeners.borrow_mut());
    stop(all).await;
}

async fn stop(all: Vec<Accepting>) {
    let mut done = Vec::with_capacity(all.len());
    for a in all {
        a.stopped.set(true);
        a.canceller.cancel();
        done.push(a.done);
    }
    for d in done {
        d.await;
    }
}

async fn accept_loop(
    ctx: Rc<WorkerCtx>,
    id: u64,
    listener: TcpListener,
    cancel: monoio::io::CancelHandle,
    stopped: Rc<Cell<bool>>,
) {
    // A plain accept must never be dropped (it leaks the accepted fd on
    // io_uring), so stopping cancels it through its handle instead.
    let conns = guard::counts(&ctx, id);
    loop {
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((stream, peer)) => {
                let slot = match conns.as_ref().map(|c| guard::admit(&ctx, c, id)) {
                    Some(Err(action)) => {
                        guard::refuse_accepted(stream, action);
                        continue;
                    }
                    Some(Ok(slot)) => Some(slot),
                    None => None,
                };
                // Boxed: monoio copies a task's future whole when it
                // spawns, starts and finishes it, and a connection's is
                // about 4 KiB; a box is one small allocation instead
                // (callgrind: -3% instructions per new connection).
                let serve = || client::serve(stream, peer, (id, slot), ctx.clone());
                monoio::spawn(crate::rt::boxed_future(serve));
            }
            Err(_) if stopped.get() => break,
            Err(e) => {
                tracing::warn!(worker = ctx.id, error = %e, "accept failed");
                // Out of descriptors or memory: back off instead of spinning.
                monoio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
