//! The methods that submit work to a [`Pool`]: `apply`, `map`, `starmap`, `imap` and their
//! `_with` and `_async` variants, with `try_imap`; arguments are encoded into chunks as a handle
//! transfer.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::mpsc;

use proc_core::handle::CodeAddr;
use proc_core::Target;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Pool;
use crate::error::{Error, Result};
use crate::opts::Opts;
use crate::result::{self, AsyncResult, Callbacks, IMap, Source};
use crate::supervisor::Job;
use crate::worker::{run_map, run_star, TaskFn, HANDLE_IN_ARGS};

impl Pool {
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
    /// [initializer](super::Builder::initializer).
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
        Ok(_) => Err(Error::arguments(HANDLE_IN_ARGS)),
        Err(e) => {
            let why = std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
            Err(Error::Arguments { message: why, source: Some(crate::error::Cause::new(e)) })
        }
    }
}
