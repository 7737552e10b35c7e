//! A worker: one OS thread, one monoio runtime (io_uring or epoll), its own
//! SO_REUSEPORT listening sockets, and every connection they accept. It
//! shares nothing with other workers but the config snapshot and flags.

mod admin;
mod auth;
mod cache;
mod client;
mod coding;
mod connect;
mod ctx;
mod downstream;
mod drain;
mod guard;
mod limits;
mod listen;
mod observe;
mod parking;
mod phase;
mod plan;
mod proxy;
mod relay;
mod reqstate;
mod requests;
mod response;
mod retry;
mod transform;
mod tunnel;

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::config::IoMode;
use crate::rt::deadline;
use crate::shared::{NewListener, Shared};
use ctx::WorkerCtx;
pub(crate) use listen::apply_options as apply_listener_options;

/// How often a worker looks at the shared flags and sweeps its pool.
const TICK: Duration = Duration::from_millis(50);
/// Bytes of buffers one trim must free to ask for a full allocator
/// collect on the next tick (64 idle connections' worth of 4 KiB pairs).
const FULL_RELEASE_TRIMMED: usize = 512 * 1024;
/// Least time between two full collects.
const FULL_RELEASE_EVERY: Duration = Duration::from_secs(5);

/// What a worker reports once its runtime is up (or why it is not).
pub(crate) type Ready = Result<&'static str, String>;

pub(crate) struct WorkerSpec {
    pub id: usize,
    pub shared: Arc<Shared>,
    /// The sockets bound for this worker, one per listener.
    pub listeners: Vec<NewListener>,
    pub io: IoMode,
    pub ready: Sender<Ready>,
    /// See `ServerOptions::release_memory`.
    pub release_memory: Option<fn(bool)>,
}

/// Runs a worker to completion on the current thread.
pub(crate) fn run(spec: WorkerSpec) {
    // Every line this worker logs names it (`worker{id=N}`).
    let _span = tracing::info_span!("worker", id = spec.id).entered();
    let use_uring = match spec.io {
        IoMode::Epoll => false,
        IoMode::IoUring => true,
        IoMode::Auto => monoio::utils::detect_uring(),
    };
    if use_uring {
        // Deferred task running: the kernel finishes completions only when
        // the worker asks for events, in one batch, instead of interrupting
        // it per completion (5-18% less CPU per proxied request than
        // cooperative task running in paired runs on a noisy 2-core VM,
        // with no worse p99). It needs a single submitter,
        // which a worker is, and Linux 6.1; older kernels get cooperative
        // task running (5.19), then a plain ring.
        let mut deferred = io_uring::IoUring::builder();
        deferred.setup_single_issuer().setup_defer_taskrun();
        let mut cooperative = io_uring::IoUring::builder();
        cooperative.setup_coop_taskrun();
        let built = uring_runtime(Some(deferred))
            .or_else(|_| uring_runtime(Some(cooperative)))
            .or_else(|_| uring_runtime(None));
        match built {
            Ok(mut rt) => return rt.block_on(main(spec, "io_uring")),
            // Auto means "io_uring if it can be had": a ring refused at
            // set-up (memlock limits, seccomp) falls back like a kernel
            // without io_uring does.
            Err(e) if spec.io == IoMode::Auto => {
                tracing::warn!(worker = spec.id, error = %e, "io_uring set-up failed; using epoll");
            }
            Err(e) => {
                let _ = spec
                    .ready
                    .send(Err(format!("io_uring runtime failed: {e}")));
                return;
            }
        }
    }
    match epoll_runtime() {
        Ok(mut rt) => rt.block_on(main(spec, "epoll")),
        Err(e) => {
            let _ = spec.ready.send(Err(format!("epoll runtime failed: {e}")));
        }
    }
}

// The process's monoio runtimes are all built by these two functions (the
// clippy config refuses `RuntimeBuilder::build` elsewhere): a thread's I/O
// deadlines must start over with each runtime (see `deadline`).

#[allow(clippy::disallowed_methods)]
fn uring_runtime(
    tuned: Option<io_uring::Builder>,
) -> std::io::Result<monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>> {
    deadline::new_runtime();
    let mut builder = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().with_entries(4096);
    if let Some(tuned) = tuned {
        builder = builder.uring_builder(tuned);
    }
    builder.enable_timer().build()
}

/// An epoll runtime with timers (workers without io_uring, the health
/// checker).
#[allow(clippy::disallowed_methods)]
pub(crate) fn epoll_runtime()
-> std::io::Result<monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>>> {
    deadline::new_runtime();
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
}

async fn main(spec: WorkerSpec, driver: &'static str) {
    // The idle connection set and the runtime's handle on it.
    let set_up = WorkerCtx::new(spec.id, spec.shared.clone())
        .and_then(|ctx| ctx.parking.watcher().map(|watcher| (Rc::new(ctx), watcher)));
    let (ctx, watcher) = match set_up {
        Ok(both) => both,
        Err(e) => {
            let _ = spec.ready.send(Err(format!(
                "worker {}: cannot set up the idle connection set: {e}",
                spec.id
            )));
            return;
        }
    };
    for new in spec.listeners {
        if let Err(e) = listen::start(&ctx, new) {
            let _ = spec.ready.send(Err(format!(
                "worker {}: listener setup failed: {e}",
                spec.id
            )));
            return;
        }
    }
    // Read before `ready`: a reload right after start must still be seen
    // as a change by the ticker.
    let listening_for = ctx.snapshot().0;
    monoio::spawn(ticker(ctx.clone(), listening_for, spec.release_memory));
    monoio::spawn(client::wake_parked(ctx.clone(), watcher));
    let _ = spec.ready.send(Ok(driver));

    ctx.drain.wait().await;
    // The accept loops close their listeners as they end; the admin
    // listener's stays until the drain is over.
    listen::stop_serving(&ctx).await;
    let drain_timeout = ctx.snapshot().1.runtime.drain_timeout;
    let deadline = Instant::now() + drain_timeout;
    while ctx.active.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    if ctx.active.get() > 0 {
        tracing::warn!(
            worker = ctx.id,
            open = ctx.active.get(),
            "drain timeout: closing remaining connections"
        );
        ctx::shut_down_sockets(&ctx);
        let grace = Instant::now() + Duration::from_millis(500);
        while ctx.active.get() > 0 && Instant::now() < grace {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // The admin listener, kept for `/readyz`.
    listen::stop_all(&ctx).await;
    // Close idle upstream connections (and any client connection parked
    // since: its drain guard holds the context), and give the runtime one
    // turn to submit the closes (on io_uring they are operations too).
    ctx.parking.clear();
    ctx.pool.borrow_mut().clear();
    // The last requests' log lines and counts.
    ctx.requests.flush(ctx.shared.access_log.get());
    observe::publish(&ctx, true);
    monoio::time::sleep(Duration::from_millis(1)).await;
}

async fn ticker(ctx: Rc<WorkerCtx>, mut listening_for: u64, release_memory: Option<fn(bool)>) {
    let mut ticks: u32 = 0;
    let mut release_all_next_tick = false;
    let mut last_full_release: Option<Instant> = None;
    loop {
        monoio::time::sleep(TICK).await;
        if ctx.shared.draining.load(Ordering::Acquire) && !ctx.drain.is_draining() {
            ctx.drain.start();
        }
        // A reload may have added or removed listeners.
        let (generation, config) = ctx.snapshot();
        // Worker 0 also starts the admin listener when it is handed over.
        let admin = ctx.id == 0
            && ctx.shared.admin_queued.load(Ordering::Acquire)
            && ctx.shared.admin_queued.swap(false, Ordering::AcqRel);
        if (generation != listening_for || admin) && !ctx.drain.is_draining() {
            listen::sync(&ctx, &config);
            listening_for = generation;
        }
        let now = Instant::now();
        guard::count_overload_closes(&ctx, ctx.parking.expire(now));
        guard::close_idle_under_pressure(&ctx, now);
        let exits = ctx.requests.exits.snapshot();
        ctx.shared.counters.publish(ctx.id, exits);
        ctx.requests.flush(ctx.shared.access_log.get());
        observe::publish(&ctx, false);
        admin::publish_servers(&ctx);
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(20) {
            ctx.sweep_pool();
            // Objects evicted or purged in their zone are freed once no
            // worker refers to them.
            ctx.cache_refs.borrow_mut().sweep();
            let trimmed = ctx.buffers.borrow_mut().trim();
            if let Some(release) = release_memory {
                release(false);
            }
            // Many buffers trimmed mean a burst is over. The lazy collect
            // hands back only what was freed a while ago, so without a
            // full one the rest stays resident for up to two more seconds.
            // A full one costs up to about 0.6 ms: at most one per
            // FULL_RELEASE_EVERY, so a load that rises and falls does not
            // pay it every second.
            release_all_next_tick = trimmed >= FULL_RELEASE_TRIMMED
                && last_full_release.is_none_or(|at| at.elapsed() >= FULL_RELEASE_EVERY);
        } else if std::mem::take(&mut release_all_next_tick)
            && let Some(release) = release_memory
        {
            release(true);
            last_full_release = Some(Instant::now());
        }
    }
}

/// Runtimes for unit tests that run the same checks on both drivers.
#[cfg(test)]
pub(crate) mod test_runtime {
    pub fn epoll() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        super::epoll_runtime().expect("epoll runtime")
    }

    /// None where the kernel or a sandbox refuses io_uring (the test is
    /// then skipped).
    pub fn io_uring() -> Option<monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>> {
        super::uring_runtime(None).ok()
    }
}
