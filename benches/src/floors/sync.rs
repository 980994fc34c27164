//! The floors of synchronization: two processes counting under a process-shared pthread mutex, and a
//! raw futex ping-pong (Linux).

#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
#[cfg(target_os = "linux")]
use std::time::Instant;

#[cfg(target_os = "linux")]
use crate::gate::BOUND;
use crate::gate::{Child, Gate};
use crate::shared::SharedMutex;
#[cfg(target_os = "linux")]
use crate::shared::SharedPage;

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
