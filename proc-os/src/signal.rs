//! Signals: names, dispositions, masks, handlers and sending them.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

use nix::sys::signal::{self as nsig, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

use crate::sys::{Backend, Os};

/// The conventional name of signal `n` (`"SIGTERM"`), or `None` for a number that names no
/// signal on this system.
///
/// # Examples
///
/// ```
/// assert_eq!(proc_os::signal_name(libc::SIGKILL), Some("SIGKILL"));
/// assert_eq!(proc_os::signal_name(-1), None);
/// ```
pub fn signal_name(n: i32) -> Option<&'static str> {
    Signal::try_from(n).ok().map(Signal::as_str)
}

/// Sets the disposition of `signal` to `SIG_IGN` (`ignored`) or `SIG_DFL`. An invalid signal
/// number is ignored.
///
/// For multiproc's crates; not a stable API.
pub fn set_signal_ignored(signal: libc::c_int, ignored: bool) {
    let Ok(signal) = Signal::try_from(signal) else { return };
    let handler = if ignored { SigHandler::SigIgn } else { SigHandler::SigDfl };
    // SAFETY: installing SIG_IGN or SIG_DFL runs no code of ours in signal context; the
    // previous disposition is not needed.
    let _ = unsafe { nsig::signal(signal, handler) };
}

/// Whether `signal`'s disposition is "ignore" in this process (false if the number is invalid).
///
/// For multiproc's crates; not a stable API.
pub fn signal_is_ignored(signal: libc::c_int) -> bool {
    // libc: nix's `sigaction` always installs a new action; reading the current one alone (a null
    // new action) it does not offer.
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current one into `old`, a live sigaction.
    let ret = unsafe { libc::sigaction(signal, std::ptr::null(), old.as_mut_ptr()) };
    // SAFETY: sigaction filled `old` (it succeeded).
    ret == 0 && unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN
}

/// Sends `signal` to process `pid` (never to a process group).
///
/// For multiproc's crates; not a stable API.
///
/// # Errors
///
/// `pid` is 0 or does not fit a `pid_t` (`InvalidInput`: those would signal process groups), or
/// `kill` failed (`ESRCH`: no such process; `EPERM`; `EINVAL`: no such signal).
pub fn kill(pid: u32, signal: libc::c_int) -> io::Result<()> {
    // Pid 0 (and negative pids) would signal whole process groups.
    if pid == 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // A number that names no signal is EINVAL, as `kill` itself reports it.
    let signal = Signal::try_from(signal)?;
    nsig::kill(Pid::from_raw(pid), signal).map_err(io::Error::from)
}

/// Blocks or unblocks `signal` for the calling thread.
///
/// For multiproc's crates; not a stable API.
///
/// # Errors
///
/// `pthread_sigmask` failed (`EINVAL`).
pub fn block_signal(signal: libc::c_int, block: bool) -> io::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::try_from(signal)?);
    let how = if block { SigmaskHow::SIG_BLOCK } else { SigmaskHow::SIG_UNBLOCK };
    nsig::pthread_sigmask(how, Some(&set), None).map_err(io::Error::from)
}

/// Installs `handler` for `signal`, with `SA_RESTART` (and `SA_NOCLDSTOP` for SIGCHLD).
///
/// `handler` runs in signal context: it may only call async-signal-safe functions (such as
/// [`write_byte_in_handler`]).
///
/// For multiproc's crates; not a stable API.
///
/// # Errors
///
/// `sigaction` failed (`EINVAL`: no such signal, or one that cannot be caught).
pub fn on_signal(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    let signal = Signal::try_from(signal)?;
    let mut flags = SaFlags::SA_RESTART;
    if signal == Signal::SIGCHLD {
        flags |= SaFlags::SA_NOCLDSTOP;
    }
    let action = SigAction::new(SigHandler::Handler(handler), flags, SigSet::empty());
    // SAFETY: the caller's handler is async-signal-safe; the previous action is not needed.
    unsafe { nsig::sigaction(signal, &action) }.map(drop).map_err(io::Error::from)
}

/// Writes one byte to `fd` from a signal handler: async-signal-safe, errors ignored, `errno`
/// preserved (the self-pipe trick).
///
/// For multiproc's crates; not a stable API.
pub fn write_byte_in_handler(fd: RawFd) {
    if fd < 0 {
        return;
    }
    let saved = nix::errno::Errno::last_raw();
    // SAFETY: `fd` is not -1; the handler's owner keeps it open while the handler is installed
    // (were it closed, write would only fail with EBADF).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    // nix's `write` is `write(2)` plus a read of errno: async-signal-safe, no allocation.
    let _ = nix::unistd::write(fd, &[1u8]);
    nix::errno::Errno::set_raw(saved);
}

/// A descriptor that reads as ready whenever a child of this process may have ended: the end of
/// a child becomes an event a `poll` loop can wait for with its other descriptors.
///
/// On Linux SIGCHLD is blocked and read from a `signalfd`, so a child's end runs no handler and
/// interrupts no system call; elsewhere a SIGCHLD handler writes to a self-pipe. For a
/// single-threaded process that forks (the fork server and its keeper); one per process. A child
/// it forks calls [`ChildWatch::reset_in_child`] before running anything else.
///
/// For multiproc's crates; not a stable API.
#[derive(Debug)]
pub struct ChildWatch {
    read: OwnedFd,
    _write: Option<OwnedFd>,
}

impl ChildWatch {
    /// Starts watching.
    ///
    /// # Errors
    ///
    /// The signal mask, `signalfd`, the pipe or the handler could not be set up.
    pub fn install() -> io::Result<Self> {
        let (read, write) = Os::watch_children()?;
        Ok(ChildWatch { read, _write: write })
    }

    /// Empties what the descriptor holds, without blocking: a child that ends after this makes it
    /// ready again.
    pub fn drain(&self) {
        Os::drain_children(self.read.as_fd());
    }

    /// In a child forked by a process with a `ChildWatch`: SIGCHLD as a new process has it
    /// (default action, unblocked), and `also_unblock` unblocked in the same step.
    ///
    /// A process that forks many children prepares this once instead, with
    /// [`ChildWatch::child_reset`].
    ///
    /// # Errors
    ///
    /// `also_unblock` is no signal, or the mask could not be changed.
    pub fn reset_in_child(also_unblock: libc::c_int) -> io::Result<()> {
        Self::child_reset(also_unblock)?.apply()
    }

    /// Prepares, in the process that forks, what [`ChildWatch::reset_in_child`] does in each
    /// child: the child then only changes its signal mask, and runs none of the C library's code
    /// that builds a signal set (each page of code a fork-server child runs costs it a page fault).
    ///
    /// # Errors
    ///
    /// `also_unblock` is no signal.
    ///
    /// # Examples
    ///
    /// ```
    /// let reset = proc_os::signal::ChildWatch::child_reset(libc::SIGINT).unwrap();
    /// // ... in each child, first: reset.apply()
    /// # let _ = reset;
    /// ```
    pub fn child_reset(also_unblock: libc::c_int) -> io::Result<ChildReset> {
        let mut unblock = SigSet::empty();
        unblock.add(Signal::SIGCHLD);
        unblock.add(Signal::try_from(also_unblock)?);
        Ok(ChildReset { unblock })
    }
}

/// What a child forked by a process with a [`ChildWatch`] does first, prepared by that process
/// ([`ChildWatch::child_reset`]).
///
/// For multiproc's crates; not a stable API.
#[derive(Debug, Clone, Copy)]
pub struct ChildReset {
    /// SIGCHLD and the signal to unblock with it.
    unblock: SigSet,
}

impl ChildReset {
    /// In the child: SIGCHLD as a new process has it (default action, unblocked), and the
    /// prepared signal unblocked in the same step.
    ///
    /// # Errors
    ///
    /// The mask could not be changed.
    pub fn apply(&self) -> io::Result<()> {
        Os::unwatch_children_in_child();
        Os::unblock_signals(&self.unblock)
    }
}

impl AsFd for ChildWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}
