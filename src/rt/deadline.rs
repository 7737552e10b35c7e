//! Timeouts of single reads, writes and waits, and the short sleeps of
//! connections between requests: one slab of deadlines per worker thread,
//! watched by one monoio timer set to the earliest of them, instead of a
//! monoio timer per operation.
//!
//! Why: monoio's `Sleep` is 640 bytes (cache-padded), costs a timer-wheel
//! insert and removal per operation, and every future that holds one is
//! copied around at that size. With three timed operations per proxied
//! request that came to about 1,700 of 20,000 user-space instructions
//! (callgrind). An entry here is a deadline and a waker; the wheel is
//! touched only when the earliest deadline changes or passes, and a
//! deadline passes rarely: most operations finish long before.
//!
//! Precision: a deadline never fires early, and fires up to 10 ms late
//! (the least gap between two scans of the slab; longer when very many
//! operations are pending, see `rescan_gap`). The watcher is
//! started by `within` itself the first time a thread needs it, so bare
//! runtimes (unit tests) get it too. monoio does not drop the tasks still
//! waiting when a runtime is dropped, so whoever builds a runtime calls
//! `new_runtime` first: the thread's deadlines then start over, and the
//! old runtime's watcher (never to run again) is forgotten. The runtime
//! builders in `worker` do this, and the clippy config refuses
//! `RuntimeBuilder::build` anywhere else.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;
use slab::Slab;

/// The operation did not finish in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

/// Runs `future` for at most `timeout`; `Err(Elapsed)` when it did not
/// finish in time. Dropping the result drops `future` (for an io_uring
/// operation, that cancels it), as with `monoio::time::timeout`.
pub(crate) fn within<F: Future>(timeout: Duration, future: F) -> Within<F> {
    Within {
        future,
        limit: Limit::After(timeout),
        key: None,
        _thread: PhantomData,
    }
}

/// Resolves once `at` has passed.
pub(crate) async fn sleep_until(at: Instant) {
    let never = std::future::pending::<()>();
    let _ = Within {
        future: never,
        limit: Limit::At(at),
        key: None,
        _thread: PhantomData,
    }
    .await;
}

#[derive(Clone, Copy)]
enum Limit {
    /// From the first poll.
    After(Duration),
    At(Instant),
}

/// Starts the thread's deadlines over for a runtime about to be built.
pub(crate) fn new_runtime() {
    DEADLINES.with(|d| {
        d.runtime.set(d.runtime.get().wrapping_add(1));
        // The old runtime's tasks never run again: their wakers are
        // forgotten, not dropped (a drop could free such a task, and its
        // futures' `Drop` would run now, on this thread's state).
        std::mem::forget(std::mem::take(&mut *d.entries.borrow_mut()));
        std::mem::forget(d.watcher.borrow_mut().take());
        d.armed.set(None);
        d.rearm.set(false);
        d.watching.set(false);
    });
}

pin_project! {
    /// `future` is pinned with the whole; `limit` and `key` are plain data.
    #[must_use = "futures do nothing unless polled"]
    pub(crate) struct Within<F> {
        #[pin]
        future: F,
        limit: Limit,
        // The slab entry, once the operation had to wait, and the runtime
        // it belongs to (see `new_runtime`).
        key: Option<(usize, u64)>,
        // The key is into this thread's slab: not `Send`.
        _thread: PhantomData<*const ()>,
    }

    impl<F> PinnedDrop for Within<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(key) = *this.project().key {
                // `try_with`: a thread's futures may outlive its locals at exit.
                let _ = DEADLINES.try_with(|d| d.remove(key));
            }
        }
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.future.poll(cx) {
            if let Some(key) = this.key.take() {
                DEADLINES.with(|d| d.remove(key));
            }
            return Poll::Ready(Ok(out));
        }
        match *this.key {
            None => {
                let deadline = match *this.limit {
                    Limit::At(at) => at,
                    Limit::After(timeout) => {
                        let now = Instant::now();
                        // Durations from the config are at most a year;
                        // saturate anyway rather than panic.
                        now.checked_add(timeout).unwrap_or(now + FAR)
                    }
                };
                *this.key = Some(DEADLINES.with(|d| d.insert(deadline, cx.waker())));
                Poll::Pending
            }
            Some(key) => {
                if DEADLINES.with(|d| d.passed(key, cx.waker())) {
                    *this.key = None;
                    DEADLINES.with(|d| d.remove(key));
                    return Poll::Ready(Err(Elapsed));
                }
                Poll::Pending
            }
        }
    }
}

thread_local! {
    static DEADLINES: Deadlines = Deadlines::default();
}

/// A deadline past anything the config allows.
const FAR: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

#[derive(Default)]
struct Deadlines {
    /// Counts `new_runtime` calls: keys of an older runtime are void.
    runtime: Cell<u64>,
    entries: RefCell<Slab<Timed>>,
    /// What the watcher's timer is set to: no pending deadline is earlier
    /// (after removals it may be earlier than any, which costs one scan).
    armed: Cell<Option<Instant>>,
    /// Set when a deadline earlier than `armed` arrives.
    rearm: Cell<bool>,
    watcher: RefCell<Option<Waker>>,
    watching: Cell<bool>,
    /// Scans so far (tests check the watcher does not spin).
    scans: Cell<u64>,
}

impl Drop for Deadlines {
    /// At thread exit the wakers are forgotten, as `new_runtime` does: a
    /// dropped waker could free a task monoio leaked with its runtime and
    /// run its futures' `Drop` while this thread's locals are going away.
    fn drop(&mut self) {
        std::mem::forget(std::mem::take(self.entries.get_mut()));
        std::mem::forget(self.watcher.get_mut().take());
    }
}

/// A deadline and the waker of the one waiting on it.
struct Timed {
    deadline: Instant,
    /// Taken when the deadline passes.
    waker: Option<Waker>,
    passed: bool,
}

impl Timed {
    fn new(deadline: Instant, waker: &Waker) -> Timed {
        Timed {
            deadline,
            waker: Some(waker.clone()),
            passed: false,
        }
    }

    /// Makes `waker` the one to wake. Returns the one it replaces, for the
    /// caller to drop once its borrow of the slab has ended (dropping a
    /// waker can drop a task, whose futures may reach for the slab).
    fn rewake(&mut self, waker: &Waker) -> Option<Waker> {
        match &self.waker {
            Some(w) if w.will_wake(waker) => None,
            _ => self.waker.replace(waker.clone()),
        }
    }
}

impl Deadlines {
    fn insert(&self, deadline: Instant, waker: &Waker) -> (usize, u64) {
        let key = self
            .entries
            .borrow_mut()
            .insert(Timed::new(deadline, waker));
        if !self.watching.get() {
            self.watching.set(true);
            monoio::spawn(watch());
        }
        if self.armed.get().is_none_or(|armed| deadline < armed) {
            self.armed.set(Some(deadline));
            self.rearm.set(true);
            if let Some(w) = self.watcher.borrow().as_ref() {
                w.wake_by_ref();
            }
        }
        (key, self.runtime.get())
    }

    /// Whether the entry's deadline has passed; otherwise keeps `waker` as
    /// the one to wake.
    fn passed(&self, (key, runtime): (usize, u64), waker: &Waker) -> bool {
        // A key from an older runtime (see `new_runtime`) has no entry
        // and no watcher: time it out rather than let it wait forever.
        if runtime != self.runtime.get() {
            return true;
        }
        let mut entries = self.entries.borrow_mut();
        let Some(entry) = entries.get_mut(key) else {
            return true;
        };
        if entry.passed {
            return true;
        }
        let old = entry.rewake(waker);
        drop(entries);
        drop(old);
        false
    }

    fn remove(&self, (key, runtime): (usize, u64)) {
        if runtime != self.runtime.get() {
            return;
        }
        let removed = self.entries.borrow_mut().try_remove(key);
        // Dropped after the borrow ends: dropping a waker can drop a task.
        drop(removed);
    }

    /// Marks and wakes every entry due at `now`; returns the earliest
    /// deadline left.
    fn fire(&self, now: Instant) -> Option<Instant> {
        self.scans.set(self.scans.get() + 1);
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (_, entry) in self.entries.borrow_mut().iter_mut() {
            if entry.passed {
                continue;
            }
            if entry.deadline <= now {
                entry.passed = true;
                due.extend(entry.waker.take());
            } else {
                next = Some(next.map_or(entry.deadline, |n| n.min(entry.deadline)));
            }
        }
        due.into_iter().for_each(Waker::wake);
        next
    }
}

/// Far enough to mean "nothing pending", near enough for the wheel.
const IDLE_WAIT: Duration = Duration::from_secs(3600);
/// Least time between two scans of the slab.
const MIN_RESCAN: Duration = Duration::from_millis(10);

/// Time between two scans with `pending` entries: at least `MIN_RESCAN`,
/// and 1 µs per entry, so deadlines passing one after another (thousands
/// of slow clients timing out) are fired in batches and the scans visit
/// at most about a million entries a second (50,000 pending: a scan every
/// 50 ms at most, each that late at worst).
fn rescan_gap(pending: usize) -> Duration {
    MIN_RESCAN.max(Duration::from_micros(pending as u64))
}

/// The watcher: sleeps until the earliest deadline, fires what is due,
/// and starts over. An earlier deadline arriving meanwhile only moves
/// the timer: `insert` has already made it the earliest.
async fn watch() {
    struct Watching(u64);
    impl Drop for Watching {
        fn drop(&mut self) {
            let _ = DEADLINES.try_with(|d| {
                if d.runtime.get() == self.0 {
                    d.watching.set(false);
                    d.armed.set(None);
                    let watcher = d.watcher.borrow_mut().take();
                    drop(watcher);
                }
            });
        }
    }
    let _watching = Watching(DEADLINES.with(|d| d.runtime.get()));
    let sleep = monoio::time::sleep(IDLE_WAIT);
    let mut sleep = std::pin::pin!(sleep);
    loop {
        let now = Instant::now();
        let (next, pending) = DEADLINES.with(|d| {
            d.rearm.set(false);
            let next = d.fire(now);
            d.armed.set(next);
            (next, d.entries.borrow().len())
        });
        let earliest_scan = now + rescan_gap(pending);
        let mut wake_at = next.map_or(now + IDLE_WAIT, |n| n.max(earliest_scan));
        loop {
            sleep
                .as_mut()
                .reset(monoio::time::Instant::from_std(wake_at));
            let woken = WakeOrRearm {
                sleep: sleep.as_mut(),
            }
            .await;
            if woken == Woken::Elapsed {
                break;
            }
            let armed = DEADLINES.with(|d| {
                d.rearm.set(false);
                d.armed.get()
            });
            if let Some(armed) = armed {
                wake_at = wake_at.min(armed.max(earliest_scan));
            }
        }
    }
}

#[derive(PartialEq)]
enum Woken {
    Elapsed,
    Rearm,
}

/// Ready when the timer passes or an earlier deadline needs it moved.
struct WakeOrRearm<'a> {
    sleep: Pin<&'a mut monoio::time::Sleep>,
}

impl Future for WakeOrRearm<'_> {
    type Output = Woken;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Woken> {
        let rearm = DEADLINES.with(|d| {
            let mut watcher = d.watcher.borrow_mut();
            if !watcher.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *watcher = Some(cx.waker().clone());
            }
            d.rearm.get()
        });
        if rearm {
            return Poll::Ready(Woken::Rearm);
        }
        self.sleep.as_mut().poll(cx).map(|()| Woken::Elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::test_runtime;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    async fn pending_for(d: Duration) {
        monoio::time::sleep(d).await;
    }

    /// Deadlines of different lengths each fire on time: the 60 ms one,
    /// registered after a 200 ms and a 300 ms one, moves the watcher's
    /// timer. Operations that finish in time are not cut, and nothing is
    /// left in the slab.
    async fn fire_in_order_and_leave_nothing_behind() {
        let start = Instant::now();
        let cut_at = |timeout_ms: u64| {
            monoio::spawn(async move {
                let r = within(
                    Duration::from_millis(timeout_ms),
                    pending_for(Duration::from_secs(5)),
                )
                .await;
                (r.is_err(), start.elapsed())
            })
        };
        let in_time = monoio::spawn(within(
            Duration::from_millis(200),
            pending_for(Duration::from_millis(20)),
        ));
        let slow = cut_at(300);
        // Let the watcher set its timer for 200 ms first.
        monoio::time::sleep(Duration::from_millis(5)).await;
        let quick = cut_at(60);
        assert_eq!(in_time.await, Ok(()));
        let (quick_cut, quick_at) = quick.await;
        let (slow_cut, slow_at) = slow.await;
        assert!(quick_cut && slow_cut);
        assert!(
            // Not at 200 ms, when the first deadline registered was due.
            quick_at >= Duration::from_millis(60) && quick_at < Duration::from_millis(180),
            "{quick_at:?}"
        );
        assert!(
            slow_at >= Duration::from_millis(300) && slow_at < Duration::from_millis(600),
            "{slow_at:?}"
        );
        assert_eq!(DEADLINES.with(|d| d.entries.borrow().len()), 0);
        // About 300 ms with three deadlines: a handful of scans, not a spin.
        let scans = DEADLINES.with(|d| d.scans.get());
        assert!(scans <= 10, "{scans} scans");

        // A dropped operation takes its entry with it.
        let mut dropped = std::pin::pin!(within(
            Duration::from_secs(1),
            pending_for(Duration::from_secs(5))
        ));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(dropped.as_mut().poll(&mut cx).is_pending());
        assert_eq!(DEADLINES.with(|d| d.entries.borrow().len()), 1);
    }

    #[test]
    fn deadlines_on_io_uring() {
        if let Some(mut rt) = test_runtime::io_uring() {
            rt.block_on(fire_in_order_and_leave_nothing_behind());
            assert_eq!(DEADLINES.with(|d| d.entries.borrow().len()), 0);
        }
    }

    struct Gate(Rc<Cell<bool>>);

    impl Future for Gate {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            if self.0.get() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The deadline wakes the waker of the latest poll, and an operation
    /// that finishes after its deadline passed but before it was polled
    /// again still counts as finished.
    async fn latest_waker_and_late_completion() {
        let open = Rc::new(Cell::new(false));
        let mut op = std::pin::pin!(within(Duration::from_millis(20), Gate(open.clone())));
        let (first, second) = (Arc::new(Counting::default()), Arc::new(Counting::default()));
        let first_waker = Waker::from(first.clone());
        let second_waker = Waker::from(second.clone());
        assert!(
            op.as_mut()
                .poll(&mut Context::from_waker(&first_waker))
                .is_pending()
        );
        assert!(
            op.as_mut()
                .poll(&mut Context::from_waker(&second_waker))
                .is_pending()
        );
        monoio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(first.0.load(Ordering::Relaxed), 0);
        assert_eq!(second.0.load(Ordering::Relaxed), 1);
        open.set(true);
        let done = op.as_mut().poll(&mut Context::from_waker(&second_waker));
        assert_eq!(done, Poll::Ready(Ok(())));
        assert_eq!(DEADLINES.with(|d| d.entries.borrow().len()), 0);
    }

    /// `sleep_until` ends at its deadline, not before, and at once for
    /// one already past.
    async fn sleeps_end_on_time() {
        let start = Instant::now();
        sleep_until(start + Duration::from_millis(80)).await;
        let slept = start.elapsed();
        assert!(
            slept >= Duration::from_millis(80) && slept < Duration::from_millis(200),
            "{slept:?}"
        );
        let start = Instant::now();
        sleep_until(start - Duration::from_millis(1)).await;
        assert!(start.elapsed() < Duration::from_millis(100));
        assert_eq!(DEADLINES.with(|d| d.entries.borrow().len()), 0);
    }

    #[test]
    fn sleeps_end_on_time_on_epoll() {
        test_runtime::epoll().block_on(sleeps_end_on_time());
    }

    #[test]
    fn latest_waker_and_late_completion_on_epoll() {
        test_runtime::epoll().block_on(latest_waker_and_late_completion());
    }

    /// monoio leaks the watcher of a dropped runtime (it was waiting): a
    /// second runtime on the same thread must still get one.
    #[test]
    fn a_second_runtime_on_the_thread_gets_a_watcher() {
        let cut = || async {
            let op = within(
                Duration::from_millis(50),
                pending_for(Duration::from_secs(5)),
            );
            let guard = monoio::time::sleep(Duration::from_secs(2));
            monoio::select! {
                r = op => r.is_err(),
                _ = guard => false,
            }
        };
        let mut first = test_runtime::epoll();
        assert!(first.block_on(cut()));
        drop(first);
        let mut second = test_runtime::epoll();
        assert!(second.block_on(cut()), "no watcher in the second runtime");
    }

    #[test]
    fn deadlines_on_epoll() {
        let mut rt = test_runtime::epoll();
        rt.block_on(fire_in_order_and_leave_nothing_behind());
        assert_eq!(DEADLINES.with(|d| d.entries.borrow().len()), 0);
    }
}
