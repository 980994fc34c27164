//! Helpers shared by the integration tests (from `test_support`), plus the list of methods.

#![allow(dead_code, unreachable_pub)]

pub use test_support::{serial, Watchdog};

/// Runs one `#[ignore]`d helper test of this binary in a fresh process.
pub fn run_helper(name: &str, envs: &[(&str, &str)]) -> std::process::Output {
    test_support::run_helper(name, envs).expect("run helper")
}

/// The path of an example binary of this package.
pub fn example(name: &str) -> std::path::PathBuf {
    test_support::example(name).expect("example path")
}

/// The start methods every test runs under.
pub fn methods() -> Vec<proc_core::StartMethod> {
    proc_core::get_all_start_methods()
}

/// Kills process `pid` (not this process' child: a fork server or its keeper) with SIGKILL and
/// waits until it is dead.
pub fn kill_and_wait(pid: u32) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: pidfd_open takes plain integers and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just returned by pidfd_open and is owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: kill takes plain integers; the pidfd keeps the pid from being recycled unseen.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: `pfd` is a live pollfd for the duration of the call.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, -1) }, 1);
    }
    #[cfg(not(target_os = "linux"))]
    {
        // No pidfd here: the process is gone once init (launchd) reaped it. Bounded by the test's
        // watchdog.
        // SAFETY: kill takes plain integers.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        // SAFETY: signal 0 only checks that the process exists.
        while unsafe { libc::kill(pid as i32, 0) } == 0 {
            std::thread::yield_now();
        }
    }
}
