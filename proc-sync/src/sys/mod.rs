//! The OS seam of proc-sync: wait on a 32-bit word in shared memory, and wake its waiters.
//!
//! | item | Linux | portable (macOS; Linux with `force-portable`) |
//! |---|---|---|
//! | `wait(word, expected, timeout)` | `futex(FUTEX_WAIT)`, shared (no private flag) | `os_sync_wait_on_address_with_timeout` (shared), else `__ulock_wait` (shared), else polling |
//! | `wake(word, n)` | `futex(FUTEX_WAKE)` | `os_sync_wake_by_address_{any,all}`, else `__ulock_wake`, else nothing (pollers look again) |
//! | `BACKEND` | `"futex"` | the mechanism found at run time |
//!
//! `wait` returns when the word no longer holds `expected`, when woken, spuriously, or when the
//! timeout passed; callers re-check their condition in a loop. Both work on words shared between
//! processes through `MAP_SHARED` memory.

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

/// Waits while `word` holds `expected`, at most `timeout`. Returns false only when the timeout
/// passed; true means "look again" (woken, changed, interrupted or spurious).
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    imp::wait(word, expected, timeout)
}

/// Wakes up to `n` processes or threads waiting on `word`.
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    imp::wake(word, n)
}

/// Wakes every waiter on `word`.
pub(crate) fn wake_all(word: &AtomicU32) {
    imp::wake(word, u32::MAX)
}

/// The wait/wake mechanism in use.
pub(crate) fn backend() -> &'static str {
    imp::backend()
}

/// Whether process `pid` is running. A zombie (ended, not yet reaped) counts as dead.
pub(crate) fn process_alive(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else { return false };
    if raw <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let ret = unsafe { libc::kill(raw, 0) };
    // EPERM: it exists but belongs to someone else.
    let exists = ret == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !imp::is_zombie(pid)
}

/// This process' id, cached (a lock's fast path must not make a system call); refreshed in the
/// child after every `fork`.
pub(crate) fn pid() -> u32 {
    use std::sync::atomic::Ordering;
    static PID: AtomicU32 = AtomicU32::new(0);
    static ATFORK: std::sync::Once = std::sync::Once::new();
    extern "C" fn forget() {
        PID.store(0, Ordering::Relaxed);
    }
    let cached = PID.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    ATFORK.call_once(|| {
        // SAFETY: `forget` is a plain extern "C" function that only stores to an atomic, which is
        // async-signal-safe, as an atfork child handler must be.
        unsafe { libc::pthread_atfork(None, None, Some(forget)) };
    });
    let pid = std::process::id();
    PID.store(pid, Ordering::Relaxed);
    pid
}

/// The id of the calling thread, unique within its process while it runs (never 0). A `const`
/// thread-local without a destructor, so reading it is a plain load on the fast path.
pub(crate) fn thread_id() -> u64 {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static ID: Cell<u64> = const { Cell::new(0) };
    }
    ID.with(|id| match id.get() {
        0 => {
            let fresh = NEXT.fetch_add(1, Ordering::Relaxed);
            id.set(fresh);
            fresh
        }
        known => known,
    })
}

/// The calling thread of this process as one word: the pid in the high half, the thread's id in
/// the low half. Unlike [`thread_id`] alone it never matches a thread of another process (thread
/// ids restart in every process, and a forked child keeps its parent's), so a word a dead process
/// left behind is never mistaken for this thread.
pub(crate) fn thread_token() -> u64 {
    (u64::from(pid()) << 32) | (thread_id() & 0xffff_ffff)
}
