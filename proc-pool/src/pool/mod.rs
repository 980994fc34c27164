//! `Pool` and its builder.
//!
//! - Here: [`Builder`], [`Pool`] (its start, its lifecycle: `close`, `terminate`, `join`) and
//!   [`Stats`].
//! - `tasks`: the methods that submit work (`apply`, `map`, `starmap`, `imap` and their `_with`
//!   and `_async` variants), and how arguments become chunks. It adds an `impl Pool` block; this
//!   file names none of its items, so imports go one way.

use std::fmt;
use std::sync::{mpsc, Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proc_core::handle::CodeAddr;
use proc_core::{StartMethod, Target};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::remote::{EncodedInit, Engine, Link, Settings};
use crate::supervisor::{Callback, Config, Job, Mode, Shared, Supervisor};
use crate::worker::Init;

/// Fails the build when the task function `$f` is not zero-sized, with a message that says what to
/// do instead. Only a zero-sized function (an `fn` item or a non-capturing closure) can be named in
/// another process. It sits in every public method that takes a task function, so that the
/// build error's note ("the above error was encountered while instantiating `fn Pool::map::<...>`")
/// points at the caller's line.
///
/// The check is a constant evaluated when the method is instantiated for `$f`'s type: `cargo
/// build` and `cargo test` report it, `cargo check` does not (it instantiates nothing), and no
/// trait bound can say "zero-sized" in stable Rust.
macro_rules! assert_task_fn {
    (initializer $f:ty) => {
        const {
            assert!(
                std::mem::size_of::<$f>() == 0,
                "a pool initializer must be an fn item or a non-capturing closure: a capturing \
                 closure cannot be one; pass its data in the initializer's arguments"
            )
        }
    };
    ($f:ty) => {
        const {
            assert!(
                std::mem::size_of::<$f>() == 0,
                "pool tasks must be fn items or non-capturing closures: a capturing closure cannot \
                 be a pool task; pass its data as arguments (starmap's or apply's tuples, as \
                 Python's functools.partial would) or to every worker through Builder::initializer"
            )
        }
    };
}

// Declared below `assert_task_fn!`, which its methods use: a `macro_rules!` macro is in scope
// only after its definition.
mod tasks;

/// Options for a [`Pool`]: Python's `Pool(processes, initializer, initargs, maxtasksperchild)`,
/// plus the start method, a per-task timeout and how many tasks each worker holds ahead.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use proc_pool::Pool;
///
/// fn setup(greeting: String) {
///     assert_eq!(greeting, "hi");
/// }
///
/// fn id(x: u32) -> u32 {
///     x
/// }
///
/// let pool = Pool::builder()
///     .processes(2)
///     .initializer(setup, ("hi".to_string(),))
///     .maxtasksperchild(100)
///     .task_timeout(Duration::from_secs(60))
///     .build()?;
/// assert_eq!(pool.map(id, [1, 2, 3])?, [1, 2, 3]);
/// # Ok::<(), proc_pool::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "a pool builder does nothing until `build` is called"]
pub struct Builder {
    processes: Option<usize>,
    init: Option<Init>,
    max_tasks: Option<u64>,
    method: Option<StartMethod>,
    timeout: Option<Duration>,
    prefetch: usize,
}

impl Builder {
    /// The number of worker processes (default: the usable CPUs,
    /// [`proc_core::process_cpu_count`](https://docs.rs/proc-core/latest/proc_core/fn.process_cpu_count.html)).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// A function each worker runs once when it starts, with `args` (Python's `initializer` and
    /// `initargs`). A plain `fn` item or a non-capturing closure.
    ///
    /// This is how workers get handles: `args` may hold any of them (a `Queue`, `SimpleQueue`,
    /// `JoinableQueue` or `Connection`, a `Lock`, `RLock`, `Semaphore`, `Event`, `Condition` or
    /// `Barrier`, a `Value` or `Array`, a `SharedMemory`, manager proxies), under every start
    /// method. The pool keeps `args` as they are and serializes them into each worker's start
    /// arguments, so every worker, replacements included, gets handles of its own. Tasks cannot
    /// carry handles (see [`Pool`]'s section on handles): the initializer typically stores them in
    /// a `static` of the worker for the tasks to use.
    ///
    /// If it panics, the pool cannot run tasks: they fail with [`Error::Initializer`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::OnceLock;
    /// use proc_pool::Pool;
    /// use proc_queue::Queue;
    ///
    /// static RESULTS: OnceLock<Queue<u64>> = OnceLock::new();
    ///
    /// fn setup(results: Queue<u64>) {
    ///     let _ = RESULTS.set(results);
    /// }
    ///
    /// fn report(x: u64) {
    ///     RESULTS.get().expect("set by the initializer").put(x * 10).unwrap();
    /// }
    ///
    /// let results = Queue::new(8)?;
    /// let pool = Pool::builder().processes(2).initializer(setup, (results.clone(),)).build()?;
    /// pool.map(report, [1, 2, 3])?;
    /// let mut got: Vec<u64> = (0..3).map(|_| results.get().unwrap()).collect();
    /// got.sort();
    /// assert_eq!(got, [10, 20, 30]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn initializer<F, A>(mut self, f: F, args: A) -> Self
    where
        F: Target<A, Output = ()> + Copy,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_task_fn!(initializer F);
        let _ = f;
        self.init = Some(Init::new::<F, A>(args));
        self
    }

    /// Each worker exits after this many tasks (chunks) and is replaced by a fresh one (Python's
    /// `maxtasksperchild`). Default: no limit.
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.max_tasks = Some(n);
        self
    }

    /// The start method of the workers (default:
    /// [`proc_core::get_start_method`](https://docs.rs/proc-core/latest/proc_core/fn.get_start_method.html)).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// The longest a task (a chunk, for the `map` family) may run: a worker still running it
    /// after that is killed and replaced, and the task fails with [`Error::TaskTimeout`]. Each
    /// worker then holds one task at a time, so the time counts from the task's start.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How many tasks each worker holds (the one it runs and those queued behind it; default 4).
    /// More hides the hand-over latency of short tasks; an idle worker takes queued tasks back
    /// from a busy one either way.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = n;
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for zero processes, a `maxtasksperchild` or a prefetch of zero;
    /// [`Error::Arguments`] when the initializer's arguments do not serialize (under the fork
    /// start method, where each worker serializes its own copy, the pool's tasks fail with
    /// [`Error::Initializer`] instead); [`Error::Os`] when the queues or the workers cannot be
    /// created (those started are stopped).
    pub fn build(self) -> Result<Pool> {
        let processes = self.processes.unwrap_or_else(proc_core::process_cpu_count);
        if processes == 0 {
            return Err(Error::InvalidArgument("a pool needs at least one process".into()));
        }
        if self.max_tasks == Some(0) {
            return Err(Error::InvalidArgument("maxtasksperchild must be at least 1".into()));
        }
        if self.prefetch == 0 || self.prefetch > 1 << 16 {
            return Err(Error::InvalidArgument("prefetch must be between 1 and 65536".into()));
        }
        let init = self.init;
        let config = Config {
            processes,
            init,
            max_tasks: self.max_tasks.unwrap_or(0),
            method: self.method,
            timeout: self.timeout,
            prefetch: self.prefetch,
        };
        Pool::start(processes, "pool-supervisor", move |shared, callbacks| {
            let supervisor = Supervisor::new(shared, config, callbacks)?;
            let pids = supervisor.pids();
            let run: RunLoop = Box::new(move |pids| supervisor.run(pids));
            Ok((pids, run))
        })
    }

    /// The options as an engine that runs tasks elsewhere needs them (proc-mpi; not a stable
    /// API), checked as [`build`](Self::build) checks them, with the initializer encoded.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] as [`build`](Self::build); [`Error::Arguments`] when the
    /// initializer's arguments do not serialize as plain bytes (a handle among them cannot travel
    /// to another host).
    #[doc(hidden)]
    pub fn settings(&self) -> Result<Settings> {
        if self.processes == Some(0) {
            return Err(Error::InvalidArgument("a pool needs at least one process".into()));
        }
        if self.max_tasks == Some(0) {
            return Err(Error::InvalidArgument("maxtasksperchild must be at least 1".into()));
        }
        if self.prefetch == 0 || self.prefetch > 1 << 16 {
            return Err(Error::InvalidArgument("prefetch must be between 1 and 65536".into()));
        }
        let init = match &self.init {
            Some(init) => Some(init.encode_plain().map_err(|e| Error::Arguments {
                message: format!("the initializer's arguments: {e}"),
                source: None,
            })?),
            None => None,
        };
        Ok(Settings {
            processes: self.processes,
            init,
            max_tasks: self.max_tasks,
            start_method: self.method,
            timeout: self.timeout,
            prefetch: self.prefetch,
        })
    }

    /// An initializer another process encoded ([`settings`](Self::settings)), for a node agent's
    /// pool (proc-mpi; not a stable API).
    #[doc(hidden)]
    pub fn encoded_initializer(mut self, init: EncodedInit) -> Self {
        self.init = Some(Init::encoded(init));
        self
    }

    /// A pool whose tasks `engine` runs, on a thread of its own, in place of the supervisor and
    /// its workers (proc-mpi; not a stable API). `processes` is what
    /// [`Pool::processes`] reports, and sizes `imap`'s window.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for zero processes; [`Error::Os`] when the pool's threads
    /// cannot be started.
    #[doc(hidden)]
    pub fn build_with(self, processes: usize, engine: Box<dyn Engine>) -> Result<Pool> {
        if processes == 0 {
            return Err(Error::InvalidArgument("a pool needs at least one process".into()));
        }
        Pool::start(processes, "pool-engine", move |shared, callbacks| {
            let link = Link::new(shared, callbacks);
            let run: RunLoop = Box::new(move |_| engine.run(link));
            Ok((Vec::new(), run))
        })
    }
}

/// What runs a pool's tasks, ready to start on the pool's thread: the pids of the workers it
/// started, and its loop, which keeps the list of pids up to date.
type Runner = (Vec<u32>, RunLoop);

/// The loop that runs a pool's tasks, given the list of worker pids to keep up to date.
type RunLoop = Box<dyn FnOnce(Arc<Mutex<Vec<u32>>>) + Send>;

/// A pool of worker processes (Python's `multiprocessing.Pool`) that survives its workers.
///
/// Functions are plain `fn` items or non-capturing closures (they are named in the worker by
/// their place in the binary: see [task functions](#task-functions)); arguments and results are
/// serde values. A task that panics fails alone with the panic's message and location; a worker
/// that dies (SIGKILL from the OOM killer, an abort, `exit`) fails only the task it was running
/// with [`Error::WorkerLost`] and is replaced; the pool goes on.
///
/// Dropping the pool terminates it (as Python's `__exit__`), waiting a bounded time for the
/// workers to exit.
///
/// # Task functions
///
/// A task names its function by its type, which a worker turns back into the function: so, as
/// for [`Process::new`](https://docs.rs/proc-core/latest/proc_core/struct.Process.html#method.new)
/// under a start method other than fork, the function is an `fn` item or a non-capturing closure,
/// one that has no data. Here even fork cannot help (a pool's workers are started before its
/// tasks, so they never saw a closure's data), and a capturing closure fails the build with
/// "pool tasks must be fn items or non-capturing closures", pointing at the call. `cargo check`
/// does not report it: the check is a constant evaluated when the method is instantiated for the
/// closure's type, as no trait bound can say "has no data" in stable Rust.
///
/// Pass the data as arguments instead: where Python would map `functools.partial(f, extra)`,
/// [`starmap`](Self::starmap) takes `(item, extra)` tuples (and [`apply`](Self::apply) takes a
/// tuple anyway); data every task needs, or that is costly to send with each task, goes to every
/// worker once through the [initializer](Builder::initializer).
///
/// Arguments and results cross to other processes, so they are owned values: a task takes
/// `String`, not `&str` (`fn f(s: &str)` fails with serde's "implementation of `Deserialize` is not
/// general enough").
///
/// ```compile_fail,E0080
/// use proc_pool::Pool;
///
/// let pool = Pool::new(2).unwrap();
/// let factor = 3;
/// // A closure that captures `factor`: the build fails.
/// let _ = pool.map(move |x: u64| x * factor, 0..4);
/// ```
///
/// ```
/// use proc_pool::Pool;
///
/// fn scale(x: u64, factor: u64) -> u64 {
///     x * factor
/// }
///
/// let pool = Pool::new(2)?;
/// let factor = 3;
/// assert_eq!(pool.starmap(scale, (0..4).map(|x| (x, factor)))?, [0, 3, 6, 9]);
/// # Ok::<(), proc_pool::Error>(())
/// ```
///
/// # Handles
///
/// Workers get handles (queues, connections, locks, events, shared values, manager proxies)
/// through the [initializer](Builder::initializer), as in Python, under every start method.
/// Task arguments and results travel over the pool's queues as bytes and cannot carry a handle
/// whose descriptors must travel with it (a queue, connection, lock, event, shared value): such a
/// task is refused with [`Error::Arguments`] (nothing is submitted), and such a result fails its
/// task with [`Error::Return`], each saying why. A manager proxy needs no descriptor: it may be a
/// task argument (it travels with its manager's address and key, as in a process start), and a
/// `SharedMemory` travels as its name.
///
/// # Examples
///
/// ```
/// use proc_pool::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::new(2)?;
/// assert_eq!(pool.map(square, 0..10)?, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
/// let r = pool.apply_async(square, (12,))?;
/// assert_eq!(r.get()?, 144);
/// let doubled: Vec<u64> = pool.imap(|x: u64| x * 2, 0..5).collect::<Result<_, _>>()?;
/// assert_eq!(doubled, [0, 2, 4, 6, 8]);
/// pool.close();
/// pool.join()?;
/// # Ok::<(), proc_pool::Error>(())
/// ```
pub struct Pool {
    shared: Arc<Shared>,
    threads: Mutex<Option<(JoinHandle<()>, JoinHandle<()>)>>,
    /// How many of the two threads have finished.
    finished: Arc<Finished>,
    processes: usize,
    pids: Arc<Mutex<Vec<u32>>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("processes", &self.processes).finish_non_exhaustive()
    }
}

/// Counts of a pool's tasks and workers, from [`Pool::stats`]. Tasks are chunks for the `map`
/// family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Tasks submitted.
    pub submitted: u64,
    /// Tasks that succeeded.
    pub succeeded: u64,
    /// Tasks that failed (panicked, lost with their worker, timed out, terminated, ...).
    pub failed: u64,
    /// Tasks lost because their worker died.
    pub workers_lost: u64,
    /// Tasks that ran past the task timeout.
    pub timed_out: u64,
    /// Workers started to replace others (after a death, a timeout or `maxtasksperchild`).
    pub workers_replaced: u64,
}

impl Pool {
    /// Starts the callback thread and, on a thread named `name`, what `make` returns, which runs
    /// the tasks (the supervisor, or an engine).
    fn start(
        processes: usize,
        name: &str,
        make: impl FnOnce(Arc<Shared>, mpsc::Sender<Callback>) -> Result<Runner>,
    ) -> Result<Pool> {
        let shared =
            Arc::new(Shared::new().map_err(|e| Error::os_in("cannot create the pool's doorbell", e))?);
        let (tx, rx) = mpsc::channel::<Callback>();
        let (pids, run) = make(shared.clone(), tx)?;
        let pids = Arc::new(Mutex::new(pids));
        let finished = Arc::new(Finished { count: Mutex::new(0), changed: Condvar::new() });
        let guard = Finishing(finished.clone());
        let callbacks = std::thread::Builder::new()
            .name("pool-callbacks".into())
            .spawn(move || {
                let _guard = guard;
                for work in rx {
                    work();
                }
            })
            .map_err(|e| Error::os_in("cannot start the pool's callback thread", e))?;
        let pids2 = pids.clone();
        let runner = std::thread::Builder::new()
            .name(name.into())
            .spawn({
                let guard = Finishing(finished.clone());
                move || {
                    let _guard = guard;
                    run(pids2);
                }
            })
            .map_err(|e| Error::os_in(&format!("cannot start the pool's {name} thread"), e))?;
        Ok(Pool { shared, threads: Mutex::new(Some((runner, callbacks))), finished, processes, pids })
    }

    /// Submits one task whose function (`func`, a trampoline of a pool's tasks) and encoded chunk
    /// came from another process of the same binary; `done` gets the encoded results or the
    /// error, on the pool's thread (proc-mpi's node agents; not a stable API).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after `close` or `terminate`; the initializer's error when it failed.
    #[doc(hidden)]
    pub fn submit_raw(
        &self,
        func: CodeAddr,
        args: Vec<u8>,
        done: impl FnOnce(Result<Vec<u8>, Error>) + Send + 'static,
    ) -> Result<()> {
        self.shared.submit([Job { func, args, done: Box::new(move |outcome, _| done(outcome)) }], false)
    }

    /// A pool of `processes` workers (Python's `Pool(processes)`).
    ///
    /// # Errors
    ///
    /// As [`Builder::build`].
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// A builder for the other options.
    pub fn builder() -> Builder {
        Builder { processes: None, init: None, max_tasks: None, method: None, timeout: None, prefetch: 4 }
    }

    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// Counts of what the pool has done so far: a way to watch progress and faults without
    /// wrapping the tasks.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let started = load(&c.workers_started);
        Stats {
            submitted: load(&c.submitted),
            succeeded: load(&c.succeeded),
            failed: load(&c.failed),
            workers_lost: load(&c.workers_lost),
            timed_out: load(&c.timed_out),
            workers_replaced: started.saturating_sub(self.processes as u64),
        }
    }

    /// The process ids of the workers running now (they change as workers are replaced).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.pids.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Takes no more tasks; the workers exit once every task submitted is done (Python's
    /// `close`). An `imap` made before goes on taking its input. [`join`](Self::join) waits for that.
    pub fn close(&self) {
        self.shared.set_mode(Mode::Closed);
    }

    /// Stops the workers now (SIGTERM, then SIGKILL after a grace period); every task not done
    /// fails with [`Error::Terminated`] (Python's `terminate`). [`join`](Self::join) waits for
    /// it to finish.
    pub fn terminate(&self) {
        self.shared.set_mode(Mode::Terminating);
    }

    /// Waits until the workers have exited and every callback ran, after [`close`](Self::close)
    /// or [`terminate`](Self::terminate) (Python's `join`).
    ///
    /// An `imap` takes its input as it is iterated, so a closed pool also waits for every `imap`
    /// whose input is not exhausted (iterate it to the end, or drop it).
    ///
    /// # Errors
    ///
    /// [`Error::StillRunning`] when the pool was neither closed nor terminated;
    /// [`Error::IMapPending`] when this thread holds an `imap` whose input is not exhausted (the
    /// join could never end).
    pub fn join(&self) -> Result<()> {
        if self.shared.lock().mode == Mode::Running {
            return Err(Error::StillRunning);
        }
        if self.shared.imap_live_here() {
            return Err(Error::IMapPending);
        }
        self.wait_finished(None);
        let threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some((supervisor, callbacks)) = threads {
            let _ = supervisor.join();
            let _ = callbacks.join();
        }
        self.pids.lock().unwrap_or_else(PoisonError::into_inner).clear();
        Ok(())
    }

    /// [`join`](Self::join), waiting at most `timeout`; true if the pool finished.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        if self.shared.lock().mode == Mode::Running {
            return Err(Error::StillRunning);
        }
        if self.shared.imap_live_here() {
            return Err(Error::IMapPending);
        }
        if !self.wait_finished(Instant::now().checked_add(timeout)) {
            return Ok(false);
        }
        self.join()?;
        Ok(true)
    }

    /// As [`join_timeout`](Self::join_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`join_timeout`](Self::join_timeout).
    pub fn join_deadline(&self, deadline: Instant) -> Result<bool> {
        self.join_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// Waits until both threads of the pool finished, or until `deadline`; true if they did.
    fn wait_finished(&self, deadline: Option<Instant>) -> bool {
        let mut count = self.finished.count.lock().unwrap_or_else(PoisonError::into_inner);
        while *count < 2 {
            match deadline {
                None => count = self.finished.changed.wait(count).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    count = self
                        .finished
                        .changed
                        .wait_timeout(count, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
        true
    }
}

/// Counts the pool's threads that have finished.
#[derive(Debug)]
struct Finished {
    count: Mutex<u8>,
    changed: Condvar,
}

/// Counts its thread as finished when dropped (also when the thread unwinds).
struct Finishing(Arc<Finished>);

impl Drop for Finishing {
    fn drop(&mut self) {
        *self.0.count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.changed.notify_all();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
        let _ = self.join();
    }
}
