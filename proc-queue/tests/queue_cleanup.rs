//! A queue's named segments (large messages) are cleaned up by the program, not left to the
//! resource tracker's end-of-program warning, also when its daemon workers are terminated at exit
//! in the middle of a message.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proc_core::Process;
use proc_queue::JoinableQueue;
use test_support::{run_helper, serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

/// A daemon worker: takes items forever.
fn worker(q: JoinableQueue<Vec<u8>>) {
    while let Ok(item) = q.get() {
        assert_eq!(item.len(), 64 << 10);
        let _ = q.task_done();
    }
}

/// The program: daemon workers on a queue of 64 KiB items, and a main that returns while they
/// are busy (they are terminated at exit).
#[test]
#[ignore = "run by the test below, in a process of its own"]
fn helper_daemon_workers_busy_at_exit() {
    let q = JoinableQueue::new(16).unwrap();
    let workers: Vec<_> =
        (0..2).map(|_| Process::new(worker, (q.clone(),)).daemon(true).start().unwrap()).collect();
    for i in 0..200u32 {
        q.put(vec![i as u8; 64 << 10]).unwrap();
    }
    drop(workers);
}

#[test]
fn daemon_workers_terminated_at_exit_leave_nothing_to_the_tracker() {
    let _g = serial();
    let _w = Watchdog::new("daemon_workers_at_exit", LIMIT);
    // The output is read to its end, which comes when the tracker (which holds stderr too) exits.
    let out = run_helper("helper_daemon_workers_busy_at_exit", &[]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("resource tracker"), "{stderr}");
}
