//! `Semaphore`, `BoundedSemaphore` and `Event`: counters and flags in shared words.
//!
//! A semaphore is a value word, a waiters word and (bounded) a maximum word. Acquire decrements the
//! value by compare-and-swap, or counts itself a waiter and sleeps while the value is 0 (the
//! kernel re-checks the word, so a release between the check and the sleep is never missed).
//! Release increments and wakes one waiter if any is counted.
//!
//! Holder death: a permit taken with [`Semaphore::acquire_guard`] is recorded in one of
//! [`HOLDER_SLOTS`] 64-bit slots (the holder's [process token](proc_os::current_process_token):
//! its pid and start time, so that a process that later gets its pid does not pass for it) until
//! the guard drops. A waiter checks the slots once per [`LIVENESS_CHECK`] of waiting (and before a
//! timed wait gives up); a slot whose process died is taken over by compare-and-swap. A guard acquirer inherits the dead holder's permit and gets
//! [`OwnerDied`]; a plain acquirer returns the permit to the semaphore and takes a permit as usual.
//! Plain `acquire`/`release` stay Python's bare counter (a permit may be released by any process),
//! so they cannot be tracked.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{OwnerDied, ReleaseError};
use crate::lock::{deadline, AcquireResult, RegionParts, LIVENESS_CHECK};
use crate::region::Region;
use crate::shim::{self, Instant};

const VALUE: usize = 0;
const WAITERS: usize = 1;
const MAX: usize = 2;
/// The first holder slot, in `u64`s (after the `u32` words above and one spare).
const FIRST_SLOT: usize = 2;
/// The bytes of a semaphore's region.
const SEMAPHORE_BYTES: usize = (FIRST_SLOT + HOLDER_SLOTS) * 8;
const UNBOUNDED: u32 = u32::MAX;

/// How many guarded permits of one semaphore are tracked for holder death at a time; guards
/// beyond these work as usual but are not recovered if their holder dies.
#[cfg(not(proc_sync_loom))]
pub const HOLDER_SLOTS: usize = 64;
/// How many guarded permits are tracked: 2 in the loom models, to keep their state space small.
#[cfg(proc_sync_loom)]
pub const HOLDER_SLOTS: usize = 2;

/// The bytes of an [`Event`]'s region: the flag and the count of waiters.
const EVENT_BYTES: usize = 8;

/// A permit taken: the holder slot it was recorded in, and the pid of a dead holder whose permit
/// it is.
struct Taken {
    slot: Option<usize>,
    died: Option<u32>,
}

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
#[serde(try_from = "RegionParts")]
pub struct Semaphore {
    region: Region,
}

impl TryFrom<RegionParts> for Semaphore {
    type Error = String;

    /// Refuses a handle whose region is too short for the words and slots.
    fn try_from(p: RegionParts) -> Result<Self, String> {
        Ok(Semaphore { region: p.checked("semaphore", SEMAPHORE_BYTES)? })
    }
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
        let region = Region::new(SEMAPHORE_BYTES)?;
        region.word(VALUE).store(value, Ordering::Relaxed);
        region.word(MAX).store(max, Ordering::Relaxed);
        Ok(Semaphore { region })
    }

    /// Takes a permit (recording this process in a holder slot if `guarded`); `None` on timeout.
    fn take(&self, deadline: Option<Instant>, guarded: bool) -> Option<Taken> {
        let value = self.region.word(VALUE);
        let mut next_check = Instant::now() + LIVENESS_CHECK;
        loop {
            let v = value.load(Ordering::Relaxed);
            if v > 0 {
                if value.compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    return Some(Taken { slot: if guarded { self.record() } else { None }, died: None });
                }
                continue;
            }
            let now = Instant::now();
            let expired = deadline.is_some_and(|d| now >= d);
            if expired || now >= next_check {
                if let Some((slot, token)) = self.dead_holder() {
                    let word = self.region.word64(slot);
                    let to = if guarded { shim::current_process_token() } else { 0 };
                    if word.compare_exchange(token, to, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                        if guarded {
                            return Some(Taken { slot: Some(slot), died: Some((token >> 32) as u32) });
                        }
                        // Give the dead holder's permit back, then compete for it as usual.
                        self.put_back();
                    }
                    continue;
                }
                if expired {
                    return None;
                }
                next_check = now + LIVENESS_CHECK;
            }
            let until = deadline.map_or(next_check, |d| d.min(next_check));
            self.region.word(WAITERS).fetch_add(1, Ordering::SeqCst);
            shim::wait(value, 0, Some(until.saturating_duration_since(now)));
            self.region.word(WAITERS).fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// [`take`](Self::take) without a deadline: it returns only with a permit, so no caller has to
    /// invent a guard for a timeout that cannot happen (a guard built for no permit would return
    /// one that was never taken when dropped).
    fn take_blocking(&self, guarded: bool) -> Taken {
        loop {
            if let Some(taken) = self.take(None, guarded) {
                return taken;
            }
        }
    }

    /// Records this process in a free holder slot, if one is left.
    fn record(&self) -> Option<usize> {
        let me = shim::current_process_token();
        (FIRST_SLOT..FIRST_SLOT + HOLDER_SLOTS).find(|&i| {
            self.region.word64(i).compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        })
    }

    /// A holder slot whose process died, and that process' token.
    fn dead_holder(&self) -> Option<(usize, u64)> {
        (FIRST_SLOT..FIRST_SLOT + HOLDER_SLOTS).find_map(|i| {
            let token = self.region.word64(i).load(Ordering::Acquire);
            (token != 0 && !shim::process_token_alive(token)).then_some((i, token))
        })
    }

    /// Adds a permit without the maximum check (it was taken before) and wakes a waiter.
    fn put_back(&self) {
        let value = self.region.word(VALUE);
        value.fetch_add(1, Ordering::SeqCst);
        if self.region.word(WAITERS).load(Ordering::SeqCst) > 0 {
            shim::wake(value, 1);
        }
    }

    /// The guard of a permit just taken: only ever built from a `Taken`, since its `Drop` returns
    /// the permit.
    fn guard(&self, taken: Taken) -> AcquireResult<SemaphoreGuard<'_>> {
        let guard = SemaphoreGuard { sem: self, slot: taken.slot };
        match taken.died {
            None => Ok(guard),
            Some(pid) => Err(OwnerDied::new(guard, pid)),
        }
    }

    /// Takes a permit, waiting as long as it takes.
    pub fn acquire(&self) {
        self.take_blocking(false);
    }

    /// Takes a permit if one comes within `timeout`; whether it did. Zero tries once.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.take(Some(deadline(timeout)), false).is_some()
    }

    /// As [`acquire_timeout`](Self::acquire_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    pub fn acquire_deadline(&self, deadline: Instant) -> bool {
        self.acquire_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// Takes a permit if one is free, without waiting.
    pub fn try_acquire(&self) -> bool {
        self.acquire_timeout(Duration::ZERO)
    }

    /// Takes a permit held by a guard that returns it when dropped, waiting as long as it
    /// takes. While the guard lives its process is recorded as a holder, so if the process dies
    /// the permit is not lost: a waiter takes it over.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], holding the guard, if the permit is one whose holder died holding it (the
    /// section it protected may be half done).
    ///
    /// # Examples
    ///
    /// ```
    /// use proc_sync::Semaphore;
    ///
    /// let sem = Semaphore::new(1).unwrap();
    /// {
    ///     let _permit = sem.acquire_guard().unwrap();
    ///     assert_eq!(sem.get_value(), 0);
    /// }
    /// assert_eq!(sem.get_value(), 1);
    /// ```
    pub fn acquire_guard(&self) -> AcquireResult<SemaphoreGuard<'_>> {
        self.guard(self.take_blocking(true))
    }

    /// As [`acquire_guard`](Self::acquire_guard), waiting at most `timeout`; `Ok(None)` if no
    /// permit came. Zero tries once.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], as for [`acquire_guard`](Self::acquire_guard).
    pub fn acquire_guard_timeout(&self, timeout: Duration) -> AcquireResult<Option<SemaphoreGuard<'_>>> {
        match self.take(Some(deadline(timeout)), true) {
            None => Ok(None),
            Some(taken) => self.guard(taken).map(Some).map_err(|e| {
                let pid = e.pid();
                OwnerDied::new(Some(e.into_guard()), pid)
            }),
        }
    }

    /// As [`acquire_guard_timeout`](Self::acquire_guard_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`acquire_guard_timeout`](Self::acquire_guard_timeout).
    pub fn acquire_guard_deadline(&self, deadline: Instant) -> AcquireResult<Option<SemaphoreGuard<'_>>> {
        self.acquire_guard_timeout(deadline.saturating_duration_since(Instant::now()))
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
            shim::wake(value, 1);
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

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`], returned when dropped; while it lives,
/// its process is recorded as a holder (see [`Semaphore::acquire_guard`]).
///
/// A process that dies in the instant between taking the permit and recording itself, or between
/// clearing its record and returning the permit, loses that permit as a plain `acquire` would;
/// a permit is never counted twice.
#[must_use = "the permit is returned when the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
    slot: Option<usize>,
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            self.sem.region.word64(slot).store(0, Ordering::Release);
        }
        self.sem.put_back();
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").field("tracked", &self.slot.is_some()).finish()
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

    /// As [`acquire_timeout`](Self::acquire_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    pub fn acquire_deadline(&self, deadline: Instant) -> bool {
        self.acquire_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// Takes a permit if one is free, without waiting.
    pub fn try_acquire(&self) -> bool {
        self.inner.try_acquire()
    }

    /// As [`Semaphore::acquire_guard`].
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], holding the guard, if the permit is one whose holder died holding it.
    pub fn acquire_guard(&self) -> AcquireResult<SemaphoreGuard<'_>> {
        self.inner.acquire_guard()
    }

    /// As [`Semaphore::acquire_guard_timeout`].
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], holding the guard, if the permit is one whose holder died holding it.
    pub fn acquire_guard_timeout(&self, timeout: Duration) -> AcquireResult<Option<SemaphoreGuard<'_>>> {
        self.inner.acquire_guard_timeout(timeout)
    }

    /// As [`acquire_guard_timeout`](Self::acquire_guard_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`acquire_guard_timeout`](Self::acquire_guard_timeout).
    pub fn acquire_guard_deadline(&self, deadline: Instant) -> AcquireResult<Option<SemaphoreGuard<'_>>> {
        self.acquire_guard_timeout(deadline.saturating_duration_since(Instant::now()))
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
#[serde(try_from = "RegionParts")]
pub struct Event {
    region: Region,
}

impl TryFrom<RegionParts> for Event {
    type Error = String;

    /// Refuses a handle whose region is too short for the flag and the count of waiters.
    fn try_from(p: RegionParts) -> Result<Self, String> {
        Ok(Event { region: p.checked("event", EVENT_BYTES)? })
    }
}

impl Event {
    /// A new event, not set.
    ///
    /// # Errors
    ///
    /// The shared memory for it cannot be created.
    pub fn new() -> proc_core::Result<Self> {
        Ok(Event { region: Region::new(EVENT_BYTES)? })
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let flag = self.region.word(0);
        if flag.swap(1, Ordering::SeqCst) == 0 && self.region.word(1).load(Ordering::SeqCst) > 0 {
            shim::wake_all(flag);
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

    /// As [`wait_timeout`](Self::wait_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        self.wait_timeout(deadline.saturating_duration_since(Instant::now()))
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
            // Count ourselves a waiter (word 1) so that `set` skips the wake-up when no one waits.
            let waiters = self.region.word(1);
            waiters.fetch_add(1, Ordering::SeqCst);
            shim::wait(flag, 0, deadline.map(|d| d - now));
            waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).finish()
    }
}
