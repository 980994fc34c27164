//! The operating-system calls of proc-manager (the crate's one seam): socket options and a
//! look at a connection's state.

use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};

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

/// Whether the peer of a connection closed it. The client sends nothing while it waits for an
/// answer, so a readable socket means its end (or garbage, which ends it too).
pub(crate) fn peer_gone(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: `pfd` is one valid pollfd for a descriptor the caller keeps open; zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}
