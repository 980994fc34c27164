//! How children come to life: descriptor hygiene, the dispatcher, its `init()` fallback, no fork bombs.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use common::{example, run_helper, serial, Watchdog};
use proc_core::{get_context, Process, StartMethod};

const LIMIT: Duration = Duration::from_secs(120);

/// Whether descriptor `fd` is open in this process.
fn is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD takes no argument and touches no memory.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

#[test]
fn children_do_not_inherit_unrelated_descriptors() {
    let _s = serial();
    let _w = Watchdog::new("children_do_not_inherit_unrelated_descriptors", LIMIT);
    // A descriptor without close-on-exec, as careless code (or a C library) leaves them.
    // It is numbered high so the child cannot have reused the number for its own descriptors.
    // SAFETY: F_DUPFD of stdout returns a new descriptor (without close-on-exec) that we own.
    let leaky = unsafe { libc::fcntl(1, libc::F_DUPFD, 900) };
    assert!(leaky >= 0);
    // SAFETY: `leaky` was just created and is owned by no one else.
    let leaky = unsafe { OwnedFd::from_raw_fd(leaky) };
    for m in [StartMethod::Spawn, StartMethod::ForkServer] {
        let p = get_context(m).process(is_open, (leaky.as_raw_fd(),)).start().unwrap();
        assert!(!p.join().unwrap(), "{m}: the child inherited an unrelated descriptor");
    }
    // Under fork the child is a copy: it has it, as in Python.
    let p = get_context(StartMethod::Fork).process(is_open, (leaky.as_raw_fd(),)).start().unwrap();
    assert!(p.join().unwrap());
}

#[test]
fn sigpipe_is_ignored_in_children() {
    let _s = serial();
    let _w = Watchdog::new("sigpipe_is_ignored_in_children", LIMIT);
    fn sigpipe_ignored() -> bool {
        let mut old = std::mem::MaybeUninit::<libc::sigaction>::uninit();
        // SAFETY: a null new action only reads the current one into `old`.
        unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), old.as_mut_ptr()) };
        // SAFETY: sigaction filled `old`.
        unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN
    }
    for m in common::methods() {
        assert!(get_context(m).process(sigpipe_ignored, ()).start().unwrap().join().unwrap(), "{m}");
    }
}

#[test]
#[ignore = "helper: run by a missing_dispatcher_is_an_error_not_a_fork_bomb"]
fn helper_start_without_dispatcher() {
    match Process::new(|| (), ()).start() {
        Ok(p) => {
            let _ = p.join();
            println!("started");
        }
        Err(e) => {
            assert!(e.is_dispatcher_missing());
            println!("refused: {e}");
        }
    }
}

#[test]
fn missing_dispatcher_is_an_error_not_a_fork_bomb() {
    let _s = serial();
    let _w = Watchdog::new("missing_dispatcher_is_an_error_not_a_fork_bomb", LIMIT);
    // The constructor did not run: start refuses instead of re-running main in a child.
    let out = run_helper("helper_start_without_dispatcher", &[("MULTIPROC_DISPATCHER", "off")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("refused: the multiproc child dispatcher is not linked"), "{stdout}");
    // A child that reached main anyway (its dispatcher missing) refuses to start grandchildren.
    let out = run_helper(
        "helper_start_without_dispatcher",
        &[("MULTIPROC_DISPATCHER", "off"), ("MULTIPROC_CHILD", "spawn")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("refused: this process was started as a multiproc child but reached main"),
        "{stdout}"
    );
    // With the dispatcher, the same helper starts its child.
    let out = run_helper("helper_start_without_dispatcher", &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("started"));
}

#[test]
fn init_is_the_fallback() {
    let _s = serial();
    let _w = Watchdog::new("init_is_the_fallback", LIMIT);
    let exe = example("init_fallback");
    if !exe.exists() {
        // Only `cargo test` (not `cargo test --test process_entry`) builds examples.
        eprintln!("skipping: {} was not built", exe.display());
        return;
    }
    let out = std::process::Command::new(exe).env("MULTIPROC_DISPATCHER", "off").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "child returned 42\n");
}

#[test]
fn fork_server_is_restarted_after_it_dies() {
    let _s = serial();
    let _w = Watchdog::new("fork_server_is_restarted_after_it_dies", LIMIT);
    let ctx = get_context(StartMethod::ForkServer);
    ctx.process(|| (), ()).start().unwrap().join().unwrap();
    let server = proc_core::fork_server_pid().unwrap();
    test_support::kill_and_wait(server);
    let p = ctx.process(|x: u8| x + 1, (1,)).start().unwrap();
    assert_eq!(p.join().unwrap(), 2);
    let restarted = proc_core::fork_server_pid().unwrap();
    assert_ne!(restarted, server);
    // The dead server is no child of this process, so it is never left a zombie here.
    // SAFETY: waitpid with WNOHANG on a pid that is not our child only reports ECHILD.
    assert_eq!(unsafe { libc::waitpid(server as i32, std::ptr::null_mut(), libc::WNOHANG) }, -1);
}
