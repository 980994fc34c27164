//! What the parent keeps about a started child ([`Shared`], shared by its [`Process`](super::Process)
//! handle and the registry of children), how it learns that the child ended ([`Watch`], the
//! [`Sentinel`]), and a fork-server child whose server died ([`Stray`]).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::child::bootstrap::{decode_report, report_error, Report};
use crate::error::{Error, ErrorKind, Result};
use crate::handle::ReleaseOnFork;
use crate::start::method::StartMethod;
use proc_os::child::ExitStatus;

use crate::wire::{FrameReader, Read};

/// A descriptor that becomes readable when its process ends; see [`Process::sentinel`](super::Process::sentinel).
#[derive(Clone, Debug)]
pub struct Sentinel(Arc<OwnedFd>);

impl Sentinel {
    /// Whether the process has ended (the sentinel is readable now).
    ///
    /// # Errors
    ///
    /// `poll(2)` failed.
    pub fn is_ready(&self) -> Result<bool> {
        proc_os::fd::is_ready(self.0.as_fd()).map_err(|e| Error::io("cannot poll a process sentinel", e))
    }
}

impl AsFd for Sentinel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for Sentinel {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// How many times to retry `waitpid` when the alive pipe closed before the exit is visible.
const REAP_SPINS: u32 = 1000;

/// How often to look for the exit of a child whose alive pipe closed early.
const STALE_POLL: Duration = Duration::from_millis(10);

/// How long a join waits on the sentinel alone for a fork-server child of this process whose pid
/// is not known yet, before it looks for the pid again (see [`Shared::exit_fd`]).
const PID_WAIT: Duration = Duration::from_millis(10);

/// How long a join of a child started by fork or by the fork server looks for the child's end
/// before it sleeps, yielding its CPU between looks (see [`Shared::look_before_sleeping`]).
const JOIN_SPIN: Duration = Duration::from_micros(250);

/// What tells a join that a direct child ended (see [`Shared::exit_fd`]).
#[derive(Clone, Copy)]
enum ExitFd<'a> {
    /// A process descriptor: ready at the child's exit.
    Pidfd(BorrowedFd<'a>),
    /// A fork-server child whose pid has not come yet: its sentinel alone, for a while.
    PidPending,
    /// The sentinel and the control socket (served children, and where the OS has no process
    /// descriptors).
    Sentinel,
}

/// How the parent learns that a child ended.
#[derive(Debug)]
pub(crate) enum Watch {
    /// A direct child (spawn, fork, and the fork server's children where they are this process'
    /// own): the sentinel is the read end of a pipe only the child holds open; reap it with
    /// `waitpid`.
    Direct,
    /// A child of the fork server's own: the sentinel is the status pipe, where the server (or, once the
    /// server died, its keeper) writes the exit code once it reaped the child. If the pipe closes
    /// without a code, the child becomes a stray orphan (see [`State::stray`]).
    Served,
}

/// A fork-server child whose status pipe closed without an exit code (its server and the
/// server's keeper died while it ran): identified by pid and start time, as init may recycle its
/// pid; it ends when its control socket closes, onto which its sentinel now refers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stray {
    start_time: Option<u64>,
}

/// A child's pid: known at once for direct children, read from the fork server's pid pipe when
/// first needed for its children.
#[derive(Debug)]
pub(crate) enum Pid {
    Known(u32),
    Pending(OwnedFd),
}

/// What the parent keeps about a started child; shared by its `Process` handle and the registry.
#[derive(Debug)]
pub(crate) struct Shared {
    pid: std::sync::OnceLock<u32>,
    pid_pipe: Mutex<Option<OwnedFd>>,
    /// A direct child's process descriptor, opened when a join first finds its pid known
    /// (`None` inside: the OS has none to give).
    pidfd: std::sync::OnceLock<Option<OwnedFd>>,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    pub(crate) method: StartMethod,
    /// The process that started the child; only it can wait for or signal the child.
    pub(crate) owner_pid: u32,
    /// Keeps `ctl` out of children made by a plain `fork` (a daemon child watches it for its
    /// parent's end); dropped before it.
    ctl_release: ReleaseOnFork,
    ctl: OwnedFd,
    sentinel: Arc<OwnedFd>,
    watch: Watch,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    reader: FrameReader,
    ctl_done: bool,
    report: Option<Report>,
    report_fds: Option<Vec<OwnedFd>>,
    read_error: Option<String>,
    status: Option<ExitStatus>,
    /// The fork server died before reporting this child's exit code.
    status_lost: bool,
    /// The alive pipe closed while the child runs on (it called exec or closed descriptors).
    stale_sentinel: bool,
    /// The fork server (and its keeper) died while this child ran.
    stray: Option<Stray>,
}

impl Shared {
    pub(crate) fn new(
        pid: Pid,
        name: String,
        daemon: bool,
        method: StartMethod,
        ctl: OwnedFd,
        sentinel: OwnedFd,
        watch: Watch,
    ) -> Self {
        let (known, pipe) = match pid {
            Pid::Known(p) => (std::sync::OnceLock::from(p), None),
            Pid::Pending(fd) => (std::sync::OnceLock::new(), Some(fd)),
        };
        Shared {
            pid: known,
            pid_pipe: Mutex::new(pipe),
            pidfd: std::sync::OnceLock::new(),
            name,
            daemon,
            method,
            owner_pid: proc_os::pid(),
            ctl_release: ReleaseOnFork::new(ctl.as_fd()),
            ctl,
            sentinel: Arc::new(sentinel),
            watch,
            state: Mutex::new(State::default()),
        }
    }

    /// The pid (0 if the fork server could not create the process).
    pub(crate) fn pid(&self) -> u32 {
        if self.owner_pid != proc_os::pid() {
            // A copy inherited by fork must not consume the pid pipe the real owner reads.
            return self.known_pid().unwrap_or(0);
        }
        *self.pid.get_or_init(|| {
            let pipe = self.pid_pipe.lock().unwrap_or_else(PoisonError::into_inner).take();
            pipe.and_then(|p| crate::start::forkserver::read_pid(p.as_fd())).unwrap_or(0)
        })
    }

    /// The pid if it is known without waiting.
    pub(crate) fn known_pid(&self) -> Option<u32> {
        self.pid.get().copied()
    }

    /// The pid if it is known, or can be read from the fork server's pid pipe without waiting.
    fn pid_now(&self) -> Option<u32> {
        if let Some(pid) = self.known_pid() {
            return Some(pid);
        }
        let ready = match self.pid_pipe.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            Some(pipe) => proc_os::fd::is_ready(pipe.as_fd()).unwrap_or(true),
            None => true,
        };
        ready.then(|| self.pid())
    }

    /// How a join learns that this child ended. A direct child is waited for on a process
    /// descriptor where the OS has them (Linux): it is ready when the child has exited, which its
    /// report does not wake, nor a copy of its alive pipe that a descendant holds keep quiet. A
    /// fork-server child of this process (`Watch::Direct`, its pid still on its way) is waited
    /// for on its sentinel alone at first, for [`PID_WAIT`]: a child that ends sooner wakes its
    /// parent once, at its exit. Called under the state lock, before the child is reaped, so
    /// that its pid names it when the descriptor is opened.
    fn exit_fd(&self, st: &State) -> ExitFd<'_> {
        if !self.direct() || st.status.is_some() {
            return ExitFd::Sentinel;
        }
        let opened = match self.pidfd.get() {
            Some(opened) => opened,
            None => {
                let Some(pid) = self.pid_now() else { return ExitFd::PidPending };
                self.pidfd.get_or_init(|| {
                    // 0: the fork server never created it; its sentinel says so.
                    (pid != 0).then(|| proc_os::child::pidfd(pid)).and_then(|fd| {
                        fd.map_err(|e| tracing::debug!(pid, error = %e, "no process descriptor for a child"))
                            .ok()
                    })
                })
            }
        };
        opened.as_ref().map_or(ExitFd::Sentinel, |fd| ExitFd::Pidfd(fd.as_fd()))
    }

    pub(crate) fn sentinel(&self) -> Sentinel {
        Sentinel(self.sentinel.clone())
    }

    /// Takes the control socket off the fork list, before a forked copy closes it.
    pub(crate) fn unlist_ctl(&self) {
        self.ctl_release.unlist();
    }

    pub(crate) fn ctl_raw(&self) -> RawFd {
        self.ctl.as_raw_fd()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check_owner(&self) -> Result<()> {
        if self.owner_pid == proc_os::pid() {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::ForeignProcess))
        }
    }

    /// Reads whatever the child sent so far without blocking.
    fn pump_ctl(&self, st: &mut State) {
        while !st.ctl_done {
            match st.reader.read(self.ctl.as_fd(), false) {
                Ok(Read::Pending) => return,
                Ok(Read::Frame(body, mut fds)) => {
                    match decode_report(&body, &mut fds) {
                        Ok(r) => st.report = Some(r),
                        Err(e) => st.read_error = Some(e),
                    }
                    st.report_fds = Some(fds);
                    st.ctl_done = true;
                }
                Ok(Read::Eof) => st.ctl_done = true,
                // The child ended before reading all of its bootstrap: no report, as EOF.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => st.ctl_done = true,
                Err(e) => {
                    st.read_error = Some(format!("cannot read the result: {e}"));
                    st.ctl_done = true;
                }
            }
        }
    }

    /// Whether the child is watched as a direct child of this process (see [`Watch::Direct`]).
    fn direct(&self) -> bool {
        matches!(self.watch, Watch::Direct)
    }

    /// Records the exit status if the child has ended. Returns whether it has.
    fn try_reap(&self, st: &mut State) -> Result<bool> {
        self.try_reap_seen(st, false)
    }

    /// `try_reap`, where `sentinel_ready` says that a `poll` just found the sentinel readable (it
    /// stays so), so it need not be asked again.
    fn try_reap_seen(&self, st: &mut State, sentinel_ready: bool) -> Result<bool> {
        if st.status.is_some() {
            return Ok(true);
        }
        if st.stray.is_some() {
            return Ok(self.try_reap_stray(st));
        }
        let ready = sentinel_ready
            || proc_os::fd::is_ready(self.sentinel.as_fd())
                .map_err(|e| Error::io("cannot poll a child", e))?;
        let direct = self.direct();
        if !ready {
            if st.ctl_done && direct {
                // The child reported (or closed its control socket), so it is ending; but a
                // descendant that kept a copy of its alive pipe keeps the sentinel quiet. Look.
                let pid = self.pid();
                if pid == 0 {
                    return Ok(self.never_started(st));
                }
                st.status =
                    proc_os::child::waitpid(pid, false).map_err(|e| Error::io("cannot reap a child", e))?;
                if st.status.is_some() {
                    self.settle_sentinel();
                }
                return Ok(st.status.is_some());
            }
            return Ok(false);
        }
        match &self.watch {
            Watch::Direct => {
                // The alive pipe reads as closed once the child exited, or once it closed the pipe
                // itself while running on (it called exec, or closed its descriptors). Never block
                // here: the exit may lag the pipe by a moment, so retry briefly, then fall back to
                // polling (`stale_sentinel`). Reaping under the state lock means no signal can
                // reach a recycled pid.
                let pid = self.pid();
                if pid == 0 {
                    // The fork server could not fork it: its alive pipe closed with the request.
                    return Ok(self.never_started(st));
                }
                let spins = if st.stale_sentinel { 1 } else { REAP_SPINS };
                for _ in 0..spins {
                    st.status = proc_os::child::waitpid(pid, false)
                        .map_err(|e| Error::io("cannot reap a child", e))?;
                    if st.status.is_some() {
                        break;
                    }
                    std::thread::yield_now();
                }
                if st.status.is_none() {
                    st.stale_sentinel = true;
                }
            }
            Watch::Served => {
                let mut code = [0u8; 4];
                let n = proc_os::fd::read(self.sentinel.as_fd(), &mut code)
                    .map_err(|e| Error::io("cannot read a child's exit status", e))?;
                if n == 4 {
                    // A byte follows the code, so the sentinel stays readable from now on, as a
                    // sentinel of an ended process must.
                    st.status = Some(ExitStatus::from_exitcode(i32::from_le_bytes(code)));
                } else {
                    return Ok(self.server_died(st));
                }
            }
        }
        if st.status.is_some() {
            tracing::debug!(pid = self.pid(), name = %self.name, status = ?st.status, "child process ended");
            // Whatever the child sent is in the socket now.
            self.pump_ctl(st);
            st.ctl_done = true;
            if direct {
                self.settle_sentinel();
            }
        }
        Ok(st.status.is_some())
    }

    /// A direct child reaped: its sentinel must read as ready from now on, as an ended process'
    /// does. It may not yet when the child was found ended by its process descriptor: the fork
    /// server closes its own copy of the alive pipe right after the fork, which the child may
    /// outrun, and a descendant may hold a copy for long. The sentinel's number then refers to the
    /// process descriptor, ready for good.
    fn settle_sentinel(&self) {
        let Some(Some(pidfd)) = self.pidfd.get() else { return };
        if proc_os::fd::is_ready(self.sentinel.as_fd()).unwrap_or(true) {
            return;
        }
        if let Err(e) = proc_os::fd::dup_onto(pidfd.as_fd(), self.sentinel.as_raw_fd()) {
            tracing::debug!(error = %e, "cannot make the process descriptor the sentinel");
        }
    }

    /// The status pipe closed without an exit code: the fork server and its keeper died (or the
    /// server could not fork the child at all, or died right after). A child that runs on was
    /// reparented to init. Returns whether it has ended.
    fn server_died(&self, st: &mut State) -> bool {
        let pid = self.pid();
        if pid == 0 {
            return self.never_started(st);
        }
        // Reparented (to init, or to the keeper if the server died before telling it of the child):
        // the child runs on while its control socket is open.
        self.pump_ctl(st);
        if proc_os::socket::peer_closed(self.ctl.as_fd(), false).unwrap_or(true) {
            self.stray_ended(st);
            return true;
        }
        let start_time = proc_os::start_time(pid);
        if proc_os::socket::peer_closed(self.ctl.as_fd(), false).unwrap_or(true) {
            // It ended meanwhile: the start time may be another process'.
            self.stray_ended(st);
            return true;
        }
        tracing::debug!(pid, "a child of the dead fork server runs on as an orphan");
        st.stray = Some(Stray { start_time });
        // Its sentinel number now refers to the control socket, readable at the child's end.
        if let Err(e) = proc_os::fd::dup_onto(self.ctl.as_fd(), self.sentinel.as_raw_fd()) {
            // The sentinel stays readable for good: wait by polling instead.
            tracing::debug!(error = %e, "cannot make the control socket the sentinel");
            st.stale_sentinel = true;
        }
        false
    }

    /// The fork server never created the child (it could not fork, or died first): ended, its
    /// exit code lost. Returns true (ended).
    fn never_started(&self, st: &mut State) -> bool {
        st.status = Some(ExitStatus::Code(255));
        st.status_lost = true;
        self.pump_ctl(st);
        st.ctl_done = true;
        true
    }

    /// A stray orphan (see [`Stray`]): ended once its control socket closed.
    fn try_reap_stray(&self, st: &mut State) -> bool {
        self.pump_ctl(st);
        if !proc_os::socket::peer_closed(self.ctl.as_fd(), false).unwrap_or(true) {
            return false;
        }
        self.stray_ended(st);
        true
    }

    /// Records the end of a child whose exit status no one can tell (its parent, the server, and
    /// the keeper are gone): the code its report implies, or 255 (and a lost status) without one.
    fn stray_ended(&self, st: &mut State) {
        self.pump_ctl(st);
        st.ctl_done = true;
        st.status = Some(match st.report {
            Some(Report::Returned(_)) => ExitStatus::Code(0),
            Some(Report::Panicked { .. } | Report::Failed(_) | Report::Spilled { .. }) => ExitStatus::Code(1),
            None => {
                st.status_lost = true;
                ExitStatus::Code(255)
            }
        });
        tracing::debug!(pid = self.pid(), status = ?st.status, "an orphaned child ended");
    }

    /// Whether `pid` still names the child (for a stray orphan, whose pid init may recycle).
    fn still_the_child(&self, st: &State, pid: u32) -> bool {
        match st.stray {
            Some(Stray { start_time: Some(t) }) => proc_os::start_time(pid) == Some(t),
            // Its start time could not be read: the pid may be another process' by now.
            Some(Stray { start_time: None }) => false,
            None => true,
        }
    }

    /// Whether the child is still running (reaping it if not). Errors read as "not running".
    pub(crate) fn poll_alive(&self) -> bool {
        if self.owner_pid != proc_os::pid() {
            return false;
        }
        let mut st = self.lock();
        self.pump_ctl(&mut st);
        !self.try_reap(&mut st).unwrap_or(true)
    }

    pub(crate) fn exitcode(&self) -> Option<i32> {
        if self.owner_pid != proc_os::pid() {
            return None;
        }
        let mut st = self.lock();
        let _ = self.try_reap(&mut st);
        st.status.map(ExitStatus::exitcode)
    }

    pub(crate) fn signal(&self, signal: libc::c_int) -> Result<()> {
        self.check_owner()?;
        let mut st = self.lock();
        if self.try_reap(&mut st)? {
            return Ok(());
        }
        let pid = self.pid();
        if pid == 0 {
            // The fork server could not create it; its join reports why.
            return Ok(());
        }
        if !self.still_the_child(&st, pid) {
            return Ok(());
        }
        tracing::debug!(pid, signal = %crate::error::signal_name(signal), "signalling child process");
        let sent = proc_os::signal::kill(pid, signal);
        drop(st);
        if sent.is_ok() && (signal == libc::SIGTERM || signal == libc::SIGKILL) {
            // What it leaves behind, the resource tracker reports as terminated, not as leaked.
            crate::shm::tracker::terminated(pid);
        }
        match sent {
            // Already gone, not yet reported by the fork server.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            other => other.map_err(|e| Error::io("cannot signal a child", e)),
        }
    }

    /// For up to [`JOIN_SPIN`] (and not past `deadline`), looks whether a direct child started by
    /// fork or by the fork server has ended, yielding the CPU between looks, before the join
    /// sleeps. A short child joined at once (a no-op target ends some 100–200 µs after its
    /// start) then ends while its parent still runs: the parent is not woken from sleep, which on
    /// an idle CPU of a virtual machine costs tens of microseconds, and the child's end is seen
    /// within a look. Only where this thread may run on more than one CPU: on one, the child needs
    /// it (a yield gives it up, but to whatever else runs there too). A spawned child is not looked
    /// for: it takes milliseconds to start. The looks cost the join up to [`JOIN_SPIN`] of CPU
    /// time; `benches/src/bin/start_loop.rs` reports it.
    fn look_before_sleeping(&self, deadline: Option<Instant>) {
        if !self.direct() || self.method == StartMethod::Spawn || !proc_os::child::may_run_on_several_cpus() {
            return;
        }
        let spin_end = Instant::now() + JOIN_SPIN;
        let until = deadline.map_or(spin_end, |d| d.min(spin_end));
        // The sentinel is readable once the child has closed its alive pipe, at its exit (or
        // earlier, if it closed the pipe: the wait below sorts that out).
        while !proc_os::fd::is_ready(self.sentinel.as_fd()).unwrap_or(true) && Instant::now() < until {
            std::thread::yield_now();
        }
    }

    /// Waits until the child ended or `deadline` passed; reads what it sends meanwhile.
    ///
    /// Each round waits first (a `poll` returns at once for a child that has ended: its sentinel
    /// stays readable), then reads and reaps.
    pub(crate) fn wait_ended(&self, deadline: Option<Instant>) -> Result<bool> {
        self.check_owner()?;
        let direct = self.direct();
        let mut state = {
            let st = self.lock();
            if st.status.is_some() {
                drop(st);
                self.forget_ended();
                return Ok(true);
            }
            (!st.ctl_done, st.stale_sentinel, self.exit_fd(&st))
        };
        self.look_before_sleeping(deadline);
        loop {
            let (ctl_open, stale, exit) = state;
            // Wait without the lock, so another thread can signal the child meanwhile.
            let mut fds = Vec::with_capacity(2);
            let mut wake = deadline;
            let at_most = |wait: Duration| {
                let poll = Instant::now() + wait;
                Some(deadline.map_or(poll, |d| d.min(poll)))
            };
            match exit {
                ExitFd::Pidfd(fd) => fds.push(fd),
                ExitFd::PidPending => {
                    fds.push(self.sentinel.as_fd());
                    wake = at_most(PID_WAIT);
                }
                ExitFd::Sentinel => {
                    if stale || (!ctl_open && direct) {
                        // The sentinel is readable for good but the child runs on, or the child
                        // is done but the sentinel may stay quiet (see `try_reap`): poll for its
                        // exit.
                        wake = at_most(STALE_POLL);
                    }
                    if !stale {
                        fds.push(self.sentinel.as_fd());
                    }
                    // A report never blocks its child (a large one travels in memory), so the
                    // control socket needs watching only for a direct child, whose sentinel may
                    // stay quiet after its end (see `try_reap`). A served child's exit code alone
                    // ends the wait: one wake-up per child, and its report is whole by then.
                    if ctl_open && direct {
                        fds.push(self.ctl.as_fd());
                    }
                }
            }
            let ready = proc_os::fd::wait_readable(&fds, wake)
                .map_err(|e| Error::io("cannot wait for a child", e))?;
            // A ready process descriptor says the child has exited: reaping it is what is left.
            let first = ready.first().copied().unwrap_or(false);
            let ended_seen = match exit {
                ExitFd::Pidfd(_) | ExitFd::PidPending => first,
                ExitFd::Sentinel => !stale && first,
            };
            let mut st = self.lock();
            self.pump_ctl(&mut st);
            if self.try_reap_seen(&mut st, ended_seen)? {
                drop(st);
                self.forget_ended();
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            state = (!st.ctl_done, st.stale_sentinel, self.exit_fd(&st));
        }
    }

    /// Takes this ended child off the process's list of children (which `active_children` and
    /// the exit-time join walk), so that its descriptors close with its last handle.
    ///
    /// The end of a fork-server child is also when a server found dead is let go of: where the
    /// server is this process' child (its children are this process' own), so that a killed
    /// server is not left a zombie until the next start.
    fn forget_ended(&self) {
        let mut g = crate::globals::lock();
        g.children.retain(|c| !std::ptr::eq(&**c, self));
        if self.method == StartMethod::ForkServer {
            crate::start::forkserver::reap_dead_direct_server(&mut g);
        }
    }

    /// One look without waiting, for an async join: `None` once the child has ended and is reaped;
    /// else the descriptors whose readability may end the wait (sentinel, control socket) and
    /// whether the end must be polled for as well (no descriptor tells it).
    #[cfg(feature = "tokio")]
    pub(crate) fn look(&self) -> Result<Option<(Vec<OwnedFd>, bool)>> {
        self.check_owner()?;
        let dup =
            |fd: BorrowedFd<'_>| fd.try_clone_to_owned().map_err(|e| Error::io("cannot wait for a child", e));
        let (ctl_open, stale, direct, pid_pending) = {
            let mut st = self.lock();
            self.pump_ctl(&mut st);
            // As `wait_ended`: a direct child whose pid is known is watched on its pidfd alone, and
            // a ready pidfd means it has exited.
            let exit = self.exit_fd(&st);
            let seen = match exit {
                ExitFd::Pidfd(fd) => {
                    proc_os::fd::is_ready(fd).map_err(|e| Error::io("cannot poll a child", e))?
                }
                ExitFd::PidPending | ExitFd::Sentinel => false,
            };
            if self.try_reap_seen(&mut st, seen)? {
                drop(st);
                self.forget_ended();
                return Ok(None);
            }
            if let ExitFd::Pidfd(fd) = exit {
                return Ok(Some((vec![dup(fd)?], false)));
            }
            (!st.ctl_done, st.stale_sentinel, self.direct(), matches!(exit, ExitFd::PidPending))
        };
        let mut fds = Vec::with_capacity(3);
        if pid_pending {
            // The pid's arrival, after which the pidfd is watched instead.
            if let Some(pipe) = self.pid_pipe.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
                fds.push(dup(pipe.as_fd())?);
            }
        }
        if !stale {
            fds.push(dup(self.sentinel.as_fd())?);
        }
        if ctl_open && direct {
            fds.push(dup(self.ctl.as_fd())?);
        }
        Ok(Some((fds, stale || (!ctl_open && direct))))
    }

    /// The outcome of an ended child, as `join` returns it.
    pub(crate) fn result<R: DeserializeOwned>(&self) -> Result<R> {
        let mut st = self.lock();
        let status = st.status.unwrap_or(ExitStatus::Code(255));
        match &st.report {
            Some(Report::Returned(bytes)) => {
                let bytes = bytes.clone();
                let fds = match st.report_fds.take() {
                    Some(fds) => fds,
                    None => return Err(Error::new(ErrorKind::ResultTaken)),
                };
                let had_fds = !fds.is_empty();
                let (value, once) = crate::handle::deserialize_once(&bytes, fds);
                let value = value.map_err(|e| match e.into_kind() {
                    ErrorKind::Deserialize { source, .. } => {
                        Error::new(ErrorKind::Deserialize { what: "return value", source })
                    }
                    kind => Error::new(kind),
                });
                if !had_fds && !once {
                    // Without handles the value can be decoded again by a later join.
                    st.report_fds = Some(Vec::new());
                }
                value
            }
            Some(report) => Err(report_error(report).unwrap_or_else(|| Error::new(ErrorKind::ResultTaken))),
            None => {
                if let Some(m) = &st.read_error {
                    return Err(Error::new(ErrorKind::ChildFailed(m.clone())));
                }
                if st.status_lost {
                    return Err(Error::new(ErrorKind::ForkServer(
                        "the fork server died before reporting the child's exit code".into(),
                    )));
                }
                if status == ExitStatus::Code(0) {
                    // The child called exit(0) without returning: fine for a target of no value.
                    if let Ok(v) = crate::codec::from_bytes::<R>(&[]) {
                        return Ok(v);
                    }
                }
                Err(Error::new(ErrorKind::Exited { exitcode: status.exitcode() }))
            }
        }
    }
}
