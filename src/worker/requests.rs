//! The worker's side of the logging phase: numbers each request (for
//! `$request_id`), counts how requests ended, and runs the route's
//! logging filters. Single-threaded cells; others see the counts only
//! through what the worker publishes off the request path.

use std::cell::Cell;
use std::time::Instant;

use crate::pipeline::{Chain, ExitCounts, Record};

pub(crate) struct Requests {
    /// Random per worker start, so ids differ across workers and restarts.
    seed: u64,
    seq: Cell<u64>,
    /// When the worker started: a record's start before its request.
    epoch: Instant,
    pub exits: ExitCounts,
}

impl Requests {
    pub fn new(seed: u64) -> Requests {
        Requests {
            seed,
            seq: Cell::new(0),
            epoch: Instant::now(),
            exits: ExitCounts::default(),
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
    pub fn log(&self, record: &Record, chain: Option<&Chain>) {
        self.exits.add(record.exit);
        if let Some(chain) = chain {
            chain.log(record);
        }
    }
}
