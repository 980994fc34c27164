//! The Linux backend: memfd, `close_range`, `/proc`, and atomic close-on-exec flags.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use proc_os::fd::{cvt, retry};

pub(crate) const BACKEND: &str = "linux";

/// Python 3.14 made the fork server the default on Linux; so do we. A name, so that `sys` needs
/// nothing from the rest of the crate: `start` maps it to its `StartMethod`.
pub(crate) const DEFAULT_START_METHOD: &str = "forkserver";

/// `SO_RCVLOWAT` of the parent's end of a control socket: a child's result of less than this
/// wakes the parent only when the child exits. Unix stream sockets buffer well over this on Linux.
pub(crate) const RESULT_LOWAT: Option<usize> = Some(64 << 10);

/// The running executable. `/proc/self/exe` opens the image this process runs even when the file was
/// replaced or deleted on disk, so a re-executed child always runs the same binary.
pub(crate) fn exe_path() -> io::Result<PathBuf> {
    Ok(PathBuf::from("/proc/self/exe"))
}

/// Anonymous shared memory: a memfd of `len` bytes whose size is then sealed, so no process that
/// receives it can shrink it under another's mapping (which would turn accesses into SIGBUS).
pub(crate) fn anonymous_memory(len: usize) -> io::Result<OwnedFd> {
    const NAME: &CStr = c"multiproc";
    let size = libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: NAME is a valid NUL-terminated string; the flags are plain integers.
    let fd = cvt(unsafe { libc::memfd_create(NAME.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) })?;
    // SAFETY: `fd` was just returned by memfd_create and is owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    use std::os::fd::AsRawFd;
    // SAFETY: ftruncate takes plain integers.
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size) })?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS takes an integer argument and touches no memory.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(fd)
}

/// Closes every descriptor from 3 up, except `keep`.
pub(crate) fn close_fds_except(keep: &[RawFd]) {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&fd| fd >= 3).collect();
    keep.sort_unstable();
    let mut from: RawFd = 3;
    for &k in &keep {
        if k > from {
            close_range(from, k - 1);
        }
        from = from.max(k + 1);
    }
    close_range(from, RawFd::MAX);
}

fn close_range(first: RawFd, last: RawFd) {
    // SAFETY: close_range takes plain integers and only closes descriptors.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, last as libc::c_uint, 0) };
    if ret == 0 {
        return;
    }
    // Kernels before 5.9 lack close_range: close what /proc lists instead.
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return };
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| (first..=last).contains(fd))
        .collect();
    for fd in fds {
        // SAFETY: closing a descriptor number touches no memory; this runs before anything else in
        // the process uses these inherited descriptors.
        unsafe { libc::close(fd) };
    }
}

/// The number of threads in this process.
pub(crate) fn thread_count() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/task").ok()?.count())
}

/// A close-on-exec pipe: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a live array of two c_ints that pipe2 fills.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors were just created and are owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Makes this process the child subreaper of its descendants: a descendant whose parent dies is
/// reparented to this process (the nearest living subreaper) instead of to init, so this process
/// can still wait for it.
pub(crate) fn become_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer argument and touches no memory.
    cvt(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) }).map(drop)
}

/// Makes `dst` refer to what `src` refers to (closing what `dst` referred to), atomically, and
/// close-on-exec: a descriptor number handed out to others (a sentinel) changes its meaning in
/// place, and no program started later inherits it.
pub(crate) fn dup_onto(src: BorrowedFd<'_>, dst: RawFd) -> io::Result<()> {
    // SAFETY: dup3 takes plain integers; `src` is open for the duration of the call, and the
    // caller owns `dst` (through an object that will close it).
    retry(|| cvt(unsafe { libc::dup3(src.as_raw_fd(), dst, libc::O_CLOEXEC) })).map(drop)
}

/// When process `pid` started, in clock ticks since boot, or `None` if it does not exist.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    super::proc_start_time(pid)
}
