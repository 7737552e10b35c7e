//! One worker's side of the rate limits: its own key tables (keys steered
//! to it), its leases on the shared buckets, and the last refusal for the
//! 429's headers. Kept across reloads per limit while the limit's shared
//! state is carried over; allocated when a snapshot is first seen, never
//! per request.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::gcra::Wait;
use super::key::{KeyInput, hash};
use super::lease::Leases;
use super::table::KeyTable;
use super::{LimitState, Mode, OnStoreError, RateLimit};

/// Leases a worker keeps per limit at most.
const MAX_LEASES: usize = 1024;

/// A request refused by a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    /// The limit's position in the snapshot's `rate_limits`.
    pub limit: usize,
    /// Until one request would be let through (ns).
    pub wait_ns: u64,
}

struct WorkerLimit {
    state: Arc<LimitState>,
    local: KeyTable,
    leases: Leases,
}

#[derive(Default)]
pub struct Limiter {
    generation: u64,
    limits: Vec<WorkerLimit>,
    /// This request's refusals (limit position, its mode), for the
    /// metrics; the caller clears it per request (its room is kept).
    pub events: Vec<(usize, Mode)>,
    /// The last refusal (for the 429's headers).
    pub last: Option<Denial>,
}

/// Nanoseconds on the process's monotonic clock (every worker and the
/// store thread read the same one), never 0.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    // Starts at one second, so a bucket's 0 ("never used") is full.
    1_000_000_000 + epoch.elapsed().as_nanos() as u64
}

impl Limiter {
    /// Checks the request against `which` of `limits` (snapshot
    /// `generation`), in order: the first enforcing limit it is over
    /// refuses it; limits in log mode only note it in `events`.
    pub fn check(
        &mut self,
        (generation, limits): (u64, &[RateLimit]),
        which: &[usize],
        input: &KeyInput<'_>,
    ) -> Result<(), Denial> {
        if generation != self.generation || self.limits.len() != limits.len() {
            self.sync(generation, limits);
        }
        let now = now_ns();
        for &i in which {
            let (Some(limit), Some(w)) = (limits.get(i), self.limits.get_mut(i)) else {
                continue;
            };
            let Err(Wait(wait_ns)) = w.take(limit, input, now) else {
                continue;
            };
            self.events.push((i, limit.mode));
            if limit.mode == Mode::Enforce {
                let denial = Denial { limit: i, wait_ns };
                self.last = Some(denial);
                return Err(denial);
            }
        }
        Ok(())
    }

    /// Tables for a new snapshot: those of a limit carried over stay.
    #[cold]
    fn sync(&mut self, generation: u64, limits: &[RateLimit]) {
        let mut old = std::mem::take(&mut self.limits);
        self.limits = limits
            .iter()
            .map(
                |l| match old.iter().position(|w| Arc::ptr_eq(&w.state, &l.state)) {
                    Some(k) => old.swap_remove(k),
                    None => WorkerLimit {
                        state: l.state.clone(),
                        local: KeyTable::new(if l.key.on_client() { l.max_keys } else { 1 }),
                        leases: Leases::new(l.max_keys.min(MAX_LEASES)),
                    },
                },
            )
            .collect();
        self.generation = generation;
    }
}

impl WorkerLimit {
    fn take(&mut self, limit: &RateLimit, input: &KeyInput<'_>, now: u64) -> Result<(), Wait> {
        let g = &limit.gcra;
        if let Some(store) = &self.state.store {
            let Some(key) = hash(&limit.key, input, true) else {
                return Ok(());
            };
            return match store.take(key, now) {
                Some(result) => result,
                None => match limit.store.as_ref().map(|s| s.on_error) {
                    Some(OnStoreError::Deny) => Err(Wait(1_000_000_000)),
                    _ => Ok(()),
                },
            };
        }
        let Some(key) = hash(&limit.key, input, false) else {
            return Ok(());
        };
        if limit.key.on_client() && input.steered {
            let slot = self.local.slot(key, now);
            let (tat, _) = g.take(*slot.tat, now, 1)?;
            *slot.tat = tat;
            return Ok(());
        }
        let batch = self.state.batch.load(Ordering::Relaxed);
        self.leases.take(&self.state.shared, g, (key, batch), now)
    }
}
