//! The error type of the pool.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A specialized `Result` for proc-pool.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with a pool or one of its tasks.
///
/// A task's error concerns that task only: the pool goes on with the others. Each method documents
/// which variants it returns.
///
/// A variant caused by another error keeps it as its [`source`](std::error::Error::source): an
/// [`Os`](Error::Os) error leads to proc-core's error and from there to the operating system's
/// [`io::Error`](std::io::Error). Causes are shared ([`Cause`]) so that the error stays `Clone`: one
/// failure of the pool fails every task waiting on it. proc-core's errors convert into
/// [`Os`](Error::Os).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The task panicked in its worker (Python: the task raised). The worker goes on.
    #[error("the task panicked{}: {message}", at(location.as_deref()))]
    Panicked {
        /// The panic message.
        message: String,
        /// Where it panicked (`file:line:column`), when known.
        location: Option<String>,
    },
    /// The worker running the task ended before finishing it: killed by a signal (the OOM killer's
    /// SIGKILL, an abort, a segmentation fault) or by `exit()`. The worker was replaced.
    #[error("the worker (pid {pid}) running the task {}", lost(*signal, *exit_code))]
    WorkerLost {
        /// The worker's process id.
        pid: u32,
        /// The signal that killed it, if one did.
        signal: Option<i32>,
        /// Its exit code, if it exited.
        exit_code: Option<i32>,
    },
    /// The task ran longer than the pool's per-task timeout: its worker was killed and replaced.
    #[error("the task ran longer than {0:?}; its worker was killed")]
    TaskTimeout(Duration),
    /// The result was not ready within the time given to `get_timeout` or `next_timeout`
    /// (Python's `TimeoutError`). The task goes on; ask again later.
    #[error("the result is not ready yet (timed out)")]
    Timeout,
    /// The task's arguments could not be serialized (nothing was submitted) or deserialized in the
    /// worker.
    #[error("the task's arguments: {message}")]
    Arguments {
        /// What went wrong, with the serializer's message.
        message: String,
        /// The serializer's error, when it failed in this process (a failure in the worker
        /// arrives as its message only).
        #[source]
        source: Option<Cause>,
    },
    /// The task's return value could not be serialized in the worker or deserialized here.
    #[error("the task's return value: {message}")]
    Return {
        /// What went wrong, with the serializer's message.
        message: String,
        /// The deserializer's error, when it failed in this process (a failure in the worker
        /// arrives as its message only).
        #[source]
        source: Option<Cause>,
    },
    /// The input iterator of `try_imap` failed; the results before it were delivered.
    #[error("the input failed: {0}")]
    Input(String),
    /// The pool's initializer panicked in a new worker, so the pool cannot run tasks.
    #[error("the pool's initializer failed: {0}")]
    Initializer(String),
    /// The pool was terminated before the task finished.
    #[error("the pool was terminated before the task finished")]
    Terminated,
    /// The pool is closed (or terminated) and takes no new tasks (Python's `ValueError: Pool not
    /// running`).
    #[error("the pool is not running (closed or terminated)")]
    Closed,
    /// `join` was called on a pool that is still running: call `close` or `terminate` first.
    #[error("the pool is still running: call close() or terminate() before join()")]
    StillRunning,
    /// `join` was called by a thread that holds an `imap` whose input is not exhausted: that
    /// `imap` submits as it is iterated, so the pool could never finish. Iterate it to the end,
    /// or drop it, first.
    #[error("this thread holds an imap whose input is not exhausted: iterate it to the end or drop it before join()")]
    IMapPending,
    /// The result was already taken by an earlier `get_timeout`.
    #[error("the result was already taken")]
    Taken,
    /// An invalid setting (zero processes, a `maxtasksperchild` of zero, a chunk size of zero).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The task failed on another host of a cluster pool (proc-mpi): `error` is what happened
    /// there (a panic, a lost worker, a timeout, ...), as this enum says it.
    #[error("on {host} (rank {rank}): {error}")]
    Remote {
        /// The host's name (its MPI processor name).
        host: String,
        /// The node agent's MPI rank.
        rank: u32,
        /// The error on that host.
        error: Box<Error>,
    },
    /// The node agent of a cluster pool (proc-mpi) that held the task was lost: its host or its
    /// link failed. Only MPI libraries that let a job outlive a rank report this; MPICH ends the
    /// whole job instead.
    #[error("the node agent on {host} (rank {rank}) was lost with the task")]
    AgentLost {
        /// The host's name.
        host: String,
        /// The node agent's MPI rank.
        rank: u32,
    },
    /// Starting a worker or a thread, or creating a queue, failed; or a task or its result was
    /// lost in transit.
    #[error("{message}")]
    Os {
        /// What failed, and why.
        message: String,
        /// The cause: proc-core's error, or the operating system's.
        #[source]
        source: Option<Cause>,
    },
}

impl Error {
    /// Whether the task's worker was lost ([`WorkerLost`](Error::WorkerLost)), on this host or
    /// another.
    pub fn is_worker_lost(&self) -> bool {
        matches!(self.on_host(), Error::WorkerLost { .. })
    }

    /// Whether the task panicked ([`Panicked`](Error::Panicked)), on this host or another.
    pub fn is_panic(&self) -> bool {
        matches!(self.on_host(), Error::Panicked { .. })
    }

    /// Whether the task ran past the pool's task timeout ([`TaskTimeout`](Error::TaskTimeout)),
    /// on this host or another.
    pub fn is_task_timeout(&self) -> bool {
        matches!(self.on_host(), Error::TaskTimeout(_))
    }

    /// The error as it happened on its host: the `error` of a [`Remote`](Error::Remote) one,
    /// else `self`.
    pub fn on_host(&self) -> &Error {
        match self {
            Error::Remote { error, .. } => error.on_host(),
            e => e,
        }
    }

    /// The host a cluster pool's task failed on ([`Remote`](Error::Remote) and
    /// [`AgentLost`](Error::AgentLost)); `None` for a local pool's errors.
    pub fn host(&self) -> Option<&str> {
        match self {
            Error::Remote { host, .. } | Error::AgentLost { host, .. } => Some(host),
            _ => None,
        }
    }

    /// Whether a wait for the result timed out ([`Timeout`](Error::Timeout)); not the task's
    /// own timeout, which is [`TaskTimeout`](Error::TaskTimeout).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout)
    }

    /// An [`Os`](Error::Os) error whose message is its cause's.
    pub(crate) fn os(e: impl StdError + Send + Sync + 'static) -> Self {
        Error::Os { message: e.to_string(), source: Some(Cause::new(e)) }
    }

    /// An [`Os`](Error::Os) error: `context: cause`.
    pub(crate) fn os_in(context: &str, e: impl StdError + Send + Sync + 'static) -> Self {
        Error::Os { message: format!("{context}: {e}"), source: Some(Cause::new(e)) }
    }

    /// An [`Arguments`](Error::Arguments) error with no cause in this process.
    pub(crate) fn arguments(message: impl Into<String>) -> Self {
        Error::Arguments { message: message.into(), source: None }
    }

    /// A [`Return`](Error::Return) error with no cause in this process.
    pub(crate) fn return_value(message: impl Into<String>) -> Self {
        Error::Return { message: message.into(), source: None }
    }
}

/// The cause of a pool [`Error`]: another error, shared so that the pool's error stays `Clone`.
///
/// It dereferences to that error, which is also what [`source`](std::error::Error::source)
/// returns: downcast it to find, say, the `io::Error` under an [`Os`](Error::Os) error.
#[derive(Clone)]
pub struct Cause(Arc<dyn StdError + Send + Sync>);

impl Cause {
    pub(crate) fn new(e: impl StdError + Send + Sync + 'static) -> Self {
        Cause(Arc::new(e))
    }
}

impl std::ops::Deref for Cause {
    type Target = dyn StdError + Send + Sync;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<proc_core::Error> for Error {
    /// proc-core's error (a queue, a segment or a process that could not be made) as
    /// [`Os`](Error::Os), keeping it as the source.
    fn from(e: proc_core::Error) -> Self {
        Error::os(e)
    }
}

/// `" at file:line:column"` for a panic whose place is known, or nothing.
fn at(location: Option<&str>) -> String {
    location.map_or_else(String::new, |l| format!(" at {l}"))
}

/// How a lost worker ended: by a signal (named), with an exit code, or neither known.
fn lost(signal: Option<i32>, exit_code: Option<i32>) -> String {
    match (signal, exit_code) {
        (Some(sig), _) => {
            format!("was killed by signal {sig} ({})", proc_os::signal_name(sig).unwrap_or("a signal"))
        }
        (None, Some(code)) => format!("exited with code {code}"),
        (None, None) => "ended".to_owned(),
    }
}
