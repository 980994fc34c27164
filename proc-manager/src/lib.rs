//! A Manager server with typed proxies for [multiproc](https://docs.rs/multiproc): Python's
//! `multiprocessing.Manager`, typed, faster, and authenticated.
//!
//! ```
//! use proc_core::Process;
//! use proc_manager::{Dict, List, Manager};
//!
//! fn fill(d: Dict<u32, String>, l: List<u32>) {
//!     d.insert(1, "1".into()).unwrap();
//!     d.insert(2, "2".into()).unwrap();
//!     l.extend(0..5).unwrap();
//! }
//!
//! let manager = Manager::start()?;
//! let d = manager.dict()?;
//! let l = manager.list()?;
//! let p = Process::new(fill, (d.clone(), l.clone())).start().unwrap();
//! p.join().unwrap();
//! assert_eq!(d.items()?, [(1, "1".to_string()), (2, "2".to_string())]);
//! assert_eq!(l.snapshot()?, [0, 1, 2, 3, 4]);
//! # Ok::<(), proc_manager::Error>(())
//! ```
//!
//! - [`Manager`]: [`start`](Manager::start) a server process (private Unix socket, random
//!   authkey), [`connect`](Manager::connect) to one, or [`serve`](Builder::serve) in the
//!   foreground — over TCP too, for other machines. Shared objects: [`Dict`], [`List`],
//!   [`Namespace`], [`Value`], [`Array`], [`Queue`] (also joinable), [`Lock`] (and reentrant),
//!   [`Semaphore`] (and bounded), [`Event`], [`Condition`], [`Barrier`], and your own types
//!   ([`Shared`], through [`Proxy`]). Objects can be published under a name and looked up by
//!   other clients.
//! - Proxies are handles: pass them to children as start arguments. An object lives while any
//!   proxy of it does, in any process; a lock held by a client process that ends is released.
//! - Reads return owned copies, and only a proxy's methods change the shared object:
//!   `d.get(&k)?` is a copy, and pushing onto it changes nothing on the manager (Python silently
//!   loses `d['k'].append(1)` the same way, without saying so). To share nested data, store a
//!   proxy as the value (`Dict<String, List<u32>>`): the stored value holds a reference to its
//!   object for as long as it is stored (removed, overwritten, cleared, or its container freed,
//!   the reference goes; a value taken out hands its reference to the taker's new proxy).
//! - Security: a mutual HMAC-SHA256 challenge–response on the authkey (at least
//!   [`MIN_AUTHKEY_LEN`] bytes) before anything else is read, within 5 s ([`Builder::handshake_timeout`]), with at most 64
//!   connections in their handshake at once ([`Builder::max_handshakes`]; the oldest is closed
//!   when another arrives); frames are length-prefixed postcard with a size cap, each holding
//!   exactly one value; stored values are opaque bytes to the server, so no input makes it run
//!   code. A bad client costs only its own connection, and no `Debug` output or error shows a
//!   key.
//! - What the handshake does not do: it proves that both ends hold the key, and nothing more.
//!   In the clear, the traffic after it is neither encrypted nor integrity-protected, so whoever
//!   can read or alter the network path between a client and a TCP manager can read every value
//!   and inject requests into an authenticated connection (as with Python's managers). Over a
//!   network you do not trust, build with the `tls` feature and give the builder a `TlsServer`
//!   (`Builder::tls`): the server shows its certificate, clients verify it (and, when asked, show
//!   their own), and the authkey handshake runs inside the encrypted stream (`tls` module docs:
//!   how to make a certificate authority for a cluster). Without it, keep a manager on its Unix
//!   socket (the default), on loopback, or behind a tunnel (SSH, WireGuard).
//!
//! # Async calls
//!
//! With the `tokio` feature (these names exist only with it), the proxies' calls that wait on
//! the manager have `_async` forms that wait without blocking the runtime's thread:
//! `Queue::get_async`, `Queue::put_async` and `Queue::join_async`, `Lock::acquire_async`,
//! `Semaphore::acquire_async`, `Event::wait_async`, `Condition::wait_async`, `Barrier::wait_async`
//! (each with a `_timeout_async`); a registered type's `Proxy::call_async`; and the common calls
//! that do not wait: `Dict::get_async`, `Dict::insert_async`, `List::append_async`,
//! `List::get_async`, `Value::get_async`, `Value::set_async`, `Namespace::get_async`,
//! `Namespace::set_async`, `Array::get_async`, `Array::set_async`. They need a tokio runtime with I/O and time enabled (as `#[tokio::main]`
//! and tokio's `Builder::enable_all` make; tokio panics without time). A call writes its request
//! and reads the answer on a nonblocking socket, waiting on it with tokio's `AsyncFd` — never a
//! blocking call moved to a thread — under the same answer grace as a blocking call
//! ([`set_answer_timeout`]). What still blocks, briefly: opening a new connection when none is
//! idle (connecting and the handshake, at most 5 s), the first call of a proxy inherited through
//! `fork`, exporting the proxies inside a value sent, dropping the references an answer's
//! proxies held, and dropping a lock's guard (`LockGuard::release_async` does not block). Over TLS (feature `tls`) the calls work the same way: rustls runs on the
//! nonblocking socket.
//!
//! A future dropped before its answer came leaves no half-read frame and no stale answer: its
//! connection is never reused. Once its request may have gone out, the manager gives a waiting
//! call up when it sees the connection's end (within 100 ms); if it had already granted the call,
//! the grant is undone — a lock taken is released, a semaphore's permit given back, a queue's
//! value put back at the queue's front — by a worker thread that reads the answer after the drop
//! (see `pending_undos`), and that a runtime shutting down does not drop. So a dropped `get` or
//! `acquire` takes nothing and holds nothing, within milliseconds of the drop; a dropped condition
//! `wait` leaves its guard in doubt: the lock is released exactly once (by the worker or by the
//! guard's drop), and the guard serves no further wait. Values given back by two dropped `get`s
//! go to the front in the order their workers finish, and a bounded queue may hold more than its
//! `maxsize` for that moment. What cannot be undone is not: a dropped `put` or `set` may have
//! happened, a dropped barrier `wait` breaks the barrier (as a party that gives up does), unless
//! it had passed. If the manager does not answer within the grace, a lock granted stays held
//! until this process's session ends.
//!
//! A blocking `acquire` (lock or semaphore) or `get` that gives up on a manager that did not
//! answer within its time and the grace (a stopped or cut-off server) is undone the same way, once
//! the server runs again and answers within another grace.
//!
//! A lock taken with `acquire_async` belongs to its guard, not to the thread: notify with
//! `Condition::notify_async(&guard, n)`, release with `LockGuard::release_async` (dropping the
//! guard releases with a blocking round trip), and wait with `Condition::wait_async(&guard)`,
//! which refuses a guard of a blocking acquire.
#![warn(missing_docs)]

mod auth;
mod client;
mod error;
mod manager;
mod object;
mod proxy;
mod registry;
mod server;
mod shared_memory;
mod sys;
#[cfg(feature = "tls")]
mod tls;
mod transport;
mod wire;

pub use auth::MIN_AUTHKEY_LEN;
pub use client::pending_undos;
pub use client::{set_answer_timeout, Address};
pub use error::{Error, PutError, Result};
pub use manager::{Builder, Manager};
pub use proxy::{
    Array, AsObject, Barrier, Condition, Dict, Event, FromObject, List, Lock, LockGuard, Namespace, Proxy,
    Queue, Semaphore, Value,
};
pub use registry::Shared;
pub use shared_memory::SharedMemoryManager;
#[cfg(feature = "tls")]
pub use tls::{TlsClient, TlsServer};

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctest;
