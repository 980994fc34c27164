//! `Process::join_async` (feature `tokio`) under tokio's current-thread and multi-thread
//! runtimes and every start method: values, large values, panics, and a dropped future.

#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{methods, serial, Watchdog};
use proc_core::handle::Fd;
use proc_core::{get_context, ByteBuf};
use test_support::runtimes;

const LIMIT: Duration = Duration::from_secs(120);

fn square(x: u64) -> u64 {
    x * x
}

fn big(len: usize) -> ByteBuf {
    ByteBuf::from(vec![7u8; len])
}

fn panics() -> u8 {
    panic!("async boom")
}

/// Waits for a byte from the parent, then returns it.
fn waits_for_a_byte(s: Fd) -> u8 {
    let mut s = UnixStream::from(s.into_owned());
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    b[0]
}

#[test]
fn join_async_returns_values_panics_and_large_values() {
    let _s = serial();
    let _w = Watchdog::new("join_async", LIMIT);
    for rt in runtimes() {
        for m in methods() {
            rt.block_on(async {
                let p = get_context(m).process(square, (9,)).start().unwrap();
                assert_eq!(p.join_async().await.unwrap(), 81, "{m:?}");
                // 8 MiB come through the control socket while the parent waits.
                let p = get_context(m).process(big, (8 << 20,)).start().unwrap();
                assert_eq!(p.join_async().await.unwrap().len(), 8 << 20, "{m:?}");
                let p = get_context(m).process(panics, ()).start().unwrap();
                let err = p.join_async().await.unwrap_err();
                assert_eq!(err.panic_message(), Some("async boom"), "{m:?}");
            });
        }
    }
}

#[test]
fn a_dropped_join_async_loses_nothing() {
    let _s = serial();
    let _w = Watchdog::new("join_async_dropped", LIMIT);
    for rt in runtimes() {
        rt.block_on(async {
            let (mut mine, theirs) = UnixStream::pair().unwrap();
            let p =
                proc_core::Process::new(waits_for_a_byte, (Fd::from(std::os::fd::OwnedFd::from(theirs)),))
                    .start()
                    .unwrap();
            // The child waits for its byte: the join cannot finish, and is dropped.
            let early = tokio::time::timeout(Duration::from_millis(20), p.join_async()).await;
            assert!(early.is_err(), "the child cannot have ended");
            mine.write_all(&[42]).unwrap();
            assert_eq!(p.join_async().await.unwrap(), 42);
            assert_eq!(p.join().unwrap(), 42, "joined again, blocking");
        });
    }
}

#[test]
fn without_a_runtime_join_async_is_an_error() {
    let _s = serial();
    let p = proc_core::Process::new(square, (2,)).start().unwrap();
    let mut fut = std::pin::pin!(p.join_async());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Err(e)) => assert!(e.io_kind().is_some(), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.join().unwrap(), 4);
}

/// Forks a descendant that runs no fork handler, so it keeps every descriptor the child has (the
/// alive pipe, the control socket), then exits with 3 without reporting. The descendant waits for a
/// byte on `release` (or its end).
#[cfg(target_os = "linux")]
fn exits_leaving_a_descendant(release: Fd) -> u8 {
    let release = release.into_owned();
    // SAFETY: a bare clone is a fork without `atfork` handlers; the descendant only reads and
    // calls `_exit`. The arguments after the flags are zero: no stack, no tid addresses, no TLS.
    let pid = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0) };
    assert!(pid >= 0);
    if pid == 0 {
        let mut b = [0u8; 1];
        let _ = std::fs::File::from(release).read(&mut b);
        // SAFETY: _exit only ends the process.
        unsafe { libc::_exit(0) };
    }
    std::process::exit(3)
}

/// Linux: a child that exits without a report while a descendant holds its alive pipe and its
/// control socket still ends `join_async` (the child is watched on its pidfd once its pid is
/// known), under every start method. (The portable backend has no pidfd: there such a join waits
/// for the descendant.)
#[cfg(target_os = "linux")]
#[test]
fn join_async_is_not_held_up_by_a_descendant() {
    if proc_core::backend() != "linux" {
        return;
    }
    let _s = serial();
    let _w = Watchdog::new("join_async_is_not_held_up_by_a_descendant", LIMIT);
    for m in methods() {
        let (release_r, mut release_w) = UnixStream::pair().unwrap();
        let fd = Fd::from(std::os::fd::OwnedFd::from(release_r));
        let p = get_context(m).process(exits_leaving_a_descendant, (fd,)).start().unwrap();
        let err = runtimes()[0].block_on(p.join_async()).unwrap_err();
        assert_eq!(err.exit_code(), Some(3), "{m:?}: {err}");
        release_w.write_all(&[1]).unwrap();
    }
}
