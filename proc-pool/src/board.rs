//! The board: a small shared-memory table where each worker posts the task it is running and
//! when it started it, so the supervisor knows exactly which task a dead worker was running and
//! how long a task has run.

use std::sync::atomic::{AtomicU64, Ordering};

use proc_core::shm::Segment;

use proc_os::monotonic_ns;
use serde::{Deserialize, Serialize};

/// No task: the worker is between tasks (or in its initializer).
const IDLE: u64 = u64::MAX;

/// Words per worker slot: the running task's id, and its start (monotonic nanoseconds).
const WORDS: usize = 2;

/// One entry per worker slot, in an anonymous shared segment (a handle: it crosses to the
/// workers as a start argument).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Board {
    segment: Segment,
}

impl Board {
    /// A board of `slots` entries, every one idle.
    ///
    /// # Errors
    ///
    /// The system refuses the shared memory.
    pub(crate) fn new(slots: usize) -> proc_core::Result<Self> {
        let board = Board { segment: Segment::new(slots.max(1) * WORDS * 8)? };
        for slot in 0..slots {
            board.clear(slot);
        }
        Ok(board)
    }

    /// Another handle to the same board.
    ///
    /// # Errors
    ///
    /// Out of descriptors or address space.
    pub(crate) fn try_clone(&self) -> proc_core::Result<Self> {
        Ok(Board { segment: self.segment.try_clone()? })
    }

    fn word(&self, slot: usize, k: usize) -> Option<&AtomicU64> {
        let offset = (slot * WORDS + k) * 8;
        if offset + 8 > self.segment.len() {
            return None;
        }
        // SAFETY: the segment is mapped for `len()` bytes for as long as `self` lives, and the
        // offset is in bounds (checked above) and 8-byte aligned (the mapping is page-aligned and
        // the offset a multiple of 8). The memory is shared with other processes, which only
        // ever access it through atomics, and every bit pattern is a valid u64.
        Some(unsafe { &*self.segment.as_ptr().add(offset).cast::<AtomicU64>() })
    }

    /// Posts that worker `slot` runs task `id` from now on.
    pub(crate) fn set_running(&self, slot: usize, id: u64) {
        if let (Some(started), Some(running)) = (self.word(slot, 1), self.word(slot, 0)) {
            started.store(monotonic_ns(), Ordering::Relaxed);
            running.store(id, Ordering::Release);
        }
    }

    /// Posts that worker `slot` runs nothing.
    pub(crate) fn clear(&self, slot: usize) {
        if let Some(running) = self.word(slot, 0) {
            running.store(IDLE, Ordering::Release);
        }
    }

    /// The task worker `slot` runs, and since when (monotonic nanoseconds).
    pub(crate) fn running(&self, slot: usize) -> Option<(u64, u64)> {
        let id = self.word(slot, 0)?.load(Ordering::Acquire);
        if id == IDLE {
            return None;
        }
        Some((id, self.word(slot, 1)?.load(Ordering::Relaxed)))
    }
}
