//! Workers that end, and tasks that cannot finish: a worker's end fails the task it ran (with
//! `WorkerLost`, or `TaskTimeout` when the supervisor killed it for its deadline), sends its
//! queued tasks back to the pending ones and orphans the rest until the reply queue has been seen
//! empty; the worker is replaced (or retried later). A pool that cannot run tasks any more fails
//! them all.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use proc_core::Process;
use proc_queue::{wait, GetError, Waitable};

use super::{Done, Job, Supervisor};
use crate::error::Error;
use crate::worker::Order;
use proc_os::monotonic_ns;

/// How long to wait before trying again to start a worker.
const RETRY_START: Duration = Duration::from_millis(100);

/// After this many failed starts in a row with no worker alive, the pool gives up.
const MAX_START_FAILURES: u32 = 20;

impl Supervisor {
    /// Looks for workers that ended, fails the task each was running and starts replacements;
    /// starts workers whose retry time came. True if a worker ended or started.
    pub(super) fn check_workers(&mut self) -> bool {
        let mut changed = false;
        let now = Instant::now();
        for i in 0..self.slots.len() {
            if self.slots[i].process.is_none() && self.slots[i].retry_at.is_some_and(|t| t <= now) {
                changed |= self.replace(i);
            }
        }
        let live: Vec<usize> = (0..self.slots.len()).filter(|&i| self.slots[i].process.is_some()).collect();
        let sentinels: Vec<_> =
            live.iter().filter_map(|&i| self.slots[i].process.as_ref().map(Process::sentinel)).collect();
        let objects: Vec<&dyn Waitable> = sentinels.iter().map(|s| s as &dyn Waitable).collect();
        let ready = match wait(&objects, Some(Duration::ZERO)) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "pool supervisor cannot poll its workers");
                return changed;
            }
        };
        if ready.is_empty() {
            return changed;
        }
        self.take_replies();
        for k in ready {
            self.on_worker_end(live[k]);
            changed = true;
        }
        changed
    }

    /// Worker `i` ended: reaps it, fails the task it was running, sends its queued tasks
    /// elsewhere, and replaces it.
    fn on_worker_end(&mut self, i: usize) {
        if self.slots[i].process.as_ref().is_some_and(|p| p.is_alive()) {
            // The sentinel fired, but the worker runs on: its fork server died and this process
            // took over watching it (the sentinel now says so). Nothing ended.
            return;
        }
        let Some(process) = self.slots[i].process.take() else { return };
        let pid = process.pid();
        // The sentinel is ready: the process has ended, so this returns at once.
        let _ = process.join_timeout(Duration::from_secs(5));
        let code = process.exitcode();
        let running = self.board.running(i).map(|(id, _)| id);
        self.board.clear(i);
        let killed_for = self.slots[i].killed_for.take();
        let stopping = self.slots[i].stopping;

        // The orders it had not taken go back to the pending tasks, in order (nobody else
        // reads this queue now: the replacement is not started yet).
        let mut back = Vec::new();
        for _ in 0..=self.config.prefetch + 1 {
            match self.slots[i].orders.get_nowait() {
                Ok(Order::Run { id, args, .. }) => back.push((id, args)),
                Ok(Order::Stop) => {}
                Err(GetError::Empty) => break,
                Err(e) => tracing::error!(error = %e, "a pool order was lost"),
            }
        }
        for (id, args) in back.into_iter().rev() {
            self.slots[i].outstanding.retain(|&x| x != id);
            if let Some(g) = self.given.remove(&id) {
                self.pending.push_front((id, Job { func: g.func, args, done: g.done }));
            }
        }

        let (signal, exit_code) = match code {
            Some(c) if c < 0 => (Some(-c), None),
            Some(c) => (None, Some(c)),
            None => (None, None),
        };
        let lost = Error::WorkerLost { pid, signal, exit_code };
        if let Some(id) = running {
            self.slots[i].outstanding.retain(|&x| x != id);
            if let Some(given) = self.given.remove(&id) {
                let error = if killed_for == Some(id) {
                    self.shared.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(pid, task = id, "pool task timed out; its worker was killed");
                    Error::TaskTimeout(self.config.timeout.unwrap_or_default())
                } else {
                    self.shared.counters.workers_lost.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(pid, task = id, exitcode = ?code, "pool worker died while running a task");
                    lost.clone()
                };
                self.finish(given.done, Err(error));
            }
        } else if !stopping {
            tracing::debug!(pid, exitcode = ?code, "pool worker ended");
        }
        // The rest replied (the replies are on their way) or was lost with the worker.
        let rest: Vec<u64> = self.slots[i].outstanding.drain(..).collect();
        self.orphans.extend(rest.into_iter().map(|id| (id, lost.clone())));
        self.slots[i].given = 0;
        self.resolve_orphans();
        if stopping {
            return;
        }
        if let Some(message) = self.init_failure.clone() {
            self.fail_everything(&Error::Initializer(message));
            return;
        }
        self.replace(i);
    }

    /// Fails the orphans whose reply did not come, once the reply queue has been seen empty
    /// (every reply put before the deaths was read then).
    pub(super) fn resolve_orphans(&mut self) {
        if self.orphans.is_empty() {
            return;
        }
        self.take_replies();
        let given = &self.given;
        self.orphans.retain(|(id, _)| given.contains_key(id));
        if self.replies.qsize() != 0 {
            return;
        }
        for (id, error) in std::mem::take(&mut self.orphans) {
            if let Some(g) = self.given.remove(&id) {
                self.shared.counters.workers_lost.fetch_add(1, Ordering::Relaxed);
                self.finish(g.done, Err(error));
            }
        }
    }

    /// Starts a worker in slot `i`; after a failure, tries again later, and gives up when no
    /// worker is alive after many failures. True if it started.
    fn replace(&mut self, i: usize) -> bool {
        match self.start_worker(i) {
            Ok(()) => {
                self.start_failures = 0;
                let pid = self.slots[i].process.as_ref().map_or(0, Process::pid);
                tracing::info!(pid, "pool worker replaced");
                true
            }
            Err(e) => {
                self.start_failures += 1;
                tracing::error!(error = %e, "cannot start a pool worker; trying again");
                self.slots[i].retry_at = Some(Instant::now() + RETRY_START);
                let none_alive = self.slots.iter().all(|s| s.process.is_none());
                if none_alive && self.start_failures >= MAX_START_FAILURES {
                    let error = Error::os_in("no pool worker can be started", e);
                    self.shared.lock().broken = Some(error.clone());
                    self.fail_everything(&error);
                }
                false
            }
        }
    }

    /// Kills the workers whose task ran past the timeout (their end is handled as a death).
    pub(super) fn check_deadlines(&mut self) {
        let Some(timeout) = self.config.timeout else { return };
        let limit = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let now = monotonic_ns();
        for i in 0..self.slots.len() {
            let Some((id, started)) = self.board.running(i) else { continue };
            let slot = &mut self.slots[i];
            if slot.killed_for.is_some() || now.saturating_sub(started) < limit {
                continue;
            }
            if let Some(p) = &slot.process {
                slot.killed_for = Some(id);
                if let Err(e) = p.kill() {
                    tracing::error!(error = %e, "cannot kill a timed-out pool worker");
                }
            }
        }
    }

    /// Every task not done fails with `error` (the pool cannot run tasks any more).
    pub(super) fn fail_everything(&mut self, error: &Error) {
        let mut dones: Vec<Done> = self.pending.drain(..).map(|(_, j)| j.done).collect();
        dones.extend(self.shared.lock().backlog.drain(..).map(|(_, j)| j.done));
        dones.extend(self.given.drain().map(|(_, g)| g.done));
        self.orphans.clear();
        for slot in &mut self.slots {
            slot.outstanding.clear();
        }
        for done in dones {
            self.finish(done, Err(error.clone()));
        }
    }
}
