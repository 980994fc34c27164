//! The small socket calls, on socket pairs in one process.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::{
    drain, recv, recv_nowait, ring, send_bytes, set_keepalive, set_recv_timeout, shutdown, socketpair,
};
use crate::fd::is_readable;

#[test]
fn a_doorbell_rings_and_drains() {
    let (a, b) = socketpair().unwrap();
    assert!(!is_readable(b.as_fd()).unwrap());
    for _ in 0..100 {
        ring(a.as_fd());
    }
    assert!(is_readable(b.as_fd()).unwrap());
    drain(b.as_fd());
    assert!(!is_readable(b.as_fd()).unwrap(), "drain left bytes behind");
}

#[test]
fn recv_nowait_tells_nothing_from_the_end() {
    let (a, b) = socketpair().unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(recv_nowait(b.as_fd(), &mut buf).unwrap(), None);
    send_bytes(a.as_fd(), b"abc").unwrap();
    assert_eq!(recv_nowait(b.as_fd(), &mut buf).unwrap(), Some(3));
    drop(a);
    assert_eq!(recv_nowait(b.as_fd(), &mut buf).unwrap(), Some(0));
}

#[test]
fn a_receive_timeout_ends_a_blocking_receive_with_nothing() {
    let (_a, b) = socketpair().unwrap();
    set_recv_timeout(b.as_fd(), Duration::from_millis(20)).unwrap();
    let started = Instant::now();
    let got = recv(b.as_fd(), &mut [0u8; 4], &mut Vec::new(), true, false).unwrap();
    assert!(got.is_none());
    assert!(started.elapsed() >= Duration::from_millis(15));
}

#[test]
fn shutdown_ends_the_stream_for_the_peer() {
    let (a, b) = socketpair().unwrap();
    shutdown(a.as_fd(), Shutdown::Write).unwrap();
    let got = recv(b.as_fd(), &mut [0u8; 4], &mut Vec::new(), false, false).unwrap().unwrap();
    assert_eq!(got.len, 0);
}

#[test]
fn a_send_to_a_closed_peer_is_an_error_not_a_signal() {
    let (a, b) = socketpair().unwrap();
    drop(b);
    let e = send_bytes(a.as_fd(), b"x").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
}

#[test]
fn keepalive_on_tcp() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    set_keepalive(stream.as_fd()).unwrap();
}

#[test]
fn wait_hangup_sees_the_end_after_stray_data() {
    for nonblocking in [false, true] {
        let (watched, mut peer) = UnixStream::pair().unwrap();
        watched.set_nonblocking(nonblocking).unwrap();
        let closed = Arc::new(AtomicBool::new(false));
        let (tx, done) = mpsc::channel();
        let seen = closed.clone();
        std::thread::spawn(move || {
            let result = super::wait_hangup(watched.as_fd());
            // Whether the peer had closed when the wait ended: it must have.
            let _ = tx.send((result, seen.load(Ordering::SeqCst)));
        });
        // Stray data (more than one read's worth) must neither end the wait nor stall it.
        peer.write_all(&[7u8; 4096]).unwrap();
        // Still waiting while the peer is open (a wait that ended on the data would have
        // answered by now, or at the latest with `after_close` false below).
        assert!(
            matches!(done.recv_timeout(Duration::from_millis(200)), Err(mpsc::RecvTimeoutError::Timeout)),
            "the wait ended while the peer was open (nonblocking: {nonblocking})"
        );
        closed.store(true, Ordering::SeqCst);
        drop(peer);
        let (result, after_close) =
            done.recv_timeout(Duration::from_secs(30)).expect("the hang-up was not noticed");
        assert!(result.is_ok(), "{result:?}");
        assert!(after_close, "stray data ended the wait (nonblocking: {nonblocking})");
    }
}

/// Control messages are built in a small stack buffer up to `FEW_FDS` descriptors and in a large
/// one above: on both sides of the switch, each descriptor arrives, in its place.
#[test]
fn descriptors_arrive_whole_and_in_order_around_the_small_buffer() {
    use std::io::IoSlice;
    use std::os::fd::BorrowedFd;
    for n in [1, super::FEW_FDS, super::FEW_FDS + 1, 40] {
        let pipes: Vec<_> = (0..n).map(|_| crate::fd::pipe().unwrap()).collect();
        let (a, b) = socketpair().unwrap();
        let ends: Vec<BorrowedFd<'_>> = pipes.iter().map(|(_, w)| w.as_fd()).collect();
        assert_eq!(super::send(a.as_fd(), &[IoSlice::new(b"x")], &ends).unwrap(), 1);
        let mut got = Vec::new();
        let mut buf = [0u8; 4];
        let r = recv(b.as_fd(), &mut buf, &mut got, true, false).unwrap().unwrap();
        assert_eq!((r.len, r.fds_lost, got.len()), (1, false, n), "{n} descriptors");
        // The i-th descriptor received is the write end of the i-th pipe.
        for (i, (fd, (read_end, _))) in got.iter().zip(&pipes).enumerate() {
            crate::fd::write_all(fd.as_fd(), &[i as u8]).unwrap();
            let mut byte = [0u8; 1];
            assert_eq!(crate::fd::read(read_end.as_fd(), &mut byte).unwrap(), 1);
            assert_eq!(byte[0], i as u8, "descriptor {i} of {n}");
        }
    }
}

/// As many descriptors as one message may carry arrive; one more is refused before the call.
#[test]
fn the_most_descriptors_arrive_and_one_more_is_refused() {
    use std::io::IoSlice;
    let (a, b) = socketpair().unwrap();
    let most = vec![a.as_fd(); super::MAX_FDS];
    assert_eq!(super::send(a.as_fd(), &[IoSlice::new(b"y")], &most).unwrap(), 1);
    let mut got = Vec::new();
    let mut buf = [0u8; 4];
    let r = recv(b.as_fd(), &mut buf, &mut got, true, false).unwrap().unwrap();
    assert_eq!((r.len, r.fds_lost, got.len()), (1, false, super::MAX_FDS));
    drop(got);
    let too_many = vec![a.as_fd(); super::MAX_FDS + 1];
    let e = super::send(a.as_fd(), &[IoSlice::new(b"z")], &too_many).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let e = super::send_nowait(a.as_fd(), &[IoSlice::new(b"z")], &too_many).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}
