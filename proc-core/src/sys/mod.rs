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
//! The POSIX wrappers both backends share are proc-os's; what stays below is the release-on-fork table.
//!
//! Sockets (`socketpair`, the send and receive flags), `poll` and the `errno` helpers are proc-os's
//! ([`proc_os::socket`], [`proc_os::fd`]).
//!
//! This module is a leaf: it imports nothing from the rest of proc-core, so every other module can
//! build on it without an import circle.

use std::os::fd::RawFd;
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

/// When process `pid` started, in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
#[cfg(target_os = "linux")]
fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: count fields after its end.
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts with field 3 (the state); the start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
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
