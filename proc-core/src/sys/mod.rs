//! The operating-system seam of proc-core.
//!
//! Everything that differs between Linux and macOS lives behind this module. `linux.rs` is the Linux
//! backend; `unix.rs` is the portable backend that macOS uses, and that Linux uses too when the
//! `force-portable` feature is on, so that Linux test runs cover the macOS code paths.
//!
//! The contract each backend implements:
//!
//! | item | Linux | portable (macOS) |
//! |---|---|---|
//! | `DEFAULT_START_METHOD` (a name) | `"forkserver"` | `"spawn"` |
//! | `exe_path()` | `/proc/self/exe` (the running image, even if replaced on disk) | `current_exe()` |
//! | `anonymous_memory(len)` | sealed `memfd_create` | `shm_open` of a random name, unlinked at once |
//! | `close_fds_except(keep)` | `close_range(2)` | close what `/dev/fd` lists |
//! | `thread_count()` | `/proc/self/task` | `proc_pidinfo` on macOS, unknown elsewhere |
//! | `pipe()` | atomic `O_CLOEXEC` | create, then `FD_CLOEXEC` |
//! | `RESULT_LOWAT` | 64 KiB (stream buffers are larger) | none (8 KiB buffers: a larger mark would never fire) |
//! | `become_subreaper()` | `PR_SET_CHILD_SUBREAPER` (the fork server's keeper) | unsupported (orphans go to init) |
//! | `start_time(pid)` | `/proc/<pid>/stat` | `proc_pidinfo` on macOS, `/proc` on Linux |
//!
//! The helpers below the backend selection are POSIX and shared by both.
//!
//! Sockets (`socketpair`, the send and receive flags), `poll` and the `errno` helpers are proc-os's
//! ([`proc_os::socket`], [`proc_os::fd`]).
//!
//! This module is a leaf: it imports nothing from the rest of proc-core, so every other module can
//! build on it without an import circle.

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;

cfg_if::cfg_if! {
    if #[cfg(all(target_os = "linux", not(feature = "force-portable")))] {
        #[path = "linux.rs"]
        mod imp;
    } else {
        #[path = "unix.rs"]
        mod imp;
    }
}

pub(crate) use imp::{
    anonymous_memory, become_subreaper, close_fds_except, dup_onto, exe_path, pipe, start_time, thread_count,
    BACKEND, DEFAULT_START_METHOD, RESULT_LOWAT,
};
use proc_os::fd::{cvt, retry, set_cloexec};

/// When process `pid` started, in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
#[cfg(target_os = "linux")]
fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: count fields after its end.
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts with field 3 (the state); the start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A random number for names; not for cryptography.
pub(crate) fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

/// Duplicates `fd` to a new descriptor numbered at least `min`, with `FD_CLOEXEC` set.
pub(crate) fn dup_cloexec(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC takes an integer argument and touches no memory.
    let new = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) })?;
    // SAFETY: `new` was just returned by fcntl, so it is open and owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Makes `poll` report socket `fd` readable only once `bytes` are queued (or at end of stream).
/// Reads with `MSG_DONTWAIT` still return whatever is there.
pub(crate) fn set_recv_lowat(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `value` is a live c_int and the length passed is its size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Sets the disposition of `signal` to `SIG_IGN` or `SIG_DFL`.
pub(crate) fn set_signal_ignored(signal: libc::c_int, ignored: bool) {
    let handler = if ignored { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: installing SIG_IGN or SIG_DFL runs no code of ours in signal context; the
    // previous disposition is not needed.
    unsafe { libc::signal(signal, handler) };
}

/// Sends `signal` to `pid`.
pub(crate) fn kill(pid: u32, signal: libc::c_int) -> io::Result<()> {
    // Pid 0 (and negative pids) would signal whole process groups.
    if pid == 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill takes plain integers.
    cvt(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// How a process ended, as Python's `exitcode` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// `exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// Python's `exitcode`: the exit code, or minus the signal number.
    pub(crate) fn exitcode(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => -s,
        }
    }

    pub(crate) fn from_exitcode(code: i32) -> Self {
        if code < 0 {
            ExitStatus::Signal(-code)
        } else {
            ExitStatus::Code(code)
        }
    }

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

/// Reaps `pid` if it has ended (`block == false`) or once it ends (`block == true`).
///
/// Returns `None` when the child is still running and `block` is false.
pub(crate) fn waitpid(pid: u32, block: bool) -> io::Result<Option<ExitStatus>> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        let mut status = 0;
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
pub(crate) enum AnyChild {
    /// This child ended and is reaped now.
    Ended(u32, ExitStatus),
    /// Children exist, none has ended.
    Running,
    /// No children at all.
    None,
}

/// Reaps any ended child without blocking; used by the fork server and its keeper.
pub(crate) fn wait_any() -> io::Result<AnyChild> {
    loop {
        let mut status = 0;
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

/// The process id of the caller.
pub(crate) fn getpid() -> u32 {
    std::process::id()
}

/// The process id of the caller's parent.
pub(crate) fn getppid() -> u32 {
    std::os::unix::process::parent_id()
}

/// Number of CPUs online in the system (Python's `os.cpu_count()`).
pub(crate) fn online_cpus() -> Option<usize> {
    // SAFETY: sysconf takes a plain integer name.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0)
}

/// Opens `/dev/null` for reading and writing onto descriptor `target`.
pub(crate) fn dev_null_onto(target: RawFd) -> io::Result<()> {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    // SAFETY: dup2 takes plain integers; `null` stays open for the duration of the call.
    retry(|| cvt(unsafe { libc::dup2(null.as_raw_fd(), target) })).map(drop)
}

/// Descriptors that a child made by a plain `fork` lets go of as soon as it first runs (-1: a free
/// slot); see `handle::ReleaseOnFork`.
static RELEASED_ON_FORK: [AtomicI32; 1024] = [const { AtomicI32::new(-1) }; 1024];

/// Lists `fd` for release in children made by `fork`. `None`: the list is full.
pub(crate) fn release_on_fork(fd: RawFd) -> Option<usize> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: registers a handler that only makes async-signal-safe calls.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(release_in_child)) };
        if rc != 0 {
            tracing::debug!("cannot register the fork handler that releases descriptors");
        }
    });
    RELEASED_ON_FORK
        .iter()
        .position(|s| s.compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Relaxed).is_ok())
}

/// Takes `fd` off the list at `slot`, if it is still there.
pub(crate) fn keep_on_fork(slot: usize, fd: RawFd) {
    if let Some(s) = RELEASED_ON_FORK.get(slot) {
        let _ = s.compare_exchange(fd, -1, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// Runs in every child made by `fork`, with one thread: each listed descriptor becomes
/// `/dev/null`. The numbers stay taken and listed: their owners unlist and close them later, if ever.
extern "C" fn release_in_child() {
    let mut null = -1;
    for slot in &RELEASED_ON_FORK {
        let fd = slot.load(Ordering::Acquire);
        if fd < 0 {
            continue;
        }
        if null < 0 {
            // SAFETY: open of a constant, NUL-terminated path; async-signal-safe.
            null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            if null < 0 {
                return;
            }
        }
        // SAFETY: dup2 and fcntl on descriptors this process holds; both async-signal-safe.
        unsafe {
            if libc::dup2(null, fd) >= 0 {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
    if null >= 0 {
        // SAFETY: closes the descriptor opened above.
        unsafe { libc::close(null) };
    }
}

/// Forks the calling process.
///
/// # Safety
///
/// In the child only the calling thread exists. Until it execs or exits, the child must not rely on
/// any lock that another thread of the parent may have held at the time of the fork. glibc keeps
/// `malloc` usable after `fork` as an extension; other allocators may not.
pub(crate) unsafe fn fork() -> io::Result<u32> {
    // SAFETY: the caller upholds the contract above.
    let pid = cvt(unsafe { libc::fork() })?;
    Ok(pid as u32)
}

/// Reads into `buf`, retrying `EINTR`. `Ok(0)`: end of file.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    retry(|| {
        // SAFETY: `buf` is a live, exclusively borrowed buffer of `buf.len()` bytes.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    })
}

/// Writes all of `buf`, retrying `EINTR`.
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = retry(|| {
            // SAFETY: `buf` is a live buffer of `buf.len()` bytes.
            let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
            usize::try_from(n).map_err(|_| io::Error::last_os_error())
        })?;
        buf = &buf[n..];
    }
    Ok(())
}

/// Writes one byte from a signal handler: async-signal-safe, errors ignored, `errno` preserved.
pub(crate) fn write_byte_in_handler(fd: RawFd) {
    let saved = nix::errno::Errno::last_raw();
    let byte = 1u8;
    // SAFETY: write is async-signal-safe; `byte` is a live 1-byte buffer.
    unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    nix::errno::Errno::set_raw(saved);
}

/// Whether the peer of stream socket `fd` has closed its end. With `block`, waits until the peer
/// closes or sends something; without, answers at once. Nothing is consumed.
pub(crate) fn peer_closed(fd: BorrowedFd<'_>, block: bool) -> io::Result<bool> {
    let flags = if block { libc::MSG_PEEK } else { libc::MSG_PEEK | libc::MSG_DONTWAIT };
    let mut byte = [0u8; 1];
    let n = retry(|| {
        // SAFETY: `byte` is a live 1-byte buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), byte.as_mut_ptr().cast(), 1, flags) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    });
    match n {
        Ok(n) => Ok(n == 0),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until the peer of stream socket `fd` closes its end (or the socket fails), reading and
/// discarding whatever the peer sends meanwhile.
///
/// It reads rather than polling for `POLLHUP` alone: macOS registers a `poll` wait only for the
/// events requested, so `events: 0` never wakes there, and a socket with unread data would keep
/// `POLLIN` set forever. Reading to end of file behaves the same on every system.
pub(crate) fn wait_hangup(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: `buf` is a live buffer of `buf.len()` bytes.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        match usize::try_from(n) {
            Ok(0) => return Ok(()),
            Ok(_) => continue,
            Err(_) => {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    // A non-blocking socket: wait until it is readable (data or end of file).
                    io::ErrorKind::WouldBlock => {
                        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                        // SAFETY: `pfd` is one live pollfd struct.
                        match cvt(unsafe { libc::poll(&mut pfd, 1, -1) }) {
                            Ok(_) => continue,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err(e),
                        }
                    }
                    _ => return Err(e),
                }
            }
        }
    }
}

/// Closes a descriptor number that no Rust object will close (its owner is leaked).
///
/// # Safety
///
/// Nothing may use or close `fd` afterwards: its owning object must never be dropped.
pub(crate) unsafe fn close_raw(fd: RawFd) {
    // SAFETY: the caller guarantees that `fd` has no other user.
    unsafe { libc::close(fd) };
}

/// Sets `O_NONBLOCK` on `fd`.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL take integer arguments and touch no memory.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

/// Blocks or unblocks `signal` for the calling thread.
pub(crate) fn block_signal(signal: libc::c_int, block: bool) -> io::Result<()> {
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
/// `handler` runs in signal context: it may only call async-signal-safe functions.
pub(crate) fn on_signal(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
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

/// Registers `f` to run at normal process exit.
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: `f` is a plain extern "C" function that lives for the whole program.
    unsafe { libc::atexit(f) };
}

/// Opens the POSIX shared-memory object `name` read-write, creating it (exclusively, mode 0600)
/// if `create`; close-on-exec.
pub(crate) fn shm_open(name: &std::ffi::CStr, create: bool) -> io::Result<OwnedFd> {
    let flags = if create { libc::O_CREAT | libc::O_EXCL | libc::O_RDWR } else { libc::O_RDWR };
    // SAFETY: `name` is a valid NUL-terminated string; flags and mode are plain integers (the
    // mode is passed as an unsigned int, as the variadic C declaration expects).
    let fd = cvt(unsafe { libc::shm_open(name.as_ptr(), flags, 0o600 as libc::c_uint) })?;
    // SAFETY: `fd` was just returned by shm_open and is owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    set_cloexec(fd.as_fd())?;
    Ok(fd)
}

/// Removes the POSIX shared-memory object `name`.
pub(crate) fn shm_unlink(name: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: `name` is a valid NUL-terminated string.
    cvt(unsafe { libc::shm_unlink(name.as_ptr()) }).map(drop)
}

/// Sets the size of the file or shared-memory object `fd`.
pub(crate) fn set_len(fd: BorrowedFd<'_>, len: usize) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: ftruncate takes plain integers.
    retry(|| cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len) })).map(drop)
}

/// The size of the file or shared-memory object `fd`.
pub(crate) fn file_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    file_info(fd).map(|info| info.size)
}

/// What `fstat` tells of a file or shared-memory object.
pub(crate) struct FileInfo {
    pub(crate) size: u64,
    /// The owner's user id.
    pub(crate) owner: u32,
    /// The permission bits.
    pub(crate) mode: u32,
}

/// The size, owner and permission bits of the file or shared-memory object `fd` (one `fstat`).
pub(crate) fn file_info(fd: BorrowedFd<'_>) -> io::Result<FileInfo> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `stat` is a live buffer for one stat struct that fstat fills.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), stat.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it filled the struct.
    let stat = unsafe { stat.assume_init() };
    // `mode_t` is a u32 on Linux and a u16 on macOS.
    #[allow(clippy::useless_conversion)]
    let mode = u32::from(stat.st_mode) & 0o7777;
    Ok(FileInfo { size: u64::try_from(stat.st_size).unwrap_or(0), owner: stat.st_uid, mode })
}

/// The effective user id of the caller.
pub(crate) fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Immediately ends the calling process without running destructors or `atexit` handlers.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// Puts this process in a session (and process group) of its own, with no controlling terminal:
/// the hangup of the terminal it was started from no longer reaches it.
pub(crate) fn new_session() -> io::Result<()> {
    nix::unistd::setsid().map(drop).map_err(io::Error::from)
}

#[cfg(test)]
mod test;
