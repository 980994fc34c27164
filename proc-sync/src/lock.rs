//! `Lock` and `RLock`: one state word holding the owner's pid, so a dead owner can be detected.
//!
//! The word is 0 when free, else the owner's pid, with bit 31 set once someone waits (pids are
//! below 2^22 on Linux and below 100 000 on macOS). Acquire is a compare-and-swap from 0; a waiter
//! spins briefly, then sets the bit and sleeps on the word (futex / os_sync) in slices of
//! [`LIVENESS_CHECK`]; after each slice (and before a timed acquire gives up) it checks
//! that the owner still runs. A dead (or zombie) owner's word is taken over
//! by compare-and-swap and reported as [`OwnerDied`]. Release swaps in 0 and wakes one waiter if
//! the bit was set. The owner is a process: as in Python, any thread of it may release.
//!
//! A pid alone cannot tell a dead owner from a new process that got its pid. So next to the word
//! a 64-bit word holds the owner's [process token](proc_os::current_process_token) (its pid and
//! its start time), which the new owner stores right after its compare-and-swap (a cached value:
//! no system call) and clears before its release swap. A waiter whose owner pid is alive also
//! compares that token: same pid, another start time means the owner died and its pid went to
//! another process, and the word is taken over as from a dead owner: the waiter claims the
//! takeover by a compare-and-swap of the token (its own for the dead one's), then swaps the word
//! (which fails if it changed hands meanwhile). The claim matters when the taker is the process
//! that got the dead owner's pid: the word's value is then the same before and after. Left to the
//! pid alone: a token of 0 (the owner is between its compare-and-swap and its store, a few
//! instructions) or of another pid (a stale one a dead owner left until the new owner's store, or
//! a claim in progress: a claimer that dies between its two swaps leaves the word to the pid
//! alone); a process that got the dead owner's pid within the same tick of the start-time clock
//! (1/100 s on Linux, 1 µs on macOS); and systems where start times cannot be read (then the
//! waiter waits for the new process, as before).

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{OwnerDied, ReleaseError};
use crate::region::Region;
use crate::shim::{self, Instant};

const WAITERS: u32 = 1 << 31;

/// How many times a contended acquire looks at the word before it sleeps.
const SPIN: u32 = 64;

/// How often a waiter checks that the lock's owner is still alive.
pub const LIVENESS_CHECK: Duration = Duration::from_millis(50);

/// The result of an acquire: a guard, or a guard with the news that the previous owner died.
pub type AcquireResult<G> = Result<G, OwnerDied<G>>;

/// The raw lock protocol on one word (`index`, in `u32`s), shared by `Lock`, `RLock` and `Value`,
/// recording the owner's process token in the 64-bit word `owner` (in `u64`s).
pub(crate) fn raw_acquire(
    region: &Region,
    index: usize,
    owner: usize,
    deadline: Option<Instant>,
) -> Option<Result<(), u32>> {
    let taken = acquire_word(region, index, owner, deadline)?;
    region.word64(owner).store(shim::current_process_token(), Ordering::Relaxed);
    Some(taken)
}

/// [`raw_acquire`] but for the token store.
fn acquire_word(
    region: &Region,
    index: usize,
    owner_token: usize,
    deadline: Option<Instant>,
) -> Option<Result<(), u32>> {
    let word = region.word(index);
    let me = shim::pid();
    if word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
        return Some(Ok(()));
    }
    // A short spin first: a holder on another CPU often releases within a few hundred ns, and
    // sleeping costs a wake-up of tens of µs.
    let mut backoff = shim::Backoff::new(SPIN, 0);
    while backoff.snooze() {
        if word.load(Ordering::Relaxed) == 0
            && word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok()
        {
            return Some(Ok(()));
        }
    }
    // The owner's liveness costs system calls, so it is checked once per LIVENESS_CHECK of
    // waiting, and once more before giving up.
    let mut next_check = Instant::now() + LIVENESS_CHECK;
    loop {
        let cur = word.load(Ordering::Relaxed);
        if cur == 0 {
            // Free again; take it keeping the waiters bit, as others may still sleep.
            if word.compare_exchange(0, me | WAITERS, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return Some(Ok(()));
            }
            continue;
        }
        let now = Instant::now();
        let expired = deadline.is_some_and(|d| now >= d);
        if expired || now >= next_check {
            let owner = cur & !WAITERS;
            // The load of `cur` is relaxed: synchronize with the release that made the word hold
            // it, so that the token read is no older than that owner's store or clear.
            fence(Ordering::Acquire);
            let token = region.word64(owner_token);
            let seen = token.load(Ordering::Relaxed);
            if !owner_alive(owner, seen) {
                // When the token decided (it names the owner's pid), the takeover is claimed on it
                // first: a process that got the dead owner's pid leaves the word's value as it was
                // when it takes over, so a compare-and-swap on the word alone could succeed for a
                // second waiter that looked before, and the lock would have two owners.
                let mine = shim::current_process_token();
                let claim = seen != 0 && seen >> 32 == u64::from(owner);
                if claim && token.compare_exchange(seen, mine, Ordering::Relaxed, Ordering::Relaxed).is_err()
                {
                    continue;
                }
                let mut expected = cur;
                loop {
                    // Release: a waiter that sees the new word sees the claim too.
                    match word.compare_exchange(expected, me | WAITERS, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => return Some(Err(owner)),
                        // Only the waiters bit changed, and no release cleared the claim: still the
                        // dead owner's word.
                        Err(now)
                            if claim && now & !WAITERS == owner && token.load(Ordering::Relaxed) == mine =>
                        {
                            expected = now;
                        }
                        Err(_) => break,
                    }
                }
                if claim {
                    // The word changed hands: the new owner stores its token. Until then, the pid
                    // alone (0 never makes a live owner look dead).
                    let _ = token.compare_exchange(mine, 0, Ordering::Relaxed, Ordering::Relaxed);
                }
                continue;
            }
            if expired {
                return None;
            }
            next_check = now + LIVENESS_CHECK;
        }
        if cur & WAITERS == 0
            && word.compare_exchange(cur, cur | WAITERS, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            continue;
        }
        let until = deadline.map_or(next_check, |d| d.min(next_check));
        shim::wait(word, cur | WAITERS, Some(until.saturating_duration_since(now)));
    }
}

/// Whether the process that owns a word holding `owner` is alive, given the token read from the
/// word beside it: the token decides when it names the same pid (see the module docs), else the
/// pid alone.
fn owner_alive(owner: u32, token: u64) -> bool {
    if token != 0 && token >> 32 == u64::from(owner) {
        shim::process_token_alive(token)
    } else {
        shim::process_alive(owner)
    }
}

/// [`raw_acquire`] without a deadline: it returns only once the word is ours, so a caller never
/// has to invent a guard for a "timed out" that cannot happen (a guard built for no lock would
/// release someone else's lock when dropped).
pub(crate) fn raw_acquire_blocking(region: &Region, index: usize, owner: usize) -> Result<(), u32> {
    loop {
        if let Some(taken) = raw_acquire(region, index, owner, None) {
            return taken;
        }
    }
}

/// Releases the word, clearing the owner's token (in the 64-bit word `owner`) first; `Err` if it
/// was free.
#[inline]
pub(crate) fn raw_release(region: &Region, index: usize, owner: usize) -> Result<(), ReleaseError> {
    // Before the word is free: once it is, a new owner stores its own token, which this store must
    // not erase.
    region.word64(owner).store(0, Ordering::Relaxed);
    let word = region.word(index);
    let prev = word.swap(0, Ordering::Release);
    if prev == 0 {
        return Err(ReleaseError::NotHeld);
    }
    if prev & WAITERS != 0 {
        shim::wake(word, 1);
    }
    Ok(())
}

/// The instant `timeout` from now (a year from now if that overflows).
pub(crate) fn deadline(timeout: Duration) -> Instant {
    Instant::now().checked_add(timeout).unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365))
}

/// The lock word of a [`Lock`] (a `u32` index).
const STATE: usize = 0;
/// The 64-bit word (index in `u64`s) recording the thread that acquired a [`Lock`]
/// (`proc_os::thread_token`), 0 while it is free.
const ACQUIRER: usize = 1;
/// The 64-bit word (index in `u64`s) holding the owner's process token, 0 while it is free.
const LOCK_OWNER: usize = 2;
/// The bytes of a [`Lock`]'s region.
const LOCK_BYTES: usize = 24;

/// The 64-bit word (index in `u64`s) holding an [`RLock`]'s owner's process token.
const RLOCK_OWNER: usize = 2;
/// The bytes of an [`RLock`]'s region.
const RLOCK_BYTES: usize = 24;

/// A lock shared between processes, as Python's `multiprocessing.Lock`.
///
/// Cloning gives another handle on the same lock; passing it as a start argument gives the child
/// one. A holder that dies does not block the others forever: the next acquirer gets the lock
/// wrapped in [`OwnerDied`] (within [`LIVENESS_CHECK`] of noticing).
///
/// Acquiring it again from the thread that holds it waits forever, as in Python; but the
/// accessors of a [`Value`](crate::Value) or [`Array`](crate::Array) guarded by it see that the
/// calling thread holds it and do not take it again, so Python's `with v.get_lock(): v.value += 1`
/// works as `let _g = v.get_lock().acquire()?; v.set(v.get() + 1);`.
///
/// # Examples
///
/// ```
/// use proc_sync::Lock;
///
/// let lock = Lock::new().unwrap();
/// {
///     let _guard = lock.acquire().unwrap();
///     assert!(lock.locked());
///     assert!(lock.try_acquire().unwrap().is_none());
/// }
/// assert!(!lock.locked());
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "RegionParts")]
pub struct Lock {
    region: Region,
}

/// A decoded handle of a primitive whose state is one region (a [`Lock`], an [`RLock`], a
/// `Semaphore`, an `Event`), before the region is checked against the primitive's layout.
#[derive(Deserialize)]
pub(crate) struct RegionParts {
    region: Region,
}

impl RegionParts {
    /// The region, if it holds a decoded `what`'s `bytes` of state.
    pub(crate) fn checked(self, what: &str, bytes: usize) -> Result<Region, String> {
        checked(self.region, what, bytes)
    }
}

/// `region`, if it holds a decoded `what`'s `bytes` of state.
pub(crate) fn checked(region: Region, what: &str, bytes: usize) -> Result<Region, String> {
    if region.len() < bytes {
        return Err(format!(
            "a {what}'s memory is {} bytes, shorter than its {bytes} bytes of state",
            region.len()
        ));
    }
    Ok(region)
}

impl TryFrom<RegionParts> for Lock {
    type Error = String;

    /// Refuses a handle whose region is too short for the lock's words.
    fn try_from(p: RegionParts) -> Result<Self, String> {
        Ok(Lock { region: p.checked("lock", LOCK_BYTES)? })
    }
}

impl TryFrom<RegionParts> for RLock {
    type Error = String;

    /// Refuses a handle whose region is too short for the lock's words.
    fn try_from(p: RegionParts) -> Result<Self, String> {
        Ok(RLock { region: p.checked("reentrant lock", RLOCK_BYTES)? })
    }
}

impl Lock {
    /// A new, unlocked lock.
    ///
    /// # Errors
    ///
    /// The shared memory for it cannot be created.
    pub fn new() -> proc_core::Result<Self> {
        Ok(Lock { region: Region::new(LOCK_BYTES)? })
    }

    /// Blocks until the lock is acquired.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], holding the guard, if the previous owner died holding the lock.
    pub fn acquire(&self) -> AcquireResult<LockGuard<'_>> {
        match self.lock_blocking() {
            Ok(()) => Ok(LockGuard::new(self)),
            Err(pid) => Err(OwnerDied::new(LockGuard::new(self), pid)),
        }
    }

    /// Waits at most `timeout` for the lock; `Ok(None)` if it stayed taken. Zero tries once.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], holding the guard, if the previous owner died holding the lock.
    pub fn acquire_timeout(&self, timeout: Duration) -> AcquireResult<Option<LockGuard<'_>>> {
        // A guard exists only on the arms where the lock was taken: one built for a timeout would
        // release another holder's lock when dropped.
        match self.lock_until(Some(deadline(timeout))) {
            None => Ok(None),
            Some(Ok(())) => Ok(Some(LockGuard::new(self))),
            Some(Err(pid)) => Err(OwnerDied::new(Some(LockGuard::new(self)), pid)),
        }
    }

    /// As [`acquire_timeout`](Self::acquire_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`acquire_timeout`](Self::acquire_timeout).
    pub fn acquire_deadline(&self, deadline: Instant) -> AcquireResult<Option<LockGuard<'_>>> {
        self.acquire_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// Takes the lock if it is free, without waiting.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], holding the guard, if the owner had died.
    pub fn try_acquire(&self) -> AcquireResult<Option<LockGuard<'_>>> {
        self.acquire_timeout(Duration::ZERO)
    }

    /// Whether some process holds the lock (a snapshot).
    pub fn locked(&self) -> bool {
        self.region.word(STATE).load(Ordering::Relaxed) != 0
    }

    /// Releases the lock without a guard, as Python allows any process to: for a lock whose guard
    /// was [leaked](LockGuard::leak) here or in another process.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::NotHeld`] if the lock is not held.
    pub fn release(&self) -> Result<(), ReleaseError> {
        if !self.locked() {
            return Err(ReleaseError::NotHeld);
        }
        // Forget the acquiring thread before the lock is free: once it is, a new owner writes its
        // own, which this store must not erase.
        self.region.word64(ACQUIRER).store(0, Ordering::Relaxed);
        raw_release(&self.region, STATE, LOCK_OWNER)
    }

    /// Releases the lock that a guard of this thread holds (no check that it is held: the guard
    /// says so).
    fn unlock_held(&self) {
        // As in `release`: forget the acquirer before the lock word goes to 0.
        self.region.word64(ACQUIRER).store(0, Ordering::Relaxed);
        let _ = raw_release(&self.region, STATE, LOCK_OWNER);
    }

    /// Takes the lock without a guard (`None`: the deadline passed; `Err(pid)`: its owner died
    /// holding it, and it is ours), recording the calling thread as the acquirer.
    pub(crate) fn lock_until(&self, deadline: Option<Instant>) -> Option<Result<(), u32>> {
        let taken = raw_acquire(&self.region, STATE, LOCK_OWNER, deadline)?;
        self.region.word64(ACQUIRER).store(shim::thread_token(), Ordering::Relaxed);
        Some(taken)
    }

    /// As [`lock_until`](Self::lock_until) without a deadline.
    pub(crate) fn lock_blocking(&self) -> Result<(), u32> {
        let taken = raw_acquire_blocking(&self.region, STATE, LOCK_OWNER);
        self.region.word64(ACQUIRER).store(shim::thread_token(), Ordering::Relaxed);
        taken
    }

    /// Takes the lock for an accessor that runs no code of its caller while it holds it, unless
    /// the calling thread holds it already: whether it was taken here (then release it with
    /// [`unlock_unrecorded`](Self::unlock_unrecorded)). A lock taken here does not record the
    /// thread (nothing can ask while it is held), which keeps `Value::get`/`set`/`update` as cheap
    /// as a bare lock: a free lock costs a load and one compare-and-swap. A holder that died
    /// is ignored: the lock is ours either way (the accessors document it).
    #[inline]
    pub(crate) fn lock_unless_held(&self) -> bool {
        let word = self.region.word(STATE);
        // A load first: a compare-and-swap that fails on a lock this thread holds costs as much as
        // one that succeeds.
        let cur = word.load(Ordering::Relaxed);
        if cur == 0 {
            if word.compare_exchange(0, shim::pid(), Ordering::Acquire, Ordering::Relaxed).is_ok() {
                let token = shim::current_process_token();
                self.region.word64(LOCK_OWNER).store(token, Ordering::Relaxed);
                return true;
            }
        } else if self.held_by_current_thread() {
            return false;
        }
        if raw_acquire_blocking(&self.region, STATE, LOCK_OWNER).is_err() {
            // Taken over from a holder that died: forget its thread. A process that later gets
            // the dead one's pid could have a thread with the same token, which would then pass
            // for the holder of a lock another of its threads took here.
            self.region.word64(ACQUIRER).store(0, Ordering::Relaxed);
        }
        true
    }

    /// Releases a lock taken by [`lock_unless_held`](Self::lock_unless_held). The acquirer word
    /// is already clear: every release clears it, and a takeover from a dead holder too.
    #[inline]
    pub(crate) fn unlock_unrecorded(&self) {
        let _ = raw_release(&self.region, STATE, LOCK_OWNER);
    }

    /// Whether the calling thread acquired the lock and it has not been released since.
    ///
    /// Only the acquiring thread writes its own token, and every release clears it before the
    /// lock word goes to 0, so a thread sees its token here only while its acquire stands (a guard
    /// cannot move to another thread: [`LockGuard`] is not `Send`). The owner's process token
    /// must be this process' too: a dead holder's thread token (pid and thread id) can match a
    /// thread of a later process given its pid. Costs one load when the lock is free.
    #[inline]
    pub(crate) fn held_by_current_thread(&self) -> bool {
        let word = self.region.word(STATE).load(Ordering::Relaxed);
        word != 0
            && word & !WAITERS == shim::pid()
            && self.region.word64(ACQUIRER).load(Ordering::Relaxed) == shim::thread_token()
            && self.region.word64(LOCK_OWNER).load(Ordering::Relaxed) == shim::current_process_token()
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock").field("locked", &self.locked()).finish()
    }
}

/// Holds a [`Lock`]; dropping it releases the lock.
///
/// It stays on the thread that acquired it (as `std::sync::MutexGuard` does), so that the lock
/// knows which thread holds it; it is not `Send`. To release from another thread or process,
/// [`leak`](Self::leak) it and call [`Lock::release`] there.
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// let lock = proc_sync::Lock::new().unwrap();
/// send(lock.acquire().unwrap());
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    // The lock records the acquiring thread; the guard must be dropped on it.
    _not_send: PhantomData<*const ()>,
}

impl<'a> LockGuard<'a> {
    /// The guard of a lock this thread has just taken. Only ever built right after a successful
    /// acquire: its `Drop` releases the lock.
    fn new(lock: &'a Lock) -> Self {
        LockGuard { lock, _not_send: PhantomData }
    }

    /// Keeps the lock held past the guard; release it later with [`Lock::release`] (from any
    /// thread or process). Until then it counts as held by the thread that acquired it.
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.unlock_held();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

/// A reentrant lock shared between processes, as Python's `multiprocessing.RLock`: the owning
/// thread of the owning process may acquire it again; it is free after as many releases.
///
/// Words: 0 the lock word (owner pid), 1–2 the owner thread, 3 the depth (`u32`s); then the
/// owner's process token (the third `u64`).
///
/// # Examples
///
/// ```
/// use proc_sync::RLock;
///
/// let lock = RLock::new().unwrap();
/// let outer = lock.acquire().unwrap();
/// let inner = lock.acquire().unwrap();
/// drop(inner);
/// assert!(lock.locked());
/// drop(outer);
/// assert!(!lock.locked());
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "RegionParts")]
pub struct RLock {
    region: Region,
}

impl RLock {
    /// A new, unlocked reentrant lock.
    ///
    /// # Errors
    ///
    /// The shared memory for it cannot be created.
    pub fn new() -> proc_core::Result<Self> {
        Ok(RLock { region: Region::new(RLOCK_BYTES)? })
    }

    /// Whether the calling thread owns the lock: its pid and thread id, and this process' token
    /// (a dead owner's pid and thread id can match a thread of a later process given its pid).
    fn owned_by_me(&self) -> bool {
        let tid = shim::thread_id();
        self.region.word(0).load(Ordering::Relaxed) & !WAITERS == shim::pid()
            && self.region.word(1).load(Ordering::Relaxed) == tid as u32
            && self.region.word(2).load(Ordering::Relaxed) == (tid >> 32) as u32
            && self.region.word64(RLOCK_OWNER).load(Ordering::Relaxed) == shim::current_process_token()
    }

    fn take(&self) {
        let tid = shim::thread_id();
        self.region.word(1).store(tid as u32, Ordering::Relaxed);
        self.region.word(2).store((tid >> 32) as u32, Ordering::Relaxed);
        self.region.word(3).store(1, Ordering::Relaxed);
    }

    /// One more level, if this thread holds the lock already.
    fn reenter(&self) -> bool {
        if !self.owned_by_me() {
            return false;
        }
        // Only this thread touches the depth while it owns the lock.
        let depth = self.region.word(3);
        depth.store(depth.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        true
    }

    /// Takes one level without a guard (`None`: the deadline passed; `Err(pid)`: its owner died
    /// holding it, and it is ours).
    pub(crate) fn lock_until(&self, deadline: Option<Instant>) -> Option<Result<(), u32>> {
        if self.reenter() {
            return Some(Ok(()));
        }
        let taken = raw_acquire(&self.region, 0, RLOCK_OWNER, deadline)?;
        self.take();
        Some(taken)
    }

    /// As [`lock_until`](Self::lock_until) without a deadline.
    pub(crate) fn lock_blocking(&self) -> Result<(), u32> {
        if self.reenter() {
            return Ok(());
        }
        let taken = raw_acquire_blocking(&self.region, 0, RLOCK_OWNER);
        self.take();
        taken
    }

    /// Blocks until the lock is acquired (at once if this thread holds it).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], holding the guard, if the previous owner died holding the lock.
    pub fn acquire(&self) -> AcquireResult<RLockGuard<'_>> {
        match self.lock_blocking() {
            Ok(()) => Ok(RLockGuard::new(self)),
            Err(pid) => Err(OwnerDied::new(RLockGuard::new(self), pid)),
        }
    }

    /// Waits at most `timeout`; `Ok(None)` if another owner kept it. Zero tries once.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], holding the guard, if the previous owner died holding the lock.
    pub fn acquire_timeout(&self, timeout: Duration) -> AcquireResult<Option<RLockGuard<'_>>> {
        // As for `Lock`: a guard only on the arms where a level was taken.
        match self.lock_until(Some(deadline(timeout))) {
            None => Ok(None),
            Some(Ok(())) => Ok(Some(RLockGuard::new(self))),
            Some(Err(pid)) => Err(OwnerDied::new(Some(RLockGuard::new(self)), pid)),
        }
    }

    /// As [`acquire_timeout`](Self::acquire_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`acquire_timeout`](Self::acquire_timeout).
    pub fn acquire_deadline(&self, deadline: Instant) -> AcquireResult<Option<RLockGuard<'_>>> {
        self.acquire_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// Whether some thread of some process holds the lock (a snapshot).
    pub fn locked(&self) -> bool {
        self.region.word(0).load(Ordering::Relaxed) != 0
    }

    /// Releases one level without a guard (for a [leaked](RLockGuard::leak) guard).
    ///
    /// # Errors
    ///
    /// [`ReleaseError::NotOwner`] unless the calling thread of this process holds the lock.
    pub fn release(&self) -> Result<(), ReleaseError> {
        if !self.owned_by_me() {
            return Err(if self.locked() { ReleaseError::NotOwner } else { ReleaseError::NotHeld });
        }
        let depth = self.region.word(3);
        let d = depth.load(Ordering::Relaxed);
        depth.store(d - 1, Ordering::Relaxed);
        if d == 1 {
            self.region.word(1).store(0, Ordering::Relaxed);
            self.region.word(2).store(0, Ordering::Relaxed);
            raw_release(&self.region, 0, RLOCK_OWNER)?;
        }
        Ok(())
    }
}

impl RLock {
    /// Releases every level this thread holds, for a condition wait; the depth to restore.
    ///
    /// # Errors
    ///
    /// [`ReleaseError`] unless the calling thread of this process holds the lock.
    pub(crate) fn release_save(&self) -> Result<u32, ReleaseError> {
        if !self.owned_by_me() {
            return Err(if self.locked() { ReleaseError::NotOwner } else { ReleaseError::NotHeld });
        }
        let depth = self.region.word(3).swap(0, Ordering::Relaxed);
        self.region.word(1).store(0, Ordering::Relaxed);
        self.region.word(2).store(0, Ordering::Relaxed);
        raw_release(&self.region, 0, RLOCK_OWNER)?;
        Ok(depth)
    }

    /// Takes the lock back at `depth` after a condition wait; `Err(pid)` if its owner meanwhile
    /// died holding it (it is ours all the same).
    pub(crate) fn acquire_restore(&self, depth: u32) -> Result<(), u32> {
        let r = raw_acquire_blocking(&self.region, 0, RLOCK_OWNER);
        self.take();
        self.region.word(3).store(depth, Ordering::Relaxed);
        r
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock").field("locked", &self.locked()).finish()
    }
}

/// Holds one level of an [`RLock`]; dropping it releases that level. It stays on the thread that
/// acquired it (the lock's owner is that thread), so it is not `Send`:
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// let lock = proc_sync::RLock::new().unwrap();
/// send(lock.acquire().unwrap());
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    // An RLock belongs to a thread: its guard must not be dropped on another.
    _not_send: PhantomData<*const ()>,
}

impl<'a> RLockGuard<'a> {
    /// The guard of one level this thread has just taken; as for a `LockGuard`, only ever built
    /// right after a successful acquire.
    fn new(lock: &'a RLock) -> Self {
        RLockGuard { lock, _not_send: PhantomData }
    }

    /// Keeps this level held past the guard; release it with [`RLock::release`] from the same
    /// thread.
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}
