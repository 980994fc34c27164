//! proc-manager's proxies next to raw round trips on the same socket type:
//!
//! - `manager_<pin>`: per operation, `dict_set_get` (an `insert` and a `get`: two round trips),
//!   `list_append`, `value_get`, `lock_acquire_release` (two round trips), and `dict_update_100`
//!   (100 pairs in one `update`, per pair); floors `floor_roundtrip` (one byte there and back over
//!   a Unix socket pair between two processes) and `floor_two_roundtrips`.
//!
//! Python's counterparts (`benches/python/manager.py`): a `multiprocessing.Manager()`'s dict
//! (`d[k] = v; d[k]`), list `append`, `Value.value`, `Lock` acquire/release and `update`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use multiproc::Manager;
use multiproc_benches::{
    floor_socketpair_pingpong, floor_socketpair_pingpong_polling, group_name, pin_if_asked,
};

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500));
}

fn manager(c: &mut Criterion) {
    pin_if_asked();
    let mut group = c.benchmark_group(group_name("manager"));
    configure(&mut group);
    group.bench_function("floor_roundtrip", |b| b.iter_custom(floor_socketpair_pingpong));
    group.bench_function("floor_two_roundtrips", |b| b.iter_custom(|n| floor_socketpair_pingpong(2 * n)));
    // The same with proc-manager's waiting (look without sleeping for a while first): what the
    // transport and the waiting cost, without the manager.
    let poll = Duration::from_micros(100);
    group.bench_function("floor_roundtrip_polling", |b| {
        b.iter_custom(|n| floor_socketpair_pingpong_polling(n, poll))
    });
    group.bench_function("floor_two_roundtrips_polling", |b| {
        b.iter_custom(|n| floor_socketpair_pingpong_polling(2 * n, poll))
    });
    let m = Manager::start().expect("manager");
    let d = m.dict::<u64, u64>().expect("dict");
    group.bench_function("dict_set_get", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            d.insert(i % 64, i).expect("insert");
            assert_eq!(d.get(&(i % 64)).expect("get"), Some(i));
        })
    });
    let l = m.list::<u64>().expect("list");
    group.bench_function("list_append", |b| {
        b.iter(|| l.append(1).expect("append"));
    });
    let v = m.value(7u64).expect("value");
    group.bench_function("value_get", |b| b.iter(|| assert_eq!(v.get().expect("get"), 7)));
    let lock = m.lock().expect("lock");
    group.bench_function("lock_acquire_release", |b| b.iter(|| drop(lock.acquire().expect("acquire"))));
    let pairs: Vec<(u64, u64)> = (0..100).map(|i| (i, i)).collect();
    group.bench_function("dict_update_100", |b| {
        b.iter_custom(|n| {
            let batches = n.div_ceil(100);
            let t = std::time::Instant::now();
            for _ in 0..batches {
                d.update(pairs.iter().copied()).expect("update");
            }
            t.elapsed().mul_f64(n as f64 / (batches * 100) as f64)
        })
    });
    group.finish();
    m.shutdown().expect("shutdown");
}

criterion_group!(benches, manager);
criterion_main!(benches);
