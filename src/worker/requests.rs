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
use crate::error::Side;
use crate::observe::AccessSink;
use crate::observe::access::{self, Context};
use crate::observe::clock::LogClock;
use crate::observe::metrics::{RequestFacts, WorkerMetrics};
use crate::observe::writer::FLUSH_AT;
use crate::pipeline::{ExitCounts, Record};

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
    warnings: Cell<(Option<Instant>, u64)>,
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
            warnings: Cell::new((None, 0)),
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
        conn: &ConnFacts<'_>,
        sink: Option<&AccessSink>,
    ) {
        self.exits.add(record.exit);
        let route = record.route.and_then(|r| config.routes.routes.get(r));
        if let Some(chain) = record.route.and_then(|r| config.chains.get(r)) {
            chain.log(record);
        }
        let status = access::logged_status(record);
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
                duration: record.start.elapsed(),
                bytes_in: record.bytes_in,
                bytes_out: record.bytes_out,
                rejection,
            },
        );
        let listener = config.listeners.get(record.listener);
        if let (Some(log), Some(sink)) = (&config.access_log, sink)
            && listener.is_none_or(|l| l.access_log)
            && route.is_none_or(|r| r.access_log)
        {
            let cx = Context {
                now: SystemTime::now(),
                route: route.map(|r| r.name.as_str()),
                listener: listener.map_or("", |l| l.name.as_str()),
                proto: conn.proto,
                upstream: record.upstream.map(|u| u.addr),
                tls: conn.tls,
                sni: conn.sni,
            };
            let mut lines = self.lines.borrow_mut();
            let Lines { buf, clock } = &mut *lines;
            access::write_line(buf, clock, log.format, record, &cx);
            if buf.len() >= FLUSH_AT {
                self.metrics.borrow_mut().log_lines_dropped += sink.hand_over(buf);
            }
        }
        if record.cause.is_some_and(|c| c.side != Side::Downstream) {
            self.warn_upstream(record, config);
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
    /// `WARN_EVERY`, saying how many were left out before it.
    fn warn_upstream(&self, record: &Record, config: &Config) {
        let (last, skipped) = self.warnings.get();
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
            self.warnings.set((last, skipped + 1));
            return;
        }
        self.warnings.set((Some(now), 0));
        let upstream = record.upstream;
        let group = upstream
            .and_then(|u| config.upstreams.get(u.group as usize))
            .map_or("-", |g| g.name.as_str());
        let server = upstream.map(|u| u.addr);
        let route = record
            .route
            .and_then(|r| config.routes.routes.get(r))
            .map_or("-", |r| r.name.as_str());
        let cause = record.cause.map_or("-", |c| c.kind.name());
        tracing::warn!(
            worker = self.worker,
            group,
            server = %DisplayAddr(server),
            route,
            cause,
            status = record.status,
            retries = record.retries,
            similar_before = skipped,
            "upstream request failed"
        );
    }
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
