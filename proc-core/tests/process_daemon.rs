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

/// Starts a daemon that holds `keep`, writes its fork server's pid (0 if none) to `keep`, then
/// blocks until killed.
fn middle(method: String, keep: Fd) {
    let method: StartMethod = method.parse().unwrap();
    let file = std::fs::File::from(std::os::fd::AsFd::as_fd(&keep).try_clone_to_owned().unwrap());
    let daemon = get_context(method).process(hold, (keep,)).daemon(true).start().unwrap();
    std::mem::forget(daemon);
    let server = proc_core::fork_server_pid().unwrap_or(0);
    std::io::Write::write_all(&mut &file, &server.to_le_bytes()).unwrap();
    drop(file);
    loop {
        std::thread::park();
    }
}

/// Waits until process `pid` (not a child of ours) has exited: a pidfd becomes readable then.
#[cfg(target_os = "linux")]
fn wait_exit_of(pid: u32) {
    // SAFETY: pidfd_open takes plain integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        // Already gone (ESRCH), or a kernel without pidfds: nothing to wait for.
        return;
    }
    // SAFETY: `fd` was just returned by pidfd_open and is owned by no one else.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    let mut pfd = libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&fd), events: libc::POLLIN, revents: 0 };
    // SAFETY: one live pollfd; bounded by the watchdog.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, -1) }, 1);
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
        let mut server = [0u8; 4];
        r.read_exact(&mut server).unwrap();
        let server = u32::from_le_bytes(server);
        parent.kill().unwrap();
        assert_eq!(parent.join().unwrap_err().signal(), Some(libc::SIGKILL));
        // End of file only once every write end is closed: the daemon's included.
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{m}");
        // The fork server of the killed parent exits too.
        #[cfg(target_os = "linux")]
        if server != 0 {
            wait_exit_of(server);
        }
        let _ = server;
    }
}

/// As `middle`, but once the daemon runs this process also forks a bare copy of itself (plain
/// `fork`, which waits for a byte on `release`), then writes a byte to `ready` and blocks until killed.
fn middle_with_a_bare_fork(method: String, keep: Fd, ready: Fd, release: Fd) {
    let method: StartMethod = method.parse().unwrap();
    let daemon = get_context(method).process(hold, (keep,)).daemon(true).start().unwrap();
    std::mem::forget(daemon);
    // SAFETY: the copy only reads a pipe and calls _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut byte = [0u8; 1];
        let _ = std::fs::File::from(release.into_owned()).read(&mut byte);
        // SAFETY: ends the copy without running this process' exit handlers.
        unsafe { libc::_exit(0) };
    }
    std::io::Write::write_all(&mut std::fs::File::from(ready.into_owned()), &[1]).unwrap();
    loop {
        std::thread::park();
    }
}

#[test]
fn a_bare_fork_of_the_parent_does_not_keep_its_daemons_alive() {
    let _s = serial();
    let _w = Watchdog::new("a_bare_fork_of_the_parent_does_not_keep_its_daemons_alive", LIMIT);
    for m in methods() {
        let (mut keep_r, keep_w) = std::io::pipe().unwrap();
        let (mut ready_r, ready_w) = std::io::pipe().unwrap();
        let (release_r, mut release_w) = std::io::pipe().unwrap();
        let args = (
            m.to_string(),
            Fd::from(OwnedFd::from(keep_w)),
            Fd::from(OwnedFd::from(ready_w)),
            Fd::from(OwnedFd::from(release_r)),
        );
        let parent = get_context(StartMethod::Spawn).process(middle_with_a_bare_fork, args).start().unwrap();
        let mut byte = [0u8; 1];
        ready_r.read_exact(&mut byte).unwrap();
        parent.kill().unwrap();
        assert_eq!(parent.join().unwrap_err().signal(), Some(libc::SIGKILL));
        // The daemon sees its parent's end although the bare copy, which inherited the parent's
        // end of the daemon's control socket, still runs: end of file on what the daemon held.
        let mut rest = Vec::new();
        keep_r.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{m}");
        // Then the copy goes: end of file once it has exited.
        std::io::Write::write_all(&mut release_w, &[1]).unwrap();
        ready_r.read_to_end(&mut rest).unwrap();
    }
}

fn twice(x: u32) -> u32 {
    2 * x
}

/// Starts a child through its fork server, then forks a bare copy of itself (plain `fork`). The
/// copy checks that it gets a fork server of its own, writes 1 (or 0) to `ready`, and waits for a
/// byte on `release`. The original writes its server's pid to `ready` first and blocks until killed.
fn serve_then_bare_fork(ready: Fd, release: Fd) {
    let child = get_context(StartMethod::ForkServer).process(twice, (2,)).start().unwrap();
    assert_eq!(child.join().unwrap(), 4);
    let server = proc_core::fork_server_pid().unwrap();
    let mut ready = std::fs::File::from(ready.into_owned());
    std::io::Write::write_all(&mut ready, &server.to_le_bytes()).unwrap();
    // SAFETY: this process runs no other threads of its own; the copy uses the library as a
    // fresh process would.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut ok = proc_core::fork_server_pid().is_none();
        let child = get_context(StartMethod::ForkServer).process(twice, (3,)).start().unwrap();
        ok &= child.join().unwrap() == 6;
        ok &= proc_core::fork_server_pid().is_some_and(|p| p != server);
        let _ = std::io::Write::write_all(&mut ready, &[u8::from(ok)]);
        let mut byte = [0u8; 1];
        let _ = std::fs::File::from(release.into_owned()).read(&mut byte);
        // SAFETY: ends the copy without running this process' exit handlers.
        unsafe { libc::_exit(0) };
    }
    loop {
        std::thread::park();
    }
}

#[test]
fn a_bare_fork_gets_a_fork_server_of_its_own_and_does_not_keep_the_parents() {
    let _s = serial();
    let _w = Watchdog::new("a_bare_fork_gets_a_fork_server_of_its_own_and_does_not_keep_the_parents", LIMIT);
    let (mut ready_r, ready_w) = std::io::pipe().unwrap();
    let (release_r, mut release_w) = std::io::pipe().unwrap();
    let args = (Fd::from(OwnedFd::from(ready_w)), Fd::from(OwnedFd::from(release_r)));
    let parent = get_context(StartMethod::Spawn).process(serve_then_bare_fork, args).start().unwrap();
    let mut server = [0u8; 4];
    ready_r.read_exact(&mut server).unwrap();
    let server = u32::from_le_bytes(server);
    let mut ok = [0u8; 1];
    ready_r.read_exact(&mut ok).unwrap();
    assert_eq!(ok[0], 1, "the copy used its parent's fork server");
    parent.kill().unwrap();
    assert_eq!(parent.join().unwrap_err().signal(), Some(libc::SIGKILL));
    // The killed parent's server exits although the copy, which inherited its connection, runs on.
    #[cfg(target_os = "linux")]
    wait_exit_of(server);
    let _ = server;
    std::io::Write::write_all(&mut release_w, &[1]).unwrap();
    let mut rest = Vec::new();
    ready_r.read_to_end(&mut rest).unwrap();
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
