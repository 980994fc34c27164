//! `Condition`: waiters and notifications recorded in shared memory next to a `Lock` or `RLock`.
//!
//! Every wait takes a ticket from `TICKET` when it registers (under the lock) and records itself in
//! one of `WAITER_SLOTS` (128) slots: its process' [token](proc_os::current_process_token) (pid and
//! start time, so that a process that later gets a dead waiter's pid does not pass for it), its
//! ticket, a `STATE` word (0, or `NOTIFIED` once a notify chose it) that it sleeps on, and `NOTE`,
//! the ticket count at the notify that chose it. The token is written last when a wait registers
//! and cleared when it leaves, each a single store under the lock, so a process that dies anywhere
//! leaves either a whole slot or none.
//!
//! `notify(n)` (under the lock) chooses up to `n` recorded waits not yet notified, oldest ticket
//! first, checking that each one's process is alive: a dead one's slot is freed (it only leaves),
//! a live one is marked `NOTIFIED` (with `NOTE`) and woken. So its notifications go to live waits,
//! never to one that began after it, and it returns how many it chose. A wait that times out takes
//! the lock back and reports itself notified if a notify chose it meanwhile; either way it frees
//! its slot.
//!
//! A waiter chosen by a notify may die before its wait ends (the notification then reached a
//! process that will never act on it). Such a notification is passed on: every sleeping waiter
//! looks at the slots once per [`LIVENESS_CHECK`] (loads only, and a liveness check for notified
//! slots only), and if one is notified but its process is dead, takes the lock and hands the
//! notification to the oldest live waiter not yet notified whose ticket is below that slot's
//! `NOTE` (it registered before that notify), then frees the slot; `notify` does the same first.
//! If no such waiter is left, the notification is dropped: nobody is owed it.
//!
//! A wait that finds every slot taken (more than `WAITER_SLOTS` waits at once) falls back to
//! counting: `WAITING` counts such waits that no notification has reached, `PERMITS` the
//! notifications left for them, `LIMIT` is the ticket count at the last notify that gave permits
//! (such a wait is *eligible* only if `ticket < LIMIT`), and `SEQ` changes on every such notify
//! and is the word these waits sleep on. A notify that chose fewer than `n` recorded waits moves
//! `k = min(n - chosen, WAITING)` from `WAITING` to `PERMITS`, makes every unrecorded wait eligible,
//! bumps `SEQ` and wakes `k` of them; an eligible wait takes a permit by compare-and-swap, or, when
//! it times out, under the lock again. A process that dies in such a wait is not seen: it counts as
//! a waiter, a notify may give it a permit, and a permit it was owed stays with it.
//!
//! Invariants: each recorded wait is notified at most once and ends as notified exactly when a
//! notify (or a hand-over) chose it, so no notification is lost or counted twice; a notification
//! chosen for a waiter that died before its wait ended goes, within about a [`LIVENESS_CHECK`], to
//! a live recorded waiter that registered before that notify if one is asleep, so none is stranded
//! on a dead waiter while an eligible live one sleeps. For unrecorded waits, `WAITING + PERMITS` is
//! the number of them in progress and `PERMITS` never exceeds the number of eligible ones, dead ones
//! included. Which eligible wait takes a given permit is not specified. A process that dies inside
//! `notify` itself (holding the lock) may leave part of that notify undone, as any lock holder
//! that dies leaves its data.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::OwnerDied;
use crate::lock::{deadline, AcquireResult, Lock, RLock, LIVENESS_CHECK};
use crate::region::Region;
use crate::shim::{self, Instant};

/// Waits in progress without a slot that no notification has reached.
const WAITING: usize = 0;
/// Notifications not yet taken by a wait without a slot.
const PERMITS: usize = 1;
/// The next ticket.
const TICKET: usize = 2;
/// The ticket count at the last notify that gave permits.
const LIMIT: usize = 3;
/// Changes on every notify that gives permits; waits without a slot sleep on it.
const SEQ: usize = 4;
/// The first slot; each is [`SLOT_WORDS`] words: [`OWNER`] (two), [`SLOT_TICKET`], [`STATE`],
/// [`NOTE`] and one spare.
const FIRST_SLOT: usize = 6;
/// How many waits in progress have a slot recording their process; a wait that finds none free is
/// counted in `WAITING` instead (see the module docs).
const WAITER_SLOTS: usize = 128;
const SLOT_WORDS: usize = 6;
/// Slot words (one 64-bit word): the waiting process' token; 0 for a free slot. Written last when
/// a wait registers, and cleared (a single store) when it leaves.
const OWNER: usize = 0;
/// Slot word: the wait's ticket.
const SLOT_TICKET: usize = 2;
/// Slot word: 0 while the wait is not notified, [`NOTIFIED`] once a notify chose it. The wait
/// sleeps on it.
const STATE: usize = 3;
/// Slot word: the ticket count at the notify that chose the wait (who else may take it over).
const NOTE: usize = 4;
// Every slot's token is 8-byte aligned in the (64-byte aligned) region.
const _: () =
    assert!(FIRST_SLOT.is_multiple_of(2) && SLOT_WORDS.is_multiple_of(2) && OWNER.is_multiple_of(2));
const NOTIFIED: u32 = 1;
const WORDS: usize = FIRST_SLOT + WAITER_SLOTS * SLOT_WORDS;

/// Whether `ticket` was issued before `limit` (wrapping: tickets are compared within 2^31).
fn before(ticket: u32, limit: u32) -> bool {
    (limit.wrapping_sub(ticket) as i32) > 0
}

/// The index of word `word` of slot `slot`.
fn slot_word(slot: usize, word: usize) -> usize {
    FIRST_SLOT + slot * SLOT_WORDS + word
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
/// A process that dies while waiting absorbs no notification: `notify(n)` checks that the waiters
/// it chooses are alive and returns how many live ones it woke, and a waiter that dies after a
/// notify chose it, before its wait returned, has that notification passed to a live waiter that
/// was already waiting at that notify (the sleeping waiters look for such a death once per
/// [`LIVENESS_CHECK`]). This holds for up to 128 waits at once: beyond that, the extra waits are
/// counted rather than recorded, and one that dies still counts as a waiter, as a notification may
/// be spent on it. A waiter is recorded by its pid and start time, so a dead waiter whose pid went
/// to a new process is not taken for that process (as for a [`Lock`]'s owner).
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
#[serde(try_from = "Parts")]
pub struct Condition {
    lock: Inner,
    region: Region,
}

/// A decoded [`Condition`] handle before its region is checked against the layout.
#[derive(Deserialize)]
#[serde(rename = "Condition")]
struct Parts {
    lock: Inner,
    region: Region,
}

impl TryFrom<Parts> for Condition {
    type Error = String;

    /// Refuses a handle whose region is too short for the words and slots.
    fn try_from(p: Parts) -> Result<Self, String> {
        Ok(Condition { lock: p.lock, region: crate::lock::checked(p.region, "condition", WORDS * 4)? })
    }
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

    /// As [`acquire_timeout`](Self::acquire_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`acquire_timeout`](Self::acquire_timeout).
    pub fn acquire_deadline(&self, deadline: Instant) -> AcquireResult<Option<ConditionGuard<'_>>> {
        self.acquire_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// The number of waits in progress that no notification has reached yet (a snapshot). A
    /// waiter that died counts until a `notify` finds it dead.
    pub fn waiting(&self) -> u32 {
        let recorded = (0..WAITER_SLOTS)
            .filter(|&i| {
                self.owner(i).load(Ordering::SeqCst) != 0 && self.word(i, STATE).load(Ordering::SeqCst) == 0
            })
            .count();
        // At most WAITER_SLOTS.
        let recorded = u32::try_from(recorded).unwrap_or(u32::MAX);
        self.region.word(WAITING).load(Ordering::SeqCst).saturating_add(recorded)
    }

    /// Word `word` of slot `slot`.
    fn word(&self, slot: usize, word: usize) -> &shim::AtomicU32 {
        self.region.word(slot_word(slot, word))
    }

    /// The token word of slot `slot`.
    fn owner(&self, slot: usize) -> &shim::AtomicU64 {
        self.region.word64(slot_word(slot, OWNER) / 2)
    }

    /// Records a wait with `ticket` in a free slot, under the lock; `None` if none is free.
    fn record(&self, ticket: u32) -> Option<usize> {
        let slot = (0..WAITER_SLOTS).find(|&i| self.owner(i).load(Ordering::SeqCst) == 0)?;
        self.word(slot, SLOT_TICKET).store(ticket, Ordering::SeqCst);
        self.word(slot, STATE).store(0, Ordering::SeqCst);
        // Last: the slot is in use once its token is set, and every other word of it is valid then.
        self.owner(slot).store(shim::current_process_token(), Ordering::SeqCst);
        Some(slot)
    }

    /// Whether the process of `token` runs (this process does, without a system call).
    fn alive(token: u64) -> bool {
        token == shim::current_process_token() || shim::process_token_alive(token)
    }

    /// Whether some slot holds a notification that a dead process was chosen for (a look without
    /// the lock: a hint that [`reclaim`](Self::reclaim) has work).
    fn stranded(&self) -> bool {
        (0..WAITER_SLOTS).any(|i| {
            let token = self.owner(i).load(Ordering::SeqCst);
            token != 0 && self.word(i, STATE).load(Ordering::SeqCst) != 0 && !Self::alive(token)
        })
    }

    /// Under the lock: frees the slots of notified waiters that died before their wait ended,
    /// passing each one's notification to the oldest live waiter not yet notified that registered
    /// before that notify, if there is one. (Dead waiters not notified are freed as
    /// [`choose_live`](Self::choose_live) meets them.)
    fn reclaim(&self) {
        for i in 0..WAITER_SLOTS {
            let token = self.owner(i).load(Ordering::SeqCst);
            if token == 0 || self.word(i, STATE).load(Ordering::SeqCst) == 0 || Self::alive(token) {
                continue;
            }
            let note = self.word(i, NOTE).load(Ordering::SeqCst);
            self.choose_live(1, note, |ticket| before(ticket, note));
            self.owner(i).store(0, Ordering::SeqCst);
        }
    }

    /// Under the lock: notifies up to `n` live waiters not yet notified whose ticket passes
    /// `eligible`, oldest first, for a notify at ticket count `note`; frees the slots of the dead
    /// ones met on the way (not notified, they only leave). How many it notified.
    fn choose_live(&self, n: u32, note: u32, eligible: impl Fn(u32) -> bool) -> u32 {
        let next = self.region.word(TICKET).load(Ordering::SeqCst);
        let mut waiters: Vec<(u32, usize)> = (0..WAITER_SLOTS)
            .filter(|&i| {
                self.owner(i).load(Ordering::SeqCst) != 0 && self.word(i, STATE).load(Ordering::SeqCst) == 0
            })
            .map(|i| (self.word(i, SLOT_TICKET).load(Ordering::SeqCst), i))
            .filter(|&(ticket, _)| eligible(ticket))
            .collect();
        // The oldest is the furthest behind the next ticket.
        waiters.sort_unstable_by_key(|&(ticket, _)| std::cmp::Reverse(next.wrapping_sub(ticket)));
        let mut chosen = 0;
        for (_, i) in waiters {
            if chosen == n {
                break;
            }
            if Self::alive(self.owner(i).load(Ordering::SeqCst)) {
                self.choose(i, note);
                chosen += 1;
            } else {
                self.owner(i).store(0, Ordering::SeqCst);
            }
        }
        chosen
    }

    /// Under the lock: notifies the wait in slot `slot`, chosen by a notify at ticket count `note`.
    fn choose(&self, slot: usize, note: u32) {
        self.word(slot, NOTE).store(note, Ordering::SeqCst);
        let state = self.word(slot, STATE);
        state.store(NOTIFIED, Ordering::SeqCst);
        shim::wake_all(state);
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

    /// Takes the lock until `deadline` (`None`: no limit); as [`lock_until`](Self::lock_until).
    fn lock_by(&self, deadline: Option<Instant>) -> Option<Result<(), u32>> {
        match deadline {
            Some(d) => self.lock_until(d),
            None => Some(self.lock_blocking()),
        }
    }

    /// One wait, the lock held on entry and on return: whether it was notified, and the pid of a
    /// lock owner that died meanwhile.
    fn wait_once(&self, deadline: Option<Instant>) -> (bool, Option<u32>) {
        let waiting = self.region.word(WAITING);
        let permits = self.region.word(PERMITS);
        let limit = self.region.word(LIMIT);
        // Under the lock: take a ticket and register, in a slot if one is free.
        let ticket = self.region.word(TICKET).fetch_add(1, Ordering::SeqCst);
        let slot = self.record(ticket);
        if slot.is_none() {
            waiting.fetch_add(1, Ordering::SeqCst);
        }
        let depth = match &self.lock {
            Inner::Lock(l) => l.release().map(|()| 1),
            Inner::RLock(l) => l.release_save(),
        };
        // The guard proves this thread holds the lock, so the release cannot fail.
        debug_assert!(depth.is_ok(), "condition wait without holding its lock");
        let mut died = None;
        let mut notified = match slot {
            Some(slot) => {
                self.sleep_in_slot(slot, deadline, &mut died);
                false
            }
            None => self.sleep_for_permit(ticket, deadline),
        };
        let retaken = match &self.lock {
            Inner::Lock(l) => l.lock_blocking().err(),
            Inner::RLock(l) => l.acquire_restore(depth.unwrap_or(1)).err(),
        };
        // Under the lock again (no notify can run now).
        match slot {
            Some(slot) => {
                // Notified if a notify chose this wait, even one that came after the deadline.
                notified = self.word(slot, STATE).load(Ordering::SeqCst) != 0;
                self.owner(slot).store(0, Ordering::SeqCst);
            }
            None if !notified => {
                // Take a permit left for an eligible wait, or leave the count of waiters.
                let p = permits.load(Ordering::SeqCst);
                if before(ticket, limit.load(Ordering::SeqCst)) && p > 0 {
                    permits.fetch_sub(1, Ordering::SeqCst);
                    notified = true;
                } else {
                    waiting.fetch_sub(1, Ordering::SeqCst);
                }
            }
            None => {}
        }
        (notified, retaken.or(died))
    }

    /// Sleeps, the lock released, until a notify chooses the wait in `slot` or `deadline` passes.
    /// Once per [`LIVENESS_CHECK`] it looks for a notification stranded on a dead waiter, and if
    /// there is one, takes the lock to pass it on (perhaps to this wait); a lock owner that died
    /// meanwhile goes to `died`.
    fn sleep_in_slot(&self, slot: usize, deadline: Option<Instant>, died: &mut Option<u32>) {
        let state = self.word(slot, STATE);
        let mut next_check = Instant::now() + LIVENESS_CHECK;
        loop {
            if state.load(Ordering::SeqCst) != 0 {
                return;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return;
            }
            if now >= next_check {
                if self.stranded() {
                    match self.lock_by(deadline) {
                        // The deadline passed; the caller takes the lock and finishes.
                        None => return,
                        Some(taken) => {
                            if let Err(pid) = taken {
                                *died = Some(pid);
                            }
                            self.reclaim();
                            self.unlock();
                        }
                    }
                }
                next_check = Instant::now() + LIVENESS_CHECK;
                continue;
            }
            let until = deadline.map_or(next_check, |d| d.min(next_check));
            shim::wait(state, 0, Some(until.saturating_duration_since(now)));
        }
    }

    /// Sleeps, the lock released, until the wait with `ticket` (without a slot) is eligible and
    /// takes a permit (true) or `deadline` passes (false).
    fn sleep_for_permit(&self, ticket: u32, deadline: Option<Instant>) -> bool {
        let permits = self.region.word(PERMITS);
        let limit = self.region.word(LIMIT);
        let seq = self.region.word(SEQ);
        loop {
            let observed = seq.load(Ordering::SeqCst);
            if before(ticket, limit.load(Ordering::SeqCst)) {
                let p = permits.load(Ordering::SeqCst);
                if p > 0 {
                    if permits.compare_exchange(p, p - 1, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
                        return true;
                    }
                    continue;
                }
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return false;
            }
            shim::wait(seq, observed, deadline.map(|d| d - now));
        }
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

    /// As [`wait_timeout`](Self::wait_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout).
    pub fn wait_deadline(&mut self, deadline: Instant) -> Result<bool, OwnerDied<bool>> {
        self.wait_timeout(deadline.saturating_duration_since(Instant::now()))
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

    /// As [`wait_for_timeout`](Self::wait_for_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`wait_for_timeout`](Self::wait_for_timeout).
    pub fn wait_for_deadline(
        &mut self,
        predicate: impl FnMut() -> bool,
        deadline: Instant,
    ) -> Result<bool, OwnerDied<bool>> {
        self.cond.wait_for_until(predicate, Some(deadline))
    }

    /// `wait_for` up to an instant (`None`: no limit).
    pub(crate) fn cond_wait_for(
        &mut self,
        predicate: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> Result<bool, OwnerDied<bool>> {
        self.cond.wait_for_until(predicate, deadline)
    }

    /// Wakes up to `n` live waiters; returns how many it woke (those waiting now, at most `n`).
    /// Waiters that died waiting are not counted and get nothing.
    pub fn notify(&mut self, n: u32) -> u32 {
        let cond = self.cond;
        let region = &cond.region;
        let next = region.word(TICKET).load(Ordering::SeqCst);
        cond.reclaim();
        let chosen = cond.choose_live(n, next, |_| true);
        // The rest to waits without a slot, as permits.
        let waiting = region.word(WAITING);
        let k = waiting.load(Ordering::SeqCst).min(n - chosen);
        if k > 0 {
            waiting.fetch_sub(k, Ordering::SeqCst);
            region.word(PERMITS).fetch_add(k, Ordering::SeqCst);
            region.word(LIMIT).store(next, Ordering::SeqCst);
            let seq = region.word(SEQ);
            seq.fetch_add(1, Ordering::SeqCst);
            // Every sleeper without a slot is eligible now, so any k of them can take the permits.
            shim::wake(seq, k);
        }
        chosen + k
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
