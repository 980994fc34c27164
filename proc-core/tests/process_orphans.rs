//! A fork server that dies does not orphan the children it forked: they keep their state, can be
//! signalled and report how they ended; the dead server is reaped and no zombie is left. On Linux
//! with glibc they are the program's own children, which the server's death does not touch; with
//! another C library (or `MULTIPROC_FORKSERVER_CLONE_PARENT=0`, which
//! `these_tests_pass_with_a_keeper_too` sets for a second run) the server's keeper reaps them and
//! reports their real exit codes. The program itself is no subreaper, so orphans of other code go
//! to init as usual.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::time::Duration;

use common::forkserver::{adopts, start, End};
#[cfg(target_os = "linux")]
use common::forkserver::{direct, parent_of, rerun_with_a_keeper, zombie_children};
use common::{serial, Watchdog};
use proc_core::{get_context, StartMethod};
use test_support::kill_and_wait;

const LIMIT: Duration = Duration::from_secs(120);

/// Kills this process' fork server and waits until it is dead.
fn kill_fork_server() -> u32 {
    let server = proc_core::fork_server_pid().unwrap();
    kill_and_wait(server);
    server
}

#[test]
fn children_of_a_dead_fork_server_keep_their_state() {
    let _s = serial();
    let _w = Watchdog::new("children_of_a_dead_fork_server_keep_their_state", LIMIT);
    let mut returns = start(End::Return(5));
    let mut exits = start(End::Exit(7));
    let terminated = start(End::Wait);
    let server = kill_fork_server();

    // The dead server is never named again, and is not left a zombie of this process.
    assert_eq!(proc_core::fork_server_pid(), None);
    // SAFETY: waitpid with WNOHANG on a reaped pid (or one that is not our child) reports ECHILD.
    assert_eq!(unsafe { libc::waitpid(server as i32, std::ptr::null_mut(), libc::WNOHANG) }, -1);

    for child in [&returns, &exits, &terminated] {
        let p = &child.process;
        assert!(p.is_alive(), "{p:?}");
        assert_eq!(p.exitcode(), None);
        assert!(!p.sentinel().is_ready().unwrap(), "{p:?}: the sentinel says ended");
        assert!(p.join_timeout(Duration::ZERO).unwrap().is_none());
    }
    let active: Vec<u32> = proc_core::active_children().iter().map(|c| c.pid()).collect();
    for child in [&returns, &exits, &terminated] {
        assert!(active.contains(&child.process.pid()), "{active:?}");
    }

    // terminate() reaches the orphan.
    terminated.process.terminate().unwrap();
    let e = terminated.process.join().unwrap_err();
    returns.release.write_all(&[1]).unwrap();
    assert_eq!(returns.process.join().unwrap(), 5);
    assert_eq!(returns.process.exitcode(), Some(0));
    exits.release.write_all(&[1]).unwrap();
    let exit_error = exits.process.join().unwrap_err();
    if adopts() {
        // Linux: adopted by the keeper, which reaps them and reports how they ended.
        assert_eq!(terminated.process.exitcode(), Some(-libc::SIGTERM), "{e}");
        assert_eq!(e.signal(), Some(libc::SIGTERM), "{e}");
        assert_eq!(exits.process.exitcode(), Some(7));
        assert_eq!(exit_error.exit_code(), Some(7), "{exit_error}");
    } else {
        // Portable: only the dead server could have known a code that no report implies.
        assert_eq!(terminated.process.exitcode(), Some(255));
        assert!(e.to_string().contains("exit code"), "{e}");
        assert_eq!(exits.process.exitcode(), Some(255));
        assert!(exit_error.to_string().contains("exit code"), "{exit_error}");
    }
    for child in [&returns, &exits, &terminated] {
        assert!(!child.process.is_alive());
        assert!(child.process.sentinel().is_ready().unwrap());
    }
    assert!(proc_core::active_children().is_empty());

    // A new server serves the next start.
    let p = get_context(StartMethod::ForkServer).process(|x: u32| x + 1, (1,)).start().unwrap();
    assert_eq!(p.join().unwrap(), 2);
    assert_ne!(proc_core::fork_server_pid(), Some(server));
    #[cfg(target_os = "linux")]
    assert_eq!(zombie_children(), Vec::<u32>::new());
}

#[test]
fn kill_reaches_a_child_of_a_dead_fork_server() {
    let _s = serial();
    let _w = Watchdog::new("kill_reaches_a_child_of_a_dead_fork_server", LIMIT);
    let child = start(End::Wait);
    kill_fork_server();
    child.process.kill().unwrap();
    let e = child.process.join().unwrap_err();
    if adopts() {
        assert_eq!(child.process.exitcode(), Some(-libc::SIGKILL), "{e}");
    } else {
        assert_eq!(child.process.exitcode(), Some(255), "{e}");
    }
    // Killing it again is a no-op, not an error.
    child.process.kill().unwrap();
    #[cfg(target_os = "linux")]
    assert_eq!(zombie_children(), Vec::<u32>::new());
}

/// In a copy made by `fork` of a process that runs a fork server already: starts a fork-server
/// child (through a server of the copy's own), kills that server, lets the child exit with 7, and
/// returns the exit code its handle reports.
fn orphaned_in_a_forked_copy() -> Option<i32> {
    let mut exits = start(End::Exit(7));
    kill_fork_server();
    assert!(exits.process.is_alive());
    exits.release.write_all(&[1]).unwrap();
    let _ = exits.process.join();
    exits.process.exitcode()
}

#[test]
fn a_forked_copy_adopts_the_children_of_its_own_dead_fork_server() {
    let _s = serial();
    let _w = Watchdog::new("a_forked_copy_adopts_the_children_of_its_own_dead_fork_server", LIMIT);
    // This process launches a fork server first; the copy must not take it (or its keeper) for its own.
    let p = get_context(StartMethod::ForkServer).process(|x: u32| x + 1, (1,)).start().unwrap();
    assert_eq!(p.join().unwrap(), 2);
    let copy = get_context(StartMethod::Fork).process(orphaned_in_a_forked_copy, ()).start().unwrap();
    let code = copy.join().unwrap();
    if adopts() {
        // The copy's own server has a keeper, which reaped the child and reported how it ended.
        assert_eq!(code, Some(7));
    } else {
        assert_eq!(code, Some(255));
    }
    #[cfg(target_os = "linux")]
    assert_eq!(zombie_children(), Vec::<u32>::new());
}

/// The process is no subreaper (the keeper is): a daemon that a shell started by `Command`
/// leaves behind goes to init (or whichever subreaper is above this process), not to this
/// process, where it would stay a zombie that no one waits for.
#[cfg(target_os = "linux")]
#[test]
fn orphans_of_other_code_are_not_adopted() {
    let _s = serial();
    let _w = Watchdog::new("orphans_of_other_code_are_not_adopted", LIMIT);
    let p = get_context(StartMethod::ForkServer).process(|x: u32| x + 1, (1,)).start().unwrap();
    assert_eq!(p.join().unwrap(), 2);
    let mut flag: libc::c_int = -1;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one int through the pointer, which is live.
    assert_eq!(unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut flag as *mut libc::c_int) }, 0);
    assert_eq!(flag, 0, "the program made itself a subreaper");

    let out = std::process::Command::new("sh")
        .args(["-c", "sleep 600 </dev/null >/dev/null 2>&1 & echo $!"])
        .output()
        .unwrap();
    let daemon: u32 = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
    let parent = parent_of(daemon);
    // SAFETY: kill takes plain integers; the daemon is alive (sleeping) and not reaped by anyone.
    unsafe { libc::kill(daemon as i32, libc::SIGKILL) };
    assert_ne!(parent, std::process::id(), "the orphaned daemon was adopted by this process");
}

/// Linux: the keeper killed while its server serves on costs nothing (the server reports codes);
/// with the server killed after it, the children fall back to the portable way.
#[cfg(target_os = "linux")]
#[test]
fn a_dead_keeper_costs_nothing_while_its_server_serves() {
    let _s = serial();
    let _w = Watchdog::new("a_dead_keeper_costs_nothing_while_its_server_serves", LIMIT);
    // Only a server that forks children of its own has a keeper.
    if !adopts() || direct() {
        return;
    }
    let mut first = start(End::Exit(7));
    let server = proc_core::fork_server_pid().unwrap();
    let keeper = parent_of(server);
    // Neither is this process' child, so neither can be left a zombie of it.
    assert_ne!(keeper, std::process::id());
    assert_ne!(parent_of(keeper), std::process::id());
    kill_and_wait(keeper);

    // The server serves on and reports its children's codes.
    let mut second = start(End::Exit(8));
    assert_eq!(proc_core::fork_server_pid(), Some(server));
    first.release.write_all(&[1]).unwrap();
    assert_eq!(first.process.join().unwrap_err().exit_code(), Some(7));
    second.release.write_all(&[1]).unwrap();
    assert_eq!(second.process.join().unwrap_err().exit_code(), Some(8));
    assert_eq!(zombie_children(), Vec::<u32>::new());

    // Without keeper and server, a child's code is what its report implies.
    let mut third = start(End::Exit(9));
    kill_fork_server();
    assert!(third.process.is_alive());
    third.release.write_all(&[1]).unwrap();
    let e = third.process.join().unwrap_err();
    assert_eq!(third.process.exitcode(), Some(255), "{e}");
    let mut fourth = start(End::Return(4));
    fourth.release.write_all(&[1]).unwrap();
    assert_eq!(fourth.process.join().unwrap(), 4);
    assert_eq!(zombie_children(), Vec::<u32>::new());
}

/// Linux with glibc: the fork server's children are this process' own, and so is the server
/// (which has no keeper); the server's death leaves them this process' children.
#[cfg(target_os = "linux")]
#[test]
fn the_fork_servers_children_are_this_process_own() {
    let _s = serial();
    let _w = Watchdog::new("the_fork_servers_children_are_this_process_own", LIMIT);
    if !direct() {
        // Another C library, or the second run with a keeper.
        assert!(!adopts() || std::env::var_os(common::forkserver::CLONE_PARENT_ENV).is_some());
        return;
    }
    let me = std::process::id();
    let mut child = start(End::Exit(7));
    let server = proc_core::fork_server_pid().unwrap();
    assert_eq!(parent_of(server), me);
    assert_eq!(parent_of(child.process.pid()), me);
    kill_and_wait(server);
    assert_eq!(proc_core::fork_server_pid(), None);
    assert_eq!(parent_of(child.process.pid()), me);
    child.release.write_all(&[1]).unwrap();
    assert_eq!(child.process.join().unwrap_err().exit_code(), Some(7));
    assert_eq!(zombie_children(), Vec::<u32>::new());
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
