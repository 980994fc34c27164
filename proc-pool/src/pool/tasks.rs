//! The methods that submit work to a [`Pool`]: `apply`, `map`, `starmap`, `imap` and their
//! `_async`, `_with`, `_chunksize` and unordered variants; arguments are encoded into chunks as a
//! handle transfer, and a function is checked to be nameable in a worker.

use std::fmt;
use std::sync::mpsc;

use proc_core::handle::CodeAddr;
use proc_core::Target;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Pool;
use crate::error::{Error, Result};
use crate::result::{self, AsyncResult, Callbacks, IMap, Source};
use crate::supervisor::Job;
use crate::worker::{run_map, run_star, TaskFn, HANDLE_IN_ARGS};

impl Pool {
    fn chunks<A: Serialize>(items: Vec<A>, chunksize: usize) -> Result<Vec<Vec<u8>>> {
        items.chunks(chunksize).map(encode_args).collect()
    }

    /// Runs `f(args...)` in a worker and waits for its result (Python's `apply`).
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
        self.apply_async(f, args)?.get()
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
        self.apply_async_with(f, args, Callbacks::new())
    }

    /// [`apply_async`](Self::apply_async) with a callback and an error callback.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Self::apply_async); when it fails, no callback is called.
    pub fn apply_async_with<F, A>(
        &self,
        f: F,
        args: A,
        callbacks: Callbacks<F::Output>,
    ) -> Result<AsyncResult<F::Output>>
    where
        F: Target<A> + Copy,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        check_fn::<F>();
        let _ = f;
        let func = CodeAddr::of(run_star::<F, A> as TaskFn as usize);
        let args = encode_args(std::slice::from_ref(&args))?;
        let (result, cell) = AsyncResult::new();
        self.shared.submit([Job { func, args, done: result::single(cell, callbacks) }], false)?;
        Ok(result)
    }

    /// `f` over every item, results in input order (Python's `map`), with Python's default chunk
    /// size (the items split in about four chunks per worker).
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
        self.map_async_with(f, items, None, Callbacks::new())?.get()
    }

    /// [`map`](Self::map) in chunks of `chunksize` items (Python's `map(f, items, chunksize)`).
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map); [`Error::InvalidArgument`] for a chunk size of zero.
    pub fn map_chunksize<F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_async_with(f, items, Some(chunksize), Callbacks::new())?.get()
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
        self.map_async_with(f, items, None, Callbacks::new())
    }

    /// [`map_async`](Self::map_async) with a chunk size (`None`: Python's default) and callbacks,
    /// called once with the whole list or the first error.
    ///
    /// # Errors
    ///
    /// As [`map_chunksize`](Self::map_chunksize), for the submission.
    pub fn map_async_with<F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        check_fn::<F>();
        let _ = f;
        let func = CodeAddr::of(run_map::<F, A, R> as TaskFn as usize);
        self.submit_all(func, items.into_iter().collect(), chunksize, callbacks)
    }

    /// `f(a1, ..., an)` for every tuple, results in input order (Python's `starmap`), with
    /// Python's default chunk size.
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
        self.starmap_async_with(f, items, None, Callbacks::new())?.get()
    }

    /// [`starmap`](Self::starmap) in chunks of `chunksize` tuples.
    ///
    /// # Errors
    ///
    /// As [`map_chunksize`](Self::map_chunksize).
    pub fn starmap_chunksize<F, A>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<F::Output>>
    where
        F: Target<A> + Copy,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        self.starmap_async_with(f, items, Some(chunksize), Callbacks::new())?.get()
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
        self.starmap_async_with(f, items, None, Callbacks::new())
    }

    /// [`starmap_async`](Self::starmap_async) with a chunk size and callbacks.
    ///
    /// # Errors
    ///
    /// As [`map_chunksize`](Self::map_chunksize), for the submission.
    pub fn starmap_async_with<F, A>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<F::Output>>,
    ) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: Target<A> + Copy,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        check_fn::<F>();
        let _ = f;
        let func = CodeAddr::of(run_star::<F, A> as TaskFn as usize);
        self.submit_all(func, items.into_iter().collect(), chunksize, callbacks)
    }

    fn submit_all<A: Serialize, R: DeserializeOwned + Send + 'static>(
        &self,
        func: CodeAddr,
        items: Vec<A>,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>> {
        if let Some(n) = chunksize {
            check_chunksize(n)?;
        }
        let chunksize = chunksize.unwrap_or_else(|| default_chunksize(items.len(), self.processes));
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
        self.imap_with(f, items.into_iter().map(Ok::<A, std::convert::Infallible>), 1, true)
    }

    /// [`imap`](Self::imap) in chunks of `chunksize` items.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a chunk size of zero.
    pub fn imap_chunksize<'a, F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Result<IMap<'a, R>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'a,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        check_chunksize(chunksize)?;
        Ok(self.imap_with(f, items.into_iter().map(Ok::<A, std::convert::Infallible>), chunksize, true))
    }

    /// As [`imap`](Self::imap), results in the order they finish (Python's `imap_unordered`).
    pub fn imap_unordered<'a, F, A, R>(&self, f: F, items: impl IntoIterator<Item = A> + 'a) -> IMap<'a, R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'a,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.imap_with(f, items.into_iter().map(Ok::<A, std::convert::Infallible>), 1, false)
    }

    /// [`imap_unordered`](Self::imap_unordered) in chunks of `chunksize` items.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a chunk size of zero.
    pub fn imap_unordered_chunksize<'a, F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Result<IMap<'a, R>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'a,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        check_chunksize(chunksize)?;
        Ok(self.imap_with(f, items.into_iter().map(Ok::<A, std::convert::Infallible>), chunksize, false))
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
        self.imap_with(f, items.into_iter(), 1, true)
    }

    fn imap_with<'a, F, A, R, E>(
        &self,
        f: F,
        items: impl Iterator<Item = std::result::Result<A, E>> + 'a,
        chunksize: usize,
        ordered: bool,
    ) -> IMap<'a, R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'a,
        R: Serialize + DeserializeOwned + Send + 'static,
        E: fmt::Display + 'a,
    {
        check_fn::<F>();
        let _ = f;
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
        Ok(_) => Err(Error::Arguments(HANDLE_IN_ARGS.to_string())),
        Err(e) => {
            let why = std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
            Err(Error::Arguments(why))
        }
    }
}

/// A chunk size of zero is an error.
fn check_chunksize(chunksize: usize) -> Result<()> {
    if chunksize == 0 {
        return Err(Error::InvalidArgument("chunksize must be at least 1".into()));
    }
    Ok(())
}

/// Checks that `F` is zero-sized: only such functions can be named in another process.
fn check_fn<F>() {
    const { assert!(std::mem::size_of::<F>() == 0, "pool tasks must be fn items or non-capturing closures") };
}
