//! Async sends and receives for tokio (feature `tokio`): [`Connection::send_async`],
//! [`Connection::recv_async`], [`Queue::get_async`], [`Queue::put_async`],
//! [`SimpleQueue::get_async`] (and [`JoinableQueue`](crate::JoinableQueue)'s get and put, through
//! `Deref`), and [`ready_async`] for any [`Waitable`].
//!
//! Each waits on the object's descriptor with tokio's `AsyncFd` (the queues' doorbells, the
//! connection's socket), never on a blocking call moved to a thread, and takes what is there with
//! a call that does not wait. So a future dropped at any point leaves nothing half done: no half-read
//! frame is lost (a connection keeps a partial frame for its next receive), no slot is claimed,
//! no message taken or put.
//!
//! A queue has two doorbells: the items doorbell, rung by a `put` when a getter (an async get, or
//! [`wait`](crate::wait)) asked for it, and, in a bounded queue, the space doorbell, rung by a `get`
//! that frees a slot when an async put asked for it. A waiter sets the doorbell's flag in the
//! queue's shared memory, looks at the queue once more, then waits on the descriptor; `put` and
//! `get` ring only when they find the flag set, so with nobody waiting they make no system call.

use std::future::Future;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::queue::{GetError, PutError, Queue, SimpleQueue};
use crate::wait::Waitable;

/// Waits until `object` is ready, or may be (Python's `wait` on one object, as a future): a
/// connection with something to receive (or its end), a queue whose state changed, a process's
/// sentinel once it ended.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> proc_queue::Result<()> {
/// let (a, b) = proc_queue::pipe::<u8>()?;
/// a.send(&1)?;
/// proc_queue::ready_async(&b).await?;
/// assert_eq!(b.recv()?, 1);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`Error::Os`] when there is no tokio runtime with I/O enabled here, or the descriptor cannot be
/// watched.
pub async fn ready_async(object: &(dyn Waitable + Sync)) -> Result<()> {
    if object.arm() == Some(true) {
        return Ok(());
    }
    readable(object).await?;
    if object.arm().is_some() {
        // A doorbell: clear it (the caller looks at the object again anyway).
        let _ = object.fired();
    }
    Ok(())
}

/// Waits until `object`'s descriptor is readable.
async fn readable(object: &(dyn Waitable + Sync)) -> Result<()> {
    readable_fd(object.wait_fd(), "an async receive needs a tokio runtime").await
}

/// Waits until `fd` is readable; `no_runtime` is the error's text where there is no runtime.
async fn readable_fd(fd: BorrowedFd<'_>, no_runtime: &'static str) -> Result<()> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::Os(io::Error::other(no_runtime)));
    }
    let fd: OwnedFd = fd.try_clone_to_owned().map_err(Error::Os)?;
    // SAFETY: `fd` is an open descriptor the `AsyncFd` owns: it stays open, and is the same one,
    // until the `AsyncFd` is dropped.
    let watched = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
        .map_err(|e| Error::Os(e.into_parts().1))?;
    let _ready = watched.readable().await.map_err(Error::Os)?;
    Ok(())
}

impl<T> Connection<T> {
    /// Receives the next message without blocking the runtime's thread: the async
    /// [`recv`](Self::recv). Dropping the future before it completes loses nothing; bytes of a
    /// message that had arrived stay for the next receive.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_queue::Result<()> {
    /// let (a, b) = proc_queue::pipe::<String>()?;
    /// let reader = tokio::spawn(async move { b.recv_async().await });
    /// a.send(&"hello".to_string())?;
    /// assert_eq!(reader.await.unwrap()?, "hello");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv); also [`Error::Os`] when there is no tokio runtime with I/O enabled.
    pub async fn recv_async(&self) -> Result<T>
    where
        T: DeserializeOwned,
    {
        let mut busy = false;
        loop {
            if let Some(value) = self.recv_step(&mut busy)? {
                return Ok(value);
            }
            // Wait for more bytes on the socket, or, when another receiver has the turn (it may
            // read ahead the message this one waits for), for the turn to come back.
            let seen = self.turn_returns();
            if busy && self.turn_is_free() {
                // Returned meanwhile: look again at once.
                continue;
            }
            let readable = readable(self);
            let mut readable = std::pin::pin!(readable);
            std::future::poll_fn(|cx| {
                if let std::task::Poll::Ready(r) = readable.as_mut().poll(cx) {
                    return std::task::Poll::Ready(r);
                }
                self.poll_turn_returned(seen, cx).map(Ok)
            })
            .await?;
        }
    }
}

impl<T> Connection<T> {
    /// Sends `value` as one message without blocking the runtime's thread: the async
    /// [`send`](Self::send). The value is serialized first (an error sends nothing). Once its first
    /// bytes are out the message belongs to the connection: dropping the future then does not cut
    /// it, the next send on this end (of any kind, async or not) sends the rest first.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_queue::Result<()> {
    /// let (a, b) = proc_queue::pipe::<Vec<u32>>()?;
    /// // Larger than the socket's buffer: the send waits for the receiver without blocking.
    /// let big: Vec<u32> = (0..1_000_000).collect();
    /// let (sent, got) = tokio::join!(a.send_async(&big), b.recv_async());
    /// sent?;
    /// assert_eq!(got?.len(), 1_000_000);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send); also [`Error::Os`] when there is no tokio runtime with I/O enabled.
    pub async fn send_async(&self, value: &T) -> Result<()>
    where
        T: Serialize,
    {
        if !self.writable() {
            return Err(Error::ReadOnly);
        }
        let (body, fds) = proc_core::handle::serialize_with_fds(value).map_err(Error::Serialize)?;
        if fds.len() > proc_os::socket::MAX_FDS {
            return Err(Error::Os(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many descriptors for one message",
            )));
        }
        let mut frame = proc_os::frame::header(body.len() as u64, fds.len() as u32).to_vec();
        frame.extend_from_slice(&body);
        let mut begun = false;
        while !self.send_step(&frame, &fds, &mut begun)? {
            writable(self).await?;
        }
        Ok(())
    }
}

/// Waits until `conn`'s socket has room for more bytes.
async fn writable<T>(conn: &Connection<T>) -> Result<()> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::Os(io::Error::other("an async send needs a tokio runtime")));
    }
    let fd: OwnedFd = std::os::fd::AsFd::as_fd(conn).try_clone_to_owned().map_err(Error::Os)?;
    // SAFETY: `fd` is an open descriptor the `AsyncFd` owns: it stays open, and is the same one,
    // until the `AsyncFd` is dropped.
    let watched = unsafe { AsyncFd::register_with_interest(fd, Interest::WRITABLE) }
        .map_err(|e| Error::Os(e.into_parts().1))?;
    let _ready = watched.writable().await.map_err(Error::Os)?;
    Ok(())
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Takes the oldest item without blocking the runtime's thread: the async
    /// [`get`](Self::get). Dropping the future before it completes takes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = proc_queue::Queue::<u32>::new(4)?;
    /// let getter = tokio::spawn({
    ///     let q = q.clone();
    ///     async move { q.get_async().await }
    /// });
    /// q.put(5)?;
    /// assert_eq!(getter.await??, 5);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get); also [`GetError::Os`] when there is no tokio runtime with I/O enabled.
    pub async fn get_async(&self) -> std::result::Result<T, GetError> {
        let mut waited = false;
        loop {
            match self.get_nowait() {
                Ok(v) => {
                    if waited {
                        // The doorbell is one flag for every waiter: pass a swallowed ring on.
                        self.pass_the_bell_on();
                    }
                    return Ok(v);
                }
                Err(GetError::Empty) => {
                    waited = true;
                    ready_async(self).await.map_err(|e| match e {
                        Error::Os(e) => GetError::Os(proc_core::Error::os("cannot wait for the queue", e)),
                        other => GetError::Os(proc_core::Error::os(
                            "cannot wait for the queue",
                            io::Error::other(other.to_string()),
                        )),
                    })?;
                }
                other => {
                    if waited {
                        self.pass_the_bell_on();
                    }
                    return other;
                }
            }
        }
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Puts `value` without blocking the runtime's thread: the async [`put`](Self::put). While a
    /// bounded queue is full it waits on the queue's space doorbell, which a `get` in any process
    /// rings when it frees a slot that an async put waits for; an unbounded queue's `put` never
    /// waits for room, so there this is `put`. The put itself is [`put_nowait`](Self::put_nowait),
    /// tried only when there may be room: dropping the future before it completes puts nothing
    /// (the value is dropped with it) and leaves no slot claimed.
    ///
    /// Through `Deref` this is also [`JoinableQueue`](crate::JoinableQueue)'s, which counts the
    /// item as an unfinished task once it is in the queue (a dropped future counts nothing).
    ///
    /// A slot held by a reader that was killed in the middle of a `get` is freed by the next try,
    /// which comes with the next `get` that frees a slot (a blocking `put` frees it after
    /// [`LIVENESS_CHECK`](crate::LIVENESS_CHECK) at most). A [`close`](Self::close) in this process
    /// is seen at the next try too.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = proc_queue::Queue::<u32>::new(1)?;
    /// q.put_async(1).await?;
    /// // Full: this put waits, without blocking the runtime, until the getter frees the slot.
    /// let putter = tokio::spawn({
    ///     let q = q.clone();
    ///     async move { q.put_async(2).await.map_err(|e| e.without_value()) }
    /// });
    /// tokio::task::yield_now().await;
    /// assert_eq!(q.get_async().await?, 1);
    /// putter.await??;
    /// assert_eq!(q.get()?, 2);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put), each handing the value back: [`PutError::Closed`],
    /// [`PutError::ShutDown`] (also when the queue is shut down while this put waits),
    /// [`PutError::TooLarge`], [`PutError::Serialize`], [`PutError::Os`]; the last also when it
    /// has to wait and there is no tokio runtime with I/O enabled, or the doorbell cannot be
    /// watched.
    pub async fn put_async(&self, value: T) -> std::result::Result<(), PutError<T>> {
        if self.maxsize() == 0 {
            return self.put(value);
        }
        let mut value = value;
        // Whether this put drained the space doorbell: it then passes it on before it returns
        // (see `Ring::pass_space_on`).
        let mut drained = false;
        loop {
            let outcome = match self.put_nowait(value) {
                Err(PutError::Full(v)) => {
                    value = v;
                    match self.space_ready(&mut drained).await {
                        Ok(()) => continue,
                        Err(error) => Err(PutError::Os { value, error }),
                    }
                }
                other => other,
            };
            if drained {
                self.pass_the_space_bell_on();
            }
            return outcome;
        }
    }

    /// Waits until a `put` on this bounded queue may not have to wait: arms the space doorbell,
    /// looks once more, and only then waits for the doorbell (so a release made at any point
    /// after the caller's try is not missed). Sets `drained` once it cleared the doorbell.
    async fn space_ready(&self, drained: &mut bool) -> std::result::Result<(), proc_core::Error> {
        if self.arm_space() {
            // Room came (or the queue stopped) since the try: try again, after letting the
            // runtime's other tasks run, so that slots others keep taking first cannot make this
            // task spin.
            tokio::task::yield_now().await;
            return Ok(());
        }
        let fd = self.space_fd().ok_or_else(|| {
            proc_core::Error::os(
                "cannot wait for the queue",
                io::Error::other("a bounded queue without its space doorbell"),
            )
        })?;
        readable_fd(fd, "an async put needs a tokio runtime").await.map_err(|e| match e {
            Error::Os(e) => proc_core::Error::os("cannot wait for the queue", e),
            other => proc_core::Error::os("cannot wait for the queue", io::Error::other(other.to_string())),
        })?;
        // Cleared here, tried by the caller in the same poll: a dropped future cannot swallow the
        // ring without passing it on.
        *drained = true;
        let _ = self.space_fired();
        Ok(())
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// The async [`get`](Self::get), as [`Queue::get_async`].
    ///
    /// # Errors
    ///
    /// As [`Queue::get_async`].
    pub async fn get_async(&self) -> std::result::Result<T, GetError> {
        self.inner.get_async().await
    }
}
