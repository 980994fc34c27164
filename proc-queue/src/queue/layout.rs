//! The shared memory of a ring: the header's words and the slots, as byte offsets, and the
//! encoding of a slot's control word.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use proc_core::shm::{Segment, SharedMemory};

pub(super) const MAGIC: u32 = 0x6d70_7175; // "mpqu"

// Header words (byte offsets), each group on its own 64-byte line.
pub(super) const H_MAGIC: usize = 0;
pub(super) const H_CAPACITY: usize = 4;
pub(super) const H_SLOT_SIZE: usize = 8;
pub(super) const H_STRIDE: usize = 12;
pub(super) const H_MAX_MESSAGE: usize = 16; // u64
pub(super) const H_SHUTDOWN: usize = 24;
pub(super) const H_TAIL: usize = 64; // u64
pub(super) const H_HEAD: usize = 128; // u64
pub(super) const H_ITEMS: usize = 192;
pub(super) const H_GETTERS: usize = 196; // set by a getter about to sleep, cleared by the waker
pub(super) const H_JOINABLE: usize = 28; // set by `JoinableQueue::new`
pub(super) const H_BELL: usize = 32; // set by a `wait` that watches the queue, cleared by the ringer
pub(super) const H_SPACE: usize = 256;
pub(super) const H_PUTTERS: usize = 260; // likewise for putters
pub(super) const H_UNFINISHED: usize = 320; // u64
pub(super) const H_DONE: usize = 328;
pub(super) const H_JOINERS: usize = 332;
pub(super) const H_ATTACHED: usize = 36; // processes holding the queue (a killed one never leaves)
pub(super) const H_UNBOUNDED: usize = 40; // the queue grows a chain of rings instead of blocking `put`
pub(super) const H_GROUP: usize = 48; // u64: the resource tracker's group of the queue's named segments
                                      // In every ring of an unbounded queue: sealed (no new writes: go to the next ring), and the link
                                      // to the next ring (0: none; LINKING | pid: being linked; else the length of its name).
pub(super) const H_SEALED: usize = 336;
pub(super) const H_NEXT: usize = 340;
pub(super) const H_NEXT_NAME: usize = 344; // 32 bytes
pub(super) const LINKING: u32 = 1 << 31;

/// The spill free list's place in ring 0's header, and its entries (64 bytes each: state, name
/// length, size, then up to 32 bytes of name; see `spill`).
pub(super) const H_SPILL_LIST: usize = 384;
pub(super) const SPILL_ENTRIES: usize = 64;

// The spill free list ends the header.
pub(super) const HEADER: usize = H_SPILL_LIST + SPILL_ENTRIES * 64;

// Slot layout.
pub(super) const S_CTL: usize = 0; // u64
pub(super) const S_LEN: usize = 8; // u64
pub(super) const S_DATA: usize = 16;

// Low half of a slot's control word.
pub(super) const IDLE: u32 = 0;
pub(super) const WRITING: u32 = 1 << 31;
pub(super) const READING: u32 = 1 << 30;
pub(super) const VOID: u32 = 1 << 29;
pub(super) const PID_MASK: u32 = VOID - 1;

/// Set in a slot's length word when the data is a spill record: the chunk's name (up to 30
/// bytes; its length in the length word), at byte 32 the message's size and at byte 40 its
/// offset in the chunk.
pub(super) const SPILLED: u64 = 1 << 63;
pub(super) const SPILL_SIZE_AT: usize = 32;
pub(super) const SPILL_OFFSET_AT: usize = 40;
pub(super) const SPILL_RECORD: usize = 48;

pub(super) const OPEN: u32 = 0;
pub(super) const SHUT: u32 = 1;
pub(super) const SHUT_IMMEDIATE: u32 = 2;

pub(super) fn ctl(seq: u32, state: u32) -> u64 {
    (u64::from(seq) << 32) | u64::from(state)
}

pub(super) fn split(ctl: u64) -> (u32, u32) {
    ((ctl >> 32) as u32, ctl as u32)
}

/// `a - b` as a signed distance between wrapping sequences.
pub(super) fn dist(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// The sequence of a slot free for the writer of `pos`.
pub(super) fn free_seq(pos: u64) -> u32 {
    pos.wrapping_mul(2) as u32
}

/// The sequence of a slot holding the message of `pos`.
pub(super) fn full_seq(pos: u64) -> u32 {
    free_seq(pos).wrapping_add(1)
}

/// A ring's memory: anonymous for ring 0 (it travels as a handle), named for the later rings of
/// an unbounded queue (processes open them by the name ring 0 links).
pub(super) enum Mem {
    Anon(Segment),
    Named(SharedMemory),
}

impl Mem {
    pub(super) fn as_ptr(&self) -> *mut u8 {
        match self {
            Mem::Anon(s) => s.as_ptr(),
            Mem::Named(s) => s.as_ptr(),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Mem::Anon(s) => s.len(),
            Mem::Named(s) => s.size(),
        }
    }
}

/// A header word of `mem` (in bounds and aligned, asserted).
pub(super) fn word32(mem: &Mem, offset: usize) -> &AtomicU32 {
    assert!(offset % 4 == 0 && offset + 4 <= mem.len(), "queue word {offset} out of range");
    // SAFETY: in bounds (asserted) and 4-byte aligned (the mapping is page-aligned); the memory
    // lives as long as `mem`, and shared words are only accessed atomically.
    unsafe { AtomicU32::from_ptr(mem.as_ptr().add(offset).cast()) }
}

pub(super) fn word64(mem: &Mem, offset: usize) -> &AtomicU64 {
    assert!(offset % 8 == 0 && offset + 8 <= mem.len(), "queue word {offset} out of range");
    // SAFETY: as in `word32`, with 8-byte alignment.
    unsafe { AtomicU64::from_ptr(mem.as_ptr().add(offset).cast()) }
}

/// Puts a named segment of the queue whose ring 0 is `root` in the queue's tracker group.
pub(super) fn group_segment(root: &Mem, shm: &SharedMemory) {
    let group = word64(root, H_GROUP).load(Ordering::Relaxed);
    if group != 0 {
        proc_core::shm::group_segment(shm.name(), group);
    }
}
