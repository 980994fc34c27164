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

/// Whether the real exit codes of a dead fork server's children are known: on Linux (without
/// `force-portable`) they are either this process' own children ([`direct`]) or adopted by the
/// server's keeper.
pub fn adopts() -> bool {
    proc_core::backend() == "linux"
}

/// The variable that, set to `0`, makes the fork server fork children of its own (with a keeper)
/// where it would fork this process' (see `proc_core`'s fork server).
pub const CLONE_PARENT_ENV: &str = "MULTIPROC_FORKSERVER_CLONE_PARENT";

/// Whether the fork server's children are this process' own (Linux with glibc, unless
/// [`CLONE_PARENT_ENV`] says otherwise): the server is this process' child then, and has no
/// keeper. Starts a server if none runs.
#[cfg(target_os = "linux")]
pub fn direct() -> bool {
    let p = get_context(StartMethod::ForkServer).process(|x: u32| x + 1, (1,)).start().unwrap();
    assert_eq!(p.join().unwrap(), 2);
    let server = proc_core::fork_server_pid().unwrap();
    parent_of(server) == std::process::id()
}

/// Where the fork server's children are this process' own: runs the other tests of this test
/// binary again in a new process whose fork server forks children of its own, with a keeper
/// (`CLONE_PARENT_ENV=0`), so that that way is tested too. `me` is the calling test's name, which
/// that run skips.
#[cfg(target_os = "linux")]
pub fn rerun_with_a_keeper(me: &str) {
    if std::env::var_os(CLONE_PARENT_ENV).is_some() || !direct() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CLONE_PARENT_ENV, "0")
        .args(["--test-threads=1", "--skip", me])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "with a keeper: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The run ran tests (a filter that matched nothing would pass too).
    assert!(stdout.contains(" passed;") && !stdout.contains(" 0 passed;"), "{stdout}");
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
