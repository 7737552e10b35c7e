//! Choosing a server of a group, per worker: smooth weighted round-robin
//! (nginx's), least outstanding requests, power of two choices (optionally
//! weighed by peak-EWMA latency), consistent hashing (Maglev) and weighted
//! random; all skip servers that are down, ejected, at `max_conns` or
//! already tried for the request, and use backup servers only when no
//! primary is available. Counts (in flight, latency, failures) are the
//! worker's own: no cross-core traffic per request, except on a server
//! with `max_conns`, whose cap is exact over all workers only because
//! they share one count (see `ServerHealth::try_acquire`). What the admin API
//! set (drain, maintenance, a weight) is read from the server's shared
//! health at each pick; a weight change on a hashed group rebuilds the
//! worker's own Maglev table on its next tick.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::group::{Balance, UpstreamGroup};
use super::maglev::Maglev;

/// Per-worker state of one group.
#[derive(Debug)]
pub struct GroupState {
    /// Smooth weighted round-robin scores.
    current: Vec<i64>,
    pub servers: Vec<ServerState>,
    /// Start of the least-connections tie-break scan, rotated per pick.
    rotate: usize,
    /// Retries that may still be spent (see `UpstreamGroup::retry_budget`).
    retry_tokens: f64,
    /// The hashed group's table rebuilt for the admin's weights, and the
    /// weights it was built for (None: the config's table serves).
    maglev: Option<(Vec<u32>, Arc<Maglev>)>,
}

/// One request's pick, the same for every set of servers `pick` tries.
#[derive(Clone, Copy)]
struct Ask<'a> {
    group: &'a UpstreamGroup,
    /// The request's key for `balance = "hash"`.
    hash: Option<u64>,
    /// Servers the request already failed on.
    tried: &'a [usize],
    now: Instant,
}

/// What one worker knows about one server.
#[derive(Debug, Default, Clone)]
pub struct ServerState {
    pub in_flight: u32,
    /// Peak-EWMA latency in nanoseconds (0 until the first response).
    ewma_ns: f64,
    ewma_at: Option<Instant>,
    /// Consecutive failures.
    fails: u32,
    ejected_until: Option<Instant>,
    /// Ejections in a row: the back-off doubles with each.
    ejections: u32,
    /// A request is testing an ejected server whose back-off ran out.
    probing: bool,
}

/// How an attempt on a server ended, for passive health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success(Duration),
    Failure,
    /// Nothing learnt about the server (the client went away).
    Neutral,
}

/// Burst of retries allowed before the budget builds up.
const RETRY_TOKENS_MIN: f64 = 10.0;
/// Decay time of the latency average.
const EWMA_DECAY: Duration = Duration::from_secs(10);

impl GroupState {
    pub fn new(group: &UpstreamGroup) -> GroupState {
        GroupState {
            current: vec![0; group.servers.len()],
            servers: vec![ServerState::default(); group.servers.len()],
            rotate: 0,
            retry_tokens: RETRY_TOKENS_MIN,
            maglev: None,
        }
        .refreshed(group)
    }

    fn refreshed(mut self, group: &UpstreamGroup) -> GroupState {
        self.refresh(group);
        self
    }

    /// Follows weights the admin API changed: a hashed group gets a table
    /// built for them (the other balancers read weights at each pick).
    /// Run on each tick.
    pub fn refresh(&mut self, group: &UpstreamGroup) {
        if group.maglev.is_none() {
            return;
        }
        let overridden = group
            .servers
            .iter()
            .any(|s| s.health.weight_override().is_some());
        if !overridden {
            self.maglev = None;
            return;
        }
        // Checked in place: the tick allocates only when a weight changed.
        let unchanged = self.maglev.as_ref().is_some_and(|(w, _)| {
            w.len() == group.servers.len()
                && w.iter().enumerate().all(|(i, &x)| x == weight(group, i))
        });
        if unchanged {
            return;
        }
        let weights: Vec<u32> = (0..group.servers.len()).map(|i| weight(group, i)).collect();
        // The same identities as the config's table, so keys of servers
        // whose weight stayed mostly stay where they were.
        let ids: Vec<(String, u32)> = group
            .servers
            .iter()
            .zip(&weights)
            .map(|(s, &w)| match s.backup {
                true => (String::new(), 0),
                false => (s.addr.to_string(), w),
            })
            .collect();
        self.maglev = Some((weights, Arc::new(Maglev::new(&ids))));
    }

    /// Keeps what a previous generation learnt about servers still in the
    /// group (same address), so a reload does not forget an ejection.
    pub fn carry_over(
        &mut self,
        group: &UpstreamGroup,
        old: &GroupState,
        old_group: &UpstreamGroup,
    ) {
        for (i, s) in group.servers.iter().enumerate() {
            if let Some(j) = old_group.servers.iter().position(|o| o.addr == s.addr)
                && let Some(state) = old.servers.get(j)
            {
                self.servers[i] = ServerState {
                    in_flight: 0,
                    probing: false,
                    ..state.clone()
                };
            }
        }
        self.retry_tokens = old.retry_tokens;
    }

    /// Whether server `i` can take a request now.
    fn available(&self, group: &UpstreamGroup, i: usize, now: Instant) -> bool {
        let server = &group.servers[i];
        let state = &self.servers[i];
        if !server.health.is_up() || !server.health.admin_ready() {
            return false;
        }
        if let Some(until) = state.ejected_until
            && (now < until || state.probing)
        {
            return false;
        }
        // A first look: `pick` takes the place with a compare-and-swap.
        server.max_conns == 0 || server.health.active() < server.max_conns
    }

    /// Whether some server other than those in `tried` is available.
    pub fn has_alternative(&self, group: &UpstreamGroup, tried: &[usize], now: Instant) -> bool {
        (0..group.servers.len()).any(|i| !tried.contains(&i) && self.available(group, i, now))
    }

    /// Picks a server for a request and counts it in flight. `hash`: the
    /// request's key for `balance = "hash"`; `tried`: servers this request
    /// already failed on; `regions`: the client's region and its nearest,
    /// best first (servers there are preferred, in that order, then any).
    /// None: no server can take it (503).
    pub fn pick(
        &mut self,
        group: &UpstreamGroup,
        hash: Option<u64>,
        tried: &[usize],
        regions: &[u16],
        rng: &mut Rng,
        now: Instant,
    ) -> Option<usize> {
        let ask = Ask {
            group,
            hash,
            tried,
            now,
        };
        let regional = if group.regional { regions } else { &[] };
        // Another worker may take a capped server's last place between
        // the look and the take: that server is then full, so the next
        // round passes it over. Bounded: each lost race means a place
        // went to someone else.
        for _ in 0..=group.servers.len() {
            let picked = self.pick_once(&ask, regional, rng)?;
            if group.servers[picked].take_place() {
                let state = &mut self.servers[picked];
                state.in_flight += 1;
                if state.ejected_until.is_some() {
                    state.probing = true;
                }
                return Some(picked);
            }
        }
        None
    }

    /// One choice among the available servers, nothing counted yet.
    fn pick_once(&mut self, ask: &Ask<'_>, regional: &[u16], rng: &mut Rng) -> Option<usize> {
        // Primary servers, then backups: in each preferred region, then
        // anywhere. (Spelled out: as one flat_map chain it was not
        // inlined and cost about 270 instructions per request.)
        regional
            .iter()
            .find_map(|&r| {
                self.pick_among(ask, false, Some(r), rng)
                    .or_else(|| self.pick_among(ask, true, Some(r), rng))
            })
            .or_else(|| self.pick_among(ask, false, None, rng))
            .or_else(|| self.pick_among(ask, true, None, rng))
    }

    /// Picks among the primary (or the `backup`) servers, in `region` if
    /// given.
    fn pick_among(
        &mut self,
        ask: &Ask<'_>,
        backup: bool,
        region: Option<u16>,
        rng: &mut Rng,
    ) -> Option<usize> {
        let Ask {
            group,
            hash,
            tried,
            now,
        } = *ask;
        let ok = |s: &GroupState, i: usize| {
            let server = &group.servers[i];
            server.backup == backup
                && (region.is_none() || server.region == region)
                && !tried.contains(&i)
                && s.available(group, i, now)
        };
        let n = group.servers.len();
        match &group.balance {
            Balance::RoundRobin => self.smooth_weighted(group, ok),
            Balance::Hash(_) if !backup => {
                let table = self
                    .maglev
                    .as_ref()
                    .map(|(_, t)| t)
                    .or(group.maglev.as_ref());
                if let (Some(table), Some(mut h)) = (table, hash) {
                    // A busy, dead or drained server's keys move to other
                    // servers, each key consistently to the same one.
                    for _ in 0..8 {
                        if let Some(i) = table.lookup(h)
                            && ok(self, i)
                        {
                            return Some(i);
                        }
                        h = mix(h);
                    }
                }
                self.smooth_weighted(group, ok)
            }
            Balance::Hash(_) => self.smooth_weighted(group, ok),
            Balance::LeastConn => {
                self.rotate = self.rotate.wrapping_add(1);
                let mut best: Option<usize> = None;
                for k in 0..n {
                    let i = (self.rotate + k) % n;
                    if !ok(self, i) {
                        continue;
                    }
                    best = match best {
                        Some(b) if !self.fewer(group, i, b) => Some(b),
                        _ => Some(i),
                    };
                }
                best
            }
            Balance::P2c { ewma } => {
                let a = self.weighted_random(group, rng, ok)?;
                let b = self.weighted_random(group, rng, ok)?;
                let (ca, cb) = (self.cost(group, a, *ewma), self.cost(group, b, *ewma));
                Some(if cb < ca { b } else { a })
            }
            Balance::Random => self.weighted_random(group, rng, ok),
        }
    }

    /// In flight per unit of weight: is `a` less loaded than `b`?
    fn fewer(&self, group: &UpstreamGroup, a: usize, b: usize) -> bool {
        let (fa, fb) = (
            u64::from(self.servers[a].in_flight),
            u64::from(self.servers[b].in_flight),
        );
        let (wa, wb) = (u64::from(weight(group, a)), u64::from(weight(group, b)));
        fa * wb < fb * wa
    }

    /// Load estimate for p2c: requests in flight (plus this one), times
    /// the latency average when asked for, per unit of weight.
    fn cost(&self, group: &UpstreamGroup, i: usize, ewma: bool) -> f64 {
        let s = &self.servers[i];
        let load = f64::from(s.in_flight + 1);
        let latency = if ewma && s.ewma_ns > 0.0 {
            s.ewma_ns
        } else {
            1.0
        };
        load * latency / f64::from(weight(group, i))
    }

    fn smooth_weighted(
        &mut self,
        group: &UpstreamGroup,
        ok: impl Fn(&GroupState, usize) -> bool,
    ) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut total = 0i64;
        for i in 0..group.servers.len() {
            if !ok(self, i) {
                continue;
            }
            let w = i64::from(weight(group, i));
            self.current[i] += w;
            total += w;
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        self.current[best] -= total;
        Some(best)
    }

    fn weighted_random(
        &self,
        group: &UpstreamGroup,
        rng: &mut Rng,
        ok: impl Fn(&GroupState, usize) -> bool,
    ) -> Option<usize> {
        let total: u64 = (0..group.servers.len())
            .filter(|&i| ok(self, i))
            .map(|i| u64::from(weight(group, i)))
            .sum();
        if total == 0 {
            return None;
        }
        let mut r = rng.next_u64() % total;
        for i in 0..group.servers.len() {
            if !ok(self, i) {
                continue;
            }
            let w = u64::from(weight(group, i));
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        None
    }

    /// Ends a request on server `i`: no longer in flight, and what its
    /// outcome says about the server (passive health).
    pub fn finish(&mut self, group: &UpstreamGroup, i: usize, outcome: Outcome, now: Instant) {
        self.settle(group, i, outcome, now);
        self.release(group, i);
    }

    /// Takes server `i` off the request's count: no longer in flight, its
    /// `max_conns` place given back. For a tunnel, once it closes (its
    /// outcome was settled when it opened).
    pub fn release(&mut self, group: &UpstreamGroup, i: usize) {
        let (Some(server), Some(state)) = (group.servers.get(i), self.servers.get_mut(i)) else {
            return;
        };
        state.in_flight = state.in_flight.saturating_sub(1);
        server.release_place();
    }

    /// What a request's outcome on server `i` says about the server
    /// (passive health); the request stays counted until `release`.
    pub fn settle(&mut self, group: &UpstreamGroup, i: usize, outcome: Outcome, now: Instant) {
        let ejected = self.servers.iter().filter(|s| s.is_ejected(now)).count();
        let (Some(server), Some(state)) = (group.servers.get(i), self.servers.get_mut(i)) else {
            return;
        };
        let was_probe = std::mem::take(&mut state.probing);
        match outcome {
            Outcome::Neutral => {}
            Outcome::Success(latency) => {
                state.fails = 0;
                if state.ejected_until.is_some_and(|until| now >= until) {
                    tracing::info!(group = %group.name, server = %server.addr, "server back after a successful probe");
                    state.ejected_until = None;
                    state.ejections = 0;
                }
                state.observe(latency, now);
            }
            Outcome::Failure => {
                state.fails += 1;
                let Some(outlier) = &group.outlier else {
                    return;
                };
                let allowed =
                    (group.servers.len() * outlier.max_ejected_percent as usize / 100).max(1);
                // A failed probe extends an ejection; a new one must fit
                // under the cap.
                if was_probe || (state.fails >= outlier.failures && ejected < allowed) {
                    let factor = 1u32 << state.ejections.min(16);
                    let backoff = outlier
                        .base_ejection
                        .saturating_mul(factor)
                        .min(outlier.max_ejection);
                    tracing::warn!(group = %group.name, server = %server.addr, failures = state.fails, ?backoff, "server ejected");
                    state.ejected_until = Some(now + backoff);
                    state.ejections += 1;
                    state.fails = 0;
                }
            }
        }
    }

    /// Adds one request's worth to the retry budget.
    pub fn earn_retry(&mut self, budget: f64) {
        let cap = RETRY_TOKENS_MIN.max(budget * 100.0);
        self.retry_tokens = (self.retry_tokens + budget).min(cap);
    }

    /// Spends one retry if the budget allows it.
    pub fn spend_retry(&mut self) -> bool {
        if self.retry_tokens >= 1.0 {
            self.retry_tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn can_retry(&self) -> bool {
        self.retry_tokens >= 1.0
    }
}

impl ServerState {
    /// Peak-EWMA: a slower response counts at once, faster ones pull the
    /// average down over `EWMA_DECAY`.
    fn observe(&mut self, latency: Duration, now: Instant) {
        let sample = latency.as_nanos() as f64;
        let elapsed = self
            .ewma_at
            .map_or(EWMA_DECAY, |at| now.saturating_duration_since(at));
        self.ewma_at = Some(now);
        if sample > self.ewma_ns {
            self.ewma_ns = sample;
        } else {
            let keep = (-elapsed.as_secs_f64() / EWMA_DECAY.as_secs_f64()).exp();
            self.ewma_ns = self.ewma_ns * keep + sample * (1.0 - keep);
        }
    }

    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }
}

/// Server `i`'s weight: the admin API's, else the configured one.
fn weight(group: &UpstreamGroup, i: usize) -> u32 {
    let server = &group.servers[i];
    server.health.weight_override().unwrap_or(server.weight)
}

/// A small fast generator (xorshift64*) for random and p2c picks.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(mix(seed) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// splitmix64's finaliser: spreads the bits of a hash or seed.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A stable 64-bit hash of bytes (FNV-1a, then mixed): the same key maps
/// to the same server on every worker and across restarts.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::upstream::AdminState;

    fn group(balance: &str) -> UpstreamGroup {
        let config = Config::from_toml_str(&format!(
            r#"
            [[listeners]]
            name = "main"
            bind = "127.0.0.1:0"
            [[routes]]
            path_prefix = "/"
            upstream = "web"
            [upstreams.web]
            servers = ["127.0.0.1:81", "127.0.0.1:82", "127.0.0.1:83"]
            {balance}
            "#
        ))
        .unwrap();
        config.upstreams[0].clone()
    }

    /// How many of `n` picks (each finished at once) each server got.
    fn spread(state: &mut GroupState, group: &UpstreamGroup, n: usize, hash: bool) -> Vec<usize> {
        let mut rng = Rng::new(7);
        let mut counts = vec![0; group.servers.len()];
        let now = Instant::now();
        for k in 0..n {
            let key = hash.then(|| mix(k as u64));
            let i = state
                .pick(group, key, &[], &[], &mut rng, now)
                .expect("a server");
            state.finish(group, i, Outcome::Neutral, now);
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn drained_and_maintained_servers_get_no_picks() {
        for balance in [
            "",
            r#"balance = "least_conn""#,
            r#"balance = "p2c""#,
            r#"balance = "random""#,
            "balance = \"hash\"\nhash = { key = \"path\" }",
        ] {
            let group = group(balance);
            let mut state = GroupState::new(&group);
            group.servers[0].health.set_admin_state(AdminState::Drain);
            group.servers[2]
                .health
                .set_admin_state(AdminState::Maintenance);
            let counts = spread(&mut state, &group, 300, true);
            assert_eq!(counts, [0, 300, 0], "{balance}");
            group.servers[0].health.set_admin_state(AdminState::Ready);
            let counts = spread(&mut state, &group, 300, true);
            assert!(counts[0] > 50 && counts[2] == 0, "{balance}: {counts:?}");
        }
    }

    /// Like workers, each thread balances on its own state; the servers'
    /// shared health (and `max_conns` count) is the only thing they share.
    #[test]
    fn workers_racing_for_the_last_place_never_overshoot_max_conns() {
        let config = Config::from_toml_str(
            r#"
            [[listeners]]
            name = "main"
            bind = "127.0.0.1:0"
            [[routes]]
            path_prefix = "/"
            upstream = "web"
            [upstreams.web]
            servers = [{ addr = "127.0.0.1:81", max_conns = 3 }]
            "#,
        )
        .unwrap();
        let group = Arc::new(config.upstreams[0].clone());
        let most = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let start = Arc::new(std::sync::Barrier::new(4));
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (group, most, start) = (group.clone(), most.clone(), start.clone());
                std::thread::spawn(move || {
                    let mut state = GroupState::new(&group);
                    let mut rng = Rng::new(w);
                    let health = &group.servers[0].health;
                    start.wait();
                    for _ in 0..50_000 {
                        // Two requests at once per worker: more want in
                        // than there are places.
                        let now = Instant::now();
                        let held =
                            [(); 2].map(|_| state.pick(&group, None, &[], &[], &mut rng, now));
                        most.fetch_max(health.active(), std::sync::atomic::Ordering::Relaxed);
                        for i in held.into_iter().flatten() {
                            state.finish(&group, i, Outcome::Neutral, now);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        let most = most.load(std::sync::atomic::Ordering::Relaxed);
        assert!(most <= 3, "{most} places taken of 3");
        assert_eq!(group.servers[0].health.active(), 0);
    }

    #[test]
    fn weight_overrides_shift_the_split() {
        for balance in [
            "",
            r#"balance = "random""#,
            "balance = \"hash\"\nhash = { key = \"path\" }",
        ] {
            let group = group(balance);
            let mut state = GroupState::new(&group);
            group.servers[1].health.set_weight_override(Some(8));
            // A hashed group's table follows on the worker's tick.
            state.refresh(&group);
            let counts = spread(&mut state, &group, 1000, true);
            assert!(counts[1] > 700, "{balance}: {counts:?}");
            group.servers[1].health.set_weight_override(None);
            state.refresh(&group);
            let counts = spread(&mut state, &group, 1000, true);
            assert!(counts[1] < 450, "{balance}: {counts:?}");
        }
    }
}
