//! A pool dropped while busy cleans up its shared memory: nothing is left for the resource
//! tracker (which would warn), also when the program runs in a terminal that closes at exit.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use proc_pool::Pool;
use test_support::{run_helper, serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

fn echo(v: Vec<u8>) -> Vec<u8> {
    v
}

/// The program: a pool dropped in the middle of an `imap` of 64 KiB items.
#[test]
#[ignore = "run by the tests below, in a process of its own"]
fn helper_drop_busy_pool() {
    let pool = Pool::new(4).unwrap();
    let mut it = pool.imap(echo, (0..10_000u32).map(|i| vec![i as u8; 64 << 10]));
    for _ in 0..50 {
        it.next().unwrap().unwrap();
    }
    drop(it);
    drop(pool);
}

fn dies_on_ten(v: Vec<u8>) -> Vec<u8> {
    if v[0] == 10 {
        // SAFETY: raising a signal in this process has no memory-safety precondition.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    v
}

/// In a child process (whose exit purges nothing for it): a pool that lost a worker in the
/// middle of 64 KiB messages, then closed and joined.
fn lose_a_worker_then_close() {
    let pool = Pool::new(2).unwrap();
    let results: Vec<_> = pool.imap(dies_on_ten, (0..40u8).map(|i| vec![i; 64 << 10])).collect();
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    pool.close();
    pool.join().unwrap();
}

#[test]
#[ignore = "run by the tests below, in a process of its own"]
fn helper_worker_lost_then_close() {
    proc_core::Process::new(lose_a_worker_then_close, ()).start().unwrap().join().unwrap();
}

/// A closed pool that lost a worker releases what that worker held, once its workers are gone.
#[test]
fn a_closed_pool_that_lost_a_worker_leaves_nothing_to_the_tracker() {
    let _g = serial();
    let _w = Watchdog::new("closed_pool_lost_worker", LIMIT);
    let out = run_helper("helper_worker_lost_then_close", &[]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("resource tracker"), "{stderr}");
}

#[test]
fn a_busy_pool_dropped_leaves_nothing_to_the_tracker() {
    let _g = serial();
    let _w = Watchdog::new("busy_pool_dropped", LIMIT);
    // The output is read to its end, which comes when the tracker (which holds stderr too) exits.
    let out = run_helper("helper_drop_busy_pool", &[]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("resource tracker"), "{stderr}");
}

/// The names of the segments in `/dev/shm` made by multiproc (Linux; elsewhere none are listed).
fn shm_names() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("mp_"))
                .collect()
        })
        .unwrap_or_default()
}

/// The program run in a terminal: leaves a segment of its own to the tracker (as a crashed
/// creator would), drops a busy pool, and writes to `$REPORT` the segment's name, then the names
/// that appeared in `/dev/shm` while it ran.
#[test]
#[ignore = "run by the tests below, in a process of its own"]
fn helper_in_a_terminal() {
    let before = shm_names();
    let report = std::env::var("REPORT").unwrap();
    let left = proc_core::shm::SharedMemory::create(4096).unwrap();
    helper_drop_busy_pool();
    let new: Vec<String> = shm_names().difference(&before).filter(|n| *n != left.name()).cloned().collect();
    std::fs::write(report, format!("{}\n{}", left.name(), new.join("\n"))).unwrap();
    std::mem::forget(left);
}

/// Waits (polling, bounded) until none of `names` is in `/dev/shm`; returns those still there.
#[cfg(target_os = "linux")]
fn wait_gone(names: &[&str], within: Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let now = shm_names();
        let left: Vec<String> = names.iter().filter(|n| now.contains(**n)).map(|n| n.to_string()).collect();
        if left.is_empty() || std::time::Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// In a pseudo-terminal that closes when the program ends (`script`), the tracker survives the
/// hangup and unlinks what the program left; the busy pool's segments are gone too.
#[cfg(target_os = "linux")]
#[test]
fn in_a_terminal_that_closes_at_exit_nothing_is_left_in_dev_shm() {
    let _g = serial();
    let _w = Watchdog::new("terminal_closes", LIMIT);
    let Ok(script) = which("script") else {
        eprintln!("no `script` here: skipped");
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let report = std::env::temp_dir().join(format!("multiproc-pty-report-{}", std::process::id()));
    let command =
        format!("{} --exact --ignored --nocapture --test-threads=1 helper_in_a_terminal", exe.display());
    let started = std::time::Instant::now();
    let status = std::process::Command::new(script)
        .args(["-qec", &command, "/dev/null"])
        .env("REPORT", &report)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let _ = std::fs::remove_file(&report);
    assert!(status.success(), "{status}: {text}");
    let names: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert!(!names.is_empty(), "no report");
    let ran = started.elapsed();
    // The tracker unlinks once every process of the program has gone; a loaded machine may take a while.
    let left = wait_gone(&names, Duration::from_secs(60));
    assert!(
        left.is_empty(),
        "left in /dev/shm: {left:?} (first: the one left to the tracker); the program ran {ran:?}"
    );
}

#[cfg(target_os = "linux")]
fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file()).ok_or(())
}
