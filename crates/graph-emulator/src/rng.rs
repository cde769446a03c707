//! A tiny deterministic pseudo-random generator (SplitMix64) for synthetic mailbox content.
//!
//! Why not `rand::StdRng`: its algorithm is explicitly not portable across `rand` versions, and
//! the emulator promises "same seed -> same ids and bytes" across dependency upgrades. SplitMix64
//! is a dozen lines, has good statistical quality for test data and never changes.
//! This module is not for secrets: tokens and codes use the OS generator (`rand::rng()`).

/// SplitMix64 generator (Steele, Lea, Flood 2014).
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// Creates a generator from a seed.
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Creates a generator from several parts (e.g. mailbox seed and message number), mixing
    /// them so that neighbouring inputs give unrelated streams.
    pub(crate) fn from_parts(parts: &[u64]) -> Self {
        let mut g = Self::new(0x9E37_79B9_7F4A_7C15);
        let mut acc = 0u64;
        for p in parts {
            g.state ^= p.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            acc = acc.rotate_left(17) ^ g.next_u64();
        }
        Self::new(acc)
    }

    /// Next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform value in `0..n` (`n` > 0; returns 0 for `n == 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Multiply-shift reduction; the tiny bias is irrelevant for test data.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Picks one element of a non-empty slice (first element for an empty one is impossible,
    /// callers only pass constant non-empty tables).
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let i = self.below(items.len() as u64) as usize;
        &items[i.min(items.len().saturating_sub(1))]
    }

    /// True with probability `p` (0.0..=1.0).
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }

    /// Fills a buffer with random bytes.
    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_parts_differ() {
        let mut a = SplitMix64::from_parts(&[1, 2]);
        let mut b = SplitMix64::from_parts(&[1, 2]);
        let mut c = SplitMix64::from_parts(&[1, 3]);
        let xa: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let xb: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        let xc: Vec<u64> = (0..4).map(|_| c.next_u64()).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
    }

    #[test]
    fn known_answer_splitmix64() {
        // Reference value of SplitMix64 seeded with 0 (first output), from the published algorithm.
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn below_stays_in_range() {
        let mut g = SplitMix64::new(7);
        for n in [1u64, 2, 3, 10, 1000] {
            for _ in 0..100 {
                assert!(g.below(n) < n);
            }
        }
        assert_eq!(g.below(0), 0);
    }
}
