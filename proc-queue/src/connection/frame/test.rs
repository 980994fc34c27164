//! Framing on a socket pair in one process: bounds, descriptors, deadlines, bad frames.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::{send_frame, Incoming};
use crate::error::Error;

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
    let (a, b) = proc_os::socket::socketpair().unwrap();
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
    let (a, b) = proc_os::socket::socketpair().unwrap();
    let (x, y) = proc_os::socket::socketpair().unwrap();
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
    let (a, b) = proc_os::socket::socketpair().unwrap();
    let mut w = raw(&a);
    w.write_all(&header(5, 0)[..7]).unwrap();
    let mut incoming = Incoming::default();
    let soon = Some(Instant::now() + Duration::from_millis(20));
    assert!(matches!(incoming.read(b.as_fd(), soon), Err(Error::Timeout)));
    assert!(incoming.holds_data());
    w.write_all(&header(5, 0)[7..]).unwrap();
    w.write_all(b"ab").unwrap();
    assert!(matches!(incoming.read(b.as_fd(), Some(Instant::now())), Err(Error::Timeout)));
    w.write_all(b"cde").unwrap();
    send_frame(a.as_fd(), b"f", &[]).unwrap();
    assert_eq!(body(&mut incoming, &b), b"abcde");
    assert_eq!(body(&mut incoming, &b), b"f");
    assert!(!incoming.holds_data());
}

#[test]
fn the_end_of_the_stream_inside_a_frame_is_truncation() {
    let (a, b) = proc_os::socket::socketpair().unwrap();
    let mut w = raw(&a);
    w.write_all(&header(100, 0)).unwrap();
    w.write_all(b"abc").unwrap();
    drop((w, a));
    let mut incoming = Incoming::default();
    assert!(matches!(incoming.read(b.as_fd(), None), Err(Error::Truncated)));
    assert!(!incoming.holds_data());
    assert!(matches!(incoming.read(b.as_fd(), None), Err(Error::Disconnected)));
}

#[test]
fn a_frame_too_large_to_hold_is_read_away() {
    let (a, b) = proc_os::socket::socketpair().unwrap();
    let (x, _y) = proc_os::socket::socketpair().unwrap();
    send_frame(a.as_fd(), &[7; 100_000], &[x]).unwrap();
    send_frame(a.as_fd(), b"next", &[]).unwrap();
    let mut incoming = Incoming::with_limit(10);
    assert!(matches!(incoming.read(b.as_fd(), None), Err(Error::TooLarge(100_000))));
    assert_eq!(body(&mut incoming, &b), b"next");
}

#[test]
fn a_frame_that_lost_its_descriptors_is_consumed() {
    let (a, b) = proc_os::socket::socketpair().unwrap();
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
    let (a, b) = proc_os::socket::socketpair().unwrap();
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
    let (a, b) = proc_os::socket::socketpair().unwrap();
    drop(b);
    // No SIGPIPE: the test binary would die of it if the flag or option were missing (the
    // harness ignores SIGPIPE, so this is checked for real in tests/pipe.rs).
    let e = send_frame(a.as_fd(), b"x", &[]).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
}

/// The inode of a descriptor's socket, to tell which one a received descriptor is a copy of.
fn inode(fd: &OwnedFd) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::File::from(fd.try_clone().unwrap()).metadata().unwrap())
}

/// Whether `sock` has nothing to read right now.
fn drained(sock: &OwnedFd) -> bool {
    !proc_os::fd::wait_readable(&[sock.as_fd()], Some(Instant::now())).unwrap()[0]
}

#[test]
fn small_frames_sent_before_the_read_come_in_one_read() {
    let (a, b) = proc_os::socket::socketpair().unwrap();
    let sent: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; usize::from(i % 7)]).collect();
    for m in &sent {
        send_frame(a.as_fd(), m, &[]).unwrap();
    }
    let mut incoming = Incoming::default();
    assert_eq!(body(&mut incoming, &b), sent[0]);
    assert!(drained(&b), "the first read took every frame");
    assert!(incoming.holds_data());
    // The rest is served from the buffer, without waiting.
    for m in &sent[1..] {
        assert_eq!(&*incoming.read(b.as_fd(), Some(Instant::now())).unwrap().body, m);
    }
    assert!(!incoming.holds_data());
    assert!(matches!(incoming.read(b.as_fd(), Some(Instant::now())), Err(Error::Timeout)));
}

#[test]
fn descriptors_after_and_before_plain_frames_find_their_frame() {
    let (a, b) = proc_os::socket::socketpair().unwrap();
    let (x, _x) = proc_os::socket::socketpair().unwrap();
    let (y, _y) = proc_os::socket::socketpair().unwrap();
    let (ix, iy) = (inode(&x), inode(&y));
    for m in [&b"p1"[..], b"p2", b""] {
        send_frame(a.as_fd(), m, &[]).unwrap();
    }
    send_frame(a.as_fd(), b"x", &[x]).unwrap();
    for m in [&b"p3"[..], b"", b"p4"] {
        send_frame(a.as_fd(), m, &[]).unwrap();
    }
    send_frame(a.as_fd(), b"y", &[y]).unwrap();
    send_frame(a.as_fd(), b"p5", &[]).unwrap();
    let mut incoming = Incoming::default();
    let mut got = Vec::new();
    for _ in 0..9 {
        let m = incoming.read(b.as_fd(), None).unwrap();
        got.push((m.body.clone(), m.fds.iter().map(inode).collect::<Vec<_>>()));
    }
    let expected: Vec<(Vec<u8>, Vec<u64>)> = vec![
        (b"p1".to_vec(), vec![]),
        (b"p2".to_vec(), vec![]),
        (b"".to_vec(), vec![]),
        (b"x".to_vec(), vec![ix]),
        (b"p3".to_vec(), vec![]),
        (b"".to_vec(), vec![]),
        (b"p4".to_vec(), vec![]),
        (b"y".to_vec(), vec![iy]),
        (b"p5".to_vec(), vec![]),
    ];
    assert_eq!(got, expected);
    assert!(!incoming.holds_data());
}

#[test]
fn descriptors_on_consecutive_frames_stay_apart() {
    let (a, b) = proc_os::socket::socketpair().unwrap();
    let pairs: Vec<(OwnedFd, OwnedFd)> = (0..4).map(|_| proc_os::socket::socketpair().unwrap()).collect();
    let inodes: Vec<u64> = pairs.iter().map(|(x, _)| inode(x)).collect();
    send_frame(a.as_fd(), b"0", &[pairs[0].0.try_clone().unwrap()]).unwrap();
    send_frame(a.as_fd(), b"", &[pairs[1].0.try_clone().unwrap()]).unwrap();
    send_frame(a.as_fd(), b"23", &[pairs[2].0.try_clone().unwrap(), pairs[3].0.try_clone().unwrap()])
        .unwrap();
    send_frame(a.as_fd(), b"none", &[]).unwrap();
    let mut incoming = Incoming::default();
    let mut next = || {
        let m = incoming.read(b.as_fd(), None).unwrap();
        (m.body.clone(), m.fds.iter().map(inode).collect::<Vec<_>>())
    };
    assert_eq!(next(), (b"0".to_vec(), vec![inodes[0]]));
    assert_eq!(next(), (b"".to_vec(), vec![inodes[1]]));
    assert_eq!(next(), (b"23".to_vec(), vec![inodes[2], inodes[3]]));
    assert_eq!(next(), (b"none".to_vec(), vec![]));
}

#[test]
fn descriptors_of_a_header_cut_by_the_end_of_the_buffer_find_their_frame() {
    let (a, b) = proc_os::socket::socketpair().unwrap();
    let (x, _x) = proc_os::socket::socketpair().unwrap();
    let ix = inode(&x);
    // The first read fills the buffer with the first frame and 5 bytes of the second's header.
    let first = vec![1u8; super::READ_AHEAD - super::HEADER - 5];
    send_frame(a.as_fd(), &first, &[]).unwrap();
    send_frame(a.as_fd(), b"x", &[x]).unwrap();
    send_frame(a.as_fd(), b"after", &[]).unwrap();
    let mut incoming = Incoming::default();
    let m = incoming.read(b.as_fd(), None).unwrap();
    assert!(*m.body == first && m.fds.is_empty());
    // The descriptor came with the read that cut the header, and waits for the header's end.
    assert_eq!((incoming.end - incoming.pos, incoming.unclaimed.len()), (5, 1));
    let m = incoming.read(b.as_fd(), None).unwrap();
    assert_eq!((m.body.clone(), m.fds.iter().map(inode).collect::<Vec<_>>()), (b"x".to_vec(), vec![ix]));
    let m = incoming.read(b.as_fd(), None).unwrap();
    assert!(*m.body == *b"after" && m.fds.is_empty());
}

#[test]
fn a_large_body_after_small_frames_is_read_whole() {
    let (a, b) = proc_os::socket::socketpair().unwrap();
    let large: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let expected = large.clone();
    let writer = std::thread::spawn(move || {
        send_frame(a.as_fd(), b"s", &[]).unwrap();
        send_frame(a.as_fd(), &large, &[]).unwrap();
        send_frame(a.as_fd(), b"t", &[]).unwrap();
    });
    let mut incoming = Incoming::default();
    assert_eq!(body(&mut incoming, &b), b"s");
    assert!(body(&mut incoming, &b) == expected);
    assert_eq!(body(&mut incoming, &b), b"t");
    writer.join().unwrap();
}

#[test]
fn receives_outlast_the_socket_timeout_that_timed_receives_set() {
    let (a, b) = proc_os::socket::socketpair().unwrap();
    let mut incoming = Incoming::default();
    // A timed receive with its deadline far away blocks in recvmsg, a slice at a time.
    let until = Instant::now() + super::FAR + super::SLICE * 10;
    assert!(matches!(incoming.read(b.as_fd(), Some(until)), Err(Error::Timeout)));
    let late = Instant::now().saturating_duration_since(until);
    assert!(late < Duration::from_secs(10), "the deadline passed {late:?} ago");
    assert!(incoming.pace.slice_set);
    let writer = std::thread::spawn(move || {
        for m in [&b"late"[..], b"later"] {
            std::thread::sleep(super::SLICE * 3);
            send_frame(a.as_fd(), m, &[]).unwrap();
        }
        a
    });
    let far = Some(Instant::now() + Duration::from_secs(60));
    assert_eq!(incoming.read(b.as_fd(), far).unwrap().body.clone(), b"late");
    // An untimed receive on the socket, whose receive timeout is set now, waits past it too.
    assert_eq!(body(&mut incoming, &b), b"later");
    drop(writer.join().unwrap());
    assert!(matches!(incoming.read(b.as_fd(), None), Err(Error::Disconnected)));
}

#[test]
fn after_a_large_body_the_next_header_is_read_alone() {
    let (a, b) = proc_os::socket::socketpair().unwrap();
    let (x, _x) = proc_os::socket::socketpair().unwrap();
    let ix = inode(&x);
    let large = vec![5u8; super::DIRECT];
    let writer = {
        let large = large.clone();
        std::thread::spawn(move || {
            send_frame(a.as_fd(), &large, &[]).unwrap();
            send_frame(a.as_fd(), &large, &[x]).unwrap();
            send_frame(a.as_fd(), b"small", &[]).unwrap();
            a
        })
    };
    let mut incoming = Incoming::default();
    assert!(body(&mut incoming, &b) == large);
    // The second frame's header came alone, its body straight into the body's buffer.
    let m = incoming.read(b.as_fd(), None).unwrap();
    assert!(*m.body == large);
    assert_eq!(m.fds.iter().map(inode).collect::<Vec<_>>(), [ix]);
    assert_eq!(body(&mut incoming, &b), b"small");
    drop(writer.join().unwrap());
    assert!(matches!(incoming.read(b.as_fd(), None), Err(Error::Disconnected)));
}

/// The body buffer is reused: a large body after a larger one lands in memory that already holds
/// bytes, and neither it nor a small body after it takes any of them, nor reads past its frame.
#[test]
fn a_reused_body_buffer_keeps_each_frame_to_its_own_bytes() {
    let (a, b) = proc_os::socket::socketpair().unwrap();
    let sizes = [300 << 10, 100 << 10, 3, 0, 200 << 10, 70 << 10, 17];
    let writer = std::thread::spawn(move || {
        for (i, &n) in sizes.iter().enumerate() {
            let m: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
            send_frame(a.as_fd(), &m, &[]).unwrap();
        }
    });
    let mut incoming = Incoming::default();
    for (i, &n) in sizes.iter().enumerate() {
        let expected: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
        assert_eq!(body(&mut incoming, &b), expected, "frame {i} of {n} bytes");
    }
    writer.join().unwrap();
}

/// A typed read splits a large body that is one byte string (its varint, then the bytes at offset
/// 0 of the body buffer), whether the body's first bytes come with its header's read or after
/// a large frame (header read alone); small bodies and other bodies stay whole, and a raw read
/// never splits.
#[test]
fn typed_reads_split_large_byte_strings() {
    let (a, b) = proc_os::socket::socketpair().unwrap();
    let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let string = |bytes: &[u8]| {
        let mut body = proc_core::codec::to_vec(&(bytes.len() as u64)).unwrap();
        body.extend_from_slice(bytes);
        body
    };
    let writer = std::thread::spawn({
        let (big, a) = (big.clone(), a.try_clone().unwrap());
        move || {
            for body in [string(&big), string(&big), string(&big[..100]), big.clone(), string(&big)] {
                send_frame(a.as_fd(), &body, &[]).unwrap();
            }
        }
    });
    let mut incoming = Incoming::default();
    for round in 0..2 {
        let m = incoming.read_typed(b.as_fd(), None).unwrap();
        assert_eq!(m.prefix, &proc_core::codec::to_vec(&(big.len() as u64)).unwrap()[..], "{round}");
        assert_eq!(*m.body, big, "{round}");
    }
    let small = incoming.read_typed(b.as_fd(), None).unwrap();
    assert!(small.prefix.is_empty(), "a small string stays whole");
    assert_eq!(*small.body, string(&big[..100]));
    let other = incoming.read_typed(b.as_fd(), None).unwrap();
    assert!(other.prefix.is_empty(), "a body whose first bytes do not give the rest's length");
    assert_eq!(*other.body, big);
    let raw = incoming.read(b.as_fd(), None).unwrap();
    assert!(raw.prefix.is_empty());
    assert_eq!(*raw.body, string(&big));
    writer.join().unwrap();
    drop(a);
}
