//! The backend seam: everything that differs between Linux and the portable POSIX backend.
//!
//! `linux.rs` is the Linux backend; `unix.rs` is the portable backend that macOS uses, and that
//! Linux uses too with the `force-portable` feature, so that Linux test runs cover the macOS code
//! paths. Each defines a unit struct `Os` that implements [`Backend`], so a backend that lacks an
//! item, or gives it another signature, does not compile. Callers name `Os::item`, a static call
//! (no trait objects anywhere).
//!
//! | item | Linux | portable (macOS; Linux with `force-portable`) |
//! |---|---|---|
//! | `NAME` | `"linux"` | `"portable"` |
//! | `wait`, `wake` | `futex(FUTEX_WAIT/WAKE)`, shared (no private flag) | `os_sync_wait_on_address` (shared), else `__ulock_wait` (shared), else polling |
//! | `wait_backend()` | `"futex"` | the mechanism found at run time |
//! | `is_zombie(pid)` | `/proc/<pid>/stat` | `proc_pidinfo` on macOS, `/proc` on Linux |
//! | `socketpair()` | `SOCK_CLOEXEC`, atomic | `FD_CLOEXEC` after creation; `SO_NOSIGPIPE` where the OS has it |
//! | `SEND_FLAGS` | `MSG_NOSIGNAL` | `MSG_NOSIGNAL`, except where `SO_NOSIGPIPE` does that job (macOS) |
//! | `RECV_FLAGS`, `received_fd()` | `MSG_CMSG_CLOEXEC` | set `FD_CLOEXEC` after `recvmsg` |
//! | `populate_write()` | `madvise(MADV_POPULATE_WRITE)` | nothing: writes fault pages in |
//! | `INLINE_RESULT_MAX` | 32 KiB (stream buffers hold about 200 KiB) | 2 KiB (macOS buffers 8 KiB) |
//! | `exe_path()` | `/proc/self/exe` (the running image, even if replaced on disk) | `current_exe()` |
//! | `anonymous_memory(len)` | sealed `memfd_create` | `shm_open` of a random name, unlinked at once |
//! | `close_fds_except(keep)` | `close_range(2)` | close what `/dev/fd` lists |
//! | `thread_count()` | `/proc/self/task` | `proc_pidinfo` on macOS, `/proc` on Linux |
//! | `pipe()` | `pipe2(O_CLOEXEC)`, atomic | `FD_CLOEXEC` after creation |
//! | `become_subreaper()` | `PR_SET_CHILD_SUBREAPER` | unsupported (orphans go to init) |
//! | `pidfd(pid)` | `pidfd_open(2)` (Linux 5.3) | unsupported |
//! | `Sibling`, `sibling_fork()`, `fork_sibling()` | `clone(CLONE_PARENT)` with the C library's own `_Fork` steps, where glibc publishes its thread block's `tid` offset | unsupported (macOS has no `CLONE_PARENT`) |
//! | `dup_onto(src, dst)` | `dup3(O_CLOEXEC)`, atomic | `dup2`, then `FD_CLOEXEC` |
//! | `start_time(pid)` | `/proc/<pid>/stat` | `proc_pidinfo` on macOS, `/proc` on Linux |
//! | `watch_children()`, `drain_children()`, `unwatch_children_in_child()` | SIGCHLD blocked and read from a `signalfd` | a SIGCHLD handler that writes to a self-pipe |
//! | `Affinity`, `narrow_affinity()`, `restore_affinity()`, `allowed_cpus()` | `sched_getaffinity`/`sched_setaffinity` of the calling thread | nothing: no CPU affinity (macOS has none to set) |
//! | `write`, `send`, `sendmsg`, `getpid`, `unblock_signals` | the system calls through the C library's one `syscall` entry point (see below) | the C library's functions |
//!
//! A fork-server child makes its first system calls (its pid, its report, its signal mask) before
//! its target runs, in page tables that map none of the C library's code: each distinct function
//! of the library it runs costs it a page fault, which maps (and its exit then unmaps) 16 pages.
//! On Linux those calls go through the library's `syscall` function, which `close_fds_except`
//! runs anyway, so that they cost one such fault instead of one per function.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

cfg_if::cfg_if! {
    if #[cfg(all(target_os = "linux", not(feature = "force-portable")))] {
        #[path = "linux.rs"]
        mod imp;
    } else {
        #[path = "unix.rs"]
        mod imp;
    }
}

/// The backend of this build.
pub(crate) use imp::Os;

/// What every backend provides (see the table in the module docs).
pub(crate) trait Backend {
    /// The backend's name: `"linux"` or `"portable"`.
    const NAME: &'static str;

    /// Flags for every send on a stream socket: no SIGPIPE when the peer is gone.
    const SEND_FLAGS: libc::c_int;

    /// Flags for `recvmsg`: received descriptors close-on-exec, where that can be atomic.
    const RECV_FLAGS: libc::c_int;

    /// Waits while `word` holds `expected`, at most `timeout`. False only when the timeout passed.
    fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool;

    /// Wakes up to `n` waiters on `word` (`u32::MAX`: all).
    fn wake(word: &AtomicU32, n: u32);

    /// The wait/wake mechanism in use.
    fn wait_backend() -> &'static str;

    /// Whether `pid` is a zombie (ended, not reaped).
    fn is_zombie(pid: u32) -> bool;

    /// A connected pair of close-on-exec, SIGPIPE-free Unix stream sockets.
    fn socketpair() -> io::Result<(OwnedFd, OwnedFd)>;

    /// Finishes a descriptor received with `RECV_FLAGS` (makes it close-on-exec if still needed).
    fn received_fd(fd: BorrowedFd<'_>) -> io::Result<()>;

    /// Maps the pages of `[ptr, ptr + len)` writable ahead of the writes, where the OS can.
    ///
    /// # Safety
    ///
    /// `ptr` is page-aligned and `[ptr, ptr + len)` lies inside one shared mapping of this process.
    unsafe fn populate_write(ptr: *mut u8, len: usize);

    /// The largest message a process may write to a Unix stream socket that nobody reads yet
    /// without ever blocking (well within the default send buffer).
    const INLINE_RESULT_MAX: usize;

    /// The running executable, as a path that `exec` can take.
    fn exe_path() -> io::Result<PathBuf>;

    /// Anonymous shared memory of `len` bytes that no process it is passed to can resize.
    fn anonymous_memory(len: usize) -> io::Result<OwnedFd>;

    /// Closes every descriptor from 3 up, except `keep`.
    fn close_fds_except(keep: &[RawFd]);

    /// The number of threads of this process, where the OS can tell.
    fn thread_count() -> Option<usize>;

    /// A close-on-exec pipe: (read end, write end).
    fn pipe() -> io::Result<(OwnedFd, OwnedFd)>;

    /// `write(2)`: how many bytes went.
    fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize>;

    /// `send(2)` of `buf` with `flags` on a connected socket: how many bytes went.
    fn send(fd: BorrowedFd<'_>, buf: &[u8], flags: libc::c_int) -> io::Result<usize>;

    /// `sendmsg(2)`: how many bytes went.
    ///
    /// # Safety
    ///
    /// The buffers and the control data `msg` points at are valid for reads for the call.
    unsafe fn sendmsg(fd: BorrowedFd<'_>, msg: &libc::msghdr, flags: libc::c_int) -> io::Result<usize>;

    /// This process' id (`getpid(2)`).
    fn getpid() -> u32;

    /// Unblocks the signals of `set` for the calling thread.
    fn unblock_signals(set: &nix::sys::signal::SigSet) -> io::Result<()>;

    /// Makes this process the child subreaper of its descendants, where the OS has them.
    fn become_subreaper() -> io::Result<()>;

    /// A descriptor that reads as ready once process `pid` has ended.
    fn pidfd(pid: u32) -> io::Result<OwnedFd>;

    /// What `fork_sibling` needs, found once by `sibling_fork` in the thread that forks.
    type Sibling: std::fmt::Debug;

    /// Finds what forking children of this process' parent takes; `Unsupported` where the OS or
    /// the C library does not allow it.
    fn sibling_fork() -> io::Result<Self::Sibling>;

    /// Forks a child of this process' parent (see `child::SiblingFork::fork`).
    ///
    /// # Safety
    ///
    /// As `child::SiblingFork::fork`.
    unsafe fn fork_sibling(sibling: &Self::Sibling) -> io::Result<u32>;

    /// Makes `dst` refer to what `src` refers to, close-on-exec.
    fn dup_onto(src: BorrowedFd<'_>, dst: RawFd) -> io::Result<()>;

    /// When process `pid` started (an opaque, comparable value), `None` if unknown.
    fn start_time(pid: u32) -> Option<u64>;

    /// Starts watching for the end of this process's children (a single-threaded process, once):
    /// the returned descriptor reads as ready after a SIGCHLD; the second one, if any, must stay
    /// open as long as the first.
    fn watch_children() -> io::Result<(OwnedFd, Option<OwnedFd>)>;

    /// Empties what `watch_children`'s descriptor holds, without blocking.
    fn drain_children(fd: BorrowedFd<'_>);

    /// In a child forked by a process that watches its children: undoes what `watch_children`
    /// set up besides blocking SIGCHLD (the caller then unblocks SIGCHLD, which gives it the
    /// state a new process has: default action, unblocked).
    fn unwatch_children_in_child();

    /// A thread's CPU affinity, as `narrow_affinity` saves it.
    type Affinity: Copy + std::fmt::Debug + Send + Sync + 'static;

    /// Narrows the calling thread's CPU affinity to the CPU it runs on and returns the affinity
    /// it had; `None`, with nothing changed, where that names one CPU already, where the OS has
    /// no CPU affinity, or when a call fails.
    fn narrow_affinity() -> Option<Self::Affinity>;

    /// Gives the calling thread `saved` back; every CPU it may use if `saved` names none it may
    /// use any more.
    fn restore_affinity(saved: &Self::Affinity) -> io::Result<()>;

    /// How many CPUs the calling thread may run on (its CPU affinity); `None` where the OS has
    /// no CPU affinity or the call fails.
    fn allowed_cpus() -> Option<usize>;
}

/// Runs `f` on the fields of `/proc/<pid>/stat` that follow the command name (from field 3, the
/// state, on); `None` if the process is unknown, or `/proc` belongs to another pid namespace.
#[cfg(target_os = "linux")]
fn with_proc_stat<T>(pid: u32, f: impl FnOnce(&str) -> Option<T>) -> Option<T> {
    // A `/proc` mounted for another pid namespace (the host's, seen from inside `unshare --pid`
    // without a fresh mount, say) names other processes by these numbers: believe it only when its
    // `self` is this process.
    let own = std::fs::read_link("/proc/self").ok()?;
    if own.as_os_str().to_str()? != std::process::id().to_string() {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: the fields follow its end.
    let (_, rest) = stat.rsplit_once(')')?;
    f(rest)
}

/// The state letter in `/proc/<pid>/stat` (`R`, `S`, `Z`, ...), `None` if the process is unknown.
#[cfg(target_os = "linux")]
pub(crate) fn proc_state(pid: u32) -> Option<char> {
    with_proc_stat(pid, |rest| rest.trim_start().chars().next())
}

/// When process `pid` started, in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
#[cfg(target_os = "linux")]
pub(crate) fn proc_start_time(pid: u32) -> Option<u64> {
    // `rest` starts with field 3; the start time is field 22.
    with_proc_stat(pid, |rest| rest.split_whitespace().nth(19)?.parse().ok())
}
