//! Timeouts of single reads, writes and waits: one slab of deadlines per
//! worker thread, watched by one monoio timer set to the earliest of them,
//! instead of a monoio timer per operation.
//!
//! Why: monoio's `Sleep` is 640 bytes (cache-padded), costs a timer-wheel
//! insert and removal per operation, and every future that holds one is
//! copied around at that size. With three timed operations per proxied
//! request that came to about 1,700 of 20,000 user-space instructions
//! (callgrind). An entry here is a deadline and a waker; the wheel is
//! touched only when the earliest deadline changes or passes, and a
//! deadline passes rarely: most operations finish long before.
//!
//! Precision is the wheel's (milliseconds), as before. The watcher is
//! started by `within` itself the first time a thread needs it, so bare
//! runtimes (unit tests) get it too. monoio does not drop the tasks still
//! waiting when a runtime is dropped, so whoever builds a runtime calls
//! `new_runtime` first: the thread's deadlines then start over, and the
//! old runtime's watcher (never to run again) is forgotten.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

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
        timeout,
        key: None,
    }
}

/// Starts the thread's deadlines over for a runtime about to be built.
pub(crate) fn new_runtime() {
    DEADLINES.with(|d| {
        d.runtime.set(d.runtime.get().wrapping_add(1));
        d.entries.borrow_mut().clear();
        d.armed.set(None);
        d.rearm.set(false);
        d.watcher.borrow_mut().take();
        d.watching.set(false);
    });
}

pub(crate) struct Within<F> {
    future: F,
    timeout: Duration,
    /// The slab entry, once the operation had to wait, and the runtime it
    /// belongs to (see `new_runtime`).
    key: Option<(usize, u64)>,
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, Elapsed>;

    #[allow(unsafe_code)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is structurally pinned: nothing moves it out of
        // `self` (`Drop` only reads `key`), so it stays where it was
        // pinned until dropped in place; `timeout` and `key` are plain
        // data, never pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        if let Poll::Ready(out) = future.poll(cx) {
            if let Some(key) = this.key.take() {
                DEADLINES.with(|d| d.remove(key));
            }
            return Poll::Ready(Ok(out));
        }
        match this.key {
            None => {
                let deadline = Instant::now() + this.timeout;
                this.key = Some(DEADLINES.with(|d| d.insert(deadline, cx.waker())));
                Poll::Pending
            }
            Some(key) => {
                if DEADLINES.with(|d| d.passed(key, cx.waker())) {
                    this.key = None;
                    DEADLINES.with(|d| d.remove(key));
                    return Poll::Ready(Err(Elapsed));
                }
                Poll::Pending
            }
        }
    }
}

impl<F> Drop for Within<F> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            // `try_with`: a thread's futures may outlive its locals at exit.
            let _ = DEADLINES.try_with(|d| d.remove(key));
        }
    }
}

thread_local! {
    static DEADLINES: Deadlines = Deadlines::default();
}

#[derive(Default)]
struct Deadlines {
    /// Counts `new_runtime` calls: keys of an older runtime are void.
    runtime: Cell<u64>,
    entries: RefCell<Slab<Entry>>,
    /// What the watcher's timer is set to: no pending deadline is earlier
    /// (after removals it may be earlier than any, which costs one scan).
    armed: Cell<Option<Instant>>,
    /// Set when a deadline earlier than `armed` arrives.
    rearm: Cell<bool>,
    watcher: RefCell<Option<Waker>>,
    watching: Cell<bool>,
}

struct Entry {
    deadline: Instant,
    waker: Waker,
    passed: bool,
}

impl Deadlines {
    fn insert(&self, deadline: Instant, waker: &Waker) -> (usize, u64) {
        let key = self.entries.borrow_mut().insert(Entry {
            deadline,
            waker: waker.clone(),
            passed: false,
        });
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
        if runtime != self.runtime.get() {
            return false;
        }
        let mut entries = self.entries.borrow_mut();
        let Some(entry) = entries.get_mut(key) else {
            return false;
        };
        if entry.passed {
            return true;
        }
        if !entry.waker.will_wake(waker) {
            entry.waker = waker.clone();
        }
        false
    }

    fn remove(&self, (key, runtime): (usize, u64)) {
        if runtime != self.runtime.get() {
            return;
        }
        let mut entries = self.entries.borrow_mut();
        if entries.contains(key) {
            entries.remove(key);
        }
    }

    /// Marks and wakes every entry due at `now`; returns the earliest
    /// deadline left.
    fn fire(&self, now: Instant) -> Option<Instant> {
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (_, entry) in self.entries.borrow_mut().iter_mut() {
            if entry.passed {
                continue;
            }
            if entry.deadline <= now {
                entry.passed = true;
                due.push(entry.waker.clone());
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
/// Least time between two scans of the slab. Each scan visits every
/// pending entry, so deadlines passing one after another (thousands of
/// slow clients timing out) are fired in batches, up to this late,
/// rather than with a scan each.
const MIN_RESCAN: Duration = Duration::from_millis(10);

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
                    d.watcher.borrow_mut().take();
                }
            });
        }
    }
    let _watching = Watching(DEADLINES.with(|d| d.runtime.get()));
    let sleep = monoio::time::sleep(IDLE_WAIT);
    let mut sleep = std::pin::pin!(sleep);
    loop {
        let now = Instant::now();
        let next = DEADLINES.with(|d| {
            d.rearm.set(false);
            let next = d.fire(now);
            d.armed.set(next);
            next
        });
        let mut wake_at = next.map_or(now + IDLE_WAIT, |n| n.max(now + MIN_RESCAN));
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
                wake_at = wake_at.min(armed);
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
