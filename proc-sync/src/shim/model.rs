//! The loom model of the world the primitives run in (built with `--cfg proc_sync_loom` only).
//!
//! - Shared memory: a [`Region`](crate::region::Region) is a heap block of loom atomics with the
//!   accessors of the real one (`word`, `word64`); the 32-bit and 64-bit words are separate arrays,
//!   which is exact as long as no primitive reads one byte range both ways (none does). A load of a
//!   word that nobody wrote yet in the execution returns 0 without a loom operation (see `Fresh`):
//!   the scans of the condition's 128 waiter slots cost nothing for the slots a model never uses.
//! - Processes: each model thread is one process, with the pid given to [`spawn`] (1 for a thread
//!   that was not spawned through it). [`process_alive`] is false once the process died, and the
//!   death is released to whoever sees it (as the kernel's bookkeeping is a full barrier).
//! - Death at any step: a process spawned with a budget of `k` dies just before its `k`-th
//!   shared-memory write (store, swap, read-modify-write) or wait. A load is not a step: it changes
//!   nothing, so a death just before it is a death just before the process' next write or wait,
//!   which another budget reaches. From then on it performs no operation (its destructors still run,
//!   as the unwinding goes by, but each of their operations is a no-op that reads 0), as a killed
//!   process writes nothing more; then it is marked dead. A model runs every budget in turn, so the
//!   process stops at every step of its run.
//! - Wait and wake: a futex. A wait returns at once if the word does not hold the expected value
//!   (read as its latest value, as the kernel does); else it sleeps until a wake on that word
//!   picks it, or, with a timeout, until it times out (below). So a lost wake-up before an untimed
//!   wait is a hang, which loom reports (as a deadlock, or as a model that exceeds its branches);
//!   before a timed one it costs a timeout, as in reality.
//! - Time: a timed wait (the real code's slices of [`LIVENESS_CHECK`], or a deadline) times out,
//!   moving its process' clock by its timeout, in two cases: when every running thread sleeps
//!   (time passes for all: every timed wait in progress ends then, and its thread counts as running
//!   again at once, so time passes again only once it, too, sleeps again), and, once per death and
//!   word, when a process died since the thread's last timed wait on that word ended so (a timeout
//!   may fire at any time; after a death is when it matters). So the liveness checks that the real code makes once per slice run whenever
//!   nothing else can happen, and early after a death; a deadline passes after a known number of
//!   timeouts. A state where timeouts change nothing loops until loom's branch limit: stuck.
//!   ([`sleep`] lets a model's main thread wait for time to pass, and [`idle`] for every other
//!   thread to sleep, time standing still.)
//! - The spin before sleeping ([`Backoff`]) is skipped: it repeats the loads and compare-and-swaps
//!   that the loop after it makes.

use std::cell::RefCell;
use std::fmt;
use std::ops::{Add, Sub};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Once, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The panic payload that stops a process whose budget ran out.
struct Died;

/// What the model knows of the calling thread's process.
struct Me {
    pid: u32,
    /// Operations left before death (`None`: it does not die).
    budget: Option<usize>,
    /// It died: its operations do nothing.
    dead: bool,
    /// Its clock.
    clock: Duration,
    /// For each word it made a timed wait on, the processes (a bit per pid) that had died when a
    /// timed wait of its on that word last ended for a death.
    seen: Vec<(usize, u64)>,
}

loom::thread_local! {
    static ME: RefCell<Me> =
        RefCell::new(Me { pid: 1, budget: None, dead: false, clock: Duration::ZERO, seen: Vec::new() });
}

loom::lazy_static! {
    /// Bit `pid` is set once that process died (pids 1 to 63).
    static ref DEAD: loom::sync::atomic::AtomicU64 = loom::sync::atomic::AtomicU64::new(0);
    /// The waits in progress.
    static ref FUTEX: Futex = Futex {
        state: loom::sync::Mutex::new(Sleepers { next: 0, asleep: Vec::new(), running: 1, expired: Vec::new() }),
        woken: loom::sync::Condvar::new(),
    };
}

/// Counts one shared-memory operation of the calling process; false if it is dead (the operation
/// must do nothing). Dies (unwinds with [`Died`]) if its budget is spent.
#[track_caller]
fn step() -> bool {
    profile::count(std::panic::Location::caller());
    let die = ME.with(|me| {
        let mut me = me.borrow_mut();
        if me.dead {
            return None;
        }
        if me.budget == Some(0) {
            me.dead = true;
            return Some(true);
        }
        if let Some(b) = &mut me.budget {
            *b -= 1;
        }
        Some(false)
    });
    match die {
        None => false,
        Some(true) => panic::panic_any(Died),
        Some(false) => true,
    }
}

/// Whether the calling process died (its operations do nothing). A load is not a step: it changes
/// nothing, so a death just before it is the same as one just before the process' next write or
/// wait, which its budget reaches.
fn dead() -> bool {
    ME.with(|me| me.borrow().dead)
}

/// Runs one operation; a `SeqCst` one between two `SeqCst` fences. Loom models `SeqCst` accesses
/// as acquire/release only (a store buffer may delay them), but `SeqCst` fences fully: with them
/// around it, a `SeqCst` operation is ordered as C++ promises (the waiter counts' protocols,
/// Dekker-style, rely on it).
fn sc<T>(order: Ordering, op: impl FnOnce() -> T) -> T {
    if order == Ordering::SeqCst {
        loom::sync::atomic::fence(Ordering::SeqCst);
    }
    let v = op();
    if order == Ordering::SeqCst {
        loom::sync::atomic::fence(Ordering::SeqCst);
    }
    v
}

macro_rules! atomic {
    ($name:ident, $loom:ty, $int:ty) => {
        /// A word of a model region: loom's atomic, each operation a step of the calling process
        /// (but a load of a word never written yet: see [`Fresh`]).
        pub(crate) struct $name($loom, Fresh);

        impl $name {
            pub(crate) fn new(v: $int) -> Self {
                $name(<$loom>::new(v), Fresh::new(v == 0))
            }

            #[track_caller]
            pub(crate) fn load(&self, order: Ordering) -> $int {
                if self.1.is_fresh() || dead() {
                    return 0;
                }
                profile::count(std::panic::Location::caller());
                sc(order, || self.0.load(order))
            }

            #[track_caller]
            pub(crate) fn store(&self, v: $int, order: Ordering) {
                self.1.written();
                if step() {
                    // A swap, not a store: loom orders a plain store only partly against the
                    // other writes (an RMW could read around it), which real coherence forbids.
                    sc(order, || self.0.swap(v, order));
                }
            }

            #[allow(dead_code)]
            #[track_caller]
            pub(crate) fn swap(&self, v: $int, order: Ordering) -> $int {
                self.1.written();
                if step() {
                    sc(order, || self.0.swap(v, order))
                } else {
                    0
                }
            }

            #[allow(dead_code)]
            #[track_caller]
            pub(crate) fn compare_exchange(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                self.1.written();
                if step() {
                    sc(success, || self.0.compare_exchange(current, new, success, failure))
                } else {
                    Err(!current)
                }
            }

            #[allow(dead_code)]
            #[track_caller]
            pub(crate) fn compare_exchange_weak(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                self.1.written();
                if step() {
                    sc(success, || self.0.compare_exchange_weak(current, new, success, failure))
                } else {
                    Err(!current)
                }
            }

            #[allow(dead_code)]
            #[track_caller]
            pub(crate) fn fetch_add(&self, v: $int, order: Ordering) -> $int {
                self.1.written();
                if step() {
                    sc(order, || self.0.fetch_add(v, order))
                } else {
                    0
                }
            }

            #[allow(dead_code)]
            #[track_caller]
            pub(crate) fn fetch_sub(&self, v: $int, order: Ordering) -> $int {
                self.1.written();
                if step() {
                    sc(order, || self.0.fetch_sub(v, order))
                } else {
                    0
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(stringify!($name))
            }
        }
    };
}

/// Whether a word still holds its initial 0, never written in this execution (any thread's
/// store, swap or read-modify-write, even one that failed or did nothing, counts as a write).
///
/// A load of such a word is no operation in the model: it returns 0 at once, without loom (its
/// value is exact: 0 is the only one the word ever held). What that drops is the scheduling point
/// before the load, that is the interleavings in which another process' first write to that very
/// word falls between this process' previous operation and the load. What it saves: a condition
/// scans its 128 waiter slots on every notify and a sleeping waiter on every liveness check, while
/// a model uses two or three; as loom operations (each `SeqCst` one also two fences, which visit
/// every atomic of the execution) those scans made up most of each execution. Loom runs a
/// model's threads one at a time on one OS thread, so a plain flag is exact.
#[derive(Debug)]
struct Fresh(std::sync::atomic::AtomicBool);

impl Fresh {
    fn new(zero: bool) -> Self {
        Fresh(std::sync::atomic::AtomicBool::new(zero))
    }

    fn is_fresh(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn written(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

atomic!(AtomicU32, loom::sync::atomic::AtomicU32, u32);
atomic!(AtomicU64, loom::sync::atomic::AtomicU64, u64);

/// A primitive's state words on the heap, shared by the model threads that clone it.
#[derive(Clone)]
pub(crate) struct Region {
    heap: Arc<Heap>,
}

struct Heap {
    words: Box<[AtomicU32]>,
    words64: Box<[AtomicU64]>,
    len: usize,
}

impl Region {
    /// A zeroed region of `len` bytes (rounded up to 8).
    pub(crate) fn new(len: usize) -> proc_core::Result<Self> {
        let len = len.max(4).div_ceil(8) * 8;
        let words = (0..len / 4).map(|_| AtomicU32::new(0)).collect();
        let words64 = (0..len / 8).map(|_| AtomicU64::new(0)).collect();
        Ok(Region { heap: Arc::new(Heap { words, words64, len }) })
    }

    /// The `index`-th 32-bit word.
    pub(crate) fn word(&self, index: usize) -> &AtomicU32 {
        &self.heap.words[index]
    }

    /// The 64-bit word at byte `8 * index`.
    pub(crate) fn word64(&self, index: usize) -> &AtomicU64 {
        &self.heap.words64[index]
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.heap.len
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region").field("len", &self.heap.len).finish()
    }
}

impl Serialize for Region {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("a model region cannot leave its process"))
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("a model region cannot leave its process"))
    }
}

/// An instant of the calling process' model clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Instant(Duration);

impl Instant {
    pub(crate) fn now() -> Self {
        Instant(ME.with(|me| me.borrow().clock))
    }

    pub(crate) fn checked_add(self, d: Duration) -> Option<Self> {
        self.0.checked_add(d).map(Instant)
    }

    pub(crate) fn saturating_duration_since(self, earlier: Self) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    fn add(self, d: Duration) -> Instant {
        Instant(self.0 + d)
    }
}

impl Sub for Instant {
    type Output = Duration;

    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// The spin before a sleep: none in the model (see the module docs).
#[derive(Debug)]
pub(crate) struct Backoff;

impl Backoff {
    pub(crate) fn new(_spins: u32, _yields: u32) -> Self {
        Backoff
    }

    pub(crate) fn snooze(&mut self) -> bool {
        false
    }
}

/// The calling process' pid.
pub(crate) fn pid() -> u32 {
    ME.with(|me| me.borrow().pid)
}

/// One thread per process: the thread is named by its pid.
pub(crate) fn thread_id() -> u64 {
    u64::from(pid())
}

/// As [`thread_id`] (never 0).
pub(crate) fn thread_token() -> u64 {
    u64::from(pid())
}

/// Whether process `pid` has not died.
pub(crate) fn process_alive(pid: u32) -> bool {
    !is_dead(DEAD.load(Ordering::SeqCst), pid)
}

/// A model process' token: its pid in the high half, as proc-os's, and a constant start time (pid
/// reuse is not modelled: every model pid is one process).
pub(crate) fn current_process_token() -> u64 {
    u64::from(pid()) << 32 | 1
}

/// Whether the process of `token` runs: its pid's (see [`current_process_token`]).
pub(crate) fn process_token_alive(token: u64) -> bool {
    process_alive((token >> 32) as u32)
}

fn is_dead(dead: u64, pid: u32) -> bool {
    (1..64).contains(&pid) && dead & (1 << pid) != 0
}

/// A futex: `wait` returns at once (true) if `word` does not hold `expected`; else it sleeps until
/// a `wake` on `word` picks it (true) or, with a timeout, until time passes (false: the timeout
/// passed, and the clock moved by it; see the module docs).
#[track_caller]
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    // The look at the word is this wait's step: a process may die there, but not while it holds
    // the sleepers (loom's mutex does not survive a panic inside it).
    if !step() {
        return true;
    }
    let mut state = sleepers();
    // The kernel compares the word's current value: a read-modify-write reads the latest.
    if sc(Ordering::SeqCst, || word.0.fetch_add(0, Ordering::SeqCst)) != expected {
        return true;
    }
    let id = state.next;
    state.next += 1;
    state.asleep.push(Sleeper { word: addr(word), id, timed: timeout.is_some() });
    state.pass_time_if_idle();
    loop {
        let timed_out = if let Some(i) = state.expired.iter().position(|&e| e == id) {
            state.expired.swap_remove(i);
            true
        } else if !state.asleep.iter().any(|s| s.id == id) {
            return true;
        } else if timeout.is_some() && death_news(addr(word)) {
            state.asleep.retain(|s| s.id != id);
            true
        } else {
            false
        };
        if timed_out {
            ME.with(|me| me.borrow_mut().clock += timeout.unwrap_or_default());
            return false;
        }
        state = FUTEX.woken.wait(state).unwrap_or_else(PoisonError::into_inner);
    }
}

/// Whether some process died since the calling thread's last timed wait on `word` ended for a
/// death (then this one ends: a timeout may fire at any time, and after a death it matters).
fn death_news(word: usize) -> bool {
    let dead = DEAD.load(Ordering::SeqCst);
    ME.with(|me| {
        let mut me = me.borrow_mut();
        let seen = match me.seen.iter().position(|&(w, _)| w == word) {
            Some(i) => &mut me.seen[i].1,
            None => {
                me.seen.push((word, 0));
                &mut me.seen.last_mut().expect("just pushed").1
            }
        };
        let news = dead & !*seen != 0;
        *seen |= dead;
        news
    })
}

/// Wakes up to `n` waits on `word`.
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    let mut state = sleepers();
    let mut left = n;
    state.asleep.retain(|s| {
        if s.word == addr(word) && left > 0 {
            left -= 1;
            false
        } else {
            true
        }
    });
    FUTEX.woken.notify_all();
}

/// Wakes every wait on `word`.
pub(crate) fn wake_all(word: &AtomicU32) {
    wake(word, u32::MAX);
}

fn addr(word: &AtomicU32) -> usize {
    std::ptr::from_ref(word) as usize
}

/// A wait in progress.
struct Sleeper {
    /// The word it sleeps on.
    word: usize,
    id: u64,
    /// Whether it has a timeout.
    timed: bool,
}

/// The futex's state: the waits that no wake picked yet, and the model's time.
struct Sleepers {
    next: u64,
    asleep: Vec<Sleeper>,
    /// The threads running (not asleep or about to be): the model's main thread and the
    /// processes spawned by [`spawn`] that have not ended (or died).
    running: usize,
    /// The timed waits that timed out, whose threads have yet to see it (they run again: they
    /// are no longer among the sleepers).
    expired: Vec<u64>,
}

impl Sleepers {
    /// Once every running process sleeps: a thread in [`idle`] returns, or else, if some sleeps
    /// with a timeout, time passes: every timed wait in progress times out.
    fn pass_time_if_idle(&mut self) {
        if self.asleep.len() < self.running {
            return;
        }
        // A thread in `idle` goes first: it runs, and time passes only once it sleeps again.
        if self.asleep.iter().any(|s| s.word == IDLE) {
            self.asleep.retain(|s| s.word != IDLE);
            FUTEX.woken.notify_all();
            return;
        }
        if self.asleep.iter().any(|s| s.timed) {
            // Their threads run again from now: until they sleep again, time does not pass
            // (counted as sleepers still, a thread that went back to a timed wait at once would
            // pass time again and never sleep, while the others never ran).
            let expired = &mut self.expired;
            self.asleep.retain(|s| {
                if s.timed {
                    expired.push(s.id);
                }
                !s.timed
            });
            FUTEX.woken.notify_all();
        }
    }
}

/// The sleepers, locked (no process dies while it holds them).
fn sleepers() -> loom::sync::MutexGuard<'static, Sleepers> {
    FUTEX.state.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Futex {
    state: loom::sync::Mutex<Sleepers>,
    woken: loom::sync::Condvar,
}

/// Runs `f` in the calling model thread as process `pid` (2 to 63), counted as running already,
/// which dies just before its `budget`-th shared-memory operation if it has not finished by then
/// (`None`: it does not die). Returns `f`'s result, or `None` if the process died; a panic that
/// is not a death goes on.
fn run<T>(pid: u32, budget: Option<usize>, f: impl FnOnce() -> T, ended: &Signal) -> Option<T> {
    assert!((2..64).contains(&pid), "model pids are 2 to 63");
    quiet_deaths();
    ME.with(|me| {
        *me.borrow_mut() = Me { pid, budget, dead: false, clock: Duration::ZERO, seen: Vec::new() };
    });
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    let mut state = sleepers();
    if matches!(&outcome, Err(payload) if payload.is::<Died>()) {
        DEAD.fetch_or(1 << pid, Ordering::SeqCst);
    }
    // Its joiner runs from now, before time may pass.
    ended.set_locked(&mut state);
    state.running -= 1;
    state.pass_time_if_idle();
    drop(state);
    match outcome {
        Ok(v) => Some(v),
        Err(payload) if payload.is::<Died>() => None,
        Err(payload) => panic::resume_unwind(payload),
    }
}

/// Runs `f` in a new model thread as process `pid` (2 to 63), which dies just before its
/// `budget`-th shared-memory operation if it has not finished by then (`None`: it does not die).
/// Its [`join`] gives `f`'s result, or `None` if the process died.
pub fn spawn<T: 'static>(pid: u32, budget: Option<usize>, f: impl FnOnce() -> T + 'static) -> Process<T> {
    // Running from now: time does not pass while it has yet to start.
    sleepers().running += 1;
    let ended = Arc::new(Signal::default());
    let signal = ended.clone();
    let handle = loom::thread::spawn(move || run(pid, budget, f, &signal));
    Process { handle, ended }
}

/// Sets the calling process' budget from here: it dies just before its `budget`-th shared-memory
/// operation from now (`None`: it does not die). For a model that makes a process die at a
/// chosen point of its run.
pub fn set_budget(budget: Option<usize>) {
    ME.with(|me| me.borrow_mut().budget = budget);
}

/// Waits for a process spawned by [`spawn`]: `None` if it died.
///
/// # Panics
///
/// If the process panicked other than by dying: the model failed.
pub fn join<T>(process: Process<T>) -> Option<T> {
    process.ended.wait();
    match process.handle.join() {
        Ok(v) => v,
        Err(payload) => panic::resume_unwind(payload),
    }
}

/// A process spawned by [`spawn`], to [`join`].
#[derive(Debug)]
pub struct Process<T> {
    handle: loom::thread::JoinHandle<Option<T>>,
    ended: Arc<Signal>,
}

/// A flag of the model's harness that threads can wait for: set once, never cleared. Its
/// operations are not steps of a process (none dies there), and a thread waiting for it sleeps
/// as in a futex wait without a timeout (time passes when every running thread sleeps).
#[derive(Debug)]
pub struct Signal {
    word: AtomicU32,
}

impl Default for Signal {
    fn default() -> Self {
        Signal { word: AtomicU32::new(0) }
    }
}

impl Signal {
    /// Sets the flag and wakes its waiters.
    pub fn set(&self) {
        self.set_locked(&mut sleepers());
    }

    fn set_locked(&self, state: &mut Sleepers) {
        self.word.0.swap(1, Ordering::SeqCst);
        state.asleep.retain(|s| s.word != addr(&self.word));
        FUTEX.woken.notify_all();
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        let mut state = sleepers();
        if self.word.0.load(Ordering::SeqCst) != 0 {
            return;
        }
        let id = state.next;
        state.next += 1;
        state.asleep.push(Sleeper { word: addr(&self.word), id, timed: false });
        state.pass_time_if_idle();
        while state.asleep.iter().any(|s| s.id == id) {
            state = FUTEX.woken.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Sleeps until time passes (see the module docs): a wait of the model's harness that nothing
/// wakes, not a step of a process, which moves the calling thread's clock by `d`. For a model that
/// lets the primitives' timed waits and liveness checks run.
pub fn sleep(d: Duration) {
    let mut state = sleepers();
    let id = state.next;
    state.next += 1;
    state.asleep.push(Sleeper { word: 0, id, timed: true });
    state.pass_time_if_idle();
    loop {
        if let Some(i) = state.expired.iter().position(|&e| e == id) {
            state.expired.swap_remove(i);
            break;
        }
        state = FUTEX.woken.wait(state).unwrap_or_else(PoisonError::into_inner);
    }
    drop(state);
    ME.with(|me| me.borrow_mut().clock += d);
}

/// The word of the sleepers in [`idle`] (no real word has this address).
const IDLE: usize = 1;

/// Waits until every other running thread sleeps (or ended), without letting time pass: for a
/// model's harness to look at a primitive when nothing moves (nothing wakes a sleeper but a wake,
/// which only the caller could make now, or time, which passes only once the caller sleeps).
pub fn idle() {
    let mut state = sleepers();
    let id = state.next;
    state.next += 1;
    state.asleep.push(Sleeper { word: IDLE, id, timed: false });
    state.pass_time_if_idle();
    while state.asleep.iter().any(|s| s.id == id) {
        state = FUTEX.woken.wait(state).unwrap_or_else(PoisonError::into_inner);
    }
}

/// Whether process `pid` has not died (as the primitives see it).
pub fn alive(pid: u32) -> bool {
    !is_dead(DEAD.load(Ordering::SeqCst), pid)
}

/// Keeps the panic hook quiet about deaths (a model runs thousands); other panics are reported
/// as before.
fn quiet_deaths() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Died>() {
                previous(info);
            }
        }));
    });
}

/// A diagnostic for a model that exceeds loom's branch limit: with `LOOM_PROFILE=n`, the first
/// execution that reaches `n` shared-memory operations (loads included) prints them counted by
/// process and call site, most first; [`reset`](profile::reset) starts each execution's count
/// (`tests/loom.rs` calls it). A loop that burns the branches stands out at the top.
pub mod profile {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::panic::Location;

    std::thread_local! {
        static COUNTS: RefCell<HashMap<(u32, &'static Location<'static>), u64>> = RefCell::new(HashMap::new());
        static LIMIT: Option<u64> = std::env::var("LOOM_PROFILE").ok().and_then(|v| v.parse().ok());
        static TOTAL: Cell<u64> = const { Cell::new(0) };
    }

    /// Counts an operation at `at` (when profiling).
    pub(crate) fn count(at: &'static Location<'static>) {
        let Some(limit) = LIMIT.with(|l| *l) else { return };
        COUNTS.with(|c| *c.borrow_mut().entry((super::pid(), at)).or_default() += 1);
        TOTAL.set(TOTAL.get() + 1);
        if TOTAL.get() == limit {
            dump();
        }
    }

    /// Starts an execution's count.
    pub fn reset() {
        COUNTS.with(|c| c.borrow_mut().clear());
        TOTAL.set(0);
    }

    /// Prints the counts, most first.
    fn dump() {
        COUNTS.with(|c| {
            let c = c.borrow();
            let mut v: Vec<_> = c.iter().collect();
            v.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
            eprintln!("{} operations in this execution:", TOTAL.get());
            for ((pid, at), n) in v.iter().take(40) {
                eprintln!("{n:8} process {pid} at {at}");
            }
        });
    }
}
