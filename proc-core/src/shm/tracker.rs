//! The resource tracker: a helper process that unlinks named shared memory left behind.
//!
//! A process starts the tracker when it first starts a child or creates a named segment, so that
//! every process of a program shares one tracker: children receive its pipe with their bootstrap
//! (or inherit it through fork). A segment created in a child thus outlives the child, as in
//! Python, and is unlinked only when the whole program has ended without unlinking it.
//!
//! The protocol is one line per event, each shorter than `PIPE_BUF` so that writes never
//! interleave:
//!
//! - `R <name> <pid>`: process `pid` created segment `name`; `U <name>`: it was unlinked.
//! - `G <name> <group>`: the segment belongs to `group`, the internal segments of one owner (a
//!   queue's large messages and later rings); `P <group>`: the owner is done with them, unlink
//!   every segment of the group now, quietly. An owner whose peers were killed mid-message (a
//!   pool that terminates its workers) thus releases even the segments only they knew.
//! - `T <pid>`: multiproc terminated process `pid` (`Process::terminate` or `kill`), so a segment
//!   it leaves was not leaked by a creator that exited on its own, and the warning says so.
//! - `D <path>`: a directory a multiproc crate made for the program (a manager's socket): removed
//!   with its files at the end if still there (registered before it is made, so that a process
//!   killed while setting it up leaves nothing).
//!
//! A segment is registered before it is created, for the same reason; so a registered name may
//! never have come to exist, and only names that the tracker does unlink are warned about.
//!
//! When every process holding the pipe has exited, the tracker reads end-of-file, unlinks the names
//! still registered, warns on stderr (naming the creator and what became of it), and exits. It
//! runs in a session of its own and ignores SIGHUP, SIGINT and SIGTERM, so that neither a Ctrl-C,
//! nor a terminate aimed at the program, nor the terminal closing at the program's end (`script`,
//! an SSH session, a terminal window) can stop the cleanup.
//!
//! Part of the process runtime's import circle, which stays on purpose: see `globals`.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex, PoisonError};

use crate::globals;

/// Registers a segment this process created.
pub(crate) fn register(name: &str) {
    send(&format!("R {name} {}\n", std::process::id()));
}

/// Unregisters a segment that was unlinked.
pub(crate) fn unregister(name: &str) {
    send(&format!("U {name}\n"));
}

/// Notes that multiproc terminated (or killed) process `pid`.
pub(crate) fn terminated(pid: u32) {
    send_if_running(&format!("T {pid}\n"));
}

/// A new group id for [`group_segment`] (random, never 0).
#[doc(hidden)]
pub fn new_group() -> u64 {
    proc_os::random_u64().max(1)
}

/// Puts segment `name`, which this process created, in `group`: [`purge_group`] unlinks it with
/// the group's other segments. For the multiproc crates' own segments (a queue's large messages).
#[doc(hidden)]
pub fn group_segment(name: &str, group: u64) {
    let name = name.trim_start_matches('/');
    send_if_running(&format!("G /{name} {group}\n"));
}

/// Has the tracker remove directory `path` (its files, then itself; nothing below a
/// subdirectory) once the whole program has ended, if it is still there: for a directory that a
/// multiproc crate makes and a process of its own normally removes (a manager's socket
/// directory), which a process killed at the wrong moment would leave. Call it before making the
/// directory. A path with a line break is not registered.
#[doc(hidden)]
pub fn remove_dir_at_end(path: &std::path::Path) {
    match path.to_str() {
        Some(p) if !p.contains('\n') && path.is_absolute() => send(&format!("D {p}\n")),
        _ => tracing::debug!(path = %path.display(), "not registered with the resource tracker"),
    }
}

/// Has the tracker unlink every segment of `group` still registered, whoever created it: the
/// group's owner is done with them (its peers were killed, or it was the last to leave).
#[doc(hidden)]
pub fn purge_group(group: u64) {
    send_if_running(&format!("P {group}\n"));
}

/// Groups to purge when this program's main process exits (see [`purge_group_at_exit`]).
static AT_EXIT: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// Has the tracker unlink every segment of `group` when this program's main process exits,
/// after its exit-time cleanup ended its children (daemons terminated, the others waited for):
/// no process of the program uses the group then. For an owner that let go of its segments while
/// other processes still used them (a queue dropped while its daemon workers ran on). Does
/// nothing in a child process, whose siblings may go on using the group.
#[doc(hidden)]
pub fn purge_group_at_exit(group: u64) {
    if globals::who().parent.is_none() {
        let mut groups = AT_EXIT.lock().unwrap_or_else(PoisonError::into_inner);
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
}

/// The main process' exit, once its children have ended: purges the groups let go of.
pub(crate) fn purge_at_exit() {
    if globals::who().parent.is_some() {
        return;
    }
    let groups = std::mem::take(&mut *AT_EXIT.lock().unwrap_or_else(PoisonError::into_inner));
    for group in groups {
        purge_group(group);
    }
}

/// Starts the tracker if this process has none, so that the children it starts share it.
/// Failure is not fatal: segments may then outlive a crashed creator.
pub(crate) fn ensure_running(g: &mut globals::Globals) {
    if g.tracker.is_none() {
        match launch() {
            Ok(fd) => g.tracker = Some(Arc::new(fd)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the resource tracker; segments may leak on a crash")
            }
        }
    }
}

fn send(line: &str) {
    let fd = {
        let mut g = globals::lock();
        ensure_running(&mut g);
        g.tracker.clone()
    };
    write_line(fd, line);
}

/// Sends `line` to the tracker if this process has one (it starts none).
fn send_if_running(line: &str) {
    let fd = globals::lock().tracker.clone();
    write_line(fd, line);
}

fn write_line(fd: Option<Arc<std::os::fd::OwnedFd>>, line: &str) {
    let Some(fd) = fd else { return };
    if let Err(e) = proc_os::fd::write_all(fd.as_fd(), line.as_bytes()) {
        tracing::warn!(error = %e, "the resource tracker is gone; segments may leak on a crash");
    }
}

fn launch() -> std::io::Result<std::os::fd::OwnedFd> {
    if crate::child::role::ensure_ready().is_err() {
        return Err(std::io::Error::other("no child dispatcher in this binary"));
    }
    let (r, w) = proc_os::fd::pipe()?;
    let pid = crate::start::spawn::exec_role("tracker", r).map_err(std::io::Error::other)?;
    tracing::debug!(pid, "started the resource tracker");
    Ok(w)
}

/// A registered segment.
struct Segment {
    /// The process that created it (0: not said).
    creator: u32,
    group: Option<u64>,
}

/// What the tracker knows.
#[derive(Default)]
struct Registry {
    live: HashMap<String, Segment>,
    terminated: HashSet<u32>,
    /// Directories to remove at the end (`D`).
    dirs: Vec<std::path::PathBuf>,
}

impl Registry {
    fn apply(&mut self, line: &str) {
        let Some((op, rest)) = line.split_once(' ') else { return };
        // A name may hold spaces: a number, where there is one, is the last word.
        let (arg, number) = match rest.rsplit_once(' ') {
            Some((name, n)) if matches!(op, "R" | "G") => match n.parse::<u64>() {
                Ok(n) => (name, Some(n)),
                Err(_) => (rest, None),
            },
            _ => (rest, None),
        };
        match op {
            "R" => {
                let creator = number.and_then(|p| u32::try_from(p).ok()).unwrap_or(0);
                self.live.insert(arg.to_owned(), Segment { creator, group: None });
            }
            "U" => {
                self.live.remove(arg);
            }
            "G" => {
                if let (Some(group), Some(segment)) = (number, self.live.get_mut(arg)) {
                    segment.group = Some(group);
                }
            }
            "P" => {
                let Ok(group) = arg.parse::<u64>() else { return };
                let names: Vec<String> = self
                    .live
                    .iter()
                    .filter(|(_, s)| s.group == Some(group))
                    .map(|(n, _)| n.clone())
                    .collect();
                for name in names {
                    self.live.remove(&name);
                    let _ = unlink(&name);
                }
            }
            "D" => {
                let dir = std::path::PathBuf::from(rest);
                if dir.is_absolute() && !self.dirs.contains(&dir) {
                    self.dirs.push(dir);
                }
            }
            "T" => {
                if let Ok(pid) = arg.parse::<u32>() {
                    self.terminated.insert(pid);
                }
            }
            _ => {}
        }
    }

    /// Why a segment was left, for the warning.
    fn why(&self, segment: &Segment) -> String {
        let what = if segment.group.is_some() { "a queue's large message, " } else { "" };
        match segment.creator {
            0 => format!("{what}its creator exited without unlinking it"),
            pid if self.terminated.contains(&pid) => {
                format!(
                    "{what}created by process {pid}, which multiproc terminated before it could unlink it"
                )
            }
            pid => format!("{what}created by process {pid}, which exited without unlinking it"),
        }
    }
}

/// Unlinks `name`; false if there was nothing to unlink (a name registered ahead of a creation
/// that never happened, or one unlinked by someone else).
fn unlink(name: &str) -> bool {
    std::ffi::CString::new(name).is_ok_and(|cname| proc_os::shm::shm_unlink(&cname).is_ok())
}

/// Removes directory `dir`'s files, then `dir` (not what lies below a subdirectory); false if
/// it was not there.
fn remove_dir(dir: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| !t.is_dir()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
    true
}

/// The tracker role.
pub(crate) fn serve() -> i32 {
    // Out of the program's session and process group: the terminal's hangup and the signals
    // aimed at the program's group do not reach it.
    let _ = proc_os::child::new_session();
    proc_os::signal::set_signal_ignored(libc::SIGHUP, true);
    proc_os::signal::set_signal_ignored(libc::SIGINT, true);
    proc_os::signal::set_signal_ignored(libc::SIGTERM, true);
    // SAFETY: we own no Rust object for descriptor 0; it is only duplicated.
    let input = match proc_os::fd::dup_cloexec(unsafe { BorrowedFd::borrow_raw(0) }, 3) {
        Ok(fd) => std::fs::File::from(fd),
        Err(_) => return 1,
    };
    let _ = proc_os::fd::dev_null_onto(0);
    let mut registry = Registry::default();
    for line in BufReader::new(input).lines() {
        let Ok(line) = line else { break };
        registry.apply(&line);
    }
    // Unlink everything first: the warnings may not reach a terminal that is gone.
    let dirs_left: Vec<_> = registry.dirs.iter().filter(|d| remove_dir(d)).cloned().collect();
    let mut left: Vec<(String, Segment)> = registry.live.drain().collect();
    left.sort_by(|a, b| a.0.cmp(&b.0));
    // Only what was there is reported: a name registered ahead of its creation may never have
    // come to exist (its creator killed in between).
    left.retain(|(name, _)| unlink(name));
    let mut stderr = std::io::stderr().lock();
    for (name, segment) in &left {
        let why = registry.why(segment);
        let _ = writeln!(stderr, "multiproc: resource tracker: unlinked leaked shared memory {name} ({why})");
    }
    for dir in dirs_left {
        let _ = writeln!(stderr, "multiproc: resource tracker: removed leaked directory {}", dir.display());
    }
    0
}

#[cfg(test)]
mod test;
