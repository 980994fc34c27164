//! `Connection`, one end of a pipe, and `pipe`/`pipe_one_way`, which make them.
//!
//! The wire format is in `frame`; `turn` hands the receiving state to one receiver at a time.

mod bytes;
mod frame;
mod turn;

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use proc_core::handle::{deserialize_with_fds, export_fd, import_fd, serialize_with_fds_into};
use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use self::turn::{Turn, TurnGuard};
use crate::error::{Error, Result};

/// Makes a two-way pipe (Python's `Pipe()`): two connected ends that both send and receive
/// messages of type `T`.
///
/// # Examples
///
/// ```
/// let (a, b) = proc_queue::pipe::<String>()?;
/// a.send(&"ping".to_string())?;
/// assert_eq!(b.recv()?, "ping");
/// b.send(&"pong".to_string())?;
/// assert_eq!(a.recv()?, "pong");
/// # Ok::<(), proc_queue::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Os`]: the sockets could not be created (out of descriptors).
pub fn pipe<T>() -> Result<(Connection<T>, Connection<T>)> {
    let (a, b) = proc_os::socket::socketpair().map_err(Error::Os)?;
    Ok((Connection::from_parts(a, true, true), Connection::from_parts(b, true, true)))
}

/// Makes a one-way pipe (Python's `Pipe(duplex=False)`): `(receiver, sender)`, in Python's order.
/// The first end only receives and the second only sends; the other direction is an error
/// ([`Error::ReadOnly`], [`Error::WriteOnly`]), and the operating system enforces it too (each
/// socket is shut down in the direction its end does not use).
///
/// # Examples
///
/// ```
/// use proc_queue::Error;
///
/// let (rx, tx) = proc_queue::pipe_one_way::<u32>()?;
/// tx.send(&7)?;
/// assert_eq!(rx.recv()?, 7);
/// assert!(matches!(rx.send(&8), Err(Error::ReadOnly)));
/// assert!(matches!(tx.recv(), Err(Error::WriteOnly)));
/// # Ok::<(), proc_queue::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Os`]: the sockets could not be created (out of descriptors), or not shut down.
pub fn pipe_one_way<T>() -> Result<(Connection<T>, Connection<T>)> {
    let (rx, tx) = proc_os::socket::socketpair().map_err(Error::Os)?;
    proc_os::socket::shutdown(rx.as_fd(), Shutdown::Write).map_err(Error::Os)?;
    proc_os::socket::shutdown(tx.as_fd(), Shutdown::Read).map_err(Error::Os)?;
    Ok((Connection::from_parts(rx, true, false), Connection::from_parts(tx, false, true)))
}

/// One end of a pipe: sends and receives whole messages of type `T` (or raw byte messages) to and
/// from the other end, in whichever process that is (Python's `multiprocessing.connection.Connection`).
///
/// Messages are serialized with postcard, framed with a 64-bit length (so a message of 4 GiB or
/// more is fine) and never merged or split: each `send` is one `recv`, an empty message included.
/// A value that contains handles (a [`proc_sync`](https://docs.rs/proc-sync) lock or value, a
/// shared-memory segment, another `Connection`) takes their descriptors along, so the receiving
/// process gets working handles, even one that was already running. For binary payloads send a
/// [`ByteBuf`](proc_core::ByteBuf) (or use [`send_bytes`](Connection::send_bytes)), not a bare
/// `Vec<u8>`, which serde writes one element at a time (see [Bytes](proc_core#bytes)).
///
/// Buffers are reused: a thread serializes every message it sends into one buffer of its own,
/// and an end receives every message into one buffer, each kept for the next message while it
/// is at most 16 MiB. So a stream of large messages costs no allocation or page fault in the
/// connection, whatever the process did before; a process that once sent or received a large
/// message keeps up to that much memory per sending thread and per receiving end.
///
/// A `Connection` is itself a handle. Pass it to a child as (part of) a start argument, under
/// every start method; serialized anywhere else (to JSON, to a file) it refuses, like every
/// handle. An end that holds data it has received but not yet returned refuses too (a receive
/// reads ahead: messages that arrive together are read at once and returned one by one, and the
/// copy would start in the middle of the stream). An end is closed when the last copy of it, in
/// every process, is dropped; then the other
/// end's `recv` returns [`Error::Disconnected`] (after the messages sent before), and its `send`
/// too. Under the fork start method a child inherits a copy of every end the parent holds at that
/// moment, the parent's own end of the child's pipe included, which stays open as long as the child
/// runs: a forked child that waits for the end of the stream from its parent waits forever, as in
/// Python. End such a conversation with a message of its own instead.
///
/// Within a process a connection may be shared between threads: sends are whole messages one
/// after another, receives take one whole message each, and a timed receive waiting for its turn
/// still ends at its deadline. Across processes, two processes that send on the same end at the
/// same time, or receive on it, can mix their messages up, as Python warns: give each end one
/// sender process and one receiver process at a time.
///
/// # Examples
///
/// ```
/// use proc_core::Process;
/// use proc_queue::{pipe, Connection};
///
/// fn square(conn: Connection<u64>) {
///     while let Ok(x) = conn.recv() {
///         conn.send(&(x * x)).unwrap();
///     }
/// }
///
/// let (parent, child) = pipe()?;
/// let p = Process::new(square, (child,)).start()?;
/// parent.send(&12)?;
/// assert_eq!(parent.recv()?, 144);
/// parent.close(); // The child's `recv` returns `Disconnected`, and its loop ends.
/// p.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Connection<T> {
    socket: OwnedFd,
    readable: bool,
    writable: bool,
    /// Taken for the whole of one frame, so that frames of two threads never interleave. Holds
    /// the unsent rest of a frame that an async send began and was dropped before it finished
    /// (or is waiting to finish): the next send, of any kind, sends it first.
    sending: Mutex<Vec<u8>>,
    receiving: Turn,
    /// The last `poll` that waited found nothing before its timeout: the peer is idle, so the next
    /// `poll` sleeps at once instead of looking first (a loop of short polls on an idle connection
    /// would otherwise spend each look's 100 µs of CPU).
    poll_idle: AtomicBool,
    // A connection holds no `T`: it serializes one on the sender's thread and makes one on the
    // receiver's, so it is `Send` and `Sync` whatever `T` is.
    _message: PhantomData<fn(T) -> T>,
}

/// The largest send buffer a thread keeps for its next message.
const KEEP_SEND_BUFFER: usize = 16 << 20;

thread_local! {
    /// This thread's buffer for serializing messages (see [`Connection::send`]).
    static SEND_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl<T> Connection<T> {
    fn from_parts(socket: OwnedFd, readable: bool, writable: bool) -> Self {
        Connection {
            socket,
            readable,
            writable,
            sending: Mutex::new(Vec::new()),
            receiving: Turn::default(),
            poll_idle: AtomicBool::new(false),
            _message: PhantomData,
        }
    }

    /// Sends `value` as one message, with the descriptors of the handles inside it. The value is
    /// serialized before anything is written, so a value that fails to serialize sends nothing.
    ///
    /// Blocks while the other end's buffer is full (until it receives).
    ///
    /// # Examples
    ///
    /// ```
    /// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    /// struct Job {
    ///     id: u32,
    ///     input: Vec<f64>,
    /// }
    ///
    /// let (a, b) = proc_queue::pipe::<Job>()?;
    /// a.send(&Job { id: 1, input: vec![0.5, 1.5] })?;
    /// assert_eq!(b.recv()?.input, [0.5, 1.5]);
    /// # Ok::<(), proc_queue::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::ReadOnly`]: this is the receiving end of a one-way pipe.
    /// - [`Error::Serialize`]: the value cannot be serialized, holds more than 253 handles, or a
    ///   handle's descriptor cannot be duplicated; nothing was sent.
    /// - [`Error::Disconnected`]: the other end is closed.
    /// - [`Error::Os`]: sending failed otherwise.
    pub fn send(&self, value: &T) -> Result<()>
    where
        T: Serialize,
    {
        self.check_writable()?;
        // The thread's send buffer, taken out for this send (a `Serialize` that sends on another
        // connection gets a fresh one) and put back after: a stream of large messages is
        // serialized into the same memory each time, not into a new allocation that the
        // allocator maps, faults in and unmaps again.
        let mut bytes = SEND_BUFFER.take();
        let sent = serialize_with_fds_into(value, &mut bytes)
            .map_err(Error::Serialize)
            .and_then(|fds| self.send_frame(&bytes, &fds));
        if bytes.capacity() <= KEEP_SEND_BUFFER {
            SEND_BUFFER.set(bytes);
        }
        sent
    }

    /// Sends `bytes` as one message, as they are (Python's `send_bytes`). The other end takes it
    /// with [`recv_bytes`](Self::recv_bytes) or [`recv_bytes_into`](Self::recv_bytes_into).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = proc_queue::pipe::<()>()?;
    /// a.send_bytes(b"raw")?;
    /// a.send_bytes(b"")?;
    /// assert_eq!(b.recv_bytes()?, b"raw");
    /// assert_eq!(b.recv_bytes()?, b"");
    /// # Ok::<(), proc_queue::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::ReadOnly`]: this is the receiving end of a one-way pipe.
    /// - [`Error::Disconnected`]: the other end is closed.
    /// - [`Error::Os`]: sending failed otherwise.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.check_writable()?;
        self.send_frame(bytes, &[])
    }

    /// Receives the next message, waiting as long as it takes.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = proc_queue::pipe::<(u8, String)>()?;
    /// a.send(&(1, "one".into()))?;
    /// assert_eq!(b.recv()?, (1, "one".to_string()));
    /// # Ok::<(), proc_queue::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::WriteOnly`]: this is the sending end of a one-way pipe.
    /// - [`Error::Disconnected`]: the other end is closed and every message sent before was
    ///   received.
    /// - [`Error::Truncated`]: the other end closed in the middle of a message.
    /// - [`Error::Deserialize`]: the message is not a `T` (it is consumed).
    /// - [`Error::TooLarge`]: the message does not fit in memory (it is consumed).
    /// - [`Error::Os`]: receiving failed otherwise, or the message's handles were lost on the way
    ///   (this process ran out of descriptors).
    pub fn recv(&self) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.recv_until(None)
    }

    /// Receives the next message, waiting at most `timeout` for the whole of it. A zero timeout
    /// takes a message only if it is already there.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (a, b) = proc_queue::pipe::<u8>()?;
    /// assert!(b.recv_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
    /// a.send(&3)?;
    /// assert_eq!(b.recv_timeout(Duration::ZERO)?, 3);
    /// # Ok::<(), proc_queue::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::Timeout`]: no whole message arrived in time, never sooner than `timeout`. The
    ///   part of a message that did arrive stays for the next receive.
    /// - Everything [`recv`](Self::recv) returns.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.recv_until(deadline(timeout))
    }

    /// As [`recv_timeout`](Self::recv_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.recv_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// Receives the next message as raw bytes (Python's `recv_bytes`), for messages sent with
    /// [`send_bytes`](Self::send_bytes). Handles that came with the message are closed.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = proc_queue::pipe::<()>()?;
    /// a.send_bytes(&[1, 2, 3])?;
    /// assert_eq!(b.recv_bytes()?, [1, 2, 3]);
    /// # Ok::<(), proc_queue::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), except that the bytes are never deserialized.
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        let mut incoming = self.receiving(None)?;
        let message = incoming.read(self.socket.as_fd(), None)?;
        Ok(std::mem::take(message.body))
    }

    /// Receives the next message into `buf` and returns its length (Python's `recv_bytes_into`).
    /// Handles that came with the message are closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use proc_queue::Error;
    ///
    /// let (a, b) = proc_queue::pipe::<()>()?;
    /// a.send_bytes(b"a message")?;
    /// let mut buf = [0u8; 4];
    /// // Too short: the whole message comes back in the error.
    /// let Err(Error::BufferTooShort(message)) = b.recv_bytes_into(&mut buf) else { panic!() };
    /// assert_eq!(message, b"a message");
    /// # Ok::<(), proc_queue::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::BufferTooShort`]: the message is longer than `buf`; it is consumed and handed
    ///   back whole in the error, and `buf` is untouched.
    /// - Everything [`recv_bytes`](Self::recv_bytes) returns.
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        let mut incoming = self.receiving(None)?;
        let message = incoming.read(self.socket.as_fd(), None)?;
        let n = message.body.len();
        match buf.get_mut(..n) {
            Some(dst) => {
                dst.copy_from_slice(message.body);
                Ok(n)
            }
            None => Err(Error::BufferTooShort(std::mem::take(message.body))),
        }
    }

    /// Whether there is something to receive, waiting at most `timeout` for it (a zero timeout
    /// looks once). Never consumes anything. True also when the other end is closed (the next
    /// receive then returns at once with [`Error::Disconnected`]), and when only the start of a
    /// message has arrived (the next receive then waits for the rest).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (a, b) = proc_queue::pipe::<u8>()?;
    /// assert!(!b.poll(Duration::ZERO)?);
    /// a.send(&1)?;
    /// assert!(b.poll(Duration::from_secs(1))?);
    /// assert!(b.poll(Duration::ZERO)?, "polling does not consume");
    /// assert_eq!(b.recv()?, 1);
    /// # Ok::<(), proc_queue::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::WriteOnly`]: this is the sending end of a one-way pipe.
    /// - [`Error::Os`]: `poll(2)` failed.
    pub fn poll(&self, timeout: Duration) -> Result<bool> {
        if !self.readable {
            return Err(Error::WriteOnly);
        }
        if self.has_data_read() {
            return Ok(true);
        }
        // As a receive does, look briefly before sleeping (see `frame::look_readable`), unless the
        // last wait found the peer idle.
        let deadline = deadline(timeout);
        let sock = self.socket.as_fd();
        if !self.poll_idle.load(Ordering::Relaxed) && frame::look_readable(sock, deadline)? {
            return Ok(true);
        }
        let ready = proc_os::fd::wait_readable(&[sock], deadline).map_err(Error::Os)?;
        let ready = ready.first().copied().unwrap_or(false);
        // Only a wait that ran out says the peer is idle (a zero timeout waits for nothing).
        self.poll_idle.store(!ready && !timeout.is_zero(), Ordering::Relaxed);
        Ok(ready)
    }

    /// Closes this end (Python's `close`); the same as dropping it. The other end sees the end of
    /// the stream once every copy of this end, in every process, is closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use proc_queue::Error;
    ///
    /// let (a, b) = proc_queue::pipe::<u8>()?;
    /// a.send(&1)?;
    /// a.close();
    /// assert_eq!(b.recv()?, 1);
    /// assert!(matches!(b.recv(), Err(Error::Disconnected)));
    /// assert!(matches!(b.send(&2), Err(Error::Disconnected)));
    /// # Ok::<(), proc_queue::Error>(())
    /// ```
    pub fn close(self) {
        drop(self);
    }

    /// Whether this end receives (false for the sending end of a one-way pipe).
    ///
    /// # Examples
    ///
    /// ```
    /// let (rx, tx) = proc_queue::pipe_one_way::<u8>()?;
    /// assert!(rx.readable() && !rx.writable());
    /// assert!(tx.writable() && !tx.readable());
    /// # Ok::<(), proc_queue::Error>(())
    /// ```
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end sends (false for the receiving end of a one-way pipe).
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Whether this end holds bytes it has received and not yet returned (the start of a message,
    /// or messages read ahead with an earlier one): then there is something to receive whatever
    /// the socket says.
    pub(crate) fn has_data_read(&self) -> bool {
        self.readable && self.receiving.holds_data()
    }

    /// How many times this end's receiving turn was returned (see `Turn::returns`).
    #[cfg(feature = "tokio")]
    pub(crate) fn turn_returns(&self) -> u64 {
        self.receiving.returns()
    }

    /// One receive that does not wait (for an async receive): a message; `Ok(None)` with
    /// `busy` set when another receiver has the turn, or with `busy` clear when no whole message
    /// is here yet (the part that is stays for the next receive).
    #[cfg(feature = "tokio")]
    pub(crate) fn recv_step(&self, busy: &mut bool) -> Result<Option<T>>
    where
        T: DeserializeOwned,
    {
        if !self.readable {
            return Err(Error::WriteOnly);
        }
        let now = Some(Instant::now());
        let Some(mut incoming) = self.receiving.take(now) else {
            *busy = true;
            return Ok(None);
        };
        *busy = false;
        match self.decode_next(&mut incoming, now) {
            Err(Error::Timeout) => Ok(None),
            other => other.map(Some),
        }
    }

    /// Whether no receiver has this end's receiving turn now.
    #[cfg(feature = "tokio")]
    pub(crate) fn turn_is_free(&self) -> bool {
        self.receiving.is_free()
    }

    /// Ready once another receiver returned the receiving turn after `seen` returns.
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_turn_returned(
        &self,
        seen: u64,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        self.receiving.poll_returned(seen, cx)
    }

    fn check_writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::ReadOnly)
        }
    }

    fn send_frame(&self, body: &[u8], fds: &[OwnedFd]) -> Result<()> {
        let mut turn = self.sending.lock().unwrap_or_else(PoisonError::into_inner);
        self.finish_rest(&mut turn)?;
        frame::send_frame(self.socket.as_fd(), body, fds).map_err(send_error)
    }

    /// Sends the rest of a frame an async send began (see `sending`), waiting as long as it takes.
    fn finish_rest(&self, rest: &mut Vec<u8>) -> Result<()> {
        let mut sent = 0;
        while sent < rest.len() {
            match proc_os::socket::send_bytes(self.socket.as_fd(), &rest[sent..]).map_err(send_error)? {
                0 => return Err(Error::Os(io::ErrorKind::WriteZero.into())),
                n => sent += n,
            }
        }
        rest.clear();
        Ok(())
    }

    /// One step of an async send (see `asyncio`): sends what it can of the rest of an earlier
    /// frame, then, once that is out, of `frame` (header and body; its descriptors go with its first
    /// byte) if `begun` is false, moving what does not go into the rest. True when nothing of
    /// `frame` is left to send.
    #[cfg(feature = "tokio")]
    pub(crate) fn send_step(&self, frame: &[u8], fds: &[OwnedFd], begun: &mut bool) -> Result<bool> {
        let mut rest = self.sending.lock().unwrap_or_else(PoisonError::into_inner);
        let sock = self.socket.as_fd();
        while !rest.is_empty() {
            match proc_os::socket::send_nowait(sock, &[io::IoSlice::new(&rest)], &[]).map_err(send_error)? {
                Some(0) => return Err(Error::Os(io::ErrorKind::WriteZero.into())),
                Some(n) => drop(rest.drain(..n)),
                None => return Ok(false),
            }
        }
        if *begun {
            // Its rest went out with the rest above (or an earlier step's).
            return Ok(true);
        }
        let fds: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
        match proc_os::socket::send_nowait(sock, &[io::IoSlice::new(frame)], &fds).map_err(send_error)? {
            Some(0) => Err(Error::Os(io::ErrorKind::WriteZero.into())),
            Some(n) => {
                *begun = true;
                rest.extend_from_slice(&frame[n..]);
                Ok(rest.is_empty())
            }
            None => Ok(false),
        }
    }

    /// This thread's turn to receive, once the receiving state is free (or the deadline passed).
    fn receiving(&self, deadline: Option<Instant>) -> Result<TurnGuard<'_>> {
        if !self.readable {
            return Err(Error::WriteOnly);
        }
        self.receiving.take(deadline).ok_or(Error::Timeout)
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<T>
    where
        T: DeserializeOwned,
    {
        let mut incoming = self.receiving(deadline)?;
        self.decode_next(&mut incoming, deadline)
    }

    /// Reads the next message with the receiving turn held, and decodes it.
    fn decode_next(&self, incoming: &mut TurnGuard<'_>, deadline: Option<Instant>) -> Result<T>
    where
        T: DeserializeOwned,
    {
        let message = incoming.read_typed(self.socket.as_fd(), deadline)?;
        if !message.prefix.is_empty() {
            // One large byte string, its bytes in a buffer of their own (see `bytes`): a value
            // that is such a string takes the buffer; any other is decoded from the whole body.
            let payload = std::mem::take(message.body);
            let payload = match bytes::try_take::<T>(payload) {
                // Descriptors that came with it (a sender that broke the format) are closed, as
                // the usual decoder closes those no handle takes.
                Ok(value) => return Ok(value),
                Err((_, Some(payload))) => payload,
                Err((refused, None)) => {
                    return Err(Error::Deserialize(proc_core::Error::deserialization(refused)));
                }
            };
            // Whole again (one move of the bytes), decoded the usual way, and kept as the
            // connection's buffer for the next message.
            let mut body = payload;
            body.splice(0..0, message.prefix.iter().copied());
            let value = deserialize_with_fds(&body, message.fds).map_err(Error::Deserialize);
            *message.body = body;
            return value;
        }
        deserialize_with_fds(message.body, message.fds).map_err(Error::Deserialize)
    }
}

impl<T> fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.socket.as_raw_fd())
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .finish()
    }
}

/// The socket of this end. Reading from it directly takes bytes the connection expects, and its
/// timed receives set the socket's receive timeout (`SO_RCVTIMEO`, 100 ms, for every process that
/// holds it), after which a blocking read of your own fails with `EAGAIN`.
impl<T> AsFd for Connection<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl<T> AsRawFd for Connection<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl<T> Serialize for Connection<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        // Outside a process start or a message, this fails with the handles' common message.
        let index = export_fd(self.socket.as_fd()).map_err(S::Error::custom)?;
        // The bytes received and not yet returned (part of a message, or messages read ahead) live
        // in this process only; the copy would start in the middle of the stream.
        if self.receiving.holds_data() {
            return Err(S::Error::custom(
                "a connection that holds received data not yet returned cannot be passed to another process",
            ));
        }
        (index, self.readable, self.writable).serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Connection<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let (index, readable, writable) = <(u32, bool, bool)>::deserialize(deserializer)?;
        let socket = import_fd(index).map_err(D::Error::custom)?;
        Ok(Connection::from_parts(socket, readable, writable))
    }
}

/// A failed send: the peer gone, or another failure.
fn send_error(e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected => {
            Error::Disconnected
        }
        _ => Error::Os(e),
    }
}

/// The deadline `timeout` from now; `None` (no deadline) when that is too far to represent.
fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
