//! `Semaphore`, `BoundedSemaphore` and `Event`: counters and flags in shared words.
//!
//! A semaphore is a value word, a waiters word and (bounded) a maximum word. Acquire decrements the
//! value by compare-and-swap, or counts itself a waiter and sleeps while the value is 0 (the
//! kernel re-checks the word, so a release between the check and the sleep is never missed).
//! Release increments and wakes one waiter if any is counted.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::ReleaseError;
use crate::lock::deadline;
use crate::region::Region;
use crate::sys;

const VALUE: usize = 0;
const WAITERS: usize = 1;
const MAX: usize = 2;
const UNBOUNDED: u32 = u32::MAX;

/// A counting semaphore shared between processes, as Python's `multiprocessing.Semaphore`.
///
/// # Examples
///
/// ```
/// use proc_sync::Semaphore;
///
/// let sem = Semaphore::new(2).unwrap();
/// sem.acquire();
/// assert_eq!(sem.get_value(), 1);
/// sem.release();
/// assert_eq!(sem.get_value(), 2);
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Semaphore {
    region: Region,
}

impl Semaphore {
    /// A semaphore with `value` permits.
    ///
    /// # Errors
    ///
    /// The shared memory for it cannot be created.
    pub fn new(value: u32) -> proc_core::Result<Self> {
        Self::with_max(value, UNBOUNDED)
    }

    fn with_max(value: u32, max: u32) -> proc_core::Result<Self> {
        let region = Region::new(12)?;
        region.word(VALUE).store(value, Ordering::Relaxed);
        region.word(MAX).store(max, Ordering::Relaxed);
        Ok(Semaphore { region })
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> bool {
        let value = self.region.word(VALUE);
        loop {
            let v = value.load(Ordering::Relaxed);
            if v > 0 {
                if value.compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    return true;
                }
                continue;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return false;
            }
            self.region.word(WAITERS).fetch_add(1, Ordering::SeqCst);
            sys::wait(value, 0, deadline.map(|d| d - now));
            self.region.word(WAITERS).fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Takes a permit, waiting as long as it takes.
    pub fn acquire(&self) {
        self.acquire_until(None);
    }

    /// Takes a permit if one comes within `timeout`; whether it did. Zero tries once.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.acquire_until(Some(deadline(timeout)))
    }

    /// Takes a permit if one is free, without waiting.
    pub fn try_acquire(&self) -> bool {
        self.acquire_timeout(Duration::ZERO)
    }

    /// Returns a permit.
    ///
    /// # Errors
    ///
    /// Only for a [`BoundedSemaphore`]: [`ReleaseError::AboveMaximum`].
    fn release_checked(&self) -> Result<(), ReleaseError> {
        let value = self.region.word(VALUE);
        let max = self.region.word(MAX).load(Ordering::Relaxed);
        let mut v = value.load(Ordering::Relaxed);
        loop {
            if v >= max {
                return Err(ReleaseError::AboveMaximum);
            }
            match value.compare_exchange_weak(v, v + 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        if self.region.word(WAITERS).load(Ordering::SeqCst) > 0 {
            sys::wake(value, 1);
        }
        Ok(())
    }

    /// Returns a permit.
    pub fn release(&self) {
        let _ = self.release_checked();
    }

    /// The number of free permits (a snapshot). Works on every OS, unlike Python's on macOS.
    pub fn get_value(&self) -> u32 {
        self.region.word(VALUE).load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore").field("value", &self.get_value()).finish()
    }
}

/// A semaphore that refuses to be released above its initial value, as Python's
/// `BoundedSemaphore` (whose check Python skips on macOS; this one does not).
///
/// # Examples
///
/// ```
/// use proc_sync::BoundedSemaphore;
///
/// let sem = BoundedSemaphore::new(1).unwrap();
/// assert!(sem.release().is_err());
/// sem.acquire();
/// sem.release().unwrap();
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct BoundedSemaphore {
    inner: Semaphore,
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` permits, which is also its maximum.
    ///
    /// # Errors
    ///
    /// The shared memory for it cannot be created.
    pub fn new(value: u32) -> proc_core::Result<Self> {
        Ok(BoundedSemaphore { inner: Semaphore::with_max(value, value)? })
    }

    /// Takes a permit, waiting as long as it takes.
    pub fn acquire(&self) {
        self.inner.acquire();
    }

    /// Takes a permit if one comes within `timeout`; whether it did.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.inner.acquire_timeout(timeout)
    }

    /// Takes a permit if one is free, without waiting.
    pub fn try_acquire(&self) -> bool {
        self.inner.try_acquire()
    }

    /// Returns a permit.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::AboveMaximum`] if every permit is already free.
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.inner.release_checked()
    }

    /// The number of free permits (a snapshot).
    pub fn get_value(&self) -> u32 {
        self.inner.get_value()
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore").field("value", &self.get_value()).finish()
    }
}

/// A flag that processes can wait for, as Python's `multiprocessing.Event`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use proc_sync::Event;
///
/// let event = Event::new().unwrap();
/// assert!(!event.wait_timeout(Duration::ZERO));
/// event.set();
/// assert!(event.is_set());
/// event.wait();
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Event {
    region: Region,
}

impl Event {
    /// A new event, not set.
    ///
    /// # Errors
    ///
    /// The shared memory for it cannot be created.
    pub fn new() -> proc_core::Result<Self> {
        Ok(Event { region: Region::new(4)? })
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let flag = self.region.word(0);
        if flag.swap(1, Ordering::SeqCst) == 0 {
            sys::wake_all(flag);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.region.word(0).store(0, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.region.word(0).load(Ordering::SeqCst) != 0
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout` for the flag; whether it is set. Zero only looks.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Some(deadline(timeout)))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let flag = self.region.word(0);
        loop {
            if flag.load(Ordering::SeqCst) != 0 {
                return true;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return false;
            }
            sys::wait(flag, 0, deadline.map(|d| d - now));
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).finish()
    }
}
