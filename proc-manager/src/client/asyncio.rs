//! Async calls (feature `tokio`): [`Client::call_async`], and what a call's future dropped before
//! its answer leaves behind.
//!
//! A call takes an idle connection (or opens one: connecting and the handshake block, for at most
//! the handshake's deadline), switches its socket to nonblocking mode, writes the request and
//! reads the answer a part at a time, waiting for the socket with tokio's `AsyncFd` (never on a
//! blocking call moved to a thread). A frame read in part stays in the connection's buffer
//! ([`Framed::read`](crate::wire::Framed::read) goes on where it stopped). On success the socket
//! is blocking again and the connection goes back to the idle pool.
//!
//! # A dropped call
//!
//! The future owns the connection until the answer is read. Dropped before the request's first
//! byte is written, it sent nothing and the connection is closed. Dropped after, the connection is
//! never put back in the pool (it would hold a stale answer); what happens next depends on the
//! call's [`Undo`]:
//!
//! - [`Undo::Nothing`]: the connection is closed. The server sees its end and gives a waiting call
//!   up (within its abort slice, 100 ms); a call it had already carried out stays done (a `put`, a
//!   `set`, a barrier's `wait`).
//! - Otherwise the connection's way to the server is shut (the server sees the end and gives the
//!   call up), and a worker (a thread of its own, which a runtime shutting down does not drop, as
//!   it does its blocking pool's tasks not yet started) reads the answer, within the answer grace:
//!   when the server had granted the call before
//!   it saw the end, the worker undoes it — releases the lock taken for this call's owner, gives
//!   the semaphore's permit back, puts the queue's value back at the queue's front. So a dropped
//!   call leaves no half-read frame, no stale answer, no lock or permit taken, no value taken.
//!   The undoing runs after the drop: another client may see the lock held, or the value missing,
//!   for the few milliseconds it takes. A condition's wait shares a flag with its guard, so the
//!   lock taken back for it is released once, by the worker or by the guard's drop. If the server
//!   does not answer within the grace, a lock taken stays held until this process's session ends.

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::{answer_grace, answer_limit, no_answer, Client, Conn};
use crate::error::{Error, Result};
use crate::wire::{self, Bytes, Framed, Method, ObjectId, Owner, Request, Response};

/// What undoes a call the server may have carried out for a future dropped before the answer.
#[derive(Debug, Clone)]
pub(crate) enum Undo {
    /// Nothing to undo, or nothing that can be: the connection is closed.
    Nothing,
    /// A lock acquired for `owner` (answered `true`): released, as that owner.
    Acquired { lock: ObjectId, owner: Owner },
    /// A condition's wait, which takes `lock` back for `owner` whatever its outcome (answered with
    /// a boolean): `lock` is released, as that owner, unless `released` was set first: the guard
    /// of the wait shares it, so that exactly one of the two releases the lock taken back.
    Retaken { lock: ObjectId, owner: Owner, released: Arc<AtomicBool> },
    /// A semaphore's permit taken (answered `true`): given back.
    Permit { semaphore: ObjectId, owner: Owner },
    /// A value taken from a queue: put back at the queue's front.
    Unget { queue: ObjectId },
}

/// A call between its request and its answer: the connection, and what to undo if the future is
/// dropped (see the module's docs).
struct InFlight {
    client: Arc<Client>,
    /// `None` once the answer is read.
    conn: Option<Conn>,
    undo: Undo,
    /// Whether a byte of the request may have been written.
    sent: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.sent || matches!(self.undo, Undo::Nothing) {
            // Closed here: the server gives a waiting call up when it sees the end.
            return;
        }
        // The server sees the end and gives the call up; its answer can still be read.
        conn.framed.stream.shutdown_write();
        let client = self.client.clone();
        let undo = std::mem::replace(&mut self.undo, Undo::Nothing);
        let pending = Pending::new();
        let work = move || {
            undo_answer(&client, conn, undo);
            drop(pending);
        };
        // A thread of its own, not the runtime's blocking pool: a runtime shutting down drops the
        // blocking tasks not yet started, and with them a value or a lock to give back. Rare: a
        // future dropped after its request went out, with something to undo.
        let work = Arc::new(std::sync::Mutex::new(Some(work)));
        let take = |w: &std::sync::Mutex<Option<_>>| w.lock().unwrap_or_else(PoisonError::into_inner).take();
        let theirs = work.clone();
        let spawned = std::thread::Builder::new().name("manager-undo".into()).spawn(move || {
            if let Some(work) = take(&theirs) {
                work();
            }
        });
        if let Err(e) = spawned {
            // No thread: undone here, blocking this thread for at most the answer grace.
            tracing::warn!(error = %e, "no thread to undo a dropped manager call: undoing it here");
            if let Some(work) = take(&work) {
                work();
            }
        }
    }
}

/// Dropped calls whose undoing has not finished yet in this process.
static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Counts one undoing from its start until it is done, or dropped unrun.
struct Pending;

impl Pending {
    fn new() -> Self {
        PENDING.fetch_add(1, Ordering::SeqCst);
        Pending
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        PENDING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How many async calls of this process, dropped after their request went out, are still being
/// undone (see "Async calls" in the crate's docs): their answer read, and a lock, permit or queue
/// value the manager had granted them given back. Zero once every such undoing has finished
/// (each within the answer grace, see [`set_answer_timeout`](crate::set_answer_timeout)).
///
/// A process that must not end with a grant of a dropped call still held (a lock stays held until
/// the process's session ends) waits for zero before it exits; a test waits for it before it
/// looks at the objects.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> proc_manager::Result<()> {
/// let manager = proc_manager::Manager::start()?;
/// let q = manager.queue::<u32>(0)?;
/// // Given up while it waits on the empty queue.
/// let gave_up = tokio::time::timeout(std::time::Duration::from_millis(10), q.get_async()).await;
/// assert!(gave_up.is_err());
/// // The manager may give this value to the dropped call before it sees it gone: it comes back.
/// q.put(1)?;
/// while proc_manager::pending_undos() > 0 {
///     tokio::time::sleep(std::time::Duration::from_millis(1)).await;
/// }
/// assert_eq!(q.get_nowait()?, 1);
/// # Ok(())
/// # }
/// ```
pub fn pending_undos() -> usize {
    PENDING.load(Ordering::SeqCst)
}

/// Reads the answer of a call whose future was dropped, and undoes what the server granted.
fn undo_answer(client: &Client, mut conn: Conn, undo: Undo) {
    let grace = answer_grace();
    let framed = &mut conn.framed;
    if framed.stream.set_nonblocking(false).is_err()
        || framed.stream.set_timeouts(Some(grace), Some(grace)).is_err()
    {
        return;
    }
    // Within the server's abort slice of the end it saw (or at once, if it had answered).
    let response: Response = match framed.read(u32::MAX) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "no answer to a dropped manager call: nothing to undo");
            return;
        }
    };
    drop(conn);
    let (moved, response) = match response {
        Response::Moved { ids, inner } => (ids, *inner),
        r => (Vec::new(), r),
    };
    let undone = match (&undo, response) {
        (&Undo::Acquired { lock, owner }, Response::Bool(true)) => {
            call(client, lock, Method::ReleaseOwned { owner }, Vec::new())
        }
        (Undo::Retaken { lock, owner, released }, Response::Bool(_)) => {
            // Unless the wait's guard released it first (it was dropped meanwhile).
            if released.swap(true, Ordering::SeqCst) {
                Ok(())
            } else {
                call(client, *lock, Method::ReleaseOwned { owner: *owner }, Vec::new())
            }
        }
        (&Undo::Permit { semaphore, owner }, Response::Bool(true)) => {
            call(client, semaphore, Method::Release { owner }, Vec::new())
        }
        (&Undo::Unget { queue }, Response::Value(value)) => {
            // Proxies inside the value: the queue takes their references back (exported, as a
            // `put` does), then this session drops those the answer moved to it.
            let mut tokens = Vec::new();
            for id in &moved {
                if let Ok(Response::Count(token)) = client.call(&Request::Export(*id)) {
                    tokens.push(token);
                }
            }
            let embedded = if tokens.is_empty() { Vec::new() } else { vec![(value.clone(), tokens)] };
            call(client, queue, Method::QueueUnget(value), embedded)
        }
        _ => Ok(()),
    };
    for id in moved {
        let _ = client.call(&Request::DecRef(id));
    }
    if let Err(e) = undone {
        tracing::warn!(error = %e, ?undo, "cannot undo a dropped manager call");
    }
}

fn call(client: &Client, object: ObjectId, method: Method, embedded: Vec<(Bytes, Vec<u64>)>) -> Result<()> {
    client.call(&Request::Call { object, method, embedded }).map(drop)
}

/// What one try of a nonblocking step came to.
enum Step<T> {
    Done(T),
    /// It would block: wait for the socket to be readable, or writable.
    Wait(Interest),
}

/// Runs `op` until it is done, waiting for the socket `watched` between tries.
async fn drive<T>(watched: &AsyncFd<OwnedFd>, mut op: impl FnMut() -> Result<Step<T>>) -> Result<T> {
    let mut wait = match op()? {
        Step::Done(t) => return Ok(t),
        Step::Wait(interest) => interest,
    };
    loop {
        let mut ready = if wait.is_writable() { watched.writable().await } else { watched.readable().await }
            .map_err(Error::Connection)?;
        match op()? {
            Step::Done(t) => return Ok(t),
            Step::Wait(interest) => {
                // TLS: a read may stop with bytes still on the socket (records read one at a
                // time); only a socket with nothing to read may wait for its next readiness.
                if interest.is_readable()
                    && proc_os::fd::is_readable(watched.get_ref().as_fd()).unwrap_or(false)
                {
                    wait = interest;
                    continue;
                }
                ready.clear_ready();
                wait = interest;
            }
        }
    }
}

/// How a stream waits when an operation would block: for room when it holds bytes to write.
fn interest(stream: &crate::transport::Stream) -> Interest {
    if stream.wants_write() {
        Interest::WRITABLE
    } else {
        Interest::READABLE
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Writes all of `frame`, then what the stream holds (TLS records).
async fn write_all(
    framed: &mut Framed<crate::transport::Stream>,
    watched: &AsyncFd<OwnedFd>,
    frame: &[u8],
) -> Result<()> {
    let mut at = 0;
    drive(watched, || loop {
        let error = if at < frame.len() {
            match framed.stream.write(&frame[at..]) {
                Ok(0) => return Err(Error::Connection(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    at += n;
                    continue;
                }
                Err(e) => e,
            }
        } else {
            match framed.stream.flush() {
                Ok(()) => return Ok(Step::Done(())),
                Err(e) => e,
            }
        };
        match error {
            e if would_block(&e) => return Ok(Step::Wait(Interest::WRITABLE)),
            e if e.kind() == io::ErrorKind::Interrupted => {}
            e => return Err(Error::Connection(e)),
        }
    })
    .await
}

/// Reads the answer's frame.
async fn read_answer(
    framed: &mut Framed<crate::transport::Stream>,
    watched: &AsyncFd<OwnedFd>,
) -> Result<Response> {
    drive(watched, || match framed.read::<Response>(u32::MAX) {
        Ok(r) => Ok(Step::Done(r)),
        Err(Error::Connection(e)) if would_block(&e) || e.kind() == io::ErrorKind::Interrupted => {
            Ok(Step::Wait(interest(&framed.stream)))
        }
        Err(e) => Err(e),
    })
    .await
}

impl Client {
    /// Sends a request and waits for the answer without blocking the runtime's thread: the async
    /// [`call`](Self::call), with the same answer grace. `undo` says what undoes the call if its
    /// future is dropped once the request may be out (see the module's docs).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call); also [`Error::Connection`] when there is no tokio runtime here.
    pub(crate) async fn call_async(self: &Arc<Self>, request: &Request, undo: Undo) -> Result<Response> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Connection(io::Error::other("an async manager call needs a tokio runtime")));
        }
        let frame = wire::frame(request, u32::MAX)?;
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match idle {
            Some(c) => c,
            None => self.open()?,
        };
        let mut flight = InFlight { client: self.clone(), conn: Some(conn), undo, sent: false };
        let grace = answer_grace();
        let limit = answer_limit(request, grace);
        let Some(conn) = flight.conn.as_mut() else {
            return Err(Error::protocol("a call lost its connection"));
        };
        let framed = &mut conn.framed;
        framed.stream.set_nonblocking(true)?;
        let fd = framed.stream.as_fd().try_clone_to_owned()?;
        // SAFETY: `fd` is an open descriptor the `AsyncFd` owns: it stays open, and is the same
        // one, until the `AsyncFd` is dropped.
        let watched = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
            .map_err(|e| Error::Connection(e.into_parts().1))?;
        flight.sent = true;
        let exchange = async {
            tokio::time::timeout(grace, write_all(framed, &watched, &frame))
                .await
                .map_err(|_| no_answer(grace))??;
            match limit {
                Some(limit) => tokio::time::timeout(limit, read_answer(framed, &watched))
                    .await
                    .map_err(|_| no_answer(grace))?,
                None => read_answer(framed, &watched).await,
            }
        };
        let response = match exchange.await {
            Ok(r) => r,
            Err(e) => {
                // The connection broke, or the server is stuck: nothing more will come on it, so
                // it is only closed (the server gives a waiting call up when it sees the end).
                flight.undo = Undo::Nothing;
                return Err(e);
            }
        };
        drop(watched);
        // Answered: nothing to undo, and the connection may serve another call.
        let conn = flight.conn.take();
        if let Some(conn) = conn {
            if conn.framed.stream.set_nonblocking(false).is_ok() {
                self.put_back(conn);
            }
        }
        match response {
            Response::Err(e) => Err(e.into()),
            r => Ok(r),
        }
    }
}
