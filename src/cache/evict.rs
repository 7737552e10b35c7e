//! The queues S3-FIFO evicts from: intrusive FIFOs threaded through the
//! store's slab, and the ghost FIFO of recently evicted key hashes. No
//! policy here (the store decides what moves where); no values, no keys.

use std::collections::VecDeque;

use hashbrown::HashTable;
use slab::Slab;

/// "No neighbour" in a [`Links`].
const NIL: usize = usize::MAX;

/// A slab entry's place in one FIFO: its newer and older neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Links {
    newer: usize,
    older: usize,
}

impl Links {
    /// The links of an entry that is in no queue.
    pub(super) const DETACHED: Links = Links {
        newer: NIL,
        older: NIL,
    };
}

/// A slab element that can sit in a [`Fifo`].
pub(super) trait Linked {
    fn links(&mut self) -> &mut Links;
}

/// A FIFO of slab indices, linked through the entries themselves so that
/// removing any entry is O(1) and leaves nothing stale behind (a `VecDeque`
/// of indices would need generation checks and compaction after purges).
/// Tracks the bytes of what it holds so the budgets are byte-weighted.
#[derive(Debug)]
pub(super) struct Fifo {
    newest: usize,
    oldest: usize,
    len: usize,
    bytes: usize,
}

impl Fifo {
    pub(super) const fn new() -> Fifo {
        Fifo {
            newest: NIL,
            oldest: NIL,
            len: 0,
            bytes: 0,
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The entry that has waited longest: the next one to look at when
    /// evicting.
    pub(super) fn oldest(&self) -> Option<usize> {
        (self.oldest != NIL).then_some(self.oldest)
    }

    /// Changes the bytes charged for an entry already in this queue.
    pub(super) fn recharge(&mut self, old: usize, new: usize) {
        self.bytes = self.bytes - old + new;
    }

    /// Puts a detached entry at the newest end.
    pub(super) fn push_newest<T: Linked>(&mut self, slab: &mut Slab<T>, idx: usize, charge: usize) {
        *slab[idx].links() = Links {
            newer: NIL,
            older: self.newest,
        };
        match self.newest {
            NIL => self.oldest = idx,
            newest => slab[newest].links().newer = idx,
        }
        self.newest = idx;
        self.len += 1;
        self.bytes += charge;
    }

    /// Takes an entry of this queue out of it, wherever it sits.
    pub(super) fn unlink<T: Linked>(&mut self, slab: &mut Slab<T>, idx: usize, charge: usize) {
        let Links { newer, older } = std::mem::replace(slab[idx].links(), Links::DETACHED);
        match newer {
            NIL => self.newest = older,
            newer => slab[newer].links().older = older,
        }
        match older {
            NIL => self.oldest = newer,
            older => slab[older].links().newer = newer,
        }
        self.len -= 1;
        self.bytes -= charge;
    }

    /// Moves the oldest entry to the newest end (a reinsertion: one more
    /// lap for an entry that was used).
    pub(super) fn recycle_oldest<T: Linked>(&mut self, slab: &mut Slab<T>, charge: usize) {
        if let Some(idx) = self.oldest() {
            self.unlink(slab, idx, charge);
            self.push_newest(slab, idx, charge);
        }
    }
}

/// Hashes of keys recently evicted from the small queue, oldest first. A key
/// that comes back while its hash is here skips the small queue: it was
/// wanted again soon after being dropped, so it is not a one-hit wonder.
///
/// Removal on a hit is lazy: the FIFO keeps the stale `(hash, stamp)` and the
/// set forgets it; when the stale pair reaches the front it is dropped
/// without touching a newer record of the same hash (the stamps differ). A
/// stale pair still counts against the bound until then, so the ghost can be
/// a little shorter than its bound, never longer.
#[derive(Debug, Default)]
pub(super) struct Ghost {
    order: VecDeque<(u64, u64)>,
    set: HashTable<(u64, u64)>,
    stamp: u64,
}

impl Ghost {
    /// Remembers `hash`, forgetting the oldest records beyond `bound`.
    pub(super) fn record(&mut self, hash: u64, bound: usize) {
        self.stamp += 1;
        let stamp = self.stamp;
        match self.set.find_mut(hash, |&(h, _)| h == hash) {
            Some(found) => found.1 = stamp,
            None => {
                self.set.insert_unique(hash, (hash, stamp), |&(h, _)| h);
            }
        }
        self.order.push_back((hash, stamp));
        self.trim(bound);
    }

    /// Whether `hash` was recorded (and not yet forgotten); forgets it.
    pub(super) fn take(&mut self, hash: u64) -> bool {
        match self.set.find_entry(hash, |&(h, _)| h == hash) {
            Ok(found) => {
                found.remove();
                true
            }
            Err(_) => false,
        }
    }

    fn trim(&mut self, bound: usize) {
        while self.order.len() > bound {
            let Some((hash, stamp)) = self.order.pop_front() else {
                return;
            };
            if let Ok(found) = self.set.find_entry(hash, |&r| r == (hash, stamp)) {
                found.remove();
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Node(Links);

    impl Linked for Node {
        fn links(&mut self) -> &mut Links {
            &mut self.0
        }
    }

    fn drain(fifo: &mut Fifo, slab: &mut Slab<Node>) -> Vec<usize> {
        let mut out = Vec::new();
        while let Some(idx) = fifo.oldest() {
            fifo.unlink(slab, idx, 1);
            out.push(idx);
        }
        out
    }

    #[test]
    fn fifo_order_and_unlink_from_the_middle() {
        let mut slab = Slab::new();
        let mut fifo = Fifo::new();
        let ids: Vec<usize> = (0..4).map(|_| slab.insert(Node(Links::DETACHED))).collect();
        for &id in &ids {
            fifo.push_newest(&mut slab, id, 1);
        }
        fifo.unlink(&mut slab, ids[2], 1);
        fifo.recycle_oldest(&mut slab, 1);
        assert_eq!((fifo.len(), fifo.bytes()), (3, 3));
        assert_eq!(drain(&mut fifo, &mut slab), vec![ids[1], ids[3], ids[0]]);
        assert!(fifo.is_empty());
        assert_eq!(fifo.bytes(), 0);
    }

    #[test]
    fn ghost_remembers_within_its_bound() {
        let mut ghost = Ghost::default();
        for hash in 0..5 {
            ghost.record(hash, 3);
        }
        assert!(!ghost.take(1));
        assert!(ghost.take(3));
        assert!(!ghost.take(3), "a hit forgets the hash");
        assert_eq!(ghost.len(), 2);
    }

    #[test]
    fn ghost_stale_record_does_not_forget_a_newer_one() {
        let mut ghost = Ghost::default();
        ghost.record(7, 2);
        assert!(ghost.take(7));
        ghost.record(7, 2);
        ghost.record(8, 2); // pushes out the stale (7, 1) only
        assert!(ghost.take(7));
    }
}
