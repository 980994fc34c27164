//! The cluster pool's figures, for `cargo xtask bench mpi` (feature `mpi`). One binary, three
//! modes, each printing one JSON object:
//!
//! - `cluster`, under `mpiexec -n 3`: rank 0 runs a `Cluster` pool over 2 node agents of 1 worker
//!   each and measures, in nanoseconds per task: `map_chunk1` and `map_default` (trivial tasks,
//!   `work` below, chunk size 1 and Python's default), `submit` (one `apply_async` per task, then
//!   every `get`), `apply_latency` (one `apply` at a time: a task's round trip), `cpu_map` (`cpu`
//!   below over 64 items, chunk size 1); and `frontend_cpu_pct_waiting`, rank 0's CPU time while
//!   two tasks sleep 2 s, in percent of the wall time.
//! - `local`, without a launcher: `cpu_map_local`, the same CPU-bound map on a local `Pool(2)`.
//! - `floor`, under `mpiexec -n 3` with `MULTIPROC_MPI=off` (no agents: raw MPI in `main`):
//!   `floor_rtt`, a round trip between ranks 0 and 1 of messages the size of a task and of its
//!   reply; `floor_farm`, a dynamic task farm of the same messages on 2 workers (rank 0 keeps 4
//!   tasks in flight per worker), per task. Receivers poll (`MPI_Iprobe`) and yield the CPU
//!   between looks, so that pinned to one CPU the ranks take turns.
//!
//! - `cpu-soak`: the CPU-bound map again and again for `MULTIPROC_BENCH_SECONDS`, on a cluster pool
//!   under `mpiexec -n 3`, else a local `Pool(2)`: a steady state to profile.
//!
//! `MULTIPROC_BENCH_SECONDS` sets the time per measurement (default 1).

use std::time::{Duration, Instant};

use multiproc::pool::Opts;
use multiproc::{Cluster, Pool};

/// A trivial task (`benches/pool.rs`'s and `benches/python/mpi.py`'s `work`).
fn work(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (x >> 7)
}

/// CPU-bound: 1,000,000 xorshift64 steps from `x` (a few ms).
fn cpu(x: u64) -> u64 {
    let mut h = x | 1;
    for _ in 0..1_000_000 {
        h ^= h << 13;
        h ^= h >> 7;
        h ^= h << 17;
    }
    std::hint::black_box(h)
}

fn nap(secs: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(secs));
    secs
}

fn budget() -> Duration {
    let secs: f64 = std::env::var("MULTIPROC_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    Duration::from_secs_f64(secs)
}

/// Mean ns per item of `run(n)`: n grows until one call takes a tenth of the budget, then calls
/// repeat for the budget (the same rule as `benches/python/*.py`).
fn measure(mut run: impl FnMut(u64)) -> f64 {
    let budget = budget();
    let mut n = 100u64;
    loop {
        let t = Instant::now();
        run(n);
        if t.elapsed() >= budget / 10 || n >= 1 << 24 {
            break;
        }
        n *= 4;
    }
    let (mut items, start) = (0u64, Instant::now());
    while start.elapsed() < budget {
        run(n);
        items += n;
    }
    start.elapsed().as_nanos() as f64 / items as f64
}

fn cluster() {
    let pool = Cluster::builder().processes_per_host(1).build().expect("cluster pool");
    assert_eq!(pool.processes(), 2, "run under mpiexec -n 3");
    let check = |v: Vec<u64>, n: u64| assert_eq!(v.len() as u64, n);
    let _ = pool.map(work, 0..10_000u64);
    let map_chunk1 = measure(|n| check(pool.map_with(work, 0..n, Opts::new().chunksize(1)).expect("map"), n));
    let map_default = measure(|n| check(pool.map(work, 0..n).expect("map"), n));
    let submit = measure(|n| {
        let rs: Vec<_> = (0..n).map(|i| pool.apply_async(work, (i,)).expect("submit")).collect();
        for r in rs {
            r.get().expect("result");
        }
    });
    let apply_latency = measure(|n| {
        for i in 0..n {
            pool.apply(work, (i,)).expect("apply");
        }
    });
    let cpu_map = cpu_map(&pool);
    let (wall, cpu0) = (Instant::now(), multiproc_benches::cpu_time(libc::RUSAGE_SELF));
    let naps: Vec<_> = (0..2).map(|_| pool.apply_async(nap, (2,)).expect("nap")).collect();
    for r in naps {
        r.get().expect("nap");
    }
    let pct = (multiproc_benches::cpu_time(libc::RUSAGE_SELF) - cpu0).as_secs_f64()
        / wall.elapsed().as_secs_f64()
        * 100.0;
    pool.close();
    pool.join().expect("join");
    println!(
        "{{\"map_chunk1\": {map_chunk1:.1}, \"map_default\": {map_default:.1}, \"submit\": {submit:.1}, \
         \"apply_latency\": {apply_latency:.1}, \"cpu_map\": {cpu_map:.1}, \"frontend_cpu_pct_waiting\": {pct:.2}}}"
    );
}

/// ns per item of a map of `cpu` over 64 items, chunk size 1 (the best of 3).
fn cpu_map(pool: &Pool) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            let v = pool.map_with(cpu, 0..64u64, Opts::new().chunksize(1)).expect("cpu map");
            assert_eq!(v.len(), 64);
            t.elapsed().as_nanos() as f64 / 64.0
        })
        .fold(f64::INFINITY, f64::min)
}

/// Repeats the CPU-bound map for `MULTIPROC_BENCH_SECONDS` (on a cluster pool under `mpiexec`, or
/// a local one): a steady state to profile, not a figure of the report.
fn cpu_soak() {
    let pool = Cluster::builder()
        .processes_per_host(if Cluster::rank().is_some() { 1 } else { 2 })
        .build()
        .expect("pool");
    let start = Instant::now();
    let mut best = f64::INFINITY;
    while start.elapsed() < budget() {
        best = best.min(cpu_map(&pool));
    }
    println!("{{\"cpu_map\": {best:.1}}}");
}

fn local() {
    let pool = Pool::new(2).expect("pool");
    let _ = pool.map(work, 0..1000u64);
    println!("{{\"cpu_map_local\": {:.1}}}", cpu_map(&pool));
}

fn floor() {
    use mpi::traits::*;
    let universe = mpi::initialize().expect("MPI");
    let world = universe.world();
    let (rank, size) = (world.rank(), world.size());
    assert_eq!(size, 3, "run under mpiexec -n 3 with MULTIPROC_MPI=off");
    // The sizes of a trivial task's messages (`Down::Task` and `Up::Done` of one u64).
    let task = [7u8; 40];
    let reply = [9u8; 16];
    let mut buf = [0u8; 64];
    if rank == 0 {
        let peer = world.process_at_rank(1);
        let rtt = measure(|n| {
            for _ in 0..n {
                peer.send(&task[..]);
                wait_for(&peer);
                let _ = peer.receive_into(&mut buf[..reply.len()]);
            }
        });
        // The farm: every worker holds up to 4 tasks; each reply frees its slot.
        let farm = measure(|n| {
            let mut sent = 0u64;
            let mut done = 0u64;
            let mut held = [0u32; 3];
            for (w, h) in held.iter_mut().enumerate().skip(1) {
                while *h < 4 && sent < n {
                    world.process_at_rank(w as i32).send(&task[..]);
                    *h += 1;
                    sent += 1;
                }
            }
            while done < n {
                wait_for(&world.any_process());
                let status = world.any_process().receive_into(&mut buf[..reply.len()]);
                let w = status.source_rank() as usize;
                done += 1;
                held[w] -= 1;
                if sent < n {
                    world.process_at_rank(w as i32).send(&task[..]);
                    held[w] += 1;
                    sent += 1;
                }
            }
        });
        for w in 1..3 {
            world.process_at_rank(w).send(&[0u8; 1][..]);
        }
        println!("{{\"floor_rtt\": {rtt:.1}, \"floor_farm\": {farm:.1}}}");
    } else {
        let root = world.process_at_rank(0);
        loop {
            wait_for(&root);
            let status = root.receive_into(&mut buf[..]);
            if status.count(u8::equivalent_datatype()) == 1 {
                break;
            }
            root.send(&reply[..]);
        }
    }
}

/// Polls for a message from `source`, yielding the CPU between looks: MPI's blocking receive
/// spins without yielding, which pinned to one CPU starves the sender.
fn wait_for(source: &impl mpi::point_to_point::Source) {
    while source.immediate_probe().is_none() {
        std::thread::yield_now();
    }
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("cluster") => cluster(),
        Some("local") => local(),
        Some("floor") => floor(),
        Some("cpu-soak") => cpu_soak(),
        _ => {
            eprintln!("usage: mpi cluster|local|floor (see the file's docs)");
            std::process::exit(2);
        }
    }
}
