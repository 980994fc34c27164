//! The error type of the pool.

use std::fmt;
use std::time::Duration;

/// A specialized `Result` for proc-pool.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with a pool or one of its tasks.
///
/// A task's error concerns that task only: the pool goes on with the others. Each method documents
/// which variants it returns.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The task panicked in its worker (Python: the task raised). The worker goes on.
    Panicked {
        /// The panic message.
        message: String,
        /// Where it panicked (`file:line:column`), when known.
        location: Option<String>,
    },
    /// The worker running the task ended before finishing it: killed by a signal (the OOM killer's
    /// SIGKILL, an abort, a segmentation fault) or by `exit()`. The worker was replaced.
    WorkerLost {
        /// The worker's process id.
        pid: u32,
        /// The signal that killed it, if one did.
        signal: Option<i32>,
        /// Its exit code, if it exited.
        exit_code: Option<i32>,
    },
    /// The task ran longer than the pool's per-task timeout: its worker was killed and replaced.
    TaskTimeout(Duration),
    /// The result was not ready within the time given to `get_timeout` or `next_timeout`
    /// (Python's `TimeoutError`). The task goes on; ask again later.
    Timeout,
    /// The task's arguments could not be serialized (nothing was submitted) or deserialized in the
    /// worker.
    Arguments(String),
    /// The task's return value could not be serialized in the worker or deserialized here.
    Return(String),
    /// The input iterator of `try_imap` failed; the results before it were delivered.
    Input(String),
    /// The pool's initializer panicked in a new worker, so the pool cannot run tasks.
    Initializer(String),
    /// The pool was terminated before the task finished.
    Terminated,
    /// The pool is closed (or terminated) and takes no new tasks (Python's `ValueError: Pool not
    /// running`).
    Closed,
    /// `join` was called on a pool that is still running: call `close` or `terminate` first.
    StillRunning,
    /// `join` was called by a thread that holds an `imap` whose input is not exhausted: that
    /// `imap` submits as it is iterated, so the pool could never finish. Iterate it to the end,
    /// or drop it, first.
    IMapPending,
    /// The result was already taken by an earlier `get_timeout`.
    Taken,
    /// An invalid setting (zero processes, a `maxtasksperchild` of zero, a chunk size of zero).
    InvalidArgument(String),
    /// Starting a worker or creating a queue failed.
    Os(String),
}

impl Error {
    /// Whether the task's worker was lost ([`WorkerLost`](Error::WorkerLost)).
    pub fn is_worker_lost(&self) -> bool {
        matches!(self, Error::WorkerLost { .. })
    }

    /// Whether the task panicked ([`Panicked`](Error::Panicked)).
    pub fn is_panic(&self) -> bool {
        matches!(self, Error::Panicked { .. })
    }

    /// Whether a wait for the result timed out ([`Timeout`](Error::Timeout)); not the task's
    /// own timeout, which is [`TaskTimeout`](Error::TaskTimeout).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout)
    }

    pub(crate) fn os(e: impl fmt::Display) -> Self {
        Error::Os(e.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Panicked { message, location: Some(at) } => {
                write!(f, "the task panicked at {at}: {message}")
            }
            Error::Panicked { message, location: None } => write!(f, "the task panicked: {message}"),
            Error::WorkerLost { pid, signal: Some(sig), .. } => {
                write!(
                    f,
                    "the worker (pid {pid}) running the task was killed by signal {sig} ({})",
                    signal_name(*sig)
                )
            }
            Error::WorkerLost { pid, exit_code: Some(code), .. } => {
                write!(f, "the worker (pid {pid}) running the task exited with code {code}")
            }
            Error::WorkerLost { pid, .. } => write!(f, "the worker (pid {pid}) running the task ended"),
            Error::TaskTimeout(t) => write!(f, "the task ran longer than {t:?}; its worker was killed"),
            Error::Timeout => f.write_str("the result is not ready yet (timed out)"),
            Error::Arguments(m) => write!(f, "the task's arguments: {m}"),
            Error::Return(m) => write!(f, "the task's return value: {m}"),
            Error::Input(m) => write!(f, "the input failed: {m}"),
            Error::Initializer(m) => write!(f, "the pool's initializer failed: {m}"),
            Error::Terminated => f.write_str("the pool was terminated before the task finished"),
            Error::Closed => f.write_str("the pool is not running (closed or terminated)"),
            Error::StillRunning => {
                f.write_str("the pool is still running: call close() or terminate() before join()")
            }
            Error::IMapPending => f.write_str(
                "this thread holds an imap whose input is not exhausted: iterate it to the end or drop it before join()",
            ),
            Error::Taken => f.write_str("the result was already taken"),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Os(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

/// The conventional name of signal `n`.
fn signal_name(n: i32) -> &'static str {
    match n {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGINT => "SIGINT",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        _ => "a signal",
    }
}
