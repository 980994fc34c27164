//! The facade's one error type, [`Error`], which every crate's errors convert into.

use proc_queue::{GetError, JoinError, PutError};
use proc_sync::{BarrierError, OwnerDied, ReleaseError};

/// A specialized `Result` over [`Error`], for a `main` (or any function) that uses several
/// parts of multiproc with `?`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any multiproc error: one variant per crate, each showing its crate's error as it is
/// (the same message, the same [`source`](std::error::Error::source) chain).
///
/// Every crate's error converts into it, so `?` works across crates:
///
/// - proc-core's [`process::Error`](crate::process::Error) into [`Process`](Error::Process);
/// - proc-sync's [`sync::Error`](crate::sync::Error), and each error that converts into it
///   ([`OwnerDied`], [`ReleaseError`], [`BarrierError`]), into [`Sync`](Error::Sync). An
///   `OwnerDied` drops the guard it holds, which releases the lock;
/// - proc-queue's [`queue::Error`](crate::queue::Error) (connections), [`PutError`],
///   [`GetError`] and [`JoinError`] into [`Queue`](Error::Queue). A `PutError` drops the value
///   it hands back: take it first with [`PutError::into_inner`] to keep it;
/// - proc-pool's [`pool::Error`](crate::pool::Error) into [`Pool`](Error::Pool);
/// - proc-manager's [`manager::Error`](crate::manager::Error) and
///   [`manager::PutError`](crate::manager::PutError) (dropping the value) into
///   [`Manager`](Error::Manager).
///
/// # Examples
///
/// ```
/// use multiproc::{Lock, Process, Queue};
///
/// fn double(x: u32) -> u32 {
///     x * 2
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let lock = Lock::new()?;
///     let _guard = lock.acquire()?;
///     let q = Queue::new(1)?;
///     q.put(Process::new(double, (21,)).start()?.join()?)?;
///     assert_eq!(q.get()?, 42);
///     Ok(())
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A process, shared memory or handle failed (proc-core).
    #[error(transparent)]
    Process(#[from] proc_core::Error),
    /// A lock, semaphore, barrier or shared value failed (proc-sync).
    #[error(transparent)]
    Sync(#[from] proc_sync::Error),
    /// A queue, pipe or `wait` failed (proc-queue).
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The pool or one of its tasks failed (proc-pool).
    #[error(transparent)]
    Pool(#[from] proc_pool::Error),
    /// The manager or one of its proxies failed (proc-manager).
    #[error(transparent)]
    Manager(#[from] proc_manager::Error),
}

/// Any error of proc-queue, as [`Error::Queue`] holds it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A connection (a pipe end) or `wait` failed.
    #[error(transparent)]
    Connection(#[from] proc_queue::Error),
    /// A `put` failed; the value it handed back was dropped.
    #[error(transparent)]
    Put(#[from] PutError<()>),
    /// A `get` failed.
    #[error(transparent)]
    Get(#[from] GetError),
    /// A joinable queue's `task_done` or `join` failed.
    #[error(transparent)]
    Join(#[from] JoinError),
}

impl From<proc_queue::Error> for Error {
    fn from(e: proc_queue::Error) -> Self {
        Error::Queue(e.into())
    }
}

impl<T> From<PutError<T>> for Error {
    /// The reason, dropping the value (see [`PutError::without_value`]).
    fn from(e: PutError<T>) -> Self {
        Error::Queue(e.without_value().into())
    }
}

impl From<GetError> for Error {
    fn from(e: GetError) -> Self {
        Error::Queue(e.into())
    }
}

impl From<JoinError> for Error {
    fn from(e: JoinError) -> Self {
        Error::Queue(e.into())
    }
}

impl<G> From<OwnerDied<G>> for Error {
    /// The dead owner's pid; the guard is dropped, releasing the lock.
    fn from(e: OwnerDied<G>) -> Self {
        Error::Sync(e.into())
    }
}

impl From<ReleaseError> for Error {
    fn from(e: ReleaseError) -> Self {
        Error::Sync(e.into())
    }
}

impl From<BarrierError> for Error {
    fn from(e: BarrierError) -> Self {
        Error::Sync(e.into())
    }
}

impl<T> From<proc_manager::PutError<T>> for Error {
    /// The reason, dropping the value (see [`manager::PutError::into_error`](crate::manager::PutError::into_error)).
    fn from(e: proc_manager::PutError<T>) -> Self {
        Error::Manager(e.into())
    }
}
