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

/// Why a [`Barrier`](crate::Barrier) could not be made or passed (Python's `BrokenBarrierError`
/// and `ValueError`).
#[derive(Debug)]
#[non_exhaustive]
pub enum BarrierError {
    /// The barrier is broken: a party timed out or aborted, the barrier was reset while this party
    /// waited, the action panicked in another party, or a party died holding its lock.
    Broken,
    /// The action panicked in this party (with this message); the barrier is broken.
    ActionPanicked(String),
    /// A barrier needs at least one party.
    NoParties,
    /// The shared memory for the barrier could not be created.
    Os(proc_core::Error),
}

impl From<proc_core::Error> for BarrierError {
    fn from(e: proc_core::Error) -> Self {
        BarrierError::Os(e)
    }
}

impl fmt::Display for BarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarrierError::Broken => f.write_str("the barrier is broken"),
            BarrierError::ActionPanicked(m) => write!(f, "the barrier's action panicked: {m}"),
            BarrierError::NoParties => f.write_str("a barrier needs at least one party"),
            BarrierError::Os(e) => write!(f, "cannot create the barrier: {e}"),
        }
    }
}

impl std::error::Error for BarrierError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BarrierError::Os(e) => Some(e),
            _ => None,
        }
    }
}
