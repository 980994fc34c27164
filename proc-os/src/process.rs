//! Who is calling, and whether another process still runs: the cached pid, thread ids that never
//! collide across processes, and liveness.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Once;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::sys::{Backend, Os};

/// The cached pid; 0 until first asked, and again in the child after every `fork`.
static PID: AtomicU32 = AtomicU32::new(0);

/// Whether process `pid` is running. A zombie (ended, not yet reaped) counts as dead. Costs system
/// calls: check it on slow paths only.
///
/// # Examples
///
/// ```
/// assert!(proc_os::process_alive(std::process::id()));
/// assert!(!proc_os::process_alive(0));
/// ```
pub fn process_alive(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else { return false };
    if raw <= 0 {
        return false;
    }
    // No signal: only checks for existence and permission. EPERM: it exists but belongs to someone
    // else.
    let exists = matches!(kill(Pid::from_raw(raw), None), Ok(()) | Err(Errno::EPERM));
    exists && !Os::is_zombie(pid)
}

/// This process' id, cached (a lock's fast path must not make a system call); refreshed in the
/// child after every `fork`.
///
/// # Examples
///
/// ```
/// assert_eq!(proc_os::pid(), std::process::id());
/// ```
#[inline]
pub fn pid() -> u32 {
    match PID.load(Ordering::Relaxed) {
        0 => pid_slow(),
        cached => cached,
    }
}

/// Reads the pid and caches it; the first call registers the `fork` handler that forgets it.
#[cold]
fn pid_slow() -> u32 {
    static ATFORK: Once = Once::new();
    extern "C" fn forget() {
        PID.store(0, Ordering::Relaxed);
    }
    ATFORK.call_once(|| {
        // libc: nix has no `pthread_atfork`.
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
///
/// # Examples
///
/// ```
/// let here = proc_os::thread_id();
/// assert_eq!(here, proc_os::thread_id());
/// assert_ne!(here, std::thread::spawn(proc_os::thread_id).join().unwrap());
/// ```
#[inline]
pub fn thread_id() -> u64 {
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
///
/// # Examples
///
/// ```
/// assert_eq!(proc_os::thread_token() >> 32, u64::from(proc_os::pid()));
/// ```
#[inline]
pub fn thread_token() -> u64 {
    (u64::from(pid()) << 32) | (thread_id() & 0xffff_ffff)
}

/// This process' id, asked of the OS at every call (unlike [`pid`], which caches it).
///
/// # Examples
///
/// ```
/// assert_eq!(proc_os::getpid(), proc_os::pid());
/// ```
pub fn getpid() -> u32 {
    std::process::id()
}

/// The id of this process' parent.
pub fn getppid() -> u32 {
    std::os::unix::process::parent_id()
}

/// The effective user id of this process.
pub fn geteuid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// How many descriptors this process may have open: `RLIMIT_NOFILE`'s soft limit, `None` when
/// there is none (`RLIM_INFINITY`).
///
/// # Errors
///
/// When the limit cannot be read (`getrlimit` failed).
///
/// # Examples
///
/// ```
/// assert!(proc_os::open_files_limit()?.is_none_or(|n| n > 2));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn open_files_limit() -> io::Result<Option<u64>> {
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE)?;
    Ok((soft != RLIM_INFINITY).then_some(soft))
}

/// The number of CPUs online in the system (Python's `os.cpu_count()`), `None` if the OS cannot
/// tell.
///
/// # Examples
///
/// ```
/// assert!(proc_os::online_cpus().unwrap_or(1) >= 1);
/// ```
pub fn online_cpus() -> Option<usize> {
    // libc: nix names `_SC_NPROCESSORS_ONLN` on Linux only.
    // SAFETY: sysconf takes a plain integer name.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0)
}

/// A random number for names (of shared-memory objects, say); not for cryptography.
pub fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

/// The running executable, as a path `exec` takes: `/proc/self/exe` on Linux (the image this
/// process runs, even when the file was replaced or deleted on disk, so a re-executed child always
/// runs the same binary); what the OS reports (`current_exe`) elsewhere.
///
/// # Errors
///
/// The OS cannot tell (never on Linux).
pub fn exe_path() -> io::Result<PathBuf> {
    Os::exe_path()
}

/// The number of threads of this process, `None` where the OS cannot tell.
///
/// # Examples
///
/// ```
/// assert!(proc_os::thread_count().unwrap_or(1) >= 1);
/// ```
pub fn thread_count() -> Option<usize> {
    Os::thread_count()
}

/// When process `pid` started, an opaque value that only compares to others of this function
/// (clock ticks since boot on Linux, microseconds since the epoch on macOS): a pid reused by a
/// later process gives another value. `None` if there is no such process or the OS cannot tell.
///
/// # Examples
///
/// ```
/// let me = proc_os::pid();
/// assert_eq!(proc_os::start_time(me), proc_os::start_time(me));
/// ```
pub fn start_time(pid: u32) -> Option<u64> {
    Os::start_time(pid)
}
