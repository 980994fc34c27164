//! Errors of the synchronization primitives.

use std::fmt;

/// The previous holder of a lock died while holding it; you hold the lock now.
///
/// Like Rust's [`PoisonError`](std::sync::PoisonError): the guard inside is a valid guard, but the
/// data the lock protects may be half-updated by the dead holder. Check or repair it before
/// relying on it; [`into_guard`](Self::into_guard) takes the guard to carry on.
pub struct OwnerDied<G> {
    guard: G,
    pid: u32,
}

impl<G> OwnerDied<G> {
    pub(crate) fn new(guard: G, pid: u32) -> Self {
        OwnerDied { guard, pid }
    }

    /// The guard: the lock is held.
    pub fn into_guard(self) -> G {
        self.guard
    }

    /// The guard, borrowed.
    pub fn guard(&self) -> &G {
        &self.guard
    }

    /// The pid of the process that died holding the lock.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerDied").field("pid", &self.pid).finish_non_exhaustive()
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "process {} died holding the lock; it is yours now, but the data it protects may be inconsistent",
            self.pid
        )
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

/// A release that does not match an acquire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseError {
    /// The lock (or semaphore) was not held.
    NotHeld,
    /// An `RLock` released by a process or thread that does not own it.
    NotOwner,
    /// A `BoundedSemaphore` released above its initial value.
    AboveMaximum,
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReleaseError::NotHeld => "release of an unlocked lock",
            ReleaseError::NotOwner => "cannot release a lock owned by another process or thread",
            ReleaseError::AboveMaximum => "semaphore released too many times",
        })
    }
}

impl std::error::Error for ReleaseError {}
