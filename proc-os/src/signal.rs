//! Signals: names, dispositions, masks, handlers and sending them.

use std::io;
use std::os::fd::RawFd;

use crate::fd::cvt;

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
    nix::sys::signal::Signal::try_from(n).ok().map(nix::sys::signal::Signal::as_str)
}

/// Sets the disposition of `signal` to `SIG_IGN` (`ignored`) or `SIG_DFL`. An invalid signal
/// number is ignored.
///
/// For multiproc's crates; not a stable API.
pub fn set_signal_ignored(signal: libc::c_int, ignored: bool) {
    let handler = if ignored { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: installing SIG_IGN or SIG_DFL runs no code of ours in signal context; the
    // previous disposition is not needed.
    unsafe { libc::signal(signal, handler) };
}

/// Whether `signal`'s disposition is "ignore" in this process (false if the number is invalid).
///
/// For multiproc's crates; not a stable API.
pub fn signal_is_ignored(signal: libc::c_int) -> bool {
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
    // SAFETY: kill takes plain integers.
    cvt(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// Blocks or unblocks `signal` for the calling thread.
///
/// For multiproc's crates; not a stable API.
///
/// # Errors
///
/// `pthread_sigmask` failed (`EINVAL`).
pub fn block_signal(signal: libc::c_int, block: bool) -> io::Result<()> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    let how = if block { libc::SIG_BLOCK } else { libc::SIG_UNBLOCK };
    // SAFETY: `set` is a live sigset_t that sigemptyset initializes before sigaddset and
    // pthread_sigmask read it; the old mask is not needed.
    let ret = unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), signal);
        libc::pthread_sigmask(how, set.as_ptr(), std::ptr::null_mut())
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(ret))
    }
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
    // SAFETY: an all-zero sigaction is a valid "no flags, empty mask" value to fill in.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler as libc::sighandler_t;
    action.sa_flags = libc::SA_RESTART | if signal == libc::SIGCHLD { libc::SA_NOCLDSTOP } else { 0 };
    // SAFETY: `action.sa_mask` is a live sigset_t; `action` is fully initialized; the caller's
    // handler is async-signal-safe.
    unsafe {
        libc::sigemptyset(&mut action.sa_mask);
        cvt(libc::sigaction(signal, &action, std::ptr::null_mut())).map(drop)
    }
}

/// Writes one byte to `fd` from a signal handler: async-signal-safe, errors ignored, `errno`
/// preserved (the self-pipe trick).
///
/// For multiproc's crates; not a stable API.
pub fn write_byte_in_handler(fd: RawFd) {
    let saved = nix::errno::Errno::last_raw();
    let byte = 1u8;
    // SAFETY: write is async-signal-safe; `byte` is a live 1-byte buffer.
    unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    nix::errno::Errno::set_raw(saved);
}
