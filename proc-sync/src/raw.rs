//! The wait/wake seam and process liveness, re-exported from [`proc_os`], the workspace's OS layer
//! (the queue, pool and manager crates use `proc_os` directly).
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

#[doc(inline)]
pub use proc_os::{pid, process_alive, wait, wake, wake_all};
