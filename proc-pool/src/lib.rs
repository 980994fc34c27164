//! A process pool for [multiproc](https://docs.rs/multiproc) that survives its workers: Python's
//! `multiprocessing.Pool`, typed, an order of magnitude faster per task, and crash-isolated.
//!
//! ```
//! use proc_pool::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..10)?, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
//! # Ok::<(), proc_pool::Error>(())
//! ```
//!
//! - [`Pool`]: Python's verbs `apply`, `apply_async`, `map`, `map_async`, `starmap`,
//!   `starmap_async`, the lazy `imap` and `imap_unordered`, each but `apply` with a `_with` form
//!   that takes [`Opts`] (Python's keyword arguments: chunk size, callbacks); `try_imap`, over an
//!   input that can fail; `close`, `terminate`, `join`; drop terminates.
//! - [`Builder`]: processes, `initializer`, `maxtasksperchild`, start method, a per-task timeout.
//! - [`AsyncResult`] (`get`, `get_timeout`, `wait`, `ready`, `successful`), [`IMap`] and, for an
//!   input of known length, [`ExactIMap`] (an `ExactSizeIterator`).
//!
//! Every worker has an order queue of its own, so the pool knows which task each worker runs.
//! When a worker dies, only that task fails ([`Error::WorkerLost`] with the signal or exit
//! code), the worker is replaced and its queued tasks go to the replacement. A task that panics
//! fails with the panic's message and location, and its worker goes on. A task that runs past
//! the pool's timeout fails with [`Error::TaskTimeout`]; its worker is killed and replaced.
//! Worker replacements and timeouts are `tracing` events.
//!
//! Functions are `fn` items or non-capturing closures: each task names its function by its
//! place in the binary, so workers started by any start method can run it. A closure that
//! captures a value fails the build at the call, saying so; its data goes in the arguments
//! instead (`starmap`'s tuples are Python's `functools.partial`), or to every worker through the
//! [initializer](Builder::initializer). See [`Pool`]'s [task functions](Pool#task-functions).
//!
//! # Keyword arguments
//!
//! Python's calls take keyword arguments: `pool.map(f, items, chunksize=10)`,
//! `pool.apply_async(f, args, callback=..., error_callback=...)`. Here the plain verb is the
//! call with Python's defaults, as short as in Python, and each verb that takes keyword arguments
//! has one `_with` form taking them all as an [`Opts`] value:
//!
//! ```
//! use proc_pool::{Opts, Pool};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! let pool = Pool::new(2)?;
//! let squares = pool.map(square, 0..100)?; // pool.map(square, range(100))
//! let same = pool.map_with(square, 0..100, Opts::new().chunksize(10))?; // chunksize=10
//! assert_eq!(squares, same);
//! let lazy = pool.imap_unordered_with(square, 0..100, Opts::new().chunksize(10));
//! assert_eq!(lazy.count(), 100);
//! # Ok::<(), proc_pool::Error>(())
//! ```
//!
//! Why an options value rather than a builder per call (`pool.map(f, items).chunksize(10).run()`):
//! a call builder makes every plain call one step longer (or a value that does nothing until
//! run, easy to drop by mistake), while an options value leaves the plain verbs exactly as in
//! Python and gives every verb the same second form. `Opts` is built once and passed as is,
//! like Python's `**kwargs`, and each `_with` call has the shape of its plain verb (the same
//! result type: no `Result` appears for a chunk size, which is checked when it is set). The
//! callbacks make the `Opts` a different type, taken only by the `_async` forms, so a callback is
//! never given to a call that would ignore it.
#![warn(missing_docs)]

mod board;
mod error;
mod opts;
mod pool;
#[doc(hidden)]
pub mod remote;
mod result;
mod supervisor;
mod worker;

pub use error::{Cause, Error, Result};
pub use opts::{NoCallbacks, Opts};
pub use pool::{Builder, Pool, Stats};
pub use result::{AsyncResult, Callbacks, ExactIMap, IMap};

use proc_core::handle::CodeAddr;

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctest;
