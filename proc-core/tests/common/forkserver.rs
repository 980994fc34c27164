//! Children of the fork server that block until released, and what `/proc` says about processes:
//! for the tests of a fork server that dies (`process_orphans.rs`, `forkserver_faults.rs`).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use proc_core::handle::Fd;
use proc_core::{get_context, Process, StartMethod};

/// How a child ends once released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum End {
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

/// A fork-server child that blocks until a byte is written on `release`.
pub struct Child {
    pub process: Process<u32>,
    pub release: std::fs::File,
    pub end: End,
}

impl Drop for Child {
    fn drop(&mut self) {
        if std::thread::panicking() && self.process.exitcode().is_none() {
            // A failed test must not leave a child running forever.
            let _ = self.process.kill();
        }
    }
}

/// Starts a fork-server child that blocks until released, and waits until it runs.
pub fn start(end: End) -> Child {
    let (mut ready_r, ready_w) = UnixStream::pair().unwrap();
    let (release_r, release_w) = UnixStream::pair().unwrap();
    let args = (Fd::from(OwnedFd::from(ready_w)), Fd::from(OwnedFd::from(release_r)), end);
    let process = get_context(StartMethod::ForkServer).process(wait_then_end, args).start().unwrap();
    let mut byte = [0u8; 1];
    ready_r.read_exact(&mut byte).unwrap();
    Child { process, release: std::fs::File::from(OwnedFd::from(release_w)), end }
}

/// Whether this backend gives the fork server a keeper that reaps the server's orphans (Linux
/// without `force-portable`), so their real exit codes are known.
pub fn adopts() -> bool {
    proc_core::backend() == "linux"
}

/// The state and parent of process `pid` from `/proc/<pid>/stat`, or `None` once it is gone.
#[cfg(target_os = "linux")]
pub fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// The parent of process `pid`, which must exist (Linux: read from `/proc`).
#[cfg(target_os = "linux")]
pub fn parent_of(pid: u32) -> u32 {
    state_and_parent(pid).unwrap().1
}

/// The children of this process that are zombies (Linux: read from `/proc`).
#[cfg(target_os = "linux")]
pub fn zombie_children() -> Vec<u32> {
    let mut zombies = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let children = std::fs::read_to_string(task.unwrap().path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace() {
            let pid = pid.parse().unwrap();
            if matches!(state_and_parent(pid), Some(('Z', _))) {
                zombies.push(pid);
            }
        }
    }
    zombies
}
