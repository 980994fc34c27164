//! Property tests of the frame reader against bytes another process could write: round trips,
//! arbitrary bytes, valid frames cut short or with a bit flipped, lengths set huge, and frames
//! whose descriptors do not match their header. Whatever arrives, the reader answers a frame, an
//! end of stream or an error, never a panic or a hang; it allocates no more than what arrived
//! calls for (about twice the bytes, at least one 64 KiB step), whatever length a header claims;
//! and no descriptor outlives the frame that brought it.
//!
//! Failures are reproducible: proptest's persistence files are off (`failure_persistence: None`),
//! and a failing case prints its minimal input, which becomes a plain regression test here.

#![allow(clippy::unwrap_used)]

use std::io::{ErrorKind, IoSlice, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use proc_os::frame::{header, parse_header, send_frame, FrameReader, Read, HEADER};
use proc_os::socket::{self, socketpair};
use proptest::prelude::*;
use proptest::test_runner::Config;
use test_support::{alloc::measure, serial, Watchdog};

#[global_allocator]
static ALLOC: test_support::alloc::Counting = test_support::alloc::Counting;

/// The reader's first body allocation (`FIRST_CHUNK` in `frame.rs`).
const FIRST_CHUNK: usize = 64 << 10;

/// What reading `arrived` bytes may allocate: the body doubles as bytes arrive, from 64 KiB.
fn alloc_bound(arrived: usize) -> usize {
    FIRST_CHUNK.max(2 * arrived) + 4096
}

fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// The descriptors this process has open (Linux: `/proc/self/fd`; elsewhere none are counted).
fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

/// Writes `bytes` raw into a fresh socket pair, closes the writing end, and reads frames until the
/// end or an error, with a receive timeout that turns a hang into a failure. Returns the frames
/// read and how the stream ended (`None`: a clean end between frames).
fn read_all(bytes: &[u8]) -> (Vec<(Vec<u8>, usize)>, Option<ErrorKind>) {
    let (a, b) = socketpair().unwrap();
    let mut raw = UnixStream::from(a);
    raw.write_all(bytes).unwrap();
    drop(raw);
    socket::set_recv_timeout(b.as_fd(), Duration::from_secs(10)).unwrap();
    let mut reader = FrameReader::default();
    let mut frames = Vec::new();
    loop {
        match reader.read(b.as_fd(), true) {
            Ok(Read::Frame(body, fds)) => frames.push((body, fds.len())),
            Ok(Read::Eof) => return (frames, None),
            Ok(Read::Pending) => panic!("a blocking read of a closed stream hung"),
            Err(e) => return (frames, Some(e.kind())),
        }
    }
}

/// Frames laid end to end, as `send_frame` writes them without descriptors.
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

    /// A header says what `header` wrote.
    #[test]
    fn headers_round_trip(len in any::<u64>(), fds in any::<u32>()) {
        prop_assert_eq!(parse_header(&header(len, fds)), (len, fds as usize));
    }

    /// Frames sent with their descriptors come back whole, in order, with working descriptors.
    #[test]
    fn frames_round_trip(frames in prop::collection::vec(
        (prop::collection::vec(any::<u8>(), 0..3000), 0usize..4), 1..5)
    ) {
        let _serial = serial();
        let _watchdog = Watchdog::new("frames_round_trip", Duration::from_secs(60));
        let (a, b) = socketpair().unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        let inode = file.metadata().unwrap().ino();
        let passed: Vec<OwnedFd> = (0..4).map(|_| OwnedFd::from(file.try_clone().unwrap())).collect();
        for (body, n) in &frames {
            send_frame(a.as_fd(), body, &passed[..*n]).unwrap();
        }
        drop(a);
        let mut reader = FrameReader::default();
        for (body, n) in &frames {
            let Read::Frame(got, fds) = reader.read(b.as_fd(), true).unwrap() else {
                panic!("no frame")
            };
            prop_assert_eq!(&got, body);
            prop_assert_eq!(fds.len(), *n);
            for fd in fds {
                prop_assert_eq!(std::fs::File::from(fd).metadata().unwrap().ino(), inode);
            }
        }
        prop_assert!(matches!(reader.read(b.as_fd(), true).unwrap(), Read::Eof));
    }

    /// Arbitrary bytes: frames, a clean end, or an error; never more memory than they call for.
    #[test]
    fn arbitrary_bytes_never_panic_or_overallocate(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _serial = serial();
        let ((_, _), largest, growth) = measure(|| read_all(&bytes));
        prop_assert!(largest <= alloc_bound(bytes.len()), "largest allocation {largest}");
        prop_assert!(growth <= 2 * alloc_bound(bytes.len()), "live bytes grew by {growth}");
    }

    /// Valid frames cut at any length: the whole frames before the cut, then a clean end exactly
    /// at a frame boundary and `UnexpectedEof` anywhere else.
    #[test]
    fn truncation_at_every_length(bodies in bodies(), cut in any::<prop::sample::Index>()) {
        let _serial = serial();
        let bytes = encode(&bodies);
        let cut = cut.index(bytes.len() + 1);
        let (frames, end) = read_all(&bytes[..cut]);
        // The frame boundaries and how many frames end before the cut.
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
        prop_assert_eq!(frames.len(), whole);
        for ((got, fds), body) in frames.iter().zip(&bodies) {
            prop_assert_eq!(got, body);
            prop_assert_eq!(*fds, 0);
        }
        if at_boundary {
            prop_assert_eq!(end, None);
        } else {
            prop_assert_eq!(end, Some(ErrorKind::UnexpectedEof));
        }
    }

    /// Valid frames with one bit flipped: no panic, no hang, no allocation beyond the bound.
    #[test]
    fn a_flipped_bit_is_survived(bodies in bodies(), bit in any::<prop::sample::Index>()) {
        let _serial = serial();
        let mut bytes = encode(&bodies);
        prop_assume!(!bytes.is_empty());
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let (_, largest, growth) = measure(|| read_all(&bytes));
        prop_assert!(largest <= alloc_bound(bytes.len()), "largest allocation {largest}");
        prop_assert!(growth <= 2 * alloc_bound(bytes.len()), "live bytes grew by {growth}");
    }

    /// A header that claims a huge body, followed by a few bytes and the end: `UnexpectedEof`,
    /// having allocated one first step at most, never the claimed length.
    #[test]
    fn a_huge_length_allocates_only_what_arrives(
        len in (1u64 << 20)..=u64::MAX,
        fds in any::<u32>(),
        tail in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let _serial = serial();
        let mut bytes = header(len, fds).to_vec();
        bytes.extend_from_slice(&tail);
        let ((frames, end), largest, growth) = measure(|| read_all(&bytes));
        prop_assert!(frames.is_empty());
        let want = if usize::try_from(len).is_ok() { ErrorKind::UnexpectedEof } else { ErrorKind::InvalidData };
        prop_assert_eq!(end, Some(want));
        prop_assert!(largest <= alloc_bound(bytes.len()), "largest allocation {largest}");
        prop_assert!(growth <= 2 * alloc_bound(bytes.len()), "live bytes grew by {growth}");
    }

    /// A header that claims `claimed` descriptors on a frame that carries `carried` (with the
    /// header, or some with the header and the rest with the body): the frame when they match,
    /// `InvalidData` otherwise, and every received descriptor closed once the frame is dropped.
    #[test]
    fn descriptors_that_do_not_match_the_header_are_closed(
        claimed in 0u32..6,
        with_header in 0usize..4,
        with_body in 0usize..3,
        body in prop::collection::vec(any::<u8>(), 1..200),
    ) {
        let _serial = serial();
        let _watchdog = Watchdog::new("descriptors_that_do_not_match_the_header_are_closed", Duration::from_secs(60));
        let before = open_fds();
        {
            let (a, b) = socketpair().unwrap();
            let (x, _y) = socketpair().unwrap();
            let head = header(body.len() as u64, claimed);
            let xs = vec![x.as_fd(); with_header.max(with_body)];
            // The header with its descriptors, then the body with the others (each `sendmsg`
            // carrying descriptors is a record of its own: the reader sees them apart).
            let sent = socket::send(a.as_fd(), &[IoSlice::new(&head)], &xs[..with_header]).unwrap();
            prop_assert_eq!(sent, HEADER);
            let sent = socket::send(a.as_fd(), &[IoSlice::new(&body)], &xs[..with_body]).unwrap();
            prop_assert_eq!(sent, body.len());
            drop(a);
            socket::set_recv_timeout(b.as_fd(), Duration::from_secs(10)).unwrap();
            let mut reader = FrameReader::default();
            let carried = with_header + with_body;
            match reader.read(b.as_fd(), true) {
                Ok(Read::Frame(got, fds)) => {
                    prop_assert_eq!(carried, claimed as usize);
                    prop_assert_eq!(got, body);
                    prop_assert_eq!(fds.len(), carried);
                }
                Ok(other) => panic!("{other:?} instead of a frame or an error"),
                Err(e) => {
                    prop_assert_ne!(carried, claimed as usize);
                    prop_assert_eq!(e.kind(), ErrorKind::InvalidData);
                }
            }
            prop_assert!(matches!(reader.read(b.as_fd(), true), Ok(Read::Eof)));
        }
        prop_assert_eq!(open_fds(), before, "a received descriptor was leaked");
    }
}

/// The same huge header read without blocking: `Pending` while bytes are missing, nothing large
/// allocated for the claimed length, and the end of the stream is `UnexpectedEof`.
#[test]
fn a_huge_length_without_blocking_is_pending_then_an_error() {
    let _serial = serial();
    let (a, b) = socketpair().unwrap();
    let mut raw = UnixStream::from(a);
    raw.write_all(&header(u64::MAX >> 1, 0)).unwrap();
    raw.write_all(&[7; 100]).unwrap();
    let mut reader = FrameReader::default();
    let (got, largest, _) = measure(|| reader.read(b.as_fd(), false));
    assert!(matches!(got, Ok(Read::Pending)), "{got:?}");
    assert!(largest <= alloc_bound(HEADER + 100), "largest allocation {largest}");
    drop(raw);
    let e = reader.read(b.as_fd(), false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
}

/// The measurements above can fail: the counter sees an allocation, and on Linux the descriptor
/// count sees a new descriptor.
#[test]
fn the_counters_see_what_they_count() {
    let (v, largest, growth) = measure(|| vec![1u8; 1 << 20]);
    assert!(largest >= 1 << 20 && growth >= 1 << 20, "{largest} {growth}");
    drop(v);
    // The lock first: a test that opens descriptors holds it, so none opens or closes one
    // between the two counts.
    let _serial = serial();
    if let Some(before) = open_fds() {
        let pair = socketpair().unwrap();
        assert_eq!(open_fds(), Some(before + 2));
        drop(pair);
    }
}
