//! Tests of the spill protocol against what killed processes leave.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::queue::layout::{ctl, free_seq, full_seq, READING};
// The tests drive the ring through the public `Queue`, which sits above `spill`: a test-only
// import against the direction of the module graph.
use crate::queue::Queue;

/// The pid of a process that has ended and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// The unread count (and held bit) of the chunk this process writes into.
fn held_state(ring: &Ring) -> u64 {
    let writer = ring.writer.lock().unwrap();
    chunk_state(&writer.held.as_ref().expect("a held chunk").shm).load(Ordering::Acquire)
}

#[test]
fn a_dead_readers_spilled_message_is_counted_read_once_by_racing_putters() {
    let q = Queue::<Vec<u8>>::new(2).unwrap();
    let ring = &*q.ring;
    let (a, b, c) = (vec![1u8; 1000], vec![2u8; 1000], vec![3u8; 5000]);
    q.put(a).unwrap();
    q.put(b.clone()).unwrap();
    assert_eq!(held_state(ring), CHUNK_HELD | 2);
    // A reader claims the first message and dies before releasing its slot.
    let (claim, void) = ring.claim_read(false).unwrap();
    assert!(!void);
    let dead = ctl(full_seq(claim.pos), READING | dead_pid());
    ring.slot_ctl(claim.pos).store(dead, Ordering::SeqCst);
    // Two putters both find it (both loaded `dead`) and repair it, one after the other: only
    // the one whose swap frees the slot counts the message read.
    let next_lap = claim.pos + 2;
    ring.free_dead_read(next_lap, dead);
    ring.free_dead_read(next_lap, dead);
    assert_eq!(ring.slot_ctl(claim.pos).load(Ordering::SeqCst), ctl(free_seq(next_lap), 0));
    assert_eq!(held_state(ring), CHUNK_HELD | 1, "b is still unread in the chunk");
    // So the producer does not start again at the chunk's front: `c`, longer than `a`, would
    // overwrite `b` there.
    q.put(c.clone()).unwrap();
    assert_eq!(held_state(ring), CHUNK_HELD | 2);
    assert_eq!(q.get().unwrap(), b);
    assert_eq!(q.get().unwrap(), c);
    assert_eq!(held_state(ring), CHUNK_HELD);
    assert!(q.empty());
}

/// The names of the chunks in the free list marked free.
fn free_chunks(ring: &Ring) -> Vec<String> {
    (0..SPILL_ENTRIES)
        .filter(|&entry| ring.entry(entry).state.load(Ordering::Acquire) == ENTRY_FREE)
        .filter_map(|entry| ring.entry_name(entry))
        .collect()
}

/// This process' chunk, as a process that died holding it leaves it: its entry `HELD | pid`
/// of a dead pid, and the process' own writer forgets it.
fn die_holding(ring: &Ring) -> (Arc<SharedMemory>, usize) {
    let held = ring.writer.lock().unwrap().held.take().expect("a held chunk");
    ring.entry(held.entry).state.store(ENTRY_HELD | (dead_pid() & PID_MASK), Ordering::Release);
    (held.shm, held.entry)
}

#[test]
fn a_chunk_whose_holder_died_mid_put_is_let_go() {
    let q = Queue::<Vec<u8>>::new(4).unwrap();
    let ring = &*q.ring;
    let (a, b, c) = (vec![1u8; 1000], vec![2u8; 1000], vec![3u8; 1000]);
    // Its producer puts `a`, reserves room for `b` and is killed before committing it.
    q.put(a.clone()).unwrap();
    let size = proc_core::codec::serialized_size(&b).unwrap();
    let Ok(_reserved) = ring.spill(&b, size) else { panic!("spill failed") };
    let (dead, entry) = die_holding(ring);
    assert_eq!(chunk_state(&dead).load(Ordering::Acquire), CHUNK_HELD | 2);
    // The next producer that looks for a chunk lets it go for the dead one: the entry is
    // free again, and the chunk stays counted unread while `a` (and the lost `b`) are.
    q.put(c.clone()).unwrap();
    assert_eq!(ring.entry(entry).state.load(Ordering::Acquire), ENTRY_EMPTY, "the dead holder's entry");
    assert_eq!(chunk_state(&dead).load(Ordering::Acquire), 2);
    assert_eq!(q.get().unwrap(), a);
    assert_eq!(q.get().unwrap(), c);
    assert_eq!(chunk_state(&dead).load(Ordering::Acquire), 1, "the reservation never committed");
    assert!(free_chunks(ring).is_empty());

    // A producer killed with messages unread but nothing reserved: its chunk goes to the free
    // list when the last of them is read.
    let q = Queue::<Vec<u8>>::new(4).unwrap();
    let ring = &*q.ring;
    q.put(a.clone()).unwrap();
    let (dead, _) = die_holding(ring);
    q.put(c.clone()).unwrap();
    assert_eq!(chunk_state(&dead).load(Ordering::Acquire), 1);
    assert_eq!(q.get().unwrap(), a);
    assert_eq!(free_chunks(ring), [dead.name().to_owned()]);
    assert_eq!(q.get().unwrap(), c);
}
