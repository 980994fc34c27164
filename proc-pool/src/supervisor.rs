//! The pool's supervisor thread: hands tasks to workers, routes replies to their tasks, and
//! replaces workers that end.
//!
//! Every worker has an order queue of its own and runs its orders in sequence, so the supervisor
//! knows which tasks each worker holds (`Slot::outstanding`, oldest first). When a worker ends,
//! the replies it put before are all in the reply queue (a `put` is complete when it returns), so
//! after draining that queue the oldest task still outstanding is the one the worker died on: only
//! that task fails; the others stay in the order queue, which the replacement worker inherits.

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

use crate::error::Error;
use crate::worker::{worker_main, Init, Order, Reply, INIT_FAILED};

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
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues jobs for the workers (all or none).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after `close` or `terminate`; the initializer's error when it failed.
    pub(crate) fn submit(&self, jobs: impl IntoIterator<Item = Job>) -> Result<(), Error> {
        {
            let mut state = self.lock();
            if let Some(e) = &state.broken {
                return Err(e.clone());
            }
            if state.mode != Mode::Running {
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

    /// Wakes the supervisor if it sleeps.
    fn ring(&self) {
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
    /// Ids of the tasks given to this worker and not replied to, oldest first.
    outstanding: VecDeque<u64>,
    /// Tasks given to the current process (for `maxtasksperchild`).
    given: u64,
    /// When the oldest outstanding task times out.
    deadline: Option<Instant>,
    /// The process was killed for running past its deadline.
    timed_out: bool,
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
    slots: Vec<Slot>,
    pending: VecDeque<(u64, Job)>,
    given: HashMap<u64, Given>,
    callbacks: mpsc::Sender<Callback>,
    /// The last time worker sentinels were looked at.
    checked: Instant,
    /// Round-robin start for dispatch.
    turn: usize,
    /// Workers started so far (for names).
    started: u64,
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
        let mut slots = Vec::with_capacity(config.processes);
        for _ in 0..config.processes {
            let orders = Queue::new((config.prefetch + 1) as u32).map_err(Error::os)?;
            slots.push(Slot {
                orders,
                process: None,
                outstanding: VecDeque::new(),
                given: 0,
                deadline: None,
                timed_out: false,
                stopping: false,
                retry_at: None,
            });
        }
        let mut sup = Supervisor {
            shared,
            config,
            replies,
            slots,
            pending: VecDeque::new(),
            given: HashMap::new(),
            callbacks,
            checked: Instant::now(),
            turn: 0,
            started: 0,
            init_failure: None,
        };
        for i in 0..sup.slots.len() {
            if let Err(e) = sup.start_worker(i) {
                sup.kill_all();
                return Err(e);
            }
        }
        Ok(sup)
    }

    /// Hands a task its outcome, and counts it.
    fn finish(&self, done: Done, outcome: Outcome) {
        let counter =
            if outcome.is_ok() { &self.shared.counters.succeeded } else { &self.shared.counters.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        done(outcome, &self.callbacks);
    }

    /// The pids of the workers running now.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.slots.iter().filter_map(|s| s.process.as_ref().map(Process::pid)).collect()
    }

    fn start_worker(&mut self, i: usize) -> Result<(), Error> {
        self.started += 1;
        let slot = &mut self.slots[i];
        let args =
            (slot.orders.clone(), self.replies.clone(), self.config.init.clone(), self.config.max_tasks);
        let mut builder =
            Process::new(worker_main, args).daemon(true).name(format!("PoolWorker-{}", self.started));
        if let Some(method) = self.config.method {
            builder = builder.start_method(method);
        }
        let process = builder.start().map_err(|e| Error::Os(format!("cannot start a pool worker: {e}")))?;
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
            if self.init_failure.is_some() {
                self.fail_all_pending();
            }
            progress |= self.dispatch();
            let now = Instant::now();
            if !progress || now.duration_since(self.checked) >= CHECK_EVERY {
                if self.check_workers(Some(Duration::ZERO)) {
                    *pids.lock().unwrap_or_else(PoisonError::into_inner) = self.pids();
                    progress = true;
                }
                self.checked = now;
                self.check_deadlines(now);
            }
            if mode == Mode::Closed && self.pending.is_empty() && self.given.is_empty() {
                self.stop_workers();
                return;
            }
            if !progress && !self.idle_spin() {
                self.sleep();
                if self.check_workers(Some(Duration::ZERO)) {
                    *pids.lock().unwrap_or_else(PoisonError::into_inner) = self.pids();
                }
                self.checked = Instant::now();
                self.check_deadlines(self.checked);
            }
        }
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
                    // The replies are the supervisor's own queue: this cannot happen short of
                    // memory corruption; say so and go on (workers' deaths still end tasks).
                    tracing::error!(error = %e, "pool reply queue failed");
                    return any;
                }
            }
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        if reply.id == INIT_FAILED {
            let message = match reply.outcome {
                Err(f) => Error::from(f).to_string(),
                Ok(_) => "unknown".to_string(),
            };
            tracing::error!(%message, "pool initializer failed");
            let error = Error::Initializer(message.clone());
            self.shared.lock().broken = Some(error);
            self.init_failure = Some(message);
            return;
        }
        let Some(given) = self.given.remove(&reply.id) else { return };
        let slot = &mut self.slots[given.slot];
        if let Some(pos) = slot.outstanding.iter().position(|&id| id == reply.id) {
            slot.outstanding.remove(pos);
        }
        slot.deadline = match (self.config.timeout, slot.outstanding.is_empty()) {
            (Some(t), false) => Some(Instant::now() + t),
            _ => None,
        };
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
                let slot = &self.slots[i];
                let quota_left = self.config.max_tasks == 0 || slot.given < self.config.max_tasks;
                if slot.process.is_none() || slot.stopping || slot.outstanding.len() >= window || !quota_left
                {
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

    /// Puts one task in worker `i`'s queue. False if the queue had no room (the task stays
    /// pending).
    fn give(&mut self, i: usize, id: u64, job: Job) -> bool {
        let Job { func, args, done } = job;
        let slot = &mut self.slots[i];
        match slot.orders.put_nowait(Order::Run { id, func, args }) {
            Ok(()) => {
                if slot.outstanding.is_empty() {
                    slot.deadline = self.config.timeout.map(|t| Instant::now() + t);
                }
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

    /// Takes back the newest queued (not yet started) task of the busiest worker when another
    /// worker is idle, and makes it pending again. True if it took one.
    fn steal(&mut self) -> bool {
        if self.config.timeout.is_some() {
            return false;
        }
        let idle = self.slots.iter().any(|s| s.process.is_some() && !s.stopping && s.outstanding.is_empty());
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
        // The head of the victim's queue is its next task (the one it runs now is out of it).
        let Ok(Order::Run { id, args, .. }) = self.slots[victim].orders.get_nowait() else { return false };
        let slot = &mut self.slots[victim];
        if let Some(pos) = slot.outstanding.iter().position(|&x| x == id) {
            slot.outstanding.remove(pos);
        }
        slot.given = slot.given.saturating_sub(1);
        if let Some(given) = self.given.remove(&id) {
            self.pending.push_front((id, Job { func: given.func, args, done: given.done }));
            true
        } else {
            false
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

    /// Sleeps until a reply, a submission, a worker's end or the next deadline.
    fn sleep(&mut self) {
        self.shared.sleeping.store(true, Ordering::SeqCst);
        let nothing_new = {
            let state = self.shared.lock();
            let finished = state.mode == Mode::Closed && self.given.is_empty() && self.pending.is_empty();
            state.backlog.is_empty() && state.mode != Mode::Terminating && !finished
        };
        if nothing_new {
            let now = Instant::now();
            let next = self.slots.iter().filter_map(|s| s.deadline.or(s.retry_at)).min();
            let timeout = next.map(|d| d.saturating_duration_since(now));
            let sentinels: Vec<_> =
                self.slots.iter().filter_map(|s| s.process.as_ref().map(Process::sentinel)).collect();
            let bell = self.shared.bell_in.as_fd();
            let mut objects: Vec<&dyn Waitable> = Vec::with_capacity(sentinels.len() + 2);
            objects.push(&self.replies);
            objects.push(&bell);
            objects.extend(sentinels.iter().map(|s| s as &dyn Waitable));
            if let Err(e) = wait(&objects, timeout) {
                tracing::error!(error = %e, "pool supervisor cannot wait");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.shared.sleeping.store(false, Ordering::SeqCst);
        self.shared.silence();
    }

    /// Looks for workers that ended (waiting up to `timeout` for one), fails the task each died
    /// on and starts replacements. True if a worker ended or started.
    fn check_workers(&mut self, timeout: Option<Duration>) -> bool {
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
        let ready = match wait(&objects, timeout) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "pool supervisor cannot poll its workers");
                return false;
            }
        };
        if ready.is_empty() {
            return changed;
        }
        // Everything the dead workers replied is in the queue now.
        self.take_replies();
        for k in ready {
            let i = live[k];
            self.on_worker_end(i);
            changed = true;
        }
        changed
    }

    /// Worker `i` ended: reaps it, fails the task it was running, and replaces it.
    fn on_worker_end(&mut self, i: usize) {
        let Some(process) = self.slots[i].process.take() else { return };
        let pid = process.pid();
        // The sentinel is ready: the process has ended, so this returns at once.
        let _ = process.join_timeout(Duration::from_secs(5));
        let code = process.exitcode();
        let slot = &mut self.slots[i];
        let timed_out = std::mem::take(&mut slot.timed_out);
        slot.deadline = None;
        let stopping = slot.stopping;
        if let Some(id) = slot.outstanding.pop_front() {
            let error = if timed_out {
                Error::TaskTimeout(self.config.timeout.unwrap_or_default())
            } else {
                let (signal, exit_code) = match code {
                    Some(c) if c < 0 => (Some(-c), None),
                    Some(c) => (None, Some(c)),
                    None => (None, None),
                };
                Error::WorkerLost { pid, signal, exit_code }
            };
            if timed_out {
                self.shared.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(pid, task = id, "pool task timed out; its worker was killed");
            } else {
                self.shared.counters.workers_lost.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(pid, task = id, exitcode = ?code, "pool worker died while running a task");
            }
            if let Some(given) = self.given.remove(&id) {
                self.finish(given.done, Err(error));
            }
        } else if !stopping {
            tracing::debug!(pid, exitcode = ?code, "pool worker ended");
        }
        if stopping {
            return;
        }
        if self.init_failure.is_some() {
            self.fail_all_pending();
            return;
        }
        self.replace(i);
    }

    /// Starts a worker in slot `i`; after a failure, tries again later. True if it started.
    fn replace(&mut self, i: usize) -> bool {
        let old = self.started;
        match self.start_worker(i) {
            Ok(()) => {
                let pid = self.slots[i].process.as_ref().map_or(0, Process::pid);
                if old >= self.config.processes as u64 {
                    tracing::info!(pid, "pool worker replaced");
                }
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start a pool worker; trying again");
                self.slots[i].retry_at = Some(Instant::now() + RETRY_START);
                false
            }
        }
    }

    /// Kills the workers whose task ran past its deadline (their end is handled as a death).
    fn check_deadlines(&mut self, now: Instant) {
        for slot in &mut self.slots {
            if slot.deadline.is_some_and(|d| d <= now) && !slot.timed_out {
                if let Some(p) = &slot.process {
                    slot.timed_out = true;
                    if let Err(e) = p.kill() {
                        tracing::error!(error = %e, "cannot kill a timed-out pool worker");
                    }
                }
            }
        }
    }

    /// After the initializer failed: every task fails with its error.
    fn fail_all_pending(&mut self) {
        let message = self.init_failure.clone().unwrap_or_default();
        let mut dones: Vec<Done> = self.pending.drain(..).map(|(_, j)| j.done).collect();
        dones.extend(self.given.drain().map(|(_, g)| g.done));
        for done in dones {
            self.finish(done, Err(Error::Initializer(message.clone())));
        }
        for slot in &mut self.slots {
            slot.outstanding.clear();
            slot.deadline = None;
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
                match p.join_timeout(Duration::from_secs(30)) {
                    Ok(Some(())) => {}
                    _ => {
                        let _ = p.kill();
                        let _ = p.join_timeout(TERMINATE_GRACE);
                    }
                }
            }
        }
    }

    /// Terminates every worker and fails every task not done.
    fn terminate(&mut self) {
        self.kill_all();
        let mut pending: Vec<_> = self.pending.drain(..).map(|(_, j)| j.done).collect();
        pending.extend(self.shared.lock().backlog.drain(..).map(|(_, j)| j.done));
        pending.extend(self.given.drain().map(|(_, g)| g.done));
        for done in pending {
            self.finish(done, Err(Error::Terminated));
        }
    }

    /// SIGTERM to every worker, SIGKILL after a grace period, and reaps them all.
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
    }
}
