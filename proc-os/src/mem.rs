//! Memory and clock helpers that other processes must agree on.

use nix::time::{clock_gettime, ClockId};

use crate::sys::{Backend, Os};

/// Maps the pages of `[ptr, ptr + len)` writable ahead of the writes: in one system call on Linux
/// (`MADV_POPULATE_WRITE`, 5.14; older kernels refuse it and the writes fault as usual); nothing
/// elsewhere. A hint only.
///
/// # Safety
///
/// `ptr` is page-aligned and `[ptr, ptr + len)` lies inside one shared mapping of this process.
pub unsafe fn populate_write(ptr: *mut u8, len: usize) {
    // SAFETY: the caller upholds the same contract.
    unsafe { Os::populate_write(ptr, len) }
}

/// The system-wide monotonic clock in nanoseconds: the same clock in every process, so a time one
/// process writes to shared memory means the same to another. 0 if the clock cannot be read.
///
/// # Examples
///
/// ```
/// let a = proc_os::monotonic_ns();
/// assert!(proc_os::monotonic_ns() >= a);
/// ```
pub fn monotonic_ns() -> u64 {
    let Ok(ts) = clock_gettime(ClockId::CLOCK_MONOTONIC) else { return 0 };
    (ts.tv_sec() as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec() as u64)
}
