//! Unix stream sockets that carry descriptors: close-on-exec, SIGPIPE-free pairs, `sendmsg` and
//! `recvmsg` with `SCM_RIGHTS`, and the small calls around them (`shutdown`, socket options, a
//! doorbell, waiting for the peer's hang-up). Receiving goes through nix, whose walk over received
//! control messages is checked; sending builds its one control message itself, on the stack,
//! because nix's `sendmsg` allocates it (see [`send`]).
//!
//! Every descriptor made or received here is close-on-exec, and a send to a socket whose peer is
//! gone fails with `EPIPE` instead of raising SIGPIPE, even in a host program that does not ignore
//! SIGPIPE.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags};
use nix::sys::time::TimeVal;

use crate::fd::retry;
use crate::sys::{Backend, Os};

/// At most this many descriptors travel with one message (Linux' `SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

/// Flags for every send on a stream socket: `MSG_NOSIGNAL`, except where the socket's own
/// `SO_NOSIGPIPE` does that job (macOS), where it is 0.
pub const SEND_FLAGS: libc::c_int = <Os as Backend>::SEND_FLAGS;

/// Flags for `recvmsg`: `MSG_CMSG_CLOEXEC` on Linux; 0 elsewhere, where [`received_fd`] sets
/// close-on-exec after the call.
pub const RECV_FLAGS: libc::c_int = <Os as Backend>::RECV_FLAGS;

/// The largest message that a process may write to a fresh Unix stream socket that nobody reads
/// yet without blocking: 32 KiB on Linux, whose stream buffers hold about 200 KiB by default;
/// 2 KiB elsewhere (macOS buffers 8 KiB). A child's result larger than this travels in anonymous
/// memory instead, so that its parent need not read while it waits for the child's end.
///
/// For multiproc's crates; not a stable API.
pub const INLINE_RESULT_MAX: usize = <Os as Backend>::INLINE_RESULT_MAX;

/// The bytes of control-message space that `MAX_FDS` descriptors take.
const CMSG_BYTES: usize = {
    let payload = (MAX_FDS * std::mem::size_of::<RawFd>()) as libc::c_uint;
    // libc: nix's `cmsg_space!` is not usable in a constant.
    // SAFETY: CMSG_SPACE is arithmetic on its argument; it touches no memory.
    (unsafe { libc::CMSG_SPACE(payload) }) as usize
};

/// Room for the control message of one receive, aligned as `cmsghdr` requires.
#[repr(C, align(8))]
struct CmsgBuffer([u8; CMSG_BYTES]);

/// A connected pair of close-on-exec Unix stream sockets, on which sends never raise SIGPIPE
/// (with [`SEND_FLAGS`] on Linux, `SO_NOSIGPIPE` on macOS).
///
/// # Errors
///
/// `socketpair` or `fcntl` failed (out of descriptors).
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
///
/// let (a, b) = proc_os::socket::socketpair().unwrap();
/// proc_os::socket::send_bytes(a.as_fd(), b"hi").unwrap();
/// let mut buf = [0u8; 2];
/// let got = proc_os::socket::recv(b.as_fd(), &mut buf, &mut Vec::new(), false, false).unwrap();
/// assert_eq!(got.map(|r| r.len), Some(2));
/// ```
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    Os::socketpair()
}

/// Finishes a descriptor received by a `recvmsg` made with [`RECV_FLAGS`]: marks it close-on-exec
/// where the flags could not (nothing to do on Linux).
///
/// # Errors
///
/// `fcntl` failed (`fd` is not open).
pub fn received_fd(fd: BorrowedFd<'_>) -> io::Result<()> {
    Os::received_fd(fd)
}

/// Writes some of `bufs` to `sock` with one `sendmsg`, attaching `fds` (`SCM_RIGHTS`) when there
/// are any, and returns how many bytes went. Blocks until at least one byte is written; `EINTR`
/// (which means nothing was written) is retried.
///
/// # Errors
///
/// - `InvalidInput`: more than [`MAX_FDS`] descriptors.
/// - `WouldBlock`: the socket is non-blocking (or has a send timeout) and its buffer is full.
/// - `sendmsg` failed otherwise: `EPIPE` or `ECONNRESET` when the peer is gone.
pub fn send(sock: BorrowedFd<'_>, bufs: &[IoSlice<'_>], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    send_with(sock, bufs, fds, SEND_FLAGS)?.ok_or_else(|| io::ErrorKind::WouldBlock.into())
}

/// As [`send`], without waiting: `None` when the socket's buffer is full (`EAGAIN`), for a sender
/// that waits for writability itself (an async one).
///
/// # Errors
///
/// - `InvalidInput`: more than [`MAX_FDS`] descriptors.
/// - `sendmsg` failed otherwise: `EPIPE` or `ECONNRESET` when the peer is gone.
pub fn send_nowait(
    sock: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
) -> io::Result<Option<usize>> {
    send_with(sock, bufs, fds, SEND_FLAGS | libc::MSG_DONTWAIT)
}

/// Descriptors up to this many travel with a control message built in a small buffer.
const FEW_FDS: usize = 8;

/// The bytes of control-message space that `FEW_FDS` descriptors take.
const FEW_CMSG_BYTES: usize = {
    let payload = (FEW_FDS * std::mem::size_of::<RawFd>()) as libc::c_uint;
    // SAFETY: CMSG_SPACE is arithmetic on its argument; it touches no memory.
    (unsafe { libc::CMSG_SPACE(payload) }) as usize
};

/// Room for the control message of a send with few descriptors, aligned as `cmsghdr` requires.
#[repr(C, align(8))]
struct FewCmsgBuffer([u8; FEW_CMSG_BYTES]);

/// One `sendmsg` of `bufs` with `fds` attached (`SCM_RIGHTS`) when there are any; `EINTR` is
/// retried and `EAGAIN` is `None`. The control message is built on the stack, not allocated (as
/// nix's `sendmsg` does): a fork-server child sends its first messages through here, and a child
/// that allocates nothing never copies the heap pages it shares with the server.
pub(crate) fn send_with<F: AsFd>(
    sock: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[F],
    flags: libc::c_int,
) -> io::Result<Option<usize>> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors for one message"));
    }
    let mut few = FewCmsgBuffer([0; FEW_CMSG_BYTES]);
    let mut many;
    let space: &mut [u8] = if fds.len() <= FEW_FDS {
        &mut few.0
    } else {
        many = CmsgBuffer([0; CMSG_BYTES]);
        &mut many.0
    };
    // SAFETY: an all-zero `msghdr` is a valid value (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is guaranteed ABI-compatible with `iovec` on Unix; `sendmsg` only reads them.
    msg.msg_iov = bufs.as_ptr().cast_mut().cast();
    msg.msg_iovlen = bufs.len() as _;
    if !fds.is_empty() {
        // At most MAX_FDS descriptors: the payload fits a c_uint, and its space fits `space`.
        let payload = (fds.len() * std::mem::size_of::<RawFd>()) as libc::c_uint;
        msg.msg_control = space.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is arithmetic on its argument.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(payload) } as _;
        // SAFETY: `msg_control` points at `msg_controllen` zeroed bytes of `space`, aligned for
        // `cmsghdr`, with room for one header and `payload` bytes (CMSG_SPACE): CMSG_FIRSTHDR
        // returns a header inside it, and the descriptors written from CMSG_DATA (aligned for
        // them: CMSG_DATA follows the header at its own alignment) end within it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as _;
            let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                // One by one (volatile), so that the compiler does not turn the loop into a call
                // of the C library's `memcpy`: see `sys` on what each function of the library
                // costs a fork-server child.
                data.add(i).write_volatile(fd.as_fd().as_raw_fd());
            }
        }
    }
    // SAFETY: `msg` points at `bufs` (live, only read during the call) and at the control message
    // built above in `space`, which outlives the call.
    match retry(|| unsafe { Os::sendmsg(sock, &msg, flags) }) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        other => other.map(Some),
    }
}

/// Writes some of `buf` to `sock` with one `send` (no descriptors), and returns how many bytes
/// went. Blocks until at least one byte is written; `EINTR` is retried. Cheaper for the kernel
/// than a `sendmsg`, which copies in a message header and an I/O vector. (The backend's `send`,
/// inlined: this is a small message's whole path.)
///
/// # Errors
///
/// `send` failed: `EPIPE` or `ECONNRESET` when the peer is gone.
#[inline]
pub fn send_bytes(sock: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    retry(|| Os::send(sock, buf, SEND_FLAGS))
}

/// What one [`recv`] produced.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Bytes received; 0 means end of stream.
    pub len: usize,
    /// Descriptors came with the bytes but the kernel could not hand them all over (the process is
    /// at its descriptor limit); the ones it did install cannot be recovered.
    pub fds_lost: bool,
}

/// Receives into `buf` with one `recvmsg`, appending any descriptors that come along to `fds`
/// (close-on-exec). With `dontwait`, `Ok(None)` means nothing is there yet; without it, the call
/// blocks until something is, or until the socket's receive timeout (see [`set_recv_timeout`])
/// passes, which is `Ok(None)` too. `EINTR` is retried.
///
/// Only when `with_fds` is set is there room for descriptors; without it any that arrive are
/// closed by the kernel (and reported as lost).
///
/// # Errors
///
/// `recvmsg` failed (`ECONNRESET`: the peer closed with unread data).
pub fn recv(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    with_fds: bool,
    dontwait: bool,
) -> io::Result<Option<Received>> {
    let mut flags = MsgFlags::from_bits_retain(RECV_FLAGS);
    if dontwait {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let mut space = CmsgBuffer([0; CMSG_BYTES]);
    let mut iov = [IoSliceMut::new(buf)];
    loop {
        let cmsg = if with_fds { Some(&mut space.0[..]) } else { None };
        let msg = match socket::recvmsg::<()>(sock.as_raw_fd(), &mut iov, cmsg, flags) {
            Ok(msg) => msg,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut fds_lost = msg.flags.contains(MsgFlags::MSG_CTRUNC);
        // nix refuses to walk truncated control data; then `fds_lost` is already set.
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    for fd in raw {
                        // SAFETY: the kernel has just installed `fd` in this process for this
                        // message; nothing else owns it.
                        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                        match received_fd(fd.as_fd()) {
                            Ok(()) => fds.push(fd),
                            Err(_) => fds_lost = true,
                        }
                    }
                }
            }
        }
        return Ok(Some(Received { len: msg.bytes, fds_lost }));
    }
}

/// Receives with one `recvmsg` into the unused capacity of `buf`, at most `max` bytes (and no
/// more than that capacity), and extends `buf` by what came: a receive into new memory that
/// never writes it first. No room for descriptors: any that arrive are closed by the kernel and
/// reported as lost. Otherwise as [`recv`] (`dontwait`, `Ok(None)`, `EINTR`).
///
/// # Errors
///
/// `recvmsg` failed (`ECONNRESET`: the peer closed with unread data).
pub fn recv_spare(
    sock: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    max: usize,
    dontwait: bool,
) -> io::Result<Option<Received>> {
    let spare = buf.spare_capacity_mut();
    let want = max.min(spare.len());
    let mut iov = libc::iovec { iov_base: spare.as_mut_ptr().cast(), iov_len: want };
    // SAFETY: an all-zero `msghdr` is a valid value (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let mut flags = RECV_FLAGS;
    if dontwait {
        flags |= libc::MSG_DONTWAIT;
    }
    loop {
        // SAFETY: `msg` points at one iovec of `want` bytes of `buf`'s spare capacity, writable
        // and alive for the call; the kernel writes at most that many bytes there.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) };
        if n < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                Errno::EAGAIN => return Ok(None),
                e => return Err(e.into()),
            }
        }
        let len = n as usize;
        // SAFETY: the kernel initialized the first `len` bytes of the spare capacity (`len` is at
        // most `want`, so within it).
        unsafe { buf.set_len(buf.len() + len) };
        return Ok(Some(Received { len, fds_lost: msg.msg_flags & libc::MSG_CTRUNC != 0 }));
    }
}

/// Reads what `sock` holds without waiting: `Ok(None)` when nothing is there (or the call was
/// interrupted), `Ok(Some(0))` at the end of the stream.
///
/// # Errors
///
/// `recv` failed.
pub fn recv_nowait(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match socket::recv(sock.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
        Ok(n) => Ok(Some(n)),
        Err(Errno::EAGAIN | Errno::EINTR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Sets the receive timeout (`SO_RCVTIMEO`) of `sock`, for every process that holds it: a blocking
/// receive that waits that long fails with `EAGAIN`, which [`recv`] reports as nothing there.
///
/// # Errors
///
/// `setsockopt` failed (`sock` is not a socket).
pub fn set_recv_timeout(sock: BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    let tv = TimeVal::new(
        libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        // Below a million: fits `suseconds_t` everywhere (`i64` on Linux, `i32` on macOS).
        timeout.subsec_micros() as libc::suseconds_t,
    );
    socket::setsockopt(&sock, sockopt::ReceiveTimeout, &tv).map_err(io::Error::from)
}

/// Turns TCP (or any socket's) keepalive on, so that a peer whose machine vanished is noticed.
///
/// # Errors
///
/// `setsockopt` failed (`sock` is not a socket).
pub fn set_keepalive(sock: BorrowedFd<'_>) -> io::Result<()> {
    socket::setsockopt(&sock, sockopt::KeepAlive, &true).map_err(io::Error::from)
}

/// Shuts down one direction of `sock` for every process that holds it.
///
/// # Errors
///
/// `shutdown` failed (`sock` is not a connected socket).
pub fn shutdown(sock: BorrowedFd<'_>, how: Shutdown) -> io::Result<()> {
    let how = match how {
        Shutdown::Read => socket::Shutdown::Read,
        Shutdown::Write => socket::Shutdown::Write,
        Shutdown::Both => socket::Shutdown::Both,
    };
    socket::shutdown(sock.as_raw_fd(), how).map_err(io::Error::from)
}

/// Writes one byte to a doorbell socket without blocking; a full socket already rings.
pub fn ring(bell: BorrowedFd<'_>) {
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::from_bits_retain(SEND_FLAGS);
    // Errors (EAGAIN: full, so already readable) need no handling.
    let _ = socket::send(bell.as_raw_fd(), &[1u8], flags);
}

/// Reads whatever a doorbell socket holds, without blocking.
pub fn drain(bell: BorrowedFd<'_>) {
    let mut buf = [0u8; 64];
    // A short read (or an error: EAGAIN, empty) means the socket is empty now.
    while socket::recv(bell.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).is_ok_and(|n| n == buf.len()) {}
}

/// Whether the peer of stream socket `fd` has closed its end. With `block`, waits until the peer
/// closes or sends something; without, answers at once. Nothing is consumed.
///
/// For multiproc's crates; not a stable API.
///
/// # Errors
///
/// `recv` failed (other than `EINTR`, retried, and `WouldBlock`, which is `false`): `ECONNRESET`,
/// or `fd` is not a socket.
pub fn peer_closed(fd: BorrowedFd<'_>, block: bool) -> io::Result<bool> {
    let flags = if block { MsgFlags::MSG_PEEK } else { MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT };
    let mut byte = [0u8; 1];
    let n = retry(|| socket::recv(fd.as_raw_fd(), &mut byte, flags).map_err(io::Error::from));
    match n {
        Ok(n) => Ok(n == 0),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until the peer of stream socket `fd` closes its end (or the socket fails), reading and
/// discarding whatever the peer sends meanwhile.
///
/// It reads rather than polling for `POLLHUP` alone: macOS registers a `poll` wait only for the
/// events requested, so `events: 0` never wakes there, and a socket with unread data would keep
/// `POLLIN` set forever. Reading to end of file behaves the same on every system.
///
/// For multiproc's crates; not a stable API.
///
/// # Errors
///
/// `recv` or `poll` failed (other than `EINTR`, retried): `ECONNRESET`, or `fd` is not a socket.
pub fn wait_hangup(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut buf = [0u8; 256];
    loop {
        match socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(0) => return Ok(()),
            Ok(_) | Err(Errno::EINTR) => continue,
            // A non-blocking socket: wait until it is readable (data or end of file).
            Err(Errno::EAGAIN) => match poll(&mut [PollFd::new(fd, PollFlags::POLLIN)], PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod test;
