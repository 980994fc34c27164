//! The proxies of the synchronization objects kept by the manager: [`Lock`] (with its
//! [`LockGuard`]), [`Semaphore`], [`Event`], [`Condition`], [`Barrier`].

use std::time::Duration;

use super::handle::unexpected;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::wire::{Kind, Method, Response};

proxy! {
    /// A lock kept by the manager (Python's `manager.Lock()`, or `manager.RLock()`, reentrant
    /// per thread). A lock held by a client process that ends (even killed) is released.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`]; `release`, [`Error::NotHeld`].
    Lock
}

/// A held manager lock; released when dropped.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}

impl Lock {
    fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        let who = self.handle.owner()?;
        self.handle.boolean(Method::Acquire { owner: who, block, timeout: Client::millis(timeout) })
    }

    /// Acquires the lock, waiting as long as it takes.
    pub fn acquire(&self) -> Result<LockGuard<'_>> {
        // A guard is made only for a lock this thread took: a dropped guard releases, and a
        // `Lock` may be released by anyone, so a guard made for a lock not taken would release
        // another client's.
        if self.acquire_with(true, None)? {
            Ok(LockGuard { lock: self })
        } else {
            Err(Error::protocol("the manager answered a blocking acquire with false"))
        }
    }

    /// Acquires the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// Also [`Error::Timeout`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>> {
        if self.acquire_with(true, Some(timeout))? {
            Ok(LockGuard { lock: self })
        } else {
            Err(Error::Timeout)
        }
    }

    /// Acquires the lock if it is free now.
    pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>> {
        // Not `then_some(LockGuard { .. })`: that builds the guard before looking at the answer,
        // and dropping it on `false` would release the lock another client holds.
        if self.acquire_with(false, None)? {
            Ok(Some(LockGuard { lock: self }))
        } else {
            Ok(None)
        }
    }

    /// Releases the lock (Python's `release`; a guard does it when dropped).
    pub fn release(&self) -> Result<()> {
        let who = self.handle.owner()?;
        self.handle.ok(Method::Release { owner: who })
    }
}

proxy! {
    /// A semaphore kept by the manager (Python's `manager.Semaphore(n)` and
    /// `manager.BoundedSemaphore(n)`).
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
        self.handle.boolean(Method::Acquire { owner: who, block, timeout: Client::millis(timeout) })
    }

    /// Takes a permit, waiting as long as it takes.
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
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.acquire_with(true, Some(timeout))
    }

    /// Takes a permit if one is free now.
    pub fn try_acquire(&self) -> Result<bool> {
        self.acquire_with(false, None)
    }

    /// Gives a permit back.
    pub fn release(&self) -> Result<()> {
        let who = self.handle.owner()?;
        self.handle.ok(Method::Release { owner: who })
    }

    /// The number of free permits (a snapshot).
    pub fn get_value(&self) -> Result<u32> {
        Ok(self.handle.count(Method::SemValue)? as u32)
    }
}

proxy! {
    /// An event kept by the manager (Python's `manager.Event()`).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`]; waits, [`Error::ShutDown`] when the manager shuts down meanwhile.
    Event
}

impl Event {
    /// Sets the flag and wakes every waiter.
    pub fn set(&self) -> Result<()> {
        self.handle.ok(Method::EventSet)
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<()> {
        self.handle.ok(Method::EventClear)
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool> {
        self.handle.boolean(Method::EventIsSet)
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<()> {
        self.handle.boolean(Method::EventWait { timeout: None }).map(|_| ())
    }

    /// Waits at most `timeout`; returns whether the flag is set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.handle.boolean(Method::EventWait { timeout: Client::millis(Some(timeout)) })
    }
}

proxy! {
    /// A condition variable kept by the manager (Python's `manager.Condition(lock)`), over a
    /// manager [`Lock`].
    ///
    /// # Errors
    ///
    /// [`Error::Connection`]; `wait`/`notify` without holding the lock, [`Error::NotHeld`].
    Condition
}

impl Condition {
    /// Waits for a notification, holding the lock before and after (the caller must hold it).
    pub fn wait(&self) -> Result<()> {
        let who = self.handle.owner()?;
        self.handle.boolean(Method::CondWait { owner: who, timeout: None }).map(|_| ())
    }

    /// Waits at most `timeout`; returns whether it was notified.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        let who = self.handle.owner()?;
        self.handle.boolean(Method::CondWait { owner: who, timeout: Client::millis(Some(timeout)) })
    }

    /// Wakes up to `n` waiters (the caller must hold the lock).
    pub fn notify(&self, n: u32) -> Result<()> {
        let who = self.handle.owner()?;
        self.handle.ok(Method::CondNotify { owner: who, n })
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(u32::MAX)
    }
}

proxy! {
    /// A barrier kept by the manager (Python's `manager.Barrier(parties)`).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`]; `wait`, [`Error::BrokenBarrier`] when the barrier breaks (a party
    /// timed out, or it was aborted or reset meanwhile).
    Barrier
}

impl Barrier {
    /// Waits for every party; returns this party's index (0 to parties − 1).
    pub fn wait(&self) -> Result<u32> {
        Ok(self.handle.count(Method::BarrierWait { timeout: None })? as u32)
    }

    /// Waits at most `timeout`; when it passes, the barrier breaks.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        Ok(self.handle.count(Method::BarrierWait { timeout: Client::millis(Some(timeout)) })? as u32)
    }

    /// Breaks the barrier: waiting and later parties get [`Error::BrokenBarrier`].
    pub fn abort(&self) -> Result<()> {
        self.handle.ok(Method::BarrierAbort)
    }

    /// Returns the barrier to its empty state; parties waiting get [`Error::BrokenBarrier`].
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
    pub fn parties(&self) -> Result<u32> {
        Ok(self.state()?.0)
    }

    /// How many parties wait now.
    pub fn n_waiting(&self) -> Result<u32> {
        Ok(self.state()?.1)
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> Result<bool> {
        Ok(self.state()?.2)
    }
}

from_object!(Lock, Kind::Lock | Kind::RLock);
from_object!(Semaphore, Kind::Semaphore { .. });
from_object!(Event, Kind::Event);
from_object!(Condition, Kind::Condition { .. });
from_object!(Barrier, Kind::Barrier { .. });
