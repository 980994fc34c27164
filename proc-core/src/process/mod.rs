//! `Process`: a target function running in a child process, with a typed return value.
//!
//! Part of the process runtime's import circle, which stays on purpose: see `globals`.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::child::entry::{EntryFn, EntryPoint};
use crate::error::{Error, ErrorKind, Result};
use crate::handle::serialize_with_fds;
use crate::start::{self, method::StartMethod};
use crate::target::{trampoline, Target};

#[cfg(feature = "tokio")]
mod asyncio;
mod shared;

pub use shared::Sentinel;
pub(crate) use shared::{Pid, Shared, Watch};

/// Python's "subclass `Process` and override `run`": a serializable value whose `run` is the
/// target. Start it with [`Process::from_run`].
///
/// # Examples
///
/// ```
/// use proc_core::{Process, Run};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Square(u64);
///
/// impl Run for Square {
///     type Output = u64;
///     fn run(self) -> u64 {
///         self.0 * self.0
///     }
/// }
///
/// let p = Process::from_run(Square(12)).start().unwrap();
/// assert_eq!(p.join().unwrap(), 144);
/// ```
pub trait Run: Serialize + DeserializeOwned + Send + 'static {
    /// What `run` returns.
    type Output: Serialize + DeserializeOwned;

    /// The body of the process.
    fn run(self) -> Self::Output;
}

fn run_value<T: Run>(value: T) -> T::Output {
    value.run()
}

/// The type-erased part of a process that is not started yet.
trait Job: Send {
    /// The entry point for a re-created target, or `None` when the target carries data.
    fn entry(&self) -> Option<EntryPoint>;
    /// The arguments, serialized with their descriptors.
    fn serialize_args(&self) -> Result<(Vec<u8>, Vec<OwnedFd>)>;
    /// Runs the target right here (in a child made by fork).
    fn run_here(self: Box<Self>) -> std::result::Result<(Vec<u8>, Vec<OwnedFd>), String>;
}

/// A target and its arguments. `entry` is the trampoline that re-creates the target in a
/// re-executed child: only set for `Copy` targets (see [`Process::new`]), `None` for the ones
/// [`Process::fork`] takes, which only a forked copy can run.
struct TypedJob<F, A> {
    target: F,
    args: A,
    entry: Option<EntryFn>,
}

impl<F, A> Job for TypedJob<F, A>
where
    F: Target<A>,
    A: Serialize + DeserializeOwned + Send + 'static,
    F::Output: Serialize + DeserializeOwned,
{
    fn entry(&self) -> Option<EntryPoint> {
        if std::mem::size_of::<F>() != 0 {
            return None;
        }
        self.entry.map(EntryPoint::of)
    }

    fn serialize_args(&self) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        serialize_with_fds(&self.args).map_err(|e| match e.into_kind() {
            ErrorKind::Serialize { source, .. } => {
                Error::new(ErrorKind::Serialize { what: "arguments", source })
            }
            kind => Error::new(kind),
        })
    }

    fn run_here(self: Box<Self>) -> std::result::Result<(Vec<u8>, Vec<OwnedFd>), String> {
        let output = self.target.call(self.args);
        serialize_with_fds(&output).map_err(|e| format!("return value: {}", e.with_cause()))
    }
}

/// A process not started yet: set its options, then [`start`](Self::start) it.
///
/// Made by [`Process::new`], [`Process::from_run`] or a [`Context`](crate::Context).
#[must_use = "a process builder does nothing until `start` is called"]
pub struct ProcessBuilder<R> {
    job: Box<dyn Job>,
    name: Option<String>,
    daemon: bool,
    method: Option<StartMethod>,
    _output: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for ProcessBuilder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessBuilder")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl<R: Serialize + DeserializeOwned> ProcessBuilder<R> {
    /// The process name (Python's `name=`); by default `Process-N`, or `Process-1:N` in a child.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Whether the process is a daemon: terminated when its parent exits, even by SIGKILL, and
    /// not allowed to start children of its own. Default: not a daemon.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// The start method for this process, instead of the one from [`set_start_method`](crate::set_start_method).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Starts the child process. Python's `start()`.
    ///
    /// Starting twice or joining before starting cannot be written: `start` consumes the builder
    /// and only the started [`Process`] can be joined.
    ///
    /// # Errors
    ///
    /// Arguments that fail to serialize (no process is created); a capturing closure under a start
    /// method other than fork; starting from a daemon process; a missing child dispatcher (see
    /// [`init`](crate::init)); and operating-system failures (out of processes, descriptors, ...).
    pub fn start(self) -> Result<Process<R>> {
        let options = start::Options { name: self.name, daemon: self.daemon, method: self.method };
        let job = self.job;
        let shared = start::start(options, JobRef(job))?;
        Ok(Process { shared, _output: PhantomData })
    }
}

/// A started job, as the start methods see it.
pub(crate) struct JobRef(Box<dyn Job>);

impl JobRef {
    pub(crate) fn entry(&self) -> Option<EntryPoint> {
        self.0.entry()
    }
    pub(crate) fn serialize_args(&self) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        self.0.serialize_args()
    }
    pub(crate) fn run_here(self) -> std::result::Result<(Vec<u8>, Vec<OwnedFd>), String> {
        self.0.run_here()
    }
}

/// A child process running a target, as Python's `multiprocessing.Process`.
///
/// `R` is what the target returns; [`join`](Self::join) hands it back. All methods take `&self`,
/// so a process can be shared between threads (a watchdog thread may `terminate` it while another
/// waits in `join`). [`close`](Self::close) consumes it, so nothing can be called after it.
///
/// # Examples
///
/// ```
/// use proc_core::Process;
///
/// fn greet(name: String, times: u32) -> String {
///     format!("hello {name}").repeat(times as usize)
/// }
///
/// let p = Process::new(greet, ("bob".to_string(), 2)).start().unwrap();
/// assert_eq!(p.join().unwrap(), "hello bobhello bob");
/// assert_eq!(p.exitcode(), Some(0));
/// ```
pub struct Process<R = ()> {
    shared: Arc<Shared>,
    _output: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.shared.name)
            .field("pid", &self.shared.pid())
            .field("daemon", &self.shared.daemon)
            .field("exitcode", &self.shared.exitcode())
            .finish()
    }
}

impl Process<()> {
    /// A process that will run `target(args...)`: `args` is a tuple, as Python's `args=(...)`.
    ///
    /// The type of `R` (what `target` returns) is inferred; a target of no arguments takes `()`.
    ///
    /// Arguments and the return value cross to another process, so they are owned values
    /// (`DeserializeOwned`): a target takes `String`, not `&str`, and `Vec<T>`, not `&[T]`.
    /// `fn greet(name: &str)` fails to compile with a lifetime error from serde ("implementation
    /// of `Deserialize` is not general enough"); write `fn greet(name: String)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use proc_core::Process;
    ///
    /// fn add(a: i32, b: i32) -> i32 {
    ///     a + b
    /// }
    /// let p = Process::new(add, (2, 3)).name("adder").start().unwrap();
    /// assert_eq!(p.name(), "adder");
    /// assert_eq!(p.join().unwrap(), 5);
    /// ```
    ///
    /// The target must be `Copy`, because a re-executed child re-creates it from its type: a
    /// closure that owns a non-`Copy` value, even a zero-sized one, would otherwise be duplicated
    /// from nothing. Start such a closure with [`Process::fork`].
    ///
    /// ```compile_fail
    /// use proc_core::Process;
    ///
    /// /// A zero-sized proof that something happened once; not `Copy`, so it cannot be duplicated.
    /// struct Proof(());
    ///
    /// fn consume(_: Proof) {}
    ///
    /// let proof = Proof(());
    /// // A zero-sized closure that owns the proof: refused, the child would forge a second one.
    /// let _ = Process::new(move || consume(proof), ());
    /// ```
    #[allow(clippy::new_ret_no_self)]
    pub fn new<F, A>(target: F, args: A) -> ProcessBuilder<F::Output>
    where
        F: Target<A> + Copy,
        A: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned,
    {
        let entry: EntryFn = trampoline::<F, A>;
        Process::with_job(TypedJob { target, args, entry: Some(entry) }, None)
    }

    /// A process that runs `target(args...)` in a forked copy of this process
    /// ([`StartMethod::Fork`], preset): the target may be any closure, capturing any data, since
    /// the child runs the very value given here. Python's fork start method with a bound target.
    ///
    /// # Examples
    ///
    /// ```
    /// use proc_core::Process;
    ///
    /// let data = vec![1, 2, 3];
    /// let p = Process::fork(move || data.iter().sum::<i32>(), ()).start().unwrap();
    /// assert_eq!(p.join().unwrap(), 6);
    /// ```
    ///
    /// Another start method set on the builder makes `start` fail with
    /// [`Error::is_capturing_target`](crate::Error::is_capturing_target).
    pub fn fork<F, A>(target: F, args: A) -> ProcessBuilder<F::Output>
    where
        F: Target<A>,
        A: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned,
    {
        Process::with_job(TypedJob { target, args, entry: None }, Some(StartMethod::Fork))
    }

    fn with_job<F, A>(job: TypedJob<F, A>, method: Option<StartMethod>) -> ProcessBuilder<F::Output>
    where
        F: Target<A>,
        A: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned,
    {
        ProcessBuilder { job: Box::new(job), name: None, daemon: false, method, _output: PhantomData }
    }

    /// A process whose body is `value.run()`: Python's subclass-and-override-`run` form.
    pub fn from_run<T: Run>(value: T) -> ProcessBuilder<T::Output> {
        Process::new(run_value::<T>, (value,))
    }
}

impl<R: Serialize + DeserializeOwned> Process<R> {
    /// Waits for the process to end and returns what its target returned.
    ///
    /// A process whose target returns `()` can be joined any number of times; a returned value is
    /// decoded again on each call (a value that carries handles only once).
    ///
    /// A large return value is sent while the parent waits here, so a child returning megabytes
    /// stays alive until it is joined.
    ///
    /// For a child started by fork or by the fork server, the join first looks for the child's
    /// end for up to 250 µs, yielding its CPU between looks, before it sleeps (where this thread
    /// may run on more than one CPU): a short child joined at once is then seen ending without a
    /// wake-up from sleep, for up to that much of this thread's CPU time.
    ///
    /// # Errors
    ///
    /// The target panicked (the error carries the message and location, see
    /// [`Error::panic_message`]); the child ended by a signal or `exit(n)` before returning
    /// ([`Error::exit_code`]); the value failed to (de)serialize; the value (with handles) was
    /// already taken; this process did not start the child.
    pub fn join(&self) -> Result<R> {
        self.shared.wait_ended(None)?;
        self.shared.result()
    }

    /// Waits at most `timeout` for the process to end. `Ok(None)`: it is still running.
    /// A zero timeout checks once without waiting.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join), once the process has ended.
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<R>> {
        let deadline = Instant::now().checked_add(timeout);
        if self.shared.wait_ended(deadline.or(Some(far_future())))? {
            self.shared.result().map(Some)
        } else {
            Ok(None)
        }
    }

    /// As [`join_timeout`](Self::join_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`join_timeout`](Self::join_timeout).
    pub fn join_deadline(&self, deadline: Instant) -> Result<Option<R>> {
        self.join_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// Whether the process is running. Reaps it if it has ended.
    ///
    /// A process that was started by another process (a copy inherited through fork) reads as not
    /// alive.
    pub fn is_alive(&self) -> bool {
        self.shared.owner_pid == proc_os::pid() && self.shared.poll_alive()
    }

    /// Python's `exitcode`: `None` while running, `Some(n)` after `exit(n)` (0 when the target
    /// returned, 1 when it panicked), `Some(-N)` when killed by signal `N`.
    pub fn exitcode(&self) -> Option<i32> {
        self.shared.exitcode()
    }

    /// Sends SIGTERM (Python's `terminate()`). Does nothing if the process has already ended.
    ///
    /// # Errors
    ///
    /// This process did not start the child, or `kill(2)` failed.
    pub fn terminate(&self) -> Result<()> {
        self.shared.signal(libc::SIGTERM)
    }

    /// Sends SIGKILL (Python's `kill()`). Does nothing if the process has already ended.
    ///
    /// # Errors
    ///
    /// As [`terminate`](Self::terminate).
    pub fn kill(&self) -> Result<()> {
        self.shared.signal(libc::SIGKILL)
    }

    /// Sends SIGINT (Python's `interrupt()`, as Ctrl-C). Does nothing if the process has ended.
    ///
    /// A child inherits its parent's signal dispositions, as on Unix and in Python: in a program
    /// that runs with SIGINT ignored (started in the background by a shell without job control,
    /// `nohup cmd &`), SIGINT does not end a child unless its target restores the default action.
    ///
    /// # Errors
    ///
    /// As [`terminate`](Self::terminate).
    pub fn interrupt(&self) -> Result<()> {
        self.shared.signal(libc::SIGINT)
    }

    /// Releases the process' resources (Python's `close()`). Consumes the handle, so nothing can
    /// be called after it.
    ///
    /// # Errors
    ///
    /// The process is still running: the error hands the process back.
    pub fn close(self) -> std::result::Result<(), CloseError<R>> {
        if self.shared.owner_pid == proc_os::pid() && self.shared.poll_alive() {
            return Err(CloseError { process: self, error: Error::new(ErrorKind::StillRunning) });
        }
        crate::globals::lock().children.retain(|c| !Arc::ptr_eq(c, &self.shared));
        Ok(())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.shared.pid()
    }

    /// The process name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Whether the process is a daemon.
    pub fn daemon(&self) -> bool {
        self.shared.daemon
    }

    /// The start method that started the process.
    pub fn start_method(&self) -> StartMethod {
        self.shared.method
    }

    /// A descriptor that becomes readable when the process ends (Python's `sentinel`), for
    /// `poll(2)` or multiproc's `wait`.
    pub fn sentinel(&self) -> Sentinel {
        self.shared.sentinel()
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

/// The error of [`Process::close`] on a running process; it hands the process back.
pub struct CloseError<R> {
    process: Process<R>,
    error: Error,
}

impl<R> CloseError<R> {
    /// The process, still running.
    pub fn into_process(self) -> Process<R> {
        self.process
    }

    /// Why the process could not be closed.
    pub fn error(&self) -> &Error {
        &self.error
    }
}

impl<R> fmt::Debug for CloseError<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseError").field("process", &self.process).field("error", &self.error).finish()
    }
}

impl<R> fmt::Display for CloseError<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot close process {}: {}", self.process.shared.name, self.error)
    }
}

impl<R> std::error::Error for CloseError<R> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
