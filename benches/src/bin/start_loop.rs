//! Start+join of a no-op target through the fork server, next to the raw `fork`+`waitpid` floor,
//! the two alternating in rounds: `start_loop [rounds] [starts] [--markdown]`.
//!
//! The VM this project is measured on drifts by 1.3–6× over seconds to minutes, and criterion
//! measures its rows one after the other (3 s each), so a row can land in a slow stretch that the
//! floor's row missed. Here each round times a batch of floor cycles and then a batch of starts,
//! a few tens of milliseconds apart, and the ratio is taken per round: both sides of each ratio
//! see the same state of the machine. The median and the range of the rounds' ratios are the
//! figures (`cargo xtask bench process_start` prints them with `--markdown`, free and pinned).
//!
//! The floor runs in a twin of this process forked before multiproc is touched, so that it forks
//! as criterion's `floor_fork_waitpid` row does: in a process where no `atfork` handler of
//! multiproc's is registered (this process registers one when it connects to the fork server).
//!
//! Next to the times, the CPU time the starting process spends a start (its own, not its
//! children's: `getrusage(RUSAGE_SELF)`), and the twin's a floor cycle: what a join's looks for
//! the child's end (`Shared::look_before_sleeping` in proc-core) cost in CPU, against a parent
//! that sleeps in `waitpid`.
//!
//! `MULTIPROC_BENCH_PIN=1` pins to one CPU as the benchmarks do (the twin inherits it).
//! `START_LOOP_SERVED_ONLY=1` runs `rounds * starts` fork-server starts and no floor, for
//! profiling.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use multiproc::{get_context, StartMethod};
use multiproc_benches::{pin_to_one_cpu, pinned, raw_fork_waitpid};

fn noop() {}

/// This process' own CPU time (user and system, not its children's), in µs.
fn cpu_micros() -> f64 {
    multiproc_benches::cpu_time(libc::RUSAGE_SELF).as_secs_f64() * 1e6
}

/// The floor's twin: runs the batches of floor cycles it is asked for (a `u32` count) and answers
/// each with its time in nanoseconds and its own CPU time in µs (`u64` each), until its socket
/// closes.
fn floor_twin(mut sock: UnixStream) -> ! {
    let mut count = [0u8; 4];
    while sock.read_exact(&mut count).is_ok() {
        let (t, cpu) = (Instant::now(), cpu_micros());
        for _ in 0..u32::from_le_bytes(count) {
            raw_fork_waitpid();
        }
        let nanos = t.elapsed().as_nanos() as u64;
        let cpu = (cpu_micros() - cpu) as u64;
        let mut answer = [0u8; 16];
        answer[..8].copy_from_slice(&nanos.to_le_bytes());
        answer[8..].copy_from_slice(&cpu.to_le_bytes());
        if sock.write_all(&answer).is_err() {
            break;
        }
    }
    // SAFETY: _exit never returns; nothing of this process needs running down.
    unsafe { libc::_exit(0) }
}

/// Forks the floor's twin (this process is single-threaded and has not touched multiproc yet): its
/// socket and its pid.
fn start_twin() -> (UnixStream, libc::pid_t) {
    let (ours, theirs) = UnixStream::pair().expect("socket pair");
    // SAFETY: the process is single-threaded here; the child runs `floor_twin`, which never returns.
    match unsafe { libc::fork() } {
        0 => {
            drop(ours);
            floor_twin(theirs)
        }
        pid => {
            assert!(pid > 0, "fork failed");
            (ours, pid)
        }
    }
}

/// Mean time and mean CPU time of the twin per floor cycle, in µs, of a batch the twin runs.
fn floor_batch(twin: &mut UnixStream, starts: usize) -> (f64, f64) {
    twin.write_all(&(starts as u32).to_le_bytes()).expect("ask the twin");
    let mut answer = [0u8; 16];
    twin.read_exact(&mut answer).expect("the twin's answer");
    let word = |at: usize| u64::from_le_bytes(answer[at..at + 8].try_into().expect("8 bytes")) as f64;
    (word(0) / 1e3 / starts as f64, word(8) / starts as f64)
}

fn main() {
    if pinned() {
        pin_to_one_cpu();
    }
    let markdown = std::env::args().any(|a| a == "--markdown");
    let mut numbers = std::env::args().skip(1).filter_map(|a| a.parse::<usize>().ok());
    let rounds = numbers.next().unwrap_or(5).max(1);
    let starts = numbers.next().unwrap_or(3000).max(1);
    let served_only = std::env::var_os("START_LOOP_SERVED_ONLY").is_some();
    let mut twin = (!served_only).then(start_twin);

    let ctx = get_context(StartMethod::ForkServer);
    let start = || ctx.process(noop, ()).start().expect("start").join().expect("join");
    start();
    let Some((twin, twin_pid)) = twin.as_mut() else {
        // For profiling: only fork-server starts, no floor.
        for _ in 0..rounds * starts {
            start();
        }
        return;
    };
    let mut rows = Vec::new();
    let (mut cpu_served, mut cpu_floor) = (0.0, 0.0);
    for round in 0..rounds {
        let (floor, floor_cpu) = floor_batch(twin, starts);
        let (t, cpu) = (Instant::now(), cpu_micros());
        for _ in 0..starts {
            start();
        }
        let served = t.elapsed().as_secs_f64() * 1e6 / starts as f64;
        let served_cpu = (cpu_micros() - cpu) / starts as f64;
        cpu_served += served_cpu / rounds as f64;
        cpu_floor += floor_cpu / rounds as f64;
        if !markdown {
            println!(
                "round {round}: floor {floor:.1} µs (CPU {floor_cpu:.1}), fork server {served:.1} µs (CPU {served_cpu:.1}), {:.2}×",
                served / floor
            );
        }
        rows.push((served / floor, floor, served));
    }
    // The twin ends when its socket closes: reap it.
    let _ = twin.shutdown(std::net::Shutdown::Both);
    let mut status = 0;
    // SAFETY: `status` is a live c_int; the twin is this process' child.
    unsafe { libc::waitpid(*twin_pid, &mut status, 0) };
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (median, min, max) = (rows[rows.len() / 2], rows[0], rows[rows.len() - 1]);
    if markdown {
        let mode = if pinned() { "pinned" } else { "free" };
        println!(
            "| {mode} | {rounds} × {starts} | {:.1} / {:.1} µs | **{:.2}×** | {:.2}–{:.2}× | {cpu_served:.1} / {cpu_floor:.1} µs |",
            median.2, median.1, median.0, min.0, max.0
        );
    } else {
        println!(
            "median ratio {:.2}× (rounds {:.2}–{:.2}×); the starting process' CPU a start {cpu_served:.1} µs, the floor's {cpu_floor:.1} µs",
            median.0, min.0, max.0
        );
    }
}
