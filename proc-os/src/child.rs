//! Making, reaping and ending processes: `fork`, `waitpid` in its two forms, how a process ended
//! ([`ExitStatus`], as Python's `exitcode` reports it), `_exit`, `atexit` and `setsid`.
//!
//! For multiproc's crates (proc-core's start methods, fork server and keeper); not a stable API.

use std::io;

use crate::fd::{cvt, retry};
use crate::sys::{Backend, Os};

/// How a process ended, as Python's `exitcode` reports it.
///
/// # Examples
///
/// ```
/// use proc_os::child::ExitStatus;
///
/// assert_eq!(ExitStatus::Signal(9).exitcode(), -9);
/// assert_eq!(ExitStatus::from_exitcode(-9), ExitStatus::Signal(9));
/// assert_eq!(ExitStatus::from_exitcode(3), ExitStatus::Code(3));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// Python's `exitcode`: the exit code, or minus the signal number.
    pub fn exitcode(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => -s,
        }
    }

    /// The status that Python's `exitcode` `code` stands for (negative: a signal).
    pub fn from_exitcode(code: i32) -> Self {
        if code < 0 {
            ExitStatus::Signal(-code)
        } else {
            ExitStatus::Code(code)
        }
    }

    // libc's wait macros, not nix's `WaitStatus`: that one names the signal with nix's `Signal`,
    // which lacks the real-time signals, so a child they killed would be reaped and then reported
    // as an error.
    fn from_raw(status: libc::c_int) -> Option<Self> {
        if libc::WIFEXITED(status) {
            Some(ExitStatus::Code(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(ExitStatus::Signal(libc::WTERMSIG(status)))
        } else {
            None
        }
    }
}

/// Reaps child `pid` if it has ended (`block == false`) or once it ends (`block == true`);
/// `EINTR` is retried.
///
/// Returns `None` when the child is still running and `block` is false.
///
/// # Errors
///
/// `pid` does not fit a `pid_t` (`InvalidInput`), or `waitpid` failed (`ECHILD`: not a child of
/// this process, or already reaped).
pub fn waitpid(pid: u32, block: bool) -> io::Result<Option<ExitStatus>> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        let mut status = 0;
        // libc, not nix: see `ExitStatus::from_raw`.
        // SAFETY: `status` is a live c_int that waitpid writes through.
        let ret = retry(|| cvt(unsafe { libc::waitpid(pid, &mut status, flags) }))?;
        if ret == 0 {
            return Ok(None);
        }
        // Stopped or continued children (only reported with WUNTRACED/WCONTINUED) are not ends.
        if let Some(s) = ExitStatus::from_raw(status) {
            return Ok(Some(s));
        }
    }
}

/// What [`wait_any`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnyChild {
    /// This child ended and is reaped now.
    Ended(u32, ExitStatus),
    /// Children exist, none has ended.
    Running,
    /// No children at all.
    None,
}

/// Reaps any ended child without blocking (used by proc-core's fork server and its keeper).
///
/// # Errors
///
/// `waitpid` failed other than with `ECHILD` (which is [`AnyChild::None`]) or `EINTR` (retried).
pub fn wait_any() -> io::Result<AnyChild> {
    loop {
        let mut status = 0;
        // libc, not nix: see `ExitStatus::from_raw`.
        // SAFETY: `status` is a live c_int that waitpid writes through.
        let ret = retry(|| cvt(unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) }));
        match ret {
            Ok(0) => return Ok(AnyChild::Running),
            Ok(pid) => {
                if let Some(s) = ExitStatus::from_raw(status) {
                    return Ok(AnyChild::Ended(pid as u32, s));
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return Ok(AnyChild::None),
            Err(e) => return Err(e),
        }
    }
}

/// Forks the calling process: the child's pid in the parent, 0 in the child.
///
/// # Errors
///
/// `fork` failed (`EAGAIN`: too many processes; `ENOMEM`).
///
/// # Safety
///
/// In the child only the calling thread exists. Until it execs or exits, the child must not rely on
/// any lock that another thread of the parent may have held at the time of the fork. glibc keeps
/// `malloc` usable after `fork` as an extension; other allocators may not.
pub unsafe fn fork() -> io::Result<u32> {
    // SAFETY: the caller upholds the contract above.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(child.as_raw() as u32),
        nix::unistd::ForkResult::Child => Ok(0),
    }
}

/// Forks like [`fork`], but runs none of the handlers registered with `pthread_atfork` and none of
/// the C library's own fork bookkeeping, in either process: `_Fork`, where the C library has it
/// (glibc 2.34 and later; POSIX.1-2024 names it), found at run time; elsewhere (macOS, older C
/// libraries) plain `fork`.
///
/// For a single-threaded process that forks often (proc-core's fork server): the bookkeeping
/// takes and resets locks of the C library and the dynamic loader, each a write to a page that
/// both processes then copy (a copy-on-write fault in each), and a process with one thread has no
/// lock held by another thread for it to reset. The lookup happens at the first call, so a process
/// that calls this once before it forks in earnest (or forks with it) gives its children the
/// answer.
///
/// # Errors
///
/// As [`fork`].
///
/// # Safety
///
/// As [`fork`], and: the calling process has a single thread, and neither process relies on an
/// `atfork` handler (multiproc's own releases listed descriptors in a child: such a child must
/// close what it does not keep itself).
pub unsafe fn fork_without_handlers() -> io::Result<u32> {
    type BareFork = unsafe extern "C" fn() -> libc::pid_t;
    static BARE_FORK: std::sync::OnceLock<Option<BareFork>> = std::sync::OnceLock::new();
    let bare = *BARE_FORK.get_or_init(|| {
        // libc: nix has no `dlsym`.
        // SAFETY: a constant, NUL-terminated symbol name looked up in the global scope.
        let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_Fork".as_ptr()) };
        // SAFETY: where the C library defines `_Fork`, it is `pid_t _Fork(void)`.
        (!sym.is_null()).then(|| unsafe { std::mem::transmute::<*mut libc::c_void, BareFork>(sym) })
    });
    let Some(bare) = bare else {
        // SAFETY: the caller upholds `fork`'s contract.
        return unsafe { fork() };
    };
    // SAFETY: `_Fork` takes nothing; the caller upholds the contract above.
    let pid = cvt(unsafe { bare() })?;
    Ok(pid as u32)
}

/// A descriptor that reads as ready (`poll`) once process `pid` has ended: for a child of this
/// process, once `waitpid` would reap it, whatever descriptors of the child its descendants
/// still hold (Linux' `pidfd_open`, 5.3 and later). Close-on-exec.
///
/// Open it only for a child not yet reaped: a reaped child's pid may name another process.
///
/// # Errors
///
/// `Unsupported` where the OS has no process descriptors (macOS, the portable backend);
/// `ENOSYS` on Linux before 5.3 (or where a seccomp filter forbids the call); `ESRCH` when no
/// process has that pid.
///
/// # Examples
///
/// ```
/// match proc_os::child::pidfd(std::process::id()) {
///     // This process runs: not ready.
///     Ok(fd) => assert!(!proc_os::fd::is_ready(std::os::fd::AsFd::as_fd(&fd)).unwrap()),
///     Err(e) => assert!(e.kind() == std::io::ErrorKind::Unsupported || e.raw_os_error() == Some(libc::ENOSYS)),
/// }
/// ```
pub fn pidfd(pid: u32) -> io::Result<std::os::fd::OwnedFd> {
    Os::pidfd(pid)
}

/// Forks children that are this process' *parent's* children, not its own (Linux'
/// `CLONE_PARENT`): the parent waits for them, signals them and learns their exit codes as for
/// children it forked itself, and they outlive this process unaffected.
///
/// For a helper that forks on its parent's behalf (proc-core's fork server): its parent then
/// watches each child directly, so a child's end wakes the parent at once instead of the helper,
/// which would have to reap it and tell the parent; and the helper's death takes nothing with it.
///
/// The fork is what glibc's `_Fork` does (no `atfork` handlers, no C library bookkeeping: see
/// [`fork_without_handlers`]), made by the system call itself: the child's thread block gets the
/// child's thread id, and the child registers the robust-mutex list again, as `_Fork` does, so
/// that a robust mutex the child holds when it dies is released to the next owner.
///
/// # Examples
///
/// ```
/// match proc_os::child::SiblingFork::new() {
///     // Linux with glibc: prepared once, in the thread that forks.
///     Ok(sibling) => drop(sibling),
///     // macOS, or another C library.
///     Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::Unsupported),
/// }
/// ```
#[derive(Debug)]
pub struct SiblingFork(<Os as Backend>::Sibling);

impl SiblingFork {
    /// Finds what the fork needs, for the calling thread, which is the one that forks.
    ///
    /// # Errors
    ///
    /// `Unsupported` where children cannot be made another process' (macOS, the portable
    /// backend), where the C library does not say where its thread block keeps the thread id
    /// (glibc does; musl does not), or on an architecture whose `clone` arguments are in an order
    /// this does not pass.
    pub fn new() -> io::Result<Self> {
        Os::sibling_fork().map(SiblingFork)
    }

    /// Forks a child of this process' parent: the child's pid here, 0 in the child.
    ///
    /// # Errors
    ///
    /// `clone` failed (`EAGAIN`: too many processes; `ENOMEM`; `EINVAL` in the init process of a
    /// pid namespace, whose parent is outside it).
    ///
    /// # Safety
    ///
    /// As [`fork_without_handlers`], and: called on the thread that made this value.
    pub unsafe fn fork(&self) -> io::Result<u32> {
        // SAFETY: the caller upholds the contract above.
        unsafe { Os::fork_sibling(&self.0) }
    }
}

/// The CPU affinity a thread had before [`narrow_affinity_for_fork`] narrowed it to one CPU.
#[derive(Debug, Clone, Copy)]
pub struct SavedAffinity(<Os as Backend>::Affinity);

impl SavedAffinity {
    /// Gives the calling thread this affinity back: the forking thread right after `fork`, and
    /// the child (whose only thread inherited the narrowed affinity) as its first step.
    ///
    /// # Errors
    ///
    /// `sched_setaffinity` refused both this affinity and every CPU (the thread keeps the one
    /// CPU then).
    pub fn restore(&self) -> io::Result<()> {
        Os::restore_affinity(&self.0)
    }
}

/// Keeps the next child the calling thread forks on the CPU it runs on: narrows the thread's CPU
/// affinity to that CPU and returns the affinity to give back ([`SavedAffinity::restore`]), which
/// the caller does right after `fork`, and the child as its first step.
///
/// For a process that forks a child and then sleeps (a server that answers one request and waits
/// for the next): the child runs on the CPU its parent leaves, where the page tables it was just
/// given are in cache, instead of being woken on another, idle CPU, which costs tens of
/// microseconds on a virtual machine (an idle virtual CPU halts). Not for a burst of forks: each
/// child waits for the one CPU until its first step.
///
/// `None`, with nothing changed, where the affinity names one CPU already, where the OS has no
/// CPU affinity (macOS), or when a call fails.
///
/// # Examples
///
/// ```
/// if let Some(saved) = proc_os::child::narrow_affinity_for_fork() {
///     // ... fork here; then, in both processes:
///     saved.restore().unwrap();
/// }
/// ```
pub fn narrow_affinity_for_fork() -> Option<SavedAffinity> {
    Os::narrow_affinity().map(SavedAffinity)
}

/// Whether the calling thread may run on more than one CPU: its CPU affinity where the OS has
/// one (Linux), else whether more than one CPU is online (macOS). A waiter that looks for a peer's
/// work instead of sleeping leaves the peer a CPU only then.
///
/// # Examples
///
/// ```
/// let several = proc_os::child::may_run_on_several_cpus();
/// assert!(!several || proc_os::online_cpus().unwrap_or(1) > 1);
/// ```
pub fn may_run_on_several_cpus() -> bool {
    Os::allowed_cpus().or_else(crate::online_cpus).is_some_and(|n| n > 1)
}

/// Registers `f` to run at normal process exit (`atexit`); a registration the C library refuses
/// (no memory) is ignored.
pub fn at_exit(f: extern "C" fn()) {
    // libc: nix has no `atexit`.
    // SAFETY: `f` is a plain extern "C" function that lives for the whole program.
    unsafe { libc::atexit(f) };
}

/// Immediately ends the calling process without running destructors or `atexit` handlers
/// (`_exit`); async-signal-safe, so a forked child may call it.
pub fn exit_now(code: i32) -> ! {
    // libc: nix has no `_exit`.
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// Puts this process in a session (and process group) of its own, with no controlling terminal:
/// the hangup of the terminal it was started from no longer reaches it.
///
/// # Errors
///
/// `setsid` failed (`EPERM`: the caller already leads a process group).
pub fn new_session() -> io::Result<()> {
    nix::unistd::setsid().map(drop).map_err(io::Error::from)
}

/// Makes this process the child subreaper of its descendants (Linux' `PR_SET_CHILD_SUBREAPER`):
/// a descendant whose parent dies is reparented to this process (the nearest living subreaper)
/// instead of to init, so this process can still wait for it.
///
/// # Errors
///
/// `Unsupported` where the OS has no subreapers (macOS: orphans go to launchd), or `prctl`
/// failed.
pub fn become_subreaper() -> io::Result<()> {
    Os::become_subreaper()
}

#[cfg(all(test, target_os = "linux"))]
mod test {
    use super::*;

    /// The calling thread's CPUs, as Linux lists them (`Cpus_allowed_list` of the thread).
    fn allowed_cpus() -> String {
        // SAFETY: gettid takes no arguments.
        let tid = unsafe { libc::gettid() };
        let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap_or_default();
        let line = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"));
        line.map(|l| l.trim().to_owned()).unwrap_or_default()
    }

    /// Narrowed, the thread may run on one CPU only, the one it runs on; restored, on what it
    /// could before. Only the Linux backend narrows, and only where more than one CPU is allowed.
    #[test]
    fn affinity_narrows_to_this_cpu_and_comes_back() {
        std::thread::spawn(|| {
            let before = allowed_cpus();
            let more_than_one = before.contains([',', '-']);
            let Some(saved) = narrow_affinity_for_fork() else {
                assert!(Os::NAME == "portable" || !more_than_one, "not narrowed: {before}");
                return;
            };
            assert_eq!(Os::NAME, "linux");
            let narrowed = allowed_cpus();
            // SAFETY: sched_getcpu takes no arguments.
            let here = unsafe { libc::sched_getcpu() };
            assert_eq!(narrowed, here.to_string(), "narrowed from {before}");
            // From one CPU there is nothing to narrow.
            assert!(narrow_affinity_for_fork().is_none());
            assert!(!may_run_on_several_cpus(), "narrowed to {narrowed}");
            saved.restore().unwrap();
            assert_eq!(allowed_cpus(), before);
            assert!(may_run_on_several_cpus(), "restored to {before}");
        })
        .join()
        .unwrap();
    }
}

#[cfg(test)]
mod fork_test {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    static HANDLER_RAN: AtomicBool = AtomicBool::new(false);

    extern "C" fn note_child() {
        HANDLER_RAN.store(true, Ordering::SeqCst);
    }

    /// The child runs and its exit code comes back; where the C library has `_Fork`, the child
    /// runs no `atfork` handler (it says in its exit code whether one ran), elsewhere it does.
    #[test]
    fn a_child_forked_without_handlers_runs_none_where_the_c_library_allows() {
        static REGISTER: std::sync::Once = std::sync::Once::new();
        // SAFETY: registers a handler that only stores to an atomic.
        REGISTER.call_once(|| assert_eq!(unsafe { libc::pthread_atfork(None, None, Some(note_child)) }, 0));
        // SAFETY: the child only loads an atomic and calls `_exit`, both async-signal-safe.
        let pid = unsafe { fork_without_handlers() }.unwrap();
        if pid == 0 {
            exit_now(if HANDLER_RAN.load(Ordering::SeqCst) { 1 } else { 2 });
        }
        let status = waitpid(pid, true).unwrap();
        // SAFETY: a constant, NUL-terminated symbol name looked up in the global scope.
        let bare = !unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_Fork".as_ptr()) }.is_null();
        assert_eq!(status, Some(ExitStatus::Code(if bare { 2 } else { 1 })));
        // A plain fork runs it: the test would pass without noticing otherwise.
        // SAFETY: as above.
        let pid = unsafe { fork() }.unwrap();
        if pid == 0 {
            exit_now(if HANDLER_RAN.load(Ordering::SeqCst) { 1 } else { 2 });
        }
        assert_eq!(waitpid(pid, true).unwrap(), Some(ExitStatus::Code(1)));
    }
}

/// Linux only: robust mutexes and `pthread_mutex_timedlock` are not on macOS (where `SiblingFork`
/// is `Unsupported` anyway).
#[cfg(all(test, target_os = "linux"))]
mod sibling_test {
    use std::os::fd::AsFd;

    use super::*;

    /// Where it is supported (Linux with glibc), a sibling child is this process' parent's child:
    /// here a helper forked by the test forks it, and the test waits for it and reads its exit
    /// code. A robust mutex that the child holds when it exits is released to the test
    /// (`EOWNERDEAD`), which takes both the child's thread id in its thread block (the mutex
    /// records it as the owner) and its robust list registered with the kernel (which releases
    /// the mutex at its exit).
    #[test]
    fn a_sibling_child_is_the_grandparents_and_its_robust_mutex_is_released_at_its_exit() {
        if Os::NAME == "portable" {
            assert_eq!(SiblingFork::new().unwrap_err().kind(), io::ErrorKind::Unsupported);
            return;
        }
        let len = std::mem::size_of::<libc::pthread_mutex_t>();
        // SAFETY: a new anonymous shared mapping; nothing else refers to it.
        let mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(mem, libc::MAP_FAILED);
        let mutex = mem.cast::<libc::pthread_mutex_t>();
        // SAFETY: the attribute and the mutex are initialized before use and live for the test.
        unsafe {
            let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
            assert_eq!(libc::pthread_mutexattr_init(attr.as_mut_ptr()), 0);
            assert_eq!(
                libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED),
                0
            );
            assert_eq!(libc::pthread_mutexattr_setrobust(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST), 0);
            assert_eq!(libc::pthread_mutex_init(mutex, attr.as_ptr()), 0);
            libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
        }
        let (r, w) = crate::fd::pipe().unwrap();
        // SAFETY: the helper only forks (once) and writes to a pipe; the child locks a mutex no
        // one holds; both end with `_exit`.
        let helper = unsafe { fork() }.unwrap();
        if helper == 0 {
            let Ok(sibling) = SiblingFork::new() else { exit_now(10) };
            // SAFETY: the helper has one thread, which made `sibling`.
            match unsafe { sibling.fork() } {
                Ok(0) => {
                    // SAFETY: the mutex was initialized by the test and is shared.
                    let locked = unsafe { libc::pthread_mutex_lock(mutex) };
                    // Exits holding it.
                    exit_now(if locked == 0 { 3 } else { 4 });
                }
                Ok(child) => {
                    let _ = crate::fd::write_all(w.as_fd(), &child.to_le_bytes());
                    exit_now(0)
                }
                Err(_) => exit_now(11),
            }
        }
        drop(w);
        assert_eq!(waitpid(helper, true).unwrap(), Some(ExitStatus::Code(0)));
        let mut pid = [0u8; 4];
        assert_eq!(crate::fd::read(r.as_fd(), &mut pid).unwrap(), 4);
        // Only a child of this process can be waited for.
        let child = u32::from_le_bytes(pid);
        assert_eq!(waitpid(child, true).unwrap(), Some(ExitStatus::Code(3)));
        let mut deadline = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec through the pointer, which is live.
        assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut deadline) }, 0);
        deadline.tv_sec += 30;
        // SAFETY: the mutex is initialized; the deadline bounds the wait should it never be released.
        unsafe {
            assert_eq!(libc::pthread_mutex_timedlock(mutex, &deadline), libc::EOWNERDEAD);
            assert_eq!(libc::pthread_mutex_consistent(mutex), 0);
            assert_eq!(libc::pthread_mutex_unlock(mutex), 0);
            libc::pthread_mutex_destroy(mutex);
            libc::munmap(mem, len);
        }
    }
}

#[cfg(test)]
mod pidfd_test {
    use std::os::fd::AsFd;

    use super::*;

    /// A child's process descriptor reads as ready once the child has exited, not before, and not
    /// at a message it sends; `waitpid` then reaps it without waiting. The portable backend has
    /// none.
    #[test]
    fn a_pidfd_is_ready_once_the_child_has_exited() {
        if Os::NAME == "portable" {
            assert_eq!(pidfd(std::process::id()).unwrap_err().kind(), io::ErrorKind::Unsupported);
            return;
        }
        let (release_r, release_w) = crate::fd::pipe().unwrap();
        let (said_r, said_w) = crate::fd::pipe().unwrap();
        // SAFETY: the child only writes and reads pipes and calls `_exit`.
        let pid = unsafe { fork() }.unwrap();
        if pid == 0 {
            drop(release_w);
            let _ = crate::fd::write_all(said_w.as_fd(), &[1]);
            let mut byte = [0u8; 1];
            let _ = crate::fd::read(release_r.as_fd(), &mut byte);
            exit_now(5);
        }
        drop(said_w);
        drop(release_r);
        let fd = match pidfd(pid) {
            Ok(fd) => fd,
            // Linux before 5.3: nothing to test.
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                drop(release_w);
                assert_eq!(waitpid(pid, true).unwrap(), Some(ExitStatus::Code(5)));
                return;
            }
            Err(e) => panic!("pidfd_open: {e}"),
        };
        let mut byte = [0u8; 1];
        assert_eq!(crate::fd::read(said_r.as_fd(), &mut byte).unwrap(), 1);
        // It has spoken and runs on.
        assert!(!crate::fd::is_ready(fd.as_fd()).unwrap());
        drop(release_w);
        assert_eq!(crate::fd::wait_readable(&[fd.as_fd()], None).unwrap(), vec![true]);
        assert_eq!(waitpid(pid, false).unwrap(), Some(ExitStatus::Code(5)));
    }
}
