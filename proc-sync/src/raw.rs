//! The wait/wake seam and process liveness, for the other crates of multiproc (queues, pools)
//! that build their own shared-memory protocols on it.
//!
//! A word is any `AtomicU32` in memory shared between processes (a `MAP_SHARED` mapping such as
//! a [`proc_core::shm::Segment`]): the calls use the shared (not process-private) form.
//!
//! # Examples
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//!
//! let word = AtomicU32::new(0);
//! // Sleep while the word is 0, at most 1 ms, then look again: a wait/wake loop.
//! while word.load(Ordering::SeqCst) == 0 {
//!     if !proc_sync::raw::wait(&word, 0, Some(Duration::from_millis(1))) {
//!         word.store(1, Ordering::SeqCst); // timed out; stands in for another process' store
//!     }
//! }
//! proc_sync::raw::wake(&word, 1);
//! // The word no longer holds the expected value: the wait returns at once.
//! assert!(proc_sync::raw::wait(&word, 0, None));
//! ```

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use crate::sys;

/// Sleeps while `word` holds `expected`, at most `timeout` (`None`: no limit). Returns false only
/// when the timeout passed; true means "look again" (woken, changed, interrupted or spurious), so
/// callers loop on their own condition.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    sys::wait(word, expected, timeout)
}

/// Wakes up to `n` processes or threads sleeping in [`wait`] on `word`.
pub fn wake(word: &AtomicU32, n: u32) {
    sys::wake(word, n)
}

/// Wakes every process or thread sleeping in [`wait`] on `word`.
pub fn wake_all(word: &AtomicU32) {
    sys::wake_all(word)
}

/// Whether process `pid` is running; an ended process not yet reaped (a zombie) counts as dead.
/// Costs system calls: check it on slow paths only.
pub fn process_alive(pid: u32) -> bool {
    sys::process_alive(pid)
}

/// This process' id, cached (no system call), correct after `fork`.
pub fn pid() -> u32 {
    sys::pid()
}
