//! The resource tracker: a helper process that unlinks named shared memory left behind.
//!
//! A process starts the tracker when it first starts a child or creates a named segment, so that
//! every process of a program shares one tracker: children receive its pipe with their bootstrap
//! (or inherit it through fork). A segment created in a child thus outlives the child, as in
//! Python, and is unlinked only when the whole program has ended without unlinking it. Each creation writes `R <name>\n` to the pipe
//! and each unlink `U <name>\n` (a line is shorter than `PIPE_BUF`, so writes never interleave).
//! When every process holding the pipe has exited, the tracker reads end-of-file, unlinks the names
//! still registered with a warning on stderr, and exits. It ignores SIGINT and SIGTERM so that a
//! Ctrl-C or a terminate aimed at the program cannot stop the cleanup.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use crate::globals;
use crate::sys;

/// Registers a segment this process created.
pub(crate) fn register(name: &str) {
    send(&format!("R {name}\n"));
}

/// Unregisters a segment that was unlinked.
pub(crate) fn unregister(name: &str) {
    send(&format!("U {name}\n"));
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
    let Some(fd) = fd else { return };
    let n = sys::write_all(fd.as_fd(), line.as_bytes());
    if let Err(e) = n {
        tracing::warn!(error = %e, "the resource tracker is gone; segments may leak on a crash");
    }
}

fn launch() -> std::io::Result<std::os::fd::OwnedFd> {
    if crate::child::ensure_ready().is_err() {
        return Err(std::io::Error::other("no child dispatcher in this binary"));
    }
    let (r, w) = sys::pipe()?;
    let pid = crate::start::spawn::exec_role("tracker", r).map_err(std::io::Error::other)?;
    tracing::debug!(pid, "started the resource tracker");
    Ok(w)
}

/// The tracker role.
pub(crate) fn serve() -> i32 {
    sys::set_signal_ignored(libc::SIGINT, true);
    sys::set_signal_ignored(libc::SIGTERM, true);
    // SAFETY: we own no Rust object for descriptor 0; it is only duplicated.
    let input = match sys::dup_cloexec(unsafe { BorrowedFd::borrow_raw(0) }, 3) {
        Ok(fd) => std::fs::File::from(fd),
        Err(_) => return 1,
    };
    let _ = sys::dev_null_onto(0);
    let mut live: Vec<String> = Vec::new();
    for line in BufReader::new(input).lines() {
        let Ok(line) = line else { break };
        match line.split_once(' ') {
            Some(("R", name)) => live.push(name.to_owned()),
            Some(("U", name)) => {
                if let Some(i) = live.iter().position(|n| n == name) {
                    live.swap_remove(i);
                }
            }
            _ => {}
        }
    }
    for name in live {
        let Ok(cname) = std::ffi::CString::new(name.clone()) else { continue };
        let _ = sys::shm_unlink(&cname);
        let _ = writeln!(
            std::io::stderr(),
            "multiproc: resource tracker: unlinked leaked shared memory {name} (its creator exited without unlinking it)"
        );
    }
    0
}
