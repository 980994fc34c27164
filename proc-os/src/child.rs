//! Making, reaping and ending processes: `fork`, `waitpid` in its two forms, how a process ended
//! ([`ExitStatus`], as Python's `exitcode` reports it), `_exit`, `atexit` and `setsid`.
//!
//! For multiproc's crates (proc-core's start methods, fork server and keeper); not a stable API.

use std::io;

use crate::fd::{cvt, retry};
use crate::sys::{Backend, Os};

/// How a process ended, as Python's `exitcode` reports it.
///
/// # Examples
///
/// ```
/// use proc_os::child::ExitStatus;
///
/// assert_eq!(ExitStatus::Signal(9).exitcode(), -9);
/// assert_eq!(ExitStatus::from_exitcode(-9), ExitStatus::Signal(9));
/// assert_eq!(ExitStatus::from_exitcode(3), ExitStatus::Code(3));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// Python's `exitcode`: the exit code, or minus the signal number.
    pub fn exitcode(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => -s,
        }
    }

    /// The status that Python's `exitcode` `code` stands for (negative: a signal).
    pub fn from_exitcode(code: i32) -> Self {
        if code < 0 {
            ExitStatus::Signal(-code)
        } else {
            ExitStatus::Code(code)
        }
    }

    // libc's wait macros, not nix's `WaitStatus`: that one names the signal with nix's `Signal`,
    // which lacks the real-time signals, so a child they killed would be reaped and then reported
    // as an error.
    fn from_raw(status: libc::c_int) -> Option<Self> {
        if libc::WIFEXITED(status) {
            Some(ExitStatus::Code(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(ExitStatus::Signal(libc::WTERMSIG(status)))
        } else {
            None
        }
    }
}

/// Reaps child `pid` if it has ended (`block == false`) or once it ends (`block == true`);
/// `EINTR` is retried.
///
/// Returns `None` when the child is still running and `block` is false.
///
/// # Errors
///
/// `pid` does not fit a `pid_t` (`InvalidInput`), or `waitpid` failed (`ECHILD`: not a child of
/// this process, or already reaped).
pub fn waitpid(pid: u32, block: bool) -> io::Result<Option<ExitStatus>> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        let mut status = 0;
        // libc, not nix: see `ExitStatus::from_raw`.
        // SAFETY: `status` is a live c_int that waitpid writes through.
        let ret = retry(|| cvt(unsafe { libc::waitpid(pid, &mut status, flags) }))?;
        if ret == 0 {
            return Ok(None);
        }
        // Stopped or continued children (only reported with WUNTRACED/WCONTINUED) are not ends.
        if let Some(s) = ExitStatus::from_raw(status) {
            return Ok(Some(s));
        }
    }
}

/// What [`wait_any`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnyChild {
    /// This child ended and is reaped now.
    Ended(u32, ExitStatus),
    /// Children exist, none has ended.
    Running,
    /// No children at all.
    None,
}

/// Reaps any ended child without blocking (used by proc-core's fork server and its keeper).
///
/// # Errors
///
/// `waitpid` failed other than with `ECHILD` (which is [`AnyChild::None`]) or `EINTR` (retried).
pub fn wait_any() -> io::Result<AnyChild> {
    loop {
        let mut status = 0;
        // libc, not nix: see `ExitStatus::from_raw`.
        // SAFETY: `status` is a live c_int that waitpid writes through.
        let ret = retry(|| cvt(unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) }));
        match ret {
            Ok(0) => return Ok(AnyChild::Running),
            Ok(pid) => {
                if let Some(s) = ExitStatus::from_raw(status) {
                    return Ok(AnyChild::Ended(pid as u32, s));
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return Ok(AnyChild::None),
            Err(e) => return Err(e),
        }
    }
}

/// Forks the calling process: the child's pid in the parent, 0 in the child.
///
/// # Errors
///
/// `fork` failed (`EAGAIN`: too many processes; `ENOMEM`).
///
/// # Safety
///
/// In the child only the calling thread exists. Until it execs or exits, the child must not rely on
/// any lock that another thread of the parent may have held at the time of the fork. glibc keeps
/// `malloc` usable after `fork` as an extension; other allocators may not.
pub unsafe fn fork() -> io::Result<u32> {
    // SAFETY: the caller upholds the contract above.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(child.as_raw() as u32),
        nix::unistd::ForkResult::Child => Ok(0),
    }
}

/// Registers `f` to run at normal process exit (`atexit`); a registration the C library refuses
/// (no memory) is ignored.
pub fn at_exit(f: extern "C" fn()) {
    // libc: nix has no `atexit`.
    // SAFETY: `f` is a plain extern "C" function that lives for the whole program.
    unsafe { libc::atexit(f) };
}

/// Immediately ends the calling process without running destructors or `atexit` handlers
/// (`_exit`); async-signal-safe, so a forked child may call it.
pub fn exit_now(code: i32) -> ! {
    // libc: nix has no `_exit`.
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// Puts this process in a session (and process group) of its own, with no controlling terminal:
/// the hangup of the terminal it was started from no longer reaches it.
///
/// # Errors
///
/// `setsid` failed (`EPERM`: the caller already leads a process group).
pub fn new_session() -> io::Result<()> {
    nix::unistd::setsid().map(drop).map_err(io::Error::from)
}

/// Makes this process the child subreaper of its descendants (Linux' `PR_SET_CHILD_SUBREAPER`):
/// a descendant whose parent dies is reparented to this process (the nearest living subreaper)
/// instead of to init, so this process can still wait for it.
///
/// # Errors
///
/// `Unsupported` where the OS has no subreapers (macOS: orphans go to launchd), or `prctl`
/// failed.
pub fn become_subreaper() -> io::Result<()> {
    Os::become_subreaper()
}
