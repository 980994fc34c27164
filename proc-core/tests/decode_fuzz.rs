//! Property tests of proc-core's decoders against bytes another process could write: the codec
//! (postcard through proc-core's adapter) for message-shaped values, and handle decoding (`Fd`,
//! `Segment`, `SharedMemory`, `StaticFn`, `CodeAddr`) with the descriptors beside the bytes. The
//! bootstrap and report messages are crate-private; their properties sit in
//! `src/child/bootstrap.rs`.
//!
//! Whatever arrives: a value or an error, never a panic, a fault or a hang; the allocations stay
//! within what the bytes call for (a sequence whose length prefix lies allocates at most serde's
//! 1 MiB cautious first step); and every descriptor handed to the decoder is either owned by the
//! value or closed.
//!
//! Failures are reproducible: proptest's persistence files are off (`failure_persistence: None`),
//! and a failing case prints its minimal input, which becomes a plain regression test here.

#![allow(clippy::unwrap_used)]

use std::os::fd::OwnedFd;

use proc_core::codec;
use proc_core::handle::{deserialize_with_fds, serialize_with_fds, CodeAddr, Fd, StaticFn};
use proc_core::shm::{Segment, SharedMemory};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde::{Deserialize, Serialize};
use test_support::{alloc::measure, serial};

#[global_allocator]
static ALLOC: test_support::alloc::Counting = test_support::alloc::Counting;

/// serde's cautious preallocation for a sequence whose length comes from the bytes.
const CAUTIOUS: usize = 1 << 20;

fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// The descriptors this process has open (Linux: `/proc/self/fd`; elsewhere none are counted).
fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

/// A message-shaped value: what proc-core's own messages and a typical argument hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Message {
    flag: bool,
    name: String,
    ident: Vec<u32>,
    pid: u32,
    offset: i64,
    args: Vec<u8>,
    nested: Vec<Vec<u16>>,
    maybe: Option<Box<Option<String>>>,
    kind: Kind,
    pairs: Vec<(u64, char)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Unit,
    Newtype(i16),
    Tuple(u8, Vec<u8>),
    Struct { a: u128, b: Option<u64> },
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Unit),
        any::<i16>().prop_map(Kind::Newtype),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..20)).prop_map(|(a, b)| Kind::Tuple(a, b)),
        (any::<u128>(), any::<Option<u64>>()).prop_map(|(a, b)| Kind::Struct { a, b }),
    ]
}

prop_compose! {
    fn message()(
        flag in any::<bool>(),
        name in ".{0,40}",
        ident in prop::collection::vec(any::<u32>(), 0..8),
        pid in any::<u32>(),
        offset in any::<i64>(),
        args in prop::collection::vec(any::<u8>(), 0..300),
        nested in prop::collection::vec(prop::collection::vec(any::<u16>(), 0..5), 0..5),
        maybe in any::<Option<Option<String>>>(),
        kind in kind(),
        pairs in prop::collection::vec((any::<u64>(), any::<char>()), 0..5),
    ) -> Message {
        Message { flag, name, ident, pid, offset, args, nested, maybe: maybe.map(Box::new), kind, pairs }
    }
}

/// Decodes `bytes` as every shape below, measuring what each allocates.
fn decode_all(bytes: &[u8]) -> Vec<(usize, usize)> {
    fn one<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> (usize, usize) {
        let (_, largest, growth) = measure(|| codec::from_bytes::<T>(bytes).is_ok());
        (largest, growth)
    }
    vec![
        one::<Message>(bytes),
        one::<Vec<u8>>(bytes),
        one::<String>(bytes),
        one::<Vec<u64>>(bytes),
        one::<Vec<Vec<u32>>>(bytes),
        one::<Vec<String>>(bytes),
        one::<Option<Option<Option<Vec<u128>>>>>(bytes),
        one::<std::collections::BTreeMap<u32, Vec<u8>>>(bytes),
        one::<(Kind, Kind, Kind)>(bytes),
    ]
}

/// What decoding `n` bytes may allocate: serde's cautious first step for each of a few nested
/// sequences, plus a multiple of the bytes (a varint byte can stand for a 16-byte integer).
fn bounds(n: usize) -> (usize, usize) {
    (CAUTIOUS.max(32 * n) + 4096, 4 * CAUTIOUS + 64 * n + 4096)
}

proptest! {
    #![proptest_config(config(256))]

    /// What the codec encodes, it decodes to the same value, with no bytes left over.
    #[test]
    fn messages_round_trip(m in message()) {
        let bytes = codec::to_vec(&m).unwrap();
        let (back, rest) = codec::take_from_bytes::<Message>(&bytes).unwrap();
        prop_assert_eq!(back, m);
        prop_assert!(rest.is_empty());
    }

    /// Arbitrary bytes: a value or an error, allocations bounded by what the bytes call for.
    #[test]
    fn arbitrary_bytes_decode_or_fail_within_bounds(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let (largest_bound, growth_bound) = bounds(bytes.len());
        for (largest, growth) in decode_all(&bytes) {
            prop_assert!(largest <= largest_bound, "largest allocation {largest}");
            prop_assert!(growth <= growth_bound, "live bytes grew by {growth}");
        }
    }

    /// Every strict prefix of a valid encoding is an error (postcard is self-delimiting), and
    /// the same bounds hold.
    #[test]
    fn every_truncation_is_an_error(m in message()) {
        let bytes = codec::to_vec(&m).unwrap();
        for cut in 0..bytes.len() {
            let (got, largest, _) = measure(|| codec::from_bytes::<Message>(&bytes[..cut]).is_ok());
            prop_assert!(!got, "a prefix of {cut} of {} bytes decoded", bytes.len());
            prop_assert!(largest <= bounds(cut).0, "largest allocation {largest}");
        }
    }

    /// A valid encoding with one bit flipped, or one byte set to a huge varint's first byte:
    /// a value or an error within the bounds.
    #[test]
    fn mutated_encodings_stay_within_bounds(m in message(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = codec::to_vec(&m).unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let mut huge = bytes.clone();
        huge.splice(i..=i, [0xff; 10]);
        for bytes in [bytes, huge] {
            let (got, largest, growth) = measure(|| codec::from_bytes::<Message>(&bytes).is_ok());
            let _ = got;
            prop_assert!(largest <= bounds(bytes.len()).0, "largest allocation {largest}");
            prop_assert!(growth <= bounds(bytes.len()).1, "live bytes grew by {growth}");
        }
    }

    /// A length prefix up to `u64::MAX` in front of a few bytes: an error, and at most serde's
    /// cautious step allocated, never the claimed length.
    #[test]
    fn a_lying_length_prefix_allocates_little(len in (1u64 << 16).., tail in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = codec::to_vec(&len).unwrap();
        bytes.extend_from_slice(&tail);
        for (largest, growth) in decode_all(&bytes) {
            prop_assert!(largest <= bounds(bytes.len()).0, "largest allocation {largest}");
            prop_assert!(growth <= bounds(bytes.len()).1, "live bytes grew by {growth}");
        }
    }

    /// Handles from arbitrary bytes with `n` descriptors beside them: a value or an error, and
    /// every descriptor either in the value or closed.
    #[test]
    fn handle_decoding_never_leaks_descriptors(
        bytes in prop::collection::vec(any::<u8>(), 0..40),
        n in 0usize..4,
    ) {
        let _serial = serial();
        let before = open_fds();
        {
            let fds = || -> Vec<OwnedFd> {
                (0..n).map(|_| OwnedFd::from(std::fs::File::open("/dev/null").unwrap())).collect()
            };
            let _ = deserialize_with_fds::<Fd>(&bytes, fds());
            let _ = deserialize_with_fds::<(Fd, Vec<Fd>, Option<Fd>)>(&bytes, fds());
            let _ = deserialize_with_fds::<Vec<Segment>>(&bytes, fds());
            let _ = deserialize_with_fds::<(StaticFn, Fd)>(&bytes, fds());
        }
        prop_assert_eq!(open_fds(), before, "a descriptor was leaked");
    }

    /// A segment's length from the bytes: mapped only when the memory behind the descriptor has
    /// that many bytes, never zero, so no access can fault.
    #[test]
    fn a_segment_never_maps_past_its_memory(len in prop_oneof![Just(0u64), 1u64..20_000, any::<u64>()], index in 0u32..3) {
        let _serial = serial();
        let seg = Segment::new(8192).unwrap();
        let (_, mut fds) = serialize_with_fds(&seg).unwrap();
        let other = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        fds.push(other);
        let bytes = codec::to_vec(&(index, len)).unwrap();
        match deserialize_with_fds::<Segment>(&bytes, fds) {
            Ok(got) => {
                prop_assert_eq!(index, 0);
                prop_assert!(got.len() as u64 == len && (1..=8192).contains(&len), "{}", got.len());
                // SAFETY: the segment is `len` bytes long and nothing else touches it now.
                unsafe { got.as_ptr().add(got.len() - 1).write(1) };
            }
            // Index 1 is /dev/null (no bytes), index 2 is missing.
            Err(_) => prop_assert!(index != 0 || len == 0 || len > 8192, "refused {index} {len}"),
        }
    }

    /// A shared-memory name from the bytes: an error (no such segment, or a refused name).
    #[test]
    fn a_shared_memory_name_from_garbage_is_refused(name in ".{0,80}") {
        let bytes = codec::to_vec(&format!("no-such-segment-{name}")).unwrap();
        prop_assert!(deserialize_with_fds::<SharedMemory>(&bytes, Vec::new()).is_err());
    }

    /// A function's place from arbitrary bytes: an error, never a read of memory outside this
    /// binary's code (a fault, before the fix), and a real function's place still resolves.
    #[test]
    fn a_garbled_code_address_is_an_error(bytes in any::<[u8; 16]>(), delta in any::<i64>()) {
        prop_assert!(CodeAddr::from_bytes(&bytes).resolve().is_err());
        let real = CodeAddr::of(target as fn() as usize);
        prop_assert_eq!(real.resolve().unwrap(), target as fn() as usize);
        let mut moved = real.to_bytes();
        let offset = i64::from_le_bytes(moved[..8].try_into().unwrap()).wrapping_add(delta);
        moved[..8].copy_from_slice(&offset.to_le_bytes());
        let got = CodeAddr::from_bytes(&moved).resolve();
        prop_assert!(delta == 0 || got.is_err());
        // The same bytes as a `StaticFn` handle.
        prop_assert!(deserialize_with_fds::<StaticFn>(&codec::to_vec(&bytes).unwrap(), Vec::new()).is_err());
    }
}

fn target() {}

/// Regressions: offsets that pointed outside any mapping (a fault in `resolve` before the fix),
/// into this binary's start, and into another loaded object (libc).
#[test]
fn code_addresses_outside_the_code_are_errors() {
    let real = CodeAddr::of(target as fn() as usize);
    let base = i64::from_le_bytes(real.to_bytes()[..8].try_into().unwrap());
    let libc_fn = libc::getpid as unsafe extern "C" fn() -> libc::pid_t as usize as i64
        - target as fn() as usize as i64;
    for offset in [1i64 << 40, -(1i64 << 40), i64::MIN, i64::MAX, base.wrapping_add(libc_fn), 0x1000] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&offset.to_le_bytes());
        assert!(CodeAddr::from_bytes(&bytes).resolve().is_err(), "offset {offset:#x}");
    }
}

/// Regression: a segment of zero bytes decoded (a `Segment` is never empty).
#[test]
fn a_zero_length_segment_is_refused() {
    let seg = Segment::new(4096).unwrap();
    let (_, fds) = serialize_with_fds(&seg).unwrap();
    let bytes = codec::to_vec(&(0u32, 0u64)).unwrap();
    let e = deserialize_with_fds::<Segment>(&bytes, fds).unwrap_err();
    let chain = test_support::error_chain(&e);
    assert!(chain.contains("zero"), "{chain}");
}

/// The measurements above can fail: the counter sees an allocation, and on Linux the descriptor
/// count sees a new descriptor.
#[test]
fn the_counters_see_what_they_count() {
    let (v, largest, growth) = measure(|| vec![1u8; 1 << 20]);
    assert!(largest >= 1 << 20 && growth >= 1 << 20, "{largest} {growth}");
    drop(v);
    // The lock first: a test that opens descriptors holds it, so none opens or closes one
    // between the two counts.
    let _serial = serial();
    if let Some(before) = open_fds() {
        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(open_fds(), Some(before + 1));
        drop(file);
    }
}
