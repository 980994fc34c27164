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

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use proc_core::handle::CodeAddr;
use proc_core::{Process, StartMethod};
use proc_queue::{wait, GetError, PutError, Queue, Waitable};

use crate::board::Board;
use crate::error::Error;
use crate::sys::now_ns;
use crate::worker::{worker_main, Failure, Init, Order, Reply, INIT_FAILED};

/// A task's outcome as the supervisor hands it over: the postcard bytes of the chunk's results,
/// or the error.
pub(crate) type Outcome = Result<Vec<u8>, Error>;

/// Work for the callback thread.
pub(crate) type Callback = Box<dyn FnOnce() + Send>;

/// What to do with a task's outcome. Called exactly once, on the supervisor thread; slow work
/// (user callbacks) goes to the callback thread through the sender.
pub(crate) type Done = Box<dyn FnOnce(Outcome, &mpsc::Sender<Callback>) + Send>;

/// A task on its way to a worker.
pub(crate) struct Job {
    pub(crate) func: CodeAddr,
    pub(crate) args: Vec<u8>,
    pub(crate) done: Done,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Running,
    Closed,
    Terminating,
}

/// What the pool's handle and the supervisor share.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    /// Set while the supervisor sleeps: submitters ring the bell.
    sleeping: AtomicBool,
    bell_out: UnixStream,
    bell_in: UnixStream,
    next_id: AtomicU64,
    /// Jobs in the backlog (a hint the supervisor reads without the lock).
    queued: AtomicUsize,
    pub(crate) counters: Counters,
    /// `IMap`s whose input is not exhausted: they may still submit after `close`. One entry per
    /// `IMap`, the thread that owns it (an `IMap` is not `Send`).
    pub(crate) live_imaps: Mutex<Vec<std::thread::ThreadId>>,
}

/// What the pool has done so far (see [`crate::Stats`]).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) submitted: AtomicU64,
    pub(crate) succeeded: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) workers_lost: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) workers_started: AtomicU64,
}

pub(crate) struct State {
    pub(crate) backlog: VecDeque<(u64, Job)>,
    pub(crate) mode: Mode,
    /// Set when the initializer failed: the pool cannot run tasks.
    pub(crate) broken: Option<Error>,
}

impl Shared {
    pub(crate) fn new() -> std::io::Result<Self> {
        let (bell_out, bell_in) = UnixStream::pair()?;
        bell_out.set_nonblocking(true)?;
        bell_in.set_nonblocking(true)?;
        Ok(Shared {
            state: Mutex::new(State { backlog: VecDeque::new(), mode: Mode::Running, broken: None }),
            sleeping: AtomicBool::new(false),
            bell_out,
            bell_in,
            next_id: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            counters: Counters::default(),
            live_imaps: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues jobs for the workers (all or none). An `IMap` (`from_imap`) may go on submitting
    /// after `close`, as its input was given before.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after `close` or `terminate`; the initializer's error when it failed.
    pub(crate) fn submit(&self, jobs: impl IntoIterator<Item = Job>, from_imap: bool) -> Result<(), Error> {
        {
            let mut state = self.lock();
            if let Some(e) = &state.broken {
                return Err(e.clone());
            }
            if state.mode == Mode::Terminating || state.mode == Mode::Closed && !from_imap {
                return Err(Error::Closed);
            }
            for job in jobs {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                state.backlog.push_back((id, job));
                self.counters.submitted.fetch_add(1, Ordering::Relaxed);
            }
            self.queued.store(state.backlog.len(), Ordering::SeqCst);
        }
        self.ring();
        Ok(())
    }

    /// Sets the mode (never back to running, never from terminating to closed).
    pub(crate) fn set_mode(&self, mode: Mode) {
        {
            let mut state = self.lock();
            if state.mode != Mode::Terminating {
                state.mode = mode;
            }
        }
        // Always wake the supervisor: it must see the new mode.
        let _ = (&self.bell_out).write(&[1]);
    }

    /// How many `IMap`s may still submit.
    pub(crate) fn imaps_live(&self) -> usize {
        self.live_imaps.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether this thread owns an `IMap` that may still submit.
    pub(crate) fn imap_live_here(&self) -> bool {
        let me = std::thread::current().id();
        self.live_imaps.lock().unwrap_or_else(PoisonError::into_inner).contains(&me)
    }

    /// Counts an `IMap` of this thread as live.
    pub(crate) fn imap_started(&self) {
        self.live_imaps.lock().unwrap_or_else(PoisonError::into_inner).push(std::thread::current().id());
    }

    /// An `IMap` of this thread will submit no more.
    pub(crate) fn imap_ended(&self) {
        {
            let me = std::thread::current().id();
            let mut live = self.live_imaps.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(pos) = live.iter().position(|t| *t == me) {
                live.swap_remove(pos);
            }
        }
        // Submitted with SeqCst ordering after the change: a sleeping supervisor is rung.
        std::sync::atomic::fence(Ordering::SeqCst);
        self.ring();
    }

    /// Wakes the supervisor if it sleeps.
    pub(crate) fn ring(&self) {
        if self.sleeping.load(Ordering::SeqCst) {
            // A full bell is rung already.
            let _ = (&self.bell_out).write(&[1]);
        }
    }

    fn silence(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.bell_in).read(&mut buf), Ok(n) if n > 0) {}
    }
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
    /// Round-robin start for dispatch.
    turn: usize,
    /// Workers started so far (for names).
    started: u64,
    /// Failed worker starts in a row.
    start_failures: u32,
    /// The initializer's failure message, once a worker reported it.
    init_failure: Option<String>,
}

/// How long a terminated worker gets to exit before it is killed.
const TERMINATE_GRACE: Duration = Duration::from_secs(2);

/// How often a busy supervisor looks for workers that ended.
const CHECK_EVERY: Duration = Duration::from_millis(5);

/// How many times an idle supervisor yields before it sleeps.
const SPIN_YIELDS: u32 = 64;

/// How long to wait before trying again to start a worker.
const RETRY_START: Duration = Duration::from_millis(100);

/// After this many failed starts in a row with no worker alive, the pool gives up.
const MAX_START_FAILURES: u32 = 20;

/// The longest the supervisor sleeps while it has something to look at again (orphans, tasks
/// about to start under a timeout).
const RECHECK: Duration = Duration::from_millis(20);

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
                Some(why) => Error::Arguments(format!("the initializer's arguments: {why}")),
                None => Error::Os(format!("cannot start a pool worker: {e}")),
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

    /// Handles every reply there is. True if there was one.
    fn take_replies(&mut self) -> bool {
        let mut any = false;
        loop {
            match self.replies.get_nowait() {
                Ok(reply) => {
                    any = true;
                    self.on_reply(reply);
                }
                Err(GetError::Empty) => return any,
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
                    self.finish(g.done, Err(Error::Os("the task or its result was lost in transit".into())));
                }
            }
        }
        let outcome = reply.outcome.map(|b| b.0).map_err(Error::from);
        self.finish(given.done, outcome);
    }

    /// Hands pending tasks to workers with room, one per worker in turn; when there is nothing
    /// pending, moves queued tasks from a busy worker to an idle one. True if it moved any.
    fn dispatch(&mut self) -> bool {
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
                let error = match &e {
                    PutError::Os { .. } => Error::Os(e.to_string()),
                    _ => Error::Arguments(e.to_string()),
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

    /// Before sleeping, looks a few times (yielding the CPU in between) for a reply or a
    /// submission: while tasks flow, that is cheaper than a sleep and a wake-up on both sides.
    /// True if something came.
    fn idle_spin(&self) -> bool {
        if self.given.is_empty() && self.pending.is_empty() {
            // Nothing in flight: no reply is coming soon.
            return false;
        }
        for _ in 0..SPIN_YIELDS {
            if !self.replies.empty() || self.shared.queued.load(Ordering::Relaxed) > 0 {
                return true;
            }
            std::thread::yield_now();
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
            let now_ns = now_ns();
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
    fn sleep(&mut self) {
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

    /// Looks for workers that ended, fails the task each was running and starts replacements;
    /// starts workers whose retry time came. True if a worker ended or started.
    fn check_workers(&mut self) -> bool {
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
    fn resolve_orphans(&mut self) {
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
                    let error = Error::Os(format!("no pool worker can be started: {e}"));
                    self.shared.lock().broken = Some(error.clone());
                    self.fail_everything(&error);
                }
                false
            }
        }
    }

    /// Kills the workers whose task ran past the timeout (their end is handled as a death).
    fn check_deadlines(&mut self) {
        let Some(timeout) = self.config.timeout else { return };
        let limit = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let now = now_ns();
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
    fn fail_everything(&mut self, error: &Error) {
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

    /// Closed and done: asks every worker to stop and waits for them.
    fn stop_workers(&mut self) {
        for slot in &mut self.slots {
            if slot.process.is_some() {
                slot.stopping = true;
                if slot.orders.put_nowait(Order::Stop).is_err() {
                    if let Some(p) = &slot.process {
                        let _ = p.terminate();
                    }
                }
            }
        }
        for slot in &mut self.slots {
            if let Some(p) = slot.process.take() {
                if !matches!(p.join_timeout(Duration::from_secs(30)), Ok(Some(()))) {
                    let _ = p.kill();
                    let _ = p.join_timeout(TERMINATE_GRACE);
                }
            }
        }
        // No worker is left: what a worker killed earlier (a timeout, a crash) held goes too.
        self.unlink_segments();
    }

    /// Terminates every worker and fails every task not done.
    fn terminate(&mut self) {
        self.kill_all();
        self.fail_everything(&Error::Terminated);
    }

    /// SIGTERM to every worker, SIGKILL after a grace period, and reaps them all; then unlinks
    /// the shared memory of the pool's queues that the workers can no longer release.
    fn kill_all(&mut self) {
        for slot in &self.slots {
            if let Some(p) = &slot.process {
                let _ = p.terminate();
            }
        }
        let deadline = Instant::now() + TERMINATE_GRACE;
        for slot in &mut self.slots {
            if let Some(p) = slot.process.take() {
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = p.join_timeout(left);
                if p.exitcode().is_none() {
                    let _ = p.kill();
                    let _ = p.join_timeout(TERMINATE_GRACE);
                }
            }
        }
        self.unlink_segments();
    }

    /// Unlinks the named segments of the pool's queues (large messages not read, those kept for
    /// reuse, those a killed worker was writing or reading): the queues are the pool's own, and no
    /// worker uses them any more.
    fn unlink_segments(&self) {
        for slot in &self.slots {
            slot.orders.unlink_segments();
        }
        self.replies.unlink_segments();
    }
}

impl Drop for Supervisor {
    /// Normally everything is done by now. After a panic of the supervisor (or a failed start),
    /// no worker is left running and no task waits forever.
    fn drop(&mut self) {
        self.kill_all();
        {
            let mut state = self.shared.lock();
            state.mode = Mode::Terminating;
        }
        self.fail_everything(&Error::Terminated);
    }
}
