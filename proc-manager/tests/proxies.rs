//! Every proxy type used from a child process; nested proxies; registered types; publish and
//! lookup; references and freeing.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use proc_core::Process;
use proc_manager::{
    Array, Barrier, Condition, Dict, Error, Event, List, Lock, Manager, Namespace, Proxy, PutError, Queue,
    Semaphore, Shared, Value,
};
use serde::{Deserialize, Serialize};
use test_support::{serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

fn fill(d: Dict<String, Vec<u32>>, l: List<i64>, ns: Namespace, v: Value<f64>, a: Array<u8>) {
    d.insert("one".into(), vec![1]).unwrap();
    d.update([("two".to_string(), vec![2, 2]), ("three".to_string(), vec![3, 3, 3])]).unwrap();
    l.extend([5, 3, 9, 1]).unwrap();
    l.append(-1).unwrap();
    ns.set("name", "child").unwrap();
    ns.set("count", &7u32).unwrap();
    v.set(2.5).unwrap();
    a.set(-1, 9).unwrap();
}

#[test]
fn containers_filled_by_a_child_are_seen_by_the_parent() {
    let _g = serial();
    let _w = Watchdog::new("containers", LIMIT);
    let m = Manager::start().unwrap();
    let d = m.dict().unwrap();
    let l = m.list().unwrap();
    let ns = m.namespace().unwrap();
    let v = m.value(0.0).unwrap();
    let a = m.array([0u8; 4]).unwrap();
    let p = Process::new(fill, (d.clone(), l.clone(), ns.clone(), v.clone(), a.clone())).start().unwrap();
    p.join().unwrap();

    assert_eq!(d.keys().unwrap(), ["one", "two", "three"]);
    assert_eq!(d.get("two").unwrap(), Some(vec![2, 2]));
    assert!(d.contains("three").unwrap());
    assert_eq!(d.len().unwrap(), 3);
    assert_eq!(d.setdefault("four".into(), vec![4]).unwrap(), [4]);
    assert_eq!(d.setdefault("four".into(), vec![0]).unwrap(), [4]);
    assert_eq!(d.pop("one").unwrap(), [1]);
    assert!(matches!(d.pop("one"), Err(Error::KeyNotFound)));
    assert_eq!(d.values().unwrap().len(), 3);
    // Reads are copies: changing one changes nothing on the manager.
    let mut copy = d.get("two").unwrap().unwrap();
    copy.push(99);
    assert_eq!(d.get("two").unwrap(), Some(vec![2, 2]));
    d.clear().unwrap();
    assert!(d.is_empty().unwrap());

    assert_eq!(l.snapshot().unwrap(), [5, 3, 9, 1, -1]);
    assert_eq!(l.get(-1).unwrap(), -1);
    l.sort().unwrap();
    assert_eq!(l.snapshot().unwrap(), [-1, 1, 3, 5, 9]);
    l.insert(0, 100).unwrap();
    l.set(1, 7).unwrap();
    assert_eq!(l.pop().unwrap(), 9);
    assert_eq!(l.pop_at(0).unwrap(), 100);
    assert_eq!(l.index(&3).unwrap(), 2);
    l.remove(&3).unwrap();
    assert!(matches!(l.remove(&3), Err(Error::ValueNotFound)));
    assert!(matches!(l.get(10), Err(Error::IndexOutOfRange)));
    assert_eq!(l.snapshot().unwrap(), [7, 1, 5]);

    assert_eq!(ns.get::<String>("name").unwrap(), "child");
    assert_eq!(ns.get::<u32>("count").unwrap(), 7);
    assert_eq!(ns.names().unwrap(), ["count", "name"]);
    ns.del("count").unwrap();
    assert!(matches!(ns.get::<u32>("count"), Err(Error::KeyNotFound)));

    assert_eq!(v.get().unwrap(), 2.5);
    assert_eq!(a.to_vec().unwrap(), [0, 0, 0, 9]);
    assert_eq!(a.get(3).unwrap(), 9);
    assert!(matches!(a.get(4), Err(Error::IndexOutOfRange)));
}

fn consume(q: Queue<u32>, results: Queue<u32>) {
    loop {
        let item = q.get().unwrap();
        if item == 0 {
            break;
        }
        results.put(item * 10).unwrap();
        q.task_done().unwrap();
    }
    q.task_done().unwrap();
}

#[test]
fn queues_between_processes() {
    let _g = serial();
    let _w = Watchdog::new("queues", LIMIT);
    let m = Manager::start().unwrap();
    let q = m.joinable_queue::<u32>(0).unwrap();
    let results = m.queue::<u32>(2).unwrap();
    let p = Process::new(consume, (q.clone(), results.clone())).start().unwrap();
    for i in 1..=5 {
        q.put(i).unwrap();
    }
    let mut got: Vec<u32> = (0..5).map(|_| results.get_timeout(Duration::from_secs(30)).unwrap()).collect();
    got.sort();
    assert_eq!(got, [10, 20, 30, 40, 50]);
    q.put(0).unwrap();
    q.join_timeout(Duration::from_secs(30)).unwrap();
    p.join().unwrap();
    assert!(matches!(q.task_done(), Err(Error::NotHeld)));

    // Bounded: full and empty, with timing bounds from below.
    results.put(1).unwrap();
    results.put(2).unwrap();
    let full = results.put_nowait(3).unwrap_err();
    assert!(full.is_full(), "{full}");
    assert_eq!(full.into_inner(), 3, "a full queue hands the value back");
    let t = Instant::now();
    assert!(matches!(results.put_timeout(4, Duration::from_millis(100)), Err(PutError::Full(4))));
    assert!(matches!(Error::from(results.put_nowait(5).unwrap_err()), Error::Full));
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert_eq!(results.qsize().unwrap(), 2);
    assert_eq!(results.get_nowait().unwrap(), 1);
    assert_eq!(results.get_nowait().unwrap(), 2);
    assert!(matches!(results.get_nowait(), Err(Error::Empty)));
    assert!(matches!(results.task_done(), Err(Error::MethodNotAllowed(_))));
}

fn count_under_lock(lock: Lock, total: Value<u64>, n: u32) {
    for _ in 0..n {
        let _held = lock.acquire().unwrap();
        let v = total.get().unwrap();
        total.set(v + 1).unwrap();
    }
}

#[test]
fn a_proxy_lock_keeps_a_shared_counter_exact() {
    let _g = serial();
    let _w = Watchdog::new("lock_counter", LIMIT);
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    let total = m.value(0u64).unwrap();
    let ps: Vec<_> = (0..3)
        .map(|_| Process::new(count_under_lock, (lock.clone(), total.clone(), 100)).start().unwrap())
        .collect();
    for p in ps {
        p.join().unwrap();
    }
    assert_eq!(total.get().unwrap(), 300);
}

fn signal(event: Event, sem: Semaphore, cond: Condition, lock: Lock, flag: Value<bool>) {
    sem.acquire().unwrap();
    {
        let _held = lock.acquire().unwrap();
        flag.set(true).unwrap();
        cond.notify_all().unwrap();
    }
    event.set().unwrap();
}

#[test]
fn event_semaphore_condition_and_rlock() {
    let _g = serial();
    let _w = Watchdog::new("sync", LIMIT);
    let m = Manager::start().unwrap();
    let event = m.event().unwrap();
    let sem = m.bounded_semaphore(1).unwrap();
    let lock = m.lock().unwrap();
    let cond = m.condition(&lock).unwrap();
    let flag = m.value(false).unwrap();
    assert!(!event.wait_timeout(Duration::from_millis(50)).unwrap());
    assert!(matches!(sem.release(), Err(Error::NotHeld)));
    sem.acquire().unwrap();
    assert_eq!(sem.get_value().unwrap(), 0);
    assert!(!sem.try_acquire().unwrap());
    let held = lock.acquire().unwrap();
    let p = Process::new(signal, (event.clone(), sem.clone(), cond.clone(), lock.clone(), flag.clone()))
        .start()
        .unwrap();
    sem.release().unwrap();
    // The child sets the flag under the lock, then notifies: wait releases the lock meanwhile.
    while !flag.get().unwrap() {
        assert!(cond.wait_timeout(Duration::from_secs(30)).unwrap());
    }
    drop(held);
    event.wait().unwrap();
    assert!(event.is_set().unwrap());
    event.clear().unwrap();
    assert!(!event.is_set().unwrap());
    p.join().unwrap();
    assert!(matches!(cond.notify(1), Err(Error::NotHeld)));

    let r = m.rlock().unwrap();
    let a = r.acquire().unwrap();
    let b = r.acquire_timeout(Duration::from_secs(1)).unwrap();
    drop(b);
    drop(a);
    assert!(matches!(r.release(), Err(Error::NotHeld)));
}

fn party(b: Barrier) -> u32 {
    b.wait_timeout(Duration::from_secs(60)).unwrap()
}

#[test]
fn barrier_across_processes() {
    let _g = serial();
    let _w = Watchdog::new("barrier", LIMIT);
    let m = Manager::start().unwrap();
    let b = m.barrier(3).unwrap();
    let ps: Vec<_> = (0..2).map(|_| Process::new(party, (b.clone(),)).start().unwrap()).collect();
    let mut indices = vec![party(b.clone())];
    indices.extend(ps.into_iter().map(|p| p.join().unwrap()));
    indices.sort();
    assert_eq!(indices, [0, 1, 2]);
    assert_eq!(b.parties().unwrap(), 3);
    // A party that times out breaks the barrier.
    assert!(matches!(b.wait_timeout(Duration::from_millis(50)), Err(Error::BrokenBarrier)));
    assert!(b.broken().unwrap());
    b.reset().unwrap();
    assert!(!b.broken().unwrap());
    b.abort().unwrap();
    assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
}

fn nested_writer(outer: Dict<String, List<u32>>) {
    let inner = outer.get("inner").unwrap().unwrap();
    inner.append(42).unwrap();
}

#[test]
fn a_dict_can_hold_proxies() {
    let _g = serial();
    let _w = Watchdog::new("nested", LIMIT);
    let m = Manager::start().unwrap();
    let outer: Dict<String, List<u32>> = m.dict().unwrap();
    let inner = m.list::<u32>().unwrap();
    outer.insert("inner".into(), inner.clone()).unwrap();
    drop(inner);
    let p = Process::new(nested_writer, (outer.clone(),)).start().unwrap();
    p.join().unwrap();
    let inner = outer.get("inner").unwrap().unwrap();
    assert_eq!(inner.snapshot().unwrap(), [42]);
}

#[derive(Default)]
struct Tally {
    total: i64,
}

#[derive(Debug, Serialize, Deserialize)]
enum TallyOp {
    Add(i64),
    Total,
}

impl Shared for Tally {
    type Init = i64;
    type Request = TallyOp;
    type Response = i64;
    fn new(init: i64) -> Self {
        Tally { total: init }
    }
    fn handle(&mut self, op: TallyOp) -> i64 {
        if let TallyOp::Add(n) = op {
            self.total += n;
        }
        self.total
    }
}

/// Not the server's request type: the same proxy, another request enum.
#[derive(Debug, Serialize, Deserialize)]
enum Sneaky {
    A,
    B,
    C,
    Exec(String),
}

struct Fake;

impl Shared for Fake {
    type Init = i64;
    type Request = Sneaky;
    type Response = i64;
    fn new(_: i64) -> Self {
        Fake
    }
    fn handle(&mut self, _: Sneaky) -> i64 {
        0
    }
}

fn add_from_child(t: Proxy<Tally>) -> i64 {
    t.call(&TallyOp::Add(5)).unwrap()
}

#[test]
fn registered_types_accept_only_their_declared_methods() {
    let _g = serial();
    let _w = Watchdog::new("registered", LIMIT);
    let m = Manager::builder().register::<Tally>("Tally").start().unwrap();
    let t = m.create_object::<Tally>("Tally", 10).unwrap();
    assert_eq!(t.call(&TallyOp::Add(1)).unwrap(), 11);
    let p = Process::new(add_from_child, (t.clone(),)).start().unwrap();
    assert_eq!(p.join().unwrap(), 16);
    assert_eq!(t.call(&TallyOp::Total).unwrap(), 16);
    // Looked up or made as another type: refused.
    m.publish("tally", &t).unwrap();
    assert!(matches!(m.lookup::<Proxy<Fake>>("tally"), Err(Error::MethodNotAllowed(_))));
    assert!(matches!(m.create_object::<Fake>("Tally", 0), Err(Error::MethodNotAllowed(_))));
    let found: Proxy<Tally> = m.lookup("tally").unwrap();
    assert_eq!(found.call(&TallyOp::Total).unwrap(), 16);
    // Smuggled in as another type anyway (bytes of a handle transfer read as another proxy
    // type): the server refuses every request that is not one of Tally's.
    let (bytes, fds) = proc_core::handle::serialize_with_fds(&t).unwrap();
    let fake: Proxy<Fake> = proc_core::handle::deserialize_with_fds(&bytes, fds).unwrap();
    assert!(matches!(fake.call(&Sneaky::Exec("rm -rf /".into())), Err(Error::MethodNotAllowed(_))));
    assert_eq!(t.call(&TallyOp::Total).unwrap(), 16);
    // Unknown type names are refused.
    assert!(matches!(m.create_object::<Fake>("Nope", 0), Err(Error::MethodNotAllowed(_))));
    // And a lookup of the wrong kind.
    assert!(matches!(m.lookup::<Lock>("tally"), Err(Error::MethodNotAllowed(_))));
    assert!(matches!(m.lookup::<Lock>("nothing"), Err(Error::NoSuchObject)));
}

fn use_after(v: Value<u32>) -> u32 {
    v.get().unwrap()
}

/// Holds its proxy until told to go.
fn hold(v: Value<u32>, go: Event) {
    go.wait().unwrap();
    assert_eq!(v.get().unwrap(), 7);
}

#[test]
fn an_object_lives_while_a_proxy_does_and_is_freed_after_the_last() {
    let _g = serial();
    let _w = Watchdog::new("refs", LIMIT);
    let m = Manager::start().unwrap();
    assert_eq!(m.number_of_objects().unwrap(), 0);
    let v = m.value(5u32).unwrap();
    let copy = v.clone();
    assert_eq!(m.number_of_objects().unwrap(), 1);
    drop(v);
    assert_eq!(copy.get().unwrap(), 5);
    drop(copy);
    assert_eq!(m.number_of_objects().unwrap(), 0);

    // A child's proxy keeps the object after the parent's is gone; its end frees it.
    let v = m.value(7u32).unwrap();
    let go = m.event().unwrap();
    let p = Process::new(hold, (v.clone(), go.clone())).start().unwrap();
    // Wait until the child has adopted its reference (its first call comes after).
    let p2 = Process::new(use_after, (v.clone(),)).start().unwrap();
    assert_eq!(p2.join().unwrap(), 7);
    drop(v);
    go.set().unwrap();
    p.join().unwrap();
    drop(go);
    // The child's session ended with the process: nothing is left.
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.number_of_objects().unwrap() != 0 {
        assert!(Instant::now() < deadline, "objects left: {}", m.number_of_objects().unwrap());
        std::thread::sleep(Duration::from_millis(5));
    }

    // Published: the name keeps it.
    let v = m.value(5u32).unwrap();
    m.publish("five", &v).unwrap();
    drop(v);
    let again: Value<u32> = m.lookup("five").unwrap();
    assert_eq!(again.get().unwrap(), 5);
    m.shutdown().unwrap();
}

fn give_back(v: Value<u32>) -> Value<u32> {
    #[allow(clippy::needless_borrows_for_generic_args)] // a reference works too
    v.set(&9).unwrap();
    v
}

#[test]
fn a_returned_proxy_is_handed_out_by_one_join() {
    let _g = serial();
    let _w = Watchdog::new("returned proxy", LIMIT);
    let m = Manager::start().unwrap();
    let v = m.value(1u32).unwrap();
    let p = Process::new(give_back, (v.clone(),)).start().unwrap();
    let back = p.join().unwrap();
    assert_eq!(back.get().unwrap(), 9);
    // The reference it carried was adopted once; a second join says so instead of failing to
    // adopt it again.
    let again = p.join().unwrap_err();
    assert!(again.is_result_taken(), "{again}");
    drop(v);
    assert_eq!(back.get().unwrap(), 9);
    m.shutdown().unwrap();
}

fn fork_child(d: Dict<String, u32>, lock: Lock) -> u32 {
    let _held = lock.acquire().unwrap();
    d.insert("forked".into(), 1).unwrap();
    d.len().unwrap() as u32
}

#[test]
fn proxies_inherited_through_fork_take_their_own_session() {
    let _g = serial();
    let _w = Watchdog::new("fork", LIMIT);
    let m = Manager::start().unwrap();
    let d = m.dict::<String, u32>().unwrap();
    let lock = m.lock().unwrap();
    let p = Process::new(fork_child, (d.clone(), lock.clone()))
        .start_method(proc_core::StartMethod::Fork)
        .start()
        .unwrap();
    assert_eq!(p.join().unwrap(), 1);
    assert_eq!(d.get("forked").unwrap(), Some(1));
    // The child's lock went with its session; ours works.
    let _held = lock.acquire_timeout(Duration::from_secs(30)).unwrap();
}

/// Takes the lock, forks a bare child (plain `fork`, never touching the manager) that sets `born`
/// and waits for `go`, and returns the child's pid; then this process exits, still holding the
/// lock.
fn hold_and_fork(lock: Lock, born: proc_sync::Event, go: proc_sync::Event) -> i32 {
    std::mem::forget(lock.acquire().unwrap());
    // SAFETY: the child only sets and waits on shared memory and calls _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        born.set();
        go.wait();
        // SAFETY: ends the forked child without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    pid
}

#[test]
fn a_forked_child_does_not_keep_its_parents_session_alive() {
    let _g = serial();
    let _w = Watchdog::new("forked copies", LIMIT);
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    let (born, go) = (proc_sync::Event::new().unwrap(), proc_sync::Event::new().unwrap());
    let p = Process::new(hold_and_fork, (lock.clone(), born.clone(), go.clone())).start().unwrap();
    let grandchild = p.join().unwrap();
    // The holder is gone; its forked child still lives, but let go of the holder's connections
    // when it first ran (before `born`), so the holder's session ended and its lock with it.
    born.wait();
    let taken = lock.acquire_timeout(Duration::from_secs(20));
    go.set();
    assert!(taken.is_ok(), "the lock stayed held while the holder's forked child lived");
    let deadline = Instant::now() + Duration::from_secs(60);
    while proc_sync::raw::process_alive(grandchild as u32) {
        assert!(Instant::now() < deadline, "the forked child did not exit");
        std::thread::yield_now();
    }
    m.shutdown().unwrap();
}

fn cond_waiter(lock: Lock, cond: Condition, timeout_ms: u64, ready: Event) -> bool {
    let _held = lock.acquire().unwrap();
    ready.set().unwrap();
    cond.wait_timeout(Duration::from_millis(timeout_ms)).unwrap()
}

#[test]
fn a_condition_waiter_that_times_out_does_not_take_a_later_waiters_notification() {
    let _g = serial();
    let _w = Watchdog::new("cond_timeout", LIMIT);
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    let cond = m.condition(&lock).unwrap();
    let (r1, r2) = (m.event().unwrap(), m.event().unwrap());
    // The first waiter gives up early; the second waits long.
    let early = Process::new(cond_waiter, (lock.clone(), cond.clone(), 50, r1.clone())).start().unwrap();
    r1.wait().unwrap();
    let late = Process::new(cond_waiter, (lock.clone(), cond.clone(), 60_000, r2.clone())).start().unwrap();
    r2.wait().unwrap();
    assert!(!early.join().unwrap());
    // The late waiter holds ticket 2; notify_all must reach it although ticket 1 gave up.
    {
        let _held = lock.acquire().unwrap();
        cond.notify_all().unwrap();
    }
    assert!(late.join().unwrap());
}

#[test]
fn proxies_stored_in_objects_keep_their_objects_exactly_as_long_as_they_are_stored() {
    let _g = serial();
    let _w = Watchdog::new("stored_refs", LIMIT);
    let m = Manager::start().unwrap();
    let outer: Dict<String, List<u32>> = m.dict().unwrap();
    let count = || m.number_of_objects().unwrap();

    // Removed and handed back: the caller's proxy keeps it, then nothing does.
    let inner = m.list::<u32>().unwrap();
    inner.append(1).unwrap();
    outer.insert("a".into(), inner).unwrap();
    assert_eq!(count(), 2);
    let back = outer.remove("a").unwrap().unwrap();
    assert_eq!(back.snapshot().unwrap(), [1]);
    assert_eq!(count(), 2);
    drop(back);
    assert_eq!(count(), 1);

    // Overwritten, and cleared.
    outer.insert("b".into(), m.list().unwrap()).unwrap();
    outer.insert("c".into(), m.list().unwrap()).unwrap();
    assert_eq!(count(), 3);
    drop(outer.insert("b".into(), m.list().unwrap()).unwrap());
    assert_eq!(count(), 3);
    outer.clear().unwrap();
    assert_eq!(count(), 1);

    // The same proxy stored twice holds two references.
    let shared = m.list::<u32>().unwrap();
    outer.insert("x".into(), shared.clone()).unwrap();
    outer.insert("y".into(), shared.clone()).unwrap();
    drop(shared);
    assert_eq!(count(), 2);
    drop(outer.remove("x").unwrap());
    assert_eq!(count(), 2);
    drop(outer.remove("y").unwrap());
    assert_eq!(count(), 1);

    // Stored, then the container goes: both go.
    outer.insert("z".into(), m.list().unwrap()).unwrap();
    assert_eq!(count(), 2);
    drop(outer);
    assert_eq!(count(), 0);

    // Through a queue: taken out, the taker's proxy keeps it.
    let q: Queue<Value<u32>> = m.queue(0).unwrap();
    q.put(m.value(9).unwrap()).unwrap();
    assert_eq!(count(), 2);
    let v = q.get().unwrap();
    assert_eq!(v.get().unwrap(), 9);
    drop(v);
    assert_eq!(count(), 1);
    // A list's sort keeps stored references as they are.
    let l: List<Value<u32>> = m.list().unwrap();
    l.append(m.value(1).unwrap()).unwrap();
    assert_eq!(count(), 3);
    drop(l);
    drop(q);
    assert_eq!(count(), 0);
}

#[test]
fn a_guard_releases_only_what_its_owner_holds_on_any_thread() {
    let _s = serial();
    let _w = Watchdog::new("guard_owner", Duration::from_secs(60));
    let m = Manager::start().unwrap();
    // A stale guard (its lock released by hand, then taken by another thread) leaves the lock held.
    let lock = m.lock().unwrap();
    let stale = lock.acquire().unwrap();
    lock.release().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| std::mem::forget(lock.acquire().unwrap())).join().unwrap();
    });
    drop(stale);
    assert!(lock.try_acquire().unwrap().is_none(), "a stale guard released another owner's lock");
    lock.release().unwrap();
    // A guard of an RLock dropped on another thread releases it all the same.
    let rlock = m.rlock().unwrap();
    let guard = rlock.acquire().unwrap();
    std::thread::scope(|s| {
        s.spawn(move || drop(guard)).join().unwrap();
    });
    std::thread::scope(|s| {
        s.spawn(|| assert!(rlock.try_acquire().unwrap().is_some(), "the guard did not release"))
            .join()
            .unwrap();
    });
}
