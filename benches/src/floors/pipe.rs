//! The floors of pipes: a socket-pair ping-pong between two processes, sleeping in `read` or polling
//! first.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::gate::Child;

/// The floor of a round trip through a pipe: two processes (raw `fork`) passing one byte back and
/// forth over a Unix stream socket pair (what a `Connection` is), `rounds` round trips after one
/// untimed warm-up trip. Returns the time of the `rounds` trips.
///
/// # Panics
///
/// If the child fails or a read exceeds [`BOUND`](crate::BOUND).
pub fn floor_socketpair_pingpong(rounds: u64) -> Duration {
    socketpair_pingpong(rounds, None)
}

/// [`floor_socketpair_pingpong`] where each side, before it sleeps in `read`, looks for the
/// byte without waiting for up to `budget`, yielding the CPU between tries: the waiting that
/// proc-manager's calls use, on the bare socket.
///
/// # Panics
///
/// As [`floor_socketpair_pingpong`].
pub fn floor_socketpair_pingpong_polling(rounds: u64, budget: Duration) -> Duration {
    socketpair_pingpong(rounds, Some(budget))
}

fn socketpair_pingpong(rounds: u64, poll: Option<Duration>) -> Duration {
    // std's pair is close-on-exec on every OS (SOCK_CLOEXEC where it exists, FD_CLOEXEC elsewhere).
    let (parent_end, child_end) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let (parent_fd, child_fd) = (parent_end.as_raw_fd(), child_end.as_raw_fd());
    // SAFETY: the body uses read, write and poll on descriptors it owns.
    let child = unsafe {
        Child::fork(|| {
            let mut byte = 0u8;
            for _ in 0..=rounds {
                if !poll_byte(child_fd, &mut byte, poll) || !write_byte(child_fd, byte) {
                    return false;
                }
            }
            true
        })
    };
    let mut start = Instant::now();
    let mut byte = 0u8;
    for round in 0..=rounds {
        if round == 1 {
            start = Instant::now();
        }
        assert!(write_byte(parent_fd, byte), "write to the ping-pong child failed");
        assert!(poll_byte(parent_fd, &mut byte, poll), "the ping-pong child stopped answering");
        byte = byte.wrapping_add(1);
    }
    let elapsed = start.elapsed();
    assert!(child.reap(), "the ping-pong child failed");
    drop((parent_end, child_end));
    elapsed
}

/// Reads one byte, waiting at most [`BOUND`](crate::BOUND) for it. Async-signal-safe.
fn read_byte(fd: libc::c_int, byte: &mut u8) -> bool {
    loop {
        // SAFETY: `byte` is one writable byte.
        let n = unsafe { libc::read(fd, (byte as *mut u8).cast(), 1) };
        if n == 1 {
            return true;
        }
        if n == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

/// Reads one byte; first, with a `budget`, looks for it without sleeping for that long.
/// Async-signal-safe.
fn poll_byte(fd: libc::c_int, byte: &mut u8, budget: Option<Duration>) -> bool {
    if let Some(budget) = budget {
        let start = Instant::now();
        loop {
            // SAFETY: `byte` is one writable byte; MSG_DONTWAIT returns at once.
            let n = unsafe { libc::recv(fd, (byte as *mut u8).cast(), 1, libc::MSG_DONTWAIT) };
            if n == 1 {
                return true;
            }
            if n == 0 || start.elapsed() >= budget {
                break;
            }
            std::thread::yield_now();
        }
    }
    read_byte(fd, byte)
}

/// Writes one byte. Async-signal-safe.
fn write_byte(fd: libc::c_int, byte: u8) -> bool {
    // SAFETY: `byte` is one readable byte.
    unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) == 1 }
}
