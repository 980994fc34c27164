//! The multiproc tour: every demo of the Python multiprocessing tutorials, in Rust.
//!
//! `cargo run --release --example tour` runs them all; `cargo run --example tour -- <demo>` runs
//! one (`cargo run --example tour -- list` lists them). Sleeps are scaled by the environment
//! variable `MULTIPROC_TOUR_SCALE` (default 1.0; the tests run the tour at 0.01).

mod manager;
mod pool;
mod process;
mod queue;
mod sync;

use std::time::Duration;

/// A tutorial's `time.sleep(secs)`, scaled.
pub(crate) fn sleep(secs: f64) {
    std::thread::sleep(Duration::from_secs_f64(secs * scale()));
}

/// A pseudo-random fraction in [0, 1), different in each process and each call: enough to
/// scatter the simulated delays.
pub(crate) fn random() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let x = (u64::from(std::process::id()) ^ (n << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The time scale of the tour.
pub(crate) fn scale() -> f64 {
    std::env::var("MULTIPROC_TOUR_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0)
}

type Demo = (&'static str, &'static str, fn());

const DEMOS: &[Demo] = &[
    ("start", "start a process with arguments", process::start_with_args),
    ("subclass", "the subclass-and-run form", process::subclass),
    ("join", "join: three sleepers in sequence, then in parallel", process::join_sequential_vs_parallel),
    ("isolation", "globals are not shared between processes", process::globals_are_not_shared),
    ("pids", "pid, ppid, terminate and is_alive", process::pids_terminate_is_alive),
    ("daemon", "daemon and non-daemon children at exit", process::daemon_vs_non_daemon),
    ("cpus", "cpu_count and active_children", process::cpus_and_active_children),
    ("values", "a typed return value, and a panic coming back as an error", process::values_and_panics),
    ("tickets", "ticket grabbing with and without a Lock", sync::tickets),
    ("semaphore", "Semaphore(3) limits eight processes to three at once", sync::semaphore),
    ("shared", "a shared counter (Value) and array (Array)", sync::shared_values),
    ("event", "Event signalling between processes", sync::event),
    ("condition", "a consumer waits on a Condition for a producer process", sync::condition),
    ("barrier", "three processes meet at a Barrier with an action, three rounds", sync::barrier),
    ("queue", "Queue(5): full, empty, put, get, get_nowait; Queue(3)", queue::basics),
    ("ipc", "parent to child and child to child through a Queue", queue::ipc),
    ("producers", "producers and consumers with one None per consumer", queue::producers_consumers),
    ("joinable", "a JoinableQueue with daemon consumers and q.join()", queue::joinable),
    ("pool", "Pool(3): apply_async, close, join", pool::apply_async_close_join),
    ("results", "apply_async results of p*p on two processes", pool::results),
    ("map", "Pool.map and starmap", pool::map),
    ("progress", "a progress bar over a long imap", pool::progress),
    ("speedup", "a CPU-bound map on one process and on every CPU", pool::speedup),
    ("manager", "a child fills a manager's dict and list", manager::dict_and_list),
    ("counter", "a shared counter through a proxy Lock", manager::counter),
    ("jobs", "a distributed job queue over TCP with an authkey", manager::distributed),
];

fn main() {
    let wanted = std::env::args().nth(1);
    if wanted.as_deref() == Some("list") {
        for (name, what, _) in DEMOS {
            println!("{name:10} {what}");
        }
        return;
    }
    for (name, what, demo) in DEMOS {
        if wanted.as_deref().is_none_or(|w| w == *name) {
            println!("\n== {name}: {what} ==");
            demo();
        }
    }
}
