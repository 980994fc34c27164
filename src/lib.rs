//! Python's `multiprocessing`, done right in Rust: processes, shared memory, locks, queues, pools
//! and managers that feel like Python's, typed, faster, and robust to the failures that break Python's.
//!
//! ```
//! use multiproc::Process;
//!
//! fn greet(name: String) -> String {
//!     format!("hello {name} from {}", multiproc::current_process().name())
//! }
//!
//! let p = Process::new(greet, ("bob".to_string(),)).start().unwrap();
//! assert!(p.join().unwrap().starts_with("hello bob from Process-"));
//! ```
//!
//! Each part is its own crate, re-exported here as a module:
//!
//! | module | crate | what |
//! |---|---|---|
//! | [`process`] | `proc-core` | `Process`, start methods, lifecycle, handles |
//! | [`shared_memory`] | `proc-core` | named `SharedMemory` and anonymous segments |
//! | [`queue`] | `proc-queue` | `Queue`, `SimpleQueue`, `JoinableQueue`, `Pipe`/`Connection`, `wait` |
//! | [`manager`](mod@manager) | `proc-manager` | `Manager` and typed proxies, local or over TCP |
//! | [`pool`] | `proc-pool` | `Pool`, `AsyncResult`, lazy `imap`, crash isolation |
//! | [`sync`] | `proc-sync` | `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Event`, `Condition`, `Barrier`, `Value`, `Array` |
//! | `mpi` (feature `mpi`) | `proc-mpi` | `Cluster`: the same `Pool` across the hosts of an MPI job |
//!
//! The items people reach for first are also at the top level, under Python's names.
//!
//! Features: `tokio` (async waits on tokio: `Process::join_async`, `Connection::send_async` and
//! `recv_async`, `Queue::get_async` and `put_async`, `AsyncResult::get_async`, `IMap` as a
//! `Stream`, the manager proxies' `*_async` calls), `tls` (a TCP
//! manager over TLS), `mpi` (the cluster pool), `force-portable` (the macOS code paths on Linux).
//!
//! Every crate's error converts into the one [`Error`] here, so `?` works across crates in a
//! function that returns [`multiproc::Result`](Result), a `main` included (see [`Error`]).
#![warn(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

// Processes, shared memory and descriptor passing are built on `fork`, POSIX shared memory and Unix
// sockets: Linux and macOS are supported (and tested); Windows has none of them.
#[cfg(not(unix))]
compile_error!(
    "multiproc supports Linux and macOS only: it needs fork, POSIX shared memory and Unix domain sockets, \
     which Windows does not have"
);

mod error;

/// Processes: targets, start methods, lifecycle, handles (the `proc-core` crate).
pub use proc_core as process;

/// Shared memory: named `SharedMemory` and anonymous `Segment`s (from `proc-core`).
pub use proc_core::shm as shared_memory;

/// Passing descriptors to children (from `proc-core`).
pub use proc_core::handle;

/// Queues, pipes and `wait` (the `proc-queue` crate).
pub use proc_queue as queue;

/// The manager server and its proxies (the `proc-manager` crate).
pub use proc_manager as manager;

/// The process pool (the `proc-pool` crate).
pub use proc_pool as pool;

/// Locks, semaphores, events, conditions, barriers and shared values (the `proc-sync` crate).
pub use proc_sync as sync;

/// The cluster pool: a [`Pool`] whose workers run on the hosts of an MPI job (the `proc-mpi`
/// crate; feature `mpi`).
#[cfg(feature = "mpi")]
pub use proc_mpi as mpi;
#[cfg(feature = "mpi")]
pub use proc_mpi::Cluster;

pub use error::{Error, QueueError, Result};
/// `#[serde(with = "multiproc::serde_bytes")]` gives a `Vec<u8>` field [`ByteBuf`]'s encoding.
pub use proc_core::serde_bytes;
/// Bytes that travel in one copy: use it (not `Vec<u8>`) for binary payloads (from `proc-core`;
/// see [Bytes](proc_core#bytes)).
pub use proc_core::ByteBuf;
pub use proc_core::{
    active_children, cpu_count, current_process, forward_child_events, get_all_start_methods, get_context,
    get_start_method, init, parent_process, process_cpu_count, set_child_init, set_start_method, Context,
    Process, ProcessBuilder, Run, StartMethod,
};
pub use proc_manager::Manager;
/// The keyword arguments of [`Pool`]'s `_with` calls (from `proc-pool`).
pub use proc_pool::Opts;
pub use proc_pool::{AsyncResult, Pool};
pub use proc_queue::{
    pipe, pipe_one_way, wait, Connection, GetError, JoinableQueue, PutError, Queue, SimpleQueue,
};
pub use proc_sync::{Array, Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore, Value};

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctest;
