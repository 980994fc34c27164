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
