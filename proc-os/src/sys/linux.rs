//! The Linux backend: shared futexes, `/proc`, memfd, `close_range`, atomic close-on-exec flags and
//! `MSG_NOSIGNAL`.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use nix::sys::mman::{madvise, MmapAdvise};
use nix::sys::socket::{AddressFamily, SockFlag, SockType};

use super::Backend;
use crate::fd::{cvt, retry};

/// The Linux backend.
#[derive(Debug)]
pub(crate) struct Os;

impl Backend for Os {
    const NAME: &'static str = "linux";
    const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
    const RECV_FLAGS: libc::c_int = libc::MSG_CMSG_CLOEXEC;
    /// Unix stream sockets buffer well over 64 KiB on Linux.
    const RESULT_LOWAT: Option<usize> = Some(64 << 10);

    #[inline]
    fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
        let ts = timeout.map(|d| libc::timespec {
            tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: d.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `word` is a live, 4-byte aligned atomic (in shared memory that outlives the
        // call); FUTEX_WAIT (without FUTEX_PRIVATE_FLAG, so it works across processes) only reads
        // it; `ts_ptr` is null or points to a live timespec.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                expected,
                ts_ptr,
                std::ptr::null::<u32>(),
                0,
            )
        };
        ret == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ETIMEDOUT)
    }

    #[inline]
    fn wake(word: &AtomicU32, n: u32) {
        let n = libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
        // SAFETY: as in `wait`; FUTEX_WAKE does not access the word's memory beyond its address.
        unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
    }

    fn wait_backend() -> &'static str {
        "futex"
    }

    /// The state letter in `/proc/<pid>/stat` is `Z` (or `X`).
    fn is_zombie(pid: u32) -> bool {
        super::proc_state(pid).is_some_and(|c| c == 'Z' || c == 'X')
    }

    /// `SOCK_CLOEXEC`: close-on-exec from the start.
    fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
        nix::sys::socket::socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
            .map_err(io::Error::from)
    }

    /// Nothing left to do: `MSG_CMSG_CLOEXEC` did it.
    fn received_fd(_fd: BorrowedFd<'_>) -> io::Result<()> {
        Ok(())
    }

    /// `MADV_POPULATE_WRITE` (Linux 5.14) maps the range in one system call instead of one page
    /// fault per page; a hint only (older kernels refuse it, and the writes then fault as usual).
    unsafe fn populate_write(ptr: *mut u8, len: usize) {
        let Some(addr) = NonNull::new(ptr.cast()) else { return };
        // SAFETY: the caller keeps the range inside a live mapping; populating writes nothing to it.
        let _ = unsafe { madvise(addr, len, MmapAdvise::MADV_POPULATE_WRITE) };
    }

    /// The running image: `/proc/self/exe` opens the image this process runs even when the file
    /// was replaced or deleted on disk, so a re-executed child always runs the same binary.
    fn exe_path() -> io::Result<PathBuf> {
        Ok(PathBuf::from("/proc/self/exe"))
    }

    /// A memfd of `len` bytes whose size is then sealed, so no process that receives it can
    /// shrink it under another's mapping (which would turn accesses into SIGBUS).
    fn anonymous_memory(len: usize) -> io::Result<OwnedFd> {
        const NAME: &CStr = c"multiproc";
        let size = libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: NAME is a valid NUL-terminated string; the flags are plain integers.
        let fd =
            cvt(unsafe { libc::memfd_create(NAME.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) })?;
        // SAFETY: `fd` was just returned by memfd_create and is owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate takes plain integers.
        cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size) })?;
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: F_ADD_SEALS takes an integer argument and touches no memory.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
        Ok(fd)
    }

    /// `close_range(2)` around the kept descriptors (what `/proc/self/fd` lists before Linux 5.9).
    fn close_fds_except(keep: &[RawFd]) {
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

    /// What `/proc/self/task` lists.
    fn thread_count() -> Option<usize> {
        Some(std::fs::read_dir("/proc/self/task").ok()?.count())
    }

    /// `pipe2(O_CLOEXEC)`: close-on-exec from the start.
    fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a live array of two c_ints that pipe2 fills.
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
        // SAFETY: both descriptors were just created and are owned by no one else.
        Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    }

    /// `PR_SET_CHILD_SUBREAPER`: a descendant whose parent dies is reparented to this process
    /// (the nearest living subreaper) instead of to init, so this process can still wait for it.
    fn become_subreaper() -> io::Result<()> {
        // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer argument and touches no memory.
        cvt(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) }).map(drop)
    }

    /// `dup3(O_CLOEXEC)`: atomic, so no program started meanwhile inherits `dst`.
    fn dup_onto(src: BorrowedFd<'_>, dst: RawFd) -> io::Result<()> {
        // SAFETY: dup3 takes plain integers; `src` is open for the duration of the call, and the
        // caller owns `dst` (through an object that will close it).
        retry(|| cvt(unsafe { libc::dup3(src.as_raw_fd(), dst, libc::O_CLOEXEC) })).map(drop)
    }

    /// Field 22 of `/proc/<pid>/stat`: clock ticks since boot.
    fn start_time(pid: u32) -> Option<u64> {
        super::proc_start_time(pid)
    }
}

/// Closes descriptors `first..=last`.
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
