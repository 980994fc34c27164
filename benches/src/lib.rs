//! Helpers for the multiproc benchmarks: CPU pinning and the raw floors the benchmarks compare with
//! (process starts; a process-shared pthread mutex and a futex ping-pong for synchronization; a
//! shared-memory SPSC ring, a byte ring, `memcpy` and a socket-pair ping-pong for queues and pipes).

use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
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

/// Pins this process to one CPU when the run asks for it ([`pinned`]).
pub fn pin_if_asked() {
    if pinned() {
        pin_to_one_cpu();
    }
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

/// The start and end of a timed run of several processes, in a [`SharedPage`]: each child
/// [arrives](Self::arrive) and spins until the parent [opens](Self::open) the gate, so all start
/// together; each child says when it has [finished](Self::finish).
#[derive(Debug, Clone)]
pub struct Gate {
    page: Arc<SharedPage>,
    parties: u32,
}

const READY: usize = 0;
const GO: usize = 1;
const DONE: usize = 2;

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    /// A closed gate for one child.
    pub fn new() -> Self {
        Self::with_parties(1)
    }

    /// A closed gate for `parties` children.
    pub fn with_parties(parties: u32) -> Self {
        Gate { page: Arc::new(SharedPage::new()), parties }
    }

    /// In a child: says it is ready, then waits for the parent to open the gate. False if that
    /// did not happen within [`BOUND`]. Async-signal-safe.
    pub fn arrive(&self) -> bool {
        self.page.word(READY).fetch_add(1, Ordering::AcqRel);
        spin_until(|| self.page.word(GO).load(Ordering::Acquire) == 1)
    }

    /// In a child: says it is done.
    pub fn finish(&self) {
        self.page.word(DONE).fetch_add(1, Ordering::AcqRel);
    }

    /// In the parent: waits for every child to arrive, then opens the gate; returns the start time.
    ///
    /// # Panics
    ///
    /// If a child did not arrive within [`BOUND`].
    pub fn open(&self) -> Instant {
        assert!(
            spin_until(|| self.page.word(READY).load(Ordering::Acquire) >= self.parties),
            "a child never arrived"
        );
        let start = Instant::now();
        self.page.word(GO).store(1, Ordering::Release);
        start
    }

    /// In the parent: waits for every child to finish.
    ///
    /// # Panics
    ///
    /// If they did not within [`BOUND`].
    pub fn wait_finished(&self) {
        assert!(
            spin_until(|| self.page.word(DONE).load(Ordering::Acquire) >= self.parties),
            "a child never finished"
        );
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

// ---------------------------------------------------------------------------------------------
// Floors of queues and pipes
// ---------------------------------------------------------------------------------------------

/// `len` bytes of `MAP_SHARED | MAP_ANONYMOUS` memory (page-aligned, zeroed): a child made by
/// `fork` shares it with its parent. Unmapped when dropped.
#[derive(Debug)]
struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
}

impl SharedMap {
    fn new(len: usize) -> Self {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choice touches no
        // existing memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(ptr != libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        SharedMap { ptr: NonNull::new(ptr.cast()).expect("mmap returned null"), len }
    }

    /// The 64-bit atomic at byte `offset` (8-aligned, inside the mapping).
    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset % 8 == 0 && offset + 8 <= self.len, "word at {offset} outside the mapping");
        // SAFETY: aligned (the mapping is page-aligned, `offset` 8-aligned) and inside the
        // mapping, which lives as long as `self`; shared words are only accessed atomically.
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(offset).cast()) }
    }

    fn at(&self, offset: usize) -> *mut u8 {
        assert!(offset <= self.len);
        self.ptr.as_ptr().wrapping_add(offset)
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours, of `len` bytes, and no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The slots of the raw `u64` ring: as many as an unbounded `Queue` has.
pub const RING_SLOTS: usize = 1 << 16;
/// The raw byte ring's size.
pub const BYTE_RING: usize = 2 << 20;
/// The most bytes the byte ring's producer or consumer moves in one step.
const BYTE_RING_CHUNK: usize = 256 << 10;
/// Where the ring's positions lie: the producer's `tail` and the consumer's `head` on their own
/// cache lines, the data from byte 256.
const RING_TAIL: usize = 0;
const RING_HEAD: usize = 128;
const RING_DATA: usize = 256;

/// The floor of one producer → one consumer of `u64`s: a single-producer single-consumer ring of
/// [`RING_SLOTS`] 8-byte slots in `MAP_SHARED` memory, `tail`/`head` atomics, waiting by spinning
/// (and yielding, so a pinned peer runs). A child made by a raw `fork` puts `0..n`; the parent
/// gets them. Returns the time from the start gate until the parent has all `n`.
///
/// # Panics
///
/// If the child fails, a wait exceeds [`BOUND`] or the sum is wrong.
pub fn floor_spsc_ring(n: u64) -> Duration {
    let map = SharedMap::new(RING_DATA + RING_SLOTS * 8);
    let gate = Gate::new();
    let slots = map.at(RING_DATA).cast::<u64>();
    let mask = RING_SLOTS as u64 - 1;
    let produce = || {
        if !gate.arrive() {
            return false;
        }
        let (tail, head) = (map.u64_at(RING_TAIL), map.u64_at(RING_HEAD));
        let mut cached_head = head.load(Ordering::Acquire);
        for i in 0..n {
            if i - cached_head >= RING_SLOTS as u64 {
                if !spin_until(|| i - head.load(Ordering::Acquire) < RING_SLOTS as u64) {
                    return false;
                }
                cached_head = head.load(Ordering::Acquire);
            }
            // SAFETY: slot `i & mask` is inside the ring and free: the consumer is past it.
            unsafe { slots.add((i & mask) as usize).write_volatile(i) };
            tail.store(i + 1, Ordering::Release);
        }
        gate.finish();
        true
    };
    // SAFETY: the body uses atomics, plain stores into the shared mapping, sched_yield and
    // clock_gettime.
    let child = unsafe { Child::fork(produce) };
    let (tail, head) = (map.u64_at(RING_TAIL), map.u64_at(RING_HEAD));
    let start = gate.open();
    let mut sum = 0u64;
    let mut cached_tail = 0;
    for i in 0..n {
        if i >= cached_tail {
            assert!(spin_until(|| tail.load(Ordering::Acquire) > i), "the ring's producer stopped");
            cached_tail = tail.load(Ordering::Acquire);
        }
        // SAFETY: slot `i & mask` is inside the ring and committed: the producer is past it.
        sum = sum.wrapping_add(unsafe { slots.add((i & mask) as usize).read_volatile() });
        head.store(i + 1, Ordering::Release);
    }
    let elapsed = start.elapsed();
    assert!(child.reap(), "the ring's producer failed");
    assert_eq!(sum, n.wrapping_mul(n.wrapping_sub(1)) / 2, "lost items");
    elapsed
}

/// The floor of one producer → one consumer of `msg`-byte messages with two copies: a byte ring
/// of [`BYTE_RING`] bytes in `MAP_SHARED` memory; the producer (a child made by a raw `fork`)
/// copies each message from its own buffer into the ring, the parent copies it out into its own
/// buffer, in steps of up to 256 KiB. `n` messages; the time from the start gate until the parent
/// has them all.
///
/// # Panics
///
/// If the child fails, a wait exceeds [`BOUND`] or the last message arrives corrupted.
pub fn floor_byte_ring(n: u64, msg: usize) -> Duration {
    let map = SharedMap::new(RING_DATA + BYTE_RING);
    let gate = Gate::new();
    let data = map.at(RING_DATA);
    let cap = BYTE_RING as u64;
    let source: Vec<u8> = (0..msg).map(|i| i as u8).collect();
    let mut sink = vec![0u8; msg];
    let total = n * msg as u64;
    let produce = || {
        if !gate.arrive() {
            return false;
        }
        let (tail, head) = (map.u64_at(RING_TAIL), map.u64_at(RING_HEAD));
        let mut pos = 0u64;
        while pos < total {
            let mut free = cap - (pos - head.load(Ordering::Acquire));
            if free == 0 {
                if !spin_until(|| pos - head.load(Ordering::Acquire) < cap) {
                    return false;
                }
                free = cap - (pos - head.load(Ordering::Acquire));
            }
            let in_msg = (pos % msg as u64) as usize;
            let at = (pos % cap) as usize;
            let step = (msg - in_msg).min(free as usize).min(BYTE_RING - at).min(BYTE_RING_CHUNK);
            // SAFETY: `step` bytes from `at` lie inside the ring and are free (the consumer
            // is past them); the source range lies inside `source`.
            unsafe { std::ptr::copy_nonoverlapping(source.as_ptr().add(in_msg), data.add(at), step) };
            pos += step as u64;
            tail.store(pos, Ordering::Release);
        }
        gate.finish();
        true
    };
    // SAFETY: the body uses atomics, memcpy into the shared mapping from memory allocated before
    // the fork, sched_yield and clock_gettime.
    let child = unsafe { Child::fork(produce) };
    let (tail, head) = (map.u64_at(RING_TAIL), map.u64_at(RING_HEAD));
    let start = gate.open();
    let mut pos = 0u64;
    while pos < total {
        let mut ready = tail.load(Ordering::Acquire) - pos;
        if ready == 0 {
            assert!(spin_until(|| tail.load(Ordering::Acquire) > pos), "the byte ring's producer stopped");
            ready = tail.load(Ordering::Acquire) - pos;
        }
        let in_msg = (pos % msg as u64) as usize;
        let at = (pos % cap) as usize;
        let step = (msg - in_msg).min(ready as usize).min(BYTE_RING - at).min(BYTE_RING_CHUNK);
        // SAFETY: `step` bytes from `at` lie inside the ring and are committed (the producer is
        // past them); the destination range lies inside `sink`.
        unsafe { std::ptr::copy_nonoverlapping(data.add(at), sink.as_mut_ptr().add(in_msg), step) };
        pos += step as u64;
        head.store(pos, Ordering::Release);
    }
    let elapsed = start.elapsed();
    assert!(child.reap(), "the byte ring's producer failed");
    assert!(n == 0 || sink == source, "the last message arrived corrupted");
    elapsed
}

/// The floor of a queue's backlog: `msg`-byte messages through `MAP_SHARED` memory that a fresh
/// producer has not mapped yet, two copies, in rounds of `round` messages (the region holds one
/// round). Each round's producer is a new child made by a raw `fork` (so it inherits the region but
/// none of its page mappings, as a queue's fresh producer maps its chunks); it maps a MiB at a time
/// ahead of its writes (`MADV_POPULATE_WRITE` on Linux, as a queue's spill chunks do) and copies
/// every message of the round in. Once it has finished, the parent copies them all out. The time
/// of each round from its start gate until the parent has every message, summed.
///
/// The pages themselves are allocated once, by the first round, as a queue keeps its chunks for
/// reuse. What this measures is what a backlog costs beyond keeping up when no queue logic is
/// involved: the producer's page mapping, and writes and reads out of the caches.
///
/// # Panics
///
/// If a child fails, a wait exceeds [`BOUND`] or the last message arrives corrupted.
#[derive(Debug)]
pub struct BacklogFloor {
    map: SharedMap,
    msg: usize,
    round: u64,
}

impl BacklogFloor {
    /// A region for rounds of `round` messages of `msg` bytes.
    pub fn new(msg: usize, round: u64) -> Self {
        let len = (msg as u64 * round).next_multiple_of(4096) as usize;
        BacklogFloor { map: SharedMap::new(len.max(4096)), msg, round }
    }

    /// `n` messages, in rounds.
    pub fn run(&self, n: u64) -> Duration {
        let msg = self.msg;
        let source: Vec<u8> = (0..msg).map(|i| i as u8).collect();
        let mut sink = vec![0u8; msg];
        let data = self.map.at(0);
        let mut total = Duration::ZERO;
        let mut left = n;
        while left > 0 {
            let count = left.min(self.round);
            left -= count;
            let gate = Gate::new();
            let produce = || {
                if !gate.arrive() {
                    return false;
                }
                let mut mapped = 0usize;
                for i in 0..count as usize {
                    let (at, end) = (i * msg, (i + 1) * msg);
                    if end > mapped {
                        let to = end.max(mapped + (1 << 20)).min(self.map.len);
                        populate_write(self.map.at(mapped), to - mapped);
                        mapped = to;
                    }
                    // SAFETY: message `i` lies inside the region (it holds a round); the parent
                    // reads it only after `finish`.
                    unsafe { std::ptr::copy_nonoverlapping(source.as_ptr(), data.add(at), msg) };
                }
                gate.finish();
                true
            };
            // SAFETY: the body uses atomics, madvise and memcpy into the shared mapping from
            // memory allocated before the fork, sched_yield and clock_gettime.
            let child = unsafe { Child::fork(produce) };
            let start = gate.open();
            gate.wait_finished();
            for i in 0..count as usize {
                // SAFETY: message `i` lies inside the region and was written before `finish`.
                unsafe { std::ptr::copy_nonoverlapping(data.add(i * msg), sink.as_mut_ptr(), msg) };
                std::hint::black_box(&mut sink);
            }
            total += start.elapsed();
            assert!(child.reap(), "the backlog floor's producer failed");
        }
        assert!(n == 0 || sink == source, "the last message arrived corrupted");
        total
    }
}

/// Maps `len` bytes from `ptr` writable ahead of the writes (Linux); nothing elsewhere, where the
/// writes fault the pages in.
fn populate_write(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: the range lies inside a mapping of this process; MADV_POPULATE_WRITE only faults
    // its pages in (a kernel without it fails with EINVAL, which is ignored).
    unsafe {
        libc::madvise(ptr.cast(), len, libc::MADV_POPULATE_WRITE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

/// The floor of copying `msg` bytes once: `n` `memcpy`s between two buffers of this process
/// (allocated and touched before the clock starts).
pub fn floor_memcpy(n: u64, msg: usize) -> Duration {
    let source: Vec<u8> = (0..msg).map(|i| i as u8).collect();
    let mut sink = vec![0u8; msg];
    let start = Instant::now();
    for _ in 0..n {
        sink.copy_from_slice(std::hint::black_box(&source));
        std::hint::black_box(&mut sink);
    }
    start.elapsed()
}

/// The floor of a round trip through a pipe: two processes (raw `fork`) passing one byte back and
/// forth over a Unix stream socket pair (what a `Connection` is), `rounds` round trips after one
/// untimed warm-up trip. Returns the time of the `rounds` trips.
///
/// # Panics
///
/// If the child fails or a read exceeds [`BOUND`].
pub fn floor_socketpair_pingpong(rounds: u64) -> Duration {
    socketpair_pingpong(rounds, None)
}

/// [`floor_socketpair_pingpong`] where each side, before it sleeps in `read`, looks for the
/// byte without waiting for up to `budget`, yielding the CPU between tries: the waiting that
/// proc-manager's calls use, on the bare socket.
///
/// # Panics
///
/// As [`floor_socketpair_pingpong`].
pub fn floor_socketpair_pingpong_polling(rounds: u64, budget: Duration) -> Duration {
    socketpair_pingpong(rounds, Some(budget))
}

fn socketpair_pingpong(rounds: u64, poll: Option<Duration>) -> Duration {
    // std's pair is close-on-exec on every OS (SOCK_CLOEXEC where it exists, FD_CLOEXEC elsewhere).
    let (parent_end, child_end) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let (parent_fd, child_fd) = (parent_end.as_raw_fd(), child_end.as_raw_fd());
    // SAFETY: the body uses read, write and poll on descriptors it owns.
    let child = unsafe {
        Child::fork(|| {
            let mut byte = 0u8;
            for _ in 0..=rounds {
                if !poll_byte(child_fd, &mut byte, poll) || !write_byte(child_fd, byte) {
                    return false;
                }
            }
            true
        })
    };
    let mut start = Instant::now();
    let mut byte = 0u8;
    for round in 0..=rounds {
        if round == 1 {
            start = Instant::now();
        }
        assert!(write_byte(parent_fd, byte), "write to the ping-pong child failed");
        assert!(poll_byte(parent_fd, &mut byte, poll), "the ping-pong child stopped answering");
        byte = byte.wrapping_add(1);
    }
    let elapsed = start.elapsed();
    assert!(child.reap(), "the ping-pong child failed");
    drop((parent_end, child_end));
    elapsed
}

/// Reads one byte, waiting at most [`BOUND`] for it. Async-signal-safe.
fn read_byte(fd: libc::c_int, byte: &mut u8) -> bool {
    loop {
        // SAFETY: `byte` is one writable byte.
        let n = unsafe { libc::read(fd, (byte as *mut u8).cast(), 1) };
        if n == 1 {
            return true;
        }
        if n == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

/// Reads one byte; first, with a `budget`, looks for it without sleeping for that long.
/// Async-signal-safe.
fn poll_byte(fd: libc::c_int, byte: &mut u8, budget: Option<Duration>) -> bool {
    if let Some(budget) = budget {
        let start = Instant::now();
        loop {
            // SAFETY: `byte` is one writable byte; MSG_DONTWAIT returns at once.
            let n = unsafe { libc::recv(fd, (byte as *mut u8).cast(), 1, libc::MSG_DONTWAIT) };
            if n == 1 {
                return true;
            }
            if n == 0 || start.elapsed() >= budget {
                break;
            }
            std::thread::yield_now();
        }
    }
    read_byte(fd, byte)
}

/// Writes one byte. Async-signal-safe.
fn write_byte(fd: libc::c_int, byte: u8) -> bool {
    // SAFETY: `byte` is one readable byte.
    unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) == 1 }
}
