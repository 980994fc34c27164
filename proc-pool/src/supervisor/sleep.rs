//! How an idle supervisor waits: it yields a few times looking for a reply or a submission, then
//! sleeps in `wait` on the reply queue, the doorbell and the workers' sentinels, at most until the
//! next thing it must look at (a retry, an orphan, a task's deadline).

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use proc_core::Process;
use proc_queue::{wait, Waitable};

use super::{Mode, Supervisor};
use proc_os::monotonic_ns;

/// Replies further apart than this (on average) are not worth spinning for.
const SPIN_WORTH: Duration = Duration::from_micros(500);

/// How many times an idle supervisor yields before it sleeps.
const SPIN_YIELDS: u32 = 64;

/// The longest the supervisor sleeps while it has something to look at again (orphans, tasks
/// about to start under a timeout).
const RECHECK: Duration = Duration::from_millis(20);

impl Supervisor {
    /// Before sleeping, looks a few times (yielding the CPU in between) for a reply or a
    /// submission: while tasks flow, that is cheaper than a sleep and a wake-up on both sides.
    /// True if something came.
    pub(super) fn idle_spin(&self) -> bool {
        if self.given.is_empty() && self.pending.is_empty() {
            // Nothing in flight: no reply is coming soon.
            return false;
        }
        if self.reply_gap > SPIN_WORTH {
            // Replies come seldom (long tasks): the yields would only take turns from the
            // workers.
            return false;
        }
        let mut backoff = proc_os::Backoff::new(0, SPIN_YIELDS);
        while !backoff.is_completed() {
            if !self.replies.empty() || self.shared.queued.load(Ordering::Relaxed) > 0 {
                return true;
            }
            backoff.snooze();
        }
        false
    }

    /// When the supervisor must look again even if nothing wakes it.
    fn next_look(&self) -> Option<Duration> {
        let mut next: Option<Duration> = None;
        let mut at = |d: Duration| next = Some(next.map_or(d, |n| n.min(d)));
        let now = Instant::now();
        for slot in &self.slots {
            if let Some(t) = slot.retry_at {
                at(t.saturating_duration_since(now));
            }
        }
        if !self.orphans.is_empty() {
            at(RECHECK);
        }
        if let Some(timeout) = self.config.timeout {
            let now_ns = monotonic_ns();
            for (i, slot) in self.slots.iter().enumerate() {
                match self.board.running(i) {
                    Some((_, started)) if slot.killed_for.is_none() => {
                        let ran = Duration::from_nanos(now_ns.saturating_sub(started));
                        at(timeout.saturating_sub(ran));
                    }
                    // A task handed over and not started yet: its clock starts soon.
                    None if !slot.outstanding.is_empty() => at(RECHECK),
                    _ => {}
                }
            }
        }
        next
    }

    /// Sleeps until a reply, a submission, a worker's end or the next deadline.
    pub(super) fn sleep(&mut self) {
        self.shared.sleeping.store(true, Ordering::SeqCst);
        let nothing_new = {
            let state = self.shared.lock();
            let finished = state.mode == Mode::Closed && self.finished();
            state.backlog.is_empty() && state.mode != Mode::Terminating && !finished
        };
        if nothing_new {
            let timeout = self.next_look();
            let sentinels: Vec<_> =
                self.slots.iter().filter_map(|s| s.process.as_ref().map(Process::sentinel)).collect();
            let bell = self.shared.bell_in.as_fd();
            let mut objects: Vec<&dyn Waitable> = Vec::with_capacity(sentinels.len() + 2);
            objects.push(&self.replies);
            objects.push(&bell);
            objects.extend(sentinels.iter().map(|s| s as &dyn Waitable));
            if let Err(e) = wait(&objects, timeout) {
                tracing::error!(error = %e, "pool supervisor cannot wait");
                std::thread::sleep(RECHECK);
            }
        }
        self.shared.sleeping.store(false, Ordering::SeqCst);
        self.shared.silence();
    }
}
