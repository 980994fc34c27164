//! What undoes a call the manager may have carried out for a caller that stopped waiting for its
//! answer: an async call whose future was dropped after its request went out (`asyncio`), or a
//! blocking call that gave up on an answer that did not come within its time and the answer grace
//! ([`Client::call_undoable`]).
//!
//! The connection's way to the server is shut (the server sees the end and gives a waiting call
//! up), and a worker (a thread of its own) reads the answer, within the answer grace: when the
//! server had granted the call before it saw the end, the worker undoes it — releases the lock
//! taken for the call's owner, gives the semaphore's permit back, puts the queue's value back at
//! the queue's front. If the server does not answer within the grace either, what it grants later
//! stays granted (a lock stays held until this process's session ends).

#[cfg(feature = "tokio")]
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};

use super::{answer_grace, Client, Conn};
use crate::error::Result;
use crate::wire::{Bytes, Method, ObjectId, Owner, Request, Response};

/// What undoes a call the server may have carried out for a caller that stopped waiting for its
/// answer.
#[derive(Debug, Clone)]
pub(crate) enum Undo {
    /// Nothing to undo, or nothing that can be: the connection is closed.
    Nothing,
    /// A lock acquired for `owner` (answered `true`): released, as that owner.
    Acquired { lock: ObjectId, owner: Owner },
    /// A condition's wait, which takes `lock` back for `owner` whatever its outcome (answered with
    /// a boolean): `lock` is released, as that owner, unless `released` was set first: the guard
    /// of the wait shares it, so that exactly one of the two releases the lock taken back.
    #[cfg(feature = "tokio")]
    Retaken { lock: ObjectId, owner: Owner, released: Arc<AtomicBool> },
    /// A semaphore's permit taken (answered `true`): given back.
    Permit { semaphore: ObjectId, owner: Owner },
    /// A value taken from a queue: put back at the queue's front.
    Unget { queue: ObjectId },
}

/// Hands the connection of a call whose caller stopped waiting to a worker that reads the answer
/// and undoes what the server granted (see the module's docs). `undo` is not [`Undo::Nothing`].
pub(crate) fn undo_later(client: Arc<Client>, conn: Conn, undo: Undo) {
    // The server sees the end and gives the call up; its answer can still be read.
    conn.framed.stream.shutdown_write();
    let pending = Pending::new();
    let work = move || {
        undo_answer(&client, conn, undo);
        drop(pending);
    };
    // A thread of its own, not a runtime's blocking pool: a runtime shutting down drops the
    // blocking tasks not yet started, and with them a value or a lock to give back. Rare: a call
    // given up after its request went out, with something to undo.
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
        tracing::warn!(error = %e, "no thread to undo a given-up manager call: undoing it here");
        if let Some(work) = take(&work) {
            work();
        }
    }
}

/// Given-up calls whose undoing has not finished yet in this process.
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

/// How many calls of this process that stopped waiting for their answer are still being undone:
/// async calls whose future was dropped after the request went out (see "Async calls" in the
/// crate's docs), and blocking calls that gave up on an answer that did not come within their
/// time and the answer grace ([`set_answer_timeout`](crate::set_answer_timeout)). Each has its
/// answer read, and a lock, permit or queue value the manager had granted it given back. Zero once
/// every such undoing has finished (each within the answer grace).
///
/// A process that must not end with such a grant still held (a lock stays held until the
/// process's session ends) waits for zero before it exits; a test waits for it before it looks at
/// the objects.
///
/// # Examples
///
/// ```
/// // Nothing was given up here.
/// assert_eq!(proc_manager::pending_undos(), 0);
/// ```
#[cfg_attr(
    feature = "tokio",
    doc = r#"
A dropped async call:

```
# #[tokio::main(flavor = "current_thread")]
# async fn main() -> proc_manager::Result<()> {
let manager = proc_manager::Manager::start()?;
let q = manager.queue::<u32>(0)?;
// Given up while it waits on the empty queue.
let gave_up = tokio::time::timeout(std::time::Duration::from_millis(10), q.get_async()).await;
assert!(gave_up.is_err());
// The manager may give this value to the dropped call before it sees it gone: it comes back.
q.put(1)?;
while proc_manager::pending_undos() > 0 {
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
}
assert_eq!(q.get_nowait()?, 1);
# Ok(())
# }
```
"#
)]
pub fn pending_undos() -> usize {
    PENDING.load(Ordering::SeqCst)
}

/// Reads the answer of a call whose caller stopped waiting, and undoes what the server granted.
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
            tracing::debug!(error = %e, "no answer to a given-up manager call: nothing to undo");
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
        #[cfg(feature = "tokio")]
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
        tracing::warn!(error = %e, ?undo, "cannot undo a given-up manager call");
    }
}

fn call(client: &Client, object: ObjectId, method: Method, embedded: Vec<(Bytes, Vec<u64>)>) -> Result<()> {
    client.call(&Request::Call { object, method, embedded }).map(drop)
}
