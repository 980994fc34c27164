//! A fork server that dies does not orphan the children it forked: they keep their state, can be
//! signalled and report how they ended; the dead server is reaped and no zombie is left.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{serial, Watchdog};
use proc_core::handle::Fd;
use proc_core::{get_context, Process, StartMethod};

const LIMIT: Duration = Duration::from_secs(120);

/// How a child ends once released.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
enum End {
    Return(u32),
    Exit(i32),
    /// Never released: terminated by the parent.
    Wait,
}

/// Says it runs (one byte on `ready`), waits for a byte on `release` (or its end), then ends as `end` says.
fn wait_then_end(ready: Fd, release: Fd, end: End) -> u32 {
    std::fs::File::from(ready.into_owned()).write_all(&[1]).unwrap();
    let mut byte = [0u8; 1];
    let _ = std::fs::File::from(release.into_owned()).read(&mut byte);
    match end {
        End::Return(v) => v,
        End::Exit(code) => std::process::exit(code),
        End::Wait => loop {
            std::thread::park();
        },
    }
}

struct Child {
    process: Process<u32>,
    release: std::fs::File,
}

impl Drop for Child {
    fn drop(&mut self) {
        if std::thread::panicking() && self.process.exitcode().is_none() {
            // A failed test must not leave a child running forever (before the fix, the API could
            // not reach it). It is not reaped yet, so its pid is still its own.
            // SAFETY: kill takes plain integers.
            unsafe { libc::kill(self.process.pid() as i32, libc::SIGKILL) };
        }
    }
}

fn start(end: End) -> Child {
    let (mut ready_r, ready_w) = UnixStream::pair().unwrap();
    let (release_r, release_w) = UnixStream::pair().unwrap();
    let args = (Fd::from(OwnedFd::from(ready_w)), Fd::from(OwnedFd::from(release_r)), end);
    let process = get_context(StartMethod::ForkServer).process(wait_then_end, args).start().unwrap();
    let mut byte = [0u8; 1];
    ready_r.read_exact(&mut byte).unwrap();
    Child { process, release: std::fs::File::from(OwnedFd::from(release_w)) }
}

/// Kills this process' fork server and waits until it is dead, without reaping it.
fn kill_fork_server() -> u32 {
    let server = proc_core::fork_server_pid().unwrap();
    // SAFETY: kill takes plain integers; the server is our child.
    assert_eq!(unsafe { libc::kill(server as i32, libc::SIGKILL) }, 0);
    let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
    // SAFETY: `info` is a live siginfo_t that waitid fills; WNOWAIT leaves the server waitable.
    let ret = unsafe { libc::waitid(libc::P_PID, server, info.as_mut_ptr(), libc::WEXITED | libc::WNOWAIT) };
    assert_eq!(ret, 0);
    server
}

/// The children of this process that are zombies (Linux: read from `/proc`).
#[cfg(target_os = "linux")]
fn zombie_children() -> Vec<u32> {
    let mut zombies = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let children = std::fs::read_to_string(task.unwrap().path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
            if state == Some("Z") {
                zombies.push(pid.parse().unwrap());
            }
        }
    }
    zombies
}

/// Whether this backend makes the server's orphans this process' children (Linux without
/// `force-portable`), so their real exit codes are known.
fn adopts() -> bool {
    proc_core::backend() == "linux"
}

#[test]
fn children_of_a_dead_fork_server_keep_their_state() {
    let _s = serial();
    let _w = Watchdog::new("children_of_a_dead_fork_server_keep_their_state", LIMIT);
    let mut returns = start(End::Return(5));
    let mut exits = start(End::Exit(7));
    let terminated = start(End::Wait);
    let server = kill_fork_server();

    // The dead server is reaped at once and never named again.
    assert_eq!(proc_core::fork_server_pid(), None);
    // SAFETY: waitpid with WNOHANG on a reaped pid only reports ECHILD.
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
        // Linux: adopted by this process, which reaps them and knows how they ended.
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

/// In a copy made by `fork` of a process that is a subreaper already (the kernel does not pass
/// that on): starts a fork-server child, kills this copy's own server, lets the child exit with
/// 7, and returns the exit code its handle reports.
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
    // This process launches a fork server first, so it is a subreaper (where the backend adopts).
    let p = get_context(StartMethod::ForkServer).process(|x: u32| x + 1, (1,)).start().unwrap();
    assert_eq!(p.join().unwrap(), 2);
    let copy = get_context(StartMethod::Fork).process(orphaned_in_a_forked_copy, ()).start().unwrap();
    let code = copy.join().unwrap();
    if adopts() {
        // The copy made itself a subreaper for its own server: it reaped the child and knows how
        // it ended (before, it took itself for one and lost the child to this process).
        assert_eq!(code, Some(7));
    } else {
        assert_eq!(code, Some(255));
    }
    #[cfg(target_os = "linux")]
    assert_eq!(zombie_children(), Vec::<u32>::new());
}
