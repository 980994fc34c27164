//! The operating-system calls that only proc-manager makes: the janitor that removes a server's
//! socket directory after it (the shared ones are in `proc_os`).

use std::os::fd::{AsRawFd, RawFd};

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
    pid: libc::pid_t,
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
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: see above; `dir_c` and `socket_c` are NUL-terminated and live.
            unsafe { janitor_main(keep, last_fd, socket_c.as_ptr(), dir_c.as_ptr()) }
        }
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
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child; `status` is a live c_int.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if rc >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break;
            }
        }
    }
}

/// The janitor's body, in the child of a `fork`.
///
/// # Safety
///
/// Called only in a child just made by `fork`, which it ends; `socket` and `dir` are
/// NUL-terminated paths. It makes only async-signal-safe calls.
unsafe fn janitor_main(
    keep: RawFd,
    last_fd: RawFd,
    socket: *const libc::c_char,
    dir: *const libc::c_char,
) -> ! {
    // Out of the terminal's session and deaf to the signals aimed at the program, so that it
    // outlives a Ctrl-C or a closed terminal that ends the server.
    // SAFETY: setsid takes no arguments; async-signal-safe.
    unsafe { libc::setsid() };
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE] {
        // SAFETY: a valid signal number and SIG_IGN; async-signal-safe.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
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
        // SAFETY: errno's location is valid for the calling thread.
        if n == 0 || (n < 0 && unsafe { *errno() } != libc::EINTR) {
            break;
        }
    }
    // SAFETY: the caller's NUL-terminated path; async-signal-safe.
    unsafe { libc::unlink(socket) };
    // SAFETY: as above.
    unsafe { libc::rmdir(dir) };
    // SAFETY: ends this child without running anything of the server's; async-signal-safe.
    unsafe { libc::_exit(0) }
}

/// The calling thread's `errno`.
fn errno() -> *mut libc::c_int {
    #[cfg(target_os = "linux")]
    // SAFETY: returns the calling thread's errno location; async-signal-safe.
    let location = unsafe { libc::__errno_location() };
    #[cfg(not(target_os = "linux"))]
    // SAFETY: as above (macOS and the BSDs name it `__error`).
    let location = unsafe { libc::__error() };
    location
}

/// The highest descriptor open in this process (a guess from the limit when it cannot be listed).
fn highest_open_fd() -> RawFd {
    let listed = std::fs::read_dir("/dev/fd").ok().and_then(|entries| {
        entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<RawFd>().ok()).max()
    });
    if let Some(fd) = listed {
        return fd;
    }
    let mut limit = std::mem::MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: `limit` is a live buffer for one rlimit struct that getrlimit fills.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, limit.as_mut_ptr()) } == 0 {
        // SAFETY: getrlimit succeeded, so it filled the struct.
        let soft = unsafe { limit.assume_init() }.rlim_cur;
        return RawFd::try_from(soft.min(1 << 16)).unwrap_or(1 << 16) - 1;
    }
    1023
}
