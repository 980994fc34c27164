//! Errors of the synchronization primitives, and [`Error`], which each of them converts into.

use std::fmt;

/// A specialized `Result` for proc-sync, over [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any error of proc-sync: every error type of the crate (and proc-core's, met creating a
/// primitive) converts into it, so `?` works in a function that uses several primitives.
///
/// Converting an [`OwnerDied`] drops the guard it holds, which releases the lock (or permit):
/// handle `OwnerDied` itself to carry on holding it.
///
/// # Examples
///
/// ```
/// use proc_sync::{Barrier, Lock};
///
/// fn both() -> proc_sync::Result<()> {
///     let lock = Lock::new()?;
///     let _guard = lock.acquire()?;
///     Barrier::new(1)?.wait()?;
///     Ok(())
/// }
/// both().unwrap();
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A process died holding the lock or permit (an [`OwnerDied`], whose guard was dropped).
    #[error("process {pid} died holding the lock; the data it protects may be inconsistent")]
    OwnerDied {
        /// The pid of the process that died.
        pid: u32,
    },
    /// A release that does not match an acquire.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// A barrier could not be made or passed.
    #[error(transparent)]
    Barrier(#[from] BarrierError),
    /// The shared memory for a primitive could not be created (proc-core's error).
    #[error(transparent)]
    Os(#[from] proc_core::Error),
}

impl<G> From<OwnerDied<G>> for Error {
    /// Keeps the dead owner's pid and drops the guard, releasing the lock.
    fn from(e: OwnerDied<G>) -> Self {
        Error::OwnerDied { pid: e.pid }
    }
}

/// The previous holder of a lock died while holding it; you hold the lock now.
///
/// Like Rust's [`PoisonError`](std::sync::PoisonError): the guard inside is a valid guard, but the
/// data the lock protects may be half-updated by the dead holder. Check or repair it before
/// relying on it; [`into_guard`](Self::into_guard) takes the guard to carry on.
#[derive(thiserror::Error)]
#[error("process {pid} died holding the lock; it is yours now, but the data it protects may be inconsistent")]
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

/// A release that does not match an acquire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// The lock (or semaphore) was not held.
    #[error("release of an unlocked lock")]
    NotHeld,
    /// An `RLock` released by a process or thread that does not own it.
    #[error("cannot release a lock owned by another process or thread")]
    NotOwner,
    /// A `BoundedSemaphore` released above its initial value.
    #[error("semaphore released too many times")]
    AboveMaximum,
}

/// Why a [`Barrier`](crate::Barrier) could not be made or passed (Python's `BrokenBarrierError`
/// and `ValueError`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierError {
    /// The barrier is broken: a party timed out or aborted, the barrier was reset while this party
    /// waited, the action panicked in another party, or a process died holding its lock outside a
    /// wait (one that dies waiting gives [`PartyDied`](Self::PartyDied)).
    #[error("the barrier is broken")]
    Broken,
    /// A party of the round died while waiting: within about
    /// [`LIVENESS_CHECK`](crate::LIVENESS_CHECK) of the death, every waiter of the round gets this
    /// (one still asleep when a [`reset`](crate::Barrier::reset) comes gets `Broken`). The barrier
    /// is broken, and later waits get this too until a reset.
    #[error("process {pid}, a party of the barrier, died while waiting; the barrier is broken")]
    PartyDied {
        /// The pid of the party that died.
        pid: u32,
    },
    /// A timed wait's deadline passed before it could take the barrier's lock: another process
    /// held the lock all along (one stopped by a signal while holding it, say). This party did not
    /// join the round, and the barrier is unchanged (not broken).
    #[error("timed out waiting for the barrier's lock; the barrier is unchanged")]
    Timeout,
    /// The action panicked in this party (with this message); the barrier is broken.
    #[error("the barrier's action panicked: {0}")]
    ActionPanicked(String),
    /// A barrier needs at least one party.
    #[error("a barrier needs at least one party")]
    NoParties,
    /// The shared memory for the barrier could not be created (the cause is its
    /// [`source`](std::error::Error::source)).
    #[error("cannot create the barrier: {0}")]
    Os(#[from] proc_core::Error),
}
