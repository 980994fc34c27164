//! Semaphores, events, values and arrays across processes; handles refuse to leave otherwise.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use proc_core::{get_all_start_methods, get_context, StartMethod};
use proc_sync::{Array, BoundedSemaphore, Event, Lock, RawArray, ReleaseError, Semaphore, Value};
use test_support::{serial, spawn_until_asleep, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn semaphore_counts_and_bounds() {
    let sem = Semaphore::new(2).unwrap();
    assert!(sem.try_acquire());
    assert!(sem.try_acquire());
    assert!(!sem.try_acquire());
    assert_eq!(sem.get_value(), 0);
    let before = Instant::now();
    assert!(!sem.acquire_timeout(Duration::from_millis(20)));
    assert!(before.elapsed() >= Duration::from_millis(20));
    sem.release();
    sem.release();
    sem.release();
    assert_eq!(sem.get_value(), 3, "a plain semaphore may go above its start");

    let b = BoundedSemaphore::new(1).unwrap();
    assert_eq!(b.release(), Err(ReleaseError::AboveMaximum));
    b.acquire();
    assert_eq!(b.get_value(), 0);
    b.release().unwrap();
    assert_eq!(b.release(), Err(ReleaseError::AboveMaximum));
}

fn take_and_signal(sem: Semaphore, got: Event) {
    sem.acquire();
    got.set();
}

#[test]
fn semaphore_wakes_a_waiting_child() {
    let _s = serial();
    let _w = Watchdog::new("semaphore_wakes_a_waiting_child", LIMIT);
    for m in get_all_start_methods() {
        let (sem, got) = (Semaphore::new(0).unwrap(), Event::new().unwrap());
        let p = get_context(m).process(take_and_signal, (sem.clone(), got.clone())).start().unwrap();
        assert!(!got.wait_timeout(Duration::from_millis(20)), "{m}: took a permit that did not exist");
        sem.release();
        got.wait();
        p.join().unwrap();
        assert_eq!(sem.get_value(), 0);
    }
}

fn die_holding_a_permit(sem: Semaphore, held: Event) {
    let g = sem.acquire_guard().unwrap();
    std::mem::forget(g);
    held.set();
    // SAFETY: SIGKILL to ourselves; nothing after it runs.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

#[test]
fn a_dead_permit_holder_hands_its_permit_on() {
    let _s = serial();
    let _w = Watchdog::new("a_dead_permit_holder_hands_its_permit_on", LIMIT);
    for m in get_all_start_methods() {
        let (sem, held) = (Semaphore::new(1).unwrap(), Event::new().unwrap());
        let p = get_context(m).process(die_holding_a_permit, (sem.clone(), held.clone())).start().unwrap();
        let pid = p.pid();
        held.wait();
        assert_eq!(p.join().unwrap_err().signal(), Some(libc::SIGKILL));
        assert_eq!(sem.get_value(), 0);
        let err = sem.acquire_guard().unwrap_err();
        assert_eq!(err.pid(), pid, "{m}");
        drop(err.into_guard());
        // The permit is back, once.
        assert_eq!(sem.get_value(), 1, "{m}");
        drop(sem.acquire_guard().unwrap());
        assert_eq!(sem.get_value(), 1);
    }
}

fn hold_a_permit(sem: BoundedSemaphore, held: Event, go: Event) {
    let _g = sem.acquire_guard().unwrap();
    held.set();
    go.wait();
}

#[test]
fn a_plain_waiter_gets_a_dead_holders_permit_without_counting_it_twice() {
    let _s = serial();
    let _w = Watchdog::new("a_plain_waiter_gets_a_dead_holders_permit", LIMIT);
    let (sem, held, go) = (BoundedSemaphore::new(1).unwrap(), Event::new().unwrap(), Event::new().unwrap());
    let holder = get_context(StartMethod::Spawn)
        .process(hold_a_permit, (sem.clone(), held.clone(), go))
        .start()
        .unwrap();
    held.wait();
    let waiter_sem = sem.clone();
    let waiter = spawn_until_asleep(move || waiter_sem.acquire());
    holder.kill().unwrap();
    let _ = holder.join();
    waiter.join().unwrap();
    assert_eq!(sem.get_value(), 0);
    sem.release().unwrap();
    assert_eq!(sem.release(), Err(ReleaseError::AboveMaximum), "the dead holder's permit came back twice");
    // A timed guard acquire that finds no dead holder times out as usual.
    let g = sem.acquire_guard_timeout(Duration::ZERO).unwrap().unwrap();
    assert!(sem.acquire_guard_timeout(Duration::from_millis(10)).unwrap().is_none());
    drop(g);
}

fn wait_event(e: Event) -> bool {
    e.wait_timeout(Duration::from_secs(60))
}

#[test]
fn event_releases_every_waiter() {
    let _s = serial();
    let _w = Watchdog::new("event_releases_every_waiter", LIMIT);
    let e = Event::new().unwrap();
    let ps: Vec<_> = get_all_start_methods()
        .into_iter()
        .map(|m| get_context(m).process(wait_event, (e.clone(),)).start().unwrap())
        .collect();
    assert!(!e.is_set());
    e.set();
    for p in ps {
        assert!(p.join().unwrap());
    }
    e.clear();
    assert!(!e.wait_timeout(Duration::ZERO));
}

fn write_values(i16v: Value<i16>, i32v: Value<i32>, i64v: Value<i64>, f64v: Value<f64>, bytes: Array<u8>) {
    i16v.set(-7);
    i32v.set(1 << 20);
    i64v.set(-(1 << 40));
    f64v.set(std::f64::consts::PI);
    bytes.with(|s| s.copy_from_slice(b"hello"));
}

#[test]
fn values_written_by_a_child_are_seen_by_the_parent() {
    let _s = serial();
    let _w = Watchdog::new("values_written_by_a_child_are_seen_by_the_parent", LIMIT);
    for m in get_all_start_methods() {
        let (a, b, c, d) = (
            Value::new(0i16).unwrap(),
            Value::new(0i32).unwrap(),
            Value::new(0i64).unwrap(),
            Value::new(0f64).unwrap(),
        );
        let bytes = Array::<u8>::zeroed(5).unwrap();
        let args = (a.clone(), b.clone(), c.clone(), d.clone(), bytes.clone());
        get_context(m).process(write_values, args).start().unwrap().join().unwrap();
        assert_eq!(
            (a.get(), b.get(), c.get(), d.get()),
            (-7, 1 << 20, -(1 << 40), std::f64::consts::PI),
            "{m}"
        );
        assert_eq!(bytes.to_vec(), b"hello");
    }
}

#[test]
fn arrays_and_shared_locks() {
    let lock = Lock::new().unwrap();
    let a = Array::<i32>::with_lock(3, lock.clone()).unwrap();
    let v = Value::with_lock(1u8, lock.clone()).unwrap();
    assert_eq!(a.to_vec(), [0, 0, 0]);
    assert!(a.set(2, 9));
    assert!(!a.set(3, 9));
    assert_eq!(a.get(2), Some(9));
    assert_eq!(a.get(3), None);
    // Both share one lock: holding it through one blocks the other's lock.
    let g = v.get_lock().acquire().unwrap();
    assert!(a.get_lock().try_acquire().unwrap().is_none());
    drop(g);
    let raw = RawArray::<u64>::zeroed(4).unwrap();
    // SAFETY: nothing else has the array.
    assert_eq!(unsafe { raw.as_slice() }, [0; 4]);
    assert!(Array::<u8>::from_slice(&[]).unwrap().is_empty());
}

#[test]
fn handles_refuse_to_serialize_outside_a_start() {
    let lock = Lock::new().unwrap();
    let value = Value::new(1u32).unwrap();
    for e in [proc_core::codec::to_vec(&lock).unwrap_err(), proc_core::codec::to_vec(&value).unwrap_err()] {
        // It says why.
        assert!(
            e.to_string().starts_with("a handle can only be sent to a child as part of its start arguments"),
            "{e}"
        );
    }
}

#[test]
fn send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<Lock>();
    both::<proc_sync::RLock>();
    both::<Semaphore>();
    both::<BoundedSemaphore>();
    both::<Event>();
    both::<Value<u64>>();
    both::<Array<f32>>();
    both::<RawArray<u8>>();
}
