//! Per-worker counters published for the control plane: each worker owns
//! one cache-line-aligned slot and overwrites it on its tick, off the
//! request path; readers sum the slots. No request writes a shared line.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::pipeline::Exit;

const EXITS: usize = Exit::ALL.len();

/// One worker's published counts (aligned so two workers never share a
/// cache line).
#[repr(align(128))]
#[derive(Default)]
struct Slot {
    exits: [AtomicU64; EXITS],
}

/// Every worker's slot.
pub struct WorkerCounters {
    slots: Box<[Slot]>,
}

/// Requests ended per exit kind, summed over the workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitTotals(pub [u64; EXITS]);

impl ExitTotals {
    pub fn get(&self, exit: Exit) -> u64 {
        self.0[exit as usize]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

impl WorkerCounters {
    pub fn new(workers: usize) -> WorkerCounters {
        WorkerCounters {
            slots: (0..workers).map(|_| Slot::default()).collect(),
        }
    }

    /// A worker's current counts (only that worker calls this).
    pub fn publish(&self, worker: usize, exits: [u64; EXITS]) {
        if let Some(slot) = self.slots.get(worker) {
            for (cell, n) in slot.exits.iter().zip(exits) {
                cell.store(n, Ordering::Relaxed);
            }
        }
    }

    pub fn exits(&self) -> ExitTotals {
        let mut totals = [0; EXITS];
        for slot in self.slots.iter() {
            for (t, cell) in totals.iter_mut().zip(&slot.exits) {
                *t += cell.load(Ordering::Relaxed);
            }
        }
        ExitTotals(totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_workers() {
        let c = WorkerCounters::new(2);
        let mut a = [0; EXITS];
        a[Exit::Proxied as usize] = 3;
        c.publish(0, a);
        a[Exit::Timeout as usize] = 1;
        c.publish(1, a);
        c.publish(7, a); // no such worker: ignored
        let t = c.exits();
        assert_eq!(t.get(Exit::Proxied), 6);
        assert_eq!(t.get(Exit::Timeout), 1);
        assert_eq!(t.total(), 7);
    }
}
