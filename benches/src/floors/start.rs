//! The floors of process starts: a raw `fork` + `waitpid`, and a re-execution of this binary.

/// The raw floor of a fork start: `fork`, `_exit(0)` in the child, `waitpid` in the parent.
pub fn raw_fork_waitpid() {
    // SAFETY: the child only calls the async-signal-safe `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: _exit never returns.
        unsafe { libc::_exit(0) };
    }
    assert!(pid > 0, "fork failed");
    let mut status = 0;
    // SAFETY: `status` is a live c_int; `pid` is our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// The raw floor of a spawn start: re-execute this binary, which exits in its first constructor
/// (the multiproc dispatcher's `exit` role), and wait for it.
pub fn reexec_self() {
    let exe = std::env::current_exe().expect("current exe");
    let status = std::process::Command::new(exe)
        .env("MULTIPROC_CHILD", "exit")
        .stdin(std::process::Stdio::null())
        .status()
        .expect("re-exec");
    assert!(status.success());
}
