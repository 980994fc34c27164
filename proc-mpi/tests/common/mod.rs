//! The cluster pool's scenarios, run by `local_job.rs` on an in-process job and by `mpi.rs` under
//! `mpiexec`: each takes the way to build a pool on its job.

#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proc_mpi::{Builder, Cluster, Error, Pool, Result};
use proc_pool::Opts;

/// Builds a pool on the scenario's job.
pub(crate) type Make<'a> = &'a dyn Fn(Builder) -> Result<Pool>;

pub(crate) fn square(x: u64) -> u64 {
    x * x
}

pub(crate) fn add(a: u64, b: u64) -> u64 {
    a + b
}

pub(crate) fn fails_on_odd(x: u64) -> u64 {
    assert!(x.is_multiple_of(2), "odd input {x}");
    x
}

/// A large argument and a large result (over the 64 KiB that travel inside a message).
pub(crate) fn reverse(v: Vec<u8>) -> Vec<u8> {
    v.into_iter().rev().collect()
}

pub(crate) fn kill_self() -> u64 {
    // SAFETY: kill with this process' own pid and a valid signal.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL ends the process")
}

pub(crate) fn sleep_for(secs: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(secs));
    secs
}

pub(crate) fn forever() -> u64 {
    loop {
        std::thread::park();
    }
}

static INITIALIZED: AtomicU32 = AtomicU32::new(0);

pub(crate) fn init(value: u32) {
    INITIALIZED.store(value, Ordering::SeqCst);
}

pub(crate) fn read_init(_: u64) -> u32 {
    INITIALIZED.load(Ordering::SeqCst)
}

/// The API end to end: results in order, imap laziness, callbacks, the initializer, a task that
/// panics and one that SIGKILLs its worker, each failing alone with its host's name.
pub(crate) fn api(make: Make<'_>, agents: usize, remote: bool) {
    let pool = make(Cluster::builder().processes_per_host(2).initializer(init, (7,))).unwrap();
    assert_eq!(pool.processes(), 2 * agents);
    let expected: Vec<u64> = (0..200).map(|i| i * i).collect();
    assert_eq!(pool.map(square, 0..200).unwrap(), expected);
    assert_eq!(pool.map_with(square, 0..200, Opts::new().chunksize(1)).unwrap(), expected);
    assert_eq!(pool.starmap(add, (0..50).map(|i| (i, 1))).unwrap(), (1..51).collect::<Vec<u64>>());
    assert_eq!(pool.apply(add, (2, 3)).unwrap(), 5);
    assert_eq!(pool.apply_async(square, (12,)).unwrap().get().unwrap(), 144);
    // Large chunks and results travel beside their messages, several to a message.
    let blobs: Vec<Vec<u8>> =
        (0..12u32).map(|i| (0..100_000 + i).map(|j| (j % 251) as u8).collect()).collect();
    let reversed = pool.map_with(reverse, blobs.clone(), Opts::new().chunksize(1)).unwrap();
    assert_eq!(
        reversed,
        blobs.iter().map(|b| b.iter().rev().copied().collect::<Vec<u8>>()).collect::<Vec<_>>()
    );

    // The initializer ran in every worker of every host.
    assert!(pool.map_with(read_init, 0..64, Opts::new().chunksize(1)).unwrap().iter().all(|&v| v == 7));

    // imap takes its input lazily: a bounded window (16 chunks per worker) across the cluster.
    let taken = AtomicU32::new(0);
    let input = (0u64..).inspect(|_| {
        taken.fetch_add(1, Ordering::Relaxed);
    });
    let first: Vec<u64> = pool.imap(square, input).take(100).map(|r| r.unwrap()).collect();
    assert_eq!(first, expected[..100]);
    let bound = 100 + 16 * pool.processes() as u32 + 1;
    assert!(taken.load(Ordering::Relaxed) <= bound, "took {} > {bound}", taken.load(Ordering::Relaxed));
    let unordered: BTreeSet<u64> = pool.imap_unordered(square, 0..100).map(|r| r.unwrap()).collect();
    assert_eq!(unordered, expected[..100].iter().copied().collect());

    // Callbacks, once each, on this process.
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut results = Vec::new();
    for i in 0..40u64 {
        let (ok, failed) = (ok.clone(), failed.clone());
        let opts = Opts::new()
            .on_result(move |_: &u64| {
                ok.fetch_add(1, Ordering::SeqCst);
            })
            .on_error(move |e: &Error| {
                assert!(e.is_panic(), "{e}");
                failed.fetch_add(1, Ordering::SeqCst);
            });
        results.push(pool.apply_async_with(fails_on_odd, (i,), opts).unwrap());
    }
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.get().is_ok(), i % 2 == 0);
    }

    // A panic fails its task alone, with message, location and host.
    let err = pool.apply(fails_on_odd, (3,)).unwrap_err();
    assert!(err.is_panic(), "{err:?}");
    assert!(err.to_string().contains("odd input 3"), "{err}");
    assert_eq!(err.host().is_some(), remote, "{err:?}");
    if remote {
        assert!(err.to_string().contains("rank "), "{err}");
    }

    // A worker killed mid-task (as by the OOM killer) fails only that task; the pool goes on.
    let err = pool.apply(kill_self, ()).unwrap_err();
    assert!(err.is_worker_lost(), "{err:?}");
    assert_eq!(err.host().is_some(), remote, "{err:?}");
    assert!(err.to_string().contains("signal 9"), "{err}");
    assert_eq!(pool.map(square, 0..200).unwrap(), expected);

    pool.close();
    pool.join().unwrap();
    // join waits for the callbacks.
    assert_eq!(ok.load(Ordering::SeqCst), 20);
    assert_eq!(failed.load(Ordering::SeqCst), 20);
    let stats = pool.stats();
    assert!(stats.failed >= 22, "{stats:?}");
    assert!(stats.workers_lost >= 1, "{stats:?}");
}

/// A task past the task timeout fails alone with `TaskTimeout`; the pool goes on.
pub(crate) fn timeout(make: Make<'_>, remote: bool) {
    let pool =
        make(Cluster::builder().processes_per_host(1).task_timeout(Duration::from_millis(300))).unwrap();
    let err = pool.apply(sleep_for, (60,)).unwrap_err();
    assert!(err.is_task_timeout(), "{err:?}");
    assert_eq!(err.host().is_some(), remote, "{err:?}");
    assert_eq!(pool.apply(square, (9,)).unwrap(), 81);
    pool.close();
    pool.join().unwrap();
}

/// `terminate` fails what is not done; a second pool runs after the first, and only one at a
/// time.
pub(crate) fn sessions(make: Make<'_>, remote: bool) {
    let pool = make(Cluster::builder().processes_per_host(1)).unwrap();
    let stuck = pool.apply_async(forever, ()).unwrap();
    assert_eq!(pool.apply(square, (3,)).unwrap(), 9);
    if remote {
        let second = make(Cluster::builder());
        assert!(matches!(second, Err(Error::InvalidArgument(_))), "{second:?}");
    }
    pool.terminate();
    pool.join().unwrap();
    let got = stuck.get();
    assert!(matches!(got, Err(Error::Terminated)), "{got:?}");

    let again = make(Cluster::builder().processes_per_host(2)).unwrap();
    assert_eq!(again.map(square, 0..10).unwrap(), (0..10).map(|i| i * i).collect::<Vec<_>>());
    drop(again);
    let third = make(Cluster::builder()).unwrap();
    assert_eq!(third.apply(square, (4,)).unwrap(), 16);
    third.close();
    third.join().unwrap();
}
