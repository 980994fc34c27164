//! The pool demos: `apply_async` with `close`/`join`, results of `apply_async`, `map`, a progress
//! bar over a long `imap`, and the speed-up of a CPU-bound `map`.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use multiproc::pool::Opts;
use multiproc::Pool;

use crate::{scale, sleep};

fn worker(msg: String) {
    println!("start {msg}");
    sleep(1.0);
    println!("end {msg}");
}

/// `Pool(processes=3)`, nine `apply_async(worker, (msg,))`, then `close()` and `join()`.
pub(crate) fn apply_async_close_join() {
    println!("main start");
    let pool = Pool::new(3).expect("pool");
    for i in 1..10 {
        pool.apply_async(worker, (format!("hello {i}"),)).expect("apply_async");
    }
    pool.close();
    pool.join().expect("join"); // join needs close (or terminate) first, as in Python
    println!("main end");
}

fn test(p: u64) -> u64 {
    sleep(1.0);
    p * p
}

/// `apply_async(test, (i,))` for ten items on two processes, then every `get()`.
pub(crate) fn results() {
    let pool = Pool::new(2).expect("pool");
    let results: Vec<_> = (0..10).map(|i| pool.apply_async(test, (i,)).expect("apply_async")).collect();
    pool.close();
    pool.join().expect("join");
    for r in results {
        println!("{}", r.get().expect("get"));
    }
}

fn square(x: u64) -> u64 {
    x * x
}

/// `pool.map(square, range(10))`, and `starmap` over pairs.
pub(crate) fn map() {
    let pool = Pool::new(4).expect("pool");
    println!("{:?}", pool.map(square, 0..10).expect("map"));
    println!(
        "{:?}",
        pool.starmap(|a: u64, b: u64| a.pow(b as u32), [(2, 3), (3, 2), (10, 3)]).expect("starmap")
    );
}

fn slow_square(x: u64) -> u64 {
    sleep(0.01);
    x * x
}

/// A progress bar over a long `imap`: the iterator knows its length.
pub(crate) fn progress() {
    let pool = Pool::new(4).expect("pool");
    let results = pool.imap(slow_square, 0..500);
    let bar = ProgressBar::new(results.total().unwrap_or(0) as u64);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec}").expect("template"));
    let mut sum = 0;
    for r in results {
        sum += r.expect("task");
        bar.inc(1);
    }
    bar.finish();
    println!("sum of squares below 500: {sum}");
}

/// About 20 ms of arithmetic (in a release build; less at a smaller tour scale).
fn crunch(seed: u64, rounds: u64) -> u64 {
    let mut h = seed;
    for i in 0..rounds {
        h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i) ^ (h >> 29);
    }
    std::hint::black_box(h)
}

/// A CPU-bound `map` on one process, then on every usable CPU.
pub(crate) fn speedup() {
    let cpus = multiproc::process_cpu_count();
    let mut times = Vec::new();
    let mut answers = Vec::new();
    for processes in [1, cpus] {
        let pool = Pool::new(processes).expect("pool");
        let t = Instant::now();
        let rounds = (8_000_000.0 * scale().min(1.0)) as u64;
        answers.push(
            pool.starmap_with(crunch, (0..32).map(|i| (i, rounds)), Opts::new().chunksize(1))
                .expect("starmap"),
        );
        times.push(t.elapsed());
    }
    println!("same results on 1 and {cpus} processes: {}", answers[0] == answers[1]);
    println!(
        "1 process: {:.2?}, {cpus} processes: {:.2?}, speed-up {:.1}x",
        times[0],
        times[1],
        times[0].as_secs_f64() / times[1].as_secs_f64()
    );
}
