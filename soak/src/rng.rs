//! A small seeded generator (SplitMix64): every random choice of a run follows from its seed, so
//! `--seed` replays the same rounds (the same parameters, victims and moments; the timing of the
//! processes themselves is the machine's).

/// SplitMix64 (Steele, Lea, Flood 2014): one 64-bit state, good enough to pick victims.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// The seed of round `round` of a run seeded `seed`.
pub(crate) fn round_seed(seed: u64, round: u64) -> u64 {
    Rng::new(seed ^ round.wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

/// FNV-1a over `bytes`, the checksum of a message.
pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_rounds() {
        assert_eq!(round_seed(7, 3), round_seed(7, 3));
        assert_ne!(round_seed(7, 3), round_seed(7, 4));
        assert_ne!(round_seed(7, 3), round_seed(8, 3));
    }

    #[test]
    fn range_stays_within_its_bounds_and_reaches_both() {
        let mut rng = Rng::new(1);
        let drawn: Vec<u64> = (0..1000).map(|_| rng.range(3, 5)).collect();
        assert!(drawn.iter().all(|n| (3..=5).contains(n)));
        assert!(drawn.contains(&3) && drawn.contains(&5));
    }
}
