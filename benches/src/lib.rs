//! Helpers for the multiproc benchmarks: CPU pinning and the raw floors the benchmarks compare with.

/// Whether this run pins itself to one CPU (`MULTIPROC_BENCH_PIN=1`); set by `cargo xtask bench`.
pub fn pinned() -> bool {
    std::env::var_os("MULTIPROC_BENCH_PIN").is_some_and(|v| v == "1")
}

/// A criterion group name with the pinning mode appended: `name/free` or `name/pinned`.
pub fn group_name(name: &str) -> String {
    format!("{name}_{}", if pinned() { "pinned" } else { "free" })
}

/// Pins this process (and the children it starts from now on) to CPU 0, where the OS allows.
pub fn pin_to_one_cpu() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `set` is a zeroed cpu_set_t, a valid empty set, that CPU_SET fills; the call
        // reads exactly `size_of::<cpu_set_t>()` bytes from it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

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
