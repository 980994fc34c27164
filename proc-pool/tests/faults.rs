//! Faults: workers killed mid-task, task timeouts, values that do not serialize, failing inputs,
//! terminate with a backlog, a pool at program exit, and a pool owner killed by SIGKILL.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use proc_core::Process;
use proc_pool::{Error, Pool};
use proc_queue::Queue;
use serde::{Deserialize, Serialize};
use test_support::{kill_and_wait, serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

fn square(x: u64) -> u64 {
    x * x
}

/// How a task ends its own worker.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Death {
    Kill,
    Abort,
    Segfault,
    Exit(i32),
}

fn die(how: Death) -> u64 {
    match how {
        Death::Kill => {
            // SAFETY: sends a signal to this process only; no memory is involved.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        Death::Abort => std::process::abort(),
        Death::Segfault => {
            // SAFETY: raises a signal in this process only; no memory is involved.
            unsafe { libc::raise(libc::SIGSEGV) };
        }
        Death::Exit(code) => std::process::exit(code),
    }
    unreachable!()
}

fn forever(_: u64) -> u64 {
    loop {
        std::thread::park();
    }
}

#[test]
fn a_worker_killed_mid_task_fails_only_that_task() {
    let _g = serial();
    let _w = Watchdog::new("worker_killed", LIMIT);
    let pool = Pool::new(2).unwrap();
    let cases = [
        (Death::Kill, Some(libc::SIGKILL), None),
        (Death::Abort, Some(libc::SIGABRT), None),
        (Death::Segfault, Some(libc::SIGSEGV), None),
        (Death::Exit(7), None, Some(7)),
    ];
    for (how, signal, code) in cases {
        let before = pool.worker_pids();
        // Other tasks queued around the one that dies.
        let others: Vec<_> = (0..20).map(|i| pool.apply_async(square, (i,)).unwrap()).collect();
        let dying = pool.apply_async(die, (how,)).unwrap();
        let more: Vec<_> = (20..40).map(|i| pool.apply_async(square, (i,)).unwrap()).collect();
        match dying.get() {
            Err(Error::WorkerLost { pid, signal: s, exit_code: c }) => {
                assert_eq!((s, c), (signal, code), "{how:?}");
                assert!(before.contains(&pid), "{pid} not in {before:?}");
            }
            other => panic!("{how:?}: expected WorkerLost, got {other:?}"),
        }
        for (i, r) in others.into_iter().chain(more).enumerate() {
            assert_eq!(r.get().unwrap(), (i as u64) * (i as u64), "{how:?}");
        }
        // The worker was replaced and the pool is usable.
        assert_eq!(pool.map(square, 0..10).unwrap().len(), 10);
        assert_eq!(pool.worker_pids().len(), 2);
    }
    let stats = pool.stats();
    assert_eq!((stats.workers_lost, stats.workers_replaced, stats.failed), (4, 4, 4), "{stats:?}");
    pool.close();
    pool.join().unwrap();
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn a_task_past_its_timeout_is_killed_and_the_pool_goes_on() {
    let _g = serial();
    let _w = Watchdog::new("task_timeout", LIMIT);
    // Long enough that no quick task, however descheduled, reaches it.
    let timeout = Duration::from_secs(2);
    let pool = Pool::builder().processes(2).task_timeout(timeout).build().unwrap();
    let t = Instant::now();
    let stuck = pool.apply_async(forever, (0,)).unwrap();
    let quick: Vec<_> = (0..10).map(|i| pool.apply_async(square, (i,)).unwrap()).collect();
    assert!(matches!(stuck.get(), Err(Error::TaskTimeout(d)) if d == timeout));
    assert!(t.elapsed() >= timeout);
    for (i, r) in quick.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), (i * i) as u64);
    }
    // A task within the limit is not touched.
    assert_eq!(pool.apply(sleep_ms, (10,)).unwrap(), 10);
    assert_eq!(pool.worker_pids().len(), 2);
    let stats = pool.stats();
    assert_eq!((stats.timed_out, stats.workers_replaced, stats.succeeded), (1, 1, 11), "{stats:?}");
}

/// A value whose serialization always fails.
#[derive(Debug, Deserialize)]
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("cannot serialize this"))
    }
}

fn takes(_: Unserializable) -> u64 {
    1
}

fn returns_bad(_: u64) -> Unserializable {
    Unserializable
}

#[test]
fn values_that_do_not_serialize_fail_their_task_only() {
    let _g = serial();
    let _w = Watchdog::new("serialize", LIMIT);
    let pool = Pool::new(1).unwrap();
    let err = pool.apply_async(takes, (Unserializable,)).unwrap_err();
    assert!(
        matches!(&err, Error::Arguments { message: m, .. } if m.contains("cannot serialize this")),
        "{err}"
    );
    assert!(matches!(pool.map(takes, [Unserializable]), Err(Error::Arguments { .. })));
    let err = pool.apply(returns_bad, (1,)).unwrap_err();
    assert!(matches!(&err, Error::Return { .. }), "{err}");
    assert_eq!(pool.apply(square, (3,)).unwrap(), 9);
}

#[test]
fn an_input_that_fails_midway_delivers_what_came_before() {
    let _g = serial();
    let _w = Watchdog::new("input_fails", LIMIT);
    let pool = Pool::new(2).unwrap();
    let input = (0..10u64).map(|i| if i == 6 { Err("bad row 6") } else { Ok(i) });
    let results: Vec<Result<u64, Error>> = pool.try_imap(square, input).collect();
    assert_eq!(results.len(), 7);
    for (i, r) in results[..6].iter().enumerate() {
        assert_eq!(*r.as_ref().unwrap(), (i * i) as u64);
    }
    assert!(matches!(&results[6], Err(Error::Input(m)) if m == "bad row 6"));
    assert_eq!(pool.map(square, 0..3).unwrap(), [0, 1, 4]);
}

#[test]
fn terminate_with_ten_thousand_queued_tasks_returns_promptly() {
    let _g = serial();
    let _w = Watchdog::new("terminate", LIMIT);
    let pool = Pool::new(2).unwrap();
    let results: Vec<_> = (0..10_000).map(|i| pool.apply_async(forever, (i,)).unwrap()).collect();
    pool.terminate();
    pool.join().unwrap();
    for r in results {
        assert!(matches!(r.get(), Err(Error::Terminated)));
    }
    assert!(pool.worker_pids().is_empty());
    assert!(matches!(pool.apply_async(square, (1,)), Err(Error::Closed)));
}

/// Makes a pool, reports its workers, and leaves the pool to the end of the process.
fn owner(pids: Queue<Vec<u32>>, forget: bool) {
    let pool = Pool::new(2).unwrap();
    let _busy: Vec<_> = (0..4).map(|i| pool.apply_async(forever, (i,)).unwrap()).collect();
    pids.put(pool.worker_pids()).unwrap();
    if forget {
        std::mem::forget(pool);
        loop {
            std::thread::park();
        }
    }
}

/// Whether `pid` is gone (ended; a zombie waiting to be reaped counts as gone).
fn gone(pid: u32) -> bool {
    !proc_sync::raw::process_alive(pid)
}

/// Waits (polling, bounded) until every pid is gone.
fn all_gone(pids: &[u32], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if pids.iter().all(|&p| gone(p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn dropping_the_pool_at_exit_ends_the_workers() {
    let _g = serial();
    let _w = Watchdog::new("drop_at_exit", LIMIT);
    let pids = Queue::new(1).unwrap();
    let p = Process::new(owner, (pids.clone(), false)).start().unwrap();
    let workers = pids.get_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(workers.len(), 2);
    assert_eq!(p.join_timeout(Duration::from_secs(60)).unwrap(), Some(()));
    assert!(all_gone(&workers, Duration::from_secs(30)), "{workers:?}");
}

#[test]
fn sigkill_of_the_owner_leaves_no_worker_alive() {
    let _g = serial();
    let _w = Watchdog::new("owner_killed", LIMIT);
    let pids = Queue::new(1).unwrap();
    let p = Process::new(owner, (pids.clone(), true)).start().unwrap();
    let workers = pids.get_timeout(Duration::from_secs(60)).unwrap();
    let distinct: BTreeSet<u32> = workers.iter().copied().collect();
    assert_eq!(distinct.len(), 2);
    p.kill().unwrap();
    p.join_timeout(Duration::from_secs(60)).unwrap_err();
    assert!(all_gone(&workers, Duration::from_secs(30)), "{workers:?}");
}

/// Counts itself in the shared counter `counter`, waits for one byte on the FIFO `gate`, and
/// returns its pid.
fn gated(counter: String, gate: String) -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    let shm = proc_core::shm::SharedMemory::open(&counter).unwrap();
    let mut fifo = std::fs::File::open(gate).unwrap();
    // SAFETY: the segment is at least 4 bytes, page-aligned, and only used atomically.
    let count = unsafe { &*shm.as_ptr().cast::<AtomicU32>() };
    count.fetch_add(1, Ordering::SeqCst);
    let mut byte = [0u8; 1];
    std::io::Read::read_exact(&mut fifo, &mut byte).unwrap();
    std::process::id()
}

#[test]
fn busy_workers_survive_the_death_of_their_fork_server() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let _g = serial();
    let _w = Watchdog::new("busy_workers_survive_the_death_of_their_fork_server", LIMIT);
    const WORKERS: usize = 4;
    let pool =
        Pool::builder().processes(WORKERS).start_method(proc_core::StartMethod::ForkServer).build().unwrap();
    let counter = proc_core::shm::SharedMemory::create(64).unwrap();
    let gate = std::env::temp_dir().join(format!("mp_gate_{}", std::process::id()));
    let gate_c = std::ffi::CString::new(gate.to_str().unwrap()).unwrap();
    // SAFETY: `gate_c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(gate_c.as_ptr(), 0o600) }, 0);
    // Read-write, so that neither this open nor the tasks' opens wait for the other side.
    let mut gate_w = std::fs::OpenOptions::new().read(true).write(true).open(&gate).unwrap();
    let tasks: Vec<_> = (0..WORKERS)
        .map(|_| {
            let args = (counter.name().to_owned(), gate.to_str().unwrap().to_owned());
            pool.apply_async(gated, args).unwrap()
        })
        .collect();
    // SAFETY: as in `gated`.
    let count = unsafe { &*counter.as_ptr().cast::<AtomicU32>() };
    while count.load(Ordering::SeqCst) < WORKERS as u32 {
        std::thread::yield_now();
    }
    // Every worker runs a task: kill their fork server and wait until it is dead.
    let server = proc_core::fork_server_pid().unwrap();
    kill_and_wait(server);
    let workers = pool.worker_pids();
    std::io::Write::write_all(&mut gate_w, &[1; WORKERS]).unwrap();
    for t in tasks {
        let pid = t.get().unwrap();
        assert!(workers.contains(&pid), "{pid} not in {workers:?}");
    }
    let stats = pool.stats();
    assert_eq!((stats.workers_lost, stats.failed), (0, 0), "{stats:?}");
    assert_eq!(pool.map(square, 0..10).unwrap().len(), 10);
    pool.close();
    pool.join().unwrap();
    let _ = std::fs::remove_file(&gate);
    counter.unlink().unwrap();
}
