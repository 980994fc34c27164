//! Starting and ending the floors' and benchmarks' children: the bound on every wait ([`BOUND`]), the
//! start [`Gate`], [`join_bounded`] for a `Process`, and `Child`, a child made by a raw `fork`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shared::SharedPage;

/// The longest any wait of a synchronization benchmark may take: past it the bench gives up (and
/// kills its child) instead of hanging.
pub const BOUND: Duration = Duration::from_secs(10);

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
pub(crate) fn spin_until(cond: impl Fn() -> bool) -> bool {
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
pub(crate) struct Child {
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
    pub(crate) unsafe fn fork(body: impl FnOnce() -> bool) -> Child {
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
    pub(crate) fn reap(self) -> bool {
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
