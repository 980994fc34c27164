//! The pool's supervisor thread: hands tasks to workers, routes replies to their tasks, and
//! replaces workers that end.
//!
//! Every worker has an order queue of its own and runs its orders in sequence, so the supervisor
//! knows which tasks each worker holds (`Slot::outstanding`, oldest first), and each worker posts
//! the task it runs on the [`Board`]. When a worker ends, the task on the board fails (with
//! `WorkerLost`, or `TaskTimeout` if the supervisor killed it for its deadline); the orders still
//! in its queue go back to the pending tasks; the other outstanding tasks have replies on their way
//! (or were lost with the worker): they wait as orphans until the reply queue has been empty once,
//! which means every reply put before the death was read.
//!
//! - Here: the [`Supervisor`] and its workers' slots, its start, and its loop ([`Supervisor::run`]).
//! - `dispatch`: replies routed to their tasks; pending tasks handed to workers with room, and
//!   queued ones taken back from a busy worker for an idle one.
//! - `sleep`: how an idle supervisor waits (a few yields, then `wait` until the next deadline).
//! - `faults`: workers that end (their tasks failed, sent elsewhere or orphaned), replacements,
//!   task timeouts, and a pool that cannot run tasks any more.
//! - `shutdown`: `close` (stop the workers) and `terminate` (kill them), and the queues' segments.
//! - `shared`: what the pool's handle and the supervisor share ([`Shared`]).
//! - `job`: what a submitter hands over ([`Job`]).
//!
//! The files below add `impl Supervisor` blocks and use this file's items; this file names none
//! of theirs but `job` and `shared`, which do not use it, so imports go one way.

mod dispatch;
mod faults;
mod job;
mod shared;
mod shutdown;
mod sleep;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use proc_core::handle::CodeAddr;
use proc_core::{Process, StartMethod};
use proc_queue::Queue;

pub(crate) use job::{Callback, Done, Job, Outcome};
pub(crate) use shared::{Mode, Shared};

use crate::board::Board;
use crate::error::{Cause, Error};
use crate::worker::{worker_main, Init, Order, Reply};

/// The pool's settings.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) init: Option<Init>,
    pub(crate) max_tasks: u64,
    pub(crate) method: Option<StartMethod>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) prefetch: usize,
}

/// A worker's place in the pool.
struct Slot {
    orders: Queue<Order>,
    process: Option<Process<()>>,
    /// Ids of the tasks given to this process and not replied to, oldest first.
    outstanding: VecDeque<u64>,
    /// Tasks given to the current process (for `maxtasksperchild`).
    given: u64,
    /// The task the process was killed for, past its deadline.
    killed_for: Option<u64>,
    /// `Stop` was sent.
    stopping: bool,
    /// When to try again to start a worker, after a failed start.
    retry_at: Option<Instant>,
}

/// A task given to a worker.
struct Given {
    slot: usize,
    func: CodeAddr,
    done: Done,
}

pub(crate) struct Supervisor {
    shared: Arc<Shared>,
    config: Config,
    replies: Queue<Reply>,
    board: Board,
    slots: Vec<Slot>,
    pending: VecDeque<(u64, Job)>,
    given: HashMap<u64, Given>,
    /// Tasks of dead workers whose reply may still be in the reply queue, with the error they get
    /// if it is not.
    orphans: Vec<(u64, Error)>,
    callbacks: mpsc::Sender<Callback>,
    /// The last time worker sentinels were looked at.
    checked: Instant,
    /// When the last reply came, and a moving average of the gaps between replies: an idle
    /// supervisor spins only while replies come often.
    last_reply: Instant,
    reply_gap: Duration,
    /// Round-robin start for dispatch.
    turn: usize,
    /// Workers started so far (for names).
    started: u64,
    /// Failed worker starts in a row.
    start_failures: u32,
    /// The initializer's failure message, once a worker reported it.
    init_failure: Option<String>,
}

/// How often a busy supervisor looks for workers that ended.
const CHECK_EVERY: Duration = Duration::from_millis(5);

impl Supervisor {
    /// Creates the queues and starts the workers.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] when a queue cannot be created or a worker cannot be started (the ones
    /// started are terminated).
    pub(crate) fn new(
        shared: Arc<Shared>,
        config: Config,
        callbacks: mpsc::Sender<Callback>,
    ) -> Result<Self, Error> {
        let replies = Queue::new(1024).map_err(Error::os)?;
        let board = Board::new(config.processes).map_err(Error::os)?;
        let mut slots = Vec::with_capacity(config.processes);
        for _ in 0..config.processes {
            let orders = Queue::new((config.prefetch + 1) as u32).map_err(Error::os)?;
            slots.push(Slot {
                orders,
                process: None,
                outstanding: VecDeque::new(),
                given: 0,
                killed_for: None,
                stopping: false,
                retry_at: None,
            });
        }
        let mut sup = Supervisor {
            shared,
            config,
            replies,
            board,
            slots,
            pending: VecDeque::new(),
            given: HashMap::new(),
            orphans: Vec::new(),
            callbacks,
            checked: Instant::now(),
            last_reply: Instant::now(),
            reply_gap: Duration::ZERO,
            turn: 0,
            started: 0,
            start_failures: 0,
            init_failure: None,
        };
        for i in 0..sup.slots.len() {
            // On failure, dropping `sup` stops the workers started.
            sup.start_worker(i)?;
        }
        Ok(sup)
    }

    /// Hands a task its outcome, and counts it.
    fn finish(&self, done: Done, outcome: Outcome) {
        let counter =
            if outcome.is_ok() { &self.shared.counters.succeeded } else { &self.shared.counters.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        let call = std::panic::AssertUnwindSafe(|| done(outcome, &self.callbacks));
        if std::panic::catch_unwind(call).is_err() {
            tracing::error!("a pool result handler panicked");
        }
    }

    /// The pids of the workers running now.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.slots.iter().filter_map(|s| s.process.as_ref().map(Process::pid)).collect()
    }

    fn start_worker(&mut self, i: usize) -> Result<(), Error> {
        self.started += 1;
        let board = self.board.try_clone().map_err(Error::os)?;
        let slot = &mut self.slots[i];
        let args = (
            slot.orders.clone(),
            self.replies.clone(),
            board,
            i,
            self.config.init.clone(),
            self.config.max_tasks,
        );
        let mut builder =
            Process::new(worker_main, args).daemon(true).name(format!("PoolWorker-{}", self.started));
        if let Some(method) = self.config.method {
            builder = builder.start_method(method);
        }
        let process =
            builder.start().map_err(|e| match self.config.init.as_ref().and_then(Init::failure) {
                Some(why) => Error::Arguments {
                    message: format!("the initializer's arguments: {why}"),
                    source: Some(Cause::new(e)),
                },
                None => Error::os_in("cannot start a pool worker", e),
            })?;
        self.shared.counters.workers_started.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(pid = process.pid(), "pool worker started");
        slot.process = Some(process);
        slot.given = 0;
        slot.stopping = false;
        slot.retry_at = None;
        Ok(())
    }

    /// The supervisor's loop; returns when the pool is terminated, or closed with every task done.
    pub(crate) fn run(mut self, pids: Arc<Mutex<Vec<u32>>>) {
        *pids.lock().unwrap_or_else(PoisonError::into_inner) = self.pids();
        loop {
            let mut progress = self.take_replies();
            let mode = {
                let mut state = self.shared.lock();
                if !state.backlog.is_empty() {
                    self.pending.extend(state.backlog.drain(..));
                    self.shared.queued.store(0, Ordering::SeqCst);
                    progress = true;
                }
                state.mode
            };
            if mode == Mode::Terminating {
                self.terminate();
                return;
            }
            if let Some(message) = self.init_failure.clone() {
                self.fail_everything(&Error::Initializer(message));
            }
            progress |= self.dispatch();
            let now = Instant::now();
            if !progress || now.duration_since(self.checked) >= CHECK_EVERY {
                if self.check_workers() {
                    *pids.lock().unwrap_or_else(PoisonError::into_inner) = self.pids();
                    progress = true;
                }
                self.checked = now;
                self.check_deadlines();
            }
            self.resolve_orphans();
            if mode == Mode::Closed && self.finished() {
                self.stop_workers();
                return;
            }
            if !progress && !self.idle_spin() {
                self.sleep();
                if self.check_workers() {
                    *pids.lock().unwrap_or_else(PoisonError::into_inner) = self.pids();
                }
                self.checked = Instant::now();
                self.check_deadlines();
            }
        }
    }

    /// Whether nothing is left to do once closed: no task and no `IMap` that may submit more.
    fn finished(&self) -> bool {
        self.pending.is_empty() && self.given.is_empty() && self.shared.imaps_live() == 0
    }
}
