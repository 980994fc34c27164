//! A `tracing` event logged in a pool worker reaches the parent's subscriber, with the worker's
//! name and pid (proc-core's `forward_child_events`).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proc_pool::Pool;
use test_support::capture::{wait_for, Capture};
use test_support::{serial, Watchdog};
use tracing::Level;

/// A task that logs, and says which process ran it.
fn logged_square(x: u64) -> (u64, u32) {
    tracing::warn!(x, "squaring in a worker");
    (x * x, std::process::id())
}

#[test]
fn an_event_logged_in_a_pool_worker_reaches_the_parent() {
    let _s = serial();
    let _w = Watchdog::new("pool_logging", Duration::from_secs(60));
    Capture::install();
    proc_core::forward_child_events(Level::INFO).unwrap();
    let pool = Pool::new(2).unwrap();
    let (square, worker) = pool.apply(logged_square, (7,)).unwrap();
    assert_eq!(square, 49);
    let line = wait_for(&["squaring in a worker", "x=7"], Duration::from_secs(30));
    assert!(line.starts_with("WARN multiproc::child"), "{line}");
    assert!(line.contains(&format!("pid={worker}")), "{line}");
    assert!(line.contains(" child=PoolWorker-"), "the worker's name: {line}");
    pool.close();
    pool.join().unwrap();
}
