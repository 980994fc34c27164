//! A CPU-bound map across the hosts of an MPI job: rank 0 runs `main`, every other rank is a node
//! agent whose local pool runs the tasks.
//!
//! ```sh
//! # one host, rank 0 and two node agents:
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="mpiexec -n 3" cargo run --release --features mpi --example cluster_map
//! # without a launcher, the same program runs on a local pool:
//! cargo run --release --features mpi --example cluster_map
//! ```

use std::time::Instant;

use multiproc::Cluster;

/// A CPU-bound task: `steps` rounds of xorshift64 from `seed`.
fn churn(seed: u64, steps: u32) -> u64 {
    let mut x = seed | 1;
    for _ in 0..steps {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

/// Where a task ran.
fn host() -> String {
    // std has no hostname; `hostname` is everywhere.
    std::process::Command::new("hostname")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".to_string())
}

fn main() -> multiproc::Result<()> {
    let pool = Cluster::builder().processes_per_host(2).build()?;
    match Cluster::rank() {
        Some(_) => println!("rank 0 of an MPI job: {} workers across the node agents", pool.processes()),
        None => println!("no MPI launcher: a local pool of {} workers", pool.processes()),
    }
    let t = Instant::now();
    let n = 64u64;
    let results = pool.starmap(churn, (0..n).map(|i| (2 * i + 1, 2_000_000u32)))?;
    let elapsed = t.elapsed();
    let check = results.iter().fold(0u64, |a, x| a.wrapping_add(*x));
    println!("{n} tasks of 2M xorshift steps in {elapsed:.2?} (checksum {check:016x})");
    let hosts = pool.map(|_: u32| host(), 0..8)?;
    let mut seen: Vec<String> = hosts;
    seen.sort();
    seen.dedup();
    println!("tasks ran on: {}", seen.join(", "));
    pool.close();
    pool.join()?;
    Ok(())
}
