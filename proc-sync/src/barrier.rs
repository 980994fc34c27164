//! `Barrier`: Python's `threading.Barrier` state machine (filling, draining, resetting, broken)
//! over a [`Condition`] and two shared words.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use proc_core::handle::StaticFn;
use serde::{Deserialize, Serialize};

use crate::condition::{Condition, ConditionGuard};
use crate::error::BarrierError;
use crate::lock::{deadline, Lock};
use crate::region::Region;

const COUNT: usize = 0;
const STATE: usize = 1;

const FILLING: u32 = 0;
const DRAINING: u32 = 1;
const RESETTING: u32 = 2;
const BROKEN: u32 = 3;

/// A barrier for a fixed number of parties, shared between processes, as Python's
/// `multiprocessing.Barrier`.
///
/// Each round, [`wait`](Self::wait) blocks until `parties` processes (or threads) called it, then
/// lets them all go, each with a distinct index `0..parties` (the order of arrival). The optional
/// action runs once per round, in the last party to arrive, before any party goes on. A timeout,
/// an [`abort`](Self::abort), a panicking action or a party that dies holding the barrier's lock
/// breaks it for every party until [`reset`](Self::reset).
///
/// A party that dies while waiting is not detected: the others wait for it until their timeout,
/// so give the barrier (or the waits) a timeout where a party may die.
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
pub struct Barrier {
    cond: Condition,
    region: Region,
    parties: u32,
    action: Option<StaticFn>,
    timeout: Option<Duration>,
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
        Ok(Barrier {
            cond: Condition::with_lock(Lock::new()?)?,
            region: Region::new(8)?,
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
    /// breaks it; another party aborted, reset it or timed out); [`BarrierError::ActionPanicked`]
    /// in the party whose action panicked (the others get `Broken`).
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

    /// Breaks the barrier: waiting and later parties get [`BarrierError::Broken`] until a reset.
    pub fn abort(&self) {
        let mut g = self.lock();
        self.break_it(&mut g);
    }

    /// Returns the barrier to its initial state; parties waiting now get
    /// [`BarrierError::Broken`].
    pub fn reset(&self) {
        let mut g = self.lock();
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

    /// The number of parties waiting in the current round (a snapshot).
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

    /// Takes the lock; a holder that died breaks the barrier (what it was doing is unknown).
    fn lock(&self) -> ConditionGuard<'_> {
        match self.cond.acquire() {
            Ok(g) => g,
            Err(died) => {
                let mut g = died.into_guard();
                self.break_it(&mut g);
                g
            }
        }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<u32, BarrierError> {
        let mut g = self.lock();
        // Wait for the previous round to drain or a reset to finish.
        let entered =
            g.cond_wait_for(|| !matches!(self.state(), DRAINING | RESETTING), deadline).unwrap_or(false);
        if !entered {
            self.break_it(&mut g);
            return Err(BarrierError::Broken);
        }
        if self.state() == BROKEN {
            return Err(BarrierError::Broken);
        }
        let index = self.region.word(COUNT).fetch_add(1, Ordering::SeqCst);
        let result =
            if index + 1 == self.parties { self.release(&mut g) } else { self.wait_round(&mut g, deadline) };
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
        match g.cond_wait_for(|| self.state() != FILLING, deadline) {
            Ok(true) if self.state() == DRAINING => Ok(()),
            Ok(true) => Err(BarrierError::Broken),
            Ok(false) | Err(_) => {
                self.break_it(g);
                Err(BarrierError::Broken)
            }
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
