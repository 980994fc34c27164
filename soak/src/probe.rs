//! What the soak measures from outside: descriptors, memory, processes (by the marker variable in
//! their environment), zombies, `/dev/shm`; and a SIGKILL that cannot hit a stranger.

use std::collections::BTreeSet;
use std::path::Path;

/// The environment variable every process of a soak run inherits: `<run id>-<round>`.
pub(crate) const MARKER: &str = "MULTIPROC_SOAK";

/// The prefixes of the shared-memory names multiproc creates (as `cargo xtask ci` checks).
pub(crate) const SHM_PREFIXES: [&str; 3] = ["mp_", "mpa", "mpt_"];

/// This process's open descriptors.
pub(crate) fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// This process's resident set, in KiB.
pub(crate) fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf takes a plain integer.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096) / 1024
}

/// A process seen in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Seen {
    pub(crate) pid: u32,
    pub(crate) ppid: u32,
    pub(crate) state: char,
    pub(crate) comm: String,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({}, state {}, parent {})", self.pid, self.comm, self.state, self.ppid)
    }
}

/// One process's `/proc/<pid>/stat`: command, state, parent.
pub(crate) fn stat(pid: u32) -> Option<Seen> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(Seen { pid, ppid, state, comm })
}

/// Whether process `pid`'s environment holds `MARKER=value` (exactly, or `value` as a prefix
/// when `prefix`).
pub(crate) fn has_marker(pid: u32, value: &str, prefix: bool) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { return false };
    let want = format!("{MARKER}={value}");
    environ.split(|b| *b == 0).any(|var| {
        if prefix {
            var.starts_with(want.as_bytes())
        } else {
            var == want.as_bytes()
        }
    })
}

/// Every process but this one whose marker is `value` (or starts with it, when `prefix`).
pub(crate) fn marked(value: &str, prefix: bool) -> Vec<Seen> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| *pid != me && has_marker(*pid, value, prefix))
        .filter_map(stat)
        .collect()
}

/// The children of this process (by their parent field in `/proc`).
pub(crate) fn children() -> BTreeSet<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else { return BTreeSet::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(stat)
        .filter(|s| s.ppid == me)
        .map(|s| s.pid)
        .collect()
}

/// The multiproc names in the shared-memory directory.
pub(crate) fn shm_names() -> BTreeSet<String> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else { return BTreeSet::new() };
    dir.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| SHM_PREFIXES.iter().any(|p| n.starts_with(p)))
        .collect()
}

/// Sends SIGKILL to `pid` if, and only if, it carries marker `value`: a pidfd pins the process
/// between the check and the signal, so a recycled pid is never hit. Returns whether it was sent.
/// (Linux's pidfd calls; the whole module is Linux-only, said again here where they are used.)
#[cfg(target_os = "linux")]
pub(crate) fn kill_marked(pid: u32, value: &str) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: pidfd_open takes plain integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
    let Ok(fd) = i32::try_from(fd) else { return false };
    if fd < 0 {
        return false;
    }
    // SAFETY: `fd` was just returned by pidfd_open and belongs to no one else.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    if !has_marker(pid, value, false) {
        return false;
    }
    let raw_fd = std::os::fd::AsRawFd::as_raw_fd(&fd);
    // SAFETY: pidfd_send_signal takes a live descriptor, a signal number, a null info, no flags.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            raw_fd,
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    sent == 0
}

/// Whether `dir` is missing or empty.
pub(crate) fn dir_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}
