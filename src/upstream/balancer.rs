//! Smooth weighted round-robin (the nginx algorithm): every pick adds each
//! server's weight to its running score, takes the highest, and subtracts
//! the total from it. Spreads picks evenly, with no bursts to heavy servers.

#[derive(Debug, Clone)]
pub struct SmoothWeighted {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl SmoothWeighted {
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        let total = weights.iter().sum();
        SmoothWeighted {
            current: vec![0; weights.len()],
            weights,
            total,
        }
    }

    /// Index of the next server, or None when there are no servers.
    pub fn pick(&mut self) -> Option<usize> {
        if self.weights.len() <= 1 {
            return (!self.weights.is_empty()).then_some(0);
        }
        let mut best = 0;
        for i in 0..self.weights.len() {
            self.current[i] += self.weights[i];
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= self.total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_sequence() {
        let mut b = SmoothWeighted::new([5, 1, 1]);
        let picks: Vec<usize> = (0..7).map(|_| b.pick().unwrap()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn even_split() {
        let mut b = SmoothWeighted::new([1, 1, 1, 1]);
        let mut counts = [0; 4];
        for _ in 0..400 {
            counts[b.pick().unwrap()] += 1;
        }
        assert_eq!(counts, [100; 4]);
        assert_eq!(SmoothWeighted::new([]).pick(), None);
    }
}
