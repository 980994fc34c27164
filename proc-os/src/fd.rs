//! Descriptor basics: turning a `-1` return into `io::Error`, retrying `EINTR`, close-on-exec, and
//! waiting for readability with `poll`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Instant;

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
/// use std::os::fd::AsRawFd;
///
/// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
/// proc_os::fd::set_cloexec(a.as_raw_fd()).unwrap();
/// ```
pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD takes an integer flag argument and touches no memory; a bad fd is an error.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }).map(drop)
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
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: `pfd` is one live pollfd struct; a zero timeout never blocks.
    retry(|| cvt(unsafe { libc::poll(&mut pfd, 1, 0) }))?;
    Ok(pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
}
