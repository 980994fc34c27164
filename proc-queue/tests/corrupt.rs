//! Shared memory another process scribbled on (issue 17, item 2: "ring headers at attach").
//!
//! A queue's ring lives in memory that every process holding the queue can write. These
//! properties write arbitrary words into a real queue's ring (mostly onto words that hold state:
//! the header's geometry, positions, counts and spill table, the slots' control words, lengths
//! and spill records) or mangle its serialized handle, then decode the handle and use both the
//! copy and the original: every call must give a value or an error, never a panic, a hang, an
//! out-of-bounds access (a crash of the test binary) or an allocation past the queue's limits.

#![allow(clippy::unwrap_used)]

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use proc_core::handle::{deserialize_with_fds, serialize_with_fds};
use proc_queue::Queue;
use proptest::prelude::*;
use test_support::scribble::{config, scribble, writes};
use test_support::{run_helper, serial, shm_names, Watchdog};

/// The handle's shared memory among its descriptors (the others are the doorbell's sockets).
fn memory(fds: &[OwnedFd]) -> BorrowedFd<'_> {
    let file = |fd: &OwnedFd| std::fs::File::from(fd.try_clone().unwrap());
    let found = fds.iter().find(|fd| file(fd).metadata().is_ok_and(|m| m.is_file()));
    found.expect("a handle's memory descriptor").as_fd()
}

/// Every operation once or a few times; their results do not matter, only that they return.
fn exercise(q: &Queue<String>) {
    let _ = q.qsize();
    let _ = q.empty();
    let _ = q.full();
    for _ in 0..3 {
        let _ = q.get_nowait();
    }
    let _ = q.put_nowait("small".to_string());
    let _ = q.put_nowait("large ".repeat(100));
    let _ = q.get_timeout(Duration::from_millis(1));
    let _ = q.put_timeout("again".to_string(), Duration::from_millis(1));
    for _ in 0..3 {
        let _ = q.get_nowait();
    }
}

/// A queue holding a small and a spilled message, its handle's bytes and descriptors.
fn queue_with_items(unbounded: bool) -> (Queue<String>, Vec<u8>, Vec<OwnedFd>) {
    let q = if unbounded { Queue::unbounded().unwrap() } else { Queue::new(4).unwrap() };
    q.put("first".to_string()).unwrap();
    q.put("spilled ".repeat(64)).unwrap();
    let (bytes, fds) = serialize_with_fds(&q).unwrap();
    (q, bytes, fds)
}

/// Decodes the handle, and uses the copy and the original.
fn decode_and_use(q: &Queue<String>, bytes: &[u8], fds: Vec<OwnedFd>) {
    if let Ok(copy) = deserialize_with_fds::<Queue<String>>(bytes, fds) {
        exercise(&copy);
    }
    exercise(q);
}

proptest! {
    #![proptest_config(config(256))]

    /// The ring's words hold arbitrary values.
    #[test]
    fn scribbled_state_words_are_refused_or_survived(unbounded in any::<bool>(), w in writes(6)) {
        let _serial = serial();
        let _dog = Watchdog::new("scribbled_state_words_are_refused_or_survived", Duration::from_secs(60));
        let (q, bytes, fds) = queue_with_items(unbounded);
        scribble(memory(&fds), &w);
        decode_and_use(&q, &bytes, fds);
    }

    /// The handle's own bytes (the segment's descriptor index and length, the doorbell's
    /// descriptors) are mutated or cut.
    #[test]
    fn a_mangled_handle_is_refused_or_works(
        unbounded in any::<bool>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let _serial = serial();
        let _dog = Watchdog::new("a_mangled_handle_is_refused_or_works", Duration::from_secs(60));
        let (q, mut bytes, fds) = queue_with_items(unbounded);
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= b;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        decode_and_use(&q, &bytes, fds);
    }
}

/// The program of the test below: queues scribbled on, used and dropped.
#[test]
#[ignore = "run by the test below, in a process of its own"]
fn helper_scribbled_queues() {
    let mut runner = proptest::test_runner::TestRunner::new(config(32));
    runner
        .run(&(any::<bool>(), writes(6)), |(unbounded, w)| {
            let (q, bytes, fds) = queue_with_items(unbounded);
            scribble(memory(&fds), &w);
            decode_and_use(&q, &bytes, fds);
            Ok(())
        })
        .unwrap();
}

/// Scribbled words can hide a queue's named segments (spill chunks, later rings of an unbounded
/// queue) from the queue itself: the count of attached processes, or the free list that names
/// them, says something else. Such a segment stays until the program ends, as those of a process
/// killed while it held the queue do, and then the resource tracker unlinks it: nothing is left.
#[test]
fn scribbled_queues_leave_nothing_once_the_program_ends() {
    let _serial = serial();
    let _dog =
        Watchdog::new("scribbled_queues_leave_nothing_once_the_program_ends", Duration::from_secs(120));
    let before = shm_names();
    // The output is read to its end, which comes when the tracker (which holds stderr too) exits.
    let out = run_helper("helper_scribbled_queues", &[("PROPTEST_CASES", "32")]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let left: Vec<_> = shm_names().difference(&before).cloned().collect();
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}
