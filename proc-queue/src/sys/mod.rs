//! The OS seam of proc-queue: Unix stream sockets that carry descriptors, and `poll`.
//!
//! Everything that differs between Linux and macOS is chosen here. `linux.rs` is the Linux backend;
//! `unix.rs` is the portable backend that macOS uses, and that Linux uses too with the
//! `force-portable` feature, so that Linux test runs cover the macOS code paths.
//!
//! | item | Linux | portable (macOS; Linux with `force-portable`) |
//! |---|---|---|
//! | `socketpair()` | `SOCK_CLOEXEC`, atomic | `FD_CLOEXEC` after creation; `SO_NOSIGPIPE` where the OS has it |
//! | `SEND_FLAGS` | `MSG_NOSIGNAL` | `MSG_NOSIGNAL`, except where `SO_NOSIGPIPE` does that job (macOS) |
//! | `RECV_FLAGS`, `received_fd()` | `MSG_CMSG_CLOEXEC` | set `FD_CLOEXEC` after `recvmsg` |
//! | `populate_write()` (spill chunks) | `madvise(MADV_POPULATE_WRITE)` | nothing: writes fault pages in |
//!
//! Either way a send to a socket whose peer is gone fails with `EPIPE` instead of raising SIGPIPE,
//! even in a host program that does not ignore SIGPIPE, and every descriptor this crate creates or
//! receives is close-on-exec.
//!
//! The helpers below the backend selection are POSIX and shared by both: `sendmsg`/`recvmsg` with
//! `SCM_RIGHTS` (through nix, whose control-message encoding is checked), `shutdown` and `poll`.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};

cfg_if::cfg_if! {
    if #[cfg(all(target_os = "linux", not(feature = "force-portable")))] {
        #[path = "linux.rs"]
        mod imp;
    } else {
        #[path = "unix.rs"]
        mod imp;
    }
}

pub(crate) use imp::{populate_write, received_fd, socketpair, RECV_FLAGS, SEND_FLAGS};

/// At most this many descriptors travel with one message (Linux' `SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;

/// The bytes of control-message space that `MAX_FDS` descriptors take.
const CMSG_BYTES: usize = {
    let payload = (MAX_FDS * std::mem::size_of::<RawFd>()) as libc::c_uint;
    // SAFETY: CMSG_SPACE is arithmetic on its argument; it touches no memory.
    (unsafe { libc::CMSG_SPACE(payload) }) as usize
};

/// Room for the control message of one receive, aligned as `cmsghdr` requires.
#[repr(C, align(8))]
struct CmsgBuffer([u8; CMSG_BYTES]);

/// Turns a `-1` return into the current `errno`.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Writes some of `bufs` to `sock` with one `sendmsg`, attaching `fds` (`SCM_RIGHTS`) when there
/// are any, and returns how many bytes went. Blocks until at least one byte is written; `EINTR`
/// (which means nothing was written) is retried.
pub(crate) fn send(sock: BorrowedFd<'_>, bufs: &[IoSlice<'_>], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    let flags = MsgFlags::from_bits_retain(SEND_FLAGS);
    loop {
        match socket::sendmsg::<()>(sock.as_raw_fd(), bufs, cmsgs, flags, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// Writes some of `buf` to `sock` with one `send` (no descriptors), and returns how many bytes
/// went. Blocks until at least one byte is written; `EINTR` is retried. Cheaper for the kernel
/// than a `sendmsg`, which copies in a message header and an I/O vector.
pub(crate) fn send_bytes(sock: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a live buffer of `buf.len()` bytes that send only reads.
        let n = unsafe { libc::send(sock.as_raw_fd(), buf.as_ptr().cast(), buf.len(), SEND_FLAGS) };
        match usize::try_from(n) {
            Ok(n) => return Ok(n),
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// What one `recvmsg` produced.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    /// Bytes received; 0 means end of stream.
    pub(crate) len: usize,
    /// Descriptors came with the bytes but the kernel could not hand them all over (the process is
    /// at its descriptor limit); the ones it did install cannot be recovered.
    pub(crate) fds_lost: bool,
}

/// Receives into `buf` with one `recvmsg`, appending any descriptors that come along to `fds`
/// (close-on-exec). With `dontwait`, `Ok(None)` means nothing is there yet; without it, the call
/// blocks until something is, or until the socket's receive timeout (see [`set_recv_timeout`])
/// passes, which is `Ok(None)` too. `EINTR` is retried.
///
/// Only when `with_fds` is set is there room for descriptors; without it any that arrive are
/// closed by the kernel (and reported as lost).
pub(crate) fn recv(
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
                        match received_fd(fd.as_raw_fd()) {
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

/// Sets the receive timeout (`SO_RCVTIMEO`) of `sock`, for every process that holds it: a blocking
/// receive that waits that long fails with `EAGAIN`, which [`recv`] reports as nothing there.
pub(crate) fn set_recv_timeout(sock: BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        // Below a million: fits `suseconds_t` everywhere (`i64` on Linux, `i32` on macOS).
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: `tv` is a live timeval and the length passed is its size.
    cvt(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Shuts down one direction of `sock` for every process that holds it.
pub(crate) fn shutdown(sock: BorrowedFd<'_>, how: Shutdown) -> io::Result<()> {
    let how = match how {
        Shutdown::Read => libc::SHUT_RD,
        Shutdown::Write => libc::SHUT_WR,
        Shutdown::Both => libc::SHUT_RDWR,
    };
    // SAFETY: shutdown takes plain integers and touches no memory.
    cvt(unsafe { libc::shutdown(sock.as_raw_fd(), how) }).map(drop)
}

/// Waits until at least one of `fds` is readable (data, end of stream or an error is pending), or
/// until `deadline` (`None`: no deadline; a deadline in the past: look once).
///
/// Returns one flag per descriptor; all are false only when the deadline passed, never earlier.
/// `EINTR` is retried with the time that is left.
pub(crate) fn wait_readable(fds: &[BorrowedFd<'_>], deadline: Option<Instant>) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|fd| libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    let nfds = libc::nfds_t::try_from(pfds.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors to poll"))?;
    loop {
        let timeout = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up, so that a wait never ends before its deadline.
                let ms = left.as_nanos().div_ceil(1_000_000);
                libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
            }
        };
        // SAFETY: `pfds` is a live, exclusively borrowed array of `nfds` pollfd structs.
        match cvt(unsafe { libc::poll(pfds.as_mut_ptr(), nfds, timeout) }) {
            // The clock may disagree with poll's rounding by a little: wait out the rest.
            Ok(0) if deadline.is_some_and(|d| Instant::now() < d) => continue,
            Ok(_) => {
                let ready = libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
                return Ok(pfds.iter().map(|p| p.revents & ready != 0).collect());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Writes one byte to a doorbell socket without blocking; a full socket already rings.
pub(crate) fn ring(bell: BorrowedFd<'_>) {
    let byte = [1u8];
    // SAFETY: `byte` is a live one-byte buffer; MSG_DONTWAIT never blocks. Errors (EAGAIN: full,
    // so already readable) need no handling.
    let _ = unsafe { libc::send(bell.as_raw_fd(), byte.as_ptr().cast(), 1, libc::MSG_DONTWAIT | SEND_FLAGS) };
}

/// Reads whatever a doorbell socket holds, without blocking.
pub(crate) fn drain(bell: BorrowedFd<'_>) {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: `buf` is a live buffer of `buf.len()` bytes; MSG_DONTWAIT never blocks.
        let n =
            unsafe { libc::recv(bell.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n < buf.len() as isize {
            return;
        }
    }
}
