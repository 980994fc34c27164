//! The one error type of proc-core.

use std::fmt;
use std::io;

/// A specialized `Result` for proc-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a handle refuses to serialize outside a transfer: the message of
/// [`ErrorKind::HandleOutsideStart`] and of the serde error a handle returns (kept here, not in
/// `handle`, so that this module needs nothing but the codec).
pub(crate) const HANDLE_OUTSIDE_START: &str = "a handle can only be sent to a child as part of its start \
                                               arguments (or through a multiproc Connection), not \
                                               serialized anywhere else";

/// Everything that can go wrong starting, watching or talking to a process, or with shared memory.
///
/// The type is opaque; ask it what happened with the predicates (`is_panic`, `exit_code`, ...).
/// Its message names the cause: a signal by name, an exit code, an errno. The underlying I/O or
/// serialization error, if any, is its [`source`](std::error::Error::source).
#[derive(thiserror::Error)]
#[error(transparent)]
pub struct Error {
    kind: ErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ErrorKind {
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io { context: &'static str, source: io::Error },
    /// A value could not be serialized.
    #[error("cannot serialize {what}")]
    Serialize { what: &'static str, source: crate::codec::Error },
    /// A value could not be deserialized.
    #[error("cannot deserialize {what}")]
    Deserialize { what: &'static str, source: crate::codec::Error },
    /// The child's target panicked.
    #[error("child process panicked{}: {message}", at(location.as_deref()))]
    Panicked { message: String, location: Option<String> },
    /// The child ended with this exit code (or minus a signal number) before returning a value.
    #[error("{}", exited(*exitcode))]
    Exited { exitcode: i32 },
    /// The child could not run its target (bad bootstrap, binary mismatch, ...).
    #[error("child process could not run its target: {0}")]
    ChildFailed(String),
    /// The value was already taken by an earlier `join`.
    #[error("the return value was already taken by an earlier join")]
    ResultTaken,
    /// The process is still running.
    #[error("the process is still running")]
    StillRunning,
    /// A daemon process tried to start a child.
    #[error("daemonic processes are not allowed to have children")]
    DaemonChild,
    /// A capturing closure was given to a start method that re-executes or forks a server.
    #[error(
        "a capturing closure cannot be started with the {method} start method; \
         pass its data as arguments or use the fork start method"
    )]
    CapturingTarget { method: &'static str },
    /// The child entry dispatcher is not linked into this binary.
    #[error(
        "the multiproc child dispatcher is not linked into this binary; \
         call multiproc::init() at the top of main"
    )]
    DispatcherMissing,
    /// This process was started as a child but reached `main`.
    #[error(
        "this process was started as a multiproc child but reached main; \
         call multiproc::init() at the top of main"
    )]
    RerunMain,
    /// `set_start_method` was called with a different method than the one already set.
    #[error("the start method is already {current}, cannot set it to {requested}")]
    StartMethodSet { current: &'static str, requested: &'static str },
    /// A `Process` was used from a process other than the one that started it.
    #[error("a process can only be watched by the process that started it")]
    ForeignProcess,
    /// A handle was serialized outside a process start.
    #[error("{}", HANDLE_OUTSIDE_START)]
    HandleOutsideStart,
    /// More descriptors than fit in one message.
    #[error("{0} handles do not fit in one message (at most 253)")]
    TooManyHandles(usize),
    /// A shared-memory name is not valid.
    #[error("invalid shared-memory name: {0}")]
    InvalidName(String),
    /// A named shared-memory segment is owned by another user or writable by others.
    #[error("{}", untrusted(name, *owner, *mode, *euid))]
    UntrustedSegment { name: String, owner: u32, mode: u32, euid: u32 },
    /// A shared-memory segment of size zero was requested.
    #[error("a shared-memory segment cannot have size zero")]
    ZeroSize,
    /// An access beyond the end of a shared-memory segment.
    #[error("access of {len} bytes at offset {offset} is beyond the segment's {size} bytes")]
    OutOfBounds { offset: usize, len: usize, size: usize },
    /// The fork server died while starting a child, twice in a row.
    #[error("index {index} is out of range for a list of {len} items")]
    IndexOutOfRange { index: usize, len: usize },

    #[error("item {index} has {capacity} bytes of storage, too few for {len} bytes")]
    ItemTooLarge { index: usize, len: usize, capacity: usize },

    #[error("shared memory {name:?} does not hold a valid shareable list: {why}")]
    NotShareableList { name: String, why: String },

    #[error("fork server failed: {0}")]
    ForkServer(String),
    /// An argument out of range, reported by a crate built on proc-core.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Error { kind }
    }

    pub(crate) fn io(context: &'static str, source: io::Error) -> Self {
        Error::new(ErrorKind::Io { context, source })
    }

    /// An operating-system call that failed (`context` says which), for the crates built on
    /// proc-core that report their errors as this type. [`io_kind`](Self::io_kind) gives `source`'s
    /// kind.
    pub fn os(context: &'static str, source: io::Error) -> Self {
        Error::io(context, source)
    }

    /// An argument out of range (`what` says which and why), for the crates built on proc-core
    /// that report their errors as this type. [`is_invalid_input`](Self::is_invalid_input) is true.
    pub fn invalid_argument(what: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument(what.into()))
    }

    /// The message followed by its cause (`cannot serialize value: <the value's own message>`),
    /// for a report that crosses into another process as text.
    pub(crate) fn with_cause(&self) -> String {
        match &self.kind {
            ErrorKind::Serialize { source, .. } | ErrorKind::Deserialize { source, .. } => {
                format!("{self}: {source}")
            }
            _ => self.to_string(),
        }
    }

    pub(crate) fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    pub(crate) fn into_kind(self) -> ErrorKind {
        self.kind
    }

    /// Whether the child's target panicked; see [`panic_message`](Self::panic_message).
    pub fn is_panic(&self) -> bool {
        matches!(self.kind, ErrorKind::Panicked { .. })
    }

    /// The panic message of the child's target, if it panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Panicked { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Where the child's target panicked (`file:line:column`), if it did and the place is known.
    pub fn panic_location(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Panicked { location, .. } => location.as_deref(),
            _ => None,
        }
    }

    /// Python's `exitcode` of a child that ended without returning a value: `n` for `exit(n)`,
    /// `-N` for signal `N`. A panic is exit code 1.
    pub fn exit_code(&self) -> Option<i32> {
        match self.kind {
            ErrorKind::Exited { exitcode } => Some(exitcode),
            ErrorKind::Panicked { .. } => Some(1),
            _ => None,
        }
    }

    /// The signal that killed the child, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.kind {
            ErrorKind::Exited { exitcode } if exitcode < 0 => Some(-exitcode),
            _ => None,
        }
    }

    /// A value that could not be deserialized, with the value's own message, for the crates built
    /// on proc-core that decode some values their own way (proc-queue's connections hand a large
    /// byte string over without copying it). [`is_serialization`](Self::is_serialization) is true.
    pub fn deserialization(message: impl fmt::Display) -> Self {
        let source = crate::codec::Error::from_message(message.to_string());
        Error::new(ErrorKind::Deserialize { what: "value", source })
    }

    /// Whether a value failed to serialize or deserialize.
    pub fn is_serialization(&self) -> bool {
        matches!(self.kind, ErrorKind::Serialize { .. } | ErrorKind::Deserialize { .. })
    }

    /// Whether the operation needs a finished process and this one is still running.
    pub fn is_still_running(&self) -> bool {
        matches!(self.kind, ErrorKind::StillRunning)
    }

    /// Whether a `join` found the return value already taken by an earlier one (a value that
    /// carries handles is handed out once).
    pub fn is_result_taken(&self) -> bool {
        matches!(self.kind, ErrorKind::ResultTaken)
    }

    /// Whether the misuse was a capturing closure under a start method other than fork.
    pub fn is_capturing_target(&self) -> bool {
        matches!(self.kind, ErrorKind::CapturingTarget { .. })
    }

    /// Whether a daemon process tried to start a child.
    pub fn is_daemon_child(&self) -> bool {
        matches!(self.kind, ErrorKind::DaemonChild)
    }

    /// Whether the child entry dispatcher is missing from this binary (call [`init`](crate::init)).
    pub fn is_dispatcher_missing(&self) -> bool {
        matches!(self.kind, ErrorKind::DispatcherMissing | ErrorKind::RerunMain)
    }

    /// Whether a handle was serialized outside a process start.
    pub fn is_handle_outside_start(&self) -> bool {
        matches!(self.kind, ErrorKind::HandleOutsideStart)
    }

    /// Whether a named object (a shared-memory segment) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.io_kind() == Some(io::ErrorKind::NotFound)
    }

    /// Whether a named object (a shared-memory segment) already exists.
    pub fn is_already_exists(&self) -> bool {
        self.io_kind() == Some(io::ErrorKind::AlreadyExists)
    }

    /// Whether the input was invalid: a bad shared-memory name, size zero, an access out of bounds.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::InvalidName(_)
                | ErrorKind::ZeroSize
                | ErrorKind::OutOfBounds { .. }
                | ErrorKind::InvalidArgument(_)
                | ErrorKind::IndexOutOfRange { .. }
                | ErrorKind::ItemTooLarge { .. }
        ) || self.io_kind() == Some(io::ErrorKind::InvalidInput)
    }

    /// Whether an index was not below a [`ShareableList`](crate::shm::ShareableList)'s length
    /// (Python's `IndexError`).
    pub fn is_index_out_of_range(&self) -> bool {
        matches!(self.kind, ErrorKind::IndexOutOfRange { .. })
    }

    /// Whether an item needs more storage than its place in a
    /// [`ShareableList`](crate::shm::ShareableList) has (Python's `ValueError: exceeds available
    /// storage`).
    pub fn is_item_too_large(&self) -> bool {
        matches!(self.kind, ErrorKind::ItemTooLarge { .. })
    }

    /// Whether a segment opened as a [`ShareableList`](crate::shm::ShareableList) does not hold
    /// one, or holds an item that is not valid (garbage written into it).
    pub fn is_not_shareable_list(&self) -> bool {
        matches!(self.kind, ErrorKind::NotShareableList { .. })
    }

    /// Whether [`SharedMemory::open`](crate::shm::SharedMemory::open) refused a segment that
    /// another user owns or that other users may write (group- or world-writable mode): someone
    /// else could have planted it, or could change it under this process.
    pub fn is_untrusted_segment(&self) -> bool {
        matches!(self.kind, ErrorKind::UntrustedSegment { .. })
    }

    /// The I/O error kind, if an operating-system call failed.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match &self.kind {
            ErrorKind::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// `" at file:line:column"` for a panic whose place is known, or nothing.
fn at(location: Option<&str>) -> String {
    location.map_or_else(String::new, |l| format!(" at {l}"))
}

/// The message of a child that ended before returning: by a signal or with an exit code.
fn exited(exitcode: i32) -> String {
    if exitcode < 0 {
        format!("child process was killed by {} before returning", signal_name(-exitcode))
    } else {
        format!("child process exited with code {exitcode} before returning")
    }
}

/// The message of a refused segment: owned by another user, or writable by others.
fn untrusted(name: &str, owner: u32, mode: u32, euid: u32) -> String {
    if owner == euid {
        format!("refusing to open shared memory {name}: its mode {mode:04o} lets other users write it")
    } else {
        format!(
            "refusing to open shared memory {name}: it is owned by uid {owner}, not by this \
             process' uid {euid} (mode {mode:04o})"
        )
    }
}

/// The name of signal `n` (`SIGTERM`), or its number.
pub(crate) fn signal_name(n: i32) -> String {
    proc_os::signal_name(n).map_or_else(|| format!("signal {n}"), str::to_owned)
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error").field("kind", &self.kind).field("message", &self.to_string()).finish()
    }
}
