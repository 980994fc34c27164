//! The operating-system layer of [multiproc](https://docs.rs/multiproc), one for the whole
//! workspace (as `parking_lot_core` serves parking_lot, or `crossbeam-utils` crossbeam): the
//! calls the other crates build their cross-process protocols on.
//!
//! - The wait/wake seam on a 32-bit word in shared memory: [`wait`], [`wake`], [`wake_all`] (shared
//!   futexes on Linux; `os_sync_wait_on_address` or `__ulock_wait` on macOS, looked up at run time;
//!   polling as the last resort).
//! - Who runs: [`pid`] (cached, right after `fork`), [`thread_id`], [`thread_token`], and whether
//!   another process does: [`process_alive`]; a process by pid *and* start time, so that a reused
//!   pid does not pass for a dead process: [`current_process_token`] (cached), [`process_token`],
//!   [`process_token_alive`], [`process_alive_since`].
//! - [`Backoff`]: spin, yield, sleep.
//! - [`socket`]: close-on-exec, SIGPIPE-free Unix stream sockets that carry descriptors
//!   (`SCM_RIGHTS`); [`fd`]: `poll` with a deadline, close-on-exec, `EINTR` and `errno` handling.
//! - [`frame`]: one message per frame (a 12-byte header, the body, descriptors beside it), the wire
//!   format of proc-core's control sockets and proc-queue's connections.
//! - [`signal_name`], [`monotonic_ns`], [`populate_write`].
//! - For multiproc's own crates (proc-core above all), not a stable API: [`child`] (`fork`,
//!   `waitpid`, how a process ended), [`shm`] (POSIX shared-memory objects), [`signal`]
//!   (dispositions, masks, handlers), the plain descriptor calls in [`fd`] and [`socket`], and
//!   [`getpid`], [`getppid`], [`geteuid`], [`online_cpus`], [`random_u64`], [`exe_path`],
//!   [`thread_count`], [`start_time`].
//!
//! ```
//! use std::os::fd::AsFd;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//!
//! // Wait/wake: sleep while the word is 0 (here a timeout stands in for another process' store).
//! let word = AtomicU32::new(0);
//! while word.load(Ordering::Acquire) == 0 {
//!     if !proc_os::wait(&word, 0, Some(Duration::from_millis(1))) {
//!         word.store(1, Ordering::Release);
//!         proc_os::wake_all(&word);
//!     }
//! }
//!
//! // A descriptor travels with a message.
//! let (a, b) = proc_os::socket::socketpair().unwrap();
//! let (passed, _keep) = proc_os::socket::socketpair().unwrap();
//! proc_os::socket::send(a.as_fd(), &[std::io::IoSlice::new(b"fd")], &[passed.as_fd()]).unwrap();
//! let (mut buf, mut fds) = ([0u8; 2], Vec::new());
//! let got = proc_os::socket::recv(b.as_fd(), &mut buf, &mut fds, true, false).unwrap().unwrap();
//! assert_eq!((got.len, &buf, fds.len()), (2, b"fd", 1));
//!
//! assert!(proc_os::process_alive(proc_os::pid()));
//! ```
//!
//! Everything that differs between Linux and macOS sits behind one internal contract, a trait
//! that each backend implements (`src/sys/`); the portable backend, the one macOS uses, runs on
//! Linux too with the `force-portable` feature, so Linux test runs cover the macOS code paths.
#![warn(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]
#![deny(clippy::undocumented_unsafe_blocks)]

// Processes, shared memory and descriptor passing are built on `fork`, POSIX shared memory and Unix
// sockets: Linux and macOS are supported (and tested); Windows has none of them.
#[cfg(not(unix))]
compile_error!(
    "proc-os supports Linux and macOS only: it needs fork, POSIX shared memory and Unix domain sockets, \
     which Windows does not have"
);

mod backoff;
pub mod child;
pub mod fd;
pub mod frame;
mod mem;
mod process;
pub mod shm;
pub mod signal;
pub mod socket;
mod sys;
mod wait;

pub use backoff::Backoff;
pub use mem::{monotonic_ns, populate_write};
pub use process::{
    current_process_token, exe_path, geteuid, getpid, getppid, online_cpus, open_files_limit, pid,
    process_alive, process_alive_since, process_token, process_token_alive, random_u64, start_time,
    thread_count, thread_id, thread_token,
};
pub use signal::signal_name;
pub use wait::{wait, wait_backend, wake, wake_all};

/// The backend this build uses: `"linux"`, or `"portable"` (macOS; Linux with `force-portable`).
///
/// # Examples
///
/// ```
/// assert!(["linux", "portable"].contains(&proc_os::BACKEND));
/// ```
pub const BACKEND: &str = <sys::Os as sys::Backend>::NAME;

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctest;
