//! Who is who: the current process, its parent, its children, and how many CPUs there are.

use std::os::fd::AsFd;
use std::sync::Arc;

use crate::globals;
use crate::process::{Sentinel, Shared};

/// The process running this code, as Python's `current_process()` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    name: String,
    pid: u32,
    ident: Vec<u32>,
    daemon: bool,
}

impl ProcessInfo {
    /// `MainProcess` in the program's first process; `Process-N` (or the name given to the
    /// builder) in a child; `Process-1:N` in a grandchild.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Python's `_identity`: empty in the main process, `[1]` in its first child, `[1, 2]` in that
    /// child's second child.
    pub fn ident(&self) -> &[u32] {
        &self.ident
    }

    /// Whether this process is a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }
}

/// The current process. Python's `current_process()`.
///
/// # Examples
///
/// ```
/// assert_eq!(proc_core::current_process().name(), "MainProcess");
/// ```
pub fn current_process() -> ProcessInfo {
    let who = globals::who();
    ProcessInfo {
        name: who.name(),
        pid: proc_os::pid(),
        ident: who.identity.ident.clone(),
        daemon: who.identity.daemon,
    }
}

/// The process that started this one, as Python's `parent_process()`.
#[derive(Clone, Debug)]
pub struct ParentProcess {
    pid: u32,
    name: String,
    ctl: Option<Arc<std::os::fd::OwnedFd>>,
}

impl ParentProcess {
    /// The parent's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The parent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the parent is still running (its end of the control socket is open).
    pub fn is_alive(&self) -> bool {
        self.ctl
            .as_ref()
            .is_some_and(|ctl| matches!(proc_os::socket::peer_closed(ctl.as_fd(), false), Ok(false)))
    }
}

/// The parent of this process, or `None` in the main process. Python's `parent_process()`.
pub fn parent_process() -> Option<ParentProcess> {
    let who = globals::who();
    who.parent.as_ref().map(|p| ParentProcess { pid: p.pid, name: p.name.clone(), ctl: p.ctl.clone() })
}

/// A running child of this process, as [`active_children`] lists it.
#[derive(Clone, Debug)]
pub struct ActiveChild {
    shared: Arc<Shared>,
}

impl ActiveChild {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.shared.pid()
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Whether the child is a daemon.
    pub fn daemon(&self) -> bool {
        self.shared.daemon
    }

    /// Whether the child is still running (it was when listed).
    pub fn is_alive(&self) -> bool {
        self.shared.poll_alive()
    }

    /// Sends SIGTERM to the child, unless it has ended.
    ///
    /// # Errors
    ///
    /// `kill(2)` failed.
    pub fn terminate(&self) -> crate::Result<()> {
        self.shared.signal(libc::SIGTERM)
    }

    /// Sends SIGKILL to the child, unless it has ended.
    ///
    /// # Errors
    ///
    /// `kill(2)` failed.
    pub fn kill(&self) -> crate::Result<()> {
        self.shared.signal(libc::SIGKILL)
    }

    /// The child's sentinel; see [`Process::sentinel`](crate::Process::sentinel).
    pub fn sentinel(&self) -> Sentinel {
        self.shared.sentinel()
    }
}

/// The children of this process that are still running; those that ended are reaped.
/// Python's `active_children()`.
pub fn active_children() -> Vec<ActiveChild> {
    let mut g = globals::lock();
    g.reap_finished();
    g.children.iter().map(|c| ActiveChild { shared: c.clone() }).collect()
}

/// The number of CPUs in the system (Python's `cpu_count()`), at least 1.
pub fn cpu_count() -> usize {
    proc_os::online_cpus().unwrap_or(1)
}

/// The number of CPUs this process may use: its CPU affinity and its cgroup CPU quota counted
/// (Python 3.13's `process_cpu_count()`), at least 1. The default size of a pool.
pub fn process_cpu_count() -> usize {
    std::thread::available_parallelism().map_or_else(|_| cpu_count(), std::num::NonZero::get)
}
