//! Frames over a Unix stream socket: a 12-byte header, the body, and descriptors beside the bytes.
//!
//! The header is the body's length as a little-endian `u64`, then the number of descriptors as a
//! little-endian `u32`. A `u64` length represents any message a process can hold, 4 GiB and more;
//! an empty body is a frame like any other. The descriptors travel as `SCM_RIGHTS` data of the
//! `sendmsg` that carries the header's first byte, so the receiver gets them with the header.
//! Each `sendmsg` of [`send_frame`] carries at most one frame.
//!
//! [`FrameReader`] reads one frame at a time and never reads past the end of the frame it is
//! reading, so several frames can follow one another on a socket that changes hands between them
//! (proc-core's control sockets). A reader that reads ahead to save system calls (proc-queue's
//! connections) builds on [`header`], [`parse_header`] and [`crate::socket::recv`] instead.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::socket::{self, MAX_FDS};

/// The size of a frame's header.
pub const HEADER: usize = 12;

/// A body without descriptors up to this long is sent from one contiguous copy of the frame.
const SMALL: usize = 500;

/// At most this many bytes per system call (some kernels refuse more than `INT_MAX` at once).
const MAX_CHUNK: usize = 1 << 30;

/// The first allocation for a body, and the smallest growth step.
const FIRST_CHUNK: usize = 64 << 10;

/// The header of a frame whose body is `len` bytes long and that carries `fds` descriptors.
///
/// # Examples
///
/// ```
/// let h = proc_os::frame::header(5, 1);
/// assert_eq!(proc_os::frame::parse_header(&h), (5, 1));
/// ```
#[inline]
pub fn header(len: u64, fds: u32) -> [u8; HEADER] {
    let mut header = [0u8; HEADER];
    header[..8].copy_from_slice(&len.to_le_bytes());
    header[8..].copy_from_slice(&fds.to_le_bytes());
    header
}

/// The body length and the number of descriptors a header announces.
#[inline]
pub fn parse_header(header: &[u8; HEADER]) -> (u64, usize) {
    let [l0, l1, l2, l3, l4, l5, l6, l7, n0, n1, n2, n3] = *header;
    (u64::from_le_bytes([l0, l1, l2, l3, l4, l5, l6, l7]), u32::from_le_bytes([n0, n1, n2, n3]) as usize)
}

/// Sends one frame, blocking until all of it is written. The descriptors go with the first
/// `sendmsg`, which always carries the header's first byte. A small body without descriptors goes
/// out with one plain `send` of one contiguous copy, which costs the kernel least.
///
/// # Errors
///
/// - `InvalidInput`: more than [`MAX_FDS`] descriptors.
/// - `sendmsg` failed: `EPIPE` or `ECONNRESET` when the peer is gone.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
///
/// let (a, b) = proc_os::socket::socketpair().unwrap();
/// let (passed, _other) = proc_os::socket::socketpair().unwrap();
/// proc_os::frame::send_frame(a.as_fd(), b"hello", &[passed.as_fd()]).unwrap();
/// let mut reader = proc_os::frame::FrameReader::default();
/// let proc_os::frame::Read::Frame(body, fds) = reader.read(b.as_fd(), true).unwrap() else { panic!() };
/// assert_eq!((body.as_slice(), fds.len()), (&b"hello"[..], 1));
/// ```
pub fn send_frame<F: AsFd>(sock: BorrowedFd<'_>, body: &[u8], fds: &[F]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors for one message"));
    }
    // At most MAX_FDS, so the count fits a u32.
    let header = header(body.len() as u64, fds.len() as u32);
    let total = HEADER + body.len();
    if fds.is_empty() && body.len() <= SMALL {
        let mut frame = [0u8; HEADER + SMALL];
        frame[..HEADER].copy_from_slice(&header);
        frame[HEADER..total].copy_from_slice(body);
        let mut sent = 0;
        while sent < total {
            match socket::send_bytes(sock, &frame[sent..total])? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => sent += n,
            }
        }
        return Ok(());
    }
    let mut sent = 0;
    while sent < total {
        let (head, rest) =
            if sent < HEADER { (&header[sent..], body) } else { (&[][..], &body[sent - HEADER..]) };
        let rest = &rest[..rest.len().min(MAX_CHUNK)];
        // The descriptors go with the first call, which always carries the header's first byte.
        let attached = if sent == 0 { fds } else { &[] };
        let n =
            socket::send_with(sock, &[IoSlice::new(head), IoSlice::new(rest)], attached, socket::SEND_FLAGS)?
                .ok_or(io::ErrorKind::WouldBlock)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        sent += n;
    }
    Ok(())
}

/// What a [`FrameReader::read`] step produced.
#[derive(Debug)]
pub enum Read {
    /// A whole frame: its body and its descriptors.
    Frame(Vec<u8>, Vec<OwnedFd>),
    /// Not yet a whole frame (only when not blocking).
    Pending,
    /// The peer closed the connection before a frame began.
    Eof,
}

/// Reads frames incrementally, never past the end of the current frame, so a large frame can be
/// taken in pieces while waiting on other descriptors too. The body buffer grows as bytes arrive,
/// so a garbled length costs nothing until the bytes really come.
#[derive(Debug, Default)]
pub struct FrameReader {
    header: [u8; HEADER],
    header_len: usize,
    /// The body received so far.
    body: Vec<u8>,
    /// The length the header announced.
    body_len: usize,
    fds: Vec<OwnedFd>,
}

impl FrameReader {
    /// Reads whatever is available (`blocking == false`) or until a frame is whole.
    ///
    /// # Errors
    ///
    /// - `UnexpectedEof`: the stream ended inside a frame.
    /// - `InvalidData`: the frame lost its descriptors (in transit, or at the descriptor limit).
    /// - `OutOfMemory`: no memory for the body the header announced.
    /// - `recvmsg` failed.
    pub fn read(&mut self, sock: BorrowedFd<'_>, blocking: bool) -> io::Result<Read> {
        loop {
            if self.header_len == HEADER && self.body.len() == self.body_len {
                let want = parse_header(&self.header).1;
                let fds = std::mem::take(&mut self.fds);
                self.header_len = 0;
                if fds.len() != want {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "frame lost its descriptors"));
                }
                return Ok(Read::Frame(std::mem::take(&mut self.body), fds));
            }
            if self.header_len < HEADER {
                let (buf, fds) = (&mut self.header[self.header_len..], &mut self.fds);
                match recv_some(sock, buf, fds, blocking)? {
                    None => return Ok(Read::Pending),
                    Some(0) if self.header_len == 0 => return Ok(Read::Eof),
                    Some(0) => return Err(closed_inside()),
                    Some(n) => self.header_len += n,
                }
                if self.header_len == HEADER {
                    let len = parse_header(&self.header).0;
                    self.body_len = usize::try_from(len)
                        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame too large"))?;
                    self.body = Vec::new();
                }
                continue;
            }
            // Make room for the next piece: at least 64 KiB, doubling, never past the frame.
            let filled = self.body.len();
            if filled == self.body.capacity() {
                let step = FIRST_CHUNK.max(filled).min(self.body_len - filled);
                self.body
                    .try_reserve_exact(step)
                    .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "frame too large"))?;
            }
            let room = (self.body.capacity() - filled).min(self.body_len - filled);
            self.body.resize(filled + room, 0);
            let got = recv_some(sock, &mut self.body[filled..], &mut self.fds, blocking);
            let n = match got {
                Ok(Some(n)) => n,
                Ok(None) | Err(_) => 0,
            };
            self.body.truncate(filled + n);
            match got? {
                None => return Ok(Read::Pending),
                Some(0) => return Err(closed_inside()),
                Some(_) => {}
            }
        }
    }
}

fn closed_inside() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside a frame")
}

/// Receives into `buf`, with room for descriptors. `None`: nothing available without blocking.
/// `Some(0)`: end of stream.
fn recv_some(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    blocking: bool,
) -> io::Result<Option<usize>> {
    if buf.is_empty() {
        return Ok(Some(0));
    }
    match socket::recv(sock, buf, fds, true, !blocking)? {
        None => Ok(None),
        Some(got) if got.fds_lost => {
            Err(io::Error::new(io::ErrorKind::InvalidData, "descriptors truncated in transit"))
        }
        Some(got) => Ok(Some(got.len)),
    }
}

#[cfg(test)]
mod test;
