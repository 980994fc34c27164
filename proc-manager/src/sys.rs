//! The operating-system calls of proc-manager (the crate's one seam): socket options, a look at
//! a connection's state.

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
