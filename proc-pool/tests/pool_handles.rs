//! Handles in a pool: the initializer's arguments carry queues, locks, shared values, events and
//! manager proxies to every worker under every start method, replacement workers included; task
//! arguments and results that hold a handle are refused with a message that says why.

#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::Duration;

use proc_core::StartMethod;
use proc_manager::{List, Manager};
use proc_pool::{Error, Opts, Pool};
use proc_queue::Queue;
use proc_sync::{Event, Lock, Value};
use test_support::{serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

/// What the initializer hands each worker.
type Handles = (Queue<u32>, Lock, Value<u64>, Event, List<u32>);

thread_local! {
    static HANDLES: RefCell<Option<Handles>> = const { RefCell::new(None) };
}

fn keep(queue: Queue<u32>, lock: Lock, value: Value<u64>, event: Event, list: List<u32>) {
    HANDLES.with(|h| *h.borrow_mut() = Some((queue, lock, value, event, list)));
}

/// Uses every handle the initializer stored; returns this worker's pid.
fn use_handles(x: u32) -> u32 {
    HANDLES.with(|h| {
        let h = h.borrow();
        let (queue, lock, value, event, list) = h.as_ref().expect("the initializer ran in this worker");
        {
            let _held = lock.acquire().unwrap();
            value.set(value.get() + 1);
        }
        queue.put(x).unwrap();
        list.append(x).unwrap();
        event.set();
    });
    std::process::id()
}

fn dies(_: u32) -> u32 {
    // SAFETY: raising a signal in this process has no memory-safety precondition.
    unsafe { libc::raise(libc::SIGKILL) };
    unreachable!("SIGKILL ends the worker")
}

struct Fixture {
    _manager: Manager,
    queue: Queue<u32>,
    lock: Lock,
    value: Value<u64>,
    event: Event,
    list: List<u32>,
}

impl Fixture {
    fn new() -> Self {
        let manager = Manager::start().unwrap();
        let list = manager.list().unwrap();
        Fixture {
            _manager: manager,
            queue: Queue::new(64).unwrap(),
            lock: Lock::new().unwrap(),
            value: Value::new(0).unwrap(),
            event: Event::new().unwrap(),
            list,
        }
    }

    fn args(&self) -> Handles {
        (self.queue.clone(), self.lock.clone(), self.value.clone(), self.event.clone(), self.list.clone())
    }

    /// Checks that tasks `0..n` each used every handle once.
    fn check(&self, n: u32) {
        assert_eq!(self.value.get(), u64::from(n));
        let mut got: Vec<u32> =
            (0..n).map(|_| self.queue.get_timeout(Duration::from_secs(30)).unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..n).collect::<Vec<_>>());
        let mut listed = self.list.snapshot().unwrap();
        listed.sort_unstable();
        assert_eq!(listed, (0..n).collect::<Vec<_>>());
        assert!(self.event.is_set());
        assert!(!self.lock.locked());
    }
}

/// Every worker of a pool started with `method` gets working handles through the initializer.
fn initializer_handles_work(method: StartMethod) {
    let f = Fixture::new();
    let pool = Pool::builder().processes(2).start_method(method).initializer(keep, f.args()).build().unwrap();
    let pids = pool.map_with(use_handles, 0..12, Opts::new().chunksize(1)).unwrap();
    assert_eq!(pids.len(), 12);
    f.check(12);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn initializer_handles_fork() {
    let _g = serial();
    let _w = Watchdog::new("initializer_handles_fork", LIMIT);
    initializer_handles_work(StartMethod::Fork);
}

#[test]
fn initializer_handles_spawn() {
    let _g = serial();
    let _w = Watchdog::new("initializer_handles_spawn", LIMIT);
    initializer_handles_work(StartMethod::Spawn);
}

#[test]
fn initializer_handles_forkserver() {
    let _g = serial();
    let _w = Watchdog::new("initializer_handles_forkserver", LIMIT);
    initializer_handles_work(StartMethod::ForkServer);
}

/// Workers replaced after `maxtasksperchild` (one task each) and after a death each get handles
/// of their own, under every start method.
#[test]
fn replacement_workers_get_working_handles() {
    let _g = serial();
    let _w = Watchdog::new("replacement_workers_get_working_handles", LIMIT);
    for method in [StartMethod::Fork, StartMethod::Spawn, StartMethod::ForkServer] {
        // maxtasksperchild = 1: every task runs in a fresh worker.
        let f = Fixture::new();
        let pool = Pool::builder()
            .processes(2)
            .start_method(method)
            .maxtasksperchild(1)
            .initializer(keep, f.args())
            .build()
            .unwrap();
        let pids = pool.map_with(use_handles, 0..6, Opts::new().chunksize(1)).unwrap();
        let distinct: BTreeSet<u32> = pids.iter().copied().collect();
        assert_eq!(distinct.len(), 6, "{method:?}: {pids:?}");
        f.check(6);
        pool.close();
        pool.join().unwrap();

        // A worker killed mid-task: its replacement has working handles.
        let f = Fixture::new();
        let pool =
            Pool::builder().processes(1).start_method(method).initializer(keep, f.args()).build().unwrap();
        let first = pool.worker_pids();
        let err = pool.apply(dies, (0,)).unwrap_err();
        assert!(matches!(err, Error::WorkerLost { .. }), "{method:?}: {err}");
        let pids = pool.map_with(use_handles, 0..4, Opts::new().chunksize(1)).unwrap();
        assert!(pids.iter().all(|p| !first.contains(p)), "{method:?}: {first:?} {pids:?}");
        f.check(4);
        assert!(pool.stats().workers_replaced >= 1);
        pool.close();
        pool.join().unwrap();
    }
}

fn takes_queue(q: Queue<u32>) -> u32 {
    q.qsize() as u32
}

fn double(x: u32) -> u32 {
    x * 2
}

fn makes_lock(_: u32) -> Lock {
    Lock::new().unwrap()
}

/// Task arguments and results travel as bytes over the pool's queues: a handle among them is
/// refused, and the message says why and where handles go instead.
#[test]
fn handles_in_task_arguments_and_results_are_refused_with_the_reason() {
    let _g = serial();
    let _w = Watchdog::new("handles_in_tasks", LIMIT);
    let pool = Pool::new(1).unwrap();
    let q: Queue<u32> = Queue::new(4).unwrap();
    let err = pool.apply(takes_queue, (q.clone(),)).unwrap_err();
    assert!(
        matches!(&err, Error::Arguments { message: m, .. } if m.contains("handle") && m.contains("initializer")),
        "{err}"
    );
    let err = pool.map(takes_queue, [q.clone()]).unwrap_err();
    assert!(
        matches!(&err, Error::Arguments { message: m, .. } if m.contains("handle") && m.contains("initializer")),
        "{err}"
    );
    let err = pool.imap(takes_queue, [q]).next().unwrap().unwrap_err();
    assert!(matches!(&err, Error::Arguments { message: m, .. } if m.contains("handle")), "{err}");
    let err = pool.apply(makes_lock, (0,)).unwrap_err();
    assert!(matches!(&err, Error::Return { message: m, .. } if m.contains("handle")), "{err}");
    // The pool goes on.
    assert_eq!(pool.apply(double, (2,)).unwrap(), 4);
    pool.close();
    pool.join().unwrap();
}

/// A value that refuses to serialize.
#[derive(serde::Deserialize)]
struct Refuses;

impl serde::Serialize for Refuses {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Refuses refuses to serialize"))
    }
}

fn keeps_nothing(_: Refuses) {}

/// Initializer arguments are serialized at each worker's start: ones that do not serialize fail
/// `build` with an arguments error; under fork, where the worker serializes its own copy, the
/// tasks fail with the initializer's error, naming its arguments.
#[test]
fn initializer_arguments_that_do_not_serialize_are_an_error() {
    let _g = serial();
    let _w = Watchdog::new("initializer_arguments_fail", LIMIT);
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let err =
            Pool::builder().processes(2).start_method(method).initializer(keeps_nothing, (Refuses,)).build();
        let err = err.unwrap_err();
        assert!(
            matches!(&err, Error::Arguments { message: m, .. } if m.contains("initializer")),
            "{method:?}: {err}"
        );
    }
    let pool = Pool::builder()
        .processes(2)
        .start_method(StartMethod::Fork)
        .initializer(keeps_nothing, (Refuses,))
        .build();
    let err = pool.unwrap().apply(double, (1,)).unwrap_err();
    assert!(matches!(&err, Error::Initializer(m) if m.contains("arguments")), "{err}");
}

/// The other handle types, each used once by a task.
type Others = (
    proc_queue::SimpleQueue<u32>,
    proc_queue::JoinableQueue<u32>,
    proc_queue::Connection<u32>,
    proc_sync::RLock,
    proc_sync::Semaphore,
    proc_sync::Condition,
    proc_sync::Barrier,
    proc_sync::Array<u64>,
    proc_core::shm::SharedMemory,
);

thread_local! {
    static OTHERS: RefCell<Option<Others>> = const { RefCell::new(None) };
}

#[allow(clippy::too_many_arguments)]
fn keep_others(
    simple: proc_queue::SimpleQueue<u32>,
    joinable: proc_queue::JoinableQueue<u32>,
    conn: proc_queue::Connection<u32>,
    rlock: proc_sync::RLock,
    semaphore: proc_sync::Semaphore,
    condition: proc_sync::Condition,
    barrier: proc_sync::Barrier,
    array: proc_sync::Array<u64>,
    shm: proc_core::shm::SharedMemory,
) {
    OTHERS.with(|o| {
        *o.borrow_mut() = Some((simple, joinable, conn, rlock, semaphore, condition, barrier, array, shm));
    });
}

fn use_others(x: u32) -> u32 {
    OTHERS.with(|o| {
        let o = o.borrow();
        let (simple, joinable, conn, rlock, semaphore, condition, barrier, array, shm) =
            o.as_ref().expect("the initializer ran in this worker");
        simple.put(x).unwrap();
        joinable.put(x).unwrap();
        conn.send(&x).unwrap();
        {
            let _outer = rlock.acquire().unwrap();
            let _inner = rlock.acquire().unwrap();
        }
        semaphore.acquire();
        semaphore.release();
        condition.acquire().unwrap().notify_all();
        barrier.wait().unwrap();
        array.with(|a| a[0] += 1);
        shm.write(0, &[x as u8]).unwrap();
    });
    x
}

/// The other handle types reach every worker through the initializer as well, under every start
/// method.
#[test]
fn every_handle_type_reaches_the_workers() {
    let _g = serial();
    let _w = Watchdog::new("every_handle_type", LIMIT);
    for method in [StartMethod::Fork, StartMethod::Spawn, StartMethod::ForkServer] {
        let simple = proc_queue::SimpleQueue::new().unwrap();
        let joinable = proc_queue::JoinableQueue::new(4).unwrap();
        let (ours, theirs) = proc_queue::pipe::<u32>().unwrap();
        let array = proc_sync::Array::<u64>::zeroed(1).unwrap();
        let shm = proc_core::shm::SharedMemory::create(64).unwrap();
        let args = (
            simple.clone(),
            joinable.clone(),
            theirs,
            proc_sync::RLock::new().unwrap(),
            proc_sync::Semaphore::new(1).unwrap(),
            proc_sync::Condition::new().unwrap(),
            proc_sync::Barrier::new(1).unwrap(),
            array.clone(),
            proc_core::shm::SharedMemory::open(shm.name()).unwrap(),
        );
        let pool =
            Pool::builder().processes(1).start_method(method).initializer(keep_others, args).build().unwrap();
        assert_eq!(pool.apply(use_others, (7,)).unwrap(), 7, "{method:?}");
        assert_eq!(simple.get().unwrap(), 7);
        assert_eq!(joinable.get().unwrap(), 7);
        joinable.task_done().unwrap();
        joinable.join().unwrap();
        assert_eq!(ours.recv().unwrap(), 7);
        assert_eq!(array.get(0), Some(1));
        let mut byte = [0u8];
        shm.read(0, &mut byte).unwrap();
        assert_eq!(byte, [7]);
        pool.close();
        pool.join().unwrap();
        shm.unlink().unwrap();
    }
}

fn list_len(l: List<u32>) -> usize {
    l.len().unwrap()
}

/// A manager proxy needs no descriptor: it may be a task's argument, as in Python, and a worker
/// that never saw that manager uses it.
#[test]
fn a_manager_proxy_may_be_a_task_argument() {
    let _g = serial();
    let _w = Watchdog::new("proxy_task_argument", LIMIT);
    let manager = Manager::start().unwrap();
    let list: List<u32> = manager.list().unwrap();
    list.extend([1, 2, 3]).unwrap();
    for method in [StartMethod::Fork, StartMethod::Spawn, StartMethod::ForkServer] {
        let pool = Pool::builder().processes(2).start_method(method).build().unwrap();
        assert_eq!(pool.apply(list_len, (list.clone(),)).unwrap(), 3, "{method:?}");
        assert_eq!(pool.map(list_len, vec![list.clone(); 4]).unwrap(), [3; 4], "{method:?}");
        pool.close();
        pool.join().unwrap();
    }
}
