//! The floors of queues: a shared-memory SPSC ring of `u64`s, a byte ring (two copies), a backlog
//! through memory a fresh producer has not mapped yet, and `memcpy`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::gate::{spin_until, Child, Gate};
use crate::shared::SharedMap;

/// The slots of the raw `u64` ring: as many as an unbounded `Queue` has.
pub const RING_SLOTS: usize = 1 << 16;
/// The raw byte ring's size.
pub const BYTE_RING: usize = 2 << 20;
/// The most bytes the byte ring's producer or consumer moves in one step.
const BYTE_RING_CHUNK: usize = 256 << 10;
/// Where the ring's positions lie: the producer's `tail` and the consumer's `head` on their own
/// cache lines, the data from byte 256.
const RING_TAIL: usize = 0;
const RING_HEAD: usize = 128;
const RING_DATA: usize = 256;

/// The floor of one producer → one consumer of `u64`s: a single-producer single-consumer ring of
/// [`RING_SLOTS`] 8-byte slots in `MAP_SHARED` memory, `tail`/`head` atomics, waiting by spinning
/// (and yielding, so a pinned peer runs). A child made by a raw `fork` puts `0..n`; the parent
/// gets them. Returns the time from the start gate until the parent has all `n`.
///
/// # Panics
///
/// If the child fails, a wait exceeds [`BOUND`](crate::BOUND) or the sum is wrong.
pub fn floor_spsc_ring(n: u64) -> Duration {
    let map = SharedMap::new(RING_DATA + RING_SLOTS * 8);
    let gate = Gate::new();
    let slots = map.at(RING_DATA).cast::<u64>();
    let mask = RING_SLOTS as u64 - 1;
    let produce = || {
        if !gate.arrive() {
            return false;
        }
        let (tail, head) = (map.u64_at(RING_TAIL), map.u64_at(RING_HEAD));
        let mut cached_head = head.load(Ordering::Acquire);
        for i in 0..n {
            if i - cached_head >= RING_SLOTS as u64 {
                if !spin_until(|| i - head.load(Ordering::Acquire) < RING_SLOTS as u64) {
                    return false;
                }
                cached_head = head.load(Ordering::Acquire);
            }
            // SAFETY: slot `i & mask` is inside the ring and free: the consumer is past it.
            unsafe { slots.add((i & mask) as usize).write_volatile(i) };
            tail.store(i + 1, Ordering::Release);
        }
        gate.finish();
        true
    };
    // SAFETY: the body uses atomics, plain stores into the shared mapping, sched_yield and
    // clock_gettime.
    let child = unsafe { Child::fork(produce) };
    let (tail, head) = (map.u64_at(RING_TAIL), map.u64_at(RING_HEAD));
    let start = gate.open();
    let mut sum = 0u64;
    let mut cached_tail = 0;
    for i in 0..n {
        if i >= cached_tail {
            assert!(spin_until(|| tail.load(Ordering::Acquire) > i), "the ring's producer stopped");
            cached_tail = tail.load(Ordering::Acquire);
        }
        // SAFETY: slot `i & mask` is inside the ring and committed: the producer is past it.
        sum = sum.wrapping_add(unsafe { slots.add((i & mask) as usize).read_volatile() });
        head.store(i + 1, Ordering::Release);
    }
    let elapsed = start.elapsed();
    assert!(child.reap(), "the ring's producer failed");
    assert_eq!(sum, n.wrapping_mul(n.wrapping_sub(1)) / 2, "lost items");
    elapsed
}

/// The floor of one producer → one consumer of `msg`-byte messages with two copies: a byte ring
/// of [`BYTE_RING`] bytes in `MAP_SHARED` memory; the producer (a child made by a raw `fork`)
/// copies each message from its own buffer into the ring, the parent copies it out into its own
/// buffer, in steps of up to 256 KiB. `n` messages; the time from the start gate until the parent
/// has them all.
///
/// # Panics
///
/// If the child fails, a wait exceeds [`BOUND`](crate::BOUND) or the last message arrives corrupted.
pub fn floor_byte_ring(n: u64, msg: usize) -> Duration {
    let map = SharedMap::new(RING_DATA + BYTE_RING);
    let gate = Gate::new();
    let data = map.at(RING_DATA);
    let cap = BYTE_RING as u64;
    let source: Vec<u8> = (0..msg).map(|i| i as u8).collect();
    let mut sink = vec![0u8; msg];
    let total = n * msg as u64;
    let produce = || {
        if !gate.arrive() {
            return false;
        }
        let (tail, head) = (map.u64_at(RING_TAIL), map.u64_at(RING_HEAD));
        let mut pos = 0u64;
        while pos < total {
            let mut free = cap - (pos - head.load(Ordering::Acquire));
            if free == 0 {
                if !spin_until(|| pos - head.load(Ordering::Acquire) < cap) {
                    return false;
                }
                free = cap - (pos - head.load(Ordering::Acquire));
            }
            let in_msg = (pos % msg as u64) as usize;
            let at = (pos % cap) as usize;
            let step = (msg - in_msg).min(free as usize).min(BYTE_RING - at).min(BYTE_RING_CHUNK);
            // SAFETY: `step` bytes from `at` lie inside the ring and are free (the consumer
            // is past them); the source range lies inside `source`.
            unsafe { std::ptr::copy_nonoverlapping(source.as_ptr().add(in_msg), data.add(at), step) };
            pos += step as u64;
            tail.store(pos, Ordering::Release);
        }
        gate.finish();
        true
    };
    // SAFETY: the body uses atomics, memcpy into the shared mapping from memory allocated before
    // the fork, sched_yield and clock_gettime.
    let child = unsafe { Child::fork(produce) };
    let (tail, head) = (map.u64_at(RING_TAIL), map.u64_at(RING_HEAD));
    let start = gate.open();
    let mut pos = 0u64;
    while pos < total {
        let mut ready = tail.load(Ordering::Acquire) - pos;
        if ready == 0 {
            assert!(spin_until(|| tail.load(Ordering::Acquire) > pos), "the byte ring's producer stopped");
            ready = tail.load(Ordering::Acquire) - pos;
        }
        let in_msg = (pos % msg as u64) as usize;
        let at = (pos % cap) as usize;
        let step = (msg - in_msg).min(ready as usize).min(BYTE_RING - at).min(BYTE_RING_CHUNK);
        // SAFETY: `step` bytes from `at` lie inside the ring and are committed (the producer is
        // past them); the destination range lies inside `sink`.
        unsafe { std::ptr::copy_nonoverlapping(data.add(at), sink.as_mut_ptr().add(in_msg), step) };
        pos += step as u64;
        head.store(pos, Ordering::Release);
    }
    let elapsed = start.elapsed();
    assert!(child.reap(), "the byte ring's producer failed");
    assert!(n == 0 || sink == source, "the last message arrived corrupted");
    elapsed
}

/// The floor of a queue's backlog: `msg`-byte messages through `MAP_SHARED` memory that a fresh
/// producer has not mapped yet, two copies, in rounds of `round` messages (the region holds one
/// round). Each round's producer is a new child made by a raw `fork` (so it inherits the region but
/// none of its page mappings, as a queue's fresh producer maps its chunks); it maps a MiB at a time
/// ahead of its writes (`MADV_POPULATE_WRITE` on Linux, as a queue's spill chunks do) and copies
/// every message of the round in. Once it has finished, the parent copies them all out. The time
/// of each round from its start gate until the parent has every message, summed.
///
/// The pages themselves are allocated once, by the first round, as a queue keeps its chunks for
/// reuse. What this measures is what a backlog costs beyond keeping up when no queue logic is
/// involved: the producer's page mapping, and writes and reads out of the caches.
///
/// # Panics
///
/// If a child fails, a wait exceeds [`BOUND`](crate::BOUND) or the last message arrives corrupted.
#[derive(Debug)]
pub struct BacklogFloor {
    map: SharedMap,
    msg: usize,
    round: u64,
}

impl BacklogFloor {
    /// A region for rounds of `round` messages of `msg` bytes.
    pub fn new(msg: usize, round: u64) -> Self {
        let len = (msg as u64 * round).next_multiple_of(4096) as usize;
        BacklogFloor { map: SharedMap::new(len.max(4096)), msg, round }
    }

    /// `n` messages, in rounds.
    pub fn run(&self, n: u64) -> Duration {
        let msg = self.msg;
        let source: Vec<u8> = (0..msg).map(|i| i as u8).collect();
        let mut sink = vec![0u8; msg];
        let data = self.map.at(0);
        let mut total = Duration::ZERO;
        let mut left = n;
        while left > 0 {
            let count = left.min(self.round);
            left -= count;
            let gate = Gate::new();
            let produce = || {
                if !gate.arrive() {
                    return false;
                }
                let mut mapped = 0usize;
                for i in 0..count as usize {
                    let (at, end) = (i * msg, (i + 1) * msg);
                    if end > mapped {
                        let to = end.max(mapped + (1 << 20)).min(self.map.len);
                        populate_write(self.map.at(mapped), to - mapped);
                        mapped = to;
                    }
                    // SAFETY: message `i` lies inside the region (it holds a round); the parent
                    // reads it only after `finish`.
                    unsafe { std::ptr::copy_nonoverlapping(source.as_ptr(), data.add(at), msg) };
                }
                gate.finish();
                true
            };
            // SAFETY: the body uses atomics, madvise and memcpy into the shared mapping from
            // memory allocated before the fork, sched_yield and clock_gettime.
            let child = unsafe { Child::fork(produce) };
            let start = gate.open();
            gate.wait_finished();
            for i in 0..count as usize {
                // SAFETY: message `i` lies inside the region and was written before `finish`.
                unsafe { std::ptr::copy_nonoverlapping(data.add(i * msg), sink.as_mut_ptr(), msg) };
                std::hint::black_box(&mut sink);
            }
            total += start.elapsed();
            assert!(child.reap(), "the backlog floor's producer failed");
        }
        assert!(n == 0 || sink == source, "the last message arrived corrupted");
        total
    }
}

/// Maps `len` bytes from `ptr` writable ahead of the writes (Linux); nothing elsewhere, where the
/// writes fault the pages in.
fn populate_write(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: the range lies inside a mapping of this process; MADV_POPULATE_WRITE only faults
    // its pages in (a kernel without it fails with EINVAL, which is ignored).
    unsafe {
        libc::madvise(ptr.cast(), len, libc::MADV_POPULATE_WRITE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

/// The floor of copying `msg` bytes once: `n` `memcpy`s between two buffers of this process
/// (allocated and touched before the clock starts).
pub fn floor_memcpy(n: u64, msg: usize) -> Duration {
    let source: Vec<u8> = (0..msg).map(|i| i as u8).collect();
    let mut sink = vec![0u8; msg];
    let start = Instant::now();
    for _ in 0..n {
        sink.copy_from_slice(std::hint::black_box(&source));
        std::hint::black_box(&mut sink);
    }
    start.elapsed()
}
