//! The portable POSIX backend: the one macOS uses, and Linux with the `force-portable` feature.
//!
//! It only relies on POSIX calls (plus `proc_pidinfo` on macOS), so that a Linux test run with the
//! feature on exercises the same code paths a macOS run does.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use proc_os::fd::{cvt, retry, set_cloexec};

pub(crate) const BACKEND: &str = "portable";

/// macOS cannot fork safely once system frameworks started threads, so Python (and we) default to
/// spawn there. The portable backend keeps the same default on Linux, so the tests cover it. A
/// name, so that `sys` needs nothing from the rest of the crate: `start` maps it to its `StartMethod`.
pub(crate) const DEFAULT_START_METHOD: &str = "spawn";

/// No `SO_RCVLOWAT` on control sockets: macOS buffers only 8 KiB per Unix stream socket, so a
/// larger mark would never be reached while the child blocks writing.
pub(crate) const RESULT_LOWAT: Option<usize> = None;

/// The running executable, as the OS reports it.
pub(crate) fn exe_path() -> io::Result<PathBuf> {
    std::env::current_exe()
}

/// Anonymous shared memory: a POSIX shared-memory object with a short random name, unlinked as soon
/// as it is open, sized once. The name is at most 30 characters, within macOS' `PSHMNAMLEN` of 31.
pub(crate) fn anonymous_memory(len: usize) -> io::Result<OwnedFd> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let size = libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let salt = proc_os::random_u64();
        // "/mpa" + 8 hex pid + 8 hex counter + 8 hex salt = 28 characters.
        let name = format!("/mpa{:08x}{:08x}{:08x}", proc_os::getpid(), n as u32, salt as u32);
        let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR;
        // SAFETY: `cname` is a valid NUL-terminated string; flags and mode are plain integers.
        let fd = match cvt(unsafe { libc::shm_open(cname.as_ptr(), flags, 0o600 as libc::c_uint) }) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        // SAFETY: `fd` was just returned by shm_open and is owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: `cname` is a valid NUL-terminated string.
        unsafe { libc::shm_unlink(cname.as_ptr()) };
        set_cloexec(fd.as_fd())?;
        // SAFETY: ftruncate takes plain integers.
        retry(|| cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size) }))?;
        return Ok(fd);
    }
    Err(io::Error::from(io::ErrorKind::AlreadyExists))
}

/// Closes every descriptor from 3 up, except `keep`, by listing `/dev/fd`.
pub(crate) fn close_fds_except(keep: &[RawFd]) {
    let Ok(dir) = std::fs::read_dir("/dev/fd") else { return };
    // Collect first: the directory listing itself holds a descriptor until it is dropped.
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= 3 && !keep.contains(&fd))
        .collect();
    for fd in fds {
        // SAFETY: closing a descriptor number touches no memory; this runs before anything else in
        // the process uses these inherited descriptors. The listing's own (now closed) descriptor
        // gives EBADF, which is ignored.
        unsafe { libc::close(fd) };
    }
}

/// The number of threads in this process, where the OS can tell.
pub(crate) fn thread_count() -> Option<usize> {
    cfg_if::cfg_if! {
        if #[cfg(target_os = "macos")] {
            let mut info = std::mem::MaybeUninit::<libc::proc_taskinfo>::uninit();
            let size = std::mem::size_of::<libc::proc_taskinfo>() as libc::c_int;
            // SAFETY: `info` is a live buffer of exactly `size` bytes that proc_pidinfo fills.
            let n = unsafe {
                libc::proc_pidinfo(libc::getpid(), libc::PROC_PIDTASKINFO, 0, info.as_mut_ptr().cast(), size)
            };
            if n != size {
                return None;
            }
            // SAFETY: proc_pidinfo wrote all `size` bytes.
            let info = unsafe { info.assume_init() };
            usize::try_from(info.pti_threadnum).ok()
        } else if #[cfg(target_os = "linux")] {
            Some(std::fs::read_dir("/proc/self/task").ok()?.count())
        } else {
            None
        }
    }
}

/// A close-on-exec pipe: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a live array of two c_ints that pipe fills.
    cvt(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
    // SAFETY: both descriptors were just created and are owned by no one else.
    let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    set_cloexec(pair.0.as_fd())?;
    set_cloexec(pair.1.as_fd())?;
    Ok(pair)
}

/// No subreapers here: a process whose parent dies is reparented to init (launchd).
pub(crate) fn become_subreaper() -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Makes `dst` refer to what `src` refers to (closing what `dst` referred to), atomically, then
/// close-on-exec (`dup2` clears it; there is no `dup3` here, so a program started by another
/// thread in between could inherit it).
pub(crate) fn dup_onto(src: BorrowedFd<'_>, dst: RawFd) -> io::Result<()> {
    // SAFETY: dup2 takes plain integers; `src` is open for the duration of the call, and the
    // caller owns `dst` (through an object that will close it).
    retry(|| cvt(unsafe { libc::dup2(src.as_raw_fd(), dst) }))?;
    // SAFETY: `dst` is open (dup2 just made it a copy of `src`) and the caller owns it for the
    // duration of the call.
    set_cloexec(unsafe { BorrowedFd::borrow_raw(dst) })
}

/// When process `pid` started (an opaque, comparable value), or `None` if it does not exist or
/// the OS cannot tell.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    cfg_if::cfg_if! {
        if #[cfg(target_os = "macos")] {
            let pid = libc::c_int::try_from(pid).ok()?;
            let mut info = std::mem::MaybeUninit::<libc::proc_bsdinfo>::uninit();
            let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
            // SAFETY: `info` is a live buffer of exactly `size` bytes that proc_pidinfo fills.
            let n = unsafe { libc::proc_pidinfo(pid, libc::PROC_PIDTBSDINFO, 0, info.as_mut_ptr().cast(), size) };
            if n != size {
                return None;
            }
            // SAFETY: proc_pidinfo wrote all `size` bytes.
            let info = unsafe { info.assume_init() };
            Some(info.pbi_start_tvsec.wrapping_mul(1_000_000).wrapping_add(info.pbi_start_tvusec))
        } else if #[cfg(target_os = "linux")] {
            super::proc_start_time(pid)
        } else {
            let _ = pid;
            None
        }
    }
}
