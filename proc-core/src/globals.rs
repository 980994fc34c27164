//! Process-wide state: who this process is, its children, its helpers; and exit-time cleanup.
//!
//! # The process runtime's import circle
//!
//! This module, `process`, `start/{mod, fork, forkserver, spawn}`, `shm/tracker` and `child/run`
//! import each other, and must: they are one runtime around the state here. The state owns the
//! parent's records of its children (`process::Shared`), the fork-server connection
//! (`start::forkserver::ForkServer`) and the tracker's pipe; those records and start methods lock
//! this state to list, reap and start children; and a child's main (`child/run`) records its
//! identity here and waits for its own children at the end. Cutting the circle would mean
//! type-erasing the records the state holds (trait objects or callbacks in place of `Shared` and
//! `ForkServer`): an indirection on every start and reap that buys nothing, since no module outside
//! the circle would depend on less. Everything below the circle stays a leaf or a layer:
//! `sys`, `codec`, `error`, `wire`, `child/{entry, role, bootstrap}`, `handle`, `target`,
//! `start/method`; `child/dispatch` and `info` sit above it.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use crate::handle::ReleaseOnFork;
use crate::process::Shared;
use crate::start::forkserver::ForkServer;
use crate::start::method::StartMethod;

/// Who this process is, in Python's terms.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    pub(crate) name: String,
    /// Python's `_identity`: `[]` for the main process, `[1]` for its first child, `[1, 2]` for
    /// that child's second child.
    pub(crate) ident: Vec<u32>,
    pub(crate) daemon: bool,
}

/// The process that started this one.
#[derive(Clone, Debug)]
pub(crate) struct Parent {
    pub(crate) pid: u32,
    pub(crate) name: String,
    /// This process' end of the control socket; it reads as closed once the parent is gone.
    pub(crate) ctl: Option<Arc<OwnedFd>>,
}

/// Who this process is and who started it. Kept apart from [`Globals`], whose lock is held
/// while children start, so that `current_process()` works anywhere, even in a tracing layer that
/// runs while a start holds that lock. Lock order: `Globals`, then `Who`.
#[derive(Debug)]
pub(crate) struct Who {
    pub(crate) identity: Identity,
    pub(crate) parent: Option<Parent>,
}

impl Who {
    pub(crate) fn name(&self) -> String {
        if self.identity.ident.is_empty() && self.identity.name.is_empty() {
            "MainProcess".to_owned()
        } else {
            self.identity.name.clone()
        }
    }
}

/// The process-wide state: who this process is, and the rest. Aligned so that it never straddles
/// two pages (it is far smaller than this alignment): a child writes both parts as it takes its
/// identity, and a fork-server child copies each page it writes.
#[repr(C, align(1024))]
struct State {
    who: RwLock<Who>,
    globals: Mutex<Globals>,
}

static STATE: State = State {
    who: RwLock::new(Who {
        identity: Identity { name: String::new(), ident: Vec::new(), daemon: false },
        parent: None,
    }),
    globals: Mutex::new(Globals {
        alive_release: None,
        ctl_release: None,
        alive: None,
        children: Vec::new(),
        started: 0,
        method: None,
        forkserver: None,
        tracker: None,
        warned_fork: false,
    }),
};

const _: () = assert!(std::mem::size_of::<State>() <= 1024);

pub(crate) fn who() -> RwLockReadGuard<'static, Who> {
    STATE.who.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn who_mut() -> RwLockWriteGuard<'static, Who> {
    STATE.who.write().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
pub(crate) struct Globals {
    /// Keeps the alive pipe out of children made by a plain `fork` (dropped before it).
    alive_release: Option<ReleaseOnFork>,
    /// Keeps this process' end of its control socket (held in [`Who`]'s parent record, never
    /// closed but by `forget_parent_state`) out of children made by a plain `fork`, so that such a
    /// copy, should it return from the target too, cannot send a second report.
    ctl_release: Option<ReleaseOnFork>,
    /// The write end of this process' alive pipe (its parent's sentinel), if it has one.
    pub(crate) alive: Option<OwnedFd>,
    /// Children started and not yet reaped.
    pub(crate) children: Vec<Arc<Shared>>,
    /// How many children this process started (names and identities count from 1).
    pub(crate) started: u32,
    pub(crate) method: Option<StartMethod>,
    pub(crate) forkserver: Option<ForkServer>,
    /// The write end of the resource tracker's pipe.
    pub(crate) tracker: Option<Arc<OwnedFd>>,
    /// Whether the fork-with-threads warning was printed.
    pub(crate) warned_fork: bool,
}

/// Locks the process-wide state. A panic while it was held does not make it unusable.
pub(crate) fn lock() -> MutexGuard<'static, Globals> {
    STATE.globals.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Globals {
    /// Replaces (closing) this process' alive pipe; a plain `fork` from here on lets go of it in
    /// the child (see [`ReleaseOnFork`]).
    pub(crate) fn set_alive(&mut self, alive: Option<OwnedFd>) {
        // The old pipe is unlisted before it closes.
        self.alive_release = None;
        self.alive_release = alive.as_ref().map(|fd| ReleaseOnFork::new(fd.as_fd()));
        self.alive = alive;
    }

    /// Records this process' end of its control socket (see `ctl_release`).
    pub(crate) fn set_ctl(&mut self, ctl: &OwnedFd) {
        self.ctl_release = Some(ReleaseOnFork::new(ctl.as_fd()));
    }

    /// Forgets children that have ended, reaping them (and a fork server inherited through `fork`).
    pub(crate) fn reap_finished(&mut self) {
        crate::start::forkserver::forget_foreign_server(self);
        self.children.retain(|c| c.poll_alive());
    }

    /// In a child made by fork: drop what belongs to the parent without closing or waiting on it.
    ///
    /// The parent's children are the parent's: their control sockets are closed here (so that
    /// they see their parent's end when the parent ends) and their records are leaked, never
    /// dropped, so no descriptor number is closed twice. The same goes for the parent's fork
    /// server connection and its own control socket and alive pipe.
    pub(crate) fn forget_parent_state(&mut self, who: &mut Who) {
        for child in std::mem::take(&mut self.children) {
            child.unlist_ctl();
            // SAFETY: the record is leaked below, so nothing else closes this number.
            unsafe { proc_os::fd::close_raw(child.ctl_raw()) };
            std::mem::forget(child);
        }
        if let Some(server) = self.forkserver.take() {
            server.forget_in_child();
        }
        self.ctl_release = None;
        if let Some(parent) = who.parent.take() {
            if let Some(ctl) = parent.ctl {
                // SAFETY: the Arc is leaked below, so nothing else closes this number.
                unsafe { proc_os::fd::close_raw(ctl.as_raw_fd()) };
                std::mem::forget(ctl);
            }
        }
        self.set_alive(None);
        self.started = 0;
    }
}

/// Records the identity of a child process (called first thing in every child).
pub(crate) fn become_child(
    identity: Identity,
    parent: Parent,
    alive: Option<OwnedFd>,
    tracker: Option<Arc<OwnedFd>>,
) {
    let mut g = lock();
    if let Some(ctl) = &parent.ctl {
        g.set_ctl(ctl);
    }
    let mut who = who_mut();
    who.identity = identity;
    who.parent = Some(parent);
    drop(who);
    g.set_alive(alive);
    if tracker.is_some() {
        g.tracker = tracker;
    }
}

/// Registers the exit-time cleanup once per process.
pub(crate) fn register_atexit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        extern "C" fn at_exit() {
            shutdown_children();
            crate::shm::tracker::purge_at_exit();
        }
        proc_os::child::at_exit(at_exit);
    });
}

/// Python's exit rule: terminate daemon children, then wait for every child.
pub(crate) fn shutdown_children() {
    let children = std::mem::take(&mut lock().children);
    if children.is_empty() {
        // The common end of a child: nothing to wait for, and no pid to look up.
        return;
    }
    let me = proc_os::pid();
    for child in children.iter().filter(|c| c.daemon && c.owner_pid == me) {
        if child.poll_alive() {
            let _ = child.signal(libc::SIGTERM);
        }
    }
    for child in children.iter().filter(|c| c.owner_pid == me) {
        if let Err(e) = child.wait_ended(None::<Instant>) {
            tracing::debug!(pid = child.pid(), error = %e, "could not wait for a child at exit");
        }
    }
}
