//! Frames over a Unix stream socket: a length-prefixed body plus descriptors passed with `SCM_RIGHTS`.
//!
//! A frame is a 12-byte header (`u64` body length, `u32` descriptor count, both little-endian)
//! followed by the body. The descriptors travel as ancillary data of the first `sendmsg`, which
//! carries the header, so the receiver gets them with the header. Readers never read past the end
//! of the frame they are reading, so several frames can follow one another on one socket.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::sys;

/// At most this many descriptors per frame (Linux' `SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;

const HEADER: usize = 12;

/// Sends one frame, blocking until all of it is written.
pub(crate) fn send_frame(sock: BorrowedFd<'_>, body: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors in one frame"));
    }
    let mut header = [0u8; HEADER];
    header[..8].copy_from_slice(&(body.len() as u64).to_le_bytes());
    header[8..].copy_from_slice(&(fds.len() as u32).to_le_bytes());
    let raw: Vec<_> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let flags = MsgFlags::from_bits_retain(sys::SEND_FLAGS);
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &[ControlMessage::ScmRights(&raw)] };
    // The first call carries the header (and the descriptors); it may also take some of the body.
    let sent = sys::retry(|| {
        socket::sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&header), IoSlice::new(body)],
            cmsgs,
            flags,
            None,
        )
        .map_err(io::Error::from)
    })?;
    let mut done = sent;
    // A stream socket may accept part of the header only; finish it without descriptors.
    while done < HEADER {
        done += send_some(sock, &header[done..], flags)?;
    }
    let mut at = done - HEADER;
    while at < body.len() {
        at += send_some(sock, &body[at..], flags)?;
    }
    Ok(())
}

fn send_some(sock: BorrowedFd<'_>, buf: &[u8], flags: MsgFlags) -> io::Result<usize> {
    sys::retry(|| socket::send(sock.as_raw_fd(), buf, flags).map_err(io::Error::from))
}

/// What a read step produced.
#[derive(Debug)]
pub(crate) enum Read {
    /// A whole frame.
    Frame(Vec<u8>, Vec<OwnedFd>),
    /// Not yet a whole frame (only when not blocking).
    Pending,
    /// The peer closed the connection before a frame began.
    Eof,
}

/// Reads frames incrementally, so a large frame can be taken in pieces while waiting on other
/// descriptors too. The body buffer grows as bytes arrive, so a garbled length costs nothing
/// until the bytes really come.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    header: [u8; HEADER],
    header_len: usize,
    /// The body received so far.
    body: Vec<u8>,
    /// The length the header announced.
    body_len: usize,
    fds: Vec<OwnedFd>,
}

/// The first allocation for a body, and the smallest growth step.
const FIRST_CHUNK: usize = 64 << 10;

impl FrameReader {
    /// Reads whatever is available (`blocking == false`) or until a frame is whole.
    pub(crate) fn read(&mut self, sock: BorrowedFd<'_>, blocking: bool) -> io::Result<Read> {
        loop {
            if self.header_len == HEADER && self.body.len() == self.body_len {
                let want = u32::from_le_bytes(self.header[8..].try_into().unwrap_or_default()) as usize;
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
                    let len = u64::from_le_bytes(self.header[..8].try_into().unwrap_or_default());
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
                Ok(None) => 0,
                Err(_) => 0,
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

/// Receives into `buf`. `None`: nothing available without blocking. `Some(0)`: end of stream.
fn recv_some(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    blocking: bool,
) -> io::Result<Option<usize>> {
    if buf.is_empty() {
        return Ok(Some(0));
    }
    let mut flags = MsgFlags::from_bits_retain(sys::RECV_CLOEXEC);
    if !blocking {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(buf)];
    loop {
        match socket::recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) {
            Ok(msg) => {
                let cmsgs = msg.cmsgs().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "descriptors truncated in transit")
                })?;
                for c in cmsgs {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        for fd in raw {
                            // SAFETY: the kernel just installed `fd` in this process for us.
                            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                            sys::received_fd(fd.as_raw_fd())?;
                            fds.push(fd);
                        }
                    }
                }
                return Ok(Some(msg.bytes));
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, AsRawFd};

    use super::{send_frame, FrameReader, Read};
    use crate::sys;

    #[test]
    fn frames_keep_their_bounds_and_descriptors() {
        let (a, b) = sys::socketpair().unwrap();
        let (pr, pw) = sys::pipe().unwrap();
        send_frame(a.as_fd(), b"first", &[pw.as_fd()]).unwrap();
        send_frame(a.as_fd(), b"", &[]).unwrap();
        send_frame(a.as_fd(), b"third", &[pr.as_fd(), pw.as_fd()]).unwrap();
        let mut reader = FrameReader::default();
        let Read::Frame(body, fds) = reader.read(b.as_fd(), true).unwrap() else { panic!("no frame") };
        assert_eq!((body.as_slice(), fds.len()), (&b"first"[..], 1));
        // The received descriptor is a working copy of the pipe's write end.
        // SAFETY: a 1-byte write from a live buffer.
        assert_eq!(unsafe { libc::write(fds[0].as_raw_fd(), b"x".as_ptr().cast(), 1) }, 1);
        let Read::Frame(body, fds) = reader.read(b.as_fd(), true).unwrap() else { panic!("no frame") };
        assert!(body.is_empty() && fds.is_empty(), "an empty frame is a frame");
        let Read::Frame(body, fds) = reader.read(b.as_fd(), true).unwrap() else { panic!("no frame") };
        assert_eq!((body.as_slice(), fds.len()), (&b"third"[..], 2));
        assert!(matches!(reader.read(b.as_fd(), false).unwrap(), Read::Pending));
        drop(a);
        assert!(matches!(reader.read(b.as_fd(), false).unwrap(), Read::Eof));
    }

    #[test]
    fn a_large_frame_is_read_in_pieces_without_blocking() {
        let (a, b) = sys::socketpair().unwrap();
        let body: Vec<u8> = (0..4 << 20).map(|i: u32| i as u8).collect();
        let sent = body.clone();
        let writer = std::thread::spawn(move || send_frame(a.as_fd(), &sent, &[]).unwrap());
        let mut reader = FrameReader::default();
        let got = loop {
            match reader.read(b.as_fd(), false).unwrap() {
                Read::Frame(got, _) => break got,
                Read::Pending => {
                    sys::wait_readable(&[b.as_fd()], None).unwrap();
                }
                Read::Eof => panic!("early end"),
            }
        };
        writer.join().unwrap();
        assert!(got == body);
    }

    #[test]
    fn end_of_stream_inside_a_frame_is_an_error() {
        let (a, b) = sys::socketpair().unwrap();
        // A header announcing 100 bytes, then only 3 of them.
        let mut header = 100u64.to_le_bytes().to_vec();
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(b"abc");
        // SAFETY: a write from a live buffer of `header.len()` bytes.
        let n = unsafe { libc::write(a.as_raw_fd(), header.as_ptr().cast(), header.len()) };
        assert_eq!(n, header.len() as isize);
        drop(a);
        let e = FrameReader::default().read(b.as_fd(), true).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
