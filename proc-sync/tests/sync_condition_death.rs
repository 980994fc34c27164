//! `Condition` waiters that die: killed while waiting they are not counted and absorb no
//! notification; one killed after a notify chose it passes the notification to a live waiter that
//! registered before that notify. A decoded handle is checked against the memory its state needs.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proc_core::{get_all_start_methods, get_context, Process, StartMethod};
use proc_sync::{Condition, RLock, Semaphore};
use test_support::{serial, until, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

/// How long a waiter may take to notice a notification stranded on a dead one: the check runs
/// once per `LIVENESS_CHECK`; the rest is room for a loaded machine.
const NOTICED_WITHIN: Duration = Duration::from_secs(10);

/// Waits once (with a bound far beyond the test's), then reports through `done`; whether it was
/// notified.
fn wait_then_report(cond: Condition, done: Semaphore) -> bool {
    let mut g = cond.acquire().unwrap();
    let notified = g.wait_timeout(Duration::from_secs(600)).unwrap();
    drop(g);
    done.release();
    notified
}

/// A condition over an RLock the test can look at: a waiter is asleep once it is counted and the
/// lock is free again.
fn condition() -> (Condition, RLock) {
    let lock = RLock::new().unwrap();
    (Condition::with_rlock(lock.clone()).unwrap(), lock)
}

/// Starts a waiter in a child and returns once it waits (counted, the lock released).
fn start_waiting(m: StartMethod, cond: &Condition, lock: &RLock, done: &Semaphore) -> Process<bool> {
    let before = cond.waiting();
    let p = get_context(m).process(wait_then_report, (cond.clone(), done.clone())).start().unwrap();
    until(|| cond.waiting() == before + 1 && !lock.locked());
    p
}

/// Kills `p` (SIGKILL) and reaps it.
fn kill(p: Process<bool>) {
    p.kill().unwrap();
    assert_eq!(p.join().err().and_then(|e| e.signal()), Some(libc::SIGKILL));
}

#[test]
fn a_waiter_killed_while_waiting_does_not_absorb_a_notify() {
    let _s = serial();
    let _w = Watchdog::new("a_waiter_killed_while_waiting_does_not_absorb_a_notify", LIMIT);
    for m in get_all_start_methods() {
        let (cond, lock) = condition();
        let (dead_done, done) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
        kill(start_waiting(m, &cond, &lock, &dead_done));
        // Still counted: nobody looked yet.
        assert_eq!(cond.waiting(), 1, "{m}");
        let live = start_waiting(m, &cond, &lock, &done);
        assert_eq!(cond.waiting(), 2, "{m}");
        assert_eq!(cond.acquire().unwrap().notify(1), 1, "{m}");
        // No timeout elapses: the live waiter got the one notification.
        done.acquire();
        assert!(live.join().unwrap(), "{m}: the live wait ended without a notification");
        // The dead waiter is gone from the count: nothing is left to notify.
        assert_eq!(cond.waiting(), 0, "{m}");
        assert_eq!(cond.acquire().unwrap().notify(1), 0, "{m}");
    }
}

#[test]
fn notify_k_wakes_min_k_live_among_dead_waiters() {
    let _s = serial();
    let _w = Watchdog::new("notify_k_wakes_min_k_live_among_dead_waiters", LIMIT);
    let (cond, lock) = condition();
    let (dead_done, done) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
    // Live and dead waiters interleaved: live, dead, live, dead, live, dead.
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(start_waiting(StartMethod::Fork, &cond, &lock, &done));
        let victim = start_waiting(StartMethod::Fork, &cond, &lock, &dead_done);
        kill(victim);
    }
    assert_eq!(cond.waiting(), 6);
    assert_eq!(cond.acquire().unwrap().notify(2), 2);
    done.acquire();
    done.acquire();
    // Three more asked for, one live left: one.
    assert_eq!(cond.acquire().unwrap().notify(3), 1);
    done.acquire();
    assert_eq!(cond.waiting(), 0);
    assert_eq!(cond.acquire().unwrap().notify_all(), 0);
    for p in live {
        assert!(p.join().unwrap(), "a wait ended without a notification");
    }
    // No notification was left over for later waits: of two new ones, notify(1) ends exactly one.
    let later: Vec<_> = (0..2).map(|_| start_waiting(StartMethod::Fork, &cond, &lock, &done)).collect();
    assert_eq!(cond.acquire().unwrap().notify(1), 1);
    done.acquire();
    assert_eq!(cond.waiting(), 1);
    assert_eq!(cond.acquire().unwrap().notify_all(), 1);
    done.acquire();
    for p in later {
        assert!(p.join().unwrap());
    }
    assert_eq!(dead_done.get_value(), 0, "a killed waiter reported");
}

#[test]
fn a_notified_waiter_that_dies_passes_its_notification_on() {
    let _s = serial();
    let _w = Watchdog::new("a_notified_waiter_that_dies_passes_its_notification_on", LIMIT);
    let (cond, lock) = condition();
    let (a_done, b_done, c_done) =
        (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
    let a = start_waiting(StartMethod::Fork, &cond, &lock, &a_done);
    let b = start_waiting(StartMethod::Fork, &cond, &lock, &b_done);
    // A is stopped, so that the notify chooses it (the oldest) and it cannot end its wait.
    // SAFETY: kill has no memory preconditions; the pid is our child's, not yet reaped.
    assert_eq!(unsafe { libc::kill(a.pid() as libc::pid_t, libc::SIGSTOP) }, 0);
    assert_eq!(cond.acquire().unwrap().notify(1), 1);
    assert_eq!(cond.waiting(), 1);
    // C registers after the notify: the notification is not for it.
    let c = start_waiting(StartMethod::Fork, &cond, &lock, &c_done);
    kill(a);
    // B, asleep without a new notify, notices the stranded notification and takes it.
    assert!(b_done.acquire_timeout(NOTICED_WITHIN), "the notification stayed with the dead waiter");
    assert!(b.join().unwrap());
    assert_eq!(cond.waiting(), 1);
    assert_eq!(cond.acquire().unwrap().notify_all(), 1);
    c_done.acquire();
    assert!(c.join().unwrap());
    assert_eq!(a_done.get_value(), 0);
}

/// The wire form of a `Condition`'s lock.
#[derive(serde::Serialize, serde::Deserialize)]
#[allow(dead_code)]
enum Inner {
    Lock(proc_sync::Lock),
    RLock(RLock),
}

/// A region's wire form: `(arena id, arena descriptor, arena length, offset, length)`.
type RegionWire = (u128, proc_core::handle::Fd, u64, u64, u64);

#[test]
fn a_handle_whose_memory_is_too_short_is_refused() {
    use proc_core::handle::{deserialize_with_fds, serialize_with_fds};
    fn reencode<T: serde::Serialize, U: serde::de::DeserializeOwned>(value: &T) -> proc_core::Result<U> {
        let (bytes, fds) = serialize_with_fds(value)?;
        deserialize_with_fds(&bytes, fds)
    }
    let (lock, (id, fd, arena_len, offset, len)): (Inner, RegionWire) =
        reencode(&Condition::new().unwrap()).unwrap();
    // The five counting words alone: no room for the waiters' slots.
    let short = (&lock, (id, &fd, arena_len, offset, 20u64));
    assert!(reencode::<_, Condition>(&short).is_err());
    let whole: Condition = reencode(&(&lock, (id, &fd, arena_len, offset, len))).unwrap();
    assert_eq!(whole.acquire().unwrap().notify(1), 0);
}
