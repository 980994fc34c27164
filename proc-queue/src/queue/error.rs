//! Why a queue operation failed: one error type per operation, handing the value back.

use std::fmt;

/// Why a `put` failed; every variant hands the value back.
///
/// It converts into `multiproc::Error` (dropping the value) for `?`; take the value first with
/// [`into_inner`](Self::into_inner) to keep it, or keep the reason alone with
/// [`without_value`](Self::without_value).
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum PutError<T> {
    /// No room (`put_nowait`).
    #[error("the queue is full")]
    Full(T),
    /// No room within the timeout (`put_timeout`).
    #[error("the queue stayed full until the timeout")]
    Timeout(T),
    /// This process closed the queue.
    #[error("the queue is closed in this process")]
    Closed(T),
    /// The queue was shut down.
    #[error("the queue was shut down")]
    ShutDown(T),
    /// The serialized value is larger than the queue's maximum message size; nothing was written.
    #[error("a message of {size} bytes is larger than the queue's maximum of {max} bytes")]
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
    #[error("cannot serialize the value: {message}")]
    Serialize {
        /// The value.
        value: T,
        /// What the serializer said.
        message: String,
        /// The serializer's error.
        #[source]
        source: proc_core::codec::Error,
    },
    /// The system refused shared memory for a large message, or (an async put) a wait on the
    /// queue: no tokio runtime with I/O enabled, or its descriptor cannot be watched.
    #[error("cannot store the message: {error}")]
    Os {
        /// The value.
        value: T,
        /// The error.
        #[source]
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

    /// The same reason without the value (dropped here), as a plain error that is `Send`,
    /// `Sync` and `'static` whatever `T` is: for `Box<dyn Error>` or `multiproc::Error`.
    pub fn without_value(self) -> PutError<()> {
        match self {
            PutError::Full(_) => PutError::Full(()),
            PutError::Timeout(_) => PutError::Timeout(()),
            PutError::Closed(_) => PutError::Closed(()),
            PutError::ShutDown(_) => PutError::ShutDown(()),
            PutError::TooLarge { size, max, .. } => PutError::TooLarge { value: (), size, max },
            PutError::Serialize { message, source, .. } => PutError::Serialize { value: (), message, source },
            PutError::Os { error, .. } => PutError::Os { value: (), error },
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

/// Why a `get` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// Nothing to take (`get_nowait`).
    #[error("the queue is empty")]
    Empty,
    /// Nothing came within the timeout (`get_timeout`).
    #[error("the queue stayed empty until the timeout")]
    Timeout,
    /// This process closed the queue.
    #[error("the queue is closed in this process")]
    Closed,
    /// The queue was shut down and (unless immediately) drained.
    #[error("the queue was shut down")]
    ShutDown,
    /// A message was taken but does not deserialize as the queue's type (it is gone).
    #[error("a message does not deserialize: {message}")]
    Deserialize {
        /// What the deserializer said.
        message: String,
        /// The deserializer's error (none for a corrupt large-message record).
        #[source]
        source: Option<proc_core::codec::Error>,
    },
    /// A large message's segment could not be opened (it is gone).
    #[error("cannot read a large message: {0}")]
    Os(#[from] proc_core::Error),
}

impl GetError {
    /// A large message's record that does not make sense (it is gone).
    pub(crate) fn corrupt_record() -> Self {
        GetError::Deserialize { message: "a corrupt large-message record".into(), source: None }
    }

    /// Whether nothing was there (`Empty` or `Timeout`).
    pub fn is_empty(&self) -> bool {
        matches!(self, GetError::Empty | GetError::Timeout)
    }
}

/// Why `task_done` or `join` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// `task_done` called more times than items were put.
    #[error("task_done() called too many times")]
    TooManyTaskDone,
    /// `join_timeout` ran out with tasks unfinished.
    #[error("tasks were still unfinished at the timeout")]
    Timeout,
}
