//! The error type of the manager and its proxies.

use std::fmt;
use std::io;

/// A specialized `Result` for proc-manager.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong talking to a manager.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The server refused the authentication key, or the peer is not a manager (or a client
    /// with the key).
    Authentication(String),
    /// The connection to the server failed or broke: the server is gone, or unreachable.
    Connection(io::Error),
    /// The server answered with something this client cannot read, or closed mid-answer.
    Protocol(String),
    /// A value could not be serialized (nothing was sent) or deserialized as the proxy's type.
    Serialize(String),
    /// The key is not in the dict, the name not in the namespace (Python's `KeyError`/`AttributeError`).
    KeyNotFound,
    /// The index is out of range (Python's `IndexError`).
    IndexOutOfRange,
    /// The value is not in the list (Python's `ValueError` of `remove` and `index`).
    ValueNotFound,
    /// The queue is empty (`get_nowait`, or `get_timeout` ran out of time).
    Empty,
    /// The queue is full (`put_nowait`, or `put_timeout` ran out of time).
    Full,
    /// A blocking call ran out of time.
    Timeout,
    /// `release` of a lock not held (by this owner, for an `RLock`), or of a bounded semaphore
    /// beyond its initial value.
    NotHeld,
    /// The barrier is broken (a party timed out, or it was aborted or reset).
    BrokenBarrier,
    /// The object no longer exists on the server (every proxy of it was dropped), or the name
    /// is unknown.
    NoSuchObject,
    /// The server does not have this method for this object (a registered type's undeclared
    /// method), or the proxy's type does not match the object.
    MethodNotAllowed(String),
    /// A registered type's method failed on the server.
    Remote(String),
    /// The server was asked to shut down, or is shutting down.
    ShutDown,
    /// A message larger than the frame limit.
    TooLarge(u64),
    /// Starting the server failed, or an invalid address or argument.
    Start(String),
    /// The authkey has fewer than [`MIN_AUTHKEY_LEN`](crate::MIN_AUTHKEY_LEN) bytes (`len`).
    /// Python accepts any key; a manager reachable over TCP cannot rely on a short one.
    AuthkeyTooShort {
        /// The length of the key that was refused.
        len: usize,
    },
}

impl Error {
    pub(crate) fn protocol(what: impl fmt::Display) -> Self {
        Error::Protocol(what.to_string())
    }

    /// Whether the server could not be reached or went away.
    pub fn is_connection(&self) -> bool {
        matches!(self, Error::Connection(_) | Error::ShutDown)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Authentication(m) => write!(f, "authentication failed: {m}"),
            Error::Connection(e) => write!(f, "connection to the manager failed: {e}"),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
            Error::Serialize(m) => write!(f, "serialization failed: {m}"),
            Error::KeyNotFound => f.write_str("no such key"),
            Error::IndexOutOfRange => f.write_str("index out of range"),
            Error::ValueNotFound => f.write_str("the value is not in the list"),
            Error::Empty => f.write_str("the queue is empty"),
            Error::Full => f.write_str("the queue is full"),
            Error::Timeout => f.write_str("timed out"),
            Error::NotHeld => f.write_str("released too many times (or by a non-owner)"),
            Error::BrokenBarrier => f.write_str("the barrier is broken"),
            Error::NoSuchObject => f.write_str("no such object on the manager"),
            Error::MethodNotAllowed(m) => write!(f, "method not allowed: {m}"),
            Error::Remote(m) => write!(f, "the method failed on the manager: {m}"),
            Error::ShutDown => f.write_str("the manager is shutting down"),
            Error::TooLarge(n) => write!(f, "a message of {n} bytes is larger than the limit"),
            Error::Start(m) => write!(f, "{m}"),
            Error::AuthkeyTooShort { len } => write!(
                f,
                "an authkey of {len} bytes is too short: at least {} are required",
                crate::MIN_AUTHKEY_LEN
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connection(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Connection(e)
    }
}
