//! Frames on a socket pair in one process: bounds, descriptors, pieces, a stream cut short.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use super::{header, send_frame, FrameReader, Read};
use crate::socket::socketpair;

#[test]
fn frames_keep_their_bounds_and_descriptors() {
    let (a, b) = socketpair().unwrap();
    let (x, y) = socketpair().unwrap();
    send_frame(a.as_fd(), b"first", &[y.as_fd()]).unwrap();
    send_frame::<std::os::fd::OwnedFd>(a.as_fd(), b"", &[]).unwrap();
    send_frame(a.as_fd(), b"third", &[x.as_fd(), y.as_fd()]).unwrap();
    let mut reader = FrameReader::default();
    let Read::Frame(body, fds) = reader.read(b.as_fd(), true).unwrap() else { panic!("no frame") };
    assert_eq!((body.as_slice(), fds.len()), (&b"first"[..], 1));
    // The received descriptor is a working copy of `y`.
    UnixStream::from(fds.into_iter().next().unwrap()).write_all(b"x").unwrap();
    let Read::Frame(body, fds) = reader.read(b.as_fd(), true).unwrap() else { panic!("no frame") };
    assert!(body.is_empty() && fds.is_empty(), "an empty frame is a frame");
    let Read::Frame(body, fds) = reader.read(b.as_fd(), true).unwrap() else { panic!("no frame") };
    assert_eq!((body.as_slice(), fds.len()), (&b"third"[..], 2));
    assert!(matches!(reader.read(b.as_fd(), false).unwrap(), Read::Pending));
    drop(a);
    assert!(matches!(reader.read(b.as_fd(), false).unwrap(), Read::Eof));
}

#[test]
fn a_large_frame_is_read_in_pieces_without_blocking() {
    let (a, b) = socketpair().unwrap();
    let body: Vec<u8> = (0..4 << 20).map(|i: u32| i as u8).collect();
    let sent = body.clone();
    let writer =
        std::thread::spawn(move || send_frame::<std::os::fd::OwnedFd>(a.as_fd(), &sent, &[]).unwrap());
    let mut reader = FrameReader::default();
    let got = loop {
        match reader.read(b.as_fd(), false).unwrap() {
            Read::Frame(got, _) => break got,
            Read::Pending => {
                crate::fd::wait_readable(&[b.as_fd()], None).unwrap();
            }
            Read::Eof => panic!("early end"),
        }
    };
    writer.join().unwrap();
    assert!(got == body);
}

#[test]
fn end_of_stream_inside_a_frame_is_an_error() {
    let (a, b) = socketpair().unwrap();
    // A header announcing 100 bytes, then only 3 of them.
    let mut raw = UnixStream::from(a);
    raw.write_all(&header(100, 0)).unwrap();
    raw.write_all(b"abc").unwrap();
    drop(raw);
    let e = FrameReader::default().read(b.as_fd(), true).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
}

#[test]
fn too_many_descriptors_are_refused() {
    let (a, _b) = socketpair().unwrap();
    let fds = vec![a.as_fd(); crate::socket::MAX_FDS + 1];
    let e = send_frame(a.as_fd(), b"", &fds).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}
