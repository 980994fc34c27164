//! Waiting and waking: the blocking loops of `get` and `put`, the announced sleep on a wait word,
//! the doorbell that `wait` and async gets watch, the space doorbell that async puts watch, and
//! how long a call may wait.
//!
//! A doorbell is a socket pair whose read end a waiter polls, with a flag in ring 0's header:
//! the waiter sets the flag, then looks at the ring once more (a fence between), and only then
//! waits; a signaller stores its commit (or release), fences, and rings only if it finds the flag
//! set, clearing it. So a change made before the flag is set is seen by the waiter's look, one
//! made after it sees the flag: no wake-up is lost, and with nobody waiting the signaller pays a
//! load and no system call. The items doorbell's flag is `Header::bell`, rung by commits (and
//! shutdown); the space doorbell's (bounded queues only) is `space.bell`, rung by releases (and
//! shutdown). One ring wakes every watcher; the first to drain the socket clears it for all, so
//! a watcher that drained it and took its item or slot rings it again if more are there (see
//! `asyncio`).

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::error::GetError;
use super::layout::{OPEN, SHUT, SHUT_IMMEDIATE};
use super::ring::{Claim, ClaimFail, Fail, Ring};
use crate::loom::{fence, wait, wake_all, AtomicU32};

/// How many times a blocked call looks (with a CPU pause) before it yields, in a process that may
/// run on more than one CPU (see [`spins`]).
const SPIN: u32 = 32;

/// How many times it then yields its CPU (a peer on the same CPU gets to run; one on another CPU
/// is found awake, without the wake-up from sleep that costs tens of microseconds) before it sleeps.
const YIELDS: u32 = 64;

/// How long a blocked call waits before it checks whether the process it waits on still runs.
pub const LIVENESS_CHECK: Duration = Duration::from_millis(50);

/// How many times a blocked call spins before it yields: [`SPIN`] where this process may run on
/// more than one CPU, none where it may use only one (pinned, or a one-CPU quota). There a peer
/// can only answer once we give up the CPU, so each pause would be time taken from it. Read once per
/// process (children made by fork inherit the answer): a process pinned after its first blocking
/// queue call keeps spinning.
fn spins() -> u32 {
    // 0: not known yet; 1: no spinning; 2: spinning.
    static KNOWN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    match KNOWN.load(Ordering::Relaxed) {
        1 => 0,
        2 => SPIN,
        _ => {
            let many = proc_core::process_cpu_count() > 1;
            KNOWN.store(if many { 2 } else { 1 }, Ordering::Relaxed);
            if many {
                SPIN
            } else {
                0
            }
        }
    }
}

impl Ring {
    /// After a commit: wakes getters (they sleep on ring 0's words) and rings the doorbell.
    pub(super) fn signal_items(&self) {
        let queue = self.queue();
        Self::signal(&queue.items.word, &queue.items.sleepers);
        // `signal` fenced: a `wait` that armed the bell before our commit is seen here.
        let bell = &queue.bell;
        if bell.load(Ordering::Relaxed) != 0 && bell.swap(0, Ordering::SeqCst) != 0 {
            proc_os::socket::ring(self.bell.1.as_fd());
        }
    }

    /// After a release (or a slot freed from a dead reader): wakes putters asleep on this ring's
    /// `space` word and, in a bounded queue, rings the space doorbell if an async putter armed it.
    /// With nobody waiting this adds to `signal` one load of a word on the line `signal` just
    /// read, and no system call.
    pub(super) fn signal_space(&self) {
        let space = &self.header().space;
        Self::signal(&space.word, &space.sleepers);
        // `signal` fenced: an async putter that armed the bell before our release is seen here
        // (and one that arms it after looks at the slot after our release, and finds it free).
        if let Some(bell) = &self.space_bell {
            if space.bell.load(Ordering::Relaxed) != 0 && space.bell.swap(0, Ordering::SeqCst) != 0 {
                proc_os::socket::ring(bell.1.as_fd());
            }
        }
    }

    /// Arms the doorbell for `wait`; whether a message (or a shutdown) is there already.
    pub(super) fn arm(&self) -> bool {
        self.header().bell.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.get_ready()
    }

    /// Arms the space doorbell for an async put (ring 0 of a bounded queue); whether a `put`
    /// need not wait: a slot is free, or the queue was shut down or closed in this process.
    /// The flag is set, then the slot looked at: a release made before the flag is seen here,
    /// one made after it sees the flag and rings (see `signal_space`).
    #[cfg(feature = "tokio")]
    pub(super) fn arm_space(&self) -> bool {
        self.header().space.bell.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.put_ready()
    }

    /// For an async putter that drained the space doorbell, before it returns: arms the doorbell
    /// again for the others, and rings it if a `put` need not wait. Its drain may have swallowed
    /// a ring that another watcher had not seen yet, and that ring's release cleared the flag
    /// the other had set: the other would otherwise wait with no flag set, and the next release
    /// would not ring. Costs at most one ring (a `send`) to a later release, when nobody waits.
    #[cfg(feature = "tokio")]
    pub(super) fn pass_space_on(&self) {
        if let Some(bell) = &self.space_bell {
            Self::pass_on(&self.header().space.bell, || self.put_ready(), bell.1.as_fd());
        }
    }

    /// For an async getter that drained the doorbell, before it returns: arms the doorbell again
    /// for the others, and rings it if a `get` need not wait (as `pass_space_on`, for items: the
    /// commit that rang cleared the flag another watcher had set, and this getter's drain may
    /// have swallowed the ring that watcher had not seen yet).
    #[cfg(feature = "tokio")]
    pub(super) fn pass_items_on(&self) {
        Self::pass_on(&self.header().bell, || self.get_ready(), self.bell.1.as_fd());
    }

    /// Arms a doorbell's `flag`, then rings `bell` if `ready` says a call need not wait and the
    /// flag is still set (nobody rang meanwhile).
    #[cfg(feature = "tokio")]
    fn pass_on(flag: &AtomicU32, ready: impl FnOnce() -> bool, bell: std::os::fd::BorrowedFd<'_>) {
        flag.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if ready() && flag.swap(0, Ordering::SeqCst) != 0 {
            proc_os::socket::ring(bell);
        }
    }

    /// Whether a `put` on this bounded ring need not wait: a slot is free, or it would fail.
    #[cfg(feature = "tokio")]
    pub(super) fn put_ready(&self) -> bool {
        self.writable() || self.shutdown_state() != OPEN || self.closed.load(Ordering::Relaxed)
    }

    /// After a commit or release (already stored): if someone announced a sleep, clears the
    /// announcement, bumps `word` and wakes every sleeper on it. With nobody asleep this is a fence
    /// and a load, and one wake-up serves a whole batch. A flag left set by a process killed while
    /// asleep (or about to sleep) costs the next call one wake-up that finds nobody, then it is
    /// clear: it never makes a live sleeper miss its wake-up, since `sleep` sets it afresh.
    pub(super) fn signal(word: &AtomicU32, sleepers: &AtomicU32) {
        // Pairs with the fence in `sleep`: either the sleeper's re-check sees our store, or we see
        // its announcement.
        fence(Ordering::SeqCst);
        if sleepers.load(Ordering::Relaxed) != 0 && sleepers.swap(0, Ordering::SeqCst) != 0 {
            word.fetch_add(1, Ordering::SeqCst);
            wake_all(word);
        }
    }

    /// Waits until `ready` or a signal on `word` (read as `seen` before the caller last looked):
    /// a short spin, then an announced sleep.
    pub(super) fn sleep(
        word: &AtomicU32,
        sleepers: &AtomicU32,
        seen: u32,
        until: Instant,
        now: Instant,
        ready: impl Fn() -> bool,
    ) {
        let mut backoff = proc_os::Backoff::new(spins(), YIELDS);
        while backoff.snooze() {
            if ready() || word.load(Ordering::Relaxed) != seen {
                return;
            }
        }
        // Announce, then look once more: a commit made before the announcement is seen here, one
        // made after it sees the announcement and bumps `word` (the kernel compares it with
        // `seen`, so a wake-up before we sleep is not lost).
        sleepers.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if ready() {
            return;
        }
        wait(word, seen, Some(until.saturating_duration_since(now)));
    }

    /// Takes the next message and decodes it with `decode`; waits until `deadline` for one.
    pub(super) fn get_with<R>(
        &self,
        root: &Ring,
        wait: &mut Wait,
        decode: &mut dyn FnMut(&[u8]) -> R,
    ) -> Result<R, Fail> {
        let items = &self.queue().items.word;
        // The clock is read only once the fast path failed.
        let mut next_check: Option<Instant> = None;
        let mut repair = false;
        loop {
            if root.closed.load(Ordering::Relaxed) {
                return Err(Fail::Get(GetError::Closed));
            }
            let seen = items.load(Ordering::SeqCst);
            if let Ok((claim, void)) = self.claim_read(repair) {
                if void {
                    self.release(claim);
                    continue;
                }
                return self.take(root, claim, decode).map_err(Fail::Get);
            }
            if self.moved() {
                return Err(Fail::Moved);
            }
            if self.shutdown_state() != OPEN {
                return Err(Fail::Get(GetError::ShutDown));
            }
            let now = Instant::now();
            let deadline = wait.deadline(now);
            let check = *next_check.get_or_insert(now + LIVENESS_CHECK);
            let expired = deadline.is_some_and(|d| now >= d);
            if (expired || now >= check) && !repair {
                // Look once more, repairing what dead processes left, before waiting or giving up.
                repair = true;
                continue;
            }
            if expired {
                return Err(Fail::Get(GetError::Timeout));
            }
            if repair {
                next_check = Some(now + LIVENESS_CHECK);
                repair = false;
            }
            let next_check = next_check.unwrap_or(now);
            let until = deadline.map_or(next_check, |d| d.min(next_check));
            Self::sleep(items, &self.queue().items.sleepers, seen, until, now, || {
                self.readable() || self.moved()
            });
        }
    }

    /// Claims a slot for writing, waiting until `deadline`; `Err(true)` on timeout, `Err(false)`
    /// on shutdown or close.
    pub(super) fn claim_write_until(&self, wait: &mut Wait) -> Result<Claim, ClaimFail> {
        let space = &self.header().space.word;
        let mut next_check: Option<Instant> = None;
        let mut repair = false;
        loop {
            if self.shutdown_state() != OPEN || self.closed.load(Ordering::Relaxed) {
                return Err(ClaimFail::Stopped);
            }
            let seen = space.load(Ordering::SeqCst);
            if let Some(claim) = self.claim_write(repair) {
                return Ok(claim);
            }
            let now = Instant::now();
            let deadline = wait.deadline(now);
            let check = *next_check.get_or_insert(now + LIVENESS_CHECK);
            let expired = deadline.is_some_and(|d| now >= d);
            if (expired || now >= check) && !repair {
                repair = true;
                continue;
            }
            if expired {
                return Err(ClaimFail::Timeout);
            }
            if repair {
                next_check = Some(now + LIVENESS_CHECK);
                repair = false;
            }
            let next_check = next_check.unwrap_or(now);
            let until = deadline.map_or(next_check, |d| d.min(next_check));
            Self::sleep(space, &self.header().space.sleepers, seen, until, now, || self.writable());
        }
    }

    /// Shuts the queue down (see `Queue::shutdown`) and wakes every sleeper and `wait`.
    pub(super) fn shutdown(&self, immediate: bool) {
        let state = if immediate { SHUT_IMMEDIATE } else { SHUT };
        self.header().shutdown.fetch_max(state, Ordering::SeqCst);
        if immediate {
            // Drop what is queued, in every ring of the chain; each dropped item counts as a
            // finished task, as Python's.
            self.each_ring(0, |ring| {
                while let Ok((claim, void)) = ring.claim_read(true) {
                    if void {
                        ring.release(claim);
                        continue;
                    }
                    let _ = ring.take(self, claim, &mut |_| ());
                    let _ = ring.task_done();
                }
                true
            });
        }
        let items = &self.header().items.word;
        items.fetch_add(1, Ordering::SeqCst);
        wake_all(items);
        proc_os::socket::ring(self.bell.1.as_fd());
        let space = &self.header().space.word;
        space.fetch_add(1, Ordering::SeqCst);
        wake_all(space);
        if let Some(bell) = &self.space_bell {
            proc_os::socket::ring(bell.1.as_fd());
        }
        let done = &self.header().done;
        done.fetch_add(1, Ordering::SeqCst);
        wake_all(done);
    }
}

pub(super) fn deadline(now: Instant, timeout: Duration) -> Instant {
    now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

/// How long a call may wait for its turn. A timeout becomes a deadline only when the call finds
/// it has to wait: reading the clock costs about as much as a whole `get` that finds an item, so
/// the fast path does not read it (the deadline then counts from a moment later than the call,
/// so the wait is never shorter than asked).
#[derive(Debug, Clone, Copy)]
pub(super) enum Wait {
    /// As long as it takes.
    Forever,
    /// Until this deadline.
    Until(Instant),
    /// This long from the first look that found nothing.
    For(Duration),
}

impl Wait {
    /// The deadline, fixing it from `now` the first time.
    fn deadline(&mut self, now: Instant) -> Option<Instant> {
        match *self {
            Wait::Forever => None,
            Wait::Until(d) => Some(d),
            Wait::For(timeout) => {
                let d = deadline(now, timeout);
                *self = Wait::Until(d);
                Some(d)
            }
        }
    }
}
