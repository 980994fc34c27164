//! Shared memory another process scribbled on: proptest strategies of writes onto the words of a
//! mapping (mostly onto words that hold state), the writing itself through a second mapping, and
//! the configuration the scribbling properties run under.

use std::os::fd::BorrowedFd;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// A word to write: extremes that a length, count or position check must survive, this process'
/// pid (a lock word naming a live owner), and anything.
pub fn word() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::from(u32::MAX)),
        Just(1 << 31),
        Just(1 << 30),
        Just(u64::from(std::process::id())),
        Just(u64::from(std::process::id()) | 1 << 31),
        Just(u64::MAX),
        Just(1 << 63),
        any::<u32>().prop_map(u64::from),
        any::<u64>(),
    ]
}

/// One write: where (an index into the words that hold something, or into all words), what,
/// and whether 4 or 8 bytes.
#[derive(Clone, Debug)]
pub struct Write {
    at: prop::sample::Index,
    live: bool,
    value: u64,
    wide: bool,
}

/// Up to `n` writes, most of them onto words that hold state, the rest anywhere.
pub fn writes(n: usize) -> impl Strategy<Value = Vec<Write>> {
    let one = (any::<prop::sample::Index>(), prop::bool::weighted(0.8), word(), any::<bool>())
        .prop_map(|(at, live, value, wide)| Write { at, live, value, wide });
    prop::collection::vec(one, 1..=n)
}

/// Applies `writes` to the shared memory behind `fd`, mapped a second time; nothing if `fd`
/// cannot be mapped (a socket among a handle's descriptors).
///
/// # Panics
///
/// If `fd` cannot be duplicated.
pub fn scribble(fd: BorrowedFd<'_>, writes: &[Write]) {
    let file = std::fs::File::from(fd.try_clone_to_owned().expect("duplicate a descriptor"));
    let Ok(map) = memmap2::MmapOptions::new().map_raw(&file) else { return };
    let words = map.len() / 4;
    let base = map.as_mut_ptr();
    // SAFETY: the mapping is page-aligned and a whole number of pages long, so it holds `words`
    // aligned u32s, and it lives until the end of this function; nothing else in this process
    // touches the memory while the test reads it.
    let read = |i: usize| unsafe { base.cast::<u32>().add(i).read_volatile() };
    let live: Vec<usize> = (0..words).filter(|&i| read(i) != 0).collect();
    for w in writes {
        let word = if w.live && !live.is_empty() { live[w.at.index(live.len())] } else { w.at.index(words) };
        // SAFETY: as for `read`: `word` is below `words`, and `word / 2` below `words / 2`, the
        // number of aligned u64s the mapping holds.
        unsafe {
            if w.wide {
                base.cast::<u64>().add(word / 2).write_volatile(w.value);
            } else {
                base.cast::<u32>().add(word).write_volatile(w.value as u32);
            }
        }
    }
}

/// `cases` cases from a fixed seed, so that a run in CI is repeatable; `PROPTEST_RNG_SEED` (and
/// `PROPTEST_CASES`) explore further.
pub fn config(cases: u32) -> Config {
    let mut config = Config { cases, failure_persistence: None, ..Config::default() };
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x6d70_7175);
    }
    if let Some(cases) = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()) {
        config.cases = cases;
    }
    config
}
