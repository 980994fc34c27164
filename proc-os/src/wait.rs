//! The wait/wake seam: sleep while a 32-bit word in shared memory holds a value, and wake the
//! sleepers. Shared futexes on Linux; on macOS `os_sync_wait_on_address` or `__ulock_wait`,
//! looked up at run time; polling as the last resort (and on Linux with `force-portable`).
//!
//! A word is any `AtomicU32`, usually in memory shared between processes (a `MAP_SHARED`
//! mapping): the calls use the shared (not process-private) form.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use crate::sys::{Backend, Os};

/// Sleeps while `word` holds `expected`, at most `timeout` (`None`: no limit). Returns false only
/// when the timeout passed; true means "look again" (woken, changed, interrupted or spurious), so
/// callers loop on their own condition.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::AtomicU32;
/// use std::time::Duration;
///
/// let word = AtomicU32::new(1);
/// // The word does not hold 0: the wait returns at once.
/// assert!(proc_os::wait(&word, 0, None));
/// // It holds 1 and nobody wakes it: the wait times out.
/// assert!(!proc_os::wait(&word, 1, Some(Duration::from_millis(1))));
/// ```
#[inline]
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    Os::wait(word, expected, timeout)
}

/// Wakes up to `n` processes or threads sleeping in [`wait`] on `word`.
///
/// # Examples
///
/// ```
/// let word = std::sync::atomic::AtomicU32::new(0);
/// proc_os::wake(&word, 1); // nobody sleeps: nothing happens
/// ```
#[inline]
pub fn wake(word: &AtomicU32, n: u32) {
    Os::wake(word, n)
}

/// Wakes every process or thread sleeping in [`wait`] on `word`.
///
/// # Examples
///
/// ```
/// let word = std::sync::atomic::AtomicU32::new(0);
/// proc_os::wake_all(&word);
/// ```
#[inline]
pub fn wake_all(word: &AtomicU32) {
    Os::wake(word, u32::MAX)
}

/// The wait/wake mechanism in use: `"futex"`, `"os_sync_wait_on_address"`, `"__ulock_wait"` or
/// `"polling"`.
///
/// # Examples
///
/// ```
/// assert!(["futex", "os_sync_wait_on_address", "__ulock_wait", "polling"].contains(&proc_os::wait_backend()));
/// ```
pub fn wait_backend() -> &'static str {
    Os::wait_backend()
}
