//! Property tests of a connection's reader against bytes another process could write into its
//! socket: round trips, arbitrary bytes, valid frames cut at every length or with a bit flipped,
//! lengths up to `u64::MAX`, and frames whose descriptors do not match their header. The real
//! reader reads them (`recv_bytes`, and `recv` of a value holding handles). Whatever arrives: a
//! message or an error, never a panic or a hang; allocations bounded by what arrived (a counting
//! allocator, per thread), whatever a header claims; every descriptor that came along either in the
//! message or closed (`/proc/self/fd` counted).
//!
//! Failures are reproducible: proptest's persistence files are off (`failure_persistence: None`),
//! and a failing case prints its minimal input, which becomes a plain regression test here.

#![allow(clippy::unwrap_used)]

use std::io::{IoSlice, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use proc_core::handle::Fd;
use proc_os::frame::{header, HEADER};
use proc_queue::{pipe, Connection, Error};
use proptest::prelude::*;
use proptest::test_runner::Config;
use test_support::{alloc::measure, serial, Watchdog};

#[global_allocator]
static ALLOC: test_support::alloc::Counting = test_support::alloc::Counting;

/// The read-ahead buffer and the body's first step (64 KiB each), and serde's cautious step for
/// a sequence whose length lies (1 MiB).
const FIXED: usize = (64 << 10) + (64 << 10) + (1 << 20);

/// What reading `n` bytes may allocate at once, and in all.
fn bounds(n: usize) -> (usize, usize) {
    ((1 << 20).max(2 * n) + 4096, FIXED + 4 * n + 8192)
}

fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// The descriptors this process has open (Linux: `/proc/self/fd`; elsewhere none are counted).
fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

/// A message with handles, as a connection's values may hold.
type WithHandles = (Vec<u8>, Vec<Fd>);

/// A pipe whose first end has written `bytes` raw into the socket and closed.
fn written<T>(bytes: &[u8]) -> Connection<T> {
    let (a, b) = pipe::<T>().unwrap();
    let mut raw = UnixStream::from(a.as_fd().try_clone_to_owned().unwrap());
    drop(a);
    raw.write_all(bytes).unwrap();
    drop(raw);
    b
}

/// Receives raw messages until an error (none is a hang: the writer is gone).
fn recv_all_bytes(b: &Connection<()>) -> (Vec<Vec<u8>>, Error) {
    let mut got = Vec::new();
    loop {
        match b.recv_bytes() {
            Ok(m) => got.push(m),
            Err(e) => return (got, e),
        }
    }
}

/// Frames as `send_frame` lays them out without descriptors.
fn encode(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for body in bodies {
        out.extend_from_slice(&header(body.len() as u64, 0));
        out.extend_from_slice(body);
    }
    out
}

fn bodies() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 0..4)
}

proptest! {
    #![proptest_config(config(64))]

    /// Values and raw messages come back as they were sent, in order.
    #[test]
    fn messages_round_trip(values in prop::collection::vec((any::<u32>(), ".{0,30}", prop::collection::vec(any::<u8>(), 0..3000)), 1..5)) {
        let _serial = serial();
        let (a, b) = pipe::<(u32, String, Vec<u8>)>().unwrap();
        for v in &values {
            a.send(v).unwrap();
            a.send_bytes(&v.2).unwrap();
        }
        drop(a);
        for v in &values {
            prop_assert_eq!(&b.recv().unwrap(), v);
            prop_assert_eq!(&b.recv_bytes().unwrap(), &v.2);
        }
        prop_assert!(matches!(b.recv(), Err(Error::Disconnected)));
    }

    /// Arbitrary bytes: messages then an error, never a panic; allocations within the bounds,
    /// as raw messages and as values with handles.
    #[test]
    fn arbitrary_bytes_are_messages_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _serial = serial();
        let (largest_bound, growth_bound) = bounds(bytes.len());
        let before = open_fds();
        let b = written::<()>(&bytes);
        let (_, largest, growth) = measure(|| recv_all_bytes(&b));
        prop_assert!(largest <= largest_bound && growth <= growth_bound, "{largest} {growth}");
        drop(b);
        let b = written::<WithHandles>(&bytes);
        let (_, largest, growth) = measure(|| {
            while !matches!(b.recv(), Err(Error::Disconnected | Error::Truncated)) {}
        });
        prop_assert!(largest <= largest_bound && growth <= growth_bound, "{largest} {growth}");
        drop(b);
        prop_assert_eq!(open_fds(), before);
    }

    /// Valid frames cut at any length: the whole frames, then `Disconnected` at a frame boundary
    /// and `Truncated` anywhere else.
    #[test]
    fn truncation_at_every_length(bodies in bodies(), cut in any::<prop::sample::Index>()) {
        let _serial = serial();
        let bytes = encode(&bodies);
        let cut = cut.index(bytes.len() + 1);
        let (got, end) = recv_all_bytes(&written(&bytes[..cut]));
        let mut boundary = 0;
        let mut whole = 0;
        let mut at_boundary = cut == 0;
        for body in &bodies {
            boundary += HEADER + body.len();
            if boundary <= cut {
                whole += 1;
            }
            at_boundary |= boundary == cut;
        }
        prop_assert_eq!(&got[..], &bodies[..whole]);
        if at_boundary {
            prop_assert!(matches!(end, Error::Disconnected), "{end:?}");
        } else {
            prop_assert!(matches!(end, Error::Truncated), "{end:?}");
        }
    }

    /// Valid frames with one bit flipped: messages or an error, within the bounds.
    #[test]
    fn a_flipped_bit_is_survived(bodies in bodies(), bit in any::<prop::sample::Index>()) {
        let _serial = serial();
        let mut bytes = encode(&bodies);
        prop_assume!(!bytes.is_empty());
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let b = written::<()>(&bytes);
        let (_, largest, growth) = measure(|| recv_all_bytes(&b));
        let (largest_bound, growth_bound) = bounds(bytes.len());
        prop_assert!(largest <= largest_bound && growth <= growth_bound, "{largest} {growth}");
    }

    /// A header claiming a huge body, a few bytes, then the end: `Truncated`, having allocated
    /// only for what arrived.
    #[test]
    fn a_huge_length_allocates_only_what_arrives(len in (1u64 << 20)..=u64::MAX, fds in 0u32..4, tail in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _serial = serial();
        let mut bytes = header(len, fds).to_vec();
        bytes.extend_from_slice(&tail);
        let b = written::<()>(&bytes);
        let ((got, end), largest, growth) = measure(|| recv_all_bytes(&b));
        prop_assert!(got.is_empty());
        prop_assert!(matches!(end, Error::Truncated), "{end:?}");
        let (largest_bound, growth_bound) = bounds(bytes.len());
        prop_assert!(largest <= largest_bound && growth <= growth_bound, "{largest} {growth}");
    }

    /// A frame that claims `claimed` descriptors and carries `with_header` with its header and
    /// `with_body` with its body: with none beside the body, the message exactly when the counts
    /// match, an error otherwise; always, every descriptor received is in the message or closed.
    #[test]
    fn descriptors_that_do_not_match_the_header_are_closed(
        claimed in 0u32..5,
        with_header in 0usize..4,
        with_body in 0usize..3,
        body in prop::collection::vec(any::<u8>(), 1..200),
    ) {
        let _serial = serial();
        let _watchdog = Watchdog::new("descriptors_that_do_not_match_the_header_are_closed", Duration::from_secs(60));
        let before = open_fds();
        {
            let (a, b) = pipe::<()>().unwrap();
            let (x, _y) = proc_os::socket::socketpair().unwrap();
            let xs = vec![x.as_fd(); with_header.max(with_body)];
            let head = header(body.len() as u64, claimed);
            proc_os::socket::send(a.as_fd(), &[IoSlice::new(&head)], &xs[..with_header]).unwrap();
            proc_os::socket::send(a.as_fd(), &[IoSlice::new(&body)], &xs[..with_body]).unwrap();
            drop(a);
            let got = b.recv_bytes();
            if with_body == 0 {
                prop_assert_eq!(got.is_ok(), with_header == claimed as usize, "{:?}", got);
            }
            if let Ok(got) = got {
                prop_assert_eq!(got, body);
            }
            prop_assert!(matches!(b.recv_bytes(), Err(Error::Disconnected)));
        }
        prop_assert_eq!(open_fds(), before, "a received descriptor was leaked");
    }

    /// A value with handles whose indices and descriptors disagree: the value or an error, and no
    /// descriptor left open either way.
    #[test]
    fn handles_from_garbled_indices_never_leak(indices in prop::collection::vec(any::<u32>(), 0..4), carried in 0usize..4) {
        let _serial = serial();
        let before = open_fds();
        {
            let (a, b) = pipe::<WithHandles>().unwrap();
            let body = proc_core::codec::to_vec(&(vec![1u8, 2], indices.clone())).unwrap();
            let file = std::fs::File::open("/dev/null").unwrap();
            let fds: Vec<OwnedFd> = (0..carried).map(|_| OwnedFd::from(file.try_clone().unwrap())).collect();
            let head = header(body.len() as u64, carried as u32);
            let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
            proc_os::socket::send(a.as_fd(), &[IoSlice::new(&head), IoSlice::new(&body)], &borrowed).unwrap();
            drop(fds);
            drop(file);
            drop(a);
            let ok = indices.iter().all(|&i| (i as usize) < carried)
                && indices.iter().collect::<std::collections::BTreeSet<_>>().len() == indices.len();
            let got = b.recv();
            prop_assert_eq!(got.is_ok(), ok, "{:?}", got.as_ref().map(|v| v.1.len()));
        }
        prop_assert_eq!(open_fds(), before, "a received descriptor was leaked");
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// A connection end decoded from garbage, with a descriptor that is no socket beside it
    /// (`/dev/null`): an error, or a connection whose receives and sends fail; never a panic, and
    /// the descriptor closed with it.
    #[test]
    fn a_connection_end_from_garbage_fails_cleanly(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..12),
        (0u32..2, any::<bool>(), any::<bool>()).prop_map(|v| proc_core::codec::to_vec(&v).unwrap()),
    ]) {
        let _serial = serial();
        let before = open_fds();
        {
            let null = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
            let decoded = proc_core::handle::deserialize_with_fds::<Connection<u8>>(&bytes, vec![null]);
            // Index 0 is there, any other is missing; bytes after the value are ignored.
            let valid = bytes.len() >= 3 && bytes[0] == 0 && bytes[1] <= 1 && bytes[2] <= 1;
            prop_assert_eq!(decoded.is_ok(), valid, "{:?}", bytes);
            if let Ok(c) = decoded {
                prop_assert!(c.recv_timeout(Duration::ZERO).is_err());
                prop_assert!(c.send(&1).is_err());
            }
        }
        prop_assert_eq!(open_fds(), before, "a descriptor was leaked");
    }
}

/// Regression: a frame whose header announces no descriptors but whose read brought one was
/// accepted, and the descriptor stayed open until a later header or the connection's end. Now the
/// frame is refused, the descriptor is closed at once, and the next frame reads as sent.
#[test]
fn unannounced_descriptors_are_refused_and_closed_at_once() {
    let _serial = serial();
    let (a, b) = pipe::<()>().unwrap();
    let (x, y) = proc_os::socket::socketpair().unwrap();
    let before = open_fds();
    let head = header(3, 0);
    proc_os::socket::send(a.as_fd(), &[IoSlice::new(&head)], &[x.as_fd()]).unwrap();
    proc_os::socket::send(a.as_fd(), &[IoSlice::new(b"abc")], &[]).unwrap();
    a.send_bytes(b"next").unwrap();
    let e = b.recv_bytes().unwrap_err();
    assert!(matches!(&e, Error::Os(e) if e.kind() == std::io::ErrorKind::InvalidData), "{e:?}");
    assert_eq!(open_fds(), before, "the stray descriptor is still open");
    assert_eq!(b.recv_bytes().unwrap(), b"next");
    drop((x, y));
}

/// The measurements above can fail: the counter sees an allocation, and on Linux the descriptor
/// count sees a new descriptor.
#[test]
fn the_counters_see_what_they_count() {
    let (v, largest, growth) = measure(|| vec![1u8; 1 << 20]);
    assert!(largest >= 1 << 20 && growth >= 1 << 20, "{largest} {growth}");
    drop(v);
    let _serial = serial();
    if let Some(before) = open_fds() {
        let pair = pipe::<()>().unwrap();
        assert!(open_fds().unwrap() > before);
        drop(pair);
        assert_eq!(open_fds(), Some(before));
    }
}
