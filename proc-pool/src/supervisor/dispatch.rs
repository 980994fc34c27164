//! Replies routed to their tasks, and tasks handed to workers: pending tasks go to the workers
//! with room, one per worker in turn (at most `prefetch` queued each, or 1 under a task timeout),
//! and an idle worker gets a queued task taken back from the busiest one.

use proc_queue::{GetError, PutError};

use super::{Given, Job, Supervisor};
use crate::error::{Cause, Error};
use crate::worker::{Failure, Order, Reply, INIT_FAILED};

impl Supervisor {
    /// Handles every reply there is. True if there was one.
    pub(super) fn take_replies(&mut self) -> bool {
        let mut any = false;
        loop {
            match self.replies.get_nowait() {
                Ok(reply) => {
                    any = true;
                    self.on_reply(reply);
                }
                Err(GetError::Empty) => {
                    if any {
                        let now = std::time::Instant::now();
                        let gap = now.duration_since(self.last_reply).min(std::time::Duration::from_secs(1));
                        self.reply_gap = (self.reply_gap * 7 + gap) / 8;
                        self.last_reply = now;
                    }
                    return any;
                }
                Err(e) => {
                    // A reply lost in transit (no memory to map it): its task fails when the
                    // next reply of the same worker comes, or as an orphan if the worker ends.
                    tracing::error!(error = %e, "a pool reply was lost");
                    any = true;
                }
            }
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        if reply.id == INIT_FAILED {
            let message = match reply.outcome {
                Err(Failure::Arguments(m)) => format!("its arguments: {m}"),
                Err(f) => Error::from(f).to_string(),
                Ok(_) => "unknown".to_string(),
            };
            tracing::error!(%message, "pool initializer failed");
            self.shared.lock().broken = Some(Error::Initializer(message.clone()));
            self.init_failure = Some(message);
            return;
        }
        let Some(given) = self.given.remove(&reply.id) else { return };
        let slot = &mut self.slots[given.slot];
        if let Some(pos) = slot.outstanding.iter().position(|&id| id == reply.id) {
            // A worker runs its orders in sequence: older ones without a reply were lost in
            // transit (an order or a reply that could not be read).
            let lost: Vec<u64> = slot.outstanding.drain(..pos).collect();
            slot.outstanding.pop_front();
            for id in lost {
                if let Some(g) = self.given.remove(&id) {
                    self.finish(
                        g.done,
                        Err(Error::Os {
                            message: "the task or its result was lost in transit".into(),
                            source: None,
                        }),
                    );
                }
            }
        }
        let outcome = reply.outcome.map(|b| b.0).map_err(Error::from);
        self.finish(given.done, outcome);
    }

    /// Hands pending tasks to workers with room, one per worker in turn; when there is nothing
    /// pending, moves queued tasks from a busy worker to an idle one. True if it moved any.
    pub(super) fn dispatch(&mut self) -> bool {
        let window = if self.config.timeout.is_some() { 1 } else { self.config.prefetch };
        let n = self.slots.len();
        let mut any = false;
        loop {
            let mut gave = false;
            for k in 0..n {
                let i = (self.turn + k) % n;
                if self.pending.is_empty() {
                    break;
                }
                if !self.has_room(i, window) {
                    continue;
                }
                if let Some((id, job)) = self.pending.pop_front() {
                    gave |= self.give(i, id, job);
                }
            }
            any |= gave;
            if !gave || self.pending.is_empty() {
                break;
            }
        }
        self.turn = (self.turn + 1) % n.max(1);
        if self.pending.is_empty() {
            any |= self.steal();
        }
        any
    }

    /// Whether worker `i` runs and may take another task.
    fn has_room(&self, i: usize, window: usize) -> bool {
        let slot = &self.slots[i];
        let quota_left = self.config.max_tasks == 0 || slot.given < self.config.max_tasks;
        slot.process.is_some() && !slot.stopping && slot.outstanding.len() < window && quota_left
    }

    /// Puts one task in worker `i`'s queue. False if the queue had no room (the task stays
    /// pending).
    fn give(&mut self, i: usize, id: u64, job: Job) -> bool {
        let Job { func, args, done } = job;
        let slot = &mut self.slots[i];
        match slot.orders.put_nowait(Order::Run { id, func, args }) {
            Ok(()) => {
                slot.outstanding.push_back(id);
                slot.given += 1;
                self.given.insert(id, Given { slot: i, func, done });
                true
            }
            Err(PutError::Full(order) | PutError::Timeout(order)) => {
                if let Order::Run { args, .. } = order {
                    self.pending.push_front((id, Job { func, args, done }));
                }
                false
            }
            Err(e) => {
                let e = e.without_value();
                let message = e.to_string();
                let error = match e {
                    PutError::Os { error, .. } => Error::Os { message, source: Some(Cause::new(error)) },
                    e => Error::Arguments { message, source: Some(Cause::new(e)) },
                };
                self.finish(done, Err(error));
                true
            }
        }
    }

    /// Takes back the next queued (not yet started) task of the busiest worker when another
    /// worker is idle, and makes it pending again. True if it took one.
    fn steal(&mut self) -> bool {
        if self.config.timeout.is_some() {
            return false;
        }
        let idle = (0..self.slots.len()).any(|i| self.slots[i].outstanding.is_empty() && self.has_room(i, 1));
        if !idle {
            return false;
        }
        let Some((victim, _)) = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.outstanding.len() >= 2)
            .max_by_key(|(_, s)| s.outstanding.len())
        else {
            return false;
        };
        // The head of the victim's queue is its next task (the one it runs is out of it).
        let order = self.slots[victim].orders.get_nowait();
        let Ok(Order::Run { id, args, .. }) = order else {
            // Nothing there (the worker took it), or an order that could not be read: the
            // worker's next reply or its end settles its task.
            return false;
        };
        let slot = &mut self.slots[victim];
        if let Some(pos) = slot.outstanding.iter().position(|&x| x == id) {
            slot.outstanding.remove(pos);
        }
        slot.given = slot.given.saturating_sub(1);
        match self.given.remove(&id) {
            Some(given) => {
                self.pending.push_front((id, Job { func: given.func, args, done: given.done }));
                true
            }
            None => false,
        }
    }
}
