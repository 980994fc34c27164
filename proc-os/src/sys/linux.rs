//! The Linux backend: shared futexes, `/proc`, atomic close-on-exec flags and `MSG_NOSIGNAL`.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use nix::sys::mman::{madvise, MmapAdvise};
use nix::sys::socket::{AddressFamily, SockFlag, SockType};

use super::Backend;

/// The Linux backend.
#[derive(Debug)]
pub(crate) struct Os;

impl Backend for Os {
    const NAME: &'static str = "linux";
    const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
    const RECV_FLAGS: libc::c_int = libc::MSG_CMSG_CLOEXEC;

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
}
