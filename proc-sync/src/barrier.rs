//! `Barrier`: Python's `threading.Barrier` state machine (filling, draining, resetting, broken)
//! over a [`Condition`] and shared words: the count of parties in the round, the state, the pid of
//! a party whose death broke the barrier, and one 64-bit slot per party holding the
//! [token](proc_os::current_process_token) (pid and start time) of a process waiting in the
//! current round.
//!
//! Every word is read and written under the condition's lock. A party records its token in a free
//! slot when it arrives (as it takes its index from COUNT) and clears it when it leaves the wait
//! (released, timed out or broken), so `COUNT` is the number of recorded slots. A waiter sleeps in
//! slices of [`LIVENESS_CHECK`]; after each one it checks the recorded tokens of the others (so a
//! dead party whose pid went to a new process is still seen dead). A dead one's slots are cleared and counted out on its behalf; if the round was still filling, the
//! barrier breaks with that pid in DEAD, so that every waiter reports it. A lock taken over from
//! a holder that died first recounts `COUNT` from the slots (the holder may have died between the
//! two stores), then treats the holder as a dead party if it had a slot, or else breaks the
//! barrier (what it was doing is unknown).

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use proc_core::handle::StaticFn;
use serde::{Deserialize, Serialize};

use crate::condition::{Condition, ConditionGuard};
use crate::error::BarrierError;
use crate::lock::{deadline, Lock, LIVENESS_CHECK};
use crate::region::Region;
use crate::shim::{self, Instant};

/// The number of parties in the current round (recorded in a slot), as a `u32` index.
const COUNT: usize = 0;
/// FILLING, DRAINING, RESETTING or BROKEN.
const STATE: usize = 1;
/// The pid of the party whose death broke the barrier; 0 unless a death did.
const DEAD: usize = 2;
/// The first of `parties` slots (in `u64`s, after the `u32` words above and one spare), each 0 or
/// the process token of a party in the current round.
const FIRST_SLOT: usize = 2;

const FILLING: u32 = 0;
const DRAINING: u32 = 1;
const RESETTING: u32 = 2;
const BROKEN: u32 = 3;

/// The bytes of the region of a barrier for `parties` parties (`None`: more than memory holds).
fn region_bytes(parties: u32) -> Option<usize> {
    usize::try_from(parties).ok()?.checked_add(FIRST_SLOT)?.checked_mul(8)
}

/// A barrier for a fixed number of parties, shared between processes, as Python's
/// `multiprocessing.Barrier`.
///
/// Each round, [`wait`](Self::wait) blocks until `parties` processes (or threads) called it, then
/// lets them all go, each with a distinct index `0..parties` (the order of arrival). The optional
/// action runs once per round, in the last party to arrive, before any party goes on. A timeout,
/// an [`abort`](Self::abort), a panicking action or a party that dies holding the barrier's lock
/// breaks it for every party until [`reset`](Self::reset).
///
/// A party that dies while waiting breaks it too: each waiting party checks the pids of the others
/// in its round once per [`LIVENESS_CHECK`] of waiting, so within about that time of the death
/// (a wait without a timeout included), every waiter gets [`BarrierError::PartyDied`] naming the
/// dead process, and so does every later wait until a reset. A party counts from its arrival: if
/// the last party arrives before the death is noticed, the round passes. A party that dies between
/// rounds (not waiting) breaks nothing; the next round waits for `parties` parties as always, so
/// one must take its place. Parties are recorded by pid and start time, so a dead party whose pid
/// went to a new process is not taken for that process (as for a [`Lock`]'s owner).
///
/// # Examples
///
/// ```
/// use proc_core::Process;
/// use proc_sync::Barrier;
///
/// fn party(barrier: Barrier) -> u32 {
///     barrier.wait().unwrap()
/// }
///
/// let barrier = Barrier::new(3).unwrap();
/// let children: Vec<_> =
///     (0..2).map(|_| Process::new(party, (barrier.clone(),)).start().unwrap()).collect();
/// let mut indices = vec![barrier.wait().unwrap()];
/// for c in children {
///     indices.push(c.join().unwrap());
/// }
/// indices.sort();
/// assert_eq!(indices, [0, 1, 2]);
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "Parts")]
pub struct Barrier {
    cond: Condition,
    region: Region,
    parties: u32,
    action: Option<StaticFn>,
    timeout: Option<Duration>,
}

/// A decoded [`Barrier`] handle before its region is checked against its party count.
#[derive(Deserialize)]
#[serde(rename = "Barrier")]
struct Parts {
    cond: Condition,
    region: Region,
    parties: u32,
    action: Option<StaticFn>,
    timeout: Option<Duration>,
}

impl TryFrom<Parts> for Barrier {
    type Error = String;

    /// Refuses a handle whose region has no room for a slot per party (or no party).
    fn try_from(p: Parts) -> Result<Self, String> {
        if p.parties == 0 {
            return Err("a barrier handle with no parties".to_owned());
        }
        if region_bytes(p.parties).is_none_or(|bytes| bytes > p.region.len()) {
            return Err(format!(
                "a barrier of {} parties does not fit its memory ({} bytes)",
                p.parties,
                p.region.len()
            ));
        }
        Ok(Barrier {
            cond: p.cond,
            region: p.region,
            parties: p.parties,
            action: p.action,
            timeout: p.timeout,
        })
    }
}

impl Barrier {
    /// A barrier for `parties` parties, without action or default timeout.
    ///
    /// # Errors
    ///
    /// [`BarrierError::NoParties`] for zero parties; [`BarrierError::Os`] if the shared memory
    /// cannot be created.
    pub fn new(parties: u32) -> Result<Self, BarrierError> {
        if parties == 0 {
            return Err(BarrierError::NoParties);
        }
        let bytes = region_bytes(parties).ok_or_else(|| {
            proc_core::Error::invalid_argument(format!("a barrier of {parties} parties: too many to address"))
        })?;
        Ok(Barrier {
            cond: Condition::with_lock(Lock::new()?)?,
            region: Region::new(bytes)?,
            parties,
            action: None,
            timeout: None,
        })
    }

    /// A barrier whose `action` runs once per round, in the last party to arrive, before the
    /// parties go on. A plain `fn` (not a closure), so that every process has it.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_action(parties: u32, action: fn()) -> Result<Self, BarrierError> {
        Ok(Barrier { action: Some(StaticFn::new(action)), ..Self::new(parties)? })
    }

    /// Sets the timeout that [`wait`](Self::wait) uses (Python's `timeout` argument); without one
    /// it waits as long as it takes.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Barrier { timeout: Some(timeout), ..self }
    }

    /// Waits for the other parties (at most the barrier's default timeout, if it has one);
    /// returns this party's index in the round, `0..parties`.
    ///
    /// # Errors
    ///
    /// [`BarrierError::Broken`] if the barrier is or becomes broken (the timeout passed, which
    /// breaks it; another party aborted, reset it or timed out); [`BarrierError::PartyDied`] if a
    /// party died waiting in this round (or broke the barrier so in an earlier round, and no reset
    /// came since); [`BarrierError::ActionPanicked`] in the party whose action panicked (the
    /// others get `Broken`); [`BarrierError::Timeout`] if the timeout passed before this party
    /// could even take the barrier's lock (another process held it all along), which leaves the
    /// barrier as it was.
    pub fn wait(&self) -> Result<u32, BarrierError> {
        self.wait_until(self.timeout.map(deadline))
    }

    /// As [`wait`](Self::wait), for at most `timeout` instead of the default.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, BarrierError> {
        self.wait_until(Some(deadline(timeout)))
    }

    /// As [`wait_timeout`](Self::wait_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout).
    pub fn wait_deadline(&self, deadline: Instant) -> Result<u32, BarrierError> {
        self.wait_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// Breaks the barrier: waiting and later parties get [`BarrierError::Broken`] until a reset.
    /// Takes the barrier's lock, for as long as another process holds it (as Python's does).
    pub fn abort(&self) {
        let mut g = self.lock();
        self.region.word(DEAD).store(0, Ordering::SeqCst);
        self.break_it(&mut g);
    }

    /// Returns the barrier to its initial state; parties waiting now get
    /// [`BarrierError::Broken`]. The slots of parties that died waiting are cleared first. Takes
    /// the barrier's lock, for as long as another process holds it (as Python's does).
    pub fn reset(&self) {
        let mut g = self.lock();
        self.check_parties(&mut g);
        self.region.word(DEAD).store(0, Ordering::SeqCst);
        if self.count() > 0 {
            match self.state() {
                FILLING | BROKEN => self.set_state(RESETTING),
                _ => {}
            }
        } else {
            self.set_state(FILLING);
        }
        g.notify_all();
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.state() == BROKEN
    }

    /// The number of parties waiting in the current round (a snapshot); one that died counts
    /// until a waiter notices.
    pub fn n_waiting(&self) -> u32 {
        if self.state() == FILLING {
            self.count()
        } else {
            0
        }
    }

    /// The number of parties needed to pass the barrier.
    pub fn parties(&self) -> u32 {
        self.parties
    }

    fn count(&self) -> u32 {
        self.region.word(COUNT).load(Ordering::SeqCst)
    }

    fn state(&self) -> u32 {
        self.region.word(STATE).load(Ordering::SeqCst)
    }

    fn set_state(&self, state: u32) {
        self.region.word(STATE).store(state, Ordering::SeqCst);
    }

    fn break_it(&self, g: &mut ConditionGuard<'_>) {
        self.set_state(BROKEN);
        g.notify_all();
    }

    /// The error of a wait that found the barrier broken (or reset): the dead party, if a death
    /// broke it.
    fn broken_error(&self) -> BarrierError {
        match self.region.word(DEAD).load(Ordering::SeqCst) {
            0 => BarrierError::Broken,
            pid => BarrierError::PartyDied { pid },
        }
    }

    /// The slot indices.
    fn slots(&self) -> std::ops::Range<usize> {
        FIRST_SLOT..FIRST_SLOT + self.parties as usize
    }

    /// Takes the lock; a holder that died is dealt with first (see [`holder_died`]).
    ///
    /// [`holder_died`]: Self::holder_died
    fn lock(&self) -> ConditionGuard<'_> {
        match self.cond.acquire() {
            Ok(g) => g,
            Err(died) => {
                let pid = died.pid();
                let mut g = died.into_guard();
                self.holder_died(&mut g, pid);
                g
            }
        }
    }

    /// As [`lock`](Self::lock), giving up at `deadline`.
    fn lock_until(&self, deadline: Instant) -> Option<ConditionGuard<'_>> {
        match self.cond.acquire_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(g) => g,
            Err(died) => {
                let pid = died.pid();
                let mut g = died.into_guard()?;
                self.holder_died(&mut g, pid);
                Some(g)
            }
        }
    }

    /// The lock was taken over from `pid`, which died holding it. It may have died between
    /// recording itself and counting itself in, or the other way round, so `COUNT` is recounted
    /// from the slots. A holder with a slot was a party of the round: it is dealt with as any dead
    /// party. Else what it was doing is unknown, and the barrier breaks.
    fn holder_died(&self, g: &mut ConditionGuard<'_>, pid: u32) {
        let recorded = self.slots().filter(|&i| self.region.word64(i).load(Ordering::SeqCst) != 0).count();
        // At most `parties`, a u32.
        self.region.word(COUNT).store(u32::try_from(recorded).unwrap_or(u32::MAX), Ordering::SeqCst);
        // Its slot: one of its pid whose process is gone (a live one with that pid is another
        // process that got the pid since).
        let slot = self
            .slots()
            .map(|i| self.region.word64(i).load(Ordering::SeqCst))
            .find(|&token| token != 0 && token >> 32 == u64::from(pid) && !shim::process_token_alive(token));
        match slot {
            Some(token) => self.party_died(g, token),
            None => self.break_it(g),
        }
        // It may have died before waking the others.
        g.notify_all();
    }

    /// Checks the processes recorded for the current round (but this one), under the lock.
    fn check_parties(&self, g: &mut ConditionGuard<'_>) {
        let me = shim::current_process_token();
        for i in self.slots() {
            let token = self.region.word64(i).load(Ordering::SeqCst);
            if token != 0 && token != me && !shim::process_token_alive(token) {
                self.party_died(g, token);
            }
        }
    }

    /// The process of `token`, a party of the current round, died: its slots are cleared and
    /// counted out on its behalf. If the round was filling, it breaks the barrier (its pid in
    /// DEAD); if it was draining or being reset, it only leaves (the last party out lets the next
    /// round in).
    fn party_died(&self, g: &mut ConditionGuard<'_>, token: u64) {
        let pid = (token >> 32) as u32;
        for i in self.slots() {
            if self.region.word64(i).load(Ordering::SeqCst) == token {
                self.region.word64(i).store(0, Ordering::SeqCst);
                // Every slot is counted, so COUNT > 0 here.
                self.region.word(COUNT).fetch_sub(1, Ordering::SeqCst);
            }
        }
        match self.state() {
            FILLING => {
                self.region.word(DEAD).store(pid, Ordering::SeqCst);
                self.break_it(g);
            }
            DRAINING | RESETTING if self.count() == 0 => {
                self.set_state(FILLING);
                g.notify_all();
            }
            _ => {}
        }
    }

    /// Records this process in a free slot; `None` if none is free (cannot happen: a round has at
    /// most `parties` parties, and a party leaves its slot as it leaves the round).
    fn record(&self) -> Option<usize> {
        let me = shim::current_process_token();
        self.slots().find(|&i| {
            self.region.word64(i).compare_exchange(0, me, Ordering::SeqCst, Ordering::SeqCst).is_ok()
        })
    }

    /// Waits, with the lock held, until `blocked` is false (true) or `deadline` passes (false),
    /// checking the other parties once per [`LIVENESS_CHECK`] of waiting.
    fn wait_while(
        &self,
        g: &mut ConditionGuard<'_>,
        blocked: impl Fn() -> bool,
        deadline: Option<Instant>,
    ) -> bool {
        loop {
            let slice = Instant::now() + LIVENESS_CHECK;
            let until = deadline.map_or(slice, |d| d.min(slice));
            match g.cond_wait_for(|| !blocked(), Some(until)) {
                Ok(true) => return true,
                Ok(false) => {}
                Err(died) => self.holder_died(g, died.pid()),
            }
            self.check_parties(g);
            if !blocked() {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
        }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<u32, BarrierError> {
        let mut g = match deadline {
            None => self.lock(),
            // A timed wait keeps its deadline also while another process holds the lock (one
            // stopped or stuck while holding it): it gives up without having touched the barrier.
            Some(deadline) => self.lock_until(deadline).ok_or(BarrierError::Timeout)?,
        };
        // Wait for the previous round to drain or a reset to finish.
        if !self.wait_while(&mut g, || matches!(self.state(), DRAINING | RESETTING), deadline) {
            self.break_it(&mut g);
            return Err(BarrierError::Broken);
        }
        if self.state() == BROKEN {
            return Err(self.broken_error());
        }
        let index = self.region.word(COUNT).fetch_add(1, Ordering::SeqCst);
        let slot = self.record();
        // (`checked_add`: COUNT is memory other processes write; a bad one must not panic.)
        let last = index.checked_add(1) == Some(self.parties);
        let result = if last { self.release(&mut g) } else { self.wait_round(&mut g, deadline) };
        // Leave the round: the slot first, as `holder_died` recounts from the slots.
        if let Some(slot) = slot {
            self.region.word64(slot).store(0, Ordering::SeqCst);
        }
        if self.region.word(COUNT).fetch_sub(1, Ordering::SeqCst) == 1
            && matches!(self.state(), DRAINING | RESETTING)
        {
            // The last party out lets the next round in.
            self.set_state(FILLING);
            g.notify_all();
        }
        result.map(|()| index)
    }

    /// The last party: run the action, then let everyone go.
    fn release(&self, g: &mut ConditionGuard<'_>) -> Result<(), BarrierError> {
        if let Some(action) = self.action {
            if let Err(panic) = std::panic::catch_unwind(|| action.call()) {
                self.break_it(g);
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string panic".to_owned());
                return Err(BarrierError::ActionPanicked(message));
            }
        }
        self.set_state(DRAINING);
        g.notify_all();
        Ok(())
    }

    fn wait_round(&self, g: &mut ConditionGuard<'_>, deadline: Option<Instant>) -> Result<(), BarrierError> {
        if !self.wait_while(g, || self.state() == FILLING, deadline) {
            // Timed out, the round still filling.
            self.break_it(g);
            return Err(BarrierError::Broken);
        }
        match self.state() {
            DRAINING => Ok(()),
            _ => Err(self.broken_error()),
        }
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}
