//! The Linux backend: atomic close-on-exec flags and `MSG_NOSIGNAL`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::cvt;

/// Flags for `sendmsg`: no SIGPIPE when the peer is gone, even where SIGPIPE is not ignored.
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;

/// Flags for `recvmsg`: received descriptors are close-on-exec atomically.
pub(crate) const RECV_FLAGS: libc::c_int = libc::MSG_CMSG_CLOEXEC;

/// A connected pair of close-on-exec Unix stream sockets.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a live array of two c_ints that socketpair fills.
    cvt(unsafe {
        libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr())
    })?;
    // SAFETY: both descriptors were just created and are owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Finishes a descriptor received with `RECV_FLAGS`: nothing left to do.
pub(crate) fn received_fd(_fd: RawFd) -> io::Result<()> {
    Ok(())
}

/// Maps the pages of `[ptr, ptr + len)` writable in one system call (`MADV_POPULATE_WRITE`,
/// Linux 5.14), instead of one page fault per page as a write would take; a hint only (older
/// kernels refuse it, and the writes then fault as usual).
///
/// # Safety
///
/// `ptr` is page-aligned and `[ptr, ptr + len)` lies inside one shared mapping of this process.
pub(crate) unsafe fn populate_write(ptr: *mut u8, len: usize) {
    // SAFETY: the caller keeps the range inside a live mapping; populating writes nothing to it.
    let _ = unsafe { libc::madvise(ptr.cast(), len, libc::MADV_POPULATE_WRITE) };
}
