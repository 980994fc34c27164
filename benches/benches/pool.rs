//! proc-pool's `Pool` next to rayon (the in-process floor) on the same functions:
//!
//! - `tasks_<pin>`: trivial tasks (`work`, a few arithmetic operations on a `u64`), per task:
//!   `map_chunk1` (`map_with(.., Opts::new().chunksize(1))`), `map_default` (Python's default chunk size),
//!   `apply_async` (one `AsyncResult` per task, then every `get`), `imap_unordered` (chunk size
//!   1), on a pool of 2 workers started outside the timed region; `floor_rayon`, rayon's
//!   `par_iter().map(work).collect()` on the same items.
//! - `cpu_bound_<pin>`: `spin` (about 1 ms of arithmetic) over 64 items with chunk size 1, on a
//!   pool of 1 worker and a pool of every usable CPU: the speed-up is the ratio of the two.
//!
//! Python's counterparts (`benches/python/pool.py`): `Pool(2)` `map(chunksize=1)`, `map`,
//! `apply_async`, `imap_unordered`, and `ProcessPoolExecutor(2)` `submit` and `map`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use multiproc::pool::Opts;
use multiproc::Pool;
use multiproc_benches::{group_name, pin_if_asked};
use rayon::prelude::*;

fn configure(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    warm_up_ms: u64,
    measure_ms: u64,
) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(warm_up_ms))
        .measurement_time(Duration::from_millis(measure_ms));
}

/// A trivial task.
fn work(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (x >> 7)
}

/// About a millisecond of arithmetic.
fn spin(x: u64) -> u64 {
    let mut h = x;
    for i in 0..400_000u64 {
        h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i) ^ (h >> 29);
    }
    std::hint::black_box(h)
}

fn expected(n: u64) -> u64 {
    (0..n).fold(0u64, |s, x| s.wrapping_add(work(x)))
}

fn sum(v: impl IntoIterator<Item = u64>) -> u64 {
    v.into_iter().fold(0u64, u64::wrapping_add)
}

fn tasks(c: &mut Criterion) {
    pin_if_asked();
    let mut group = c.benchmark_group(group_name("tasks"));
    configure(&mut group, 500, 2000);
    group.throughput(Throughput::Elements(1));
    let pool = Pool::new(2).expect("pool");
    // Warm the workers up.
    assert_eq!(pool.map(work, 0..1000u64).expect("map").len(), 1000);

    group.bench_function("map_chunk1", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            let r = pool.map_with(work, 0..n, Opts::new().chunksize(1)).expect("map");
            let elapsed = t.elapsed();
            assert_eq!(sum(r), expected(n));
            elapsed
        })
    });
    group.bench_function("map_default", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            let r = pool.map(work, 0..n).expect("map");
            let elapsed = t.elapsed();
            assert_eq!(sum(r), expected(n));
            elapsed
        })
    });
    group.bench_function("apply_async", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            let results: Vec<_> =
                (0..n).map(|x| pool.apply_async(work, (x,)).expect("apply_async")).collect();
            let total = sum(results.into_iter().map(|r| r.get().expect("get")));
            let elapsed = t.elapsed();
            assert_eq!(total, expected(n));
            elapsed
        })
    });
    group.bench_function("imap_unordered", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            let total = sum(pool.imap_unordered(work, 0..n).map(|r| r.expect("imap")));
            let elapsed = t.elapsed();
            assert_eq!(total, expected(n));
            elapsed
        })
    });
    let threads = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("rayon");
    group.bench_function("floor_rayon", |b| {
        b.iter_custom(|n| {
            let items: Vec<u64> = (0..n).collect();
            let t = Instant::now();
            let r: Vec<u64> = threads.install(|| items.par_iter().map(|&x| work(x)).collect());
            let elapsed = t.elapsed();
            assert_eq!(sum(r), expected(n));
            elapsed
        })
    });
    group.finish();
    pool.close();
    pool.join().expect("join");
}

fn cpu_bound(c: &mut Criterion) {
    pin_if_asked();
    let mut group = c.benchmark_group(group_name("cpu_bound"));
    configure(&mut group, 500, 3000);
    let cpus = multiproc::process_cpu_count();
    for (name, processes) in [("one_process", 1), ("all_cpus", cpus)] {
        let pool = Pool::new(processes).expect("pool");
        assert_eq!(pool.map(spin, 0..4u64).expect("map").len(), 4);
        group.bench_function(name, |b| {
            b.iter(|| {
                let r = pool.map_with(spin, 0..64u64, Opts::new().chunksize(1)).expect("map");
                assert_eq!(r.len(), 64);
            })
        });
        pool.close();
        pool.join().expect("join");
    }
    group.finish();
}

criterion_group!(benches, tasks, cpu_bound);
criterion_main!(benches);
