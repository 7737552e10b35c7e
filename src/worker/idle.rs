//! Short waits of connections between requests (the hot wait before a
//! connection parks, the wait for a cancel's answer): one slab per worker,
//! checked on the worker's tick, instead of a timer per wait. A monoio
//! timer is about 640 bytes and costs a timer-wheel insert and removal;
//! an entry here is about 40 bytes. The price is precision: a deadline
//! fires up to one tick late.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use slab::Slab;

use super::deadline::{Timed, fire_due};

#[derive(Default)]
pub(crate) struct IdleTimers {
    entries: RefCell<Slab<Timed>>,
    /// No deadline is earlier than this (it may be stale-early after a
    /// removal, which costs one scan for nothing).
    next_due: Cell<Option<Instant>>,
}

impl IdleTimers {
    /// Resolves once `deadline` has passed (noticed on a tick).
    pub fn sleep_until(&self, deadline: Instant) -> IdleSleep<'_> {
        IdleSleep {
            timers: self,
            deadline,
            key: None,
        }
    }

    /// Wakes every sleeper whose deadline is at or before `now`.
    pub fn fire(&self, now: Instant) {
        if self.next_due.get().is_none_or(|due| now < due) {
            return;
        }
        let mut due = Vec::new();
        let next = fire_due(&mut self.entries.borrow_mut(), now, &mut due);
        self.next_due.set(next);
        due.into_iter().for_each(Waker::wake);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.borrow().len()
    }
}

pub(crate) struct IdleSleep<'a> {
    timers: &'a IdleTimers,
    deadline: Instant,
    key: Option<usize>,
}

impl Future for IdleSleep<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let timers = self.timers;
        let mut entries = timers.entries.borrow_mut();
        match self.key {
            Some(key) => {
                let entry = &mut entries[key];
                if entry.passed {
                    return Poll::Ready(());
                }
                let old = entry.rewake(cx.waker());
                drop(entries);
                drop(old);
                Poll::Pending
            }
            None => {
                if Instant::now() >= self.deadline {
                    return Poll::Ready(());
                }
                let key = entries.insert(Timed::new(self.deadline, cx.waker()));
                drop(entries);
                let due = timers.next_due.get();
                timers
                    .next_due
                    .set(Some(due.map_or(self.deadline, |d| d.min(self.deadline))));
                self.key = Some(key);
                Poll::Pending
            }
        }
    }
}

impl Drop for IdleSleep<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.timers.entries.borrow_mut().remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn fires_only_past_deadlines_and_forgets_dropped_sleepers() {
        let timers = IdleTimers::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let now = Instant::now();
        let mut soon = Box::pin(timers.sleep_until(now + Duration::from_secs(1)));
        let mut late = Box::pin(timers.sleep_until(now + Duration::from_secs(5)));
        let mut gone = Box::pin(timers.sleep_until(now + Duration::from_secs(1)));
        assert!(soon.as_mut().poll(&mut cx).is_pending());
        assert!(late.as_mut().poll(&mut cx).is_pending());
        assert!(gone.as_mut().poll(&mut cx).is_pending());
        drop(gone);
        assert_eq!(timers.len(), 2);

        timers.fire(now + Duration::from_millis(500));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        timers.fire(now + Duration::from_secs(2));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(soon.as_mut().poll(&mut cx).is_ready());
        assert!(late.as_mut().poll(&mut cx).is_pending());
        drop(soon);
        assert_eq!(timers.len(), 1);

        timers.fire(now + Duration::from_secs(6));
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(late.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn a_passed_deadline_is_ready_at_once() {
        let timers = IdleTimers::default();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut past = Box::pin(timers.sleep_until(Instant::now()));
        assert!(past.as_mut().poll(&mut cx).is_ready());
        assert_eq!(timers.len(), 0);
    }
}
