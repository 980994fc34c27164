//! The proxies of the synchronization objects kept by the manager: [`Lock`] (with its
//! [`LockGuard`]), [`Semaphore`], [`Event`], [`Condition`], [`Barrier`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::handle::unexpected;
use crate::client::{Client, Undo};
use crate::error::{Error, Result};
use crate::wire::{Kind, Method, Owner, Response};

proxy! {
    /// A lock kept by the manager (Python's `manager.Lock()`, or `manager.RLock()`, reentrant
    /// per thread). A lock held by a client process that ends (even killed) is released.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = proc_manager::Manager::start()?;
    /// let lock = manager.lock()?;
    /// {
    ///     let _guard = lock.acquire()?;
    ///     assert!(lock.try_acquire()?.is_none(), "held: not reentrant");
    /// } // released here
    /// assert!(lock.try_acquire()?.is_some());
    /// # Ok::<(), proc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Connection`]; `release`, [`Error::NotHeld`].
    Lock
}

/// A held manager lock; released when dropped.
///
/// # Examples
///
/// ```
/// let manager = proc_manager::Manager::start()?;
/// let lock = manager.lock()?;
/// let guard = lock.acquire()?;
/// assert!(lock.try_acquire()?.is_none());
/// drop(guard);
/// assert!(lock.try_acquire()?.is_some());
/// # Ok::<(), proc_manager::Error>(())
/// ```
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    /// Who took the lock: the guard releases it as that owner (only if that owner holds it), on
    /// whichever thread it is dropped.
    owner: Owner,
    /// The owner is this guard's alone (an async acquire), not the thread's.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    own: bool,
    /// Set by an async condition wait dropped before its end (or by `release_async`): shared
    /// with the undoing of that wait, which may release the lock the manager took back for it;
    /// whichever of the two sets it first releases, the other does nothing.
    released: Mutex<Option<Arc<AtomicBool>>>,
}

impl LockGuard<'_> {
    fn new(lock: &Lock, owner: Owner, own: bool) -> LockGuard<'_> {
        LockGuard { lock, owner, own, released: Mutex::new(None) }
    }

    /// The flag shared with a dropped wait's undoing, if any.
    fn shared(&self) -> MutexGuard<'_, Option<Arc<AtomicBool>>> {
        self.released.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this guard may still release: no undoing of a dropped wait released first (and
    /// none will from now on).
    fn may_release(&self) -> bool {
        let shared = self.shared().take();
        shared.is_none_or(|flag| !flag.swap(true, Ordering::SeqCst))
    }
}

/// Releasing without blocking the runtime's thread (feature `tokio`).
#[cfg(feature = "tokio")]
impl LockGuard<'_> {
    /// Releases the lock without blocking the runtime's thread; dropping a guard releases it with
    /// a blocking call (a round trip to the manager).
    ///
    /// A future dropped before it is done leaves the release to the guard's drop (blocking).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let lock = manager.lock()?;
    /// let guard = lock.acquire_async().await?;
    /// guard.release_async().await?;
    /// assert!(lock.try_acquire()?.is_some());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable (also when there is no tokio
    /// runtime here), [`Error::ShutDown`] when it is shutting down, [`Error::Protocol`] for an
    /// answer this client cannot read.
    pub async fn release_async(self) -> Result<()> {
        let done = || Some(Arc::new(AtomicBool::new(true)));
        if !self.may_release() {
            // The undoing of a dropped wait released it.
            *self.shared() = done();
            return Ok(());
        }
        let answer =
            self.lock.handle.ok_async(Method::ReleaseOwned { owner: self.owner }, Undo::Nothing).await;
        // Released (or refused): the drop has nothing left to do.
        *self.shared() = done();
        answer
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if self.may_release() {
            let _ = self.lock.handle.ok(Method::ReleaseOwned { owner: self.owner });
        }
    }
}

impl Lock {
    /// Acquires for this thread: the guard if the lock was taken.
    fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<Option<LockGuard<'_>>> {
        let who = self.handle.owner()?;
        let method = Method::Acquire { owner: who, block, timeout: Client::millis(timeout) };
        // Taken after this process gave up waiting (a stopped manager): released again.
        let taken =
            self.handle.boolean_undoable(method, Undo::Acquired { lock: self.handle.id(), owner: who })?;
        // Not `then_some(LockGuard { .. })`: that builds the guard before looking at the answer,
        // and dropping it on `false` would release the lock another client holds.
        Ok(if taken { Some(LockGuard::new(self, who, false)) } else { None })
    }

    /// Acquires the lock, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read (also while this call waits).
    pub fn acquire(&self) -> Result<LockGuard<'_>> {
        // A guard is made only for a lock this thread took: a dropped guard releases, and a
        // `Lock` may be released by anyone, so a guard made for a lock not taken would release
        // another client's.
        self.acquire_with(true, None)?
            .ok_or_else(|| Error::protocol("the manager answered a blocking acquire with false"))
    }

    /// Acquires the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// Also [`Error::Timeout`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>> {
        self.acquire_with(true, Some(timeout))?.ok_or(Error::Timeout)
    }

    /// As [`acquire_timeout`](Self::acquire_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`acquire_timeout`](Self::acquire_timeout).
    pub fn acquire_deadline(&self, deadline: Instant) -> Result<LockGuard<'_>> {
        self.acquire_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// Acquires the lock if it is free now.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>> {
        self.acquire_with(false, None)
    }

    /// Releases the lock (Python's `release`; a guard does it when dropped).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::NotHeld`] when this client
    /// does not hold the lock.
    pub fn release(&self) -> Result<()> {
        let who = self.handle.owner()?;
        self.handle.ok(Method::Release { owner: who })
    }
}

proxy! {
    /// A semaphore kept by the manager (Python's `manager.Semaphore(n)` and
    /// `manager.BoundedSemaphore(n)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = proc_manager::Manager::start()?;
    /// let sem = manager.semaphore(2)?;
    /// sem.acquire()?;
    /// assert!(sem.try_acquire()?);
    /// assert!(!sem.try_acquire()?, "both permits taken");
    /// sem.release()?;
    /// assert_eq!(sem.get_value()?, 1);
    /// # Ok::<(), proc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Connection`]; `release` of a bounded semaphore at its initial value,
    /// [`Error::NotHeld`].
    Semaphore
}

impl Semaphore {
    fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        let who = self.handle.owner()?;
        let method = Method::Acquire { owner: who, block, timeout: Client::millis(timeout) };
        // Taken after this process gave up waiting (a stopped manager): given back.
        self.handle.boolean_undoable(method, Undo::Permit { semaphore: self.handle.id(), owner: who })
    }

    /// Takes a permit, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read (also while this call waits).
    pub fn acquire(&self) -> Result<()> {
        // A `false` here would be a permit not taken: say so rather than let the caller release
        // one it never had.
        if self.acquire_with(true, None)? {
            Ok(())
        } else {
            Err(Error::protocol("the manager answered a blocking acquire with false"))
        }
    }

    /// Takes a permit, waiting at most `timeout`; false if none came.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read (also while this call waits).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.acquire_with(true, Some(timeout))
    }

    /// As [`acquire_timeout`](Self::acquire_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`acquire_timeout`](Self::acquire_timeout).
    pub fn acquire_deadline(&self, deadline: Instant) -> Result<bool> {
        self.acquire_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// Takes a permit if one is free now.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn try_acquire(&self) -> Result<bool> {
        self.acquire_with(false, None)
    }

    /// Gives a permit back.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::NotHeld`] when a bounded
    /// semaphore would go past its initial value.
    pub fn release(&self) -> Result<()> {
        let who = self.handle.owner()?;
        self.handle.ok(Method::Release { owner: who })
    }

    /// The number of free permits (a snapshot).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn get_value(&self) -> Result<u32> {
        Ok(self.handle.count(Method::SemValue)? as u32)
    }
}

proxy! {
    /// An event kept by the manager (Python's `manager.Event()`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let manager = proc_manager::Manager::start()?;
    /// let ready = manager.event()?;
    /// assert!(!ready.wait_timeout(Duration::from_millis(10))?);
    /// ready.set()?;
    /// ready.wait()?;
    /// assert!(ready.is_set()?);
    /// # Ok::<(), proc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Connection`]; waits, [`Error::ShutDown`] when the manager shuts down meanwhile.
    Event
}

impl Event {
    /// Sets the flag and wakes every waiter.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn set(&self) -> Result<()> {
        self.handle.ok(Method::EventSet)
    }

    /// Clears the flag.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn clear(&self) -> Result<()> {
        self.handle.ok(Method::EventClear)
    }

    /// Whether the flag is set.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn is_set(&self) -> Result<bool> {
        self.handle.boolean(Method::EventIsSet)
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read (also while this call waits).
    pub fn wait(&self) -> Result<()> {
        self.handle.boolean(Method::EventWait { timeout: None }).map(|_| ())
    }

    /// Waits at most `timeout`; returns whether the flag is set.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read (also while this call waits).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.handle.boolean(Method::EventWait { timeout: Client::millis(Some(timeout)) })
    }

    /// As [`wait_timeout`](Self::wait_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout).
    pub fn wait_deadline(&self, deadline: Instant) -> Result<bool> {
        self.wait_timeout(deadline.saturating_duration_since(Instant::now()))
    }
}

proxy! {
    /// A condition variable kept by the manager (Python's `manager.Condition(lock)`), over a
    /// manager [`Lock`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let manager = proc_manager::Manager::start()?;
    /// let lock = manager.lock()?;
    /// let cond = manager.condition(&lock)?;
    /// let _guard = lock.acquire()?;
    /// // Nobody notifies: the wait times out, holding the lock again.
    /// assert!(!cond.wait_timeout(Duration::from_millis(10))?);
    /// cond.notify_all()?;
    /// # Ok::<(), proc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Connection`]; `wait`/`notify` without holding the lock, [`Error::NotHeld`].
    Condition
}

impl Condition {
    /// Waits for a notification, holding the lock before and after (the caller must hold it).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read (also while this call waits);
    /// [`Error::NotHeld`] when this client does not hold the condition's lock.
    pub fn wait(&self) -> Result<()> {
        let who = self.handle.owner()?;
        self.handle.boolean(Method::CondWait { owner: who, timeout: None }).map(|_| ())
    }

    /// Waits at most `timeout`; returns whether it was notified.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read (also while this call waits);
    /// [`Error::NotHeld`] when this client does not hold the condition's lock.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        let who = self.handle.owner()?;
        self.handle.boolean(Method::CondWait { owner: who, timeout: Client::millis(Some(timeout)) })
    }

    /// As [`wait_timeout`](Self::wait_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout).
    pub fn wait_deadline(&self, deadline: Instant) -> Result<bool> {
        self.wait_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// Wakes up to `n` waiters (the caller must hold the lock).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::NotHeld`] when this client
    /// does not hold the condition's lock.
    pub fn notify(&self, n: u32) -> Result<()> {
        let who = self.handle.owner()?;
        self.handle.ok(Method::CondNotify { owner: who, n })
    }

    /// Wakes every waiter.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::NotHeld`] when this client
    /// does not hold the condition's lock.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(u32::MAX)
    }
}

proxy! {
    /// A barrier kept by the manager (Python's `manager.Barrier(parties)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = proc_manager::Manager::start()?;
    /// let barrier = manager.barrier(2)?;
    /// let other = {
    ///     let barrier = barrier.clone();
    ///     std::thread::spawn(move || barrier.wait())
    /// };
    /// let mine = barrier.wait()?;
    /// let theirs = other.join().unwrap()?;
    /// // Each party gets a different index below `parties`.
    /// assert_eq!(mine + theirs, 1);
    /// assert!(!barrier.broken()?);
    /// # Ok::<(), proc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Connection`]; `wait`, [`Error::BrokenBarrier`] when the barrier breaks (a party
    /// timed out, or it was aborted or reset meanwhile).
    Barrier
}

impl Barrier {
    /// Waits for every party; returns this party's index (0 to parties − 1).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read (also while this call waits);
    /// [`Error::BrokenBarrier`] when the barrier is or becomes broken (a party timed out, or it was aborted
    /// or reset).
    pub fn wait(&self) -> Result<u32> {
        Ok(self.handle.count(Method::BarrierWait { timeout: None })? as u32)
    }

    /// Waits at most `timeout`; when it passes, the barrier breaks.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read (also while this call waits);
    /// [`Error::BrokenBarrier`] when the barrier is or becomes broken, this call's timeout passing included
    /// (it breaks the barrier, as in Python).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        Ok(self.handle.count(Method::BarrierWait { timeout: Client::millis(Some(timeout)) })? as u32)
    }

    /// As [`wait_timeout`](Self::wait_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout).
    pub fn wait_deadline(&self, deadline: Instant) -> Result<u32> {
        self.wait_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// Breaks the barrier: waiting and later parties get [`Error::BrokenBarrier`].
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn abort(&self) -> Result<()> {
        self.handle.ok(Method::BarrierAbort)
    }

    /// Returns the barrier to its empty state; parties waiting get [`Error::BrokenBarrier`].
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn reset(&self) -> Result<()> {
        self.handle.ok(Method::BarrierReset)
    }

    fn state(&self) -> Result<(u32, u32, bool)> {
        match self.handle.call(Method::BarrierState)? {
            Response::Barrier { parties, waiting, broken } => Ok((parties, waiting, broken)),
            r => Err(unexpected(r)),
        }
    }

    /// The number of parties.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn parties(&self) -> Result<u32> {
        Ok(self.state()?.0)
    }

    /// How many parties wait now.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn n_waiting(&self) -> Result<u32> {
        Ok(self.state()?.1)
    }

    /// Whether the barrier is broken.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn broken(&self) -> Result<bool> {
        Ok(self.state()?.2)
    }
}

/// The async calls of the synchronization proxies (feature `tokio`): they wait without blocking
/// the runtime's thread. What a future dropped before it is done leaves is said for each (see also
/// "Async calls" in the crate's docs).
#[cfg(feature = "tokio")]
impl Lock {
    async fn acquire_with_async(&self, timeout: Option<Duration>) -> Result<Option<LockGuard<'_>>> {
        // An owner of its own: a task is no thread, and two tasks on a thread are two owners.
        let owner = self.handle.fresh_owner()?;
        let undo = Undo::Acquired { lock: self.handle.id(), owner };
        let method = Method::Acquire { owner, block: true, timeout: Client::millis(timeout) };
        let taken = self.handle.boolean_async(method, undo).await?;
        Ok(if taken { Some(LockGuard::new(self, owner, true)) } else { None })
    }

    /// Acquires the lock, waiting as long as it takes without blocking the runtime's thread: the
    /// async [`acquire`](Self::acquire).
    ///
    /// The lock is held by this call's own owner (not by the thread, which a task may leave): the
    /// guard releases it, on whichever thread it is dropped; an `RLock` taken this way is not
    /// reentrant with other acquisitions. A future dropped before it is done leaves the lock not
    /// taken: had the manager already given it to this call, it is released again (within
    /// milliseconds of the drop).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let lock = manager.lock()?;
    /// let guard = lock.acquire_async().await?;
    /// assert!(lock.try_acquire()?.is_none());
    /// drop(guard);
    /// assert!(lock.try_acquire()?.is_some());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire); also [`Error::Connection`] when there is no tokio runtime
    /// here.
    pub async fn acquire_async(&self) -> Result<LockGuard<'_>> {
        self.acquire_with_async(None)
            .await?
            .ok_or_else(|| Error::protocol("the manager answered a blocking acquire with false"))
    }

    /// Acquires the lock, waiting at most `timeout` without blocking the runtime's thread: the
    /// async [`acquire_timeout`](Self::acquire_timeout). As [`acquire_async`](Self::acquire_async)
    /// otherwise, a dropped future included.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// use std::time::Duration;
    ///
    /// let manager = proc_manager::Manager::start()?;
    /// let lock = manager.lock()?;
    /// let _held = lock.acquire()?;
    /// let late = lock.acquire_timeout_async(Duration::from_millis(10)).await;
    /// assert!(matches!(late, Err(proc_manager::Error::Timeout)));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`acquire_timeout`](Self::acquire_timeout) ([`Error::Timeout`]); also
    /// [`Error::Connection`] when there is no tokio runtime here.
    pub async fn acquire_timeout_async(&self, timeout: Duration) -> Result<LockGuard<'_>> {
        self.acquire_with_async(Some(timeout)).await?.ok_or(Error::Timeout)
    }
}

#[cfg(feature = "tokio")]
impl Semaphore {
    async fn acquire_with_async(&self, timeout: Option<Duration>) -> Result<bool> {
        let owner = self.handle.owner()?;
        let undo = Undo::Permit { semaphore: self.handle.id(), owner };
        let method = Method::Acquire { owner, block: true, timeout: Client::millis(timeout) };
        self.handle.boolean_async(method, undo).await
    }

    /// Takes a permit, waiting as long as it takes without blocking the runtime's thread: the
    /// async [`acquire`](Self::acquire). A future dropped before it is done takes no permit: had
    /// the manager already given one to this call, it is given back (within milliseconds of the
    /// drop).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let sem = manager.semaphore(1)?;
    /// sem.acquire_async().await?;
    /// assert_eq!(sem.get_value()?, 0);
    /// sem.release()?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire); also [`Error::Connection`] when there is no tokio runtime
    /// here.
    pub async fn acquire_async(&self) -> Result<()> {
        if self.acquire_with_async(None).await? {
            Ok(())
        } else {
            Err(Error::protocol("the manager answered a blocking acquire with false"))
        }
    }

    /// Takes a permit, waiting at most `timeout` without blocking the runtime's thread; false if
    /// none came: the async [`acquire_timeout`](Self::acquire_timeout). A dropped future takes no
    /// permit, as [`acquire_async`](Self::acquire_async)'s.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// use std::time::Duration;
    ///
    /// let manager = proc_manager::Manager::start()?;
    /// let sem = manager.semaphore(0)?;
    /// assert!(!sem.acquire_timeout_async(Duration::from_millis(10)).await?);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`acquire_timeout`](Self::acquire_timeout); also [`Error::Connection`] when there is no
    /// tokio runtime here.
    pub async fn acquire_timeout_async(&self, timeout: Duration) -> Result<bool> {
        self.acquire_with_async(Some(timeout)).await
    }
}

#[cfg(feature = "tokio")]
impl Event {
    /// Waits until the flag is set, without blocking the runtime's thread: the async
    /// [`wait`](Self::wait). A dropped future changes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let ready = manager.event()?;
    /// let waiter = tokio::spawn({
    ///     let ready = ready.clone();
    ///     async move { ready.wait_async().await }
    /// });
    /// ready.set()?;
    /// waiter.await.unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait); also [`Error::Connection`] when there is no tokio runtime here.
    pub async fn wait_async(&self) -> Result<()> {
        self.handle.boolean_async(Method::EventWait { timeout: None }, Undo::Nothing).await.map(|_| ())
    }

    /// Waits at most `timeout` without blocking the runtime's thread; returns whether the flag is
    /// set: the async [`wait_timeout`](Self::wait_timeout). A dropped future changes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// use std::time::Duration;
    ///
    /// let manager = proc_manager::Manager::start()?;
    /// let ready = manager.event()?;
    /// assert!(!ready.wait_timeout_async(Duration::from_millis(10)).await?);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout); also [`Error::Connection`] when there is no tokio
    /// runtime here.
    pub async fn wait_timeout_async(&self, timeout: Duration) -> Result<bool> {
        let method = Method::EventWait { timeout: Client::millis(Some(timeout)) };
        self.handle.boolean_async(method, Undo::Nothing).await
    }
}

#[cfg(feature = "tokio")]
impl Condition {
    /// Wakes up to `n` waiters, as the holder of `guard` (a guard of the condition's lock): the
    /// async [`notify`](Self::notify), for a lock taken with [`Lock::acquire_async`] (whose owner
    /// is the guard's, not the thread's). Never waits on the manager; a future dropped before it
    /// is done may or may not have notified.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let lock = manager.lock()?;
    /// let cond = manager.condition(&lock)?;
    /// let guard = lock.acquire_async().await?;
    /// cond.notify_async(&guard, 1).await?;
    /// cond.notify_all_async(&guard).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`notify`](Self::notify) ([`Error::NotHeld`] when `guard`'s owner does not hold the
    /// condition's lock); also [`Error::Connection`] when there is no tokio runtime here.
    pub async fn notify_async(&self, guard: &LockGuard<'_>, n: u32) -> Result<()> {
        self.handle.ok_async(Method::CondNotify { owner: guard.owner, n }, Undo::Nothing).await
    }

    /// Wakes every waiter, as the holder of `guard`: the async [`notify_all`](Self::notify_all).
    /// As [`notify_async`](Self::notify_async) otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let lock = manager.lock()?;
    /// let cond = manager.condition(&lock)?;
    /// let guard = lock.acquire_async().await?;
    /// cond.notify_all_async(&guard).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`notify_async`](Self::notify_async).
    pub async fn notify_all_async(&self, guard: &LockGuard<'_>) -> Result<()> {
        self.notify_async(guard, u32::MAX).await
    }

    async fn wait_with_async(&self, guard: &LockGuard<'_>, timeout: Option<Duration>) -> Result<bool> {
        if !guard.own {
            // The thread's owner may hold the lock again, through another guard, by the time a
            // dropped wait's undoing releases what the manager took back for it.
            return Err(Error::NotHeld);
        }
        let released = Arc::new(AtomicBool::new(false));
        {
            let mut shared = guard.shared();
            if shared.is_some() {
                // An earlier wait with this guard was dropped: whether it holds the lock is
                // not known (the undoing of that wait may be releasing it).
                return Err(Error::NotHeld);
            }
            *shared = Some(released.clone());
        }
        let owner = guard.owner;
        let undo = Undo::Retaken { lock: guard.lock.handle.id(), owner, released };
        let method = Method::CondWait { owner, timeout: Client::millis(timeout) };
        let answer = self.handle.boolean_async(method, undo).await;
        if answer.is_ok() {
            // The answer came: the manager took the lock back for the guard, which holds it.
            *guard.shared() = None;
        }
        answer
    }

    /// Waits for a notification without blocking the runtime's thread, holding the lock of
    /// `guard` before and after: the async [`wait`](Self::wait). `guard` must be a guard of the
    /// condition's lock from [`Lock::acquire_async`] (a guard of a blocking acquire belongs to
    /// the thread, which a task may leave: refused with [`Error::NotHeld`]). Notify with
    /// [`notify_async`](Self::notify_async), which names the guard.
    ///
    /// A future dropped before it is done leaves `guard` in doubt: the lock is released exactly
    /// once, by dropping `guard` or, had the manager already taken the lock back for the wait,
    /// by the undoing of the wait (within milliseconds), whichever comes first; and `guard`
    /// serves no further wait ([`Error::NotHeld`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let lock = manager.lock()?;
    /// let cond = manager.condition(&lock)?;
    /// let guard = lock.acquire_async().await?;
    /// let notifier = std::thread::spawn({
    ///     let (lock, cond) = (lock.clone(), cond.clone());
    ///     move || -> proc_manager::Result<()> {
    ///         // Takes the lock once the waiter has released it by waiting.
    ///         let _g = lock.acquire()?;
    ///         cond.notify_all()
    ///     }
    /// });
    /// cond.wait_async(&guard).await?;
    /// notifier.join().unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait) ([`Error::NotHeld`] when `guard`'s owner does not hold the
    /// condition's lock, when `guard` comes from a blocking acquire, or when a wait with it was
    /// dropped); also [`Error::Connection`] when there is no tokio runtime here.
    pub async fn wait_async(&self, guard: &LockGuard<'_>) -> Result<()> {
        self.wait_with_async(guard, None).await.map(|_| ())
    }

    /// Waits at most `timeout` for a notification without blocking the runtime's thread;
    /// returns whether it was notified: the async [`wait_timeout`](Self::wait_timeout). As
    /// [`wait_async`](Self::wait_async) otherwise, a dropped future included.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// use std::time::Duration;
    ///
    /// let manager = proc_manager::Manager::start()?;
    /// let lock = manager.lock()?;
    /// let cond = manager.condition(&lock)?;
    /// let guard = lock.acquire_async().await?;
    /// assert!(!cond.wait_timeout_async(&guard, Duration::from_millis(10)).await?);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout); also [`Error::Connection`] when there is no
    /// tokio runtime here.
    pub async fn wait_timeout_async(&self, guard: &LockGuard<'_>, timeout: Duration) -> Result<bool> {
        self.wait_with_async(guard, Some(timeout)).await
    }
}

#[cfg(feature = "tokio")]
impl Barrier {
    /// Waits for every party without blocking the runtime's thread; returns this party's index:
    /// the async [`wait`](Self::wait). A future dropped before it is done cannot be undone: the
    /// manager gives the wait up when it sees the end, which breaks the barrier (as a party that
    /// times out does), unless the barrier had already passed.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let barrier = manager.barrier(2)?;
    /// let other = tokio::spawn({
    ///     let barrier = barrier.clone();
    ///     async move { barrier.wait_async().await }
    /// });
    /// let mine = barrier.wait_async().await?;
    /// let theirs = other.await.unwrap()?;
    /// assert_eq!(mine + theirs, 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait); also [`Error::Connection`] when there is no tokio runtime here.
    pub async fn wait_async(&self) -> Result<u32> {
        Ok(self.handle.count_async(Method::BarrierWait { timeout: None }, Undo::Nothing).await? as u32)
    }

    /// Waits at most `timeout` for every party without blocking the runtime's thread: the async
    /// [`wait_timeout`](Self::wait_timeout). As [`wait_async`](Self::wait_async) otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// use std::time::Duration;
    ///
    /// let manager = proc_manager::Manager::start()?;
    /// let barrier = manager.barrier(2)?;
    /// let alone = barrier.wait_timeout_async(Duration::from_millis(10)).await;
    /// assert!(matches!(alone, Err(proc_manager::Error::BrokenBarrier)));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout); also [`Error::Connection`] when there is no
    /// tokio runtime here.
    pub async fn wait_timeout_async(&self, timeout: Duration) -> Result<u32> {
        let method = Method::BarrierWait { timeout: Client::millis(Some(timeout)) };
        Ok(self.handle.count_async(method, Undo::Nothing).await? as u32)
    }
}

from_object!(Lock, Kind::Lock | Kind::RLock);
from_object!(Semaphore, Kind::Semaphore { .. });
from_object!(Event, Kind::Event);
from_object!(Condition, Kind::Condition { .. });
from_object!(Barrier, Kind::Barrier { .. });
