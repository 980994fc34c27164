//! Helpers for the multiproc benchmarks: CPU pinning and the raw floors the benchmarks compare with
//! (process starts; a process-shared pthread mutex and a futex ping-pong for synchronization).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whether this run pins itself to one CPU (`MULTIPROC_BENCH_PIN=1`); set by `cargo xtask bench`.
pub fn pinned() -> bool {
    std::env::var_os("MULTIPROC_BENCH_PIN").is_some_and(|v| v == "1")
}

/// A criterion group name with the pinning mode appended: `name_free` or `name_pinned`.
pub fn group_name(name: &str) -> String {
    format!("{name}_{}", if pinned() { "pinned" } else { "free" })
}

/// Pins this process (and the children it starts from now on) to CPU 0, where the OS allows.
pub fn pin_to_one_cpu() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `set` is a zeroed cpu_set_t, a valid empty set, that CPU_SET fills; the call
        // reads exactly `size_of::<cpu_set_t>()` bytes from it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

/// The raw floor of a fork start: `fork`, `_exit(0)` in the child, `waitpid` in the parent.
pub fn raw_fork_waitpid() {
    // SAFETY: the child only calls the async-signal-safe `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: _exit never returns.
        unsafe { libc::_exit(0) };
    }
    assert!(pid > 0, "fork failed");
    let mut status = 0;
    // SAFETY: `status` is a live c_int; `pid` is our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// The raw floor of a spawn start: re-execute this binary, which exits in its first constructor
/// (the multiproc dispatcher's `exit` role), and wait for it.
pub fn reexec_self() {
    let exe = std::env::current_exe().expect("current exe");
    let status = std::process::Command::new(exe)
        .env("MULTIPROC_CHILD", "exit")
        .stdin(std::process::Stdio::null())
        .status()
        .expect("re-exec");
    assert!(status.success());
}

/// The longest any wait of a synchronization benchmark may take: past it the bench gives up (and
/// kills its child) instead of hanging.
pub const BOUND: Duration = Duration::from_secs(10);

/// A criterion group name with proc-sync's wait/wake backend and the pinning mode appended:
/// `name_futex_free`, `name_polling_pinned`, ...
pub fn backend_group_name(name: &str) -> String {
    group_name(&format!("{name}_{}", multiproc::sync::backend()))
}

/// One page of `MAP_SHARED | MAP_ANONYMOUS` memory: a child made by `fork` shares it with its
/// parent. Unmapped when dropped (in each process for itself).
#[derive(Debug)]
pub struct SharedPage {
    ptr: NonNull<u8>,
}

// SAFETY: the page is plain memory that every process and thread may access; all shared access
// goes through atomics or through a process-shared mutex.
unsafe impl Send for SharedPage {}
// SAFETY: as for Send.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    /// The size of the page.
    pub const LEN: usize = 4096;

    /// A new zeroed page.
    ///
    /// # Panics
    ///
    /// If the system refuses the mapping.
    pub fn new() -> Self {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choice touches no
        // existing memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(ptr != libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        SharedPage { ptr: NonNull::new(ptr.cast()).expect("mmap returned null") }
    }

    /// The `index`-th 32-bit word of the page.
    ///
    /// # Panics
    ///
    /// If the word lies outside the page.
    pub fn word(&self, index: usize) -> &AtomicU32 {
        assert!((index + 1) * 4 <= Self::LEN, "word {index} outside the page");
        // SAFETY: the page is 4096-byte aligned and `index * 4 + 4 <= LEN`, so the word is aligned
        // and inside the mapping, which lives as long as `self`; AtomicU32 has u32's layout and
        // every access to these words goes through atomics.
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(index * 4).cast()) }
    }

    /// The start of the page.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Default for SharedPage {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours, of LEN bytes, and no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), Self::LEN) };
    }
}

/// A `pthread_mutex_t` with `PTHREAD_PROCESS_SHARED` in a [`SharedPage`], with a `u64` counter in
/// the next cache line: the floor of `proc_sync::Lock` and `Value<u64>`.
///
/// Share it with children made by a raw `fork` only: a child that drops its copy would destroy
/// the mutex for everyone (the floors' children `_exit`).
#[derive(Debug)]
pub struct SharedMutex {
    page: SharedPage,
}

/// Where the counter lies in the page: past the mutex (40 bytes on Linux, 64 on macOS), on its own
/// cache line, as `Value`'s data lies apart from its lock.
const COUNTER_OFFSET: usize = 64;

impl SharedMutex {
    /// A new unlocked mutex (recursive if `recursive`), its counter at 0.
    ///
    /// # Panics
    ///
    /// If the system refuses the memory or the attributes.
    pub fn new(recursive: bool) -> Self {
        const { assert!(std::mem::size_of::<libc::pthread_mutex_t>() <= COUNTER_OFFSET) };
        let page = SharedPage::new();
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is writable memory for one attribute object, which init fills.
        let rc = unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) };
        assert_eq!(rc, 0, "pthread_mutexattr_init");
        // SAFETY: `attr` was initialized above.
        let rc =
            unsafe { libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED) };
        assert_eq!(rc, 0, "pthread_mutexattr_setpshared");
        if recursive {
            // SAFETY: `attr` was initialized above.
            let rc =
                unsafe { libc::pthread_mutexattr_settype(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_RECURSIVE) };
            assert_eq!(rc, 0, "pthread_mutexattr_settype");
        }
        // SAFETY: the page is zeroed, aligned, large enough for a pthread_mutex_t (asserted above)
        // and nobody uses it yet; `attr` is initialized.
        let rc = unsafe { libc::pthread_mutex_init(page.as_ptr().cast(), attr.as_ptr()) };
        assert_eq!(rc, 0, "pthread_mutex_init");
        // SAFETY: `attr` is initialized and no longer needed (the mutex does not refer to it).
        unsafe { libc::pthread_mutexattr_destroy(attr.as_mut_ptr()) };
        SharedMutex { page }
    }

    fn raw(&self) -> *mut libc::pthread_mutex_t {
        self.page.as_ptr().cast()
    }

    /// Locks the mutex (a no-op result check: a valid mutex locked by a non-owner cannot fail).
    pub fn lock(&self) {
        // SAFETY: the mutex was initialized in `new` and lives as long as `self`.
        let rc = unsafe { libc::pthread_mutex_lock(self.raw()) };
        debug_assert_eq!(rc, 0);
    }

    /// Unlocks the mutex, which this thread holds.
    pub fn unlock(&self) {
        // SAFETY: as in `lock`; the callers pair every unlock with their own lock.
        let rc = unsafe { libc::pthread_mutex_unlock(self.raw()) };
        debug_assert_eq!(rc, 0);
    }

    /// Adds one to the counter under the mutex, as `Value::update(|c| *c += 1)` does.
    pub fn increment(&self) {
        self.lock();
        let counter = self.page.as_ptr().wrapping_add(COUNTER_OFFSET).cast::<u64>();
        // SAFETY: the counter is an aligned u64 inside the page, touched only under the mutex,
        // which this thread holds; volatile as `RawValue` does.
        unsafe { counter.write_volatile(counter.read_volatile() + 1) };
        self.unlock();
    }

    /// The counter (a snapshot).
    pub fn counter(&self) -> u64 {
        self.lock();
        let counter = self.page.as_ptr().wrapping_add(COUNTER_OFFSET).cast::<u64>();
        // SAFETY: as in `increment`.
        let value = unsafe { counter.read_volatile() };
        self.unlock();
        value
    }
}

impl Drop for SharedMutex {
    fn drop(&mut self) {
        // SAFETY: the mutex was initialized in `new` and is unlocked (every lock is paired).
        unsafe { libc::pthread_mutex_destroy(self.raw()) };
    }
}

/// The start and end of a timed two-process run, in a [`SharedPage`]: the child
/// [arrives](Self::arrive) and spins until the parent [opens](Self::open) the gate, so both start
/// together; the child says when it has [finished](Self::finish).
#[derive(Debug, Clone, Default)]
pub struct Gate {
    page: Arc<SharedPage>,
}

const READY: usize = 0;
const GO: usize = 1;
const DONE: usize = 2;

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Gate { page: Arc::new(SharedPage::new()) }
    }

    /// In the child: says it is ready, then waits for the parent to open the gate. False if that
    /// did not happen within [`BOUND`]. Async-signal-safe.
    pub fn arrive(&self) -> bool {
        self.page.word(READY).store(1, Ordering::Release);
        spin_until(|| self.page.word(GO).load(Ordering::Acquire) == 1)
    }

    /// In the child: says it is done.
    pub fn finish(&self) {
        self.page.word(DONE).store(1, Ordering::Release);
    }

    /// In the parent: waits for the child to arrive, then opens the gate; returns the start time.
    ///
    /// # Panics
    ///
    /// If the child did not arrive within [`BOUND`].
    pub fn open(&self) -> Instant {
        assert!(spin_until(|| self.page.word(READY).load(Ordering::Acquire) == 1), "the child never arrived");
        let start = Instant::now();
        self.page.word(GO).store(1, Ordering::Release);
        start
    }

    /// In the parent: waits for the child to finish.
    ///
    /// # Panics
    ///
    /// If it did not within [`BOUND`].
    pub fn wait_finished(&self) {
        assert!(spin_until(|| self.page.word(DONE).load(Ordering::Acquire) == 1), "the child never finished");
    }
}

/// Spins (yielding the CPU between rounds, so a pinned peer can run) until `cond` holds; false
/// after [`BOUND`]. Async-signal-safe: atomics, `sched_yield`, `clock_gettime`.
fn spin_until(cond: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if cond() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() > BOUND {
            return false;
        }
        std::thread::yield_now();
    }
}

/// Joins a benchmark child that returns whether it completed, waiting at most [`BOUND`] (then it
/// is killed and reaped).
///
/// # Panics
///
/// If the child did not complete, failed or had to be killed.
pub fn join_bounded(p: multiproc::Process<bool>) {
    match p.join_timeout(BOUND) {
        Ok(Some(true)) => {}
        Ok(Some(false)) => panic!("the child gave up waiting"),
        Ok(None) => {
            let _ = p.kill();
            let _ = p.join();
            panic!("the child did not end within {BOUND:?}");
        }
        Err(e) => panic!("the child failed: {e}"),
    }
}

/// A child made by a raw `fork`; killed and reaped when dropped unless [reaped](Self::reap).
#[derive(Debug)]
struct Child {
    pid: libc::pid_t,
}

impl Child {
    /// Forks a child that runs `body` and `_exit`s with 0 if it returned true, else 1 (also if it
    /// panicked).
    ///
    /// # Safety
    ///
    /// `body` runs in a copy of a process that may have had other threads: it must call only
    /// async-signal-safe functions (no allocation, no locks other than process-shared ones it
    /// owns, no printing).
    unsafe fn fork(body: impl FnOnce() -> bool) -> Child {
        // SAFETY: the child runs only `body` (async-signal-safe by the caller's contract) and
        // `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ok = catch_unwind(AssertUnwindSafe(body)).unwrap_or(false);
            // SAFETY: _exit ends the child at once, without the parent's exit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
        Child { pid }
    }

    /// Waits at most [`BOUND`] for the child to exit (then kills it); whether it exited with 0.
    fn reap(self) -> bool {
        let start = Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: `status` is a live c_int; `pid` is our unreaped child.
            let ret = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if ret == self.pid {
                std::mem::forget(self);
                return libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
            }
            if ret < 0 || start.elapsed() > BOUND {
                return false; // Drop kills and reaps it.
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: `pid` is our child, not reaped yet, so the pid cannot have been recycled.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: as above; `status` is a live c_int.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
}

/// The floor of two processes incrementing a shared counter `n` times each under a
/// process-shared pthread mutex, started together through a [`Gate`].
/// Returns the time from the start until both are done.
///
/// # Panics
///
/// If the child fails or the count is wrong.
pub fn floor_pthread_counter(n: u64) -> Duration {
    let mutex = SharedMutex::new(false);
    let gate = Gate::new();
    // SAFETY: the body uses atomics, sched_yield, clock_gettime and the process-shared mutex.
    let child = unsafe {
        Child::fork(|| {
            if !gate.arrive() {
                return false;
            }
            for _ in 0..n {
                mutex.increment();
            }
            gate.finish();
            true
        })
    };
    let start = gate.open();
    for _ in 0..n {
        mutex.increment();
    }
    gate.wait_finished();
    let elapsed = start.elapsed();
    assert!(child.reap(), "the counter child failed");
    assert_eq!(mutex.counter(), 2 * n, "lost increments");
    elapsed
}

/// The floor of a round trip between two processes: a futex ping-pong on one shared word
/// (`FUTEX_WAIT`/`FUTEX_WAKE` without the private flag), `rounds` round trips after one untimed
/// warm-up trip (so the child's start is not timed). Returns the time of the `rounds` trips.
///
/// # Panics
///
/// If the child fails or a wait exceeds [`BOUND`].
#[cfg(target_os = "linux")]
pub fn floor_futex_pingpong(rounds: u64) -> Duration {
    const PARENT: u32 = 0;
    const CHILD: u32 = 1;
    let page = SharedPage::new();
    let turn = page.word(0);
    // SAFETY: the body uses atomics and futex system calls only.
    let child = unsafe {
        Child::fork(|| {
            for _ in 0..=rounds {
                if !futex_wait_for(turn, CHILD) {
                    return false;
                }
                turn.store(PARENT, Ordering::Release);
                futex_wake(turn);
            }
            true
        })
    };
    let mut start = Instant::now();
    for round in 0..=rounds {
        if round == 1 {
            start = Instant::now();
        }
        turn.store(CHILD, Ordering::Release);
        futex_wake(turn);
        assert!(futex_wait_for(turn, PARENT), "the ping-pong child stopped answering");
    }
    let elapsed = start.elapsed();
    assert!(child.reap(), "the ping-pong child failed");
    elapsed
}

/// Sleeps on `word` until it holds `want` (the other value of a two-valued word); false after
/// [`BOUND`] without it. Async-signal-safe.
#[cfg(target_os = "linux")]
fn futex_wait_for(word: &AtomicU32, want: u32) -> bool {
    const SLICE: libc::timespec = libc::timespec { tv_sec: 1, tv_nsec: 0 };
    let mut timeouts = 0;
    loop {
        let cur = word.load(Ordering::Acquire);
        if cur == want {
            return true;
        }
        // SAFETY: `word` is a live, aligned u32 in shared memory; FUTEX_WAIT (shared: no private
        // flag) only compares it with `cur` and sleeps; the timeout is a live timespec.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                cur,
                &SLICE,
                std::ptr::null::<u32>(),
                0,
            )
        };
        if ret != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT) {
            timeouts += 1;
            if Duration::from_secs(timeouts) > BOUND {
                return false;
            }
        }
    }
}

/// Wakes one waiter on `word` (shared futex). Async-signal-safe.
#[cfg(target_os = "linux")]
fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE only looks up its waiters.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1) };
}
