//! The admin side of observability: asks every worker to publish its
//! metrics (on its next tick, off the request path), waits for them, and
//! renders the sum (Prometheus text, the dashboard's JSON, the
//! per-server figures of `/upstreams`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::ctx::WorkerCtx;
use crate::observe::metrics::WorkerMetrics;
use crate::observe::render::{self, Process, Totals, UpstreamTotals};

/// How long a scrape waits for the workers' ticks (a worker stuck longer
/// is summed as it last published).
const GATHER_WAIT: Duration = Duration::from_millis(500);
const GATHER_POLL: Duration = Duration::from_millis(2);

/// One upstream server's figures, summed over the workers.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerStats {
    pub group: String,
    /// The server's address as configured (`ip:port`).
    pub server: String,
    /// Attempts sent to it.
    pub requests: u64,
    /// Attempts that failed (connect, reset, timeout, bad response).
    pub errors: u64,
    /// Sum and count of its response times, in seconds.
    pub latency_sum: f64,
    pub latency_count: u64,
}

/// Copies this worker's metrics for the admin side when a scrape asked
/// for them (`force`: in any case, as the worker exits).
pub(crate) fn publish(ctx: &WorkerCtx, force: bool) {
    let shared = &ctx.shared;
    let wanted = shared.scrape.load(Ordering::Acquire);
    let Some(published) = shared.published.get(ctx.id) else {
        return;
    };
    if !force && published.load(Ordering::Acquire) == wanted {
        return;
    }
    let metrics = ctx.requests.metrics.borrow();
    if let Some(slot) = shared.metrics.get(ctx.id) {
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.clone_from(&metrics);
        let parked = ctx.parking.len() as u64;
        slot.idle_connections = parked;
        // The admin listener's connections (this scrape's among them) are
        // not the proxy's.
        let open = ctx.active.get().saturating_sub(ctx.admin_open.get()) as u64;
        slot.active_connections = open.saturating_sub(parked);
    }
    published.store(wanted, Ordering::Release);
}

/// Every worker's counts as of now: each publishes on its next tick.
async fn gather(ctx: &WorkerCtx) -> Totals {
    let shared = &ctx.shared;
    let wanted = shared.scrape.fetch_add(1, Ordering::AcqRel) + 1;
    let deadline = Instant::now() + GATHER_WAIT;
    while Instant::now() < deadline
        && shared
            .published
            .iter()
            .any(|p| p.load(Ordering::Acquire) < wanted)
    {
        monoio::time::sleep(GATHER_POLL).await;
    }
    let copies: Vec<WorkerMetrics> = shared
        .metrics
        .iter()
        .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .collect();
    render::merge(&copies)
}

fn process(ctx: &WorkerCtx, generation: u64) -> Process {
    let shared = &ctx.shared;
    Process {
        generation,
        reloads_ok: shared.reloads_ok.load(Ordering::Relaxed),
        reloads_failed: shared.reloads_failed.load(Ordering::Relaxed),
        log_write_failures: shared.access_log.get().map_or(0, |s| s.write_failures()),
        workers: shared.workers,
        uptime_s: shared.started.elapsed().as_secs_f64(),
        time_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    }
}

/// `GET /metrics`.
pub(crate) async fn prometheus(ctx: &WorkerCtx) -> String {
    let totals = gather(ctx).await;
    let (generation, config) = ctx.snapshot();
    render::prometheus(&totals, &config, &process(ctx, generation))
}

/// `GET /stats`: the dashboard's JSON.
pub(crate) async fn stats_json(ctx: &WorkerCtx) -> String {
    let totals = gather(ctx).await;
    let (generation, config) = ctx.snapshot();
    render::stats_json(&totals, &config, &process(ctx, generation))
}

/// Per-server figures for `GET /upstreams`.
pub(crate) async fn server_stats(ctx: &WorkerCtx) -> Vec<ServerStats> {
    let totals = gather(ctx).await;
    totals
        .servers
        .iter()
        .map(|((group, server), t): (_, &UpstreamTotals)| ServerStats {
            group: group.clone(),
            server: server.clone(),
            requests: t.requests(),
            errors: t.errors(),
            latency_sum: t.latency.sum_ns as f64 / 1e9,
            latency_count: t.latency.count(),
        })
        .collect()
}
