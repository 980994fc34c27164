//! Lock and RLock across processes, timed acquires, and a holder that dies.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use proc_core::{get_all_start_methods, get_context, StartMethod};
use proc_sync::{Event, Lock, RLock, ReleaseError, Value};
use test_support::{serial, spawn_until_asleep, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

/// Takes the lock, tells the parent, and holds it until released by `go`.
fn hold_until(lock: Lock, held: Event, go: Event) {
    let _g = lock.acquire().unwrap();
    held.set();
    go.wait();
}

#[test]
fn lock_excludes_across_processes() {
    let _s = serial();
    let _w = Watchdog::new("lock_excludes_across_processes", LIMIT);
    for m in get_all_start_methods() {
        let (lock, held, go) = (Lock::new().unwrap(), Event::new().unwrap(), Event::new().unwrap());
        let p = get_context(m).process(hold_until, (lock.clone(), held.clone(), go.clone())).start().unwrap();
        held.wait();
        assert!(lock.locked());
        assert!(lock.try_acquire().unwrap().is_none(), "{m}");
        let before = Instant::now();
        assert!(lock.acquire_timeout(Duration::from_millis(30)).unwrap().is_none());
        // A bounded wait never returns early.
        assert!(before.elapsed() >= Duration::from_millis(30));
        go.set();
        let g = lock.acquire().unwrap();
        drop(g);
        p.join().unwrap();
        assert!(!lock.locked());
    }
}

fn die_holding(lock: Lock, held: Event) {
    let g = lock.acquire().unwrap();
    g.leak();
    held.set();
    // SAFETY: SIGKILL to ourselves; nothing after it runs.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

#[test]
fn a_dead_holder_does_not_hang_the_others() {
    let _s = serial();
    let _w = Watchdog::new("a_dead_holder_does_not_hang_the_others", LIMIT);
    for m in get_all_start_methods() {
        let (lock, held) = (Lock::new().unwrap(), Event::new().unwrap());
        let p = get_context(m).process(die_holding, (lock.clone(), held.clone())).start().unwrap();
        let pid = p.pid();
        held.wait();
        assert_eq!(p.join().unwrap_err().signal(), Some(libc::SIGKILL));
        let err = lock.acquire().unwrap_err();
        assert_eq!(err.pid(), pid, "{m}");
        drop(err.into_guard());
        // The lock works normally afterwards.
        drop(lock.acquire().unwrap());
        assert!(!lock.locked());
    }
}

#[test]
fn a_dead_holder_is_noticed_by_a_waiter_already_waiting() {
    let _s = serial();
    let _w = Watchdog::new("a_dead_holder_is_noticed_by_a_waiter_already_waiting", LIMIT);
    let (lock, held, go) = (Lock::new().unwrap(), Event::new().unwrap(), Event::new().unwrap());
    let holder = get_context(StartMethod::Spawn)
        .process(hold_until, (lock.clone(), held.clone(), go))
        .start()
        .unwrap();
    held.wait();
    let waiter_lock = lock.clone();
    let waiter = spawn_until_asleep(move || waiter_lock.acquire().map(drop).map_err(|e| e.pid()));
    holder.kill().unwrap();
    let _ = holder.join();
    assert_eq!(waiter.join().unwrap(), Err(holder.pid()));
}

#[test]
fn release_rules() {
    let lock = Lock::new().unwrap();
    assert_eq!(lock.release(), Err(ReleaseError::NotHeld));
    lock.acquire().unwrap().leak();
    assert!(lock.locked());
    lock.release().unwrap();
    assert!(!lock.locked());

    let r = RLock::new().unwrap();
    assert_eq!(r.release(), Err(ReleaseError::NotHeld));
    let a = r.acquire().unwrap();
    let b = r.acquire().unwrap();
    let r2 = r.clone();
    // Another thread neither gets it nor may release it.
    std::thread::spawn(move || {
        assert!(r2.try_acquire_none());
        assert_eq!(r2.release(), Err(ReleaseError::NotOwner));
    })
    .join()
    .unwrap();
    drop(b);
    assert!(r.locked());
    drop(a);
    assert!(!r.locked());
}

trait TryNone {
    fn try_acquire_none(&self) -> bool;
}

impl TryNone for RLock {
    fn try_acquire_none(&self) -> bool {
        self.acquire_timeout(Duration::ZERO).unwrap().is_none()
    }
}

fn rlock_in_child(lock: RLock) -> bool {
    let outer = lock.acquire().unwrap();
    let inner = lock.acquire().unwrap();
    drop(inner);
    let still = lock.locked();
    drop(outer);
    still && !lock.locked()
}

#[test]
fn rlock_reenters_in_a_child_and_excludes_the_parent() {
    let _s = serial();
    let _w = Watchdog::new("rlock_reenters_in_a_child_and_excludes_the_parent", LIMIT);
    for m in get_all_start_methods() {
        let lock = RLock::new().unwrap();
        let p = get_context(m).process(rlock_in_child, (lock.clone(),)).start().unwrap();
        assert!(p.join().unwrap(), "{m}");
        let g = lock.acquire().unwrap();
        drop(g);
    }
}

fn add_many(counter: Value<u64>, n: u64) {
    for _ in 0..n {
        counter.update(|c| *c += 1);
    }
}

#[test]
fn eight_processes_count_exactly_under_the_lock() {
    let _s = serial();
    let _w = Watchdog::new("eight_processes_count_exactly_under_the_lock", LIMIT);
    let n = 100_000;
    let counter = Value::new(0u64).unwrap();
    let ps: Vec<_> = (0..8)
        .map(|_| {
            get_context(StartMethod::ForkServer).process(add_many, (counter.clone(), n)).start().unwrap()
        })
        .collect();
    for p in ps {
        p.join().unwrap();
    }
    assert_eq!(counter.get(), 8 * n);
}
