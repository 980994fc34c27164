//! Condition and Barrier across processes: exact wake counts, timeouts, rounds, breaking.

#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proc_core::{get_all_start_methods, get_context, Process, StartMethod};
use proc_sync::{Barrier, BarrierError, Condition, Lock, RLock, Semaphore, Value};
use test_support::{serial, until, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

/// Waits once (with a generous bound), then reports through `done`; whether it was notified.
fn wait_then_report(cond: Condition, done: Semaphore) -> bool {
    let mut g = cond.acquire().unwrap();
    let notified = g.wait_timeout(Duration::from_secs(60)).unwrap();
    drop(g);
    done.release();
    notified
}

#[test]
fn notify_n_wakes_exactly_n_waiters() {
    let _s = serial();
    let _w = Watchdog::new("notify_n_wakes_exactly_n_waiters", LIMIT);
    for m in get_all_start_methods() {
        let (cond, done) = (Condition::new().unwrap(), Semaphore::new(0).unwrap());
        let children: Vec<_> = (0..4)
            .map(|_| get_context(m).process(wait_then_report, (cond.clone(), done.clone())).start().unwrap())
            .collect();
        until(|| cond.waiting() == 4);
        assert_eq!(cond.acquire().unwrap().notify(2), 2, "{m}");
        done.acquire();
        done.acquire();
        // Exactly two were released: the other two still wait, and nothing else reports.
        assert_eq!(cond.waiting(), 2);
        assert!(!done.acquire_timeout(Duration::from_millis(30)));
        assert_eq!(cond.acquire().unwrap().notify(1), 1);
        done.acquire();
        assert_eq!(cond.acquire().unwrap().notify_all(), 1);
        done.acquire();
        assert_eq!(cond.acquire().unwrap().notify_all(), 0);
        for c in children {
            assert!(c.join().unwrap(), "{m}: a wait ended without a notification");
        }
        assert_eq!(cond.waiting(), 0);
    }
}

#[test]
fn a_wait_that_begins_after_a_notify_is_not_ended_by_it() {
    let _s = serial();
    let _w = Watchdog::new("a_wait_that_begins_after_a_notify", LIMIT);
    for round in 0..20 {
        let (cond, done) = (Condition::with_lock(Lock::new().unwrap()).unwrap(), Semaphore::new(0).unwrap());
        let child = Process::new(wait_then_report, (cond.clone(), done.clone())).start().unwrap();
        until(|| cond.waiting() == 1);
        let mut g = cond.acquire().unwrap();
        assert_eq!(g.notify(1), 1);
        // The notification belongs to the child, whether or not it has woken yet.
        assert!(!g.wait_timeout(Duration::from_millis(5)).unwrap(), "round {round}: a later wait took it");
        drop(g);
        done.acquire();
        assert!(child.join().unwrap(), "round {round}");
        assert_eq!(cond.waiting(), 0);
    }
}

#[test]
fn wait_timeout_waits_at_least_its_timeout_and_holds_the_lock_again() {
    let _s = serial();
    let _w = Watchdog::new("wait_timeout_waits_at_least", LIMIT);
    let lock = Lock::new().unwrap();
    let cond = Condition::with_lock(lock.clone()).unwrap();
    let mut g = cond.acquire().unwrap();
    let before = Instant::now();
    assert!(!g.wait_timeout(Duration::from_millis(40)).unwrap());
    assert!(before.elapsed() >= Duration::from_millis(40));
    assert!(lock.locked());
    assert!(!g.wait_for_timeout(|| false, Duration::from_millis(25)).unwrap());
    assert!(before.elapsed() >= Duration::from_millis(65));
    // A predicate that already holds does not wait, even with a zero timeout.
    assert!(g.wait_for_timeout(|| true, Duration::ZERO).unwrap());
    assert_eq!(cond.waiting(), 0);
    drop(g);
    assert!(!lock.locked());
}

fn set_under_lock(cond: Condition, value: Value<u32>, to: u32) {
    let mut g = cond.acquire().unwrap();
    value.set(to);
    g.notify_all();
}

#[test]
fn wait_for_sees_a_childs_change() {
    let _s = serial();
    let _w = Watchdog::new("wait_for_sees_a_childs_change", LIMIT);
    for m in get_all_start_methods() {
        let (cond, value) = (Condition::with_lock(Lock::new().unwrap()).unwrap(), Value::new(0u32).unwrap());
        let mut g = cond.acquire().unwrap();
        let p = get_context(m).process(set_under_lock, (cond.clone(), value.clone(), 7)).start().unwrap();
        assert!(g.wait_for(|| value.get() == 7).unwrap(), "{m}");
        drop(g);
        p.join().unwrap();
    }
}

#[test]
fn a_wait_releases_every_level_of_an_rlock() {
    let _s = serial();
    let _w = Watchdog::new("a_wait_releases_every_level_of_an_rlock", LIMIT);
    let rlock = RLock::new().unwrap();
    let cond = Condition::with_rlock(rlock.clone()).unwrap();
    let value = Value::new(0u32).unwrap();
    let outer = rlock.acquire().unwrap();
    let mut g = cond.acquire().unwrap();
    // The child can only take the condition's lock if the wait released both levels.
    let p = Process::new(set_under_lock, (cond.clone(), value.clone(), 1)).start().unwrap();
    assert!(g.wait_for(|| value.get() == 1).unwrap());
    drop(g);
    // Still held at the outer level.
    assert!(rlock.locked());
    assert!(Process::new(|l: RLock| l.acquire_timeout(Duration::ZERO).unwrap().is_none(), (rlock.clone(),))
        .start()
        .unwrap()
        .join()
        .unwrap());
    drop(outer);
    assert!(!rlock.locked());
    p.join().unwrap();
}

/// Waits `rounds` times with short timeouts; how many of the waits were notified.
fn wait_many(cond: Condition, rounds: u32, finished: Value<u32>) -> u32 {
    let mut notified = 0;
    for i in 0..rounds {
        let mut g = cond.acquire().unwrap();
        if g.wait_timeout(Duration::from_micros(u64::from(i % 7) * 100)).unwrap() {
            notified += 1;
        }
    }
    finished.update(|f| *f += 1);
    notified
}

#[test]
fn notifications_racing_timeouts_are_counted_exactly_once() {
    let _s = serial();
    let _w = Watchdog::new("notifications_racing_timeouts", LIMIT);
    let (cond, finished) = (Condition::new().unwrap(), Value::new(0u32).unwrap());
    let children: Vec<_> = (0..3)
        .map(|_| Process::new(wait_many, (cond.clone(), 300, finished.clone())).start().unwrap())
        .collect();
    let mut sent = 0;
    while finished.get() < 3 {
        sent += cond.acquire().unwrap().notify(1);
        std::thread::yield_now();
    }
    let received: u32 = children.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(sent, received);
    assert!(sent > 0);
    assert_eq!(cond.waiting(), 0);
}

static ROUNDS: OnceLock<Value<u64>> = OnceLock::new();

fn count_round() {
    if let Some(rounds) = ROUNDS.get() {
        rounds.update(|r| *r += 1);
    }
}

/// One party of the lockstep test: after every round the action has run exactly once per round.
fn lockstep(barrier: Barrier, rounds_done: Value<u64>, rounds: u64) -> u64 {
    let _ = ROUNDS.set(rounds_done.clone());
    let mut index_sum = 0;
    for r in 0..rounds {
        let index = barrier.wait().unwrap();
        assert!(index < barrier.parties());
        assert_eq!(rounds_done.get(), r + 1, "the action ran once per round, before anyone went on");
        index_sum += u64::from(index);
    }
    index_sum
}

#[test]
fn five_processes_in_lockstep_for_a_thousand_rounds() {
    let _s = serial();
    let _w = Watchdog::new("five_processes_in_lockstep", LIMIT);
    let rounds_done = Value::new(0u64).unwrap();
    let barrier = Barrier::with_action(5, count_round).unwrap();
    let children: Vec<_> = (0..5)
        .map(|_| Process::new(lockstep, (barrier.clone(), rounds_done.clone(), 1000)).start().unwrap())
        .collect();
    let index_sum: u64 = children.into_iter().map(|c| c.join().unwrap()).sum();
    // Every round handed out 0+1+2+3+4.
    assert_eq!(index_sum, 10 * 1000);
    assert_eq!(rounds_done.get(), 1000);
    assert!(!barrier.broken());
    assert_eq!(barrier.n_waiting(), 0);
}

fn wait_once(barrier: Barrier) -> Result<u32, String> {
    barrier.wait().map_err(|e| e.to_string())
}

#[test]
fn indices_are_distinct_under_every_start_method() {
    let _s = serial();
    let _w = Watchdog::new("indices_are_distinct", LIMIT);
    for m in get_all_start_methods() {
        let barrier = Barrier::new(3).unwrap();
        let children: Vec<_> =
            (0..2).map(|_| get_context(m).process(wait_once, (barrier.clone(),)).start().unwrap()).collect();
        let mut indices = vec![barrier.wait().unwrap()];
        indices.extend(children.into_iter().map(|c| c.join().unwrap().unwrap()));
        indices.sort_unstable();
        assert_eq!(indices, [0, 1, 2], "{m}");
    }
}

#[test]
fn abort_breaks_the_barrier_for_a_waiting_party_until_reset() {
    let _s = serial();
    let _w = Watchdog::new("abort_breaks_the_barrier", LIMIT);
    let barrier = Barrier::new(2).unwrap();
    let child = Process::new(wait_once, (barrier.clone(),)).start().unwrap();
    until(|| barrier.n_waiting() == 1);
    barrier.abort();
    assert_eq!(child.join().unwrap(), Err("the barrier is broken".to_owned()));
    assert!(barrier.broken());
    assert!(matches!(barrier.wait(), Err(BarrierError::Broken)));
    barrier.reset();
    assert!(!barrier.broken());
    // Usable again.
    let child = Process::new(wait_once, (barrier.clone(),)).start().unwrap();
    let mine = barrier.wait().unwrap();
    assert_eq!(mine + child.join().unwrap().unwrap(), 1);
}

#[test]
fn reset_while_a_party_waits_breaks_only_that_round() {
    let _s = serial();
    let _w = Watchdog::new("reset_while_a_party_waits", LIMIT);
    let barrier = Barrier::new(2).unwrap();
    let child = get_context(StartMethod::Fork).process(wait_once, (barrier.clone(),)).start().unwrap();
    until(|| barrier.n_waiting() == 1);
    barrier.reset();
    assert!(child.join().unwrap().is_err());
    assert!(!barrier.broken());
    let child = Process::new(wait_once, (barrier.clone(),)).start().unwrap();
    barrier.wait().unwrap();
    child.join().unwrap().unwrap();
}

#[test]
fn a_timeout_breaks_the_barrier_for_everyone() {
    let _s = serial();
    let _w = Watchdog::new("a_timeout_breaks_the_barrier", LIMIT);
    let barrier = Barrier::new(2).unwrap().with_timeout(Duration::from_millis(40));
    let before = Instant::now();
    assert!(matches!(barrier.wait(), Err(BarrierError::Broken)));
    assert!(before.elapsed() >= Duration::from_millis(40));
    assert!(barrier.broken());
    // Another party (in a child) fails at once, without waiting for its own timeout.
    assert!(Process::new(wait_once, (barrier.clone(),)).start().unwrap().join().unwrap().is_err());
    barrier.reset();
    assert!(matches!(barrier.wait_timeout(Duration::ZERO), Err(BarrierError::Broken)));
}

fn explode() {
    panic!("the action failed");
}

#[test]
fn a_panicking_action_breaks_the_barrier() {
    let _s = serial();
    let _w = Watchdog::new("a_panicking_action_breaks_the_barrier", LIMIT);
    let barrier = Barrier::with_action(2, explode).unwrap();
    let child = Process::new(wait_once, (barrier.clone(),)).start().unwrap();
    until(|| barrier.n_waiting() == 1);
    // The parent arrives last, so the action runs here.
    match barrier.wait() {
        Err(BarrierError::ActionPanicked(m)) => assert_eq!(m, "the action failed"),
        other => panic!("expected ActionPanicked, got {other:?}"),
    }
    assert_eq!(child.join().unwrap(), Err("the barrier is broken".to_owned()));
    assert!(barrier.broken());
}

#[test]
fn a_barrier_needs_parties() {
    assert!(matches!(Barrier::new(0), Err(BarrierError::NoParties)));
    let one = Barrier::new(1).unwrap();
    assert_eq!(one.wait().unwrap(), 0);
    assert_eq!(one.wait().unwrap(), 0);
    assert_eq!(one.parties(), 1);
}

#[test]
fn send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<Condition>();
    both::<Barrier>();
}
