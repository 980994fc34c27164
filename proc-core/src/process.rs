//! `Process`: a target function running in a child process, with a typed return value.
//!
//! Part of the process runtime's import circle, which stays on purpose: see `globals`.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::child::bootstrap::{report_error, Report};
use crate::child::entry::{EntryFn, EntryPoint};
use crate::error::{Error, ErrorKind, Result};
use crate::handle::{serialize_with_fds, ReleaseOnFork};
use crate::start::{self, method::StartMethod};
use crate::sys::{self, ExitStatus};
use crate::target::{trampoline, Target};
use crate::wire::{FrameReader, Read};

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

    /// Whether the process is running. Reaps it if it has ended.
    ///
    /// A process that was started by another process (a copy inherited through fork) reads as not
    /// alive.
    pub fn is_alive(&self) -> bool {
        self.shared.owner_pid == sys::getpid() && self.shared.poll_alive()
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
        if self.shared.owner_pid == sys::getpid() && self.shared.poll_alive() {
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

/// A descriptor that becomes readable when its process ends; see [`Process::sentinel`].
#[derive(Clone, Debug)]
pub struct Sentinel(Arc<OwnedFd>);

impl Sentinel {
    /// Whether the process has ended (the sentinel is readable now).
    ///
    /// # Errors
    ///
    /// `poll(2)` failed.
    pub fn is_ready(&self) -> Result<bool> {
        sys::is_readable(self.0.as_fd()).map_err(|e| Error::io("cannot poll a process sentinel", e))
    }
}

impl AsFd for Sentinel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for Sentinel {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// How many times to retry `waitpid` when the alive pipe closed before the exit is visible.
const REAP_SPINS: u32 = 1000;

/// How often to look for the exit of a child whose alive pipe closed early.
const STALE_POLL: Duration = Duration::from_millis(10);

/// How the parent learns that a child ended.
#[derive(Debug)]
pub(crate) enum Watch {
    /// A direct child: the sentinel is the read end of a pipe only the child holds open; reap it
    /// with `waitpid`.
    Direct,
    /// A child of the fork server: the sentinel is the status pipe, where the server (or, once the
    /// server died, its keeper) writes the exit code once it reaped the child. If the pipe closes
    /// without a code, the child becomes a stray orphan (see [`State::stray`]).
    Served,
}

/// A fork-server child whose status pipe closed without an exit code (its server and the
/// server's keeper died while it ran): identified by pid and start time, as init may recycle its
/// pid; it ends when its control socket closes, onto which its sentinel now refers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stray {
    start_time: Option<u64>,
}

/// A child's pid: known at once for direct children, read from the fork server's pid pipe when
/// first needed for its children.
#[derive(Debug)]
pub(crate) enum Pid {
    Known(u32),
    Pending(OwnedFd),
}

/// What the parent keeps about a started child; shared by its `Process` handle and the registry.
#[derive(Debug)]
pub(crate) struct Shared {
    pid: std::sync::OnceLock<u32>,
    pid_pipe: Mutex<Option<OwnedFd>>,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    pub(crate) method: StartMethod,
    /// The process that started the child; only it can wait for or signal the child.
    pub(crate) owner_pid: u32,
    /// Keeps `ctl` out of children made by a plain `fork` (a daemon child watches it for its
    /// parent's end); dropped before it.
    ctl_release: ReleaseOnFork,
    ctl: OwnedFd,
    sentinel: Arc<OwnedFd>,
    watch: Watch,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    reader: FrameReader,
    ctl_done: bool,
    report: Option<Report>,
    report_fds: Option<Vec<OwnedFd>>,
    read_error: Option<String>,
    status: Option<ExitStatus>,
    /// The fork server died before reporting this child's exit code.
    status_lost: bool,
    /// The alive pipe closed while the child runs on (it called exec or closed descriptors).
    stale_sentinel: bool,
    /// The fork server (and its keeper) died while this child ran.
    stray: Option<Stray>,
}

impl Shared {
    pub(crate) fn new(
        pid: Pid,
        name: String,
        daemon: bool,
        method: StartMethod,
        ctl: OwnedFd,
        sentinel: OwnedFd,
        watch: Watch,
    ) -> Self {
        // A small result waits in the socket until the child has exited, so the parent wakes up
        // once per child; a large one wakes it in steps so the child never blocks for long.
        if let Some(lowat) = sys::RESULT_LOWAT {
            if let Err(e) = sys::set_recv_lowat(ctl.as_fd(), lowat) {
                tracing::debug!(error = %e, "cannot set SO_RCVLOWAT on a control socket");
            }
        }
        let (known, pipe) = match pid {
            Pid::Known(p) => (std::sync::OnceLock::from(p), None),
            Pid::Pending(fd) => (std::sync::OnceLock::new(), Some(fd)),
        };
        Shared {
            pid: known,
            pid_pipe: Mutex::new(pipe),
            name,
            daemon,
            method,
            owner_pid: sys::getpid(),
            ctl_release: ReleaseOnFork::new(ctl.as_fd()),
            ctl,
            sentinel: Arc::new(sentinel),
            watch,
            state: Mutex::new(State::default()),
        }
    }

    /// The pid (0 if the fork server could not create the process).
    pub(crate) fn pid(&self) -> u32 {
        if self.owner_pid != sys::getpid() {
            // A copy inherited by fork must not consume the pid pipe the real owner reads.
            return self.known_pid().unwrap_or(0);
        }
        *self.pid.get_or_init(|| {
            let pipe = self.pid_pipe.lock().unwrap_or_else(PoisonError::into_inner).take();
            pipe.and_then(|p| crate::start::forkserver::read_pid(p.as_fd())).unwrap_or(0)
        })
    }

    /// The pid if it is known without waiting.
    pub(crate) fn known_pid(&self) -> Option<u32> {
        self.pid.get().copied()
    }

    pub(crate) fn sentinel(&self) -> Sentinel {
        Sentinel(self.sentinel.clone())
    }

    /// Takes the control socket off the fork list, before a forked copy closes it.
    pub(crate) fn unlist_ctl(&self) {
        self.ctl_release.unlist();
    }

    pub(crate) fn ctl_raw(&self) -> RawFd {
        self.ctl.as_raw_fd()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check_owner(&self) -> Result<()> {
        if self.owner_pid == sys::getpid() {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::ForeignProcess))
        }
    }

    /// Reads whatever the child sent so far without blocking.
    fn pump_ctl(&self, st: &mut State) {
        while !st.ctl_done {
            match st.reader.read(self.ctl.as_fd(), false) {
                Ok(Read::Pending) => return,
                Ok(Read::Frame(body, fds)) => {
                    match crate::codec::from_bytes::<Report>(&body) {
                        Ok(r) => st.report = Some(r),
                        Err(e) => st.read_error = Some(format!("garbled result message: {e}")),
                    }
                    st.report_fds = Some(fds);
                    st.ctl_done = true;
                }
                Ok(Read::Eof) => st.ctl_done = true,
                // The child ended before reading all of its bootstrap: no report, as EOF.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => st.ctl_done = true,
                Err(e) => {
                    st.read_error = Some(format!("cannot read the result: {e}"));
                    st.ctl_done = true;
                }
            }
        }
    }

    /// Whether the child is watched as a direct child of this process (started by spawn or fork).
    fn direct(&self) -> bool {
        matches!(self.watch, Watch::Direct)
    }

    /// Records the exit status if the child has ended. Returns whether it has.
    fn try_reap(&self, st: &mut State) -> Result<bool> {
        if st.status.is_some() {
            return Ok(true);
        }
        if st.stray.is_some() {
            return Ok(self.try_reap_stray(st));
        }
        let ready =
            sys::is_readable(self.sentinel.as_fd()).map_err(|e| Error::io("cannot poll a child", e))?;
        let direct = self.direct();
        if !ready {
            if st.ctl_done && direct {
                // The child reported (or closed its control socket), so it is ending; but a
                // descendant that kept a copy of its alive pipe keeps the sentinel quiet. Look.
                st.status =
                    sys::waitpid(self.pid(), false).map_err(|e| Error::io("cannot reap a child", e))?;
                return Ok(st.status.is_some());
            }
            return Ok(false);
        }
        match &self.watch {
            Watch::Direct => {
                // The alive pipe reads as closed once the child exited, or once it closed the pipe
                // itself while running on (it called exec, or closed its descriptors). Never block
                // here: the exit may lag the pipe by a moment, so retry briefly, then fall back to
                // polling (`stale_sentinel`). Reaping under the state lock means no signal can
                // reach a recycled pid.
                let pid = self.pid();
                let spins = if st.stale_sentinel { 1 } else { REAP_SPINS };
                for _ in 0..spins {
                    st.status = sys::waitpid(pid, false).map_err(|e| Error::io("cannot reap a child", e))?;
                    if st.status.is_some() {
                        break;
                    }
                    std::thread::yield_now();
                }
                if st.status.is_none() {
                    st.stale_sentinel = true;
                }
            }
            Watch::Served => {
                let mut code = [0u8; 4];
                let n = sys::read(self.sentinel.as_fd(), &mut code)
                    .map_err(|e| Error::io("cannot read a child's exit status", e))?;
                if n == 4 {
                    // A byte follows the code, so the sentinel stays readable from now on, as a
                    // sentinel of an ended process must.
                    st.status = Some(ExitStatus::from_exitcode(i32::from_le_bytes(code)));
                } else {
                    return Ok(self.server_died(st));
                }
            }
        }
        if st.status.is_some() {
            tracing::debug!(pid = self.pid(), name = %self.name, status = ?st.status, "child process ended");
            // Whatever the child sent is in the socket now.
            self.pump_ctl(st);
            st.ctl_done = true;
        }
        Ok(st.status.is_some())
    }

    /// The status pipe closed without an exit code: the fork server and its keeper died (or the
    /// server could not fork the child at all, or died right after). A child that runs on was
    /// reparented to init. Returns whether it has ended.
    fn server_died(&self, st: &mut State) -> bool {
        let pid = self.pid();
        if pid == 0 {
            // The server never created the child (it could not fork, or died first).
            st.status = Some(ExitStatus::Code(255));
            st.status_lost = true;
            self.pump_ctl(st);
            st.ctl_done = true;
            return true;
        }
        // Reparented (to init, or to the keeper if the server died before telling it of the child):
        // the child runs on while its control socket is open.
        self.pump_ctl(st);
        if sys::peer_closed(self.ctl.as_fd(), false).unwrap_or(true) {
            self.stray_ended(st);
            return true;
        }
        let start_time = sys::start_time(pid);
        if sys::peer_closed(self.ctl.as_fd(), false).unwrap_or(true) {
            // It ended meanwhile: the start time may be another process'.
            self.stray_ended(st);
            return true;
        }
        tracing::debug!(pid, "a child of the dead fork server runs on as an orphan");
        st.stray = Some(Stray { start_time });
        // Its sentinel number now refers to the control socket, readable at the child's end.
        if let Err(e) = sys::dup_onto(self.ctl.as_fd(), self.sentinel.as_raw_fd()) {
            // The sentinel stays readable for good: wait by polling instead.
            tracing::debug!(error = %e, "cannot make the control socket the sentinel");
            st.stale_sentinel = true;
        }
        false
    }

    /// A stray orphan (see [`Stray`]): ended once its control socket closed.
    fn try_reap_stray(&self, st: &mut State) -> bool {
        self.pump_ctl(st);
        if !sys::peer_closed(self.ctl.as_fd(), false).unwrap_or(true) {
            return false;
        }
        self.stray_ended(st);
        true
    }

    /// Records the end of a child whose exit status no one can tell (its parent, the server, and
    /// the keeper are gone): the code its report implies, or 255 (and a lost status) without one.
    fn stray_ended(&self, st: &mut State) {
        self.pump_ctl(st);
        st.ctl_done = true;
        st.status = Some(match st.report {
            Some(Report::Returned(_)) => ExitStatus::Code(0),
            Some(Report::Panicked { .. } | Report::Failed(_)) => ExitStatus::Code(1),
            None => {
                st.status_lost = true;
                ExitStatus::Code(255)
            }
        });
        tracing::debug!(pid = self.pid(), status = ?st.status, "an orphaned child ended");
    }

    /// Whether `pid` still names the child (for a stray orphan, whose pid init may recycle).
    fn still_the_child(&self, st: &State, pid: u32) -> bool {
        match st.stray {
            Some(Stray { start_time: Some(t) }) => sys::start_time(pid) == Some(t),
            // Its start time could not be read: the pid may be another process' by now.
            Some(Stray { start_time: None }) => false,
            None => true,
        }
    }

    /// Whether the child is still running (reaping it if not). Errors read as "not running".
    pub(crate) fn poll_alive(&self) -> bool {
        if self.owner_pid != sys::getpid() {
            return false;
        }
        let mut st = self.lock();
        self.pump_ctl(&mut st);
        !self.try_reap(&mut st).unwrap_or(true)
    }

    pub(crate) fn exitcode(&self) -> Option<i32> {
        if self.owner_pid != sys::getpid() {
            return None;
        }
        let mut st = self.lock();
        let _ = self.try_reap(&mut st);
        st.status.map(ExitStatus::exitcode)
    }

    pub(crate) fn signal(&self, signal: libc::c_int) -> Result<()> {
        self.check_owner()?;
        let mut st = self.lock();
        if self.try_reap(&mut st)? {
            return Ok(());
        }
        let pid = self.pid();
        if pid == 0 {
            // The fork server could not create it; its join reports why.
            return Ok(());
        }
        if !self.still_the_child(&st, pid) {
            return Ok(());
        }
        tracing::debug!(pid, signal = %crate::error::signal_name(signal), "signalling child process");
        let sent = sys::kill(pid, signal);
        drop(st);
        if sent.is_ok() && (signal == libc::SIGTERM || signal == libc::SIGKILL) {
            // What it leaves behind, the resource tracker reports as terminated, not as leaked.
            crate::shm::tracker::terminated(pid);
        }
        match sent {
            // Already gone, not yet reported by the fork server.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            other => other.map_err(|e| Error::io("cannot signal a child", e)),
        }
    }

    /// Waits until the child ended or `deadline` passed; reads what it sends meanwhile.
    pub(crate) fn wait_ended(&self, deadline: Option<Instant>) -> Result<bool> {
        self.check_owner()?;
        loop {
            let ctl_open = {
                let mut st = self.lock();
                self.pump_ctl(&mut st);
                if self.try_reap(&mut st)? {
                    drop(st);
                    crate::globals::lock().children.retain(|c| !std::ptr::eq(&**c, self));
                    return Ok(true);
                }
                (!st.ctl_done, st.stale_sentinel, self.direct())
            };
            let (ctl_open, stale, direct) = ctl_open;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            // Wait without the lock, so another thread can signal the child meanwhile.
            let mut fds = Vec::with_capacity(2);
            let mut wake = deadline;
            if stale || (!ctl_open && direct) {
                // The sentinel is readable for good but the child runs on, or the child is done
                // but the sentinel may stay quiet (see `try_reap`): poll for its exit.
                let poll = Instant::now() + STALE_POLL;
                wake = Some(deadline.map_or(poll, |d| d.min(poll)));
            }
            if !stale {
                fds.push(self.sentinel.as_fd());
            }
            if ctl_open {
                fds.push(self.ctl.as_fd());
            }
            sys::wait_readable(&fds, wake).map_err(|e| Error::io("cannot wait for a child", e))?;
        }
    }

    /// The outcome of an ended child, as `join` returns it.
    pub(crate) fn result<R: DeserializeOwned>(&self) -> Result<R> {
        let mut st = self.lock();
        let status = st.status.unwrap_or(ExitStatus::Code(255));
        match &st.report {
            Some(Report::Returned(bytes)) => {
                let bytes = bytes.clone();
                let fds = match st.report_fds.take() {
                    Some(fds) => fds,
                    None => return Err(Error::new(ErrorKind::ResultTaken)),
                };
                let had_fds = !fds.is_empty();
                let (value, once) = crate::handle::deserialize_once(&bytes, fds);
                let value = value.map_err(|e| match e.into_kind() {
                    ErrorKind::Deserialize { source, .. } => {
                        Error::new(ErrorKind::Deserialize { what: "return value", source })
                    }
                    kind => Error::new(kind),
                });
                if !had_fds && !once {
                    // Without handles the value can be decoded again by a later join.
                    st.report_fds = Some(Vec::new());
                }
                value
            }
            Some(report) => Err(report_error(report).unwrap_or_else(|| Error::new(ErrorKind::ResultTaken))),
            None => {
                if let Some(m) = &st.read_error {
                    return Err(Error::new(ErrorKind::ChildFailed(m.clone())));
                }
                if st.status_lost {
                    return Err(Error::new(ErrorKind::ForkServer(
                        "the fork server died before reporting the child's exit code".into(),
                    )));
                }
                if status == ExitStatus::Code(0) {
                    // The child called exit(0) without returning: fine for a target of no value.
                    if let Ok(v) = crate::codec::from_bytes::<R>(&[]) {
                        return Ok(v);
                    }
                }
                Err(Error::new(ErrorKind::Exited { exitcode: status.exitcode() }))
            }
        }
    }
}
