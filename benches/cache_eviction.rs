//! Hit ratios of the cache store's S3-FIFO against a plain LRU with the same
//! byte budget, on Zipf traffic with a one-off scan in the middle, and the
//! store's cost per hit and per insert. Prints tables; no criterion (the
//! ratios are the result, and one run of the simulation is exact).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use ringress::cache::store::{Store, Weigh};

const KEYS: u32 = 100_000;
const REQUESTS: usize = 1_000_000;
const SCAN: u32 = 200_000;
/// Requests after the scan whose hit ratio shows how fast each policy
/// recovers (and before it: what the scan disturbed).
const WINDOW: usize = 10_000;
const MIN_SIZE: u32 = 1024;
const MAX_SIZE: u32 = 16 * 1024;
/// The simulated key is the object id's four bytes; both policies charge it.
const KEY_LEN: usize = 4;

/// SplitMix64: a fixed-seed generator, so every run sees the same trace.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Samples ranks 0..n with P(rank k) proportional to 1 / (k + 1)^alpha.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: u32, alpha: f64) -> Zipf {
        let mut sum = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                sum += 1.0 / f64::from(k).powf(alpha);
                sum
            })
            .collect();
        cdf.iter_mut().for_each(|c| *c /= sum);
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> u32 {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1) as u32
    }
}

/// Zipf requests, then `SCAN` keys never seen before or after, then more
/// Zipf requests. Returns the trace and the index where the scan starts.
fn trace(alpha: f64, seed: u64) -> (Vec<u32>, usize) {
    let zipf = Zipf::new(KEYS, alpha);
    let mut rng = Rng(seed);
    let half = REQUESTS / 2;
    let mut ids: Vec<u32> = (0..half).map(|_| zipf.sample(&mut rng)).collect();
    ids.extend(KEYS..KEYS + SCAN);
    ids.extend((half..REQUESTS).map(|_| zipf.sample(&mut rng)));
    (ids, half)
}

/// Object sizes, uniform in 1..=16 KiB, for the Zipf keys and the scan's.
fn sizes(seed: u64) -> Vec<u32> {
    let mut rng = Rng(seed);
    (0..KEYS + SCAN)
        .map(|_| MIN_SIZE + rng.below(MAX_SIZE - MIN_SIZE + 1))
        .collect()
}

/// A cache as the simulation sees it: look up, store on a miss.
trait Policy {
    fn request(&mut self, id: u32, size: u32) -> bool;
}

struct Object(u32);

impl Weigh for Object {
    fn weight(&self) -> usize {
        self.0 as usize
    }
}

impl Policy for Store<Object> {
    fn request(&mut self, id: u32, size: u32) -> bool {
        let (hash, key) = (mix(u64::from(id)), id.to_le_bytes());
        if self.get(hash, &key).is_some() {
            return true;
        }
        self.insert(hash, &key, Object(size));
        false
    }
}

/// Plain LRU over the same byte budget and charge (size + key), as the
/// baseline: a hash map to nodes in a vector, doubly linked by recency.
struct Lru {
    map: HashMap<u32, usize>,
    nodes: Vec<LruNode>,
    free: Vec<usize>,
    newest: usize,
    oldest: usize,
    bytes: usize,
    max_bytes: usize,
}

struct LruNode {
    id: u32,
    charge: usize,
    newer: usize,
    older: usize,
}

const NIL: usize = usize::MAX;

impl Lru {
    fn new(max_bytes: usize) -> Lru {
        Lru {
            map: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            newest: NIL,
            oldest: NIL,
            bytes: 0,
            max_bytes,
        }
    }

    fn unlink(&mut self, i: usize) {
        let (newer, older) = (self.nodes[i].newer, self.nodes[i].older);
        match newer {
            NIL => self.newest = older,
            n => self.nodes[n].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.nodes[o].newer = newer,
        }
    }

    fn push_newest(&mut self, i: usize) {
        self.nodes[i].newer = NIL;
        self.nodes[i].older = self.newest;
        match self.newest {
            NIL => self.oldest = i,
            n => self.nodes[n].newer = i,
        }
        self.newest = i;
    }

    fn evict_oldest(&mut self) {
        let i = self.oldest;
        self.unlink(i);
        self.bytes -= self.nodes[i].charge;
        self.map.remove(&self.nodes[i].id);
        self.free.push(i);
    }

    fn admit(&mut self, id: u32, charge: usize) {
        while self.bytes + charge > self.max_bytes && self.oldest != NIL {
            self.evict_oldest();
        }
        let node = LruNode {
            id,
            charge,
            newer: NIL,
            older: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i] = node;
                i
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.push_newest(i);
        self.bytes += charge;
        self.map.insert(id, i);
    }
}

impl Policy for Lru {
    fn request(&mut self, id: u32, size: u32) -> bool {
        if let Some(&i) = self.map.get(&id) {
            self.unlink(i);
            self.push_newest(i);
            return true;
        }
        let charge = size as usize + KEY_LEN;
        if charge <= self.max_bytes {
            self.admit(id, charge);
        }
        false
    }
}

#[derive(Default, Clone, Copy)]
struct Tally {
    requests: u64,
    hits: u64,
    bytes: u64,
    hit_bytes: u64,
}

impl Tally {
    fn add(&mut self, hit: bool, size: u32) {
        self.requests += 1;
        self.bytes += u64::from(size);
        if hit {
            self.hits += 1;
            self.hit_bytes += u64::from(size);
        }
    }

    fn req_pct(&self) -> f64 {
        100.0 * self.hits as f64 / self.requests as f64
    }

    fn byte_pct(&self) -> f64 {
        100.0 * self.hit_bytes as f64 / self.bytes as f64
    }
}

/// Hit ratios over the whole trace, the window before the scan and the
/// window after it.
struct Run {
    all: Tally,
    before: Tally,
    after: Tally,
}

fn simulate(policy: &mut impl Policy, ids: &[u32], scan_at: usize, sizes: &[u32]) -> Run {
    let scan_end = scan_at + SCAN as usize;
    let mut run = Run {
        all: Tally::default(),
        before: Tally::default(),
        after: Tally::default(),
    };
    for (i, &id) in ids.iter().enumerate() {
        let size = sizes[id as usize];
        let hit = policy.request(id, size);
        run.all.add(hit, size);
        if (scan_at - WINDOW..scan_at).contains(&i) {
            run.before.add(hit, size);
        } else if (scan_end..scan_end + WINDOW).contains(&i) {
            run.after.add(hit, size);
        }
    }
    run
}

fn hit_ratio_table(sizes: &[u32]) {
    let total: u64 = sizes[..KEYS as usize].iter().map(|&s| u64::from(s)).sum();
    println!(
        "## Hit ratio: {KEYS} keys, {REQUESTS} Zipf requests, a scan of {SCAN} new keys after half of them"
    );
    println!("objects 1-16 KiB uniform; Zipf key bytes total {total} B; budget = % of that\n");
    println!(
        "| alpha | budget | policy | req hit % | byte hit % | req hit % {WINDOW} before scan | req hit % {WINDOW} after scan | byte hit % after scan |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for alpha in [0.9, 1.1] {
        let (ids, scan_at) = trace(alpha, 42);
        for pct in [1u64, 5, 10] {
            let budget = (total * pct / 100) as usize;
            let s3 = simulate(&mut Store::new(budget), &ids, scan_at, sizes);
            let lru = simulate(&mut Lru::new(budget), &ids, scan_at, sizes);
            for (name, run) in [("S3-FIFO", s3), ("LRU", lru)] {
                println!(
                    "| {alpha} | {pct} % | {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                    run.all.req_pct(),
                    run.all.byte_pct(),
                    run.before.req_pct(),
                    run.after.req_pct(),
                    run.after.byte_pct(),
                );
            }
        }
    }
}

/// A key of realistic length (method, host, path), as `policy` builds them.
fn http_key(n: u32) -> Vec<u8> {
    format!("GET\0www.example.com\0/static/assets/img/{n:08}.webp").into_bytes()
}

/// Nanoseconds per `get` that hits: 10,000 entries, Zipf(1.0) lookups.
fn time_get_hit() -> f64 {
    const N: u32 = 10_000;
    const LOOKUPS: usize = 2_000_000;
    let keys: Vec<Vec<u8>> = (0..N).map(http_key).collect();
    let mut store = Store::new(usize::MAX);
    for (n, key) in keys.iter().enumerate() {
        store.insert(mix(n as u64), key, Object(4096));
    }
    let zipf = Zipf::new(N, 1.0);
    let mut rng = Rng(7);
    let picks: Vec<u32> = (0..LOOKUPS).map(|_| zipf.sample(&mut rng)).collect();
    let start = Instant::now();
    for &n in &picks {
        let found = store.get(mix(u64::from(n)), &keys[n as usize]);
        black_box(found.map(|o| o.0));
    }
    start.elapsed().as_nanos() as f64 / LOOKUPS as f64
}

/// Nanoseconds per `insert` of a new key into a full store (each one
/// evicts): the key's copy, the table insert, the eviction.
fn time_insert_full() -> f64 {
    const INSERTS: u32 = 1_000_000;
    let keys: Vec<Vec<u8>> = (0..INSERTS).map(http_key).collect();
    let sizes = sizes(3);
    let mut store = Store::new(64 << 20);
    let start = Instant::now();
    for (n, key) in keys.iter().enumerate() {
        let size = sizes[n % sizes.len()];
        black_box(store.insert(mix(n as u64), key, Object(size)));
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(INSERTS);
    assert!(store.evictions() > 0, "the store never filled");
    ns
}

fn main() {
    let sizes = sizes(1);
    hit_ratio_table(&sizes);
    println!("\n## Store cost (best of 3 runs)\n");
    let best = |f: fn() -> f64| (0..3).map(|_| f()).fold(f64::INFINITY, f64::min);
    println!("| operation | ns/op |");
    println!("|---|---|");
    println!(
        "| get, hit (10k entries, {}-byte keys, Zipf 1.0) | {:.1} |",
        http_key(0).len(),
        best(time_get_hit)
    );
    println!(
        "| insert, new key into a full 64 MiB store (evicts) | {:.1} |",
        best(time_insert_full)
    );
}
