//! Helpers shared by the integration tests: a watchdog and a lock that runs process tests one at a time.

#![allow(dead_code, unreachable_pub)]

use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Aborts the whole test binary (and so fails the run) if it is not dropped within `limit`.
/// A hung multi-process test must fail, not hang CI.
#[must_use]
pub struct Watchdog {
    done: mpsc::Sender<()>,
}

impl Watchdog {
    pub fn new(name: &'static str, limit: Duration) -> Self {
        let (done, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("watchdog: test {name} did not finish within {limit:?}; aborting");
                std::process::abort();
            }
        });
        Watchdog { done }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.done.send(());
    }
}

/// Serializes the tests of one binary: forking with several test threads around is what the fork
/// start method warns about, and two cores are better used one test at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs one `#[ignore]`d helper test of this test binary in a fresh process and returns its output.
pub fn run_helper(name: &str, envs: &[(&str, &str)]) -> std::process::Output {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--exact", "--ignored", "--nocapture", "--test-threads=1", name]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run helper")
}

/// The path of an example binary of this package (cargo builds examples for `cargo test`).
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let debug = exe.parent().and_then(|d| d.parent()).expect("target dir");
    debug.join("examples").join(name)
}

/// The start methods every test runs under.
pub fn methods() -> Vec<proc_core::StartMethod> {
    proc_core::get_all_start_methods()
}
