//! What the pool's handle and the supervisor share: the backlog of submitted jobs, the mode, the
//! counters, the live `IMap`s, and the doorbell submitters ring while the supervisor sleeps.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::job::Job;
use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Running,
    Closed,
    Terminating,
}

/// What the pool's handle and the supervisor share.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    /// Set while the supervisor sleeps: submitters ring the bell.
    pub(super) sleeping: AtomicBool,
    bell_out: UnixStream,
    pub(super) bell_in: UnixStream,
    next_id: AtomicU64,
    /// Jobs in the backlog (a hint the supervisor reads without the lock).
    pub(crate) queued: AtomicUsize,
    pub(crate) counters: Counters,
    /// `IMap`s whose input is not exhausted: they may still submit after `close`. One entry per
    /// `IMap`, the thread that owns it (an `IMap` is not `Send`).
    pub(crate) live_imaps: Mutex<Vec<std::thread::ThreadId>>,
}

/// What the pool has done so far (see [`crate::Stats`]).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) submitted: AtomicU64,
    pub(crate) succeeded: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) workers_lost: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) workers_started: AtomicU64,
}

pub(crate) struct State {
    pub(crate) backlog: VecDeque<(u64, Job)>,
    pub(crate) mode: Mode,
    /// Set when the initializer failed: the pool cannot run tasks.
    pub(crate) broken: Option<Error>,
}

impl Shared {
    pub(crate) fn new() -> std::io::Result<Self> {
        let (bell_out, bell_in) = UnixStream::pair()?;
        bell_out.set_nonblocking(true)?;
        bell_in.set_nonblocking(true)?;
        Ok(Shared {
            state: Mutex::new(State { backlog: VecDeque::new(), mode: Mode::Running, broken: None }),
            sleeping: AtomicBool::new(false),
            bell_out,
            bell_in,
            next_id: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            counters: Counters::default(),
            live_imaps: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues jobs for the workers (all or none). An `IMap` (`from_imap`) may go on submitting
    /// after `close`, as its input was given before.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after `close` or `terminate`; the initializer's error when it failed.
    pub(crate) fn submit(&self, jobs: impl IntoIterator<Item = Job>, from_imap: bool) -> Result<(), Error> {
        {
            let mut state = self.lock();
            if let Some(e) = &state.broken {
                return Err(e.clone());
            }
            if state.mode == Mode::Terminating || state.mode == Mode::Closed && !from_imap {
                return Err(Error::Closed);
            }
            for job in jobs {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                state.backlog.push_back((id, job));
                self.counters.submitted.fetch_add(1, Ordering::Relaxed);
            }
            self.queued.store(state.backlog.len(), Ordering::SeqCst);
        }
        self.ring();
        Ok(())
    }

    /// Sets the mode (never back to running, never from terminating to closed).
    pub(crate) fn set_mode(&self, mode: Mode) {
        {
            let mut state = self.lock();
            if state.mode != Mode::Terminating {
                state.mode = mode;
            }
        }
        // Always wake the supervisor: it must see the new mode.
        let _ = (&self.bell_out).write(&[1]);
    }

    /// How many `IMap`s may still submit.
    pub(crate) fn imaps_live(&self) -> usize {
        self.live_imaps.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether this thread owns an `IMap` that may still submit.
    pub(crate) fn imap_live_here(&self) -> bool {
        let me = std::thread::current().id();
        self.live_imaps.lock().unwrap_or_else(PoisonError::into_inner).contains(&me)
    }

    /// Counts an `IMap` of this thread as live.
    pub(crate) fn imap_started(&self) {
        self.live_imaps.lock().unwrap_or_else(PoisonError::into_inner).push(std::thread::current().id());
    }

    /// An `IMap` of this thread will submit no more.
    pub(crate) fn imap_ended(&self) {
        {
            let me = std::thread::current().id();
            let mut live = self.live_imaps.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(pos) = live.iter().position(|t| *t == me) {
                live.swap_remove(pos);
            }
        }
        // Submitted with SeqCst ordering after the change: a sleeping supervisor is rung.
        std::sync::atomic::fence(Ordering::SeqCst);
        self.ring();
    }

    /// Wakes the supervisor if it sleeps.
    pub(crate) fn ring(&self) {
        if self.sleeping.load(Ordering::SeqCst) {
            // A full bell is rung already.
            let _ = (&self.bell_out).write(&[1]);
        }
    }

    /// Sleeps until the bell rings (a submission, a change of mode) or `timeout` passed: how an
    /// engine that runs the tasks elsewhere ([`crate::remote::Engine`]) waits.
    pub(crate) fn sleep_on_bell(&self, timeout: std::time::Duration) {
        self.sleeping.store(true, Ordering::SeqCst);
        let nothing_new = {
            let state = self.lock();
            state.backlog.is_empty() && state.mode == Mode::Running
        };
        if nothing_new {
            use std::os::fd::AsFd;
            let deadline = std::time::Instant::now().checked_add(timeout);
            if proc_os::fd::wait_readable(&[self.bell_in.as_fd()], deadline).is_err() {
                std::thread::sleep(timeout);
            }
        }
        self.sleeping.store(false, Ordering::SeqCst);
        self.silence();
    }

    /// Empties the doorbell (the supervisor is awake).
    pub(super) fn silence(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.bell_in).read(&mut buf), Ok(n) if n > 0) {}
    }
}
