//! The portable POSIX backend: the one macOS uses, and Linux with the `force-portable` feature.
//!
//! Close-on-exec is set after the fact (not atomic: a thread that spawns a program with
//! `std::process::Command` at that very moment could pass it the new descriptors; POSIX offers no
//! way around that). SIGPIPE is avoided per socket with `SO_NOSIGPIPE` where the OS has it, and per
//! send with `MSG_NOSIGNAL` elsewhere.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::cvt;

cfg_if::cfg_if! {
    if #[cfg(target_vendor = "apple")] {
        /// Flags for `sendmsg`: none, `SO_NOSIGPIPE` on the socket does the job.
        pub(crate) const SEND_FLAGS: libc::c_int = 0;
    } else {
        /// Flags for `sendmsg`: no SIGPIPE when the peer is gone.
        pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
    }
}

/// Flags for `recvmsg`: none; `received_fd` sets close-on-exec afterwards.
pub(crate) const RECV_FLAGS: libc::c_int = 0;

/// A connected pair of close-on-exec Unix stream sockets (with `SO_NOSIGPIPE` where the OS has it).
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a live array of two c_ints that socketpair fills.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) })?;
    // SAFETY: both descriptors were just created and are owned by no one else.
    let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [&pair.0, &pair.1] {
        set_cloexec(fd.as_raw_fd())?;
        no_sigpipe(fd.as_raw_fd())?;
    }
    Ok(pair)
}

/// Finishes a descriptor received by `recvmsg`: marks it close-on-exec.
pub(crate) fn received_fd(fd: RawFd) -> io::Result<()> {
    set_cloexec(fd)
}

/// Sets `FD_CLOEXEC` on `fd`.
fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD takes an integer flag argument and touches no memory; a bad fd is an error.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }).map(drop)
}

/// Makes sends on a socket whose peer is gone fail with `EPIPE` instead of raising SIGPIPE. The
/// option belongs to the socket, so it travels with it to other processes.
fn no_sigpipe(fd: RawFd) -> io::Result<()> {
    cfg_if::cfg_if! {
        if #[cfg(any(target_vendor = "apple", target_os = "freebsd"))] {
            let on: libc::c_int = 1;
            // SAFETY: `on` is a live c_int and the length passed is its size.
            cvt(unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_NOSIGPIPE,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            })
            .map(drop)
        } else {
            // No such option here; `SEND_FLAGS` carries `MSG_NOSIGNAL` instead.
            let _ = fd;
            Ok(())
        }
    }
}

/// Linux maps a range's pages in one call here (`MADV_POPULATE_WRITE`); the portable backend lets
/// the writes fault them in.
///
/// # Safety
///
/// `ptr` is page-aligned and `[ptr, ptr + len)` lies inside one shared mapping of this process.
pub(crate) unsafe fn populate_write(_ptr: *mut u8, _len: usize) {}
