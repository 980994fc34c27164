//! The child's main: a child made by any start method takes its identity, runs its target,
//! reports, waits for its own children and exits here.
//!
//! This module stays in the crate's one import circle, the process runtime (see `globals`): a child
//! records its identity in the process-wide state and waits for its own children at the end, and
//! the fork and fork-server start methods, which that state's records name, run a child's main
//! here.

use std::any::Any;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};

use super::bootstrap::{send_report, Bootstrap, Report};
use crate::globals::{self, Identity, Parent};
use crate::wire::{FrameReader, Read};

/// The message and location of the last panic on this process, captured by our hook.
static LAST_PANIC: Mutex<Option<(String, Option<String>)>> = Mutex::new(None);

/// Installs the hook that records a panic's message and location for the report. Once per
/// process; a fork-server child inherits the server's.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(install_panic_hook_now);
}

/// Runs `f` (the target) and turns its outcome into a report and an exit code.
pub(crate) fn run_target(
    f: impl FnOnce() -> std::result::Result<(Vec<u8>, Vec<OwnedFd>), String>,
) -> (Report, Vec<OwnedFd>, i32) {
    install_panic_hook();
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok((bytes, fds))) => (Report::Returned(bytes), fds, 0),
        Ok(Err(message)) => {
            eprintln!("multiproc: child process could not run its target: {message}");
            (Report::Failed(message), Vec::new(), 1)
        }
        Err(payload) => {
            let captured = LAST_PANIC.lock().unwrap_or_else(PoisonError::into_inner).take();
            let (message, location) = captured.unwrap_or_else(|| (payload_message(&*payload), None));
            (Report::Panicked { message, location }, Vec::new(), 1)
        }
    }
}

/// The end of every child: report, wait for its own children, flush, exit.
pub(crate) fn finish(ctl: &OwnedFd, report: Report, fds: Vec<OwnedFd>, code: i32) -> ! {
    send_report(ctl, &report, &fds);
    drop(fds);
    globals::shutdown_children();
    flush_stdio();
    proc_os::child::exit_now(code)
}

/// Flushes what the target left in standard output's buffer. (Standard error has no buffer:
/// flushing it would only take its lock.)
pub(crate) fn flush_stdio() {
    let _ = std::io::stdout().flush();
}

/// A spawned child: the control socket came in on descriptor 0.
pub(crate) fn run_spawned() -> i32 {
    // SAFETY: dup on descriptor 0 takes plain integers; we own no Rust object for descriptor 0.
    let ctl = match proc_os::fd::dup_cloexec(unsafe { std::os::fd::BorrowedFd::borrow_raw(0) }, 3) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("multiproc: child has no control socket: {e}");
            return 1;
        }
    };
    // stdin of a child is /dev/null, as in Python.
    let _ = proc_os::fd::dev_null_onto(0);
    run_bootstrapped(ctl)
}

/// Decodes a bootstrap message; `Err`: what the child reports instead of running a target.
pub(crate) fn decode_bootstrap(body: &[u8]) -> Result<Bootstrap, String> {
    crate::codec::from_bytes(body).map_err(|e| format!("bad bootstrap message: {e}"))
}

/// Runs the target described by a bootstrap message: a spawned child's, read from its control
/// socket. Its tracker's pipe, if it has one, is the frame's last descriptor.
pub(crate) fn run_bootstrap(ctl: OwnedFd, body: &[u8], mut fds: Vec<OwnedFd>) -> i32 {
    let boot = decode_bootstrap(body);
    let tracker = match &boot {
        Ok(b) if b.has_tracker && fds.len() > b.args_fds as usize => fds.pop().map(Arc::new),
        _ => None,
    };
    run_decoded(ChildCtl::new(ctl), boot, fds, None, tracker)
}

/// A child's end of its control socket, held twice: by its parent's record (`Parent::ctl`, which
/// `parent_process()` hands out) and by its main, which reports on it. A fork-server child gets
/// both from the server, which makes them before the fork: cloning an `Arc` in the child would
/// write its count, and so copy a page of the heap it shares with the server.
pub(crate) struct ChildCtl {
    parent: Arc<OwnedFd>,
    main: Arc<OwnedFd>,
}

impl ChildCtl {
    pub(crate) fn new(ctl: OwnedFd) -> Self {
        let parent = Arc::new(ctl);
        ChildCtl { main: parent.clone(), parent }
    }

    /// The descriptor's number.
    pub(crate) fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&*self.main)
    }
}

/// Runs the target described by a decoded bootstrap message, with the tracker's pipe the caller
/// found (used only if the bootstrap says the parent has a tracker). `alive` is the alive pipe of
/// a fork-server child that is its parent's own (the server hands it over apart from the frame's
/// descriptors, so that the child frees no list of them); a spawned child's comes in the frame.
///
/// A fork-server child gets all of it ready in the memory it inherits from the server, which
/// decodes the bootstrap and wraps the descriptors before it forks: so that a child whose target
/// allocates nothing allocates nothing at all, and never copies the heap pages it shares with the
/// server (nor runs the allocator's code, nor the decoder's).
pub(crate) fn run_decoded(
    ChildCtl { parent, main: ctl }: ChildCtl,
    boot: Result<Bootstrap, String>,
    mut fds: Vec<OwnedFd>,
    alive: Option<OwnedFd>,
    tracker: Option<Arc<OwnedFd>>,
) -> i32 {
    let boot = match boot {
        Ok(b) => b,
        Err(message) => finish(&ctl, Report::Failed(message), Vec::new(), 1),
    };
    let tracker = if boot.has_tracker { tracker } else { None };
    // The argument descriptors come first, then the event channel's and the alive pipe's, when
    // there are. Any more are not the parent's: closed. The two are taken off the end, so that
    // the arguments' descriptors keep their list.
    let with_events = boot.log_level != 0;
    let args_fds = (boot.args_fds as usize).min(fds.len());
    fds.truncate(args_fds + usize::from(with_events) + usize::from(boot.has_alive));
    let alive = if boot.has_alive && fds.len() > args_fds { fds.pop() } else { alive };
    let events = if with_events && fds.len() > args_fds { fds.pop() } else { None };
    // The logging set-up reads the name before the identity takes it (no copy of it is made).
    let setup = crate::logging::child_started(&boot.name, boot.init, boot.log_level, events);
    globals::become_child(
        Identity { name: boot.name, ident: boot.ident, daemon: boot.daemon },
        Parent { pid: boot.parent_pid, name: boot.parent_name, ctl: Some(parent) },
        alive,
        tracker,
    );
    if boot.daemon {
        watch_parent(ctl.clone());
    }
    let entry = boot.entry;
    let args = boot.args;
    let (report, out_fds, code) = run_target(move || setup?.run(|| (entry.resolve()?)(args, fds)));
    finish(&ctl, report, out_fds, code)
}

/// A daemon child ends when its parent does: a thread waits for the end of the control socket,
/// which only the parent holds open (the parent never writes after the bootstrap).
pub(crate) fn watch_parent(ctl: Arc<OwnedFd>) {
    let spawned = std::thread::Builder::new().name("multiproc-parent-watch".into()).spawn(move || {
        // Data from the parent would be a protocol error; then wait for the hang-up itself.
        if let Ok(false) = proc_os::socket::peer_closed(ctl.as_fd(), true) {
            let _ = proc_os::socket::wait_hangup(ctl.as_fd());
        }
        // The parent is gone: end as Python's daemons do when their parent ends.
        flush_stdio();
        proc_os::child::exit_now(1);
    });
    if let Err(e) = spawned {
        eprintln!("multiproc: cannot watch the parent of a daemon process: {e}");
    }
}

/// Reads the bootstrap from `ctl` and runs the target (a spawned child).
fn run_bootstrapped(ctl: OwnedFd) -> i32 {
    let (body, fds) = match FrameReader::default().read(ctl.as_fd(), true) {
        Ok(Read::Frame(body, fds)) => (body, fds),
        Ok(_) => return 1, // The parent went away before sending anything.
        Err(e) => {
            eprintln!("multiproc: child could not read its bootstrap: {e}");
            return 1;
        }
    };
    run_bootstrap(ctl, &body, fds)
}

fn install_panic_hook_now() {
    let default = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let message = payload_message(info.payload());
        let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        *LAST_PANIC.lock().unwrap_or_else(PoisonError::into_inner) = Some((message, location));
        default(info);
    }));
}

fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}
