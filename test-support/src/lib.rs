//! Support for the multiproc crates' own tests: a watchdog, a lock that runs multi-process tests
//! one at a time, a way to run one test of the current binary in a fresh process, and values that
//! refuse to serialize or deserialize.
//!
//! A `publish = false` crate that the multiproc crates take as a dev-dependency: nothing here is
//! part of a published API.
#![warn(missing_docs)]

pub mod alloc;
pub mod capture;
#[cfg(feature = "tokio")]
mod runtimes;
#[cfg(feature = "tokio")]
pub use runtimes::runtimes;
pub mod scribble;

use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Aborts the whole test binary (and so fails the run) unless it is dropped within the limit:
/// a hung multi-process test must fail, not hang CI.
#[must_use]
#[derive(Debug)]
pub struct Watchdog {
    done: mpsc::Sender<()>,
}

impl Watchdog {
    /// Arms a watchdog for the test `name`.
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

/// Runs one `#[ignore]`d helper test of the current test binary in a fresh process, with extra
/// environment variables, and returns its output once every holder of its output pipes exited.
///
/// # Errors
///
/// The binary cannot be found or started.
pub fn run_helper(name: &str, envs: &[(&str, &str)]) -> std::io::Result<std::process::Output> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--exact", "--ignored", "--nocapture", "--test-threads=1", name]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output()
}

/// The path of example `name` of the package under test (`cargo test` builds examples).
///
/// # Errors
///
/// The test binary's path cannot be found.
pub fn example(name: &str) -> std::io::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let debug = exe.parent().and_then(|d| d.parent()).ok_or(std::io::ErrorKind::NotFound)?;
    Ok(debug.join("examples").join(name))
}

/// Runs `f` on a new thread and returns once that thread sleeps in the kernel (blocked in a wait,
/// say) or has ended, so that a test can act on a waiter that is really waiting. On Linux this
/// reads the thread's state from `/proc`; elsewhere it returns once the thread has started.
///
/// # Panics
///
/// The thread cannot be started.
pub fn spawn_until_asleep<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        #[cfg(target_os = "linux")]
        let tid = {
            // SAFETY: gettid has no preconditions.
            unsafe { libc::gettid() }
        };
        #[cfg(not(target_os = "linux"))]
        let tid = 0;
        let _ = tx.send(tid);
        f()
    });
    let tid = rx.recv().unwrap_or(0);
    #[cfg(target_os = "linux")]
    // No stat file: the thread has ended.
    while let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) {
        // The state follows the command name, which is in parentheses.
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
        if matches!(state, Some('S' | 'D' | 'Z' | 'X') | None) {
            break;
        }
        std::thread::yield_now();
    }
    let _ = tid;
    handle
}

/// The message of [`FailsToEncode`]'s refusal.
pub const ENCODE_REFUSAL: &str = "FailsToEncode refuses to serialize";

/// The message of [`FailsToDecode`]'s refusal.
pub const DECODE_REFUSAL: &str = "FailsToDecode refuses to deserialize";

/// A value whose `Serialize` always fails with [`ENCODE_REFUSAL`] (it deserializes from a unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailsToEncode;

impl serde::Serialize for FailsToEncode {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(ENCODE_REFUSAL))
    }
}

impl<'de> serde::Deserialize<'de> for FailsToEncode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <() as serde::Deserialize>::deserialize(d).map(|()| FailsToEncode)
    }
}

/// A value that serializes as a unit and whose `Deserialize` always fails with [`DECODE_REFUSAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailsToDecode;

impl serde::Serialize for FailsToDecode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> serde::Deserialize<'de> for FailsToDecode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <() as serde::Deserialize>::deserialize(d)?;
        Err(serde::de::Error::custom(DECODE_REFUSAL))
    }
}

/// `error`'s message followed by those of its sources, `: `-separated: what a user who prints
/// the whole chain sees.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Spins (yielding the CPU) until `f` holds: waiting for a state another process reaches (a
/// waiter counted, a lock taken), not a sleep. Bound it with a [`Watchdog`].
pub fn until(mut f: impl FnMut() -> bool) {
    while !f() {
        std::thread::yield_now();
    }
}

/// Kills process `pid` (not necessarily this process' child: a fork server or its keeper) with
/// SIGKILL and waits until it is dead, without reaping it.
///
/// # Panics
///
/// If the process does not exist or cannot be signalled.
pub fn kill_and_wait(pid: u32) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: pidfd_open takes plain integers and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just returned by pidfd_open and is owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: kill takes plain integers; the pidfd keeps the pid from being recycled unseen.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: `pfd` is a live pollfd for the duration of the call.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, -1) }, 1);
    }
    #[cfg(not(target_os = "linux"))]
    {
        // No pidfd here: the process is gone once init (launchd) reaped it. Bounded by the test's
        // watchdog.
        // SAFETY: kill takes plain integers.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        // SAFETY: signal 0 only checks that the process exists.
        while unsafe { libc::kill(pid as i32, 0) } == 0 {
            std::thread::yield_now();
        }
    }
}

/// The names of the multiproc segments in `/dev/shm` (`mp_*`), less those that a process of
/// another process group has mapped: segments of other programs that run on the machine meanwhile
/// (another test run, a benchmark, each started as a job of its own) come and go without counting
/// as this test's. (A process group, not the tree of parents: a fork server and its children are
/// no descendants of the test, but they are in its group.) Linux; elsewhere none are listed.
pub fn shm_names() -> std::collections::BTreeSet<String> {
    let all: std::collections::BTreeSet<String> = std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("mp_"))
                .collect()
        })
        .unwrap_or_default();
    if all.is_empty() {
        return all;
    }
    let others = mapped_by_other_groups();
    all.into_iter().filter(|n| !others.contains(n)).collect()
}

/// The `mp_*` segment names that processes of other process groups map (read from `/proc`).
fn mapped_by_other_groups() -> std::collections::BTreeSet<String> {
    let group = |pid: &str| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command name: state, ppid, pgrp.
        stat.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()
    };
    let mine = group("self");
    let mut names = std::collections::BTreeSet::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return names };
    for pid in dir.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
        if !pid.bytes().all(|b| b.is_ascii_digit()) || group(&pid) == mine {
            continue;
        }
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else { continue };
        names.extend(
            maps.lines()
                .filter_map(|l| {
                    l.split_once("/dev/shm/").map(|(_, n)| n.trim_end_matches(" (deleted)").to_owned())
                })
                .filter(|n| n.starts_with("mp_")),
        );
    }
    names
}
