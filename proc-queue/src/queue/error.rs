//! Why a queue operation failed: one error type per operation, handing the value back.

use std::fmt;

/// Why a `put` failed; every variant hands the value back.
#[non_exhaustive]
pub enum PutError<T> {
    /// No room (`put_nowait`).
    Full(T),
    /// No room within the timeout (`put_timeout`).
    Timeout(T),
    /// This process closed the queue.
    Closed(T),
    /// The queue was shut down.
    ShutDown(T),
    /// The serialized value is larger than the queue's maximum message size; nothing was written.
    TooLarge {
        /// The value.
        value: T,
        /// Its serialized size.
        size: u64,
        /// The queue's maximum.
        max: u64,
    },
    /// The value cannot be serialized (or holds a handle, which only crosses through a
    /// `Connection` or as a start argument); nothing was written.
    Serialize {
        /// The value.
        value: T,
        /// What the serializer said.
        message: String,
    },
    /// The system refused shared memory for a large message.
    Os {
        /// The value.
        value: T,
        /// The error.
        error: proc_core::Error,
    },
}

impl<T> PutError<T> {
    /// The value that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(v) | PutError::Timeout(v) | PutError::Closed(v) | PutError::ShutDown(v) => v,
            PutError::TooLarge { value, .. }
            | PutError::Serialize { value, .. }
            | PutError::Os { value, .. } => value,
        }
    }

    /// Whether the queue had no room (`Full` or `Timeout`).
    pub fn is_full(&self) -> bool {
        matches!(self, PutError::Full(_) | PutError::Timeout(_))
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::Timeout(_) => f.write_str("Timeout(..)"),
            PutError::Closed(_) => f.write_str("Closed(..)"),
            PutError::ShutDown(_) => f.write_str("ShutDown(..)"),
            PutError::TooLarge { size, max, .. } => {
                f.debug_struct("TooLarge").field("size", size).field("max", max).finish_non_exhaustive()
            }
            PutError::Serialize { message, .. } => {
                f.debug_struct("Serialize").field("message", message).finish_non_exhaustive()
            }
            PutError::Os { error, .. } => f.debug_struct("Os").field("error", error).finish_non_exhaustive(),
        }
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("the queue is full"),
            PutError::Timeout(_) => f.write_str("the queue stayed full until the timeout"),
            PutError::Closed(_) => f.write_str("the queue is closed in this process"),
            PutError::ShutDown(_) => f.write_str("the queue was shut down"),
            PutError::TooLarge { size, max, .. } => {
                write!(f, "a message of {size} bytes is larger than the queue's maximum of {max} bytes")
            }
            PutError::Serialize { message, .. } => write!(f, "cannot serialize the value: {message}"),
            PutError::Os { error, .. } => write!(f, "cannot store a large message: {error}"),
        }
    }
}

impl<T> std::error::Error for PutError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PutError::Os { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Why a `get` failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum GetError {
    /// Nothing to take (`get_nowait`).
    Empty,
    /// Nothing came within the timeout (`get_timeout`).
    Timeout,
    /// This process closed the queue.
    Closed,
    /// The queue was shut down and (unless immediately) drained.
    ShutDown,
    /// A message was taken but does not deserialize as the queue's type (it is gone).
    Deserialize(String),
    /// A large message's segment could not be opened (it is gone).
    Os(proc_core::Error),
}

impl GetError {
    /// Whether nothing was there (`Empty` or `Timeout`).
    pub fn is_empty(&self) -> bool {
        matches!(self, GetError::Empty | GetError::Timeout)
    }
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Empty => f.write_str("the queue is empty"),
            GetError::Timeout => f.write_str("the queue stayed empty until the timeout"),
            GetError::Closed => f.write_str("the queue is closed in this process"),
            GetError::ShutDown => f.write_str("the queue was shut down"),
            GetError::Deserialize(m) => write!(f, "a message does not deserialize: {m}"),
            GetError::Os(e) => write!(f, "cannot read a large message: {e}"),
        }
    }
}

impl std::error::Error for GetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GetError::Os(e) => Some(e),
            _ => None,
        }
    }
}

/// Why `task_done` or `join` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinError {
    /// `task_done` called more times than items were put.
    TooManyTaskDone,
    /// `join_timeout` ran out with tasks unfinished.
    Timeout,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JoinError::TooManyTaskDone => "task_done() called too many times",
            JoinError::Timeout => "tasks were still unfinished at the timeout",
        })
    }
}
