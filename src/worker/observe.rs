//! The admin side of observability: gathers every worker's published
//! metrics and renders them (Prometheus text, the dashboard's JSON, the
//! per-server figures of `/upstreams`).

use super::ctx::WorkerCtx;

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

/// `GET /metrics`.
pub(crate) async fn prometheus(_ctx: &WorkerCtx) -> String {
    String::new()
}

/// `GET /stats`: the dashboard's JSON.
pub(crate) async fn stats_json(_ctx: &WorkerCtx) -> String {
    "{}".to_string()
}

/// Per-server figures for `GET /upstreams`.
pub(crate) async fn server_stats(_ctx: &WorkerCtx) -> Vec<ServerStats> {
    Vec::new()
}
