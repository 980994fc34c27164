//! The wire format of a connection: one frame per message, descriptors beside the bytes.
//!
//! A frame is a 12-byte header, the body's length as a little-endian `u64` then the number of
//! descriptors as a little-endian `u32` (the layout of proc-core's control sockets), followed by
//! the body. A `u64` length represents any message a process can hold, 4 GiB and more; an empty
//! body is a frame like any other. The descriptors travel as `SCM_RIGHTS` data of the `sendmsg`
//! that carries the header, so the receiver gets them with the header's first bytes.
//!
//! The reader never reads past the frame it is reading, so frames stay apart however the stream
//! cuts them, and descriptors are never taken with the wrong frame. A read stopped by its deadline
//! keeps what it got in [`Incoming`] and resumes there, so a timeout never desynchronizes the
//! stream.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::sys;

/// The size of a frame's header.
const HEADER: usize = 12;

/// The first allocation for a body, and the smallest growth step.
const FIRST_CHUNK: usize = 64 << 10;

/// At most this many bytes per system call (some kernels refuse more than `INT_MAX` at once).
const MAX_CHUNK: usize = 1 << 30;

/// A body buffer larger than this is not kept for the next message.
const KEEP: usize = 1 << 20;

/// Stack space for reading (and dropping) a body too large to hold.
const SCRATCH: usize = 8 << 10;

/// Sends one frame, blocking until all of it is written.
///
/// # Errors
///
/// `sendmsg` failed: `EPIPE` or `ECONNRESET` when the peer is gone.
pub(crate) fn send_frame(sock: BorrowedFd<'_>, body: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
    if fds.len() > sys::MAX_FDS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors for one message"));
    }
    let mut header = [0u8; HEADER];
    header[..8].copy_from_slice(&(body.len() as u64).to_le_bytes());
    header[8..].copy_from_slice(&(fds.len() as u32).to_le_bytes());
    let fds: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    let total = HEADER + body.len();
    let mut sent = 0;
    while sent < total {
        let (head, rest) =
            if sent < HEADER { (&header[sent..], body) } else { (&[][..], &body[sent - HEADER..]) };
        let rest = &rest[..rest.len().min(MAX_CHUNK)];
        // The descriptors go with the first call, which always carries the header's first byte.
        let attached = if sent == 0 { &fds[..] } else { &[] };
        let n = sys::send(sock, &[IoSlice::new(head), IoSlice::new(rest)], attached)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        sent += n;
    }
    Ok(())
}

/// A received message: its body (in the connection's buffer) and its descriptors.
#[derive(Debug)]
pub(crate) struct Message<'a> {
    pub(crate) body: &'a mut Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

/// The receiving state of a connection: the frame being read, kept across deadlines.
#[derive(Debug)]
pub(crate) struct Incoming {
    header: [u8; HEADER],
    /// Bytes of the header received; 0 between frames.
    header_len: usize,
    /// The body's length, once the header is whole.
    len: u64,
    /// Bytes of the body received so far.
    received: u64,
    /// The body: the bytes received, then zeroes where the next receive lands (never past the
    /// frame). The allocation is reused for the next message, up to `KEEP` bytes.
    body: Vec<u8>,
    /// The body is larger than this process can hold; it is read and dropped.
    skipping: bool,
    fds: Vec<OwnedFd>,
    /// Some of the frame's descriptors did not make it into this process.
    fds_lost: bool,
    /// The largest body this process tries to hold.
    limit: u64,
}

impl Default for Incoming {
    fn default() -> Self {
        Incoming {
            header: [0; HEADER],
            header_len: 0,
            len: 0,
            received: 0,
            body: Vec::new(),
            skipping: false,
            fds: Vec::new(),
            fds_lost: false,
            limit: isize::MAX as u64,
        }
    }
}

impl Incoming {
    /// A state that treats bodies longer than `limit` as too large.
    #[cfg(test)]
    fn with_limit(limit: u64) -> Self {
        Incoming { limit, ..Incoming::default() }
    }

    /// Whether part of a frame has been received (and the rest not).
    pub(crate) fn has_partial(&self) -> bool {
        self.header_len > 0
    }

    /// Reads until a whole message is in, or until `deadline` (`None`: as long as it takes; a
    /// deadline in the past: take only what is there already).
    ///
    /// # Errors
    ///
    /// - [`Error::Disconnected`]: the stream ended between frames.
    /// - [`Error::Truncated`]: the stream ended inside a frame; the part is dropped.
    /// - [`Error::Timeout`]: the deadline passed; the part received is kept for the next call.
    /// - [`Error::TooLarge`]: the frame was read and dropped.
    /// - [`Error::Os`]: a system call failed, or the frame (consumed) lost its descriptors.
    pub(crate) fn read(&mut self, sock: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<Message<'_>> {
        loop {
            if self.header_len < HEADER {
                if self.header_len == 0 {
                    self.begin();
                }
                let buf = &mut self.header[self.header_len..];
                let got = recv_within(sock, buf, &mut self.fds, true, deadline)?;
                self.fds_lost |= got.fds_lost;
                match got.len {
                    0 if self.header_len == 0 => return Err(Error::Disconnected),
                    0 => return Err(self.truncated()),
                    n => self.header_len += n,
                }
                if self.header_len == HEADER {
                    self.len = self.header_fields().0;
                    self.skipping = self.len > self.limit || usize::try_from(self.len).is_err();
                }
                continue;
            }
            if self.received == self.len {
                return self.finish();
            }
            let left = self.len - self.received;
            let got = if self.skipping {
                let mut scratch = [0u8; SCRATCH];
                let n = usize::try_from(left).map_or(SCRATCH, |l| l.min(SCRATCH));
                recv_within(sock, &mut scratch[..n], &mut self.fds, false, deadline)?
            } else {
                // Not skipping: the whole body fits in a usize.
                let filled = self.received as usize;
                if filled == self.body.len() && !self.make_room(left as usize) {
                    // Out of memory: drop what is here and read the rest of the frame away.
                    self.body = Vec::new();
                    self.skipping = true;
                    continue;
                }
                let end = self.body.len().min(filled + MAX_CHUNK);
                recv_within(sock, &mut self.body[filled..end], &mut self.fds, false, deadline)?
            };
            self.fds_lost |= got.fds_lost;
            match got.len {
                0 => return Err(self.truncated()),
                n => self.received += n as u64,
            }
        }
    }

    /// The body length and the number of descriptors a whole header announces.
    fn header_fields(&self) -> (u64, usize) {
        let [l0, l1, l2, l3, l4, l5, l6, l7, n0, n1, n2, n3] = self.header;
        (u64::from_le_bytes([l0, l1, l2, l3, l4, l5, l6, l7]), u32::from_le_bytes([n0, n1, n2, n3]) as usize)
    }

    /// Starts a new frame.
    fn begin(&mut self) {
        self.body.clear();
        if self.body.capacity() > KEEP {
            self.body = Vec::new();
        }
        self.len = 0;
        self.received = 0;
    }

    /// Extends the body with zeroes for the next receive: at least 64 KiB, doubling, never past
    /// the frame (`left` bytes to go). False when there is no memory for it.
    fn make_room(&mut self, left: usize) -> bool {
        let len = self.body.len();
        let step = FIRST_CHUNK.max(len).min(left);
        if self.body.try_reserve_exact(step).is_err() {
            return false;
        }
        self.body.resize(len + step, 0);
        true
    }

    /// Ends a whole frame.
    fn finish(&mut self) -> Result<Message<'_>> {
        self.header_len = 0;
        let fds = std::mem::take(&mut self.fds);
        let announced = self.header_fields().1;
        let fds_lost = std::mem::take(&mut self.fds_lost) || fds.len() != announced;
        if std::mem::take(&mut self.skipping) {
            return Err(Error::TooLarge(self.len));
        }
        if fds_lost {
            return Err(Error::Os(io::Error::new(
                io::ErrorKind::InvalidData,
                "the handles of a message were lost in transit (too many open files?)",
            )));
        }
        Ok(Message { body: &mut self.body, fds })
    }

    /// Drops a frame cut short by the end of the stream.
    fn truncated(&mut self) -> Error {
        self.header_len = 0;
        self.fds.clear();
        self.fds_lost = false;
        self.skipping = false;
        self.begin();
        Error::Truncated
    }
}

/// One receive into `buf`, waiting for data until `deadline`. A reset connection reads as the
/// end of the stream (Linux reports a peer that closed with unread data that way, once).
fn recv_within(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    with_fds: bool,
    deadline: Option<Instant>,
) -> Result<sys::Received> {
    loop {
        match sys::recv(sock, buf, fds, with_fds, deadline.is_some()) {
            Ok(Some(got)) => return Ok(got),
            Ok(None) => {
                let ready = sys::wait_readable(&[sock], deadline).map_err(Error::Os)?;
                if !ready.first().copied().unwrap_or(false) {
                    return Err(Error::Timeout);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Ok(sys::Received { len: 0, fds_lost: false })
            }
            Err(e) => return Err(Error::Os(e)),
        }
    }
}

#[cfg(test)]
mod test;
