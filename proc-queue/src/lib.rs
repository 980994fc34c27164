//! Pipes between processes for [multiproc](https://docs.rs/multiproc): Python's `Pipe`,
//! `Connection` and `multiprocessing.connection.wait`, typed.
//!
//! ```
//! use proc_core::Process;
//! use proc_queue::{pipe, Connection};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! enum Request {
//!     Greet(String),
//!     Stop,
//! }
//!
//! fn server(conn: Connection<Request>, replies: Connection<String>) {
//!     while let Ok(Request::Greet(name)) = conn.recv() {
//!         replies.send(&format!("hello, {name}")).unwrap();
//!     }
//! }
//!
//! let (requests, their_requests) = pipe()?;
//! let (their_replies, replies) = pipe()?;
//! let p = Process::new(server, (their_requests, their_replies)).start()?;
//! requests.send(&Request::Greet("world".into()))?;
//! assert_eq!(replies.recv()?, "hello, world");
//! requests.send(&Request::Stop)?;
//! p.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A [`Connection`] is one end of a Unix stream socket pair that carries whole messages:
//! [`send`](Connection::send)/[`recv`](Connection::recv) of a serde type, or raw bytes with
//! [`send_bytes`](Connection::send_bytes)/[`recv_bytes`](Connection::recv_bytes), with timeouts
//! and [`poll`](Connection::poll). Values that contain handles (locks, shared values, shared
//! memory, other connections) pass their descriptors along with `SCM_RIGHTS`, so a process that is
//! already running can receive them. A connection is a handle itself: pass either end to a child
//! as a start argument. [`wait`] watches several connections and process sentinels at once.
//!
//! A peer that goes away is an error ([`Error::Disconnected`]), never a SIGPIPE, and a timeout
//! never loses or splits a message.
//!
//! [`Queue`], [`SimpleQueue`] and [`JoinableQueue`] are Python's queues on a ring in shared memory:
//! `put` returns once the item is in the queue (no feeder thread), items from one producer stay in
//! order, and a producer or consumer killed in the middle of an operation never tears a message or
//! blocks the queue (see the [`Queue`] docs).
//!
//! ```
//! use proc_core::Process;
//! use proc_queue::Queue;
//!
//! fn square(jobs: Queue<Option<u64>>, results: Queue<u64>) {
//!     while let Some(n) = jobs.get().unwrap() {
//!         results.put(n * n).unwrap();
//!     }
//! }
//!
//! let (jobs, results) = (Queue::new(8)?, Queue::new(8)?);
//! let worker = Process::new(square, (jobs.clone(), results.clone())).start()?;
//! for n in 1..=3 {
//!     jobs.put(Some(n)).unwrap();
//! }
//! jobs.put(None).unwrap();
//! worker.join()?;
//! assert_eq!([results.get()?, results.get()?, results.get()?], [1, 4, 9]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`wait`] watches queues next to connections and process sentinels. An unbounded queue
//! (`Queue::new(0)`, Python's default) grows in rings of shared memory, so its `put` never waits.
#![warn(missing_docs, missing_debug_implementations)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "tokio")]
mod asyncio;
mod connection;
mod error;
mod loom;
mod queue;
mod wait;

#[cfg(feature = "tokio")]
pub use asyncio::ready_async;
pub use connection::{pipe, pipe_one_way, Connection};
pub use error::{Error, Result};
pub use queue::{
    GetError, JoinError, JoinableQueue, PutError, Queue, QueueBuilder, SimpleQueue, DEFAULT_MAX_MESSAGE,
    DEFAULT_SLOT_SIZE, LIVENESS_CHECK, UNBOUNDED_INITIAL_CAPACITY,
};
pub use wait::{wait, Waitable};

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctest;
