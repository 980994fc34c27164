//! The error type of the manager and its proxies.

use std::error::Error as StdError;
use std::fmt;
use std::io;

/// A specialized `Result` for proc-manager.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong talking to a manager.
///
/// A variant caused by another error keeps it as its [`source`](std::error::Error::source):
/// [`Connection`](Error::Connection) the operating system's [`io::Error`],
/// [`Serialize`](Error::Serialize) the codec's error, [`Start`](Error::Start) what failed while
/// starting (an `io::Error`, or proc-core's error, which converts into `Start`). No message
/// carries the authkey.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server refused the authentication key, or the peer is not a manager (or a client
    /// with the key).
    #[error("authentication failed: {0}")]
    Authentication(String),
    /// The peer speaks another version of the manager protocol (it runs another multiproc
    /// version): refused in the handshake, before any message could be misread. `ours` is this
    /// side's version, `theirs` the peer's (0: a multiproc from before the protocol had versions).
    #[error(
        "the manager protocol differs: this side speaks version {ours}, the peer version {theirs} \
         (the two run different multiproc versions)"
    )]
    ProtocolVersion {
        /// This side's protocol version.
        ours: u16,
        /// The peer's protocol version.
        theirs: u16,
    },
    /// The connection to the server failed or broke: the server is gone, or unreachable.
    #[error("connection to the manager failed: {0}")]
    Connection(#[from] io::Error),
    /// The server answered with something this client cannot read, or closed mid-answer.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A value could not be serialized (nothing was sent) or deserialized as the proxy's type.
    #[error("serialization failed: {0}")]
    Serialize(#[from] proc_core::codec::Error),
    /// The key is not in the dict, the name not in the namespace (Python's `KeyError`/`AttributeError`).
    #[error("no such key")]
    KeyNotFound,
    /// The index is out of range (Python's `IndexError`).
    #[error("index out of range")]
    IndexOutOfRange,
    /// The value is not in the list (Python's `ValueError` of `remove` and `index`).
    #[error("the value is not in the list")]
    ValueNotFound,
    /// The queue is empty (`get_nowait`, or `get_timeout` ran out of time).
    #[error("the queue is empty")]
    Empty,
    /// The queue is full (`put_nowait`, or `put_timeout` ran out of time): what a queue proxy's
    /// [`PutError::Full`] becomes when converted, the value dropped.
    #[error("the queue is full")]
    Full,
    /// A blocking call ran out of time.
    #[error("timed out")]
    Timeout,
    /// `release` of a lock not held (by this owner, for an `RLock`), or of a bounded semaphore
    /// beyond its initial value.
    #[error("released too many times (or by a non-owner)")]
    NotHeld,
    /// The barrier is broken (a party timed out, or it was aborted or reset).
    #[error("the barrier is broken")]
    BrokenBarrier,
    /// The object no longer exists on the server (every proxy of it was dropped), or the name
    /// is unknown.
    #[error("no such object on the manager")]
    NoSuchObject,
    /// The server does not have this method for this object (a registered type's undeclared
    /// method), or the proxy's type does not match the object.
    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),
    /// A registered type's method failed on the server.
    #[error("the method failed on the manager: {0}")]
    Remote(String),
    /// The server was asked to shut down, or is shutting down.
    #[error("the manager is shutting down")]
    ShutDown,
    /// A message larger than the frame limit.
    #[error("a message of {0} bytes is larger than the limit")]
    TooLarge(u64),
    /// Starting the server failed, or an invalid address or argument.
    #[error("{message}")]
    Start {
        /// What failed, and why.
        message: String,
        /// The cause, if another error caused it: the operating system's, or proc-core's.
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
    },
    /// A shared-memory segment could not be made ([`SharedMemoryManager`](crate::SharedMemoryManager)):
    /// proc-core's error says why.
    #[error("shared memory: {0}")]
    SharedMemory(#[source] proc_core::Error),
    /// The authkey has fewer than [`MIN_AUTHKEY_LEN`](crate::MIN_AUTHKEY_LEN) bytes (`len`).
    /// Python accepts any key; a manager reachable over TCP cannot rely on a short one.
    #[error("an authkey of {len} bytes is too short: at least {} are required", crate::MIN_AUTHKEY_LEN)]
    AuthkeyTooShort {
        /// The length of the key that was refused.
        len: usize,
    },
}

impl Error {
    pub(crate) fn protocol(what: impl fmt::Display) -> Self {
        Error::Protocol(what.to_string())
    }

    /// A [`Start`](Error::Start) error with no cause.
    pub(crate) fn start(message: impl Into<String>) -> Self {
        Error::Start { message: message.into(), source: None }
    }

    /// A [`Start`](Error::Start) error: `context: cause`.
    pub(crate) fn start_in(context: impl fmt::Display, e: impl StdError + Send + Sync + 'static) -> Self {
        Error::Start { message: format!("{context}: {e}"), source: Some(Box::new(e)) }
    }

    /// Whether the server could not be reached or went away.
    pub fn is_connection(&self) -> bool {
        matches!(self, Error::Connection(_) | Error::ShutDown)
    }
}

impl From<proc_core::Error> for Error {
    /// proc-core's error (the server process could not start) as [`Start`](Error::Start),
    /// keeping it as the source.
    fn from(e: proc_core::Error) -> Self {
        Error::Start { message: e.to_string(), source: Some(Box::new(e)) }
    }
}

/// Why a [`Queue`](crate::Queue) proxy's `put` failed; like proc-queue's `PutError`, it hands
/// the value back.
///
/// It converts into [`Error`] (dropping the value, [`Full`](PutError::Full) becoming
/// [`Error::Full`]), so `?` works in a function that returns [`Result`].
///
/// # Examples
///
/// ```
/// let manager = proc_manager::Manager::start()?;
/// let q = manager.queue::<u32>(1)?;
/// q.put(1)?;
/// let full = q.put_nowait(2).unwrap_err();
/// assert!(full.is_full());
/// assert_eq!(full.into_inner(), 2);
/// # Ok::<(), proc_manager::Error>(())
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum PutError<T> {
    /// The queue stayed full: `put_nowait` found no room, or `put_timeout` ran out of time.
    #[error("the queue is full")]
    Full(T),
    /// Any other failure: [`Error::Connection`], [`Error::Serialize`], [`Error::ShutDown`], ...
    /// The value was not put, except where the connection broke after the request went out:
    /// then the server may have put it.
    #[error("cannot put the value: {error}")]
    Failed {
        /// The value.
        value: T,
        /// What went wrong.
        #[source]
        error: Error,
    },
}

impl<T> PutError<T> {
    /// The value that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(value) | PutError::Failed { value, .. } => value,
        }
    }

    /// Whether the queue had no room.
    pub fn is_full(&self) -> bool {
        matches!(self, PutError::Full(_))
    }

    /// The reason, without the value: [`Error::Full`] for [`Full`](PutError::Full).
    pub fn into_error(self) -> Error {
        match self {
            PutError::Full(_) => Error::Full,
            PutError::Failed { error, .. } => error,
        }
    }
}

impl<T> From<PutError<T>> for Error {
    /// The reason, dropping the value ([`PutError::into_error`]).
    fn from(e: PutError<T>) -> Self {
        e.into_error()
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::Failed { error, .. } => {
                f.debug_struct("Failed").field("error", error).finish_non_exhaustive()
            }
        }
    }
}
