//! A fork server killed at any point of its work never loses a child's exit status, never hangs a
//! start or a join, and leaves no zombie: killed while idle, while its children run, and while a
//! request waits for it (the server stopped, then killed, before it could fork). Each time the next
//! start gets a new server.
//!
//! After many starts, too, the keeper (Linux, where the server forks children of its own) still
//! adopts the children of a killed server: the children and the server tell it of each child
//! without waking it, and it keeps up.
//!
//! All three apply to both backends. What differs is who reaps what the dead server leaves: on
//! Linux with glibc the children are this process' own, and with another C library (or
//! `MULTIPROC_FORKSERVER_CLONE_PARENT=0`, which `these_tests_pass_with_a_keeper_too` sets for a
//! second run) the server's keeper adopts them; either way their real exit codes are known, so a
//! child that calls `exit(n)` is seen with `n`; on the portable backend (macOS's code path) they go to init,
//! and the parent sees the code a child's report implies (a returned value: 0), so the running
//! children there return values instead of calling `exit`. (`process_orphans.rs` covers a killed
//! keeper, and keeper and server killed together.)

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
#[cfg(target_os = "linux")]
use std::sync::mpsc;
use std::time::Duration;

use common::forkserver::{adopts, start, Child, End};
#[cfg(target_os = "linux")]
use common::forkserver::{direct, parent_of, rerun_with_a_keeper, state_and_parent, zombie_children};
use common::{serial, Watchdog};
use proc_core::{get_context, StartMethod};
use test_support::kill_and_wait;

const LIMIT: Duration = Duration::from_secs(120);

/// How long a start or a join may take once the server is dead, before the test calls it hung.
#[cfg(target_os = "linux")]
const PROMPT: Duration = Duration::from_secs(30);

/// Starts a trivial fork-server child and checks its value and exit code.
fn start_and_join(x: u32) {
    let p = get_context(StartMethod::ForkServer).process(|x: u32| x + 1, (x,)).start().unwrap();
    assert_eq!(p.join().unwrap(), x + 1);
    assert_eq!(p.exitcode(), Some(0));
}

/// Checks that `pid` (a dead server, or a child of one) is no child of this process: not left a
/// zombie here, and (Linux) either gone or another process' (its keeper's, or init's, which reap it).
fn not_ours(pid: u32) {
    // SAFETY: waitpid with WNOHANG on a pid that is not our child reports ECHILD at once.
    assert_eq!(unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG) }, -1);
    #[cfg(target_os = "linux")]
    if let Some((state, parent)) = state_and_parent(pid) {
        assert_ne!(parent, std::process::id(), "{pid} (state {state}) is a child of this process");
    }
}

/// Checks that no zombie of this process is left (Linux).
fn no_zombies() {
    #[cfg(target_os = "linux")]
    assert_eq!(zombie_children(), Vec::<u32>::new());
}

/// Runs `f` on a thread and returns its result, failing the test (instead of hanging it) if `f`
/// takes longer than `PROMPT`.
#[cfg(target_os = "linux")]
fn promptly<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PROMPT).unwrap_or_else(|e| panic!("{what} did not return in {PROMPT:?}: {e}"))
}

#[test]
fn a_server_killed_while_idle_is_replaced() {
    let _s = serial();
    let _w = Watchdog::new("a_server_killed_while_idle_is_replaced", LIMIT);
    start_and_join(1);
    let server = proc_core::fork_server_pid().unwrap();
    kill_and_wait(server);

    // The dead server is never named again, and is not left a zombie of this process.
    assert_eq!(proc_core::fork_server_pid(), None);
    not_ours(server);

    // The next start launches a new server and reports the right status.
    start_and_join(2);
    let second = proc_core::fork_server_pid().unwrap();
    assert_ne!(second, server);
    let e = get_context(StartMethod::ForkServer)
        .process(|| -> u32 { std::process::exit(9) }, ())
        .start()
        .unwrap()
        .join()
        .unwrap_err();
    assert_eq!(e.exit_code(), Some(9), "{e}");
    assert_eq!(proc_core::fork_server_pid(), Some(second));
    not_ours(server);
    no_zombies();
}

#[test]
fn a_server_killed_while_its_children_run_loses_no_status() {
    let _s = serial();
    let _w = Watchdog::new("a_server_killed_while_its_children_run_loses_no_status", LIMIT);
    // Only the keeper (Linux) can know the code of a child that calls `exit`; elsewhere the code a
    // child's report implies is all there is, so there the children return values.
    let ends = if adopts() {
        [End::Return(31), End::Exit(32), End::Exit(33)]
    } else {
        [End::Return(31), End::Return(32), End::Return(33)]
    };
    let mut children: Vec<Child> = ends.into_iter().map(start).collect();
    let server = proc_core::fork_server_pid().unwrap();
    kill_and_wait(server);
    assert_eq!(proc_core::fork_server_pid(), None);
    not_ours(server);

    // A child started now runs on a new server, beside the orphans.
    children.push(start(End::Return(34)));
    assert_ne!(proc_core::fork_server_pid(), Some(server));
    for child in &children {
        assert!(child.process.is_alive(), "{:?}", child.process);
        assert_eq!(child.process.exitcode(), None);
    }

    // Released in the reverse order of their starts, each reports its own value or code.
    for child in children.iter_mut().rev() {
        let pid = child.process.pid();
        child.release.write_all(&[1]).unwrap();
        match child.end {
            End::Return(v) => {
                assert_eq!(child.process.join().unwrap(), v);
                assert_eq!(child.process.exitcode(), Some(0));
            }
            End::Exit(code) => {
                let e = child.process.join().unwrap_err();
                assert_eq!(e.exit_code(), Some(code), "{e}");
                assert_eq!(child.process.exitcode(), Some(code));
            }
            End::Wait => unreachable!("every child here is released"),
        }
        assert!(!child.process.is_alive());
        assert!(child.process.sentinel().is_ready().unwrap());
        not_ours(pid);
        #[cfg(target_os = "linux")]
        if adopts() {
            // Its keeper (or server) reaped it before it wrote the code the join read.
            assert_eq!(state_and_parent(pid), None, "child {pid} is left behind");
        }
    }
    assert!(proc_core::active_children().is_empty());
    start_and_join(3);
    no_zombies();
}

/// A request that waits for a server that is stopped, and is then killed before it could fork:
/// the start returns at once (it does not wait for the server), and its join ends promptly with a
/// clear error once the server is dead; the next start gets a new server.
///
/// Linux only: it reads `/proc` to know that the server has stopped before the request is sent.
#[cfg(target_os = "linux")]
#[test]
fn a_server_killed_before_it_forks_hangs_nothing() {
    let _s = serial();
    let _w = Watchdog::new("a_server_killed_before_it_forks_hangs_nothing", LIMIT);
    start_and_join(1);
    let server = proc_core::fork_server_pid().unwrap();
    // SAFETY: kill takes plain integers; the server is alive and not reaped.
    assert_eq!(unsafe { libc::kill(server as i32, libc::SIGSTOP) }, 0);
    while !matches!(state_and_parent(server), Some(('T', _))) {
        std::thread::yield_now();
    }

    // The request is queued on the stopped server's socket; the start does not wait for it.
    let p = promptly("a start through a stopped server", || {
        get_context(StartMethod::ForkServer).process(|x: u32| x + 1, (5,)).start().unwrap()
    });
    let p = std::sync::Arc::new(p);
    // A join that waits for the stopped server, ended by its death.
    let waiting = {
        let p = p.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(p.join().map_err(|e| (e.to_string(), e.exit_code())));
        });
        rx
    };
    kill_and_wait(server);
    let joined = waiting.recv_timeout(PROMPT).expect("the join hung after the server died");

    // The server never forked the child: no value, no pid, a clear error and the lost-status code.
    let (message, _) = joined.unwrap_err();
    assert!(message.contains("fork server"), "{message}");
    assert_eq!(p.pid(), 0);
    assert_eq!(p.exitcode(), Some(255));
    assert!(!p.is_alive());
    assert!(p.sentinel().is_ready().unwrap());
    // A second join says the same, at once.
    assert!(p.join().is_err());
    // Signalling it is a no-op, never a signal to pid 0 (this process group).
    p.terminate().unwrap();
    p.kill().unwrap();

    assert_eq!(proc_core::fork_server_pid(), None);
    not_ours(server);
    start_and_join(6);
    assert_ne!(proc_core::fork_server_pid(), Some(server));
    assert!(proc_core::active_children().is_empty());
    no_zombies();
}

/// Many starts (several times the keeper's nudge interval, and more messages than its link holds
/// unread): the keeper keeps up, holding a few status pipes rather than one per child ever
/// started, and still adopts the child of a server killed after them and reports its exit code.
#[cfg(target_os = "linux")]
#[test]
fn the_keeper_keeps_up_with_many_starts() {
    let _s = serial();
    let _w = Watchdog::new("the_keeper_keeps_up_with_many_starts", LIMIT);
    // Only a server that forks children of its own has a keeper.
    if !adopts() || direct() {
        return;
    }
    for x in 0..400 {
        start_and_join(x);
    }
    let server = proc_core::fork_server_pid().unwrap();
    let keeper = parent_of(server);
    let held = std::fs::read_dir(format!("/proc/{keeper}/fd")).unwrap().count();
    assert!(held < 64, "the keeper holds {held} descriptors after 400 starts");

    let mut child = start(End::Exit(9));
    kill_and_wait(server);
    not_ours(server);
    child.release.write_all(&[1]).unwrap();
    let e = child.process.join().unwrap_err();
    assert_eq!(e.exit_code(), Some(9), "{e}");
    assert!(proc_core::active_children().is_empty());
    start_and_join(1);
    no_zombies();
}

/// Where the fork server forks this process' children, these tests run a second time, in a new
/// process whose server forks children of its own and has a keeper.
#[cfg(target_os = "linux")]
#[test]
fn these_tests_pass_with_a_keeper_too() {
    let _s = serial();
    let _w = Watchdog::new("these_tests_pass_with_a_keeper_too", LIMIT);
    rerun_with_a_keeper("these_tests_pass_with_a_keeper_too");
}
