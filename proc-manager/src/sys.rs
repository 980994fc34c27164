//! The operating-system calls of proc-manager (the crate's one seam): socket options, a look at
//! a connection's state, and letting go of connections in a child made by fork.

use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;

/// Turns TCP keepalive on, so that a client whose machine vanished is noticed (its session
/// ends, its locks are released).
pub(crate) fn keepalive(stream: &TcpStream) {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor, and a pointer to a c_int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_KEEPALIVE,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!("cannot turn TCP keepalive on");
    }
}

/// Reads what is there without waiting: `Ok(None)` when nothing is (`Ok(Some(0))` is the end).
pub(crate) fn recv_nowait(fd: RawFd, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    // SAFETY: `buf` is writable for its length; MSG_DONTWAIT makes the call return at once.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n >= 0 {
        return Ok(Some(n as usize));
    }
    let e = std::io::Error::last_os_error();
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(None),
        _ => Err(e),
    }
}

/// Whether the peer of a connection closed it. The client sends nothing while it waits for an
/// answer, so a readable socket means its end (or garbage, which ends it too).
pub(crate) fn peer_gone(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: `pfd` is one valid pollfd for a descriptor the caller keeps open; zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

/// The descriptors of this process's manager connections (-1: a free slot), so that a child
/// made by fork can let go of its copies at once (see [`ForkGuard`]).
static CONNECTIONS: [AtomicI32; 512] = [const { AtomicI32::new(-1) }; 512];

/// Keeps a client connection's descriptor on the list that a child made by `fork` neutralizes
/// the moment it is born: its copy of the descriptor is made to point at `/dev/null`, so the
/// parent's session ends when the parent does, not when the last forked child does.
///
/// Drop the guard before closing the descriptor (declare it first in the owning struct): a
/// number still listed after its close could be reused by an unrelated descriptor, which a
/// forked child would then lose. Best effort past 512 connections at once (the rest are only
/// closed when the child first uses a manager, or exits).
#[derive(Debug)]
pub(crate) struct ForkGuard(Option<usize>);

impl ForkGuard {
    pub(crate) fn new(fd: RawFd) -> ForkGuard {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            // SAFETY: registers a handler that only makes async-signal-safe calls.
            let rc = unsafe { libc::pthread_atfork(None, None, Some(forget_connections_in_child)) };
            if rc != 0 {
                tracing::debug!("cannot register the fork handler for manager connections");
            }
        });
        let slot = CONNECTIONS
            .iter()
            .position(|s| s.compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Relaxed).is_ok());
        ForkGuard(slot)
    }
}

impl Drop for ForkGuard {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            CONNECTIONS[slot].store(-1, Ordering::Release);
        }
    }
}

/// Runs in the child right after `fork`, with one thread: points every listed connection at
/// `/dev/null`. The descriptor numbers stay taken (their owners close them later), but the
/// sockets are no longer held by this process.
extern "C" fn forget_connections_in_child() {
    let mut null = -1;
    for slot in &CONNECTIONS {
        let fd = slot.load(Ordering::Acquire);
        if fd < 0 {
            continue;
        }
        if null < 0 {
            // SAFETY: open of a constant, NUL-terminated path; async-signal-safe.
            null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            if null < 0 {
                return;
            }
        }
        // SAFETY: dup2 and fcntl on descriptors this process holds; both async-signal-safe.
        unsafe {
            if libc::dup2(null, fd) >= 0 {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
    if null >= 0 {
        // SAFETY: closes the descriptor opened above.
        unsafe { libc::close(null) };
    }
}
