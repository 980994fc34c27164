//! Descriptor basics: turning a `-1` return into `io::Error`, retrying `EINTR`, close-on-exec,
//! waiting for readability with `poll` (nix's, over `BorrowedFd`s), and the plain POSIX calls on
//! descriptors that proc-core makes (`dup`, `read`, `write`, `O_NONBLOCK`; nix's too).

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::sys::{Backend, Os};

/// Turns a `-1` return into the current `errno`.
///
/// # Errors
///
/// `ret` is `-1`: the error `errno` holds.
///
/// # Examples
///
/// ```
/// // SAFETY: getpid has no preconditions.
/// let pid = proc_os::fd::cvt(unsafe { libc::getpid() }).unwrap();
/// assert_eq!(pid as u32, std::process::id());
/// ```
#[inline]
pub fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Calls `f` again for as long as it fails with `EINTR`.
///
/// # Errors
///
/// The first error of `f` that is not `EINTR`.
///
/// # Examples
///
/// ```
/// let mut calls = 0;
/// let n = proc_os::fd::retry(|| {
///     calls += 1;
///     if calls < 3 { Err(std::io::ErrorKind::Interrupted.into()) } else { Ok(calls) }
/// })
/// .unwrap();
/// assert_eq!(n, 3);
/// ```
pub fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Sets `FD_CLOEXEC` on `fd`.
///
/// # Errors
///
/// `fd` is not an open descriptor (`EBADF`).
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
///
/// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
/// proc_os::fd::set_cloexec(a.as_fd()).unwrap();
/// ```
pub fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map(drop).map_err(io::Error::from)
}

/// Waits until at least one of `fds` is readable (data, end of stream or an error is pending), or
/// until `deadline` (`None`: no deadline; a deadline in the past: look once).
///
/// Returns one flag per descriptor; all are false only when the deadline passed, never earlier.
/// `EINTR` is retried with the time that is left.
///
/// # Errors
///
/// `poll` failed (too many descriptors, or no memory).
///
/// # Examples
///
/// ```
/// use std::io::Write;
/// use std::os::fd::AsFd;
/// use std::time::Instant;
///
/// let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
/// assert_eq!(proc_os::fd::wait_readable(&[a.as_fd()], Some(Instant::now())).unwrap(), [false]);
/// b.write_all(b"x").unwrap();
/// assert_eq!(proc_os::fd::wait_readable(&[a.as_fd()], None).unwrap(), [true]);
/// ```
pub fn wait_readable(fds: &[BorrowedFd<'_>], deadline: Option<Instant>) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)).collect();
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up, so that a wait never ends before its deadline.
                let ms = left.as_nanos().div_ceil(1_000_000);
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        match poll(&mut pfds, timeout) {
            // The clock may disagree with poll's rounding by a little: wait out the rest.
            Ok(0) if deadline.is_some_and(|d| Instant::now() < d) => continue,
            Ok(_) => {
                let ready = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
                return Ok(pfds.iter().map(|p| p.revents().is_some_and(|r| r.intersects(ready))).collect());
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether `fd` is readable (data, end of stream or an error is pending) right now; never blocks.
///
/// # Errors
///
/// `poll` failed.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
///
/// let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
/// assert!(!proc_os::fd::is_readable(a.as_fd()).unwrap());
/// drop(b);
/// assert!(proc_os::fd::is_readable(a.as_fd()).unwrap());
/// ```
pub fn is_readable(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut pfd = [PollFd::new(fd, PollFlags::POLLIN)];
    retry(|| poll(&mut pfd, PollTimeout::ZERO).map_err(io::Error::from))?;
    let ready = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
    Ok(pfd[0].revents().is_some_and(|r| r.intersects(ready)))
}

/// Whether `poll` reports anything for `fd` right now: like [`is_readable`] (data, end of stream or
/// an error is pending), and also when `fd` is not an open descriptor (`POLLNVAL`). Never blocks.
///
/// For multiproc's crates (proc-core's sentinels and fork-server socket, where a descriptor that
/// is no longer valid means the peer is gone); not a stable API.
///
/// # Errors
///
/// `poll` failed.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
///
/// let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
/// assert!(!proc_os::fd::is_ready(a.as_fd()).unwrap());
/// drop(b);
/// assert!(proc_os::fd::is_ready(a.as_fd()).unwrap());
/// ```
pub fn is_ready(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut pfd = [PollFd::new(fd, PollFlags::POLLIN)];
    let n = retry(|| poll(&mut pfd, PollTimeout::ZERO).map_err(io::Error::from))?;
    Ok(n > 0)
}

/// Duplicates `fd` to a new descriptor numbered at least `min`, with `FD_CLOEXEC` set.
///
/// For multiproc's crates; not a stable API.
///
/// # Errors
///
/// `fcntl` failed (`EMFILE`: out of descriptors; `EINVAL`: `min` out of range).
pub fn dup_cloexec(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    let new = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(min))?;
    // SAFETY: `new` was just returned by fcntl, so it is open and owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Opens `/dev/null` for reading and writing onto descriptor `target` (`dup2`, `EINTR` retried).
///
/// For multiproc's crates; not a stable API.
///
/// # Errors
///
/// `/dev/null` cannot be opened, or `dup2` failed (`EBADF`: `target` out of range).
pub fn dev_null_onto(target: RawFd) -> io::Result<()> {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    retry(|| {
        // SAFETY: `null` stays open for the duration of the call; `target` is a number no Rust
        // object here owns, so the returned owner is released again, not closed.
        unsafe { nix::unistd::dup2_raw(&null, target) }.map_err(io::Error::from)
    })
    .map(|fd| {
        let _ = fd.into_raw_fd();
    })
}

/// Reads into `buf`, retrying `EINTR`. `Ok(0)`: end of file.
///
/// For multiproc's crates; not a stable API.
///
/// # Errors
///
/// `read` failed (`WouldBlock` on a non-blocking descriptor with nothing to read).
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    retry(|| nix::unistd::read(fd, buf).map_err(io::Error::from))
}

/// Writes all of `buf`, retrying `EINTR`.
///
/// For multiproc's crates; not a stable API.
///
/// # Errors
///
/// `write` failed (`EPIPE` when the reader is gone).
pub fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = retry(|| Os::write(fd, buf))?;
        buf = &buf[n..];
    }
    Ok(())
}

/// Closes a descriptor number that no Rust object will close (its owner is leaked); errors are
/// ignored.
///
/// For multiproc's crates; not a stable API.
///
/// # Safety
///
/// Nothing may use or close `fd` afterwards: its owning object must never be dropped.
pub unsafe fn close_raw(fd: RawFd) {
    // The caller guarantees that `fd` has no other user.
    let _ = nix::unistd::close(fd);
}

/// Sets `O_NONBLOCK` on `fd`.
///
/// For multiproc's crates; not a stable API.
///
/// # Errors
///
/// `fcntl` failed (`fd` is not open).
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(drop).map_err(io::Error::from)
}

/// A close-on-exec pipe: (read end, write end). Atomic on Linux (`pipe2(O_CLOEXEC)`); elsewhere
/// close-on-exec is set after creation, so a program that another thread starts at that very moment
/// could inherit the ends.
///
/// For multiproc's crates; not a stable API.
///
/// # Errors
///
/// `pipe` or `fcntl` failed (out of descriptors).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Os::pipe()
}

/// Makes descriptor `dst` refer to what `src` refers to (closing what `dst` referred to),
/// atomically, and close-on-exec: a descriptor number handed out to others (a sentinel) changes
/// its meaning in place. On Linux (`dup3(O_CLOEXEC)`) no program started later inherits it;
/// elsewhere (`dup2`, then `FD_CLOEXEC`) one that another thread starts in between could.
///
/// For multiproc's crates; not a stable API.
///
/// # Errors
///
/// `dup3`/`dup2` or `fcntl` failed (`EBADF`: `dst` out of range).
pub fn dup_onto(src: BorrowedFd<'_>, dst: RawFd) -> io::Result<()> {
    Os::dup_onto(src, dst)
}

/// Closes every descriptor from 3 up, except those in `keep` (`close_range(2)` on Linux; what
/// `/dev/fd` lists elsewhere). Failures are ignored: the descriptors left open are inherited ones.
///
/// For multiproc's crates (a re-executed child's first step); not a stable API. Only call it
/// before anything in the process opened descriptors of its own.
pub fn close_fds_except(keep: &[RawFd]) {
    Os::close_fds_except(keep)
}
