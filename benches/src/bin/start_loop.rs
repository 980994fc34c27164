//! Start+join of a no-op target through the fork server in a loop, next to the raw
//! `fork`+`waitpid` floor, alternating the two in rounds: `start_loop [rounds] [starts]`. Prints
//! each round's mean per start and CPU time (this process and its children), and the ratio; for A/B
//! comparisons of two builds (`MULTIPROC_BENCH_PIN=1` pins to one CPU as the benchmarks do).
//! `START_LOOP_SERVED_ONLY=1` runs `rounds * starts` fork-server starts and no floor, for profiling.

use std::time::Instant;

use multiproc::{get_context, StartMethod};
use multiproc_benches::{pin_to_one_cpu, pinned, raw_fork_waitpid};

fn noop() {}

fn cpu_us() -> f64 {
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: a zeroed rusage is valid; getrusage fills it.
        let mut r: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `r` is a live rusage.
        unsafe { libc::getrusage(who, &mut r) };
        total += (r.ru_utime.tv_sec + r.ru_stime.tv_sec) as f64 * 1e6
            + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) as f64;
    }
    total
}

fn main() {
    if pinned() {
        pin_to_one_cpu();
    }
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let starts: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3000);
    let ctx = get_context(StartMethod::ForkServer);
    ctx.process(noop, ()).start().expect("start").join().expect("join");
    if std::env::var_os("START_LOOP_SERVED_ONLY").is_some() {
        // For profiling: only fork-server starts, no floor.
        for _ in 0..rounds * starts {
            ctx.process(noop, ()).start().expect("start").join().expect("join");
        }
        return;
    }
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let (t, c) = (Instant::now(), cpu_us());
        for _ in 0..starts {
            raw_fork_waitpid();
        }
        let floor = (t.elapsed().as_secs_f64() * 1e6 / starts as f64, (cpu_us() - c) / starts as f64);
        let (t, c) = (Instant::now(), cpu_us());
        for _ in 0..starts {
            ctx.process(noop, ()).start().expect("start").join().expect("join");
        }
        // The server's CPU time is not counted: it is no child of this process.
        let served = (t.elapsed().as_secs_f64() * 1e6 / starts as f64, (cpu_us() - c) / starts as f64);
        ratios.push(served.0 / floor.0);
        println!(
            "round {round}: floor {:.1} µs (cpu {:.1}), fork server {:.1} µs (cpu without the server {:.1}), {:.2}×",
            floor.0, floor.1, served.0, served.1, served.0 / floor.0
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!("median ratio {:.2}×", ratios[ratios.len() / 2]);
}
