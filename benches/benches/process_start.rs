//! Start and join of a no-op target per start method, next to the raw floors.
//!
//! Groups: `process_start_{free,pinned}` with `fork`, `forkserver`, `spawn`, `floor_fork_waitpid`
//! and `floor_reexec`. `cargo xtask bench` runs this twice (free and pinned to one CPU) and puts
//! the figures next to Python's.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use multiproc::{get_context, StartMethod};
use multiproc_benches::{group_name, pin_to_one_cpu, pinned, raw_fork_waitpid, reexec_self};

fn noop() {}

fn process_start(c: &mut Criterion) {
    if pinned() {
        pin_to_one_cpu();
    }
    let mut group = c.benchmark_group(group_name("process_start"));
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    group.bench_function("floor_fork_waitpid", |b| b.iter(raw_fork_waitpid));
    group.bench_function("floor_reexec", |b| b.iter(reexec_self));
    for method in [StartMethod::Fork, StartMethod::ForkServer, StartMethod::Spawn] {
        let ctx = get_context(method);
        group.bench_function(method.as_str(), |b| {
            b.iter(|| ctx.process(noop, ()).start().expect("start").join().expect("join"))
        });
    }
    group.finish();
}

criterion_group!(benches, process_start);
criterion_main!(benches);
