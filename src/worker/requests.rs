//! The worker's side of the logging phase, once per request: numbers
//! requests (for their ids), counts how they ended and what they did
//! (metrics), writes the access log line into the worker's buffer, warns
//! about upstream failures, and runs the route's logging filters. All
//! single-threaded; others see the counts only through what the worker
//! publishes on its tick.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::error::{ProxyError, Side};
use crate::observe::AccessSink;
use crate::observe::access::{self, Context};
use crate::observe::clock::LogClock;
use crate::observe::metrics::{AttemptOutcome, RequestFacts, WorkerMetrics};
use crate::observe::writer::FLUSH_AT;
use crate::pipeline::{ExitCounts, Record};
use crate::router::Action;

/// At most one upstream-failure warning per this long per worker; the
/// others are counted and said with the next one.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// What the connection adds to the record for the log line.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ConnFacts<'a> {
    pub proto: Option<&'static str>,
    pub tls: Option<&'static str>,
    pub sni: Option<&'a [u8]>,
}

pub(crate) struct Requests {
    /// The worker's id, in its warnings.
    worker: usize,
    /// Random per worker start, so ids differ across workers and restarts.
    seed: u64,
    seq: Cell<u64>,
    /// When the worker started: a record's start before its request.
    epoch: Instant,
    pub exits: ExitCounts,
    pub metrics: RefCell<WorkerMetrics>,
    lines: RefCell<Lines>,
    /// Per server (or group): when a failure was last said, and how many
    /// since then were not.
    warnings: RefCell<Vec<WarnSlot>>,
}

/// Access log lines not yet handed to the writer.
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
    clock: LogClock,
}

impl Requests {
    pub fn new(worker: usize, seed: u64) -> Requests {
        Requests {
            worker,
            seed,
            seq: Cell::new(0),
            epoch: Instant::now(),
            exits: ExitCounts::default(),
            metrics: RefCell::default(),
            lines: RefCell::default(),
            warnings: RefCell::default(),
        }
    }

    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The next request's number on this worker.
    pub fn next_seq(&self) -> u64 {
        let n = self.seq.get().wrapping_add(1);
        self.seq.set(n);
        n
    }

    /// The logging phase: exactly once per request, whatever its exit.
    pub fn log(
        &self,
        record: &Record,
        config: &Config,
        (conn, ended): (&ConnFacts<'_>, Instant),
        sink: Option<&AccessSink>,
    ) {
        self.exits.add(record.exit);
        let route = record.route.and_then(|r| config.routes.routes.get(r));
        if let Some(chain) = record.route.and_then(|r| config.chains.get(r)) {
            chain.log(record);
        }
        let status = access::logged_status(record);
        let duration = ended.saturating_duration_since(record.start);
        let rejection = record
            .cause
            .map(|c| c.kind)
            .filter(|_| record.status >= 400);
        self.metrics.borrow_mut().request(
            config,
            &RequestFacts {
                listener: record.listener,
                route: record.route,
                status,
                duration,
                bytes_in: record.bytes_in,
                bytes_out: record.bytes_out,
                rejection,
                cache: record.cache,
            },
        );
        let listener = config.listeners.get(record.listener);
        if let (Some(log), Some(sink)) = (&config.access_log, sink)
            && listener.is_none_or(|l| l.access_log)
            && route.is_none_or(|r| r.access_log)
        {
            let cx = Context {
                now: SystemTime::now(),
                duration,
                route: route.map(|r| r.name.as_str()),
                listener: listener.map_or("", |l| l.name.as_str()),
                proto: conn.proto,
                upstream: record.upstream.map(|u| u.addr),
                tls: conn.tls,
                sni: conn.sni,
                rate_limit_logged: record
                    .rate_limit_logged
                    .and_then(|i| config.rate_limits.get(i as usize))
                    .map(|l| l.name.as_str()),
                filter: record
                    .filter
                    .and_then(|(i, _)| config.filters.rules.get(i as usize))
                    .map(|r| &*r.id),
            };
            let mut lines = self.lines.borrow_mut();
            let Lines { buf, clock } = &mut *lines;
            access::write_line(buf, clock, log.format, record, &cx);
            if buf.len() >= FLUSH_AT {
                self.metrics.borrow_mut().log_lines_dropped += sink.hand_over(buf);
            }
        }
        // Failed attempts were said as they happened; a request that
        // found no server to try is said here.
        if record.upstream.is_none()
            && let Some(cause) = record.cause.filter(|c| c.side != Side::Downstream)
            && let Some(group) = route.and_then(|r| match r.action {
                Action::Proxy { upstream, .. } => Some(upstream),
                _ => None,
            })
        {
            let route = route.map_or("-", |r| r.name.as_str());
            self.warn(
                config,
                Failure::NoServer { group },
                route,
                cause.kind.name(),
            );
        }
    }

    /// Counts a failed upstream attempt and says it in the process log
    /// (`warn`: unless the server is not at fault, e.g. a pooled
    /// connection it had closed).
    pub fn attempt_failed(
        &self,
        config: &Config,
        (group, server): (usize, usize),
        route: usize,
        (error, outcome): (&ProxyError, AttemptOutcome),
        warn: bool,
    ) {
        self.metrics
            .borrow_mut()
            .attempt(config, (group, server), outcome, None);
        if warn && outcome != AttemptOutcome::RetryStatus {
            let route = config
                .routes
                .routes
                .get(route)
                .map_or("-", |r| r.name.as_str());
            let cause = AttemptOutcome::NAMES[outcome as usize];
            let failure = Failure::Attempt {
                group,
                server,
                error: error.kind.name(),
            };
            self.warn(config, failure, route, cause);
        }
    }

    /// Hands buffered access log lines to the writer (on the tick, so a
    /// line is written within a tick of its request).
    pub fn flush(&self, sink: Option<&AccessSink>) {
        let mut lines = self.lines.borrow_mut();
        if let Some(sink) = sink
            && !lines.buf.is_empty()
        {
            self.metrics.borrow_mut().log_lines_dropped += sink.hand_over(&mut lines.buf);
        }
    }

    /// An upstream failure, in the process log: at most one line per
    /// `WARN_EVERY` per server (per group when no server was found),
    /// saying how many were left out before it.
    fn warn(&self, config: &Config, failure: Failure<'_>, route: &str, cause: &str) {
        let key = match failure {
            Failure::Attempt { group, server, .. } => {
                self.metrics.borrow_mut().server_id(config, group, server)
            }
            Failure::NoServer { group } => self.metrics.borrow_mut().group_id(config, group),
        };
        let Some(key) = key else { return };
        let key = (matches!(failure, Failure::NoServer { .. }), key);
        let now = Instant::now();
        let mut limits = self.warnings.borrow_mut();
        let slot = match limits.iter_mut().position(|(k, _, _)| *k == key) {
            Some(i) => &mut limits[i],
            None => {
                limits.push((key, None, 0));
                let last = limits.len() - 1;
                &mut limits[last]
            }
        };
        if slot.1.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
            slot.2 += 1;
            return;
        }
        let skipped = std::mem::take(&mut slot.2);
        slot.1 = Some(now);
        drop(limits);
        match failure {
            Failure::Attempt {
                group,
                server,
                error,
            } => {
                let g = config.upstreams.get(group);
                tracing::warn!(
                    worker = self.worker,
                    group = g.map_or("-", |g| g.name.as_str()),
                    server = %DisplayAddr(g.and_then(|g| g.servers.get(server)).map(|s| s.addr)),
                    route,
                    cause,
                    error,
                    similar_before = skipped,
                    "upstream attempt failed"
                );
            }
            Failure::NoServer { group } => {
                let g = config.upstreams.get(group);
                tracing::warn!(
                    worker = self.worker,
                    group = g.map_or("-", |g| g.name.as_str()),
                    route,
                    cause,
                    similar_before = skipped,
                    "no upstream server available"
                );
            }
        }
    }
}

/// A server's (false, id) or group's (true, id) last warning and the
/// failures not said since.
type WarnSlot = ((bool, usize), Option<Instant>, u64);

/// What failed, for the process log.
#[derive(Debug, Clone, Copy)]
enum Failure<'a> {
    Attempt {
        group: usize,
        server: usize,
        error: &'a str,
    },
    NoServer {
        group: usize,
    },
}

struct DisplayAddr(Option<SocketAddr>);

impl std::fmt::Display for DisplayAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("-"),
        }
    }
}
