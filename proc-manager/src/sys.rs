//! The operating-system calls that only proc-manager makes: the janitor that removes a server's
//! socket directory after it (the shared ones are in `proc_os`).

use std::ffi::CStr;
use std::os::fd::{AsRawFd, RawFd};

use nix::errno::Errno;
use nix::sys::resource::{getrlimit, Resource};
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, setsid, unlink, ForkResult, Pid};

/// A process that removes a manager's socket and its directory once the server that started it
/// has ended, however it ended: shut down, killed, or ended by proc-core when its owner died
/// (a daemon's watcher ends it with `_exit`, which runs no cleanup of the server's own).
///
/// It is a bare `fork` of the server that closes every descriptor but one end of a socket pair,
/// ignores the signals a terminal or a Ctrl-C sends, and reads that end until the server's end
/// closes — which happens only when the server has exited. Then it unlinks the socket, removes
/// the directory and exits.
#[derive(Debug)]
pub(crate) struct Janitor {
    pid: Pid,
    /// Keeps `link` out of children the server makes with a plain `fork` (they would hold the
    /// janitor, and with it the server's shutdown, until they exit). Dropped before `link`.
    release: Option<proc_core::handle::ReleaseOnFork>,
    /// The server's end: closed by `drop` (or by the server's exit), which lets the janitor go.
    link: Option<std::os::unix::net::UnixStream>,
}

impl Janitor {
    /// Starts the janitor of `socket` in `dir`.
    ///
    /// # Errors
    ///
    /// A path holds a NUL byte, or the socket pair or the fork fails.
    pub(crate) fn start(dir: &std::path::Path, socket: &std::path::Path) -> std::io::Result<Janitor> {
        use std::os::unix::ffi::OsStrExt;
        let nul = |e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let dir_c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(nul)?;
        let socket_c = std::ffi::CString::new(socket.as_os_str().as_bytes()).map_err(nul)?;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        // Descriptors opened by another thread between this look and the fork would stay open
        // in the janitor: leave room above the highest one open now.
        let last_fd = highest_open_fd().saturating_add(64);
        let keep = theirs.as_raw_fd();
        // SAFETY: the child makes only async-signal-safe calls (setsid, signal, close, read,
        // unlink, rmdir, _exit) on data prepared before the fork, and never returns.
        let pid = match unsafe { fork() }? {
            ForkResult::Parent { child } => child,
            // SAFETY: see above; `dir_c` and `socket_c` are NUL-terminated and live.
            ForkResult::Child => unsafe { janitor_main(keep, last_fd, &socket_c, &dir_c) },
        };
        drop(theirs);
        let release = Some(proc_core::handle::ReleaseOnFork::new(std::os::fd::AsFd::as_fd(&ours)));
        Ok(Janitor { pid, release, link: Some(ours) })
    }
}

impl Drop for Janitor {
    /// Lets the janitor go (it removes what is left) and reaps it.
    fn drop(&mut self) {
        drop(self.release.take());
        drop(self.link.take());
        while waitpid(self.pid, None) == Err(Errno::EINTR) {}
    }
}

/// The janitor's body, in the child of a `fork`.
///
/// # Safety
///
/// Called only in a child just made by `fork`, which it ends. It makes only async-signal-safe
/// calls (nix's wrappers of them allocate nothing: the paths are `CStr`s already).
unsafe fn janitor_main(keep: RawFd, last_fd: RawFd, socket: &CStr, dir: &CStr) -> ! {
    // Out of the terminal's session and deaf to the signals aimed at the program, so that it
    // outlives a Ctrl-C or a closed terminal that ends the server.
    let _ = setsid();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGPIPE] {
        // SAFETY: SIG_IGN runs no code of ours; async-signal-safe.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    for fd in (0..=last_fd).filter(|&fd| fd != keep) {
        // SAFETY: close takes a plain integer (a descriptor not open is EBADF); this process
        // owns every descriptor it has, and keeps only `keep`. Async-signal-safe.
        unsafe { libc::close(fd) };
    }
    let mut byte = 0u8;
    loop {
        // SAFETY: reads at most one byte into `byte`, on this stack; async-signal-safe.
        let n = unsafe { libc::read(keep, (&raw mut byte).cast(), 1) };
        if n == 0 || (n < 0 && Errno::last() != Errno::EINTR) {
            break;
        }
    }
    let _ = unlink(socket);
    // SAFETY: a NUL-terminated path; async-signal-safe (nix has no `rmdir`).
    unsafe { libc::rmdir(dir.as_ptr()) };
    // SAFETY: ends this child without running anything of the server's; async-signal-safe.
    unsafe { libc::_exit(0) }
}

/// The highest descriptor open in this process (a guess from the limit when it cannot be listed).
fn highest_open_fd() -> RawFd {
    let listed = std::fs::read_dir("/dev/fd").ok().and_then(|entries| {
        entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<RawFd>().ok()).max()
    });
    if let Some(fd) = listed {
        return fd;
    }
    if let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) {
        return RawFd::try_from(soft.min(1 << 16)).unwrap_or(1 << 16) - 1;
    }
    1023
}
