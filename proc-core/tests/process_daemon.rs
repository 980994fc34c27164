//! Daemon rules: no grandchildren, terminated at normal exit, gone when the parent is SIGKILLed.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::time::Duration;

use common::{methods, run_helper, serial, Watchdog};
use proc_core::handle::Fd;
use proc_core::{get_context, Process, StartMethod};

const LIMIT: Duration = Duration::from_secs(120);

fn try_grandchild() -> String {
    match Process::new(|| (), ()).start() {
        Ok(_) => "started".into(),
        Err(e) => {
            assert!(e.is_daemon_child());
            e.to_string()
        }
    }
}

#[test]
fn daemon_may_not_have_children() {
    let _s = serial();
    let _w = Watchdog::new("daemon_may_not_have_children", LIMIT);
    for m in methods() {
        let p = get_context(m).process(try_grandchild, ()).daemon(true).start().unwrap();
        assert!(p.daemon());
        assert_eq!(p.join().unwrap(), "daemonic processes are not allowed to have children");
    }
}

/// Holds `keep` open until killed.
fn hold(keep: Fd) {
    let _keep = keep;
    loop {
        std::thread::park();
    }
}

/// Starts a daemon that holds `keep`, reports "ready" on `keep`, then blocks until killed.
fn middle(method: String, keep: Fd) {
    let method: StartMethod = method.parse().unwrap();
    let copy = Fd::from(OwnedFd::from(std::fs::File::from(keep.into_owned())));
    let file = std::fs::File::from(std::os::fd::AsFd::as_fd(&copy).try_clone_to_owned().unwrap());
    let daemon = get_context(method).process(hold, (copy,)).daemon(true).start().unwrap();
    std::mem::forget(daemon);
    std::io::Write::write_all(&mut &file, b"ready").unwrap();
    drop(file);
    loop {
        std::thread::park();
    }
}

#[test]
fn parent_sigkilled_takes_daemons_along() {
    let _s = serial();
    let _w = Watchdog::new("parent_sigkilled_takes_daemons_along", LIMIT);
    for m in methods() {
        let (mut r, w) = std::io::pipe().unwrap();
        let parent = get_context(StartMethod::Spawn)
            .process(middle, (m.to_string(), Fd::from(OwnedFd::from(w))))
            .start()
            .unwrap();
        let mut ready = [0u8; 5];
        r.read_exact(&mut ready).unwrap();
        parent.kill().unwrap();
        assert_eq!(parent.join().unwrap_err().signal(), Some(libc::SIGKILL));
        // End of file only once every write end is closed: the daemon's included.
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{m}");
    }
}

fn print_and_return(tag: String) {
    println!("{tag} done");
}

fn print_forever(tag: String) {
    println!("{tag} started");
    loop {
        std::thread::park();
    }
}

#[test]
#[ignore = "helper: run by daemons_terminated_non_daemons_joined_at_exit"]
fn helper_exit_with_children() {
    for m in methods() {
        let d = get_context(m).process(print_forever, (format!("daemon-{m}"),)).daemon(true).start().unwrap();
        let n = get_context(m).process(print_and_return, (format!("worker-{m}"),)).start().unwrap();
        // Dropping the handles: the exit-time rule still applies.
        drop((d, n));
    }
}

#[test]
fn daemons_terminated_non_daemons_joined_at_exit() {
    let _s = serial();
    let _w = Watchdog::new("daemons_terminated_non_daemons_joined_at_exit", LIMIT);
    // output() returns once every holder of the helper's stdout exited: the daemons too.
    let out = run_helper("helper_exit_with_children", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for m in methods() {
        assert!(stdout.contains(&format!("worker-{m} done")), "{stdout}");
    }
}
