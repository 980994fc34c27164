//! Start methods: how a child process comes to be.
//!
//! - [`StartMethod::Spawn`] re-executes the current binary (`spawn.rs`); the child's dispatcher
//!   reads the bootstrap from its control socket and jumps to the target.
//! - [`StartMethod::ForkServer`] asks a single-threaded helper, started once by spawn, to fork a
//!   child per request (`forkserver.rs`); the child then runs exactly as a spawned one.
//! - [`StartMethod::Fork`] forks the caller (`fork.rs`) and runs the target, which may capture
//!   data, in the copy.
//!
//! Part of the process runtime's import circle, which stays on purpose: see `globals`.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::child::bootstrap::Bootstrap;
use crate::child::role;
use crate::error::{Error, ErrorKind, Result};
use crate::globals;
use crate::process::{JobRef, Pid, Process, ProcessBuilder, Run, Shared, Watch};
use crate::target::Target;
use crate::wire;

pub(crate) mod fork;
pub(crate) mod forkserver;
pub(crate) mod method;
pub(crate) mod spawn;

pub use method::StartMethod;

/// Sets the start method of processes started without one. Python's `set_start_method`.
///
/// # Errors
///
/// The method was already set, or already used by [`get_start_method`] or a start, and differs.
pub fn set_start_method(method: StartMethod) -> Result<()> {
    let mut g = globals::lock();
    match g.method {
        Some(current) if current != method => Err(Error::new(ErrorKind::StartMethodSet {
            current: current.as_str(),
            requested: method.as_str(),
        })),
        _ => {
            g.method = Some(method);
            Ok(())
        }
    }
}

/// The start method of processes started without one; fixes the default if none was set.
pub fn get_start_method() -> StartMethod {
    *globals::lock().method.get_or_insert(StartMethod::DEFAULT)
}

/// Every start method this platform offers, the default first.
pub fn get_all_start_methods() -> Vec<StartMethod> {
    let mut all = vec![StartMethod::DEFAULT];
    for m in [StartMethod::ForkServer, StartMethod::Spawn, StartMethod::Fork] {
        if !all.contains(&m) {
            all.push(m);
        }
    }
    all
}

/// The same constructors as [`Process`], bound to one start method. Python's `get_context(method)`.
///
/// # Examples
///
/// ```
/// use proc_core::{get_context, StartMethod};
///
/// fn double(x: i32) -> i32 {
///     x * 2
/// }
/// let ctx = get_context(StartMethod::Spawn);
/// let p = ctx.process(double, (21,)).start().unwrap();
/// assert_eq!(p.join().unwrap(), 42);
/// ```
pub fn get_context(method: StartMethod) -> Context {
    Context { method }
}

/// A start method and the constructors that use it; see [`get_context`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

impl Context {
    /// [`Process::new`] with this context's start method. The target must be `Copy`; a closure
    /// that owns other data starts with [`Process::fork`].
    pub fn process<F, A>(&self, target: F, args: A) -> ProcessBuilder<F::Output>
    where
        F: Target<A> + Copy,
        A: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned,
    {
        Process::new(target, args).start_method(self.method)
    }

    /// [`Process::from_run`] with this context's start method.
    pub fn from_run<T: Run>(&self, value: T) -> ProcessBuilder<T::Output> {
        Process::from_run(value).start_method(self.method)
    }

    /// The context's start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }
}

/// Builder options that reach the start.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) name: Option<String>,
    pub(crate) daemon: bool,
    pub(crate) method: Option<StartMethod>,
}

/// The parent's ends of a freshly created child.
#[derive(Debug)]
pub(crate) struct Started {
    /// The pid, or where it will come from.
    pub(crate) pid: Pid,
    pub(crate) ctl: OwnedFd,
    pub(crate) sentinel: OwnedFd,
    pub(crate) watch: Watch,
    /// The write end of the alive pipe, to send to a re-executed child.
    pub(crate) alive: Option<OwnedFd>,
}

pub(crate) fn start(options: Options, job: JobRef) -> Result<Arc<Shared>> {
    role::ensure_ready()?;
    let mut g = globals::lock();
    let (my_ident, my_name, my_daemon) = {
        let who = globals::who();
        (who.identity.ident.clone(), who.name(), who.identity.daemon)
    };
    if my_daemon {
        return Err(Error::new(ErrorKind::DaemonChild));
    }
    g.reap_finished();
    let method = options.method.unwrap_or_else(|| *g.method.get_or_insert(StartMethod::DEFAULT));
    let number = g.started + 1;
    let mut ident = my_ident;
    ident.push(number);
    let name = options.name.unwrap_or_else(|| {
        let parts: Vec<String> = ident.iter().map(u32::to_string).collect();
        format!("Process-{}", parts.join(":"))
    });
    let identity = globals::Identity { name: name.clone(), ident, daemon: options.daemon };
    globals::register_atexit();
    crate::shm::tracker::ensure_running(&mut g);

    let (started, g) = if method == StartMethod::Fork {
        fork::start(g, identity, job)?
    } else {
        let entry = job.entry().ok_or(Error::new(ErrorKind::CapturingTarget { method: method.as_str() }))?;
        // Serialize before creating anything, so bad arguments leave no process behind.
        let (args, args_fds) = job.serialize_args()?;
        // A fork-server request also carries the control socket, the status and pid pipes, the
        // tracker's pipe and the event channel.
        if args_fds.len() > wire::MAX_FDS - 5 {
            return Err(Error::new(ErrorKind::TooManyHandles(args_fds.len() + 5)));
        }
        let tracker = g.tracker.clone();
        // The child init function and the event channel (`logging`); the channel's end follows
        // the arguments' descriptors.
        let setup = crate::logging::child_setup();
        let mut boot = Bootstrap {
            sigint_ignored: proc_os::signal::signal_is_ignored(libc::SIGINT),
            entry,
            name: identity.name.clone(),
            ident: identity.ident.clone(),
            daemon: identity.daemon,
            parent_pid: proc_os::pid(),
            parent_name: my_name,
            args,
            args_fds: args_fds.len() as u32,
            has_alive: method == StartMethod::Spawn,
            has_tracker: tracker.is_some(),
            init: setup.init,
            log_level: setup.level,
        };
        let started = if method == StartMethod::Spawn {
            let body = crate::codec::to_vec(&boot)
                .map_err(|source| Error::new(ErrorKind::Serialize { what: "bootstrap", source }))?;
            let started = spawn::start()?;
            let mut fds: Vec<_> = args_fds.iter().map(|f| f.as_fd()).collect();
            fds.extend(setup.fd);
            fds.extend(started.alive.as_ref().map(|f| f.as_fd()));
            fds.extend(tracker.as_ref().map(|f| f.as_fd()));
            if let Err(e) = wire::send_frame(started.ctl.as_fd(), &body, &fds) {
                // The child died before taking its bootstrap; it is reaped with the record below.
                tracing::debug!(pid = ?started.pid, error = %e, "child did not take its bootstrap");
            }
            started
        } else {
            boot.has_alive = false;
            // A request is a byte that says whether this process has no other child running
            // (`reap_finished` has just dropped the ended ones), then the bootstrap.
            let lone = g.children.is_empty();
            let body = crate::codec::to_vec(&(lone, &boot))
                .map_err(|source| Error::new(ErrorKind::Serialize { what: "bootstrap", source }))?;
            // The fork server hands its children the tracker's pipe it got when it started.
            let mut fds: Vec<_> = args_fds.iter().map(|f| f.as_fd()).collect();
            fds.extend(setup.fd);
            forkserver::start(&mut g, &body, &fds)?
        };
        (started, g)
    };
    let mut g = g;
    g.started = number;
    let Started { pid, ctl, sentinel, watch, alive } = started;
    drop(alive);
    let shared = Arc::new(Shared::new(pid, name, options.daemon, method, ctl, sentinel, watch));
    let pid = shared.known_pid();
    g.children.push(shared.clone());
    tracing::debug!(pid, name = %shared.name, method = %method, daemon = options.daemon, "started child process");
    Ok(shared)
}
