//! Cross-process synchronization for [multiproc](https://docs.rs/multiproc): Python's `Lock`,
//! `RLock`, `Semaphore`, `BoundedSemaphore`, `Event`, `Condition`, `Barrier`, `Value` and `Array`,
//! as state words in shared memory over one wait/wake seam (futex on Linux;
//! `os_sync_wait_on_address` or `__ulock` on macOS, looked up at run time; polling as the last
//! resort).
//!
//! ```
//! use proc_core::Process;
//! use proc_sync::{Lock, Value};
//!
//! fn add(counter: Value<u64>, n: u64) {
//!     for _ in 0..n {
//!         counter.update(|c| *c += 1);
//!     }
//! }
//!
//! let counter = Value::new(0u64).unwrap();
//! let workers: Vec<_> =
//!     (0..4).map(|_| Process::new(add, (counter.clone(), 1000)).start().unwrap()).collect();
//! for w in workers {
//!     w.join().unwrap();
//! }
//! assert_eq!(counter.get(), 4000);
//! # let _ = Lock::new();
//! ```
//!
//! Every primitive is a handle: pass it (or a clone) as a start argument and the child gets the
//! same shared state, under every start method; serialized anywhere else it refuses. A lock whose
//! holder died does not hang the others: the next acquirer gets [`OwnerDied`], which holds the
//! guard, like Rust's `PoisonError`. The same holds for a semaphore permit taken with
//! [`Semaphore::acquire_guard`].
//!
//! What the caller may assume after [`OwnerDied`]: the lock (or permit) is now validly held by
//! the caller and the primitive works normally from then on; the data it protected was left as
//! the dead holder's last completed stores made it: each aligned word is either old or new (never
//! torn), but a multi-word update may be half done. Check or repair it before relying on it.
#![warn(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]
// The loom models leave out `Value` and `Array` (raw bytes in shared memory), and with them the
// lock's helpers that only they use.
#![cfg_attr(proc_sync_loom, allow(dead_code))]

mod barrier;
mod condition;
mod error;
mod lock;
pub mod raw;
#[cfg(not(proc_sync_loom))]
mod region;
/// Under the loom models, a region is a heap block of loom atomics.
#[cfg(proc_sync_loom)]
mod region {
    pub(crate) use crate::shim::model::Region;
}
mod semaphore;
mod shim;
#[cfg(not(proc_sync_loom))]
mod value;

pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard};
pub use error::{BarrierError, Error, OwnerDied, ReleaseError, Result};
pub use lock::{AcquireResult, Lock, LockGuard, RLock, RLockGuard, LIVENESS_CHECK};
pub use semaphore::{BoundedSemaphore, Event, Semaphore, SemaphoreGuard, HOLDER_SLOTS};
#[cfg(proc_sync_loom)]
pub use shim::model;
#[cfg(not(proc_sync_loom))]
pub use value::{Array, RawArray, RawValue, Value};

/// The wait/wake mechanism in use: `"futex"`, `"os_sync_wait_on_address"`, `"__ulock_wait"` or
/// `"polling"`.
pub fn backend() -> &'static str {
    proc_os::wait_backend()
}

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctest;
