//! A lock or permit that another process holds stays held through any number of failed
//! `try_acquire` / `acquire_timeout` calls (no guard is built, and dropped, for a failed try).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proc_core::{get_all_start_methods, get_context, StartMethod, Target};
use proc_sync::{BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore};
use test_support::{serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

/// Failed tries of each kind.
const TRIES: usize = 100;

/// A short bounded wait: long enough to go through the sleeping path, short enough for 100 of them.
const SHORT: Duration = Duration::from_millis(1);

/// Runs `holder` in a child under every start method; once it says it holds (`held`), calls
/// `fail` (which makes its failed tries and asserts they failed), lets the child go, and checks the
/// child still held what it took until then (its return value) and that `after` then succeeds.
fn check<A, H>(name: &str, holder: H, args: A, fail: impl Fn(StartMethod), after: impl Fn(StartMethod))
where
    A: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + 'static,
    H: Target<(A, Event, Event), Output = bool> + Copy,
{
    for m in get_all_start_methods() {
        let (held, go) = (Event::new().unwrap(), Event::new().unwrap());
        let p = get_context(m).process(holder, (args.clone(), held.clone(), go.clone())).start().unwrap();
        held.wait();
        // Let the child go even if an assertion fails, so that the binary does not wait for it at exit.
        let release = SetOnDrop(go);
        fail(m);
        drop(release);
        assert!(p.join().unwrap(), "{name} ({m}): the holder lost what it held to the parent's failed tries");
        after(m);
    }
}

/// Sets its event when dropped, also while a failed assertion unwinds.
struct SetOnDrop(Event);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

fn hold_lock(lock: Lock, held: Event, go: Event) -> bool {
    lock.acquire().unwrap().leak();
    held.set();
    go.wait();
    // Still ours: a failed try that released it would leave it free (or taken by the parent).
    lock.release().is_ok()
}

#[test]
fn a_held_lock_stays_held_through_failed_tries() {
    let _s = serial();
    let _w = Watchdog::new("a_held_lock_stays_held_through_failed_tries", LIMIT);
    let lock = Lock::new().unwrap();
    let fail = |m: StartMethod| {
        for i in 0..TRIES {
            assert!(lock.try_acquire().unwrap().is_none(), "{m}: try {i} took a held lock");
            assert!(lock.acquire_timeout(SHORT).unwrap().is_none(), "{m}: timed try {i} took a held lock");
        }
        assert!(lock.locked(), "{m}");
    };
    let after = |m: StartMethod| {
        assert!(!lock.locked(), "{m}");
        drop(lock.try_acquire().unwrap().unwrap());
    };
    check("Lock", hold_lock, lock.clone(), fail, after);
}

fn hold_rlock(lock: RLock, held: Event, go: Event) -> bool {
    // Two levels, so the depth is tested too.
    lock.acquire().unwrap().leak();
    lock.acquire().unwrap().leak();
    held.set();
    go.wait();
    lock.release().is_ok() && lock.locked() && lock.release().is_ok() && !lock.locked()
}

#[test]
fn a_held_rlock_stays_held_through_failed_tries() {
    let _s = serial();
    let _w = Watchdog::new("a_held_rlock_stays_held_through_failed_tries", LIMIT);
    let lock = RLock::new().unwrap();
    let fail = |m: StartMethod| {
        for i in 0..TRIES {
            assert!(
                lock.acquire_timeout(Duration::ZERO).unwrap().is_none(),
                "{m}: try {i} took a held rlock"
            );
            assert!(lock.acquire_timeout(SHORT).unwrap().is_none(), "{m}: timed try {i} took a held rlock");
        }
        assert!(lock.locked(), "{m}");
    };
    let after = |m: StartMethod| {
        assert!(!lock.locked(), "{m}");
        drop(lock.acquire_timeout(Duration::ZERO).unwrap().unwrap());
    };
    check("RLock", hold_rlock, lock.clone(), fail, after);
}

fn hold_permit(sem: Semaphore, held: Event, go: Event) -> bool {
    let permit = sem.acquire_guard().unwrap();
    held.set();
    go.wait();
    let untouched = sem.get_value() == 0;
    drop(permit);
    untouched
}

#[test]
fn a_held_permit_stays_held_through_failed_tries() {
    let _s = serial();
    let _w = Watchdog::new("a_held_permit_stays_held_through_failed_tries", LIMIT);
    let sem = Semaphore::new(1).unwrap();
    let fail = |m: StartMethod| {
        for i in 0..TRIES {
            assert!(!sem.try_acquire(), "{m}: try {i} took a held permit");
            assert!(!sem.acquire_timeout(SHORT), "{m}: timed try {i} took a held permit");
            assert!(sem.acquire_guard_timeout(Duration::ZERO).unwrap().is_none(), "{m}: guard try {i}");
            assert!(sem.acquire_guard_timeout(SHORT).unwrap().is_none(), "{m}: timed guard try {i}");
        }
        assert_eq!(sem.get_value(), 0, "{m}");
    };
    let after = |m: StartMethod| {
        assert_eq!(sem.get_value(), 1, "{m}");
        let permit = sem.acquire_guard_timeout(Duration::ZERO).unwrap().unwrap();
        assert!(!sem.try_acquire(), "{m}");
        drop(permit);
        assert_eq!(sem.get_value(), 1, "{m}");
    };
    check("Semaphore", hold_permit, sem.clone(), fail, after);
}

fn hold_bounded_permit(sem: BoundedSemaphore, held: Event, go: Event) -> bool {
    sem.acquire();
    held.set();
    go.wait();
    // A permit that a failed try put back would make this release go above the maximum.
    sem.release().is_ok()
}

#[test]
fn a_held_bounded_permit_stays_held_through_failed_tries() {
    let _s = serial();
    let _w = Watchdog::new("a_held_bounded_permit_stays_held_through_failed_tries", LIMIT);
    let sem = BoundedSemaphore::new(1).unwrap();
    let fail = |m: StartMethod| {
        for i in 0..TRIES {
            assert!(!sem.try_acquire(), "{m}: try {i} took a held permit");
            assert!(!sem.acquire_timeout(SHORT), "{m}: timed try {i} took a held permit");
            assert!(sem.acquire_guard_timeout(Duration::ZERO).unwrap().is_none(), "{m}: guard try {i}");
            assert!(sem.acquire_guard_timeout(SHORT).unwrap().is_none(), "{m}: timed guard try {i}");
        }
        assert_eq!(sem.get_value(), 0, "{m}");
    };
    let after = |m: StartMethod| {
        assert_eq!(sem.get_value(), 1, "{m}");
        drop(sem.acquire_guard_timeout(Duration::ZERO).unwrap().unwrap());
        assert!(sem.release().is_err(), "{m}: a permit was counted twice");
    };
    check("BoundedSemaphore", hold_bounded_permit, sem.clone(), fail, after);
}

fn hold_condition_lock(cond_and_lock: (Condition, Lock), held: Event, go: Event) -> bool {
    let (cond, lock) = cond_and_lock;
    std::mem::forget(cond.acquire().unwrap());
    held.set();
    go.wait();
    lock.release().is_ok()
}

fn hold_condition_rlock(cond_and_lock: (Condition, RLock), held: Event, go: Event) -> bool {
    let (cond, lock) = cond_and_lock;
    std::mem::forget(cond.acquire().unwrap());
    held.set();
    go.wait();
    lock.release().is_ok() && !lock.locked()
}

/// The failed tries on a condition whose lock another process holds.
fn fail_on(cond: &Condition, m: StartMethod) {
    for i in 0..TRIES {
        assert!(cond.acquire_timeout(Duration::ZERO).unwrap().is_none(), "{m}: try {i} took a held lock");
        assert!(cond.acquire_timeout(SHORT).unwrap().is_none(), "{m}: timed try {i} took a held lock");
    }
}

#[test]
fn a_held_condition_lock_stays_held_through_failed_tries() {
    let _s = serial();
    let _w = Watchdog::new("a_held_condition_lock_stays_held_through_failed_tries", LIMIT);
    let lock = Lock::new().unwrap();
    let cond = Condition::with_lock(lock.clone()).unwrap();
    let fail = |m: StartMethod| {
        fail_on(&cond, m);
        assert!(lock.locked(), "{m}");
    };
    let after = |m: StartMethod| {
        assert!(!lock.locked(), "{m}");
        drop(cond.acquire_timeout(Duration::ZERO).unwrap().unwrap());
    };
    check("Condition over a Lock", hold_condition_lock, (cond.clone(), lock.clone()), fail, after);

    let rlock = RLock::new().unwrap();
    let cond = Condition::with_rlock(rlock.clone()).unwrap();
    let fail = |m: StartMethod| {
        fail_on(&cond, m);
        assert!(rlock.locked(), "{m}");
    };
    let after = |m: StartMethod| {
        assert!(!rlock.locked(), "{m}");
        drop(cond.acquire_timeout(Duration::ZERO).unwrap().unwrap());
    };
    check("Condition over an RLock", hold_condition_rlock, (cond.clone(), rlock.clone()), fail, after);
}
