//! The error type of connections and `wait`.

use std::io;

/// A specialized `Result` for proc-queue.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong sending, receiving or waiting.
///
/// Each operation documents which variants it returns. After any of them the connection is still in
/// step with its peer: a message is either taken whole or left whole, except where the peer closed
/// in the middle of one ([`Truncated`](Error::Truncated)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The other end is closed: every copy of it, in every process, was dropped (or the process
    /// holding it ended). Receiving gets this once all messages sent before were received.
    #[error("the other end of the connection is closed")]
    Disconnected,
    /// The other end closed in the middle of a message; the part received is dropped and the
    /// connection is at its end.
    #[error("the other end of the connection closed in the middle of a message")]
    Truncated,
    /// No whole message arrived in time. Nothing was consumed that a later receive does not get:
    /// the part of a message that did arrive is kept for it.
    #[error("timed out waiting for a message")]
    Timeout,
    /// The buffer given to [`recv_bytes_into`](crate::Connection::recv_bytes_into) is shorter than
    /// the message, which is here in full (Python's `BufferTooShort`). The next message is intact.
    #[error("the buffer is too short for a message of {} bytes", .0.len())]
    BufferTooShort(Vec<u8>),
    /// This end of a one-way pipe only receives: it cannot send.
    #[error("cannot send on the receiving end of a one-way pipe")]
    ReadOnly,
    /// This end of a one-way pipe only sends: it cannot receive.
    #[error("cannot receive on the sending end of a one-way pipe")]
    WriteOnly,
    /// The value could not be serialized (including more than 253 handles in one message, or a
    /// handle that could not be duplicated); nothing was sent.
    #[error("cannot send the message: {0}")]
    Serialize(#[source] proc_core::Error),
    /// The message could not be deserialized as the connection's type (it was consumed, and the
    /// handles it carried are closed).
    #[error("cannot read the message as the connection's type: {0}")]
    Deserialize(#[source] proc_core::Error),
    /// The message (of this many bytes) is larger than this process can hold; it was read and
    /// dropped, and the next message is intact.
    #[error("a message of {0} bytes is too large for this process")]
    TooLarge(u64),
    /// An operating-system call failed (the cause is its [`source`](std::error::Error::source)).
    #[error("connection failed: {0}")]
    Os(#[from] io::Error),
}

impl Error {
    /// Whether the other end is gone ([`Disconnected`](Error::Disconnected) or
    /// [`Truncated`](Error::Truncated)): nothing more will ever arrive.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = proc_queue::pipe::<u8>()?;
    /// drop(a);
    /// assert!(b.recv().unwrap_err().is_disconnected());
    /// # Ok::<(), proc_queue::Error>(())
    /// ```
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Error::Disconnected | Error::Truncated)
    }

    /// Whether a receive or wait ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout)
    }
}
