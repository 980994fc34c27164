//! Locks, reentrant locks, semaphores and conditions held by another process: failed acquires and
//! calls leave them held, and the holder's end releases its locks.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proc_core::Process;
use proc_manager::{Error, Event, Lock, Manager, Semaphore};
use test_support::{serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

/// Takes `lock` (if any) and `permits` permits of `sem` (if any), says so, and holds them until
/// it is killed.
fn hold_until_killed(lock: Option<Lock>, sem: Option<(Semaphore, u32)>, ready: Event) {
    if let Some(lock) = &lock {
        std::mem::forget(lock.acquire().unwrap());
    }
    if let Some((sem, permits)) = &sem {
        for _ in 0..*permits {
            sem.acquire().unwrap();
        }
    }
    ready.set().unwrap();
    loop {
        std::thread::park();
    }
}

/// Starts a child that holds `lock` / `sem`'s permits, runs `check` once it holds them, then
/// kills the child (its session ends, and a lock it held is released).
fn while_held_by_a_child(
    m: &Manager,
    lock: Option<Lock>,
    sem: Option<(Semaphore, u32)>,
    check: impl FnOnce(),
) {
    /// Kills and reaps the holder however the check ends (a failed assertion too), so that a
    /// failing test fails instead of hanging at exit.
    struct Holder(Process<()>);
    impl Drop for Holder {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.join_timeout(Duration::from_secs(60));
        }
    }
    let ready = m.event().unwrap();
    let holder = Holder(Process::new(hold_until_killed, (lock, sem, ready.clone())).start().unwrap());
    assert!(ready.wait_timeout(Duration::from_secs(60)).unwrap(), "the holder did not start");
    check();
    drop(holder);
}

/// Fails to take a lock held by another process many times, both ways; it stays held.
fn fail_many_times(lock: &Lock) {
    for i in 0..50 {
        assert!(lock.try_acquire().unwrap().is_none(), "try_acquire {i} took a lock held elsewhere");
        let timed = lock.acquire_timeout(Duration::from_millis(1));
        assert!(matches!(timed, Err(Error::Timeout)), "acquire_timeout {i}: {timed:?}");
    }
}

#[test]
fn a_lock_held_by_another_process_stays_held_after_failed_acquires() {
    let _g = serial();
    let _w = Watchdog::new("held_lock", LIMIT);
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    while_held_by_a_child(&m, Some(lock.clone()), None, || fail_many_times(&lock));
    // The holder is gone: its lock was released with its session.
    drop(lock.acquire_timeout(Duration::from_secs(30)).unwrap());
}

#[test]
fn an_rlock_held_by_another_process_stays_held_after_failed_acquires() {
    let _g = serial();
    let _w = Watchdog::new("held_rlock", LIMIT);
    let m = Manager::start().unwrap();
    let rlock = m.rlock().unwrap();
    while_held_by_a_child(&m, Some(rlock.clone()), None, || {
        fail_many_times(&rlock);
        assert!(matches!(rlock.release(), Err(Error::NotHeld)));
        fail_many_times(&rlock);
    });
    drop(rlock.acquire_timeout(Duration::from_secs(30)).unwrap());
}

/// Fails to take a permit of a semaphore whose permits another process holds, many times; none
/// appears.
fn fail_many_permits(sem: &Semaphore) {
    for i in 0..50 {
        assert!(!sem.try_acquire().unwrap(), "try_acquire {i} took a permit that was not free");
        assert!(!sem.acquire_timeout(Duration::from_millis(1)).unwrap(), "acquire_timeout {i}");
        assert_eq!(sem.get_value().unwrap(), 0);
    }
}

#[test]
fn a_semaphore_whose_permits_another_process_holds_stays_empty_after_failed_acquires() {
    let _g = serial();
    let _w = Watchdog::new("held_semaphore", LIMIT);
    let m = Manager::start().unwrap();
    let sem = m.semaphore(3).unwrap();
    while_held_by_a_child(&m, None, Some((sem.clone(), 3)), || fail_many_permits(&sem));
}

#[test]
fn a_bounded_semaphore_whose_permits_another_process_holds_stays_empty_after_failed_acquires() {
    let _g = serial();
    let _w = Watchdog::new("held_bounded_semaphore", LIMIT);
    let m = Manager::start().unwrap();
    let sem = m.bounded_semaphore(2).unwrap();
    while_held_by_a_child(&m, None, Some((sem.clone(), 2)), || {
        fail_many_permits(&sem);
        sem.release().unwrap();
        sem.release().unwrap();
        assert!(matches!(sem.release(), Err(Error::NotHeld)));
        assert_eq!(sem.get_value().unwrap(), 2);
    });
}

#[test]
fn a_condition_whose_lock_another_process_holds_keeps_it_held_after_failed_calls() {
    let _g = serial();
    let _w = Watchdog::new("held_condition", LIMIT);
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    let cond = m.condition(&lock).unwrap();
    while_held_by_a_child(&m, Some(lock.clone()), None, || {
        for _ in 0..20 {
            assert!(matches!(cond.wait_timeout(Duration::from_millis(1)), Err(Error::NotHeld)));
            assert!(matches!(cond.notify(1), Err(Error::NotHeld)));
            fail_many_times(&lock);
        }
    });
    let _held = lock.acquire_timeout(Duration::from_secs(30)).unwrap();
    assert!(!cond.wait_timeout(Duration::from_millis(1)).unwrap());
}
