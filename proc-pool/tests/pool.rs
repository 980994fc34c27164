//! The pool's API against real worker processes: apply, map, starmap, imap, callbacks,
//! initializer, maxtasksperchild, close/join.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proc_pool::{Error, Opts, Pool};
use test_support::{serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn pid(_: u64) -> u32 {
    std::process::id()
}

fn fails_on_odd(x: u64) -> u64 {
    assert!(x.is_multiple_of(2), "odd input {x}");
    x
}

/// Blocks until the pool kills it (for terminate tests).
fn forever(_: u64) -> u64 {
    loop {
        std::thread::park();
    }
}

#[test]
fn apply_and_apply_async() {
    let _g = serial();
    let _w = Watchdog::new("apply_and_apply_async", LIMIT);
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.apply(add, (2, 3)).unwrap(), 5);
    let results: Vec<_> = (0..10).map(|i| pool.apply_async(square, (i,)).unwrap()).collect();
    let values: Vec<u64> = results.into_iter().map(|r| r.get().unwrap()).collect();
    assert_eq!(values, (0..10).map(|i| i * i).collect::<Vec<_>>());
    pool.close();
    pool.join().unwrap();
}

#[test]
fn get_timeout_waits_at_least_its_time_and_the_task_goes_on() {
    let _g = serial();
    let _w = Watchdog::new("get_timeout", LIMIT);
    let pool = Pool::new(1).unwrap();
    let blocked = pool.apply_async(forever, (0,)).unwrap();
    let t = Instant::now();
    let err = blocked.get_timeout(Duration::from_millis(100)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert!(!blocked.ready());
    assert_eq!(blocked.successful(), None);
    assert!(!blocked.wait_timeout(Duration::from_millis(10)));
    pool.terminate();
    pool.join().unwrap();
    assert!(matches!(blocked.get_timeout(Duration::from_secs(10)), Err(Error::Terminated)));
}

#[test]
fn map_and_starmap_keep_input_order_at_every_chunk_size() {
    let _g = serial();
    let _w = Watchdog::new("map_order", LIMIT);
    let pool = Pool::new(2).unwrap();
    for n in [10u64, 100] {
        let expect: Vec<u64> = (0..n).map(|i| i * i).collect();
        assert_eq!(pool.map(square, 0..n).unwrap(), expect);
        for chunksize in [1, 20] {
            assert_eq!(pool.map_with(square, 0..n, Opts::new().chunksize(chunksize)).unwrap(), expect);
            let pairs: Vec<(u64, u64)> = (0..n).map(|i| (i, 1000 * i)).collect();
            let sums = pool.starmap_with(add, pairs.clone(), Opts::new().chunksize(chunksize)).unwrap();
            assert_eq!(sums, (0..n).map(|i| 1001 * i).collect::<Vec<_>>());
            assert_eq!(pool.starmap(add, pairs).unwrap(), sums);
        }
    }
    let r = pool.map_async(square, [3, 4]).unwrap();
    assert_eq!(r.get().unwrap(), [9, 16]);
    let r = pool.starmap_async(add, [(1, 2)]).unwrap();
    assert_eq!(r.get().unwrap(), [3]);
}

#[test]
fn empty_inputs_give_empty_results() {
    let _g = serial();
    let _w = Watchdog::new("empty_inputs", LIMIT);
    let pool = Pool::new(2).unwrap();
    assert!(pool.map(square, Vec::<u64>::new()).unwrap().is_empty());
    assert!(pool.starmap(add, Vec::<(u64, u64)>::new()).unwrap().is_empty());
    assert_eq!(pool.imap(square, Vec::<u64>::new()).count(), 0);
    assert_eq!(pool.imap_unordered(square, Vec::<u64>::new()).count(), 0);
    assert!(pool.map_async(square, Vec::<u64>::new()).unwrap().get().unwrap().is_empty());
}

#[test]
fn imap_is_ordered_and_imap_unordered_gives_the_same_multiset() {
    let _g = serial();
    let _w = Watchdog::new("imap", LIMIT);
    let pool = Pool::new(2).unwrap();
    let it = pool.imap(square, 0..1000u64);
    // At most 1000 (a closed pool may end it early); `exact` promises exactly that many.
    assert_eq!(it.size_hint(), (0, Some(1000)));
    let it = it.exact().unwrap();
    assert_eq!(it.len(), 1000);
    let got: Vec<u64> = it.map(Result::unwrap).collect();
    assert_eq!(got, (0..1000).map(|i| i * i).collect::<Vec<_>>());
    let got: Vec<u64> =
        pool.imap_with(square, 0..1000u64, Opts::new().chunksize(7)).map(Result::unwrap).collect();
    assert_eq!(got, (0..1000).map(|i| i * i).collect::<Vec<_>>());
    for chunksize in [1, 13] {
        let got: BTreeSet<u64> = pool
            .imap_unordered_with(square, 0..1000u64, Opts::new().chunksize(chunksize))
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, (0..1000).map(|i| i * i).collect::<BTreeSet<_>>());
    }
}

#[test]
fn imap_over_an_endless_input_takes_only_what_it_needs() {
    let _g = serial();
    let _w = Watchdog::new("imap_endless", LIMIT);
    let pool = Pool::new(2).unwrap();
    let taken = AtomicU32::new(0);
    let input = (0u64..).inspect(|_| {
        taken.fetch_add(1, Ordering::Relaxed);
    });
    let first: Vec<u64> = pool.imap(square, input).take(100).map(Result::unwrap).collect();
    assert_eq!(first, (0..100).map(|i| i * i).collect::<Vec<_>>());
    // A bounded window: far fewer than "all of it" were taken.
    // The window is 16 chunks per worker.
    assert!(taken.load(Ordering::Relaxed) <= 100 + 16 * 2 + 1, "took {}", taken.load(Ordering::Relaxed));
}

#[test]
fn a_panicking_task_fails_alone_with_its_message_and_location() {
    let _g = serial();
    let _w = Watchdog::new("panic", LIMIT);
    let pool = Pool::new(2).unwrap();
    let err = pool.apply(fails_on_odd, (3,)).unwrap_err();
    match &err {
        Error::Panicked { message, location } => {
            assert!(message.contains("odd input 3"), "{message}");
            assert!(location.as_deref().unwrap_or("").contains("tests/pool.rs"), "{location:?}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(pool.apply(fails_on_odd, (4,)).unwrap(), 4);
    // map fails with the first error; imap delivers the others around it.
    assert!(pool.map_with(fails_on_odd, 0..10, Opts::new().chunksize(1)).unwrap_err().is_panic());
    let results: Vec<Result<u64, Error>> = pool.imap(fails_on_odd, 0..6).collect();
    assert_eq!(results.len(), 6);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.is_ok(), i % 2 == 0, "{i}: {r:?}");
    }
    assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
}

#[test]
fn callbacks_are_called_exactly_once() {
    let _g = serial();
    let _w = Watchdog::new("callbacks", LIMIT);
    let pool = Pool::new(2).unwrap();
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut results = Vec::new();
    for i in 0..100u64 {
        let (ok, failed) = (ok.clone(), failed.clone());
        let opts = Opts::new()
            .on_result(move |v: &u64| {
                assert_eq!(*v % 2, 0);
                ok.fetch_add(1, Ordering::SeqCst);
            })
            .on_error(move |e: &Error| {
                assert!(e.is_panic());
                failed.fetch_add(1, Ordering::SeqCst);
            });
        results.push(pool.apply_async_with(fails_on_odd, (i,), opts).unwrap());
    }
    let map_calls = Arc::new(AtomicUsize::new(0));
    let m = map_calls.clone();
    let mapped = pool
        .map_async_with(
            square,
            0..50u64,
            Opts::new().chunksize(3).on_result(move |v: &Vec<u64>| {
                assert_eq!(v.len(), 50);
                m.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .unwrap();
    // Only an error callback: the result type comes from the call.
    let star_errors = Arc::new(AtomicUsize::new(0));
    let s = star_errors.clone();
    let starred = pool
        .starmap_async_with(
            fails_on_odd,
            [(1u64,)],
            Opts::new().on_error(move |e| {
                assert!(e.is_panic());
                s.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .unwrap();
    pool.close();
    pool.join().unwrap();
    // After join every callback ran, once.
    assert_eq!(star_errors.load(Ordering::SeqCst), 1);
    assert!(starred.get().unwrap_err().is_panic());
    assert_eq!(ok.load(Ordering::SeqCst), 50);
    assert_eq!(failed.load(Ordering::SeqCst), 50);
    assert_eq!(map_calls.load(Ordering::SeqCst), 1);
    assert_eq!(mapped.get().unwrap().len(), 50);
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.get().is_ok(), i % 2 == 0);
    }
}

static INITIALIZED: AtomicU32 = AtomicU32::new(0);

fn init(value: u32) {
    INITIALIZED.store(value, Ordering::SeqCst);
}

fn read_init(_: u64) -> (u32, u32) {
    (std::process::id(), INITIALIZED.load(Ordering::SeqCst))
}

#[test]
fn the_initializer_runs_in_each_worker() {
    let _g = serial();
    let _w = Watchdog::new("initializer", LIMIT);
    let pool = Pool::builder().processes(2).initializer(init, (42,)).maxtasksperchild(3).build().unwrap();
    let seen = pool.map_with(read_init, 0..30, Opts::new().chunksize(1)).unwrap();
    assert!(seen.iter().all(|&(_, v)| v == 42), "{seen:?}");
    // Recycled workers (3 tasks each) ran it too: at least 10 distinct workers.
    let pids: BTreeSet<u32> = seen.iter().map(|&(p, _)| p).collect();
    assert!(pids.len() >= 10, "{} workers", pids.len());
}

#[test]
fn maxtasksperchild_recycles_workers() {
    let _g = serial();
    let _w = Watchdog::new("maxtasksperchild", LIMIT);
    let pool = Pool::builder().processes(1).maxtasksperchild(2).build().unwrap();
    let pids = pool.map_with(pid, 0..6, Opts::new().chunksize(1)).unwrap();
    for pair in pids.chunks(2) {
        assert_eq!(pair[0], pair[1], "{pids:?}");
    }
    let distinct: BTreeSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "{pids:?}");
}

fn panics_in_init(_: u32) {
    panic!("no database");
}

#[test]
fn a_failing_initializer_fails_the_tasks_and_the_pool_still_closes() {
    let _g = serial();
    let _w = Watchdog::new("failing_initializer", LIMIT);
    let pool = Pool::builder().processes(2).initializer(panics_in_init, (0,)).build().unwrap();
    let err = pool.apply(square, (2,)).unwrap_err();
    assert!(matches!(&err, Error::Initializer(m) if m.contains("no database")), "{err}");
    assert!(matches!(pool.apply_async(square, (2,)), Err(Error::Initializer(_))));
    pool.close();
    pool.join().unwrap();
}

#[test]
fn invalid_construction_is_an_error() {
    assert!(matches!(Pool::new(0), Err(Error::InvalidArgument(_))));
    assert!(matches!(Pool::builder().maxtasksperchild(0).build(), Err(Error::InvalidArgument(_))));
    assert!(matches!(Pool::builder().prefetch(0).build(), Err(Error::InvalidArgument(_))));
}

#[test]
#[should_panic(expected = "chunksize must be at least 1")]
fn a_chunksize_of_zero_panics_where_it_is_set() {
    let _ = Opts::new().chunksize(0);
}

#[test]
fn a_closed_pool_takes_no_tasks_and_join_needs_close() {
    let _g = serial();
    let _w = Watchdog::new("closed", LIMIT);
    let pool = Pool::new(1).unwrap();
    assert!(matches!(pool.join(), Err(Error::StillRunning)));
    let r = pool.apply_async(square, (5,)).unwrap();
    pool.close();
    assert!(matches!(pool.apply_async(square, (1,)), Err(Error::Closed)));
    assert!(matches!(pool.map(square, [1]), Err(Error::Closed)));
    pool.join().unwrap();
    // close + join waited for the task submitted before.
    assert_eq!(r.get().unwrap(), 25);
    assert!(pool.worker_pids().is_empty());
}

#[test]
fn a_hundred_thousand_trivial_tasks_complete() {
    let _g = serial();
    let _w = Watchdog::new("100k", LIMIT);
    let pool = Pool::new(2).unwrap();
    let n = 100_000u64;
    let sum: u64 = pool.map_with(square, 0..n, Opts::new().chunksize(1)).unwrap().iter().sum();
    assert_eq!(sum, (0..n).map(|i| i * i).sum::<u64>());
    let results: Vec<_> = (0..1000).map(|i| pool.apply_async(square, (i,)).unwrap()).collect();
    assert_eq!(
        results.into_iter().map(|r| r.get().unwrap()).sum::<u64>(),
        (0..1000).map(|i| i * i).sum::<u64>()
    );
}

#[test]
fn every_start_method_runs_tasks_and_replaces_workers() {
    let _g = serial();
    let _w = Watchdog::new("start_methods", LIMIT);
    for method in proc_core::get_all_start_methods() {
        let pool = Pool::builder().processes(2).start_method(method).maxtasksperchild(5).build().unwrap();
        let pids = pool.map_with(pid, 0..20, Opts::new().chunksize(1)).unwrap();
        let distinct: BTreeSet<u32> = pids.iter().copied().collect();
        assert!(distinct.len() >= 4, "{method:?}: {pids:?}");
        assert!(!distinct.contains(&std::process::id()));
        assert_eq!(pool.stats().succeeded, 20, "{method:?}");
        pool.close();
        pool.join().unwrap();
    }
}

#[test]
fn join_timeout_waits_for_the_workers_to_finish() {
    let _g = serial();
    let _w = Watchdog::new("join_timeout", LIMIT);
    let pool = Pool::new(1).unwrap();
    assert!(matches!(pool.join_timeout(Duration::ZERO), Err(Error::StillRunning)));
    let stuck = pool.apply_async(forever, (0,)).unwrap();
    pool.close();
    let t = Instant::now();
    assert!(!pool.join_timeout(Duration::from_millis(100)).unwrap());
    assert!(t.elapsed() >= Duration::from_millis(100));
    pool.terminate();
    assert!(pool.join_timeout(Duration::from_secs(60)).unwrap());
    assert!(matches!(stuck.get(), Err(Error::Terminated)));
    assert!(pool.join_timeout(Duration::ZERO).unwrap());
}

#[test]
fn an_empty_map_still_calls_its_callback() {
    let _g = serial();
    let _w = Watchdog::new("empty_callbacks", LIMIT);
    let pool = Pool::new(1).unwrap();
    let called = Arc::new(AtomicUsize::new(0));
    let c = called.clone();
    let r = pool
        .map_async_with(
            square,
            Vec::<u64>::new(),
            Opts::new().on_result(move |v: &Vec<u64>| {
                assert!(v.is_empty());
                c.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .unwrap();
    assert!(r.get().unwrap().is_empty());
    assert_eq!(called.load(Ordering::SeqCst), 1);
}

#[test]
fn an_imap_made_before_close_runs_to_its_end() {
    let _g = serial();
    let _w = Watchdog::new("imap_after_close", LIMIT);
    let pool = Pool::new(2).unwrap();
    let it = pool.imap_unordered(square, 0..100u64);
    pool.close();
    // Python's pattern: close, then iterate. The iteration still submits its input.
    assert!(matches!(pool.join(), Err(Error::IMapPending)));
    let got: BTreeSet<u64> = it.map(Result::unwrap).collect();
    assert_eq!(got.len(), 100);
    pool.join().unwrap();
    // An imap taken only in part and dropped does not keep the pool alive either.
    let pool = Pool::new(1).unwrap();
    let mut it = pool.imap(square, 0u64..);
    assert_eq!(it.next().unwrap().unwrap(), 0);
    pool.close();
    drop(it);
    pool.join().unwrap();
}

/// Dies (abort) if `marker` still exists, removing it first: the first worker only.
fn die_once(marker: String) {
    if std::fs::remove_file(&marker).is_ok() {
        std::process::abort();
    }
}

#[test]
fn tasks_queued_behind_a_worker_that_dies_in_its_initializer_are_not_lost() {
    let _g = serial();
    let _w = Watchdog::new("init_death", LIMIT);
    let marker = std::env::temp_dir().join(format!("proc-pool-init-{}", std::process::id()));
    std::fs::write(&marker, b"").unwrap();
    let pool = Pool::builder()
        .processes(1)
        .initializer(die_once, (marker.to_string_lossy().into_owned(),))
        .build()
        .unwrap();
    // Handed to the first worker while its initializer runs, then given to its replacement.
    let results: Vec<_> = (0..10).map(|i| pool.apply_async(square, (i,)).unwrap()).collect();
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), (i * i) as u64);
    }
    assert!(!marker.exists());
    let stats = pool.stats();
    assert_eq!((stats.workers_lost, stats.workers_replaced, stats.succeeded), (0, 1, 10), "{stats:?}");
}
