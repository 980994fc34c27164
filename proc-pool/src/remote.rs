//! The seam for a pool whose tasks run elsewhere: proc-mpi's cluster pool is a [`Pool`](crate::Pool) whose
//! supervisor is an [`Engine`] that sends tasks to node agents on other hosts, and each agent runs
//! them on a local pool through [`Pool::submit_raw`](crate::Pool::submit_raw).
//!
//! This module is public for proc-mpi only (hidden from the docs): it is not a stable API.
//!
//! - A submitted task is a [`Task`]: the function's [`CodeAddr`] (a trampoline of this pool's
//!   tasks, which any process of the same binary resolves), its encoded chunk, and what to do with
//!   the outcome, which the engine hands back through [`Link::finish`].
//! - The engine drains the pool's backlog with [`Link::take`], which also says whether the pool
//!   was closed or terminated, and sleeps in [`Link::sleep`] (a submission or a change of mode
//!   wakes it).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use proc_core::handle::CodeAddr;
use proc_core::StartMethod;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::supervisor::{Callback, Job, Mode, Shared};

/// A pool's options, as an engine that runs its tasks elsewhere needs them.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The number of processes asked for, if any.
    pub processes: Option<usize>,
    /// The initializer, encoded.
    pub init: Option<EncodedInit>,
    /// `maxtasksperchild`, if any.
    pub max_tasks: Option<u64>,
    /// The start method, if one was asked for.
    pub start_method: Option<StartMethod>,
    /// The task timeout, if any.
    pub timeout: Option<Duration>,
    /// Tasks each worker holds.
    pub prefetch: usize,
}

/// An initializer as bytes: its trampoline and its encoded arguments, which another process of
/// the same binary turns back into the call (see [`crate::Builder::encoded_initializer`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncodedInit {
    /// The initializer's trampoline.
    pub func: CodeAddr,
    /// Its arguments (postcard).
    #[serde(with = "serde_bytes")]
    pub args: Vec<u8>,
}

/// What runs a pool's tasks in place of its supervisor: started on a thread of its own by
/// [`crate::Builder::build_with`], it returns when the pool is terminated, or closed with every
/// task finished.
pub trait Engine: Send + 'static {
    /// Runs the pool's tasks until it ends (see the trait's docs).
    fn run(self: Box<Self>, link: Link);
}

/// A task submitted to the pool: [`Link::finish`] hands it its outcome.
pub struct Task {
    /// The task's id, unique in its pool.
    pub id: u64,
    /// The trampoline that runs the chunk.
    pub func: CodeAddr,
    /// The encoded chunk.
    pub args: Vec<u8>,
    done: crate::supervisor::Done,
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task").field("id", &self.id).field("len", &self.args.len()).finish_non_exhaustive()
    }
}

/// Whether the pool takes tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// It does.
    Running,
    /// `close` was called: finish what was submitted, then return.
    Closed,
    /// `terminate` (or drop) was called: fail what is left with [`Error::Terminated`] and return.
    Terminating,
}

/// An engine's side of its pool.
pub struct Link {
    shared: Arc<Shared>,
    callbacks: mpsc::Sender<Callback>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

impl Link {
    pub(crate) fn new(shared: Arc<Shared>, callbacks: mpsc::Sender<Callback>) -> Self {
        Link { shared, callbacks }
    }

    /// Moves the submitted tasks into `into` and says whether the pool takes more.
    pub fn take(&self, into: &mut VecDeque<Task>) -> State {
        let mut state = self.shared.lock();
        if !state.backlog.is_empty() {
            into.extend(state.backlog.drain(..).map(|(id, Job { func, args, done })| Task {
                id,
                func,
                args,
                done,
            }));
            self.shared.queued.store(0, Ordering::SeqCst);
        }
        match state.mode {
            Mode::Running => State::Running,
            Mode::Closed => State::Closed,
            Mode::Terminating => State::Terminating,
        }
    }

    /// Whether tasks were submitted since the last [`take`](Self::take) (a hint, without the lock).
    pub fn submitted(&self) -> bool {
        self.shared.queued.load(Ordering::Relaxed) > 0
    }

    /// Whether an `IMap` may still submit (then a closed pool is not finished).
    pub fn imaps_live(&self) -> bool {
        self.shared.imaps_live() > 0
    }

    /// Hands a task its outcome (the encoded results of its chunk, or the error), and counts it.
    pub fn finish(&self, task: Task, outcome: Result<Vec<u8>, Error>) {
        let c = &self.shared.counters;
        match &outcome {
            Ok(_) => c.succeeded.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                if e.is_worker_lost() || matches!(e, Error::AgentLost { .. }) {
                    c.workers_lost.fetch_add(1, Ordering::Relaxed);
                } else if e.is_task_timeout() {
                    c.timed_out.fetch_add(1, Ordering::Relaxed);
                }
                c.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        let done = task.done;
        let call = std::panic::AssertUnwindSafe(|| done(outcome, &self.callbacks));
        if std::panic::catch_unwind(call).is_err() {
            tracing::error!("a pool result handler panicked");
        }
    }

    /// Makes the pool refuse new tasks with `error` (as a failed initializer does).
    pub fn break_pool(&self, error: Error) {
        self.shared.lock().broken = Some(error);
    }

    /// Sleeps until a task is submitted, the pool's mode changes, or `timeout` passed.
    pub fn sleep(&self, timeout: Duration) {
        self.shared.sleep_on_bell(timeout);
    }
}
