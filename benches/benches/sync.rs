//! proc-sync's primitives next to their raw floors: uncontended locks, a ping-pong between two
//! processes, and two processes incrementing one counter under a lock.
//!
//! Groups (`<backend>` is `proc_sync::backend()`: `futex`, or `polling` when built with
//! `--features multiproc/force-portable`; `<pin>` is `free` or `pinned`):
//!
//! - `uncontended_<backend>_<pin>`: acquire+release of `lock`, `rlock`, and `value_update`
//!   (`Value<u64>::update`), next to `floor_pthread_mutex`, `floor_pthread_recursive` and
//!   `floor_pthread_update` (a process-shared pthread mutex in `MAP_SHARED` memory); also
//!   `value_get`, `value_set`, `array_get`, `array_set` (one element of an `Array<u64>` of 8), and
//!   Python's idiom `with v.get_lock(): v.value += 1` as `value_idiom` / `array_idiom` (the lock
//!   held, then `get` and `set`, which see it is held).
//! - `pingpong_<backend>_<pin>`: one round trip between parent and child with two `semaphore`s or
//!   two `event`s, next to `floor_futex` (a shared-futex ping-pong on one word, Linux only).
//! - `counter_<backend>_<pin>`: parent and child each increment a shared counter once per
//!   iteration (2 increments), `value_update` next to `floor_pthread_counter`.
//!
//! `cargo xtask bench` runs this free and pinned, on both backends, and puts the figures next to
//! Python's (`benches/python/sync.py`).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use multiproc::sync::{Array, Lock, RLock, Value};
use multiproc::Process;
use multiproc_benches::{
    backend_group_name, floor_pthread_counter, join_bounded, pin_if_asked, Gate, SharedMutex,
};

fn configure(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    warm_up_ms: u64,
    measure_ms: u64,
) {
    group.warm_up_time(Duration::from_millis(warm_up_ms)).measurement_time(Duration::from_millis(measure_ms));
}

fn uncontended(c: &mut Criterion) {
    pin_if_asked();
    let mut group = c.benchmark_group(backend_group_name("uncontended"));
    configure(&mut group, 300, 1000);

    let mutex = SharedMutex::new(false);
    group.bench_function("floor_pthread_mutex", |b| {
        b.iter(|| {
            mutex.lock();
            mutex.unlock();
        })
    });
    let recursive = SharedMutex::new(true);
    group.bench_function("floor_pthread_recursive", |b| {
        b.iter(|| {
            recursive.lock();
            recursive.unlock();
        })
    });
    group.bench_function("floor_pthread_update", |b| b.iter(|| mutex.increment()));

    let lock = Lock::new().expect("lock");
    group.bench_function("lock", |b| b.iter(|| drop(lock.acquire().expect("acquire"))));
    let rlock = RLock::new().expect("rlock");
    group.bench_function("rlock", |b| b.iter(|| drop(rlock.acquire().expect("acquire"))));
    let value = Value::new(0u64).expect("value");
    group.bench_function("value_update", |b| b.iter(|| value.update(|v| *v += 1)));
    group.bench_function("value_get", |b| b.iter(|| std::hint::black_box(value.get())));
    group.bench_function("value_set", |b| b.iter(|| value.set(std::hint::black_box(7))));
    group.bench_function("value_idiom", |b| {
        b.iter(|| {
            let _g = value.get_lock().acquire().expect("acquire");
            value.set(value.get() + 1);
        })
    });
    let array = Array::<u64>::zeroed(8).expect("array");
    group.bench_function("array_get", |b| b.iter(|| std::hint::black_box(array.get(3))));
    group.bench_function("array_set", |b| b.iter(|| array.set(3, std::hint::black_box(7))));
    group.bench_function("array_idiom", |b| {
        b.iter(|| {
            let _g = array.get_lock().acquire().expect("acquire");
            array.set(3, array.get(3).unwrap_or(0) + 1);
        })
    });
    group.finish();
}

fn pingpong(c: &mut Criterion) {
    pin_if_asked();
    let mut group = c.benchmark_group(backend_group_name("pingpong"));
    configure(&mut group, 500, 2000);
    #[cfg(target_os = "linux")]
    group.bench_function("floor_futex", |b| b.iter_custom(multiproc_benches::floor_futex_pingpong));
    group.bench_function("semaphore", |b| b.iter_custom(multiproc_benches::pingpong::semaphore_pingpong));
    group.bench_function("event", |b| b.iter_custom(multiproc_benches::pingpong::event_pingpong));
    group.finish();
}

/// Two processes increment one `Value<u64>` `n` times each, started together; the time until
/// both are done.
fn value_counter(n: u64) -> Duration {
    let value = Value::new(0u64).expect("value");
    let gate = Gate::new();
    let child = {
        let (value, gate) = (value.clone(), gate.clone());
        Process::fork(
            move || {
                if !gate.arrive() {
                    return false;
                }
                for _ in 0..n {
                    value.update(|v| *v += 1);
                }
                gate.finish();
                true
            },
            (),
        )
        .start()
        .expect("start")
    };
    let start = gate.open();
    for _ in 0..n {
        value.update(|v| *v += 1);
    }
    gate.wait_finished();
    let elapsed = start.elapsed();
    join_bounded(child);
    assert_eq!(value.get(), 2 * n, "lost increments");
    elapsed
}

fn counter(c: &mut Criterion) {
    pin_if_asked();
    let mut group = c.benchmark_group(backend_group_name("counter"));
    configure(&mut group, 500, 2000);
    group.bench_function("floor_pthread_counter", |b| b.iter_custom(floor_pthread_counter));
    group.bench_function("value_update", |b| b.iter_custom(value_counter));
    group.finish();
}

criterion_group!(benches, uncontended, pingpong, counter);
criterion_main!(benches);
