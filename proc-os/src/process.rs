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

/// The cached [`current_process_token`]; its high half is the pid it was computed for, so a forked
/// child (another pid) sees that it is not its own.
static TOKEN: AtomicU64 = AtomicU64::new(0);

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
#[inline]
pub fn getpid() -> u32 {
    // The backend's, inlined, rather than `std::process::id`, a function of its own elsewhere in
    // the program: a fork-server child asks this first, and each page of code it runs that the
    // server's fork did not map costs it a page fault (see `sys`).
    Os::getpid()
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
/// later process gives another value, unless both started within one tick of the clock it is
/// read from (1/100 s on Linux, whose `/proc` counts clock ticks; 1 µs on macOS). `None` if there
/// is no such process or the OS cannot tell (on Linux: no `/proc`, or a `/proc` mounted for
/// another pid namespace).
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

/// Whether process `pid` runs (as [`process_alive`] says) and is the one that started at `start`,
/// a value [`start_time`] gave: a later process that got the same pid is not. Where the OS cannot
/// tell start times, the pid alone counts. A snapshot; costs system calls.
///
/// # Examples
///
/// ```
/// let me = proc_os::pid();
/// let start = proc_os::start_time(me).unwrap_or(0);
/// assert!(proc_os::process_alive_since(me, start));
/// if proc_os::start_time(me).is_some() {
///     assert!(!proc_os::process_alive_since(me, start + 1));
/// }
/// ```
pub fn process_alive_since(pid: u32, start: u64) -> bool {
    // The start time after the liveness check: if the pid ended and was reused in between, the
    // start time is the newcomer's and does not match.
    process_alive(pid) && start_time(pid).is_none_or(|t| t == start)
}

/// Process `pid` as one word that a later process given the same pid does not share: the pid in
/// the high half, its [`start_time`] folded to 32 bits in the low half (so two processes share
/// a token only if they had the same pid and their start times fold alike, a 1 in 2^32 chance).
/// `None` if there is no such process or the OS cannot tell when it started.
///
/// # Examples
///
/// ```
/// let me = proc_os::pid();
/// if let Some(token) = proc_os::process_token(me) {
///     assert_eq!(token, proc_os::current_process_token());
///     assert_eq!(token >> 32, u64::from(me));
/// }
/// ```
pub fn process_token(pid: u32) -> Option<u64> {
    start_time(pid).map(|start| token(pid, start))
}

/// This process' [`process_token`], cached, so that a lock's fast path can record its owner
/// without a system call; a forked child computes its own. Where the OS cannot tell the start
/// time, the low half is 0 (the pid alone: see [`process_token_alive`]). Never 0.
///
/// # Examples
///
/// ```
/// assert_eq!(proc_os::current_process_token() >> 32, u64::from(proc_os::pid()));
/// assert!(proc_os::process_token_alive(proc_os::current_process_token()));
/// ```
#[inline]
pub fn current_process_token() -> u64 {
    let token = TOKEN.load(Ordering::Relaxed);
    // The pid in the high half keys the cache: after a `fork` the child's pid differs.
    if token != 0 && token >> 32 == u64::from(pid()) {
        token
    } else {
        current_process_token_slow()
    }
}

/// Computes this process' token and caches it.
#[cold]
fn current_process_token_slow() -> u64 {
    let me = pid();
    let token = process_token(me).unwrap_or(u64::from(me) << 32);
    TOKEN.store(token, Ordering::Relaxed);
    token
}

/// Whether the process that `token` names (a [`process_token`] or [`current_process_token`]) still
/// runs: its pid is alive and not a zombie, and, unless the token's low half is 0 (start time
/// unknown when it was made), that pid's process started when the token says, so a process that
/// got the pid later does not pass. Where the OS cannot tell start times now, the pid alone
/// counts. A snapshot; costs system calls.
///
/// # Examples
///
/// ```
/// let me = proc_os::current_process_token();
/// assert!(proc_os::process_token_alive(me));
/// if me as u32 > 1 {
///     // The same pid with another start time: a process that had this pid before.
///     assert!(!proc_os::process_token_alive(me ^ 1));
/// }
/// ```
pub fn process_token_alive(token: u64) -> bool {
    let pid = (token >> 32) as u32;
    // As in `process_alive_since`: the token is read after the liveness check.
    process_alive(pid) && (token as u32 == 0 || process_token(pid).is_none_or(|t| t == token))
}

/// `pid` and a start time as a token.
fn token(pid: u32, start: u64) -> u64 {
    (u64::from(pid) << 32) | u64::from((start ^ (start >> 32)) as u32)
}

#[cfg(test)]
mod test;
