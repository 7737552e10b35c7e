//! Maglev consistent hashing (Google, NSDI 2016): a lookup table filled
//! from each server's own permutation of its slots, so keys spread evenly
//! and adding or removing one of N servers moves only about 1/N of them.
//! Weights are honoured by letting a server claim that many slots per
//! round.

use super::balancer::{hash_bytes, mix};

#[derive(Debug)]
pub struct Maglev {
    /// Slot → server index.
    table: Vec<u32>,
}

/// Table sizes: primes, so every skip value walks all slots.
const SIZES: [usize; 6] = [1031, 4099, 16411, 65537, 262147, 1048583];

impl Maglev {
    /// `servers`: a stable identity (e.g. "10.0.0.1:80") and weight each.
    pub fn new(servers: &[(String, u32)]) -> Maglev {
        let total: usize = servers.iter().map(|(_, w)| *w as usize).sum();
        // About 1000 slots per unit of weight: fewer keys move between the
        // remaining servers when one is added or removed (and the spread
        // is even to well under 1%).
        let size = SIZES
            .iter()
            .copied()
            .find(|&m| m >= total.saturating_mul(1000))
            .unwrap_or(SIZES[SIZES.len() - 1]);
        // Nothing can claim a slot (no servers, or only weightless ones).
        if total == 0 {
            return Maglev { table: Vec::new() };
        }
        let mut table = vec![u32::MAX; size];
        let perms: Vec<(usize, usize)> = servers
            .iter()
            .map(|(name, _)| {
                let h = hash_bytes(name.as_bytes());
                let offset = (h % size as u64) as usize;
                let skip = (mix(h ^ 0x5bd1_e995) % (size as u64 - 1)) as usize + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0usize; servers.len()];
        let mut filled = 0;
        'fill: loop {
            for (i, (_, weight)) in servers.iter().enumerate() {
                for _ in 0..*weight {
                    let (offset, skip) = perms[i];
                    let mut slot = (offset + next[i] * skip) % size;
                    while table[slot] != u32::MAX {
                        next[i] += 1;
                        slot = (offset + next[i] * skip) % size;
                    }
                    table[slot] = i as u32;
                    next[i] += 1;
                    filled += 1;
                    if filled == size {
                        break 'fill;
                    }
                }
            }
        }
        Maglev { table }
    }

    /// The server for a key's hash.
    pub fn lookup(&self, hash: u64) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        Some(self.table[(hash % self.table.len() as u64) as usize] as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(n: usize) -> Vec<(String, u32)> {
        (0..n)
            .map(|i| (format!("10.0.{}.{}:80", i / 256, i % 256), 1))
            .collect()
    }

    fn owners(m: &Maglev, keys: u64) -> Vec<usize> {
        (0..keys)
            .map(|k| m.lookup(hash_bytes(&k.to_le_bytes())).unwrap())
            .collect()
    }

    #[test]
    fn spreads_keys_evenly() {
        let m = Maglev::new(&servers(10));
        let mut counts = [0u32; 10];
        for o in owners(&m, 100_000) {
            counts[o] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn adding_or_removing_one_server_moves_about_one_in_n_keys() {
        const N: usize = 20;
        const KEYS: u64 = 100_000;
        let before = owners(&Maglev::new(&servers(N)), KEYS);
        // Add one server: about 1/(N+1) of keys move, all to it.
        let added = owners(&Maglev::new(&servers(N + 1)), KEYS);
        let moved = before.iter().zip(&added).filter(|(a, b)| a != b).count();
        let ideal = KEYS as usize / (N + 1);
        eprintln!("add one of {N}: {moved} of {KEYS} keys moved (ideal {ideal})");
        assert!(moved < ideal * 5 / 4, "moved {moved}, ideal {ideal}");
        assert!(moved > ideal / 2, "moved {moved}, ideal {ideal}");
        let to_new = before
            .iter()
            .zip(&added)
            .filter(|(a, b)| a != b && **b == N)
            .count();
        assert!(
            to_new * 10 > moved * 9,
            "{to_new} of {moved} went to the new server"
        );
        // Remove the last server: only its keys (about 1/N) move.
        let removed = owners(&Maglev::new(&servers(N - 1)), KEYS);
        let moved = before.iter().zip(&removed).filter(|(a, b)| a != b).count();
        let ideal = KEYS as usize / N;
        eprintln!("remove one of {N}: {moved} of {KEYS} keys moved (ideal {ideal})");
        assert!(moved < ideal * 5 / 4, "moved {moved}, ideal {ideal}");
        let were_its = before.iter().filter(|&&o| o == N - 1).count();
        assert!(moved >= were_its, "its {were_its} keys must all move");
    }

    #[test]
    fn weightless_servers_make_an_empty_table() {
        let m = Maglev::new(&[(String::new(), 0)]);
        assert_eq!(m.lookup(42), None);
        assert_eq!(Maglev::new(&[]).lookup(42), None);
    }

    #[test]
    fn weights_get_proportional_slots() {
        let m = Maglev::new(&[("a:1".into(), 3), ("b:1".into(), 1)]);
        let mut counts = [0u32; 2];
        for o in owners(&m, 40_000) {
            counts[o] += 1;
        }
        assert!((28_000..32_000).contains(&counts[0]), "{counts:?}");
    }
}
