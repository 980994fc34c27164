//! Frames over a Unix stream socket: a length-prefixed body plus descriptors passed with
//! `SCM_RIGHTS`, in proc-os's one implementation ([`proc_os::frame`]): a 12-byte header (`u64` body
//! length, `u32` descriptor count, both little-endian) followed by the body, the descriptors with
//! the header. Readers never read past the end of the frame they are reading, so several frames
//! can follow one another on one socket.

use std::io;
use std::os::fd::BorrowedFd;

pub(crate) use proc_os::frame::{FrameReader, Read};
/// At most this many descriptors per frame (Linux' `SCM_MAX_FD`).
pub(crate) use proc_os::socket::MAX_FDS;

/// Sends one frame, blocking until all of it is written.
pub(crate) fn send_frame(sock: BorrowedFd<'_>, body: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    proc_os::frame::send_frame(sock, body, fds)
}

// proc-core's own seam (`crate::sys`) still defines its copies of the socket flags and of the
// received-descriptor step, for the move of that seam into proc-os. Until then they must agree with
// proc-os's, which does the work now: the same close-on-exec receive, sends at least as free of
// SIGPIPE, and the same signature.
const _: () = assert!(crate::sys::RECV_CLOEXEC == proc_os::socket::RECV_FLAGS);
const _: () = assert!(includes(proc_os::socket::SEND_FLAGS, crate::sys::SEND_FLAGS));
const _: fn(std::os::fd::RawFd) -> io::Result<()> = crate::sys::received_fd;

/// Whether the flag set `all` holds every flag of `some`.
const fn includes(all: libc::c_int, some: libc::c_int) -> bool {
    all & some == some
}
