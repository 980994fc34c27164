//! Framing on a socket pair in one process: bounds, descriptors, deadlines, bad frames.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::{send_frame, Incoming};
use crate::error::Error;
use crate::sys;

/// A stream over a duplicate of `fd`, to write raw bytes.
fn raw(fd: &OwnedFd) -> UnixStream {
    UnixStream::from(fd.try_clone().unwrap())
}

fn header(len: u64, fds: u32) -> Vec<u8> {
    let mut h = len.to_le_bytes().to_vec();
    h.extend_from_slice(&fds.to_le_bytes());
    h
}

fn body(incoming: &mut Incoming, sock: &OwnedFd) -> Vec<u8> {
    incoming.read(sock.as_fd(), None).unwrap().body.clone()
}

#[test]
fn frames_keep_their_bounds() {
    let (a, b) = sys::socketpair().unwrap();
    for m in [&b"a"[..], b"b", b"cd", b""] {
        send_frame(a.as_fd(), m, &[]).unwrap();
    }
    let mut incoming = Incoming::default();
    assert_eq!(body(&mut incoming, &b), b"a");
    assert_eq!(body(&mut incoming, &b), b"b");
    assert_eq!(body(&mut incoming, &b), b"cd");
    assert_eq!(body(&mut incoming, &b), b"", "an empty frame is a frame");
    let now = Some(Instant::now());
    assert!(matches!(incoming.read(b.as_fd(), now), Err(Error::Timeout)));
    drop(a);
    assert!(matches!(incoming.read(b.as_fd(), None), Err(Error::Disconnected)));
}

#[test]
fn descriptors_travel_with_their_frame() {
    let (a, b) = sys::socketpair().unwrap();
    let (x, y) = sys::socketpair().unwrap();
    send_frame(a.as_fd(), b"plain", &[]).unwrap();
    send_frame(a.as_fd(), b"one", &[x]).unwrap();
    let mut incoming = Incoming::default();
    let first = incoming.read(b.as_fd(), None).unwrap();
    assert!(first.fds.is_empty());
    let second = incoming.read(b.as_fd(), None).unwrap();
    assert_eq!(*second.body, b"one");
    let [x] = <[OwnedFd; 1]>::try_from(second.fds).unwrap();
    // The received descriptor is a working copy of the socket's end.
    raw(&x).write_all(b"through").unwrap();
    let mut got = [0u8; 7];
    std::io::Read::read_exact(&mut raw(&y), &mut got).unwrap();
    assert_eq!(&got, b"through");
}

#[test]
fn a_deadline_keeps_the_part_received() {
    let (a, b) = sys::socketpair().unwrap();
    let mut w = raw(&a);
    w.write_all(&header(5, 0)[..7]).unwrap();
    let mut incoming = Incoming::default();
    let soon = Some(Instant::now() + Duration::from_millis(20));
    assert!(matches!(incoming.read(b.as_fd(), soon), Err(Error::Timeout)));
    assert!(incoming.has_partial());
    w.write_all(&header(5, 0)[7..]).unwrap();
    w.write_all(b"ab").unwrap();
    assert!(matches!(incoming.read(b.as_fd(), Some(Instant::now())), Err(Error::Timeout)));
    w.write_all(b"cde").unwrap();
    send_frame(a.as_fd(), b"f", &[]).unwrap();
    assert_eq!(body(&mut incoming, &b), b"abcde");
    assert!(!incoming.has_partial());
    assert_eq!(body(&mut incoming, &b), b"f");
}

#[test]
fn the_end_of_the_stream_inside_a_frame_is_truncation() {
    let (a, b) = sys::socketpair().unwrap();
    let mut w = raw(&a);
    w.write_all(&header(100, 0)).unwrap();
    w.write_all(b"abc").unwrap();
    drop((w, a));
    let mut incoming = Incoming::default();
    assert!(matches!(incoming.read(b.as_fd(), None), Err(Error::Truncated)));
    assert!(!incoming.has_partial());
    assert!(matches!(incoming.read(b.as_fd(), None), Err(Error::Disconnected)));
}

#[test]
fn a_frame_too_large_to_hold_is_read_away() {
    let (a, b) = sys::socketpair().unwrap();
    let (x, _y) = sys::socketpair().unwrap();
    send_frame(a.as_fd(), &[7; 100_000], &[x]).unwrap();
    send_frame(a.as_fd(), b"next", &[]).unwrap();
    let mut incoming = Incoming::with_limit(10);
    assert!(matches!(incoming.read(b.as_fd(), None), Err(Error::TooLarge(100_000))));
    assert_eq!(body(&mut incoming, &b), b"next");
}

#[test]
fn a_frame_that_lost_its_descriptors_is_consumed() {
    let (a, b) = sys::socketpair().unwrap();
    let mut w = raw(&a);
    // The header announces a descriptor that never comes.
    w.write_all(&header(1, 1)).unwrap();
    w.write_all(b"x").unwrap();
    send_frame(a.as_fd(), b"next", &[]).unwrap();
    let mut incoming = Incoming::default();
    let e = incoming.read(b.as_fd(), None).unwrap_err();
    assert!(matches!(&e, Error::Os(e) if e.kind() == std::io::ErrorKind::InvalidData), "{e}");
    assert_eq!(body(&mut incoming, &b), b"next");
}

#[test]
fn a_large_frame_arrives_in_pieces_under_deadlines() {
    let (a, b) = sys::socketpair().unwrap();
    let sent: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let expected = sent.clone();
    let writer = std::thread::spawn(move || send_frame(a.as_fd(), &sent, &[]).unwrap());
    let mut incoming = Incoming::default();
    let deadline = Some(Instant::now() + Duration::from_secs(60));
    let got = incoming.read(b.as_fd(), deadline).unwrap().body.clone();
    writer.join().unwrap();
    assert!(got == expected);
}

#[test]
fn sending_to_a_closed_peer_is_a_broken_pipe() {
    let (a, b) = sys::socketpair().unwrap();
    drop(b);
    // No SIGPIPE: the test binary would die of it if the flag or option were missing (the
    // harness ignores SIGPIPE, so this is checked for real in tests/pipe.rs).
    let e = send_frame(a.as_fd(), b"x", &[]).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
}
