//! A server's shared health: whether active checks say it is up, (for
//! `max_conns`) how many requests and open tunnels all workers have on
//! it, what the admin API set for it (drain, maintenance, a weight), and
//! what each worker last published about it for `/upstreams`. Atomics in the config
//! snapshot, carried across reloads for the same server, so the health
//! thread and the admin write them and workers read them without locks.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

#[derive(Debug)]
pub struct ServerHealth {
    up: AtomicBool,
    /// Requests in flight over all workers, tunnels included (kept only
    /// with `max_conns`). Taken with a compare-and-swap below the cap, so
    /// workers racing for the last place cannot overshoot it.
    active: AtomicU32,
    /// An `AdminState`, set through the admin API.
    admin: AtomicU8,
    /// The admin API's weight; 0: the configured one.
    weight: AtomicU32,
    /// One entry per worker, written on its tick (made when the snapshot
    /// is published, so workers never allocate for it).
    views: OnceLock<Box<[WorkerView]>>,
}

/// The operator's say over a server, as HAProxy's `set server ... state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    Ready,
    /// No new requests; those in flight finish.
    Drain,
    /// As `Drain`, and shown as down for maintenance.
    Maintenance,
}

impl AdminState {
    pub fn name(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maintenance => "maintenance",
        }
    }

    pub fn parse(s: &str) -> Option<AdminState> {
        match s {
            "ready" => Some(AdminState::Ready),
            "drain" => Some(AdminState::Drain),
            "maintenance" | "maint" => Some(AdminState::Maintenance),
            _ => None,
        }
    }

    fn from_u8(v: u8) -> AdminState {
        match v {
            1 => AdminState::Drain,
            2 => AdminState::Maintenance,
            _ => AdminState::Ready,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            AdminState::Ready => 0,
            AdminState::Drain => 1,
            AdminState::Maintenance => 2,
        }
    }
}

/// What one worker last published about a server.
#[derive(Debug, Default)]
struct WorkerView {
    in_flight: AtomicU32,
    ejected: AtomicBool,
}

/// The workers' views of a server, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerView {
    pub in_flight: u64,
    /// Workers that have it ejected (outlier detection is per worker).
    pub ejected_on: u32,
}

impl Default for ServerHealth {
    fn default() -> Self {
        ServerHealth {
            up: AtomicBool::new(true),
            active: AtomicU32::new(0),
            admin: AtomicU8::new(0),
            weight: AtomicU32::new(0),
            views: OnceLock::new(),
        }
    }
}

impl ServerHealth {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    pub fn admin_state(&self) -> AdminState {
        AdminState::from_u8(self.admin.load(Ordering::Relaxed))
    }

    pub fn set_admin_state(&self, state: AdminState) {
        self.admin.store(state.as_u8(), Ordering::Relaxed);
    }

    /// Requests (and tunnels) counted against `max_conns` right now.
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// Takes one of `max` places for a request; false when all are taken.
    /// `max` 0 means no limit: nothing is counted (and nothing written).
    ///
    /// One shared cache line written per request on a capped server (and
    /// once more by `release`): an exact cap over all workers needs one
    /// count that every worker sees. A read of the count followed by an
    /// add let workers racing for the last place each take it.
    pub fn try_acquire(&self, max: u32) -> bool {
        max == 0
            || self
                .active
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok()
    }

    /// Gives back a place taken by `try_acquire` with the same `max`.
    pub fn release(&self, max: u32) {
        if max > 0 {
            // Saturating: a count that wrapped would block the server.
            let _ = self
                .active
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
        }
    }

    /// The balancer may send it new requests (as far as the admin says).
    pub fn admin_ready(&self) -> bool {
        self.admin.load(Ordering::Relaxed) == 0
    }

    /// The admin API's weight, if it set one.
    pub fn weight_override(&self) -> Option<u32> {
        match self.weight.load(Ordering::Relaxed) {
            0 => None,
            w => Some(w),
        }
    }

    /// Sets (Some) or clears (None) the admin's weight; 0 is not a weight.
    pub fn set_weight_override(&self, weight: Option<u32>) {
        self.weight.store(weight.unwrap_or(0), Ordering::Relaxed);
    }

    /// Back to what the config says: ready, its own weight.
    pub fn clear_admin(&self) {
        self.set_admin_state(AdminState::Ready);
        self.set_weight_override(None);
    }

    /// Makes room for `workers` workers' views (once; before publishing).
    pub fn prepare_views(&self, workers: usize) {
        self.views
            .get_or_init(|| (0..workers).map(|_| WorkerView::default()).collect());
    }

    /// Worker `worker` publishes what it knows (ignored without room).
    pub fn publish_view(&self, worker: usize, in_flight: u32, ejected: bool) {
        if let Some(v) = self.views.get().and_then(|views| views.get(worker)) {
            v.in_flight.store(in_flight, Ordering::Relaxed);
            v.ejected.store(ejected, Ordering::Relaxed);
        }
    }

    /// The workers' last published views, summed.
    pub fn view(&self) -> ServerView {
        let mut sum = ServerView::default();
        for v in self.views.get().map_or(&[][..], |v| &v[..]) {
            sum.in_flight += u64::from(v.in_flight.load(Ordering::Relaxed));
            sum.ejected_on += u32::from(v.ejected.load(Ordering::Relaxed));
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_state_round_trips_and_clears() {
        let h = ServerHealth::default();
        assert!(h.admin_ready());
        for s in [
            AdminState::Drain,
            AdminState::Maintenance,
            AdminState::Ready,
        ] {
            h.set_admin_state(s);
            assert_eq!(h.admin_state(), s);
            assert_eq!(AdminState::parse(s.name()), Some(s));
        }
        h.set_admin_state(AdminState::Drain);
        h.set_weight_override(Some(7));
        assert_eq!(h.weight_override(), Some(7));
        h.clear_admin();
        assert!(h.admin_ready());
        assert_eq!(h.weight_override(), None);
    }

    #[test]
    fn places_are_taken_only_below_the_cap() {
        let h = ServerHealth::default();
        assert!(h.try_acquire(0), "no limit");
        assert_eq!(h.active(), 0, "nothing counted without a limit");
        assert!(h.try_acquire(2) && h.try_acquire(2));
        assert!(!h.try_acquire(2));
        h.release(2);
        assert!(h.try_acquire(2));
        h.release(2);
        h.release(2);
        h.release(2);
        assert_eq!(h.active(), 0, "release never wraps");
    }

    #[test]
    fn racing_threads_never_overshoot_the_cap() {
        let h = std::sync::Arc::new(ServerHealth::default());
        let max_seen = std::sync::Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (h, max_seen) = (h.clone(), max_seen.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        if h.try_acquire(3) {
                            max_seen.fetch_max(h.active(), Ordering::Relaxed);
                            h.release(3);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(max_seen.load(Ordering::Relaxed) <= 3);
        assert_eq!(h.active(), 0);
    }

    #[test]
    fn views_sum_over_workers() {
        let h = ServerHealth::default();
        h.publish_view(0, 3, false);
        assert_eq!(h.view(), ServerView::default());
        h.prepare_views(2);
        h.publish_view(0, 3, false);
        h.publish_view(1, 4, true);
        assert_eq!(
            h.view(),
            ServerView {
                in_flight: 7,
                ejected_on: 1
            }
        );
        // A worker without room is ignored.
        h.prepare_views(6);
        h.publish_view(5, 9, true);
        assert_eq!(h.view().in_flight, 7);
    }
}
