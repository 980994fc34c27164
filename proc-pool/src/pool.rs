//! `Pool` and its builder.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::{mpsc, Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proc_core::handle::CodeAddr;
use proc_core::{StartMethod, Target};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::opts::Opts;
use crate::result::{self, AsyncResult, Callbacks, IMap, Source};
use crate::supervisor::{Callback, Config, Job, Mode, Shared, Supervisor};
use crate::worker::{run_map, run_star, Init, TaskFn, HANDLE_IN_ARGS};

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
        let shared = Arc::new(
            Shared::new().map_err(|e| Error::Os(format!("cannot create the pool's doorbell: {e}")))?,
        );
        let (tx, rx) = mpsc::channel::<Callback>();
        let supervisor = Supervisor::new(shared.clone(), config.clone(), tx)?;
        let pids = Arc::new(Mutex::new(supervisor.pids()));
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
            .map_err(|e| Error::Os(format!("cannot start the pool's callback thread: {e}")))?;
        let pids2 = pids.clone();
        let supervisor = std::thread::Builder::new()
            .name("pool-supervisor".into())
            .spawn({
                let guard = Finishing(finished.clone());
                move || {
                    let _guard = guard;
                    supervisor.run(pids2);
                }
            })
            .map_err(|e| Error::Os(format!("cannot start the pool's supervisor thread: {e}")))?;
        Ok(Pool { shared, threads: Mutex::new(Some((supervisor, callbacks))), finished, processes, pids })
    }
}

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

/// Python's default chunk size for `map` over `len` items on `processes` workers.
fn default_chunksize(len: usize, processes: usize) -> usize {
    let per = processes * 4;
    len.div_ceil(per).max(1)
}

/// Encodes a task's arguments, as a handle transfer: a manager proxy among them travels with what
/// a worker needs to use it (as in a process start), and a handle that needs its descriptors to
/// travel (they cannot go over the pool's queues) is refused, with the reason.
fn encode_args<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    match proc_core::handle::serialize_with_fds(value) {
        Ok((bytes, fds)) if fds.is_empty() => Ok(bytes),
        Ok(_) => Err(Error::Arguments(HANDLE_IN_ARGS.to_string())),
        Err(e) => {
            let why = std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
            Err(Error::Arguments(why))
        }
    }
}

impl Pool {
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

    fn chunks<A: Serialize>(items: Vec<A>, chunksize: usize) -> Result<Vec<Vec<u8>>> {
        items.chunks(chunksize).map(encode_args).collect()
    }

    /// Runs `f(args...)` in a worker and waits for its result (Python's `apply`).
    ///
    /// `f` is an `fn` item or a non-capturing closure (see [`Pool`]'s
    /// [task functions](Pool#task-functions)).
    ///
    /// # Errors
    ///
    /// As [`AsyncResult::get`]; [`Error::Arguments`] when the arguments do not serialize (nothing
    /// is submitted); [`Error::Closed`] after `close` or `terminate`.
    pub fn apply<F, A>(&self, f: F, args: A) -> Result<F::Output>
    where
        F: Target<A> + Copy,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_task_fn!(F);
        let _ = f;
        self.submit_one::<F, A>(args, Callbacks::new())?.get()
    }

    /// Submits `f(args...)` and returns at once (Python's `apply_async`).
    ///
    /// # Errors
    ///
    /// As [`apply`](Self::apply), for the submission; the task's own errors come from the result.
    pub fn apply_async<F, A>(&self, f: F, args: A) -> Result<AsyncResult<F::Output>>
    where
        F: Target<A> + Copy,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_task_fn!(F);
        let _ = f;
        self.submit_one::<F, A>(args, Callbacks::new())
    }

    /// [`apply_async`](Self::apply_async) with [`Opts`]: Python's `callback` and
    /// `error_callback` (a single task has no chunk size: it is ignored).
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Self::apply_async); when it fails, no callback is called.
    pub fn apply_async_with<F, A, C>(&self, f: F, args: A, opts: Opts<C>) -> Result<AsyncResult<F::Output>>
    where
        F: Target<A> + Copy,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        C: Into<Callbacks<F::Output>>,
    {
        assert_task_fn!(F);
        let _ = f;
        let (_, callbacks) = opts.into_parts();
        self.submit_one::<F, A>(args, callbacks)
    }

    /// The `apply` family: one task.
    fn submit_one<F, A>(&self, args: A, callbacks: Callbacks<F::Output>) -> Result<AsyncResult<F::Output>>
    where
        F: Target<A> + Copy,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        let func = CodeAddr::of(run_star::<F, A> as TaskFn as usize);
        let args = encode_args(std::slice::from_ref(&args))?;
        let (result, cell) = AsyncResult::new();
        self.shared.submit([Job { func, args, done: result::single(cell, callbacks) }], false)?;
        Ok(result)
    }

    /// `f` over every item, results in input order (Python's `map`), with Python's default chunk
    /// size (the items split in about four chunks per worker).
    ///
    /// `f` is an `fn` item or a non-capturing closure: a closure that captures a value does not
    /// build (see [`Pool`]'s [task functions](Pool#task-functions)). Pass such values with
    /// [`starmap`](Self::starmap) tuples, or to the workers through the
    /// [initializer](Builder::initializer).
    ///
    /// # Errors
    ///
    /// The first task error, as [`AsyncResult::get`]; [`Error::Arguments`] when an item does not
    /// serialize (nothing is submitted); [`Error::Closed`].
    pub fn map<F, A, R>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_task_fn!(F);
        let _ = f;
        self.submit_all(run_map::<F, A, R>, items, None, Callbacks::new())?.get()
    }

    /// [`map`](Self::map) with [`Opts`]: Python's `map(f, items, chunksize)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use proc_pool::{Opts, Pool};
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let pool = Pool::new(2)?;
    /// // Python: pool.map(square, range(100), chunksize=10)
    /// let squares = pool.map_with(square, 0..100, Opts::new().chunksize(10))?;
    /// assert_eq!(squares[99], 9801);
    /// # Ok::<(), proc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn map_with<F, A, R>(&self, f: F, items: impl IntoIterator<Item = A>, opts: Opts) -> Result<Vec<R>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_task_fn!(F);
        let _ = f;
        self.submit_all(run_map::<F, A, R>, items, opts.chunk(), Callbacks::new())?.get()
    }

    /// [`map`](Self::map) without waiting (Python's `map_async`).
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map), for the submission.
    pub fn map_async<F, A, R>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<AsyncResult<Vec<R>>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_task_fn!(F);
        let _ = f;
        self.submit_all(run_map::<F, A, R>, items, None, Callbacks::new())
    }

    /// [`map_async`](Self::map_async) with [`Opts`]: a chunk size, and callbacks called once with
    /// the whole list or the first error (Python's `map_async(f, items, chunksize, callback,
    /// error_callback)`).
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map), for the submission; when it fails, no callback is called.
    pub fn map_async_with<F, A, R, C>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        opts: Opts<C>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        C: Into<Callbacks<Vec<R>>>,
    {
        assert_task_fn!(F);
        let _ = f;
        let (chunksize, callbacks) = opts.into_parts();
        self.submit_all(run_map::<F, A, R>, items, chunksize, callbacks)
    }

    /// `f(a1, ..., an)` for every tuple, results in input order (Python's `starmap`), with
    /// Python's default chunk size. With a tuple of an item and fixed values, it is also what
    /// Python does with `map` over `functools.partial(f, ...)`.
    ///
    /// # Examples
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
    /// // Python: pool.map(functools.partial(scale, factor=factor), range(4))
    /// let scaled = pool.starmap(scale, (0..4).map(|x| (x, factor)))?;
    /// assert_eq!(scaled, [0, 3, 6, 9]);
    /// # Ok::<(), proc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn starmap<F, A>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<F::Output>>
    where
        F: Target<A> + Copy,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_task_fn!(F);
        let _ = f;
        self.submit_all(run_star::<F, A>, items, None, Callbacks::new())?.get()
    }

    /// [`starmap`](Self::starmap) with [`Opts`]: Python's `starmap(f, items, chunksize)`.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn starmap_with<F, A>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        opts: Opts,
    ) -> Result<Vec<F::Output>>
    where
        F: Target<A> + Copy,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_task_fn!(F);
        let _ = f;
        self.submit_all(run_star::<F, A>, items, opts.chunk(), Callbacks::new())?.get()
    }

    /// [`starmap`](Self::starmap) without waiting (Python's `starmap_async`).
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map), for the submission.
    pub fn starmap_async<F, A>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: Target<A> + Copy,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_task_fn!(F);
        let _ = f;
        self.submit_all(run_star::<F, A>, items, None, Callbacks::new())
    }

    /// [`starmap_async`](Self::starmap_async) with [`Opts`]: a chunk size and callbacks, as
    /// [`map_async_with`](Self::map_async_with).
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map), for the submission; when it fails, no callback is called.
    pub fn starmap_async_with<F, A, C>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        opts: Opts<C>,
    ) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: Target<A> + Copy,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        C: Into<Callbacks<Vec<F::Output>>>,
    {
        assert_task_fn!(F);
        let _ = f;
        let (chunksize, callbacks) = opts.into_parts();
        self.submit_all(run_star::<F, A>, items, chunksize, callbacks)
    }

    /// The `map` family: the items in chunks, each chunk a task that `task` runs.
    fn submit_all<A: Serialize, R: DeserializeOwned + Send + 'static>(
        &self,
        task: TaskFn,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<NonZeroUsize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>> {
        let func = CodeAddr::of(task as usize);
        let items: Vec<A> = items.into_iter().collect();
        let chunksize =
            chunksize.map_or_else(|| default_chunksize(items.len(), self.processes), NonZeroUsize::get);
        let chunks = Self::chunks(items, chunksize)?;
        let (result, cell) = AsyncResult::new();
        if chunks.is_empty() {
            self.shared.submit([], false)?;
            // No task: the callbacks run here (a sink without a receiver runs them in place).
            let (tx, rx) = mpsc::channel();
            drop(rx);
            result::resolve(cell, callbacks, Ok(Vec::new()), &tx);
            return Ok(result);
        }
        let mut done = result::gather::<R>(chunks.len(), cell, callbacks);
        let jobs: Vec<Job> =
            chunks.into_iter().enumerate().map(|(i, args)| Job { func, args, done: done(i) }).collect();
        self.shared.submit(jobs, false)?;
        Ok(result)
    }

    /// `f` over the items lazily, results in input order (Python's `imap`, chunk size 1): it
    /// takes input only to keep a bounded window of tasks in flight, so an endless input works
    /// with flat memory.
    pub fn imap<'a, F, A, R>(&self, f: F, items: impl IntoIterator<Item = A> + 'a) -> IMap<'a, R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'a,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_task_fn!(F);
        self.lazy(f, items.into_iter().map(Ok::<A, std::convert::Infallible>), None, true)
    }

    /// [`imap`](Self::imap) with [`Opts`]: Python's `imap(f, items, chunksize)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use proc_pool::{Opts, Pool};
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let pool = Pool::new(2)?;
    /// let sum: u64 = pool.imap_with(square, 0..100, Opts::new().chunksize(8)).sum::<Result<_, _>>()?;
    /// assert_eq!(sum, 328_350);
    /// # Ok::<(), proc_pool::Error>(())
    /// ```
    pub fn imap_with<'a, F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        opts: Opts,
    ) -> IMap<'a, R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'a,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_task_fn!(F);
        self.lazy(f, items.into_iter().map(Ok::<A, std::convert::Infallible>), opts.chunk(), true)
    }

    /// As [`imap`](Self::imap), results in the order they finish (Python's `imap_unordered`).
    pub fn imap_unordered<'a, F, A, R>(&self, f: F, items: impl IntoIterator<Item = A> + 'a) -> IMap<'a, R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'a,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_task_fn!(F);
        self.lazy(f, items.into_iter().map(Ok::<A, std::convert::Infallible>), None, false)
    }

    /// [`imap_unordered`](Self::imap_unordered) with [`Opts`]: Python's
    /// `imap_unordered(f, items, chunksize)`.
    pub fn imap_unordered_with<'a, F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        opts: Opts,
    ) -> IMap<'a, R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'a,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_task_fn!(F);
        self.lazy(f, items.into_iter().map(Ok::<A, std::convert::Infallible>), opts.chunk(), false)
    }

    /// [`imap`](Self::imap) over an input that can fail (Python: an iterable that raises). The
    /// results before the failure are delivered, then [`Error::Input`] with its message, and the
    /// iteration ends; the pool is unaffected.
    pub fn try_imap<'a, F, A, R, E>(
        &self,
        f: F,
        items: impl IntoIterator<Item = std::result::Result<A, E>> + 'a,
    ) -> IMap<'a, R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'a,
        R: Serialize + DeserializeOwned + Send + 'static,
        E: fmt::Display + 'a,
    {
        assert_task_fn!(F);
        self.lazy(f, items.into_iter(), None, true)
    }

    /// The `imap` family: chunks of `chunksize` items (default 1) taken from `items` as the
    /// results are consumed.
    fn lazy<'a, F, A, R, E>(
        &self,
        f: F,
        items: impl Iterator<Item = std::result::Result<A, E>> + 'a,
        chunksize: Option<NonZeroUsize>,
        ordered: bool,
    ) -> IMap<'a, R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'a,
        R: Serialize + DeserializeOwned + Send + 'static,
        E: fmt::Display + 'a,
    {
        let _ = f;
        let chunksize = chunksize.map_or(1, NonZeroUsize::get);
        let func = CodeAddr::of(run_map::<F, A, R> as TaskFn as usize);
        let (low, high) = items.size_hint();
        let total = (Some(low) == high).then_some(low);
        let mut items = items.peekable();
        let source: Source<'a> = Box::new(std::iter::from_fn(move || {
            let mut chunk = Vec::with_capacity(chunksize);
            while chunk.len() < chunksize {
                match items.peek() {
                    None => break,
                    Some(Err(_)) if !chunk.is_empty() => break,
                    _ => {}
                }
                match items.next() {
                    Some(Ok(a)) => chunk.push(a),
                    Some(Err(e)) => return Some(Err(Error::Input(e.to_string()))),
                    None => break,
                }
            }
            if chunk.is_empty() {
                return None;
            }
            Some(encode_args(&chunk).map(|args| (func, args, chunk.len())))
        }));
        let window = (self.processes * 16).max(2);
        IMap::new(self.shared.clone(), source, ordered, window, total)
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
