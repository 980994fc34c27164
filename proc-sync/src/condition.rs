//! `Condition`: waiters and notifications counted in shared words next to a `Lock` or `RLock`.
//!
//! `WAITING` counts the waits in progress that no notification has reached; `PERMITS` counts
//! notifications not yet taken. Every wait takes a ticket from `TICKET` when it registers (under
//! the lock); `LIMIT` is the ticket count at the last `notify`, so a wait is *eligible* for a
//! permit only if it registered before some notify (`ticket < LIMIT`). `SEQ` changes on every
//! notify and is the word waiters sleep on.
//!
//! `wait` registers (`WAITING += 1`, a ticket), releases the lock, and sleeps until it is eligible
//! and can take a permit. `notify(n)` (under the lock) moves `k = min(n, WAITING)` from `WAITING`
//! to `PERMITS`, makes every registered wait eligible, bumps `SEQ` and wakes `k` sleepers, so
//! exactly `k` waits end as notified, and none of them is a wait that began after the notify.
//! A wait that times out takes the lock back and then, still under it, takes a permit if it is
//! eligible and one is left (and reports itself notified), or else leaves `WAITING`.
//!
//! Invariants: `WAITING + PERMITS` is the number of waits in progress, and `PERMITS` never
//! exceeds the number of eligible waits in progress, so no permit is stranded and no
//! notification is lost or counted twice. Which eligible wait takes a given permit is not
//! specified.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::OwnerDied;
use crate::lock::{deadline, AcquireResult, Lock, RLock};
use crate::region::Region;

const WAITING: usize = 0;
const PERMITS: usize = 1;
const TICKET: usize = 2;
const LIMIT: usize = 3;
const SEQ: usize = 4;
const WORDS: usize = 5;

/// Whether `ticket` was issued before `limit` (wrapping: tickets are compared within 2^31).
fn before(ticket: u32, limit: u32) -> bool {
    (limit.wrapping_sub(ticket) as i32) > 0
}

#[derive(Clone, Serialize, Deserialize)]
enum Inner {
    Lock(Lock),
    RLock(RLock),
}

/// A condition variable shared between processes, as Python's `multiprocessing.Condition`: a lock
/// (an [`RLock`] by default, as in Python, or a [`Lock`]) and a set of waiters.
///
/// [`acquire`](Self::acquire) gives a [`ConditionGuard`]; waiting and notifying are methods of the
/// guard, so they can only be called with the lock held (Python raises `RuntimeError` otherwise).
///
/// A process that dies while waiting still counts as a waiter: a later `notify(1)` may be spent on
/// it. Use [`notify_all`](ConditionGuard::notify_all) or `wait_for` with a timeout where that
/// matters.
///
/// # Examples
///
/// ```
/// use proc_core::Process;
/// use proc_sync::{Condition, Value};
///
/// fn produce(cond: Condition, ready: Value<u32>) {
///     let mut guard = cond.acquire().unwrap();
///     ready.set(1);
///     guard.notify_all();
/// }
///
/// let (cond, ready) = (Condition::new().unwrap(), Value::new(0u32).unwrap());
/// let mut guard = cond.acquire().unwrap();
/// let p = Process::new(produce, (cond.clone(), ready.clone())).start().unwrap();
/// assert!(guard.wait_for(|| ready.get() == 1).unwrap());
/// drop(guard);
/// p.join().unwrap();
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Condition {
    lock: Inner,
    region: Region,
}

impl Condition {
    /// A condition over a new [`RLock`], as Python's `Condition()`.
    ///
    /// # Errors
    ///
    /// The shared memory for it cannot be created.
    pub fn new() -> proc_core::Result<Self> {
        Self::with_rlock(RLock::new()?)
    }

    /// A condition over `lock` (shared with whoever else holds a handle on it).
    ///
    /// # Errors
    ///
    /// The shared memory for the waiter counts cannot be created.
    pub fn with_lock(lock: Lock) -> proc_core::Result<Self> {
        Ok(Condition { lock: Inner::Lock(lock), region: Region::new(WORDS * 4)? })
    }

    /// A condition over `lock`, a reentrant lock: a wait releases every level the thread holds
    /// and takes them all back.
    ///
    /// # Errors
    ///
    /// The shared memory for the waiter counts cannot be created.
    pub fn with_rlock(lock: RLock) -> proc_core::Result<Self> {
        Ok(Condition { lock: Inner::RLock(lock), region: Region::new(WORDS * 4)? })
    }

    /// Acquires the underlying lock, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], holding the guard, if the previous owner died holding the lock.
    pub fn acquire(&self) -> AcquireResult<ConditionGuard<'_>> {
        match self.lock_blocking() {
            Ok(()) => Ok(self.guard()),
            Err(pid) => Err(OwnerDied::new(self.guard(), pid)),
        }
    }

    /// Waits at most `timeout` for the underlying lock; `Ok(None)` if it stayed taken.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], holding the guard, if the previous owner died holding the lock.
    pub fn acquire_timeout(&self, timeout: Duration) -> AcquireResult<Option<ConditionGuard<'_>>> {
        // A guard only on the arms where the lock was taken: one built for a timeout would release
        // another holder's lock when dropped.
        match self.lock_until(deadline(timeout)) {
            None => Ok(None),
            Some(Ok(())) => Ok(Some(self.guard())),
            Some(Err(pid)) => Err(OwnerDied::new(Some(self.guard()), pid)),
        }
    }

    /// The number of waits in progress that no notification has reached yet (a snapshot).
    pub fn waiting(&self) -> u32 {
        self.region.word(WAITING).load(Ordering::SeqCst)
    }

    fn guard(&self) -> ConditionGuard<'_> {
        ConditionGuard { cond: self, _not_send: PhantomData }
    }

    /// Takes the lock until `deadline`; `None` on timeout, `Some(Err(pid))` if its owner died
    /// holding it (it is ours all the same).
    fn lock_until(&self, deadline: Instant) -> Option<Result<(), u32>> {
        match &self.lock {
            Inner::Lock(l) => l.lock_until(Some(deadline)),
            Inner::RLock(l) => l.lock_until(Some(deadline)),
        }
    }

    /// Takes the lock, waiting as long as it takes; `Err(pid)` if its owner died holding it (it is
    /// ours all the same).
    fn lock_blocking(&self) -> Result<(), u32> {
        match &self.lock {
            Inner::Lock(l) => l.lock_blocking(),
            Inner::RLock(l) => l.lock_blocking(),
        }
    }

    fn unlock(&self) {
        let _ = match &self.lock {
            Inner::Lock(l) => l.release(),
            Inner::RLock(l) => l.release(),
        };
    }

    /// One wait, the lock held on entry and on return: whether it was notified, and the pid of a
    /// lock owner that died meanwhile.
    fn wait_once(&self, deadline: Option<Instant>) -> (bool, Option<u32>) {
        let waiting = self.region.word(WAITING);
        let permits = self.region.word(PERMITS);
        let limit = self.region.word(LIMIT);
        let seq = self.region.word(SEQ);
        // Under the lock: register and take a ticket.
        let ticket = self.region.word(TICKET).fetch_add(1, Ordering::SeqCst);
        waiting.fetch_add(1, Ordering::SeqCst);
        let depth = match &self.lock {
            Inner::Lock(l) => l.release().map(|()| 1),
            Inner::RLock(l) => l.release_save(),
        };
        // The guard proves this thread holds the lock, so the release cannot fail.
        debug_assert!(depth.is_ok(), "condition wait without holding its lock");
        let mut notified = false;
        loop {
            let observed = seq.load(Ordering::SeqCst);
            if before(ticket, limit.load(Ordering::SeqCst)) {
                let p = permits.load(Ordering::SeqCst);
                if p > 0 {
                    if permits.compare_exchange(p, p - 1, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
                        notified = true;
                        break;
                    }
                    continue;
                }
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            proc_os::wait(seq, observed, deadline.map(|d| d - now));
        }
        let died = match &self.lock {
            Inner::Lock(l) => l.lock_blocking().err(),
            Inner::RLock(l) => l.acquire_restore(depth.unwrap_or(1)).err(),
        };
        if !notified {
            // Under the lock again (no notify can run now): take a permit left for an eligible
            // wait, or leave the count of waiters.
            let p = permits.load(Ordering::SeqCst);
            if before(ticket, limit.load(Ordering::SeqCst)) && p > 0 {
                permits.fetch_sub(1, Ordering::SeqCst);
                notified = true;
            } else {
                waiting.fetch_sub(1, Ordering::SeqCst);
            }
        }
        (notified, died)
    }

    pub(crate) fn wait_for_until(
        &self,
        mut predicate: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> Result<bool, OwnerDied<bool>> {
        loop {
            let result = predicate();
            if result || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(result);
            }
            if let (_, Some(pid)) = self.wait_once(deadline) {
                return Err(OwnerDied::new(predicate(), pid));
            }
        }
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.lock {
            Inner::Lock(_) => "Lock",
            Inner::RLock(_) => "RLock",
        };
        f.debug_struct("Condition").field("lock", &kind).field("waiting", &self.waiting()).finish()
    }
}

/// Holds a [`Condition`]'s lock (one level of it, for an [`RLock`]); dropping it releases that.
/// Waits and notifications go through it.
///
/// It stays on the thread that acquired it (an `RLock` belongs to a thread), so it is not `Send`:
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// let cond = proc_sync::Condition::new().unwrap();
/// send(cond.acquire().unwrap());
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    _not_send: PhantomData<*const ()>,
}

impl ConditionGuard<'_> {
    /// Releases the lock, waits for a notification, and takes the lock back.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] if, while this thread waited, another holder of the lock died holding it; the
    /// lock is held again all the same.
    pub fn wait(&mut self) -> Result<(), OwnerDied<()>> {
        match self.cond.wait_once(None) {
            (_, None) => Ok(()),
            (_, Some(pid)) => Err(OwnerDied::new((), pid)),
        }
    }

    /// As [`wait`](Self::wait), for at most `timeout`: whether a notification came (false: timed
    /// out). The lock is held again on return either way. Zero releases the lock and takes it back.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], holding whether a notification came, as for [`wait`](Self::wait).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool, OwnerDied<bool>> {
        match self.cond.wait_once(Some(deadline(timeout))) {
            (notified, None) => Ok(notified),
            (notified, Some(pid)) => Err(OwnerDied::new(notified, pid)),
        }
    }

    /// Waits until `predicate` (called with the lock held) returns true; returns true. Checks it
    /// first, so a condition that already holds does not wait.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], holding the predicate's last value, as for [`wait`](Self::wait).
    pub fn wait_for(&mut self, predicate: impl FnMut() -> bool) -> Result<bool, OwnerDied<bool>> {
        self.cond.wait_for_until(predicate, None)
    }

    /// As [`wait_for`](Self::wait_for), for at most `timeout` in all; returns the predicate's last
    /// value (false: it still does not hold).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], holding the predicate's last value, as for [`wait`](Self::wait).
    pub fn wait_for_timeout(
        &mut self,
        predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool, OwnerDied<bool>> {
        self.cond.wait_for_until(predicate, Some(deadline(timeout)))
    }

    /// `wait_for` up to an instant (`None`: no limit).
    pub(crate) fn cond_wait_for(
        &mut self,
        predicate: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> Result<bool, OwnerDied<bool>> {
        self.cond.wait_for_until(predicate, deadline)
    }

    /// Wakes up to `n` waiters; returns how many it woke (those waiting now, at most `n`).
    pub fn notify(&mut self, n: u32) -> u32 {
        let region = &self.cond.region;
        let waiting = region.word(WAITING);
        let k = waiting.load(Ordering::SeqCst).min(n);
        if k > 0 {
            waiting.fetch_sub(k, Ordering::SeqCst);
            region.word(PERMITS).fetch_add(k, Ordering::SeqCst);
            region.word(LIMIT).store(region.word(TICKET).load(Ordering::SeqCst), Ordering::SeqCst);
            let seq = region.word(SEQ);
            seq.fetch_add(1, Ordering::SeqCst);
            // Every sleeper is eligible now, so any k of them can take the k permits.
            proc_os::wake(seq, k);
        }
        k
    }

    /// Wakes every waiter; returns how many.
    pub fn notify_all(&mut self) -> u32 {
        self.notify(u32::MAX)
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        self.cond.unlock();
    }
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard").finish_non_exhaustive()
    }
}
