//! proc-core's own OS calls: the table of descriptors that children made by a plain `fork` let go
//! of (see `handle::ReleaseOnFork`), and its `pthread_atfork` handler.
//!
//! Every other OS call, and everything that differs between Linux and macOS, is proc-os's (one OS
//! layer for the workspace).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;

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
