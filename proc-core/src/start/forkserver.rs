//! The fork-server start method.
//!
//! The server is a helper process that spawn starts. It is single-threaded, so forking it is
//! safe, and it is small, so forking it is fast. Protocol on its socket: each request is a frame
//! whose body is one byte (1: the parent has no other child running) and the child's bootstrap
//! message, and which carries at least three descriptors: the child's end of a new control socket,
//! the write end of a status pipe (or of an alive pipe: see below) and the write end of a pid pipe.
//! The server forks a child, which first writes its own pid (`i32`, little-endian; the server
//! writes minus an errno if fork failed) to the pid pipe, so the pid is known even if the server
//! dies right after the fork. The parent reads it only when it needs the pid, so a start does not
//! wait for the server. The request's further descriptors are the bootstrap's, so the child finds
//! its bootstrap in the memory it inherits from the server: no second message, no extra wake-up.
//!
//! *Whose children.* On Linux with glibc the server forks children of its *parent*
//! (`proc_os::child::SiblingFork`, `clone(CLONE_PARENT)`): it stays the process spawn started, the
//! parent's child, and each child keeps the write end of an alive pipe, as a spawned child does.
//! The parent watches, signals and reaps them as its own (`Watch::Direct`), so a child's end wakes
//! the parent directly, and the server's death costs its children nothing; the parent reaps a
//! server it finds dead (at a start, in `fork_server_pid`, at a fork-server child's join).
//! Elsewhere (another C library; `MULTIPROC_FORKSERVER_CLONE_PARENT=0`; the portable backend, as
//! macOS has no `CLONE_PARENT`) the server forks children of its own: the process spawn started
//! forks the server (on Linux, its keeper: see below) and exits, so the server is no child of the
//! parent (init, or its keeper, reaps it when it dies). Once it has reaped a child, the server
//! writes its exit code (`i32`, Python's convention) to the status pipe and closes it: the status
//! pipe is the child's sentinel in the parent, which waits on it alone (a child's report never
//! blocks it: see `child::bootstrap`), so the parent wakes once per child, at the exit code.
//!
//! A child started while no other child runs is forked with the server's CPU affinity narrowed to
//! the CPU the server runs on (`proc_os::child::narrow_affinity_for_fork`), which both take back at
//! once: the child is queued on the CPU that the server leaves when it goes back to waiting,
//! instead of being woken on another CPU. A burst of starts is not narrowed.
//!
//! The server blocks SIGINT (a Ctrl-C meant for the program must not take it down) and exits
//! when its socket closes, which happens when the parent exits, even by SIGKILL. A server found
//! dead on a start (the request fails with `EPIPE`) is replaced, and the start is tried once more;
//! `fork_server_pid` never names a dead server.
//!
//! A server of its own children that dies (killed by someone) while they run must not take their
//! state with it. On Linux what the parent's process forks is a *keeper*, not the server: it makes
//! itself a child subreaper, forks the server, and does nothing else but wait. Each child the
//! server forks tells it of itself (pid, the server's serial number for it and a copy of the status
//! pipe's write end) before it runs anything, and the server tells it of the children it reaped, in
//! batches, on the same link. The keeper does not watch the link, so that none of this wakes it on
//! a start: it reads the link when a child of its own ends (the server, or an orphan) and when the
//! server nudges it (a byte on a pipe, every few dozen forks and reaps). When the
//! server dies, its running children are reparented to the keeper, which reaps them as they end
//! and writes their real exit codes to their status pipes: the parent sees nothing of the
//! server's death but a new server at the next start, and the children can still be signalled by
//! pid (they stay unreaped until they end). The parent itself is no subreaper, so descendants
//! that other code of the program orphans (a daemon started with `Command`) go to init as usual.
//! The keeper ends once the server has ended and it has no child left. If the keeper and the
//! server both die, the status pipe closes without a code and the parent falls back to what the
//! portable backend does.
//!
//! Elsewhere (the portable backend) there is no keeper and the orphans go to init: the parent
//! keeps identifying such a child by pid and start time, so it can still signal it, and sees its
//! end when its control socket closes; its exit code is the one its report implies (0 when the
//! target returned, 1 when it panicked or could not run), and 255 with a join error when it ended
//! without a report (a signal, `exit(n)`), which only its parent, the dead server, could have known.
//!
//! The server's first bytes on its socket are its pid (`u32`, little-endian) and whether its
//! children are the parent's (a byte, 1 or 0); it writes nothing after that. An exit code on a
//! status pipe is followed by one more byte, so the pipe stays readable once the parent has read
//! the code (a sentinel of an ended child must), whoever else still holds a copy of its write end.
//!
//! Part of the process runtime's import circle, which stays on purpose: see `globals`.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Started;
use crate::child::entry;
use crate::child::run;
use crate::error::{Error, ErrorKind, Result};
use crate::globals::Globals;
use crate::handle::ReleaseOnFork;
use crate::process::{Pid, Watch};
use proc_os::child::{AnyChild, ExitStatus};
use proc_os::signal::ChildWatch;

use crate::wire::{self, FrameReader, Read};

/// The largest bootstrap the server decodes before it forks (see `serve_inner`).
const DECODE_BEFORE_FORK_MAX: usize = 64 * 1024;

/// How long a new server may take to say its pid.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request failed.
enum RequestError {
    /// The server is gone: replace it and try again.
    ServerGone(io::Error),
    /// A local failure (out of descriptors, ...) that says nothing about the server.
    Local(Error),
}

/// The parent's connection to its fork server.
#[derive(Debug)]
pub(crate) struct ForkServer {
    /// The server's pid (what `fork_server_pid` names).
    pid: u32,
    /// Whether the server's children are this process' own (Linux: see the module docs); the
    /// server is this process' child then, reaped once it is gone.
    direct: bool,
    /// The process that launched the server: a copy of it made by a plain `fork` launches its own.
    owner: u32,
    /// Keeps the connection out of children made by a plain `fork`, so that the server ends with
    /// its owner; dropped before `sock`.
    release: ReleaseOnFork,
    sock: OwnedFd,
}

impl ForkServer {
    /// Starts a server; its first message gives it the resource tracker's pipe (if any), which
    /// its children then inherit instead of receiving it with every request.
    fn launch(tracker: Option<BorrowedFd<'_>>) -> Result<Self> {
        let (sock, server_sock) = proc_os::socket::socketpair()
            .map_err(|e| Error::io("cannot create the fork server socket", e))?;
        let launched = super::spawn::exec_role("forkserver", server_sock)?;
        let hello = read_hello(sock.as_fd());
        // A server whose children are this process' own is the process started here.
        let direct = matches!(hello, Ok((_, true)));
        if !direct {
            if hello.is_err() {
                // Stuck or failed: the process started here is this process' child, not reaped
                // yet, so its pid names it still. (What it forked ends with the socket.)
                let _ = proc_os::signal::kill(launched, libc::SIGKILL);
            }
            // The process started here forks the server (and its keeper) and exits at once, so
            // that neither is this process' child: whichever dies is reaped by init.
            if let Err(e) = proc_os::child::waitpid(launched, true) {
                tracing::debug!(pid = launched, error = %e, "cannot reap the fork server's launcher");
            }
        }
        // On failure, closing the socket ends the server (if any); its keeper follows.
        let (pid, _) = hello.map_err(|e| Error::io("the fork server did not start", e))?;
        let server = ForkServer {
            pid,
            direct,
            owner: proc_os::pid(),
            release: ReleaseOnFork::new(sock.as_fd()),
            sock,
        };
        let fds: Vec<_> = tracker.into_iter().collect();
        if let Err(e) = wire::send_frame(server.sock.as_fd(), b"init", &fds) {
            return Err(Error::io("cannot set up the fork server", e));
        }
        tracing::debug!(pid, direct, "started the fork server");
        Ok(server)
    }

    /// Whether the server has exited (or is exiting): it writes nothing after its pid, so a
    /// readable socket means its end closed.
    fn is_gone(&self) -> bool {
        proc_os::fd::is_ready(self.sock.as_fd()).unwrap_or(true)
    }

    /// In a child made by fork: close the parent's connection without any other effect.
    pub(crate) fn forget_in_child(self) {
        self.release.unlist();
        // SAFETY: the record is leaked right after, so nothing else closes this number.
        unsafe { proc_os::fd::close_raw(self.sock.as_raw_fd()) };
        std::mem::forget(self);
    }

    /// Lets go of a server that is gone (or of a live one: closing the socket ends it). A server
    /// that is this process' child is reaped: it is exiting, as its socket closed or is closed
    /// here, so the wait is short.
    fn retire(self) {
        let (pid, direct) = (self.pid, self.direct);
        drop(self);
        if direct {
            if let Err(e) = proc_os::child::waitpid(pid, true) {
                tracing::debug!(pid, error = %e, "cannot reap the fork server");
            }
        }
    }

    /// The server's pid (for tests and diagnostics).
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends one request.
    fn request(
        &self,
        boot: &[u8],
        boot_fds: &[BorrowedFd<'_>],
    ) -> std::result::Result<Started, RequestError> {
        let local = |e| RequestError::Local(Error::io("cannot start a child through the fork server", e));
        let (ctl, child_ctl) = proc_os::socket::socketpair().map_err(local)?;
        // The status pipe, or, for a child of this process, its alive pipe.
        let (sentinel, end_w) = proc_os::fd::pipe().map_err(local)?;
        let (pid, pid_w) = proc_os::fd::pipe().map_err(local)?;
        let mut fds = vec![child_ctl.as_fd(), end_w.as_fd(), pid_w.as_fd()];
        fds.extend_from_slice(boot_fds);
        match wire::send_frame(self.sock.as_fd(), boot, &fds) {
            Ok(()) => Ok(Started {
                pid: Pid::Pending(pid),
                ctl,
                sentinel,
                watch: if self.direct { Watch::Direct } else { Watch::Served },
                alive: None,
            }),
            Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {
                Err(RequestError::ServerGone(e))
            }
            Err(e) => Err(RequestError::Local(Error::io("cannot send a request to the fork server", e))),
        }
    }
}

/// Reads what a new server says first: its pid, and whether its children are this process' own.
fn read_hello(sock: BorrowedFd<'_>) -> io::Result<(u32, bool)> {
    let deadline = Instant::now() + LAUNCH_TIMEOUT;
    let mut hello = [0u8; 5];
    let mut got = 0;
    while got < hello.len() {
        if !proc_os::fd::wait_readable(&[sock], Some(deadline))?.first().copied().unwrap_or(false) {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        match proc_os::fd::read(sock, &mut hello[got..])? {
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            n => got += n,
        }
    }
    let [a, b, c, d, direct] = hello;
    Ok((u32::from_le_bytes([a, b, c, d]), direct == 1))
}

/// Reads the pid a fork-server child wrote to its pid pipe; `None` if the server could not fork
/// (or died before it could).
pub(crate) fn read_pid(pipe: BorrowedFd<'_>) -> Option<u32> {
    let mut pid = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match proc_os::fd::read(pipe, &mut pid[got..]) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got += n,
        }
    }
    match i32::from_le_bytes(pid) {
        pid if pid > 0 => Some(pid as u32),
        errno => {
            tracing::debug!(error = %io::Error::from_raw_os_error(-errno), "the fork server could not fork");
            None
        }
    }
}

/// Forgets a server inherited through a plain `fork`, which belongs to the process that launched
/// it. A start needs no more: a request to a server that has died fails (`EPIPE`), and the server
/// is replaced then.
pub(crate) fn forget_foreign_server(g: &mut Globals) {
    if g.forkserver.as_ref().is_some_and(|s| s.owner != proc_os::pid()) {
        // Inherited through a plain `fork`: the owner's server (our copy of the connection points
        // at /dev/null); this process launches its own.
        if let Some(theirs) = g.forkserver.take() {
            theirs.forget_in_child();
        }
    }
}

/// Drops this process' fork server if it has died; forgets a server inherited through a plain
/// `fork` (see [`forget_foreign_server`]). (A dead server is reaped by its keeper, or by init, at
/// once: it is no child of this process.)
pub(crate) fn drop_dead_server(g: &mut Globals) {
    forget_foreign_server(g);
    if g.forkserver.as_ref().is_some_and(ForkServer::is_gone) {
        if let Some(dead) = g.forkserver.take() {
            tracing::debug!(pid = dead.pid, "the fork server has died");
            dead.retire();
        }
    }
}

/// At a fork-server child's join: reaps this process' fork server if it has died and is this
/// process' child (see [`ForkServer::retire`]), so that a killed server does not stay a zombie
/// until the next start. A server of its own children (keeper, portable backend) is no child of
/// this process: nothing to reap, so its socket is not polled on every join.
pub(crate) fn reap_dead_direct_server(g: &mut Globals) {
    if g.forkserver.as_ref().is_some_and(|s| s.direct && s.owner == proc_os::pid()) {
        drop_dead_server(g);
    }
}

/// Starts a child through the fork server, (re)starting the server when needed. `boot` and
/// `boot_fds` are the child's bootstrap message and its descriptors.
///
/// The caller has forgotten a server inherited through `fork` already (`Globals::reap_finished`).
pub(crate) fn start(g: &mut Globals, boot: &[u8], boot_fds: &[BorrowedFd<'_>]) -> Result<Started> {
    let mut last = None;
    for _ in 0..2 {
        if g.forkserver.is_none() {
            let tracker = g.tracker.clone();
            g.forkserver = Some(ForkServer::launch(tracker.as_ref().map(|t| t.as_fd()))?);
        }
        let Some(server) = g.forkserver.as_ref() else { continue };
        match server.request(boot, boot_fds) {
            Ok(started) => return Ok(started),
            // A local failure: the server is fine and keeps serving its other children.
            Err(RequestError::Local(e)) => return Err(e),
            Err(RequestError::ServerGone(e)) => {
                // Letting go of the connection is all: the server is gone.
                if let Some(dead) = g.forkserver.take() {
                    dead.retire();
                }
                last = Some(e);
            }
        }
    }
    let message = last.map_or_else(|| "unknown failure".to_owned(), |e| e.to_string());
    Err(Error::new(ErrorKind::ForkServer(message)))
}

/// The fork server's pid, if this process runs one that is alive.
pub fn server_pid() -> Option<u32> {
    let mut g = crate::globals::lock();
    drop_dead_server(&mut g);
    g.forkserver.as_ref().map(ForkServer::pid)
}

/// The server role: runs in the process the parent started until its socket closes. Where the
/// server forks children of its own, that process forks it (on Linux, it becomes the keeper) and
/// exits (see the module docs).
pub(crate) fn serve() -> i32 {
    match serve_role() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("multiproc: fork server failed: {e}");
            1
        }
    }
}

fn serve_role() -> io::Result<()> {
    // SAFETY: we own no Rust object for descriptor 0; it is only duplicated.
    let sock = proc_os::fd::dup_cloexec(unsafe { BorrowedFd::borrow_raw(0) }, 3)?;
    proc_os::fd::dev_null_onto(0)?;
    // SIGINT is blocked, not ignored: a child inherits the mask and unblocks it once it has set
    // up, so an interrupt sent to a new child right away is delivered then instead of being lost.
    // The keeper inherits the mask too: a Ctrl-C meant for the program must not take it down.
    proc_os::signal::block_signal(libc::SIGINT, true)?;
    // A status pipe or a link whose reader is gone is an error to ignore, not a reason to die.
    proc_os::signal::set_signal_ignored(libc::SIGPIPE, true);
    // Where the children can be the parent's own, this process serves as it is, the parent's
    // child, with no keeper (see the module docs).
    if let Some(sibling) = sibling_fork() {
        return serve_inner(sock, Children::Parents(sibling), None);
    }
    // Detach: the process the parent started exits at once (the parent reaps it), and what it
    // forks is reparented to init, which reaps it when it dies.
    // SAFETY: this process is single-threaded (it runs a role, not the program's main).
    if unsafe { proc_os::child::fork() }? != 0 {
        proc_os::child::exit_now(0);
    }
    let keeper = match proc_os::child::become_subreaper() {
        Ok(()) => {
            let (keeper_end, server_end) = proc_os::socket::socketpair()?;
            let (nudge_r, nudge_w) = proc_os::fd::pipe()?;
            // SAFETY: this process is single-threaded (it runs a role, not the program's main).
            match unsafe { proc_os::child::fork() }? {
                0 => {
                    drop(keeper_end);
                    drop(nudge_r);
                    // Never wait on the keeper: a keeper that stopped reading (stopped by a signal,
                    // say) is let go at the first message that does not fit, and the server
                    // serves on without one.
                    proc_os::fd::set_nonblocking(server_end.as_fd())?;
                    proc_os::fd::set_nonblocking(nudge_w.as_fd())?;
                    Some(KeeperLink { link: server_end, nudge: nudge_w, reaped: Vec::new(), events: 0 })
                }
                server => {
                    drop(server_end);
                    drop(nudge_w);
                    // The server alone holds the parent's socket, so it closes when the server ends.
                    drop(sock);
                    return keep(keeper_end, nudge_r, server);
                }
            }
        }
        Err(e) => {
            if e.kind() != io::ErrorKind::Unsupported {
                tracing::debug!(error = %e, "cannot become a child subreaper: no keeper for the fork server");
            }
            None
        }
    };
    serve_inner(sock, Children::Own, keeper)
}

/// Whose children the server forks.
enum Children {
    /// Its own: it reaps them and writes their exit codes to their status pipes.
    Own,
    /// Its parent's (Linux with glibc): the parent watches them as it does the children it starts
    /// itself.
    Parents(proc_os::child::SiblingFork),
}

/// Set to `0`, the fork server forks children of its own (and has a keeper) where it could fork
/// children of its parent: for tests of that way, and should `CLONE_PARENT` ever be refused.
pub(crate) const CLONE_PARENT_ENV: &str = "MULTIPROC_FORKSERVER_CLONE_PARENT";

/// What forking the parent's children takes, where this process can and is let do so.
fn sibling_fork() -> Option<proc_os::child::SiblingFork> {
    if std::env::var_os(CLONE_PARENT_ENV).is_some_and(|v| v == "0") {
        return None;
    }
    match proc_os::child::SiblingFork::new() {
        Ok(sibling) => Some(sibling),
        Err(e) => {
            if e.kind() != io::ErrorKind::Unsupported {
                tracing::debug!(error = %e, "the fork server forks children of its own");
            }
            None
        }
    }
}

/// A message to the keeper on its link: a tag, then one `(pid, serial)` entry (12 bytes, both
/// little-endian) for `STARTED`, any number for `REAPED`. A child sends `STARTED` with its status
/// pipe (the write end) before it runs anything; the server sends `REAPED` for a batch of children
/// it reaped, with its nudge. The serial (the server counts its forks) tells a reaped child from a
/// later one with the same pid, whose `STARTED` may come first.
const STARTED: u8 = 1;
const REAPED: u8 = 2;

/// The server nudges its keeper to read the link after this many forks and reaps, so that the
/// link never holds more than a few dozen messages (and descriptors in flight).
const NUDGE_EVERY: u32 = 32;

/// One `(pid, serial)` entry of a keeper message.
const ENTRY: usize = 12;

fn push_entry(message: &mut Vec<u8>, pid: u32, serial: u64) {
    message.extend_from_slice(&pid.to_le_bytes());
    message.extend_from_slice(&serial.to_le_bytes());
}

/// The `(pid, serial)` entries of a keeper message's body (after its tag).
fn entries(body: &[u8]) -> impl Iterator<Item = (u32, u64)> + '_ {
    body.chunks_exact(ENTRY).map(|e| {
        let (pid, serial) = e.split_at(4);
        (
            u32::from_le_bytes(pid.try_into().unwrap_or_default()),
            u64::from_le_bytes(serial.try_into().unwrap_or_default()),
        )
    })
}

/// The server's connection to its keeper (Linux), which each child inherits to tell the keeper of
/// itself. The keeper does not watch the link: it reads it when a child of its own ended (the
/// server, or an orphan the server left) and when the server nudges it, so that telling it costs
/// no wake-up on a start.
struct KeeperLink {
    /// The link (non-blocking).
    link: OwnedFd,
    /// The write end of the nudge pipe (non-blocking): a byte asks the keeper to read the link.
    nudge: OwnedFd,
    /// The children reaped since the last nudge, not yet told: `(pid, serial)`.
    reaped: Vec<(u32, u64)>,
    /// Forks and reaps since the last nudge.
    events: u32,
}

impl KeeperLink {
    /// Tells the keeper of a child that is starting (in the child, before it runs anything): its
    /// pid, its serial and a copy of its status pipe.
    fn started(&self, pid: u32, serial: u64, status: BorrowedFd<'_>) -> io::Result<()> {
        let mut message = [0u8; 1 + ENTRY];
        message[0] = STARTED;
        message[1..5].copy_from_slice(&pid.to_le_bytes());
        message[5..].copy_from_slice(&serial.to_le_bytes());
        wire::send_frame(self.link.as_fd(), &message, &[status])
    }

    /// Counts a fork or a reap; every `NUDGE_EVERY`, tells the keeper of the children reaped and
    /// nudges it to read the link.
    fn count(&mut self) -> io::Result<()> {
        self.events += 1;
        if self.events >= NUDGE_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    /// Tells the keeper of the children reaped so far and nudges it to read the link.
    fn flush(&mut self) -> io::Result<()> {
        if !self.reaped.is_empty() {
            let mut message = Vec::with_capacity(1 + self.reaped.len() * ENTRY);
            message.push(REAPED);
            for &(pid, serial) in &self.reaped {
                push_entry(&mut message, pid, serial);
            }
            wire::send_frame(self.link.as_fd(), &message, &[])?;
            self.reaped.clear();
        }
        self.events = 0;
        match proc_os::fd::write_all(self.nudge.as_fd(), &[1]) {
            // A full pipe holds nudges the keeper has yet to read: one more adds nothing.
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }
}

/// Runs a step of the server's talk with its keeper; forgets a keeper that is gone (or stopped
/// reading), after which the server serves on without one.
fn with_keeper(keeper: &mut Option<KeeperLink>, step: impl FnOnce(&mut KeeperLink) -> io::Result<()>) {
    if let Some(k) = keeper.as_mut() {
        if let Err(e) = step(k) {
            tracing::debug!(error = %e, "the fork server's keeper is gone");
            *keeper = None;
        }
    }
}

/// Writes an exit code to a status pipe: the code, then one more byte that keeps the pipe
/// readable once the parent has read the code.
fn report_status(pipe: &OwnedFd, status: ExitStatus) {
    let code = status.exitcode().to_le_bytes();
    let _ = proc_os::fd::write_all(pipe.as_fd(), &[code[0], code[1], code[2], code[3], 0]);
}

/// The keeper role (Linux): a child subreaper that waits for the server and, once the server has
/// died, for the children it leaves, and reports their exit codes on their status pipes. Ends when
/// it has no child left.
///
/// It wakes up only when a child of its own ended (the server, or an orphan) or when the server
/// nudges it, and reads the link then: the server's children tell it of themselves without waking
/// it.
fn keep(link: OwnedFd, nudge: OwnedFd, server: u32) -> io::Result<()> {
    let signal = ChildWatch::install()?;
    proc_os::fd::set_nonblocking(nudge.as_fd())?;
    let mut nudge_open = true;
    let mut reader = FrameReader::default();
    let mut link_open = true;
    // The server's running children (and those it reaped but has not told of yet): their serials
    // and status pipes (write ends).
    let mut children: HashMap<u32, (u64, OwnedFd)> = HashMap::new();
    let mut read_link = |children: &mut HashMap<u32, (u64, OwnedFd)>| -> io::Result<bool> {
        loop {
            match reader.read(link.as_fd(), false)? {
                Read::Pending => return Ok(true),
                Read::Eof => return Ok(false),
                Read::Frame(body, fds) => {
                    let Some((&tag, rest)) = body.split_first() else { continue };
                    match (tag, fds.into_iter().next()) {
                        (STARTED, Some(pipe)) => {
                            if let Some((pid, serial)) = entries(rest).next() {
                                // A child of the same pid that the server reaped is gone.
                                children.insert(pid, (serial, pipe));
                            }
                        }
                        (REAPED, _) => {
                            for (pid, serial) in entries(rest) {
                                // Only if it is this child's entry, not a later one's of the same pid.
                                if children.get(&pid).is_some_and(|&(s, _)| s == serial) {
                                    children.remove(&pid);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    };
    loop {
        // What the server said comes first: a child it told of is reparented here only after the
        // server has died, that is after the server's last message is in the link.
        if link_open {
            link_open = read_link(&mut children)?;
        }
        loop {
            match proc_os::child::wait_any()? {
                AnyChild::Ended(pid, _) if pid == server => {
                    tracing::debug!(pid, "the fork server ended");
                }
                AnyChild::Ended(pid, status) => {
                    if !children.contains_key(&pid) && link_open {
                        link_open = read_link(&mut children)?;
                    }
                    // A child the server did not tell of is a descendant orphaned by one of its
                    // children (or a child forked just before the server died): nobody waits for it.
                    if let Some((_, pipe)) = children.remove(&pid) {
                        report_status(&pipe, status);
                    }
                }
                AnyChild::Running => break,
                AnyChild::None => return Ok(()),
            }
        }
        let mut fds = vec![signal.as_fd()];
        if nudge_open {
            fds.push(nudge.as_fd());
        }
        proc_os::fd::wait_readable(&fds, None)?;
        signal.drain();
        if nudge_open {
            nudge_open = drain_nudges(nudge.as_fd());
        }
    }
}

/// Reads the nudges that wait in the pipe; returns whether it is still open (the server holds its
/// write end until it ends).
fn drain_nudges(nudge: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match proc_os::fd::read(nudge, &mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

/// The server proper: forks a child per request until its socket closes.
fn serve_inner(sock: OwnedFd, children: Children, mut keeper: Option<KeeperLink>) -> io::Result<()> {
    // The parent learns the server's pid first (the process it started may be the keeper), and
    // whose children the server forks.
    let [a, b, c, d] = proc_os::getpid().to_le_bytes();
    let parents = matches!(children, Children::Parents(_));
    proc_os::fd::write_all(sock.as_fd(), &[a, b, c, d, u8::from(parents)])?;
    // SIGINT as the default for the children, whatever this process inherited through `exec`
    // (it stays blocked here): a child ignores it only when its bootstrap says so.
    proc_os::signal::set_signal_ignored(libc::SIGINT, false);
    let signal = ChildWatch::install()?;
    // What each child undoes of that first, prepared once.
    let reset = ChildWatch::child_reset(libc::SIGINT)?;
    warm_up();

    let mut reader = FrameReader::default();
    // The first message carries the resource tracker's pipe, if the parent has a tracker.
    // Held in an `Arc`, as a child keeps it: a child takes over this one, allocating nothing.
    let mut tracker = match reader.read(sock.as_fd(), true)? {
        Read::Frame(_, fds) => fds.into_iter().next().map(Arc::new),
        _ => return Ok(()),
    };
    // The running children: their serials and status pipes (write ends).
    let mut pending: HashMap<u32, (u64, OwnedFd)> = HashMap::new();
    let mut serial: u64 = 0;
    loop {
        let ready = proc_os::fd::wait_readable(&[sock.as_fd(), signal.as_fd()], None)?;
        // Reap once SIGCHLD came: every child's end sends one (it stays until drained), and the
        // loop reaps every ended child, so signals that coalesced lose none. A child that ends
        // after the drain sends another. Every child of this process is in `pending`, so the
        // loop stops when that is empty, without asking the kernel once more.
        if ready[1] {
            signal.drain();
            while !pending.is_empty() {
                let AnyChild::Ended(pid, status) = proc_os::child::wait_any()? else { break };
                if let Some((serial, w)) = pending.remove(&pid) {
                    report_status(&w, status);
                    drop(w);
                    with_keeper(&mut keeper, |k| {
                        k.reaped.push((pid, serial));
                        k.count()
                    });
                }
            }
        }
        if !ready[0] {
            continue;
        }
        match reader.read(sock.as_fd(), false)? {
            Read::Pending => {}
            Read::Eof => {
                // The keeper learns of the last children reaped before the server ends.
                with_keeper(&mut keeper, KeeperLink::flush);
                return Ok(());
            }
            Read::Frame(body, fds) => {
                let mut fds = fds.into_iter();
                let (Some(child_ctl), Some(end_w), Some(pid_w)) = (fds.next(), fds.next(), fds.next()) else {
                    continue;
                };
                // The first byte says whether the parent has no other child running.
                let Some((&lone, boot)) = body.split_first() else { continue };
                let boot_fds: Vec<OwnedFd> = fds.collect();
                // A child of the parent keeps the write end of its alive pipe, as a spawned child
                // does; a child of this server's has a status pipe instead.
                let (alive_w, status_w) = if parents { (Some(end_w), None) } else { (None, Some(end_w)) };
                // Decoded here, before the fork, with the list of the descriptors the child keeps
                // (the bootstrap's, its control socket and the tracker's pipe, which it takes
                // over), and the control socket wrapped as the child keeps it: the child finds
                // them in the memory it inherits instead of running the decoder and allocating. A
                // large bootstrap (large arguments) is left to the child, so that copying its
                // arguments holds up no other start.
                let decoded = (boot.len() <= DECODE_BEFORE_FORK_MAX).then(|| run::decode_bootstrap(boot));
                let mut keep: Vec<_> = boot_fds.iter().map(|f| f.as_raw_fd()).collect();
                let child_ctl = run::ChildCtl::new(child_ctl);
                keep.push(child_ctl.as_raw_fd());
                keep.extend(alive_w.as_ref().map(|a| a.as_raw_fd()));
                keep.extend(tracker.as_ref().map(|t| t.as_raw_fd()));
                serial += 1;
                // A lone child starts on this CPU, which the server leaves right after the fork:
                // no wake-up on another CPU, and the page tables just copied are in cache. Only
                // when no other child runs (of the parent's, nor of this server's), so that a
                // burst of starts (a pool's workers) still spreads over the CPUs at once.
                let held = if lone == 1 && pending.is_empty() {
                    proc_os::child::narrow_affinity_for_fork()
                } else {
                    None
                };
                // No fork handlers: the C library's bookkeeping would write pages that both
                // processes then copy, and the child closes every descriptor it does not keep
                // below (what multiproc's handler is for; this process lists none anyway).
                let forked = match &children {
                    // SAFETY: this process is single-threaded (the thread that made `sibling`);
                    // the child only resets signal dispositions, closes descriptors and runs the
                    // bootstrap, then exits.
                    Children::Parents(sibling) => unsafe { sibling.fork() },
                    // SAFETY: as above.
                    Children::Own => unsafe { proc_os::child::fork_without_handlers() },
                };
                match forked {
                    Ok(0) => {
                        // The child's pid, first: should the server die before anything else, the
                        // parent still knows which process is its child.
                        let me = proc_os::getpid() as i32;
                        let _ = proc_os::fd::write_all(pid_w.as_fd(), &me.to_le_bytes());
                        // The child tells the keeper of itself, before it runs anything: the server
                        // may be killed right after the fork, before it could. (On the same link,
                        // so this comes before the server's `REAPED` for it.) The keeper reads it
                        // later; nothing waits for it.
                        if let (Some(k), Some(status_w)) = (keeper.as_ref(), status_w.as_ref()) {
                            if let Err(e) = k.started(me as u32, serial, status_w.as_fd()) {
                                tracing::debug!(error = %e, "the fork server's keeper is gone");
                            }
                        }
                        restore_affinity(held, "a child process");
                        proc_os::fd::close_fds_except(&keep);
                        // SIGINT as the parent has it now (the bootstrap's first byte; this server
                        // keeps the default action), before it is unblocked together with SIGCHLD.
                        if boot.first() == Some(&1) {
                            proc_os::signal::set_signal_ignored(libc::SIGINT, true);
                        }
                        let _ = reset.apply();
                        let decoded = decoded.unwrap_or_else(|| run::decode_bootstrap(boot));
                        // The tracker's pipe is the server's own copy, which this child takes over
                        // (it never goes back to the loop).
                        proc_os::child::exit_now(run::run_decoded(
                            child_ctl,
                            decoded,
                            boot_fds,
                            alive_w,
                            tracker.take(),
                        ));
                    }
                    Ok(pid) => {
                        restore_affinity(held, "the fork server");
                        drop(child_ctl);
                        drop(boot_fds);
                        drop(alive_w);
                        // The child writes its pid and tells the keeper of itself.
                        drop(pid_w);
                        // The parent's child is the parent's to reap.
                        if let Some(status_w) = status_w {
                            pending.insert(pid, (serial, status_w));
                            with_keeper(&mut keeper, KeeperLink::count);
                        }
                    }
                    Err(e) => {
                        restore_affinity(held, "the fork server");
                        // The status pipe closes without an exit code: the parent's join reports it.
                        let code = -e.raw_os_error().unwrap_or(libc::EAGAIN);
                        let _ = proc_os::fd::write_all(pid_w.as_fd(), &code.to_le_bytes());
                    }
                }
            }
        }
    }
}

/// The server after a fork, and the child before its target runs, take back the CPU affinity the
/// server narrowed for the fork (`who` names which). Should that fail, the process keeps one CPU
/// (and a server so narrowed passes it on to the children it forks from then on): said on
/// standard error, which both share with the program.
fn restore_affinity(held: Option<proc_os::child::SavedAffinity>, who: &str) {
    if let Some(Err(e)) = held.map(|saved| saved.restore()) {
        eprintln!("multiproc: {who} could not take back its CPU affinity: {e}");
    }
}

/// Runs, once, what every child runs first, so that the children inherit the result instead of
/// each redoing it: the panic hook and the fork handler that releases listed descriptors are
/// installed, and the lazily bound C library functions the child calls (`sendmsg`, `recvmsg`,
/// `pthread_sigmask`, `signal`, `syscall`, ...) are bound. This saves every child the dynamic
/// linker's symbol lookups, the registration (an allocation and a lock in the C library) and the
/// page faults they cause.
fn warm_up() {
    run::install_panic_hook();
    crate::sys::install_fork_handler();
    // What checking a target's entry point needs (the anchor's fingerprint, the segments of the
    // program's image) is computed once and kept.
    entry::warm_up();
    if let Ok((a, b)) = proc_os::socket::socketpair() {
        if let Ok((r, w)) = proc_os::fd::pipe() {
            let _ = wire::send_frame(a.as_fd(), b"warm-up", &[r.as_fd(), w.as_fd()]);
            let _ = FrameReader::default().read(b.as_fd(), false);
        }
    }
    // Thread-local side tables register their destructors on first use.
    if let Ok((bytes, fds)) = crate::handle::serialize_with_fds(&()) {
        let _ = crate::handle::deserialize_with_fds::<()>(&bytes, fds);
    }
    let _ = proc_os::signal::block_signal(libc::SIGINT, true);
    proc_os::signal::set_signal_ignored(libc::SIGPIPE, true);
    let _ = proc_os::getppid();
    run::flush_stdio();
}
