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
//! - [`Pool`]: `apply`, `apply_async`, `map`, `map_async`, `starmap`, `starmap_async` (with
//!   Python's default chunk size, or one of yours), the lazy `imap` and `imap_unordered`,
//!   [`Callbacks`], `close`, `terminate`, `join`; drop terminates.
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
//! place in the binary, so workers started by any start method can run it.
#![warn(missing_docs)]

mod board;
mod error;
mod opts;
mod pool;
mod result;
mod supervisor;
mod sys;
mod worker;

pub use error::{Error, Result};
pub use opts::{NoCallbacks, Opts};
pub use pool::{Builder, Pool, Stats};
pub use result::{AsyncResult, Callbacks, ExactIMap, IMap};

use proc_core::handle::CodeAddr;

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctest;
