//! The Linux backend: shared futexes, `/proc`, memfd, `close_range`, atomic close-on-exec flags and
//! `MSG_NOSIGNAL`.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag, SealFlag};
use nix::sched::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::mman::{madvise, MmapAdvise};
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{AddressFamily, SockFlag, SockType};
use nix::unistd::Pid;

use super::Backend;
use crate::fd::retry;

/// The Linux backend.
#[derive(Debug)]
pub(crate) struct Os;

impl Backend for Os {
    const NAME: &'static str = "linux";
    const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
    const RECV_FLAGS: libc::c_int = libc::MSG_CMSG_CLOEXEC;
    /// Unix stream sockets buffer about 200 KiB by default (`net.core.wmem_default`).
    const INLINE_RESULT_MAX: usize = 32 << 10;

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
        let fd = memfd_create(NAME, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
        nix::unistd::ftruncate(&fd, size)?;
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(seals))?;
        Ok(fd)
    }

    /// `close_range(2)` around the kept descriptors (what `/proc/self/fd` lists before Linux 5.9).
    fn close_fds_except(keep: &[RawFd]) {
        // The gaps between kept descriptors, lowest first, found without sorting a copy: a
        // fork-server child calls this first thing, and a child that allocates nothing never
        // copies the heap pages it shares with the server. The list is a handful of descriptors.
        let mut from: RawFd = 3;
        while let Some(next) = keep.iter().copied().filter(|&fd| fd >= from).min() {
            if next > from {
                close_range(from, next - 1);
            }
            let Some(after) = next.checked_add(1) else { return };
            from = after;
        }
        close_range(from, RawFd::MAX);
    }

    /// What `/proc/self/task` lists.
    fn thread_count() -> Option<usize> {
        Some(std::fs::read_dir("/proc/self/task").ok()?.count())
    }

    /// Through libc's `syscall` (see the module docs of `sys`).
    #[inline]
    fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a live buffer of `buf.len()` bytes that write only reads.
        syscall_len(unsafe { libc::syscall(libc::SYS_write, fd.as_raw_fd(), buf.as_ptr(), buf.len()) })
    }

    /// `sendto` without an address, through libc's `syscall` (see the module docs of `sys`).
    #[inline]
    fn send(fd: BorrowedFd<'_>, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
        let none = std::ptr::null::<libc::sockaddr>();
        // SAFETY: `buf` is a live buffer of `buf.len()` bytes that sendto only reads; no address.
        syscall_len(unsafe {
            libc::syscall(
                libc::SYS_sendto,
                fd.as_raw_fd(),
                buf.as_ptr(),
                buf.len(),
                flags,
                none,
                0 as libc::socklen_t,
            )
        })
    }

    /// Through libc's `syscall` (see the module docs of `sys`).
    #[inline]
    unsafe fn sendmsg(fd: BorrowedFd<'_>, msg: &libc::msghdr, flags: libc::c_int) -> io::Result<usize> {
        // SAFETY: the caller guarantees what `msg` points at is readable for the call.
        syscall_len(unsafe {
            libc::syscall(libc::SYS_sendmsg, fd.as_raw_fd(), msg as *const libc::msghdr, flags)
        })
    }

    /// Through libc's `syscall` (see the module docs of `sys`).
    #[inline]
    fn getpid() -> u32 {
        // SAFETY: getpid takes no arguments and cannot fail.
        unsafe { libc::syscall(libc::SYS_getpid) as u32 }
    }

    /// `rt_sigprocmask` through libc's `syscall` (see the module docs of `sys`): the C library's
    /// `pthread_sigmask` only keeps its own internal signals out of a set it blocks, and this
    /// unblocks.
    #[inline]
    fn unblock_signals(set: &SigSet) -> io::Result<()> {
        // The kernel's signal set: 64 signals.
        const KERNEL_SIGSET: usize = 8;
        let set: &libc::sigset_t = set.as_ref();
        // SAFETY: `set` is a valid signal set (at least the kernel's 8 bytes); no old set is asked.
        syscall_len(unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_UNBLOCK,
                set as *const libc::sigset_t,
                std::ptr::null::<libc::sigset_t>(),
                KERNEL_SIGSET,
            )
        })
        .map(drop)
    }

    /// `pipe2(O_CLOEXEC)`: close-on-exec from the start.
    fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)
    }

    /// `PR_SET_CHILD_SUBREAPER`: a descendant whose parent dies is reparented to this process
    /// (the nearest living subreaper) instead of to init, so this process can still wait for it.
    fn become_subreaper() -> io::Result<()> {
        nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
    }

    /// `pidfd_open(2)`: close-on-exec; readable once the process has ended (become a zombie).
    fn pidfd(pid: u32) -> io::Result<OwnedFd> {
        let raw = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // libc: nix has no `pidfd_open`.
        // SAFETY: pidfd_open takes plain integers and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
        let fd = RawFd::try_from(fd).map_err(|_| io::Error::last_os_error())?;
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by pidfd_open and is owned by no one else.
        Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
    }

    type Sibling = Sibling;

    /// The address of the calling thread's `tid` field in glibc's thread block (its offset is
    /// what glibc publishes for debuggers as `_thread_db_pthread_tid`: bits, count, offset), and
    /// its robust-mutex list as registered with the kernel. Checked: the field must hold the
    /// thread's id. `Unsupported` without the symbol (another C library), on an architecture whose
    /// `clone` takes its arguments in another order, or when the check fails.
    fn sibling_fork() -> io::Result<Sibling> {
        let unsupported = || Err(io::Error::from(io::ErrorKind::Unsupported));
        if !CLONE_ARGS_KNOWN {
            return unsupported();
        }
        // libc: nix has no `dlsym`.
        // SAFETY: a constant, NUL-terminated symbol name looked up in the global scope.
        let desc = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_thread_db_pthread_tid".as_ptr()) };
        if desc.is_null() {
            return unsupported();
        }
        // SAFETY: glibc defines the symbol as `const uint32_t[3]`, read-only data for the
        // program's life.
        let [bits, count, offset] = unsafe { desc.cast::<[u32; 3]>().read_unaligned() };
        // A pid_t, within the thread block (a few KiB).
        if bits != 32 || count != 1 || offset >= 16 << 10 {
            return unsupported();
        }
        // libc: nix has no `pthread_self` as a pointer.
        // SAFETY: pthread_self takes nothing; on glibc its value is the thread block's address.
        let block = unsafe { libc::pthread_self() } as usize;
        let tid = (block + offset as usize) as *mut libc::pid_t;
        // SAFETY: `tid` points into the calling thread's block, alive while the thread is; read
        // only to check it.
        let here = unsafe { tid.read_volatile() };
        // SAFETY: gettid takes nothing.
        if here != unsafe { libc::gettid() } {
            return unsupported();
        }
        let mut head: *mut libc::c_void = std::ptr::null_mut();
        let mut len: libc::size_t = 0;
        // SAFETY: get_robust_list(0, ...) writes the calling thread's list head and length
        // through the two pointers, which are live.
        let got = unsafe { libc::syscall(libc::SYS_get_robust_list, 0, &mut head, &mut len) };
        if got != 0 {
            // No list registered: nothing for a child to register.
            head = std::ptr::null_mut();
        }
        Ok(Sibling { tid, robust_head: head, robust_len: len })
    }

    /// What glibc's `_Fork` does, with `CLONE_PARENT` added: `clone(CLONE_PARENT |
    /// CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD)` with the `tid` field as the child's
    /// tid address (the kernel writes the child's id there, in the child), then, in the child, the
    /// robust-mutex list registered again (a new process starts with none). The child's exit
    /// signal is this process' own (SIGCHLD for a process started as usual), sent to the parent.
    unsafe fn fork_sibling(sibling: &Sibling) -> io::Result<u32> {
        let flags =
            libc::CLONE_PARENT | libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD;
        // The child's tid address goes in both the fourth and the fifth argument: most
        // architectures take it fourth and the TLS fifth, some (x86, arm, powerpc) the other way
        // round, and the TLS argument is read only with `CLONE_SETTLS`, which is not set.
        // libc: nix's `clone` runs a callback on a new stack; this is a fork.
        // SAFETY: clone without CLONE_VM is a fork: the child gets a copy of the address space
        // and returns here; the caller upholds `fork_without_handlers`' contract.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags as libc::c_ulong,
                0 as libc::c_ulong,
                std::ptr::null_mut::<libc::pid_t>(),
                sibling.tid,
                sibling.tid,
            )
        };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 && !sibling.robust_head.is_null() {
            // SAFETY: registers the list head this thread had in the server, at the same address
            // in the child's copy of memory (the server holds no robust mutex: the list is empty).
            unsafe { libc::syscall(libc::SYS_set_robust_list, sibling.robust_head, sibling.robust_len) };
        }
        Ok(pid as u32)
    }

    /// SIGCHLD blocked and read from a non-blocking `signalfd`: no handler runs, so a child's end
    /// costs no signal frame and interrupts no system call.
    fn watch_children() -> io::Result<(OwnedFd, Option<OwnedFd>)> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGCHLD);
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok((OwnedFd::from(fd), None))
    }

    /// Reads the queued signals. SIGCHLD is a standard signal, so at most one is queued; a read
    /// that did not fill the buffer took them all.
    fn drain_children(fd: BorrowedFd<'_>) {
        let mut buf = [0u8; 4 * std::mem::size_of::<libc::signalfd_siginfo>()];
        while matches!(nix::unistd::read(fd, &mut buf), Ok(n) if n == buf.len()) {}
    }

    /// A blocked SIGCHLD is all `watch_children` changed, and the caller unblocks it (a forked
    /// child has nothing pending): nothing else to undo.
    fn unwatch_children_in_child() {}

    /// `dup3(O_CLOEXEC)`: atomic, so no program started meanwhile inherits `dst`.
    fn dup_onto(src: BorrowedFd<'_>, dst: RawFd) -> io::Result<()> {
        retry(|| {
            // SAFETY: `src` is open for the duration of the call, and the caller owns `dst`
            // (through an object that will close it): the returned owner is released again.
            unsafe { nix::unistd::dup3_raw(src, dst, OFlag::O_CLOEXEC) }.map_err(io::Error::from)
        })
        .map(|fd| {
            let _ = fd.into_raw_fd();
        })
    }

    /// Field 22 of `/proc/<pid>/stat`: clock ticks since boot.
    fn start_time(pid: u32) -> Option<u64> {
        super::proc_start_time(pid)
    }

    type Affinity = CpuSet;

    /// `sched_getaffinity`, `sched_getcpu`, then `sched_setaffinity` to that one CPU. (A machine
    /// of more CPUs than a `cpu_set_t` holds fails the first call: nothing is narrowed there.)
    fn narrow_affinity() -> Option<CpuSet> {
        let me = Pid::from_raw(0);
        let saved = sched_getaffinity(me).ok()?;
        let here = sched_getcpu().ok()?;
        let mut one = CpuSet::new();
        one.set(here).ok()?;
        // Narrowed already (the thread runs on one of its CPUs, so one CPU is this one).
        if saved == one {
            return None;
        }
        sched_setaffinity(me, &one).ok()?;
        Some(saved)
    }

    /// `sched_getaffinity`, its CPUs counted.
    fn allowed_cpus() -> Option<usize> {
        let set = sched_getaffinity(Pid::from_raw(0)).ok()?;
        Some((0..CpuSet::count()).filter(|&cpu| set.is_set(cpu).unwrap_or(false)).count())
    }

    fn restore_affinity(saved: &CpuSet) -> io::Result<()> {
        let me = Pid::from_raw(0);
        let Err(e) = sched_setaffinity(me, saved) else { return Ok(()) };
        // The saved CPUs may all have left the thread's cpuset meanwhile: ask for every CPU,
        // which the kernel narrows to what the cpuset allows.
        let mut every = CpuSet::new();
        for cpu in 0..CpuSet::count() {
            let _ = every.set(cpu);
        }
        sched_setaffinity(me, &every).map_err(|_| io::Error::from(e))
    }
}

/// Whether `clone`'s arguments on this architecture are (flags, stack, parent tid, child tid, TLS)
/// or (flags, stack, parent tid, TLS, child tid): `fork_sibling` passes the child tid in both.
const CLONE_ARGS_KNOWN: bool = cfg!(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64",
    target_arch = "powerpc64",
    target_arch = "loongarch64"
));

/// What forking a child of this process' parent needs (see `Os::sibling_fork`): addresses in
/// the forking thread's block, the same in the child's copy of memory.
#[derive(Debug)]
pub(crate) struct Sibling {
    /// glibc's `tid` field of the thread block.
    tid: *mut libc::pid_t,
    /// The robust-mutex list the thread registered (null: none).
    robust_head: *mut libc::c_void,
    robust_len: libc::size_t,
}

/// Closes descriptors `first..=last`.
fn close_range(first: RawFd, last: RawFd) {
    // libc: nix has no `close_range`.
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
        // Closing a number that no Rust object owns: this runs before anything else in the process
        // uses these inherited descriptors.
        let _ = nix::unistd::close(fd);
    }
}

/// The result of a system call made through libc's `syscall` that returns a length (or 0): the
/// length, or the error in `errno` when it returned -1.
#[inline]
fn syscall_len(ret: libc::c_long) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}
