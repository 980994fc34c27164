//! The fork-server start method.
//!
//! The server is a helper process started by spawn. It is single-threaded, so forking it is safe,
//! and it is small, so forking it is fast. Protocol on its socket: each request is a frame
//! carrying at least three descriptors: the child's end of a new control socket, the write end of
//! a status pipe and the write end of a pid pipe. The server forks a child, which first writes its
//! own pid (`i32`, little-endian; the server writes minus an errno if fork failed) to the pid pipe,
//! so the pid is known even if the server dies right after the fork. The parent reads it
//! only when it needs the pid, so a start does not wait for the server. Once it has reaped the
//! child, the server writes its exit code (`i32`, Python's convention) to the status pipe and
//! closes it: the status pipe is the child's sentinel in the parent. The request's body is the
//! child's bootstrap message and its further descriptors are the bootstrap's, so the child finds
//! its bootstrap in the memory it inherits from the server: no second message, no extra wake-up.
//!
//! The server blocks SIGINT (a Ctrl-C meant for the program must not take it down) and exits
//! when its socket closes, which happens when the parent exits, even by SIGKILL. A server found
//! dead on a start is reaped and replaced, and the start is tried once more; a dead idle server
//! is reaped as soon as the parent next looks at its children (`active_children`, a start,
//! `fork_server_pid`, a served child's status).
//!
//! A server that dies (killed by someone) while its children run must not take their state with
//! it. On Linux the parent makes itself a child subreaper before it launches the server, so the
//! server's children are reparented to the parent when the server dies: the parent then waits for
//! them itself (their sentinel becomes a pidfd) and reports their real exit code. The server is a
//! subreaper too, so that descendants its children orphan are reaped by the server, not left to
//! the parent. Elsewhere (the portable backend) the orphans go to init: the parent keeps
//! identifying such a child by pid and start time, so it can still signal it, and sees its end
//! when its control socket closes; its exit code is the one its report implies (0 when the target
//! returned, 1 when it panicked or could not run), and 255 with a join error when it ended without
//! a report (a signal, `exit(n)`), which only its parent, the dead server, could have known.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::Started;
use crate::child;
use crate::error::{Error, ErrorKind, Result};
use crate::globals::Globals;
use crate::handle::ReleaseOnFork;
use crate::process::{Pid, Watch};
use crate::sys;
use crate::wire::{self, FrameReader, Read};

/// Why a request failed.
enum RequestError {
    /// The server is gone: replace it and try again.
    ServerGone(io::Error),
    /// A local failure (out of descriptors, ...) that says nothing about the server.
    Local(Error),
}

/// The process that made itself a child subreaper (Linux), so that the children of a dead fork
/// server are reparented to it; 0 if none. A pid, not a flag: a child made by `fork` is not a
/// subreaper (the kernel does not pass it on), though it inherits this memory.
static SUBREAPER: AtomicU32 = AtomicU32::new(0);

/// Whether the children of a dead fork server become this process' children.
pub(crate) fn adopts_orphans() -> bool {
    SUBREAPER.load(Ordering::Relaxed) == sys::getpid()
}

fn become_subreaper() {
    if adopts_orphans() {
        return;
    }
    match sys::become_subreaper() {
        Ok(()) => SUBREAPER.store(sys::getpid(), Ordering::Relaxed),
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {}
        Err(e) => tracing::debug!(error = %e, "cannot become a child subreaper"),
    }
}

/// The server process itself, shared by the connection and the children it forked: whoever
/// learns first that the server is gone reaps it, and only once, so that no one signals or waits
/// for its pid after that (it could be recycled).
#[derive(Debug)]
pub(crate) struct ServerLife {
    pid: u32,
    reaped: Mutex<bool>,
}

impl ServerLife {
    /// Reaps the server, which is known to be exiting (it closed its descriptors), so the wait is
    /// short. Once it returns, the server's children have been reparented.
    pub(crate) fn reap_exiting(&self) {
        let mut reaped = self.reaped.lock().unwrap_or_else(PoisonError::into_inner);
        if !*reaped {
            if let Err(e) = sys::waitpid(self.pid, true) {
                tracing::debug!(pid = self.pid, error = %e, "cannot reap the fork server");
            }
            *reaped = true;
            tracing::debug!(pid = self.pid, "reaped the fork server");
        }
    }

    /// Kills and reaps the server, unless it was reaped already.
    fn kill_and_reap(&self) {
        let mut reaped = self.reaped.lock().unwrap_or_else(PoisonError::into_inner);
        if !*reaped {
            let _ = sys::kill(self.pid, libc::SIGKILL);
            let _ = sys::waitpid(self.pid, true);
            *reaped = true;
        }
    }
}

/// The parent's connection to its fork server.
#[derive(Debug)]
pub(crate) struct ForkServer {
    pid: u32,
    life: Arc<ServerLife>,
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
        // Before the server forks anything: its children must come back to this process if it dies.
        become_subreaper();
        let (sock, server_sock) =
            sys::socketpair().map_err(|e| Error::io("cannot create the fork server socket", e))?;
        let pid = super::spawn::exec_role("forkserver", server_sock)?;
        let server = ForkServer {
            pid,
            life: Arc::new(ServerLife { pid, reaped: Mutex::new(false) }),
            owner: sys::getpid(),
            release: ReleaseOnFork::new(sock.as_fd()),
            sock,
        };
        let fds: Vec<_> = tracker.into_iter().collect();
        if let Err(e) = wire::send_frame(server.sock.as_fd(), b"init", &fds) {
            server.discard();
            return Err(Error::io("cannot set up the fork server", e));
        }
        tracing::debug!(pid, "started the fork server");
        Ok(server)
    }

    /// Stops and reaps a server that failed a request (or was found dead).
    fn discard(self) {
        self.release.unlist();
        drop(self.sock);
        self.life.kill_and_reap();
    }

    /// Whether the server has exited (or is exiting): it never writes to its socket, so a
    /// readable socket means its end closed.
    fn is_gone(&self) -> bool {
        sys::is_readable(self.sock.as_fd()).unwrap_or(true)
    }

    /// In a child made by fork: close the parent's connection without any other effect.
    pub(crate) fn forget_in_child(self) {
        self.release.unlist();
        // SAFETY: the record is leaked right after, so nothing else closes this number.
        unsafe { sys::close_raw(self.sock.as_raw_fd()) };
        std::mem::forget(self);
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
        let (ctl, child_ctl) = sys::socketpair().map_err(local)?;
        let (status, status_w) = sys::pipe().map_err(local)?;
        let (pid, pid_w) = sys::pipe().map_err(local)?;
        let mut fds = vec![child_ctl.as_fd(), status_w.as_fd(), pid_w.as_fd()];
        fds.extend_from_slice(boot_fds);
        match wire::send_frame(self.sock.as_fd(), boot, &fds) {
            Ok(()) => Ok(Started {
                pid: Pid::Pending(pid),
                ctl,
                sentinel: status,
                watch: Watch::Served(self.life.clone()),
                alive: None,
            }),
            Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {
                Err(RequestError::ServerGone(e))
            }
            Err(e) => Err(RequestError::Local(Error::io("cannot send a request to the fork server", e))),
        }
    }
}

/// Reads the pid a fork-server child wrote to its pid pipe; `None` if the server could not fork
/// (or died before it could).
pub(crate) fn read_pid(pipe: BorrowedFd<'_>) -> Option<u32> {
    let mut pid = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match sys::read(pipe, &mut pid[got..]) {
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

/// Drops (reaping it) this process' fork server if it has died; forgets a server inherited
/// through a plain `fork`, which belongs to the process that launched it.
pub(crate) fn drop_dead_server(g: &mut Globals) {
    if g.forkserver.as_ref().is_some_and(|s| s.owner != sys::getpid()) {
        // Inherited through a plain `fork`: the owner's server (our copy of the connection points
        // at /dev/null); this process launches its own.
        if let Some(theirs) = g.forkserver.take() {
            theirs.forget_in_child();
        }
    }
    if g.forkserver.as_ref().is_some_and(ForkServer::is_gone) {
        if let Some(dead) = g.forkserver.take() {
            tracing::debug!(pid = dead.pid, "the fork server has died");
            dead.discard();
        }
    }
}

/// Starts a child through the fork server, (re)starting the server when needed. `boot` and
/// `boot_fds` are the child's bootstrap message and its descriptors.
///
/// The caller has looked for a dead server already (`Globals::reap_finished`).
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
                if let Some(old) = g.forkserver.take() {
                    old.discard();
                }
                last = Some(e);
            }
        }
    }
    let message = last.map_or_else(|| "unknown failure".to_owned(), |e| e.to_string());
    Err(Error::new(ErrorKind::ForkServer(message)))
}

/// The fork server's pid, if this process runs one that is alive (a dead one is reaped here).
pub fn server_pid() -> Option<u32> {
    let mut g = crate::globals::lock();
    drop_dead_server(&mut g);
    g.forkserver.as_ref().map(ForkServer::pid)
}

static SIGCHLD_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigchld(_: libc::c_int) {
    let fd = SIGCHLD_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // A full pipe is fine: one pending byte is enough to wake the loop.
        sys::write_byte_in_handler(fd);
    }
}

/// The server role: runs in the helper process until its socket closes.
pub(crate) fn serve() -> i32 {
    match serve_inner() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("multiproc: fork server failed: {e}");
            1
        }
    }
}

fn serve_inner() -> io::Result<()> {
    // SAFETY: we own no Rust object for descriptor 0; it is only duplicated.
    let sock = sys::dup_cloexec(unsafe { BorrowedFd::borrow_raw(0) }, 3)?;
    sys::dev_null_onto(0)?;
    // SIGINT is blocked, not ignored: a child inherits the mask and unblocks it once it has set
    // up, so an interrupt sent to a new child right away is delivered then instead of being lost.
    sys::block_signal(libc::SIGINT, true)?;
    let (wake_r, wake_w) = sys::pipe()?;
    sys::set_nonblocking(wake_r.as_fd())?;
    sys::set_nonblocking(wake_w.as_fd())?;
    SIGCHLD_FD.store(wake_w.as_raw_fd(), Ordering::Relaxed);
    sys::on_signal(libc::SIGCHLD, on_sigchld)?;
    // Descendants that the server's children orphan come to the server, which reaps every child
    // it has, rather than to the parent (a subreaper too), which waits only for its own.
    if let Err(e) = sys::become_subreaper() {
        if e.kind() != io::ErrorKind::Unsupported {
            tracing::debug!(error = %e, "the fork server cannot become a child subreaper");
        }
    }
    warm_up();

    let mut reader = FrameReader::default();
    // The first message carries the resource tracker's pipe, if the parent has a tracker.
    let tracker = match reader.read(sock.as_fd(), true)? {
        Read::Frame(_, fds) => fds.into_iter().next(),
        _ => return Ok(()),
    };
    let mut pending: HashMap<u32, OwnedFd> = HashMap::new();
    loop {
        let ready = sys::wait_readable(&[sock.as_fd(), wake_r.as_fd()], None)?;
        if ready[1] {
            let mut buf = [0u8; 64];
            while matches!(sys::read(wake_r.as_fd(), &mut buf), Ok(n) if n > 0) {}
        }
        // Reap on every wake-up: cheap, and robust against a coalesced signal.
        while let Some((pid, status)) = sys::wait_any()? {
            if let Some(w) = pending.remove(&pid) {
                let _ = sys::write_all(w.as_fd(), &status.exitcode().to_le_bytes());
            }
        }
        if !ready[0] {
            continue;
        }
        match reader.read(sock.as_fd(), false)? {
            Read::Pending => {}
            Read::Eof => return Ok(()),
            Read::Frame(boot, fds) => {
                let mut fds = fds.into_iter();
                let (Some(child_ctl), Some(status_w), Some(pid_w)) = (fds.next(), fds.next(), fds.next())
                else {
                    continue;
                };
                let mut boot_fds: Vec<OwnedFd> = fds.collect();
                // SAFETY: this process is single-threaded; the child only resets signal
                // dispositions, closes descriptors and runs the bootstrap, then exits.
                match unsafe { sys::fork() } {
                    Ok(0) => {
                        // The child's pid, first: should the server die before anything else, the
                        // parent still knows which process is its child.
                        let me = sys::getpid() as i32;
                        let _ = sys::write_all(pid_w.as_fd(), &me.to_le_bytes());
                        sys::set_signal_ignored(libc::SIGCHLD, false);
                        // The bootstrap's last descriptor is the tracker's pipe, from the server.
                        let tracker = tracker.as_ref().and_then(|t| sys::dup_cloexec(t.as_fd(), 3).ok());
                        boot_fds.extend(tracker);
                        let mut keep: Vec<_> = boot_fds.iter().map(|f| f.as_raw_fd()).collect();
                        keep.push(child_ctl.as_raw_fd());
                        sys::close_fds_except(&keep);
                        let _ = sys::block_signal(libc::SIGINT, false);
                        sys::exit_now(child::run_bootstrap(child_ctl, &boot, boot_fds));
                    }
                    Ok(pid) => {
                        drop(child_ctl);
                        drop(boot_fds);
                        // The child writes its pid itself.
                        drop(pid_w);
                        pending.insert(pid, status_w);
                    }
                    Err(e) => {
                        // The status pipe closes without an exit code: the parent's join reports it.
                        let code = -e.raw_os_error().unwrap_or(libc::EAGAIN);
                        let _ = sys::write_all(pid_w.as_fd(), &code.to_le_bytes());
                    }
                }
            }
        }
    }
}

/// Runs, once, what every child runs first, so that the children inherit the result instead of
/// each redoing it: the panic hook is installed, and the lazily bound C library functions the
/// child calls (`sendmsg`, `recvmsg`, `pthread_sigmask`, `signal`, `syscall`, ...) are bound. This
/// saves every child the dynamic linker's symbol lookups and the page copies they cause.
fn warm_up() {
    child::install_panic_hook();
    // The anchor's part of the target fingerprint is computed once and cached.
    let _ = child::fingerprint(warm_up as fn() as usize);
    if let Ok((a, b)) = sys::socketpair() {
        if let Ok((r, w)) = sys::pipe() {
            let _ = wire::send_frame(a.as_fd(), b"warm-up", &[r.as_fd(), w.as_fd()]);
            let _ = FrameReader::default().read(b.as_fd(), false);
        }
    }
    // Thread-local side tables register their destructors on first use.
    if let Ok((bytes, fds)) = crate::handle::serialize_with_fds(&()) {
        let _ = crate::handle::deserialize_with_fds::<()>(&bytes, fds);
    }
    let _ = sys::block_signal(libc::SIGINT, true);
    sys::set_signal_ignored(libc::SIGPIPE, true);
    let _ = sys::getppid();
    child::flush_stdio();
}
