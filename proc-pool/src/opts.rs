//! [`Opts`]: Python's keyword arguments of the pool's calls (`chunksize`, `callback`,
//! `error_callback`), as one value.

use std::fmt;
use std::num::NonZeroUsize;

use crate::error::Error;
use crate::result::Callbacks;

/// The keyword arguments of a pool call, for the `_with` form of each verb: Python's
/// `chunksize`, `callback` and `error_callback`.
///
/// `pool.map_with(f, items, Opts::new().chunksize(4))` is Python's
/// `pool.map(f, items, chunksize=4)`. The calls that take no callbacks in Python (`map`, `starmap`,
/// `imap`, `imap_unordered`) take an `Opts` without callbacks: one with `on_result` or `on_error`
/// set is a different type ([`Opts<Callbacks<T>>`](Callbacks)), which only the `_async` calls take,
/// so a callback can never be silently ignored.
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
/// // Python: pool.map(square, range(10), chunksize=5)
/// assert_eq!(pool.map_with(square, 0..10, Opts::new().chunksize(5))?[9], 81);
///
/// // Python: pool.map_async(square, range(4), callback=..., error_callback=...)
/// let (tx, rx) = std::sync::mpsc::channel();
/// let opts = Opts::new()
///     .on_result(move |squares: &Vec<u64>| tx.send(squares.len()).unwrap())
///     .on_error(|e| eprintln!("map failed: {e}"));
/// let result = pool.map_async_with(square, 0..4, opts)?;
/// assert_eq!(result.get()?, [0, 1, 4, 9]);
/// assert_eq!(rx.recv().unwrap(), 4);
/// # Ok::<(), proc_pool::Error>(())
/// ```
///
/// A callback given to a call that takes none is a compile error:
///
/// ```compile_fail,E0308
/// use proc_pool::{Opts, Pool};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::new(1).unwrap();
/// let opts = Opts::new().on_result(|squares: &Vec<u64>| println!("{squares:?}"));
/// let _ = pool.map_with(square, 0..4, opts);
/// ```
#[must_use = "options do nothing until they are given to a pool call"]
pub struct Opts<C = NoCallbacks> {
    chunksize: Option<NonZeroUsize>,
    callbacks: C,
}

/// The callbacks of an [`Opts`] that has none: the type of the options that the calls without
/// callbacks (`map_with`, `starmap_with`, `imap_with`, `imap_unordered_with`) take.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCallbacks;

impl<T> From<NoCallbacks> for Callbacks<T> {
    fn from(NoCallbacks: NoCallbacks) -> Self {
        Callbacks::new()
    }
}

impl Opts {
    /// Python's defaults: the default chunk size, no callbacks.
    pub fn new() -> Self {
        Opts { chunksize: None, callbacks: NoCallbacks }
    }

    /// Called with the value when the submission succeeds (Python's `callback`); the options
    /// then fit only the `_async` calls whose result is a `T`.
    ///
    /// Exactly one of the callbacks is called, exactly once, on the pool's callback thread, before
    /// the result is ready to [`get`](crate::AsyncResult::get), as in Python.
    pub fn on_result<T>(self, f: impl FnOnce(&T) + Send + 'static) -> Opts<Callbacks<T>> {
        Opts { chunksize: self.chunksize, callbacks: Callbacks::new().on_result(f) }
    }

    /// Called with the error when the submission fails (Python's `error_callback`); the options
    /// then fit only the `_async` calls.
    pub fn on_error<T>(self, f: impl FnOnce(&Error) + Send + 'static) -> Opts<Callbacks<T>> {
        Opts { chunksize: self.chunksize, callbacks: Callbacks::new().on_error(f) }
    }
}

impl<T> Opts<Callbacks<T>> {
    /// Called with the value when the submission succeeds (Python's `callback`), in place of
    /// the one set before.
    pub fn on_result(mut self, f: impl FnOnce(&T) + Send + 'static) -> Self {
        self.callbacks = self.callbacks.on_result(f);
        self
    }

    /// Called with the error when the submission fails (Python's `error_callback`), in place of
    /// the one set before.
    pub fn on_error(mut self, f: impl FnOnce(&Error) + Send + 'static) -> Self {
        self.callbacks = self.callbacks.on_error(f);
        self
    }
}

impl<C> Opts<C> {
    /// Tasks of `n` items each (Python's `chunksize`), for the calls over many items; `apply`
    /// runs one task and ignores it. Default: for `map` and `starmap`, Python's (about four
    /// chunks per worker); for `imap` and `imap_unordered`, 1.
    ///
    /// # Panics
    ///
    /// If `n` is zero, as [`slice::chunks`] does (Python raises `ValueError`).
    #[track_caller]
    pub fn chunksize(mut self, n: usize) -> Self {
        let Some(n) = NonZeroUsize::new(n) else { panic!("chunksize must be at least 1") };
        self.chunksize = Some(n);
        self
    }

    /// The chunk size, if one was set.
    pub(crate) fn chunk(&self) -> Option<NonZeroUsize> {
        self.chunksize
    }

    /// The chunk size and the callbacks.
    pub(crate) fn into_parts<T>(self) -> (Option<NonZeroUsize>, Callbacks<T>)
    where
        C: Into<Callbacks<T>>,
    {
        (self.chunksize, self.callbacks.into())
    }
}

impl Default for Opts {
    fn default() -> Self {
        Opts::new()
    }
}

impl<C: fmt::Debug> fmt::Debug for Opts<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opts")
            .field("chunksize", &self.chunksize)
            .field("callbacks", &self.callbacks)
            .finish()
    }
}
