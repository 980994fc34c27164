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
use std::sync::{Arc, PoisonError};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::undo::Undo;
use super::{answer_grace, answer_limit, no_answer, Client, Conn};
use crate::error::{Error, Result};
use crate::wire::{self, Framed, Request, Response};

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
        let undo = std::mem::replace(&mut self.undo, Undo::Nothing);
        super::undo::undo_later(self.client.clone(), conn, undo);
    }
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
