//! Shared memory another process scribbled on, and handles mangled on the way (issue 17, item 2:
//! "handle decoding (`RawArray`, `Value`, ...)").
//!
//! Every primitive's state lives in memory that every process holding it can write. These
//! properties write arbitrary words into a real primitive's region (mostly onto words that hold
//! state: lock words, counts, holder and waiter slots, generations, headers) or mangle its
//! serialized handle, then decode the handle and use the copy and the original through their
//! timed calls: each must give a value or an error, never a panic, a hang, or an out-of-bounds
//! access (a crash of the test binary). Untimed calls are used only once a timed one found the
//! lock free: a word that names a live process is a held lock, and waiting for it is right.

#![allow(clippy::unwrap_used)]

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use proc_core::handle::{deserialize_with_fds, serialize_with_fds};
use proc_sync::{Array, Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore, Value};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use test_support::scribble::{config, scribble, writes, Write};
use test_support::{serial, Watchdog};

const SHORT: Duration = Duration::from_millis(1);

/// Applies `writes` to the shared memory behind every descriptor of a handle.
fn scribble_all(fds: &[OwnedFd], writes: &[Write]) {
    for fd in fds {
        scribble(fd.as_fd(), writes);
    }
}

/// Uses a lock through its timed acquire; true if it was free (or its owner dead) and is again.
fn lock_is_free(lock: &Lock) -> bool {
    match lock.acquire_timeout(SHORT) {
        Ok(Some(_)) => true,
        Err(died) => {
            drop(died.into_guard());
            true
        }
        Ok(None) => false,
    }
}

/// A primitive of each kind, with what using it means.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Lock,
    RLock,
    Semaphore,
    BoundedSemaphore,
    Event,
    Condition,
    Barrier,
    Value,
    Array,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Lock),
        Just(Kind::RLock),
        Just(Kind::Semaphore),
        Just(Kind::BoundedSemaphore),
        Just(Kind::Event),
        Just(Kind::Condition),
        Just(Kind::Barrier),
        Just(Kind::Value),
        Just(Kind::Array),
    ]
}

fn use_lock(l: &Lock) {
    let _ = lock_is_free(l);
    let _ = l.locked();
}

fn use_rlock(l: &RLock) {
    match l.acquire_timeout(SHORT) {
        Ok(Some(g)) => drop(g),
        Err(died) => drop(died.into_guard()),
        Ok(None) => {}
    }
    let _ = l.locked();
}

fn use_semaphore(s: &Semaphore) {
    if s.acquire_timeout(SHORT) {
        s.release();
    }
    let _ = s.get_value();
}

fn use_bounded(s: &BoundedSemaphore) {
    if s.acquire_timeout(SHORT) {
        let _ = s.release();
    }
    let _ = s.release();
    let _ = s.get_value();
}

fn use_event(e: &Event) {
    let _ = e.is_set();
    let _ = e.wait_timeout(SHORT);
    e.set();
    let _ = e.wait_timeout(SHORT);
    e.clear();
}

fn use_condition(c: &Condition) {
    let guard = match c.acquire_timeout(SHORT) {
        Ok(Some(g)) => Some(g),
        Err(died) => died.into_guard(),
        Ok(None) => None,
    };
    if let Some(mut g) = guard {
        let _ = g.notify(1);
        let _ = g.wait_timeout(SHORT);
        let _ = g.notify_all();
    }
}

fn use_barrier(b: &Barrier) {
    let _ = b.parties();
    let _ = b.n_waiting();
    let _ = b.broken();
    let _ = b.wait_timeout(SHORT);
    let _ = b.wait_timeout(SHORT);
}

fn use_value(v: &Value<u64>) {
    if lock_is_free(v.get_lock()) {
        let x = v.get();
        v.set(x.wrapping_add(1));
    }
}

fn use_array(a: &Array<u32>) {
    if lock_is_free(a.get_lock()) {
        let _ = a.get(0);
        let _ = a.get(a.len().saturating_sub(1));
        let _ = a.set(a.len().saturating_sub(1), 7);
        let _ = a.to_vec();
    }
}

/// Decodes `bytes` as a `T`, and uses the copy (if any) and the original with `use_it`.
fn decode_and_use<T: Serialize + DeserializeOwned>(
    original: &T,
    bytes: &[u8],
    fds: Vec<OwnedFd>,
    use_it: fn(&T),
) {
    if let Ok(copy) = deserialize_with_fds::<T>(bytes, fds) {
        use_it(&copy);
    }
    use_it(original);
}

/// Moves this process' allocator on to a fresh arena (small primitives share 64 KiB arenas) and
/// returns the lock in its first slot. The next primitive's slots follow it, so the arena's only
/// nonzero words are its header's and that primitive's (a free lock is all zero), and scribbles
/// aimed at words that hold state mostly land on the primitive's, as when it had a page of its own.
fn fresh_arena() -> Lock {
    loop {
        let lock = Lock::new().unwrap();
        let (bytes, _fds) = serialize_with_fds(&lock).unwrap();
        // A region's wire form: (arena id, descriptor index, arena length, offset, length).
        let (_, _, _, offset, _): (u128, u32, u64, u64, u64) = proc_core::codec::from_bytes(&bytes).unwrap();
        if offset == 64 {
            return lock;
        }
    }
}

/// Makes a primitive of `kind` in a fresh arena, lets `mangle` change its handle's bytes and
/// memory, then decodes and uses it.
fn run(kind: Kind, mangle: impl FnOnce(&mut Vec<u8>, &[OwnedFd])) {
    let _first = fresh_arena();
    fn go<T: Serialize + DeserializeOwned>(
        t: T,
        mangle: impl FnOnce(&mut Vec<u8>, &[OwnedFd]),
        use_it: fn(&T),
    ) {
        let (mut bytes, fds) = serialize_with_fds(&t).unwrap();
        mangle(&mut bytes, &fds);
        decode_and_use(&t, &bytes, fds, use_it);
    }
    match kind {
        Kind::Lock => go(Lock::new().unwrap(), mangle, use_lock),
        Kind::RLock => go(RLock::new().unwrap(), mangle, use_rlock),
        Kind::Semaphore => go(Semaphore::new(2).unwrap(), mangle, use_semaphore),
        Kind::BoundedSemaphore => go(BoundedSemaphore::new(2).unwrap(), mangle, use_bounded),
        Kind::Event => go(Event::new().unwrap(), mangle, use_event),
        Kind::Condition => go(Condition::new().unwrap(), mangle, use_condition),
        Kind::Barrier => go(Barrier::new(3).unwrap(), mangle, use_barrier),
        Kind::Value => go(Value::new(41u64).unwrap(), mangle, use_value),
        Kind::Array => go(Array::from_slice(&[1u32, 2, 3, 4, 5]).unwrap(), mangle, use_array),
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// The primitive's memory holds arbitrary words.
    #[test]
    fn scribbled_state_is_refused_or_survived(kind in kind(), w in writes(6)) {
        let _serial = serial();
        let _dog = Watchdog::new("scribbled_state_is_refused_or_survived", Duration::from_secs(60));
        run(kind, |_, fds| scribble_all(fds, &w));
    }

    /// The handle's own bytes (descriptor indexes, lengths, counts) are mutated or cut.
    #[test]
    fn a_mangled_handle_is_refused_or_works(
        kind in kind(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let _serial = serial();
        let _dog = Watchdog::new("a_mangled_handle_is_refused_or_works", Duration::from_secs(60));
        run(kind, |bytes, _| {
            for (at, b) in flips {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] ^= b;
                }
            }
            if truncate {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
        });
    }
}

/// A place in an arena to name: an extreme word, a slot boundary, or a small number.
fn place() -> impl Strategy<Value = u64> {
    prop_oneof![test_support::scribble::word(), (0u64..2048).prop_map(|s| s * 64), 0u64..200]
}

proptest! {
    #![proptest_config(config(512))]

    /// A lock handle whose region names any arena length, offset and length (and perhaps another
    /// arena id) is refused, or decodes to a place that is slot-aligned, past the arena's header
    /// and inside it, and the lock there works.
    #[test]
    fn a_region_at_any_place_is_refused_or_inside_its_arena(
        arena_len in place(),
        offset in place(),
        len in place(),
        other_id in any::<bool>(),
    ) {
        let _serial = serial();
        let _dog = Watchdog::new("a_region_at_any_place_is_refused_or_inside_its_arena", Duration::from_secs(60));
        let lock = Lock::new().unwrap();
        let (bytes, fds) = serialize_with_fds(&lock).unwrap();
        // A region's wire form: (arena id, descriptor index, arena length, offset, length).
        let (id, index, real_len, _, _): (u128, u32, u64, u64, u64) = proc_core::codec::from_bytes(&bytes).unwrap();
        let id = if other_id { id ^ 1 << 77 } else { id };
        let bytes = proc_core::codec::to_vec(&(id, index, arena_len, offset, len)).unwrap();
        if let Ok(copy) = deserialize_with_fds::<Lock>(&bytes, fds) {
            prop_assert!(!other_id, "a region of another arena id decoded");
            prop_assert!(offset % 64 == 0 && offset >= 64 && len >= 24, "offset {offset}, length {len}");
            prop_assert!(offset.checked_add(len).is_some_and(|end| end <= real_len.min(arena_len)));
            use_lock(&copy);
        }
        use_lock(&lock);
    }
}

/// A timed barrier wait keeps its deadline while another (live) process holds the barrier's lock:
/// here the barrier's memory names this process everywhere: its pid in the first two 32-bit
/// words of every 64-byte slot of the arenas it is carved from (the lock word among them), its
/// process token in every other 64-bit word (the owner's token among them). (The wait used to take
/// the lock without a deadline, so for ever.)
#[test]
fn a_timed_barrier_wait_gives_up_on_a_held_lock() {
    let _serial = serial();
    let _dog = Watchdog::new("a_timed_barrier_wait_gives_up_on_a_held_lock", Duration::from_secs(30));
    let barrier = Barrier::new(2).unwrap();
    let (_, fds) = serialize_with_fds(&barrier).unwrap();
    let pid = u64::from(std::process::id());
    let token = proc_os::current_process_token();
    for fd in &fds {
        let file = std::fs::File::from(fd.try_clone().unwrap());
        let Ok(map) = memmap2::MmapOptions::new().map_raw(&file) else { continue };
        // The first slot is the arena's header, which a decode in this process does not read.
        for i in 8..map.len() / 8 {
            let value = if i % 8 == 0 { pid | pid << 32 } else { token };
            // SAFETY: 64-bit word `i` is inside the page-aligned mapping, which lives until the end
            // of this loop's body; nothing else touches the barrier meanwhile.
            unsafe { map.as_mut_ptr().cast::<u64>().add(i).write_volatile(value) };
        }
    }
    let got = barrier.wait_timeout(Duration::from_millis(20));
    assert!(matches!(got, Err(proc_sync::BarrierError::Timeout)), "{got:?}");
}
