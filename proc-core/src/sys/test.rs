//! Unit tests of the shared POSIX helpers.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

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
