//! A limit shared by several ringress processes through Redis. The
//! bucket lives in Redis (GCRA in a Lua script, on Redis's clock); a
//! background thread per limit talks to it every `SYNC_EVERY`, so no
//! request waits on Redis. Per key, the process holds an allowance the
//! thread took from Redis ahead of time (charged there when taken);
//! workers spend it with one atomic operation and the thread tops it up.
//!
//! Error bounds: a key new to the process gets `CREDIT` request(s) before
//! Redis has been asked (charged on the next sync), and an allowance is
//! at most `batch` requests: together at most `CREDIT + batch` per key per
//! process above the limit, and usually nothing. An allowance left unused
//! goes back to Redis once the key has been quiet for `IDLE`.
//!
//! While Redis cannot be reached the limit fails open or closed
//! (`on_store_error`), and the thread says so in the process log once per
//! change of state.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::gcra::{Gcra, Wait};
use super::limiter::now_ns;
use super::resp::{Connection, Reply};
use super::table::{WAYS, sets_for, ways_of};
use super::{OnStoreError, StoreConfig};

/// How often the thread syncs with Redis.
pub const SYNC_EVERY: Duration = Duration::from_millis(5);
/// Requests a key new to the process may make before Redis is asked.
const CREDIT: i64 = 1;
/// A key quiet this long gives its allowance back.
const IDLE: u64 = 200_000_000;
/// Connect, read and write timeout towards Redis.
const TIMEOUT: Duration = Duration::from_millis(200);
/// How long to wait before connecting again after a failure.
const RETRY: Duration = Duration::from_millis(100);

/// GCRA on Redis's clock (microseconds). ARGV: interval, capacity,
/// charge (requests' worth given without asking; negative gives back),
/// want. Returns {granted, wait until one is free}.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local iv = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local charge = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if charge >= 0 then
  tat = math.max(tat, now) + charge * iv
else
  tat = math.max(tat + charge * iv, now)
end
local free = math.floor((cap - (tat - now)) / iv)
if free < 0 then free = 0 end
local g = math.min(free, want)
tat = tat + g * iv
local wait = 0
if free - g <= 0 then wait = math.max(0, tat - now + iv - cap) end
local ttl = math.floor((tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', ttl)
return {g, wait}
"#;

#[derive(Debug, Default)]
struct Entry {
    key: AtomicU64,
    /// Requests the process may still let through; all of them charged
    /// in Redis, or owed in `owed`.
    allowance: AtomicI64,
    /// Requests' worth given without Redis (the credit of a key new to
    /// the process), charged on the next sync.
    owed: AtomicI64,
    /// Last request (ns, `now_ns`).
    seen: AtomicU64,
    /// Redis's last word on how long until one is free (ns).
    wait: AtomicU64,
}

pub struct StoreBuckets {
    entries: Box<[Entry]>,
    sets: usize,
    down: AtomicBool,
    started: OnceLock<()>,
}

impl StoreBuckets {
    pub fn new(capacity: usize) -> StoreBuckets {
        let sets = sets_for(capacity);
        StoreBuckets {
            entries: (0..sets * WAYS).map(|_| Entry::default()).collect(),
            sets,
            down: AtomicBool::new(false),
            started: OnceLock::new(),
        }
    }

    /// One request for `key`: None while Redis cannot be reached.
    pub fn take(&self, key: u64, now: u64) -> Option<Result<(), Wait>> {
        if self.down.load(Ordering::Relaxed) {
            return None;
        }
        let e = self.entry(key.max(1), now);
        e.seen.store(now, Ordering::Relaxed);
        if e.allowance.fetch_sub(1, Ordering::AcqRel) > 0 {
            return Some(Ok(()));
        }
        e.allowance.fetch_add(1, Ordering::AcqRel);
        Some(Err(Wait(e.wait.load(Ordering::Relaxed).max(1_000_000))))
    }

    fn set(&self, key: u64) -> &[Entry] {
        &self.entries[ways_of(key, self.sets)]
    }

    /// The key's entry, claimed if absent: a free one, else the one seen
    /// longest ago (what it spent and had not reported is lost).
    fn entry(&self, key: u64, now: u64) -> &Entry {
        let set = self.set(key);
        loop {
            if let Some(e) = set.iter().find(|e| e.key.load(Ordering::Acquire) == key) {
                return e;
            }
            let mut victim = &set[0];
            for e in set {
                if e.key.load(Ordering::Acquire) == 0 {
                    victim = e;
                    break;
                }
                if e.seen.load(Ordering::Relaxed) < victim.seen.load(Ordering::Relaxed) {
                    victim = e;
                }
            }
            let old = victim.key.load(Ordering::Acquire);
            if victim
                .key
                .compare_exchange(old, key, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                victim.owed.store(CREDIT, Ordering::Release);
                victim.wait.store(0, Ordering::Relaxed);
                victim.seen.store(now, Ordering::Relaxed);
                victim.allowance.store(CREDIT, Ordering::Release);
                return victim;
            }
        }
    }

    /// Starts the limit's thread, once per process.
    pub fn start(self: &Arc<Self>, name: &str, config: &StoreConfig, gcra: Gcra) {
        if self.started.set(()).is_err() {
            return;
        }
        let sync = Sync {
            buckets: self.clone(),
            name: name.to_string(),
            addr: config.addr.clone(),
            on_error: config.on_error,
            gcra,
            batch: super::batch(&gcra, 1)
                .max(2 * SYNC_EVERY.as_nanos() as u64 / gcra.interval)
                .min(gcra.burst.div_ceil(2))
                .max(1),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("rl-store-{name}"))
            .spawn(move || sync.run());
        if let Err(e) = spawned {
            tracing::error!(limit = name, error = %e, "cannot start the rate limit's store thread");
        }
    }
}

struct Sync {
    buckets: Arc<StoreBuckets>,
    name: String,
    addr: String,
    on_error: OnStoreError,
    gcra: Gcra,
    batch: u64,
}

impl Sync {
    fn run(self) {
        let mut conn: Option<(Connection, Vec<u8>)> = None;
        loop {
            // The limit is gone from the config (nothing else holds it).
            if Arc::strong_count(&self.buckets) == 1 {
                return;
            }
            if conn.is_none() {
                conn = self.connect();
                if conn.is_none() {
                    self.set_down(true, "cannot connect");
                    std::thread::sleep(RETRY);
                    continue;
                }
            }
            if let Some((c, sha)) = conn.as_mut()
                && let Err(e) = self.sync(c, sha)
            {
                self.set_down(true, &e.to_string());
                conn = None;
                continue;
            }
            self.set_down(false, "");
            std::thread::sleep(SYNC_EVERY);
        }
    }

    fn connect(&self) -> Option<(Connection, Vec<u8>)> {
        let mut c = Connection::connect(&self.addr, TIMEOUT).ok()?;
        c.queue(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
        c.flush().ok()?;
        match c.read().ok()? {
            Reply::Bulk(Some(sha)) => Some((c, sha)),
            _ => None,
        }
    }

    fn set_down(&self, down: bool, why: &str) {
        if self.buckets.down.swap(down, Ordering::AcqRel) == down {
            return;
        }
        if down {
            let then = match self.on_error {
                OnStoreError::Allow => "letting requests through (on_store_error = \"allow\")",
                OnStoreError::Deny => "refusing requests (on_store_error = \"deny\")",
            };
            tracing::warn!(limit = %self.name, store = %self.addr, error = why,
                "rate limit store unreachable: {then}");
        } else {
            tracing::info!(limit = %self.name, store = %self.addr, "rate limit store reachable again");
        }
    }

    /// One round: every key's spending reported and its allowance
    /// topped up, in one pipeline.
    fn sync(&self, c: &mut Connection, sha: &[u8]) -> std::io::Result<()> {
        let now = now_ns();
        let iv = (self.gcra.interval / 1000).max(1);
        let cap = iv * self.gcra.burst;
        let mut asked = Vec::new();
        for (i, e) in self.buckets.entries.iter().enumerate() {
            let key = e.key.load(Ordering::Acquire);
            if key == 0 {
                continue;
            }
            let mut charge = e.owed.swap(0, Ordering::AcqRel);
            let quiet = now.saturating_sub(e.seen.load(Ordering::Relaxed)) > IDLE;
            let held = e.allowance.load(Ordering::Acquire);
            let want = if quiet {
                // Back to Redis with what is left.
                charge -= e.allowance.swap(0, Ordering::AcqRel).max(0);
                0
            } else {
                (self.batch as i64 - held).max(0)
            };
            if charge == 0 && want == 0 {
                continue;
            }
            let redis_key = format!("ringress:rl:{}:{key:016x}", self.name);
            c.queue(&[
                b"EVALSHA",
                sha,
                b"1",
                redis_key.as_bytes(),
                iv.to_string().as_bytes(),
                cap.to_string().as_bytes(),
                charge.to_string().as_bytes(),
                want.to_string().as_bytes(),
            ]);
            asked.push((i, key));
        }
        if asked.is_empty() {
            return Ok(());
        }
        c.flush()?;
        for (i, key) in asked {
            let reply = c.read()?;
            let Reply::Array(items) = reply else {
                return Err(std::io::Error::other(format!("store answered {reply:?}")));
            };
            let (Some(Reply::Int(granted)), Some(Reply::Int(wait_us))) =
                (items.first(), items.get(1))
            else {
                return Err(std::io::Error::other("store answered an unexpected array"));
            };
            let e = &self.buckets.entries[i];
            // The entry went to another key meanwhile: its grant is lost.
            if e.key.load(Ordering::Acquire) == key {
                e.allowance.fetch_add(*granted, Ordering::AcqRel);
                e.wait
                    .store((*wait_us).max(0) as u64 * 1000, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}
