//! The portable POSIX backend: the one macOS uses, and Linux with the `force-portable` feature.
//!
//! Wait/wake: on macOS 14.4 and later `os_sync_wait_on_address_with_timeout` /
//! `os_sync_wake_by_address_*` (with the shared flag) are the public API; before that the private
//! but long-stable `__ulock_wait` / `__ulock_wake` with `UL_COMPARE_AND_WAIT_SHARED`. Both are
//! looked up with `dlsym`, so one binary runs on every version. Elsewhere (and on Linux with
//! `force-portable`, which is how CI covers this file) waiters poll the word with a bounded
//! backoff and `wake` has nothing to do.
//!
//! Sockets: close-on-exec is set after the fact (not atomic: a thread that spawns a program with
//! `std::process::Command` at that very moment could pass it the new descriptors; POSIX offers no
//! way around that). SIGPIPE is avoided per socket with `SO_NOSIGPIPE` where the OS has it, and per
//! send with `MSG_NOSIGNAL` elsewhere.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::socket::{AddressFamily, SockFlag, SockType};
use nix::sys::stat::Mode;

use super::Backend;
use crate::fd::{retry, set_cloexec};
use crate::Backoff;

/// The write end of the self-pipe of `watch_children` (-1: none).
static CHILD_SIGNAL_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigchld(_: libc::c_int) {
    // A full pipe is fine: one pending byte is enough to wake the loop.
    crate::signal::write_byte_in_handler(CHILD_SIGNAL_FD.load(Ordering::Relaxed));
}

/// The portable backend.
#[derive(Debug)]
pub(crate) struct Os;

impl Backend for Os {
    const NAME: &'static str = "portable";

    #[cfg(target_vendor = "apple")]
    /// None: `SO_NOSIGPIPE` on the socket does the job.
    const SEND_FLAGS: libc::c_int = 0;
    #[cfg(not(target_vendor = "apple"))]
    const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;

    /// None: `received_fd` sets close-on-exec afterwards.
    const RECV_FLAGS: libc::c_int = 0;

    /// macOS buffers only 8 KiB per Unix stream socket (`net.local.stream.sendspace`).
    const INLINE_RESULT_MAX: usize = 2 << 10;

    #[inline]
    fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
        #[cfg(target_vendor = "apple")]
        if let Some(result) = apple::wait(word, expected, timeout) {
            return result;
        }
        poll_wait(word, expected, timeout)
    }

    #[inline]
    fn wake(word: &AtomicU32, n: u32) {
        #[cfg(target_vendor = "apple")]
        apple::wake(word, n);
        let _ = (word, n);
    }

    fn wait_backend() -> &'static str {
        #[cfg(target_vendor = "apple")]
        if let Some(name) = apple::name() {
            return name;
        }
        "polling"
    }

    fn is_zombie(pid: u32) -> bool {
        cfg_if::cfg_if! {
            if #[cfg(target_vendor = "apple")] {
                let mut info = std::mem::MaybeUninit::<libc::proc_bsdinfo>::uninit();
                let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
                let Ok(pid) = libc::c_int::try_from(pid) else { return false };
                // SAFETY: `info` is a live buffer of exactly `size` bytes that proc_pidinfo fills.
                let n = unsafe {
                    libc::proc_pidinfo(pid, libc::PROC_PIDTBSDINFO, 0, info.as_mut_ptr().cast(), size)
                };
                if n != size {
                    return false;
                }
                // SAFETY: proc_pidinfo wrote all `size` bytes.
                unsafe { info.assume_init() }.pbi_status == libc::SZOMB
            } else if #[cfg(target_os = "linux")] {
                super::proc_state(pid).is_some_and(|c| c == 'Z' || c == 'X')
            } else {
                let _ = pid;
                false
            }
        }
    }

    /// `FD_CLOEXEC` after creation (no `SOCK_CLOEXEC` here), and `SO_NOSIGPIPE` where the OS has it.
    fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
        let pair =
            nix::sys::socket::socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::empty())?;
        for fd in [&pair.0, &pair.1] {
            set_cloexec(fd.as_fd())?;
            no_sigpipe(fd.as_fd())?;
        }
        Ok(pair)
    }

    /// Marks the descriptor close-on-exec.
    fn received_fd(fd: BorrowedFd<'_>) -> io::Result<()> {
        set_cloexec(fd)
    }

    /// Nothing: the writes fault the pages in.
    unsafe fn populate_write(_ptr: *mut u8, _len: usize) {}

    /// What the OS reports (`current_exe`).
    fn exe_path() -> io::Result<PathBuf> {
        std::env::current_exe()
    }

    /// A POSIX shared-memory object with a short random name, unlinked as soon as it is open,
    /// sized once. The name is at most 30 characters, within macOS' `PSHMNAMLEN` of 31.
    fn anonymous_memory(len: usize) -> io::Result<OwnedFd> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let size = libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        for _ in 0..16 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let salt = crate::random_u64();
            // "/mpa" + 8 hex pid + 8 hex counter + 8 hex salt = 28 characters.
            let name = format!("/mpa{:08x}{:08x}{:08x}", crate::getpid(), n as u32, salt as u32);
            let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR;
            let fd = match nix::sys::mman::shm_open(cname.as_c_str(), flags, Mode::S_IRUSR | Mode::S_IWUSR) {
                Ok(fd) => fd,
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(e.into()),
            };
            let _ = nix::sys::mman::shm_unlink(cname.as_c_str());
            set_cloexec(fd.as_fd())?;
            retry(|| nix::unistd::ftruncate(&fd, size).map_err(io::Error::from))?;
            return Ok(fd);
        }
        Err(io::Error::from(io::ErrorKind::AlreadyExists))
    }

    /// Closes what `/dev/fd` lists.
    fn close_fds_except(keep: &[RawFd]) {
        let Ok(dir) = std::fs::read_dir("/dev/fd") else { return };
        // Collect first: the directory listing itself holds a descriptor until it is dropped.
        let fds: Vec<RawFd> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&fd| fd >= 3 && !keep.contains(&fd))
            .collect();
        for fd in fds {
            // Closing a number that no Rust object owns: this runs before anything else in the
            // process uses these inherited descriptors. The listing's own (now closed) descriptor
            // gives EBADF, which is ignored.
            let _ = nix::unistd::close(fd);
        }
    }

    /// `proc_pidinfo` on macOS, `/proc/self/task` on Linux, unknown elsewhere.
    fn thread_count() -> Option<usize> {
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

    #[inline]
    fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
        nix::unistd::write(fd, buf).map_err(io::Error::from)
    }

    /// libc's `send` rather than nix's: this is a small message's whole path (`socket::send_bytes`),
    /// and nix's wrapper is not inlined across crates.
    #[inline]
    fn send(fd: BorrowedFd<'_>, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
        // SAFETY: `buf` is a live buffer of `buf.len()` bytes that send only reads.
        let n = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// libc's `sendmsg`: nix's allocates the control message (see `socket::send`).
    #[inline]
    unsafe fn sendmsg(fd: BorrowedFd<'_>, msg: &libc::msghdr, flags: libc::c_int) -> io::Result<usize> {
        // SAFETY: the caller guarantees what `msg` points at is readable for the call.
        let n = unsafe { libc::sendmsg(fd.as_raw_fd(), msg, flags) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    #[inline]
    fn getpid() -> u32 {
        nix::unistd::getpid().as_raw() as u32
    }

    fn unblock_signals(set: &nix::sys::signal::SigSet) -> io::Result<()> {
        nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_UNBLOCK, Some(set), None)
            .map_err(io::Error::from)
    }

    /// `pipe`, then `FD_CLOEXEC` on both ends (not atomic, as for `socketpair`).
    fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
        let pair = nix::unistd::pipe()?;
        set_cloexec(pair.0.as_fd())?;
        set_cloexec(pair.1.as_fd())?;
        Ok(pair)
    }

    /// No subreapers here: a process whose parent dies is reparented to init (launchd).
    fn become_subreaper() -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    /// No process descriptors here (macOS has none; a Linux build with `force-portable` tests
    /// the code that does without).
    fn pidfd(_pid: u32) -> io::Result<OwnedFd> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    type Sibling = ();

    /// macOS has no `CLONE_PARENT`: a process's children are its own.
    fn sibling_fork() -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    unsafe fn fork_sibling(_sibling: &()) -> io::Result<u32> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    /// A SIGCHLD handler that writes a byte to a non-blocking self-pipe (one process-wide pipe).
    fn watch_children() -> io::Result<(OwnedFd, Option<OwnedFd>)> {
        let (read, write) = Self::pipe()?;
        crate::fd::set_nonblocking(read.as_fd())?;
        crate::fd::set_nonblocking(write.as_fd())?;
        CHILD_SIGNAL_FD.store(write.as_raw_fd(), Ordering::Relaxed);
        crate::signal::on_signal(libc::SIGCHLD, on_sigchld)?;
        Ok((read, Some(write)))
    }

    /// Reads the self-pipe's bytes: a short read emptied it, and a signal after it writes a byte
    /// that wakes the next wait.
    fn drain_children(fd: BorrowedFd<'_>) {
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(fd, &mut buf), Ok(n) if n == buf.len()) {}
    }

    /// The default action back for SIGCHLD (the handler's self-pipe forgotten). SIGCHLD is not
    /// blocked here (a handler watches it): the caller's unblocking changes nothing for it.
    fn unwatch_children_in_child() {
        CHILD_SIGNAL_FD.store(-1, Ordering::Relaxed);
        crate::signal::set_signal_ignored(libc::SIGCHLD, false);
    }

    /// `dup2`, then close-on-exec (`dup2` clears it; there is no `dup3` here, so a program
    /// started by another thread in between could inherit it).
    fn dup_onto(src: BorrowedFd<'_>, dst: RawFd) -> io::Result<()> {
        retry(|| {
            // SAFETY: `src` is open for the duration of the call, and the caller owns `dst`
            // (through an object that will close it): the returned owner is released again.
            unsafe { nix::unistd::dup2_raw(src, dst) }.map_err(io::Error::from)
        })
        .map(IntoRawFd::into_raw_fd)?;
        // SAFETY: `dst` is open (dup2 just made it a copy of `src`) and the caller owns it for
        // the duration of the call.
        set_cloexec(unsafe { BorrowedFd::borrow_raw(dst) })
    }

    /// `proc_pidinfo` on macOS (microseconds since the epoch), `/proc` on Linux.
    fn start_time(pid: u32) -> Option<u64> {
        cfg_if::cfg_if! {
            if #[cfg(target_os = "macos")] {
                let pid = libc::c_int::try_from(pid).ok()?;
                let mut info = std::mem::MaybeUninit::<libc::proc_bsdinfo>::uninit();
                let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
                // SAFETY: `info` is a live buffer of exactly `size` bytes that proc_pidinfo fills.
                let n = unsafe {
                    libc::proc_pidinfo(pid, libc::PROC_PIDTBSDINFO, 0, info.as_mut_ptr().cast(), size)
                };
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

    type Affinity = ();

    /// macOS has no CPU affinity to narrow (its affinity tags are hints between threads of one
    /// process): children go where the scheduler puts them.
    fn narrow_affinity() -> Option<()> {
        None
    }

    fn restore_affinity(_saved: &()) -> io::Result<()> {
        Ok(())
    }

    fn allowed_cpus() -> Option<usize> {
        None
    }
}

/// Makes sends on a socket whose peer is gone fail with `EPIPE` instead of raising SIGPIPE. The
/// option belongs to the socket, so it travels with it to other processes.
fn no_sigpipe(fd: BorrowedFd<'_>) -> io::Result<()> {
    cfg_if::cfg_if! {
        if #[cfg(any(target_vendor = "apple", target_os = "freebsd"))] {
            use std::os::fd::AsRawFd;

            use crate::fd::cvt;
            // libc: nix has no socket option for this one.
            let on: libc::c_int = 1;
            // SAFETY: `on` is a live c_int and the length passed is its size.
            cvt(unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_NOSIGPIPE,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            })
            .map(drop)
        } else {
            // No such option here; `SEND_FLAGS` carries `MSG_NOSIGNAL` instead.
            let _ = fd;
            Ok(())
        }
    }
}

/// Waits by looking at the word: yield 64 times, then sleep with a growing pause (at most 1 ms, so
/// a change is seen within about a millisecond; after about 100 ms of waiting, at most 20 ms, so an
/// idle waiter stays under 1 % of a CPU).
///
/// A caller that waits in slices (a timed wait that looks at its peers' liveness in between) comes
/// back for the same word and value as soon as a slice ends: that is one long wait, and it goes on
/// with the pause it had reached rather than from the start.
#[cold]
fn poll_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    use std::cell::Cell;
    thread_local! {
        /// The word and value this thread last waited for, when that wait began, and when it
        /// timed out (if it did).
        static LAST: Cell<(usize, u32, Option<Instant>, Option<Instant>)> = const { Cell::new((0, 0, None, None)) };
    }
    /// A wait resumed this soon after the last one timed out continues it.
    const RESUMED: Duration = Duration::from_millis(5);
    let now = Instant::now();
    let key = (std::ptr::from_ref(word) as usize, expected);
    let began = LAST.with(|last| match last.get() {
        (addr, value, Some(began), Some(ended))
            if (addr, value) == key && now.duration_since(ended) < RESUMED =>
        {
            began
        }
        _ => now,
    });
    let deadline = timeout.and_then(|t| now.checked_add(t));
    let mut backoff = Backoff::new(0, 64);
    if now.duration_since(began) >= Duration::from_millis(100) {
        backoff.resume_long_wait();
    }
    let woken = loop {
        if word.load(Ordering::Acquire) != expected {
            break true;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break false;
        }
        if !backoff.snooze() {
            backoff.sleep(deadline);
        }
    };
    let ended = (!woken).then(Instant::now);
    LAST.with(|last| last.set((key.0, key.1, Some(began), ended)));
    woken
}

#[cfg(target_vendor = "apple")]
mod apple {
    //! `os_sync_*` and `__ulock_*`, found with `dlsym`.

    use std::ffi::{c_void, CStr};
    use std::sync::atomic::AtomicU32;
    use std::sync::OnceLock;
    use std::time::Duration;

    type OsWait = unsafe extern "C" fn(*mut c_void, u64, usize, u32) -> libc::c_int;
    type OsWaitTimeout = unsafe extern "C" fn(*mut c_void, u64, usize, u32, u32, u64) -> libc::c_int;
    type OsWake = unsafe extern "C" fn(*mut c_void, usize, u32) -> libc::c_int;
    type UlockWait = unsafe extern "C" fn(u32, *mut c_void, u64, u32) -> libc::c_int;
    type UlockWake = unsafe extern "C" fn(u32, *mut c_void, u64) -> libc::c_int;

    const OS_SYNC_SHARED: u32 = 0x1;
    const OS_CLOCK_MACH_ABSOLUTE_TIME: u32 = 32;
    const UL_COMPARE_AND_WAIT_SHARED: u32 = 3;
    const ULF_WAKE_ALL: u32 = 0x100;

    enum Mech {
        OsSync { wait: OsWait, wait_timeout: OsWaitTimeout, wake_any: OsWake, wake_all: OsWake },
        Ulock { wait: UlockWait, wake: UlockWake },
        Poll,
    }

    fn lookup(name: &CStr) -> Option<*mut c_void> {
        // SAFETY: `name` is a valid NUL-terminated string; RTLD_DEFAULT searches loaded images.
        let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!sym.is_null()).then_some(sym)
    }

    fn mech() -> &'static Mech {
        static MECH: OnceLock<Mech> = OnceLock::new();
        MECH.get_or_init(|| {
            let os = (
                lookup(c"os_sync_wait_on_address"),
                lookup(c"os_sync_wait_on_address_with_timeout"),
                lookup(c"os_sync_wake_by_address_any"),
                lookup(c"os_sync_wake_by_address_all"),
            );
            if let (Some(w), Some(wt), Some(wa), Some(wl)) = os {
                // SAFETY: the symbols have these C signatures (<os/os_sync_wait_on_address.h>).
                return unsafe {
                    Mech::OsSync {
                        wait: std::mem::transmute::<*mut c_void, OsWait>(w),
                        wait_timeout: std::mem::transmute::<*mut c_void, OsWaitTimeout>(wt),
                        wake_any: std::mem::transmute::<*mut c_void, OsWake>(wa),
                        wake_all: std::mem::transmute::<*mut c_void, OsWake>(wl),
                    }
                };
            }
            if let (Some(w), Some(k)) = (lookup(c"__ulock_wait"), lookup(c"__ulock_wake")) {
                // SAFETY: the symbols have these C signatures (xnu's sys/ulock.h).
                return unsafe {
                    Mech::Ulock {
                        wait: std::mem::transmute::<*mut c_void, UlockWait>(w),
                        wake: std::mem::transmute::<*mut c_void, UlockWake>(k),
                    }
                };
            }
            Mech::Poll
        })
    }

    pub(super) fn name() -> Option<&'static str> {
        match mech() {
            Mech::OsSync { .. } => Some("os_sync_wait_on_address"),
            Mech::Ulock { .. } => Some("__ulock_wait"),
            Mech::Poll => None,
        }
    }

    /// `None`: no kernel mechanism; the caller polls.
    pub(super) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Option<bool> {
        let addr = word.as_ptr().cast::<c_void>();
        let ret = match (mech(), timeout) {
            (Mech::OsSync { wait, .. }, None) => {
                // SAFETY: `addr` is a live, aligned 4-byte word in shared memory that outlives the
                // call; the functions only compare and sleep on it (so in the arms below too).
                unsafe { wait(addr, u64::from(expected), 4, OS_SYNC_SHARED) }
            }
            (Mech::OsSync { wait_timeout, .. }, Some(t)) => {
                let ns = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX).max(1);
                // SAFETY: as above.
                unsafe {
                    wait_timeout(
                        addr,
                        u64::from(expected),
                        4,
                        OS_SYNC_SHARED,
                        OS_CLOCK_MACH_ABSOLUTE_TIME,
                        ns,
                    )
                }
            }
            (Mech::Ulock { wait, .. }, t) => {
                // Microseconds; 0 means forever, so a zero timeout waits 1 µs.
                let us = t.map_or(0, |t| u32::try_from(t.as_micros()).unwrap_or(u32::MAX).max(1));
                // SAFETY: as above.
                unsafe { wait(UL_COMPARE_AND_WAIT_SHARED, addr, u64::from(expected), us) }
            }
            (Mech::Poll, _) => return None,
        };
        Some(ret >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ETIMEDOUT))
    }

    pub(super) fn wake(word: &AtomicU32, n: u32) {
        let addr = word.as_ptr().cast::<c_void>();
        match mech() {
            Mech::OsSync { wake_any, wake_all, .. } => {
                if n == 1 {
                    // SAFETY: `addr` is a live, aligned 4-byte word; waking only looks up its
                    // waiters (so in the calls below too).
                    unsafe { wake_any(addr, 4, OS_SYNC_SHARED) };
                } else if n == u32::MAX {
                    // SAFETY: as above.
                    unsafe { wake_all(addr, 4, OS_SYNC_SHARED) };
                } else {
                    for _ in 0..n {
                        // SAFETY: as above.
                        if unsafe { wake_any(addr, 4, OS_SYNC_SHARED) } != 0 {
                            break;
                        }
                    }
                }
            }
            Mech::Ulock { wake, .. } => {
                // __ulock_wake wakes one or all; waking all is correct (waiters re-check).
                let op = if n > 1 {
                    UL_COMPARE_AND_WAIT_SHARED | ULF_WAKE_ALL
                } else {
                    UL_COMPARE_AND_WAIT_SHARED
                };
                // SAFETY: as above.
                unsafe { wake(op, addr, 0) };
            }
            Mech::Poll => {}
        }
    }
}
