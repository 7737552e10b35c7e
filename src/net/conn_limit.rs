//! Counts of open client connections per listener and per client address,
//! shared by every worker so that `max_conns` and `max_conns_per_ip` hold
//! exactly, whichever worker SO_REUSEPORT hands a connection to. No I/O:
//! taking a slot gives a `ConnSlot` whose drop gives it back.
//!
//! Why shared state here, when the design keeps the data plane per core:
//! a per-worker cap lets up to workers × cap connections in (one client's
//! connections spread over all workers), and a cap split evenly refuses
//! connections while other workers have room. A new connection is rare
//! next to a request (thousands of requests per keep-alive connection at
//! the edge), so one atomic add per connection on a per-listener counter,
//! and one short lock of a per-address shard when a per-IP cap is set,
//! cost nothing measurable; no request touches either.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Shards of the per-address table: workers taking slots for different
/// addresses at once rarely wait on each other.
const SHARDS: usize = 64;
/// Addresses tracked per shard at most (about 1M per listener): an
/// address leaves the table with its last connection, so this is reached
/// only with that many clients connected at once; a new address is then
/// refused rather than the table grown without bound.
const SHARD_CAPACITY: usize = 1 << 14;

/// Every listener's counts, by listener id. Looked up when a worker
/// starts accepting on a listener, not per connection.
#[derive(Default)]
pub struct ConnCounts {
    listeners: Mutex<Vec<(u64, Arc<ListenerConns>)>>,
}

impl ConnCounts {
    /// The counts of listener `id`, made on first use. The same listener
    /// keeps them across reloads (its connections stay counted).
    pub fn listener(&self, id: u64) -> Arc<ListenerConns> {
        let mut all = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = all.iter().find(|(i, _)| *i == id) {
            return c.clone();
        }
        let c = Arc::new(ListenerConns::default());
        all.push((id, c.clone()));
        c
    }
}

/// One listener's open connections, over all workers.
pub struct ListenerConns {
    open: AtomicUsize,
    per_ip: Box<[Mutex<HashMap<IpAddr, u32>>]>,
}

impl Default for ListenerConns {
    fn default() -> Self {
        ListenerConns {
            open: AtomicUsize::new(0),
            per_ip: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

/// Why a connection was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    /// The listener holds `max_conns` connections.
    Listener,
    /// The client's address holds `max_conns_per_ip` connections (or the
    /// address table is full).
    PerIp,
}

impl ListenerConns {
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Takes a place among the listener's connections; `max` 0 means no
    /// cap (the connection is still counted, for overload and metrics).
    pub fn enter(self: &Arc<Self>, max: usize) -> Result<ConnSlot, OverLimit> {
        // Compare and swap: two workers racing for the last place cannot
        // both take it, and a refusal never counts (even for an instant),
        // so it cannot make a third connection look over the cap.
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (max == 0 || n < max).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(OverLimit::Listener);
        }
        Ok(ConnSlot {
            conns: self.clone(),
            ip: None,
        })
    }

    fn shard(&self, ip: IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        let h = match ip {
            IpAddr::V4(a) => u64::from(u32::from(a)),
            // The /64 network and the host part both spread.
            IpAddr::V6(a) => {
                let b = u128::from(a);
                (b as u64) ^ ((b >> 64) as u64)
            }
        };
        let h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        &self.per_ip[(h >> 58) as usize % SHARDS]
    }
}

/// A counted connection: dropping it (whatever ended the connection)
/// gives its places back.
pub struct ConnSlot {
    conns: Arc<ListenerConns>,
    ip: Option<IpAddr>,
}

impl ConnSlot {
    /// Counts the connection for its client address too, once that is
    /// known (after a PROXY header); refused when the address already
    /// holds `max` connections. Dropping the slot on refusal also gives
    /// back its listener place.
    pub fn enter_ip(&mut self, ip: IpAddr, max: u32) -> Result<(), OverLimit> {
        debug_assert!(self.ip.is_none(), "an address is counted once");
        let mut shard = self
            .conns
            .shard(ip)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let full = shard.len() >= SHARD_CAPACITY;
        match shard.get_mut(&ip) {
            Some(n) if *n >= max => return Err(OverLimit::PerIp),
            Some(n) => *n += 1,
            None if full || max == 0 => return Err(OverLimit::PerIp),
            None => {
                shard.insert(ip, 1);
            }
        }
        self.ip = Some(ip);
        Ok(())
    }

    /// The listener's counts this slot belongs to.
    pub fn listener(&self) -> &ListenerConns {
        &self.conns
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut shard = self
                .conns
                .shard(ip)
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(n) = shard.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    shard.remove(&ip);
                }
            }
        }
        self.conns.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Open connections of one address on a listener (for tests and metrics).
pub fn open_from(conns: &ListenerConns, ip: IpAddr) -> u32 {
    let shard = conns.shard(ip).lock().unwrap_or_else(|p| p.into_inner());
    shard.get(&ip).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn the_listener_cap_lets_exactly_max_in_and_frees_on_drop() {
        let c = Arc::new(ListenerConns::default());
        let slots: Vec<_> = (0..3).map(|_| c.enter(3).expect("room")).collect();
        assert_eq!(c.enter(3).err(), Some(OverLimit::Listener));
        assert_eq!(c.open(), 3);
        drop(slots);
        assert_eq!(c.open(), 0);
        assert!(c.enter(3).is_ok());
        // No cap: counted all the same.
        let many: Vec<_> = (0..10).map(|_| c.enter(0).expect("no cap")).collect();
        assert_eq!(c.open(), 10);
        drop(many);
    }

    #[test]
    fn per_ip_caps_are_per_address_and_released_with_the_slot() {
        let c = Arc::new(ListenerConns::default());
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = c.enter(0).expect("room");
            s.enter_ip(ip("10.0.0.1"), 2).expect("under the cap");
            held.push(s);
        }
        let mut third = c.enter(0).expect("room");
        assert_eq!(third.enter_ip(ip("10.0.0.1"), 2), Err(OverLimit::PerIp));
        // Another address is independent, IPv6 too.
        assert!(third.enter_ip(ip("10.0.0.2"), 2).is_ok());
        let mut v6 = c.enter(0).expect("room");
        assert!(v6.enter_ip(ip("2001:db8::1"), 1).is_ok());
        assert_eq!(open_from(&c, ip("10.0.0.1")), 2);
        held.pop();
        assert_eq!(open_from(&c, ip("10.0.0.1")), 1);
        drop((held, third, v6));
        assert_eq!(open_from(&c, ip("10.0.0.1")), 0);
        assert_eq!(c.open(), 0);
        // Emptied addresses leave the table.
        assert!(c.per_ip.iter().all(|s| s.lock().expect("shard").is_empty()));
    }

    #[test]
    fn a_refused_per_ip_slot_gives_back_its_listener_place() {
        let c = Arc::new(ListenerConns::default());
        let mut a = c.enter(2).expect("room");
        a.enter_ip(ip("10.0.0.1"), 1).expect("first");
        let mut b = c.enter(2).expect("room");
        assert!(b.enter_ip(ip("10.0.0.1"), 1).is_err());
        drop(b);
        assert_eq!(c.open(), 1);
        assert_eq!(open_from(&c, ip("10.0.0.1")), 1);
    }

    #[test]
    fn exact_under_threads_racing_for_the_last_places() {
        let c = Arc::new(ListenerConns::default());
        let admitted: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let c = c.clone();
                    s.spawn(move || {
                        let mut kept = Vec::new();
                        for _ in 0..1000 {
                            if let Ok(mut slot) = c.enter(100)
                                && slot.enter_ip(ip("10.0.0.9"), 50).is_ok()
                            {
                                kept.push(slot);
                            }
                        }
                        kept
                    })
                })
                .collect();
            let kept: Vec<_> = hs.into_iter().map(|h| h.join().expect("thread")).collect();
            kept.iter().map(Vec::len).sum()
        });
        assert_eq!(admitted, 50);
        assert_eq!(c.open(), 0);
    }

    #[test]
    fn listeners_keep_their_counts_by_id() {
        let all = ConnCounts::default();
        let a = all.listener(7);
        let _slot = a.enter(0).expect("room");
        assert_eq!(all.listener(7).open(), 1);
        assert_eq!(all.listener(8).open(), 0);
    }
}
