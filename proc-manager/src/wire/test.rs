//! Property tests of the manager's wire against bytes a peer could write: frames through
//! [`Framed::read`] over a socket pair (requests as the server reads them, answers as a client
//! does), with arbitrary bytes, valid frames cut short or with a bit flipped, lengths above and
//! below the limit, trailing bytes and deeply nested answers. Whatever arrives: a value or an error,
//! never a panic, a stack overflow or a hang, and no allocation beyond what the bytes call for
//! (a counting allocator, per thread), whatever length a frame claims.
//!
//! The handshake before authentication, and garbage sent to a real server before and after it, are
//! in `tests/wire_fuzz.rs`. Failures are reproducible: proptest's persistence files are off, and a
//! failing case prints its minimal input, which becomes a plain regression test here.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::unix::net::UnixStream;

use proptest::prelude::*;
use proptest::test_runner::Config;
use test_support::alloc::measure;

use super::{Bytes, Framed, Kind, Method, Owner, Request, Response, WireError, DEFAULT_MAX_FRAME};
use crate::error::Error;

#[global_allocator]
static ALLOC: test_support::alloc::Counting = test_support::alloc::Counting;

/// serde's cautious preallocation for a sequence whose length comes from the bytes.
const CAUTIOUS: usize = 1 << 20;

/// The read buffer a `Framed` starts with (`BUF`).
const BUF: usize = 16 << 10;

/// What reading `n` bytes may allocate at once, and in all.
fn bounds(n: usize) -> (usize, usize) {
    (CAUTIOUS.max(2 * n) + BUF + 4096, 2 * CAUTIOUS + 8 * n + 4 * BUF)
}

fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Writes `bytes` into a socket pair, closes the writing end, and reads values of type `T` until
/// an error, as the server (`T = Request`) or a client (`T = Response`) does. Returns the values
/// read (as their `Debug`) and the error that ended the stream.
fn read_all<T: serde::de::DeserializeOwned + std::fmt::Debug>(
    bytes: &[u8],
    max: u32,
) -> (Vec<String>, Error) {
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(bytes).unwrap();
    drop(a);
    b.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut framed = Framed::new(b);
    let mut values = Vec::new();
    loop {
        match framed.read::<T>(max) {
            Ok(v) => values.push(format!("{v:?}")),
            Err(e) => return (values, e),
        }
    }
}

/// Frames as `Framed::write` lays them out.
fn frames<T: serde::Serialize>(values: &[T]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        let body = proc_core::codec::to_vec(v).unwrap();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
    }
    out
}

fn bytes() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from)
}

fn owner() -> impl Strategy<Value = Owner> {
    (any::<u128>(), any::<u64>()).prop_map(|(session, thread)| Owner { session, thread })
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Dict),
        Just(Kind::List),
        (any::<u32>(), any::<bool>()).prop_map(|(maxsize, joinable)| Kind::Queue { maxsize, joinable }),
        any::<u64>().prop_map(|lock| Kind::Condition { lock }),
        (".{0,10}", ".{0,10}").prop_map(|(name, type_name)| Kind::Custom { name, type_name }),
    ]
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        bytes().prop_map(Method::DictGet),
        prop::collection::vec((bytes(), bytes()), 0..4).prop_map(Method::DictUpdate),
        any::<Option<i64>>().prop_map(Method::ListPop),
        (any::<u64>(), prop::collection::vec(bytes(), 0..4))
            .prop_map(|(version, items)| Method::ListReplace { version, items }),
        (bytes(), any::<bool>(), any::<Option<u64>>()).prop_map(|(value, block, timeout)| Method::QueuePut {
            value,
            block,
            timeout
        }),
        (owner(), any::<bool>(), any::<Option<u64>>()).prop_map(|(owner, block, timeout)| Method::Acquire {
            owner,
            block,
            timeout
        }),
        (owner(), any::<u32>()).prop_map(|(owner, n)| Method::CondNotify { owner, n }),
        (".{0,10}", bytes()).prop_map(|(method, args)| Method::Custom { method, args }),
        Just(()).prop_map(|()| Method::BarrierState),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (kind(), proptest::option::of(bytes())).prop_map(|(kind, init)| Request::Create { kind, init }),
        any::<u64>().prop_map(Request::DecRef),
        (".{0,10}", any::<u64>()).prop_map(|(name, object)| Request::Publish { name, object }),
        (
            any::<u64>(),
            method(),
            prop::collection::vec((bytes(), prop::collection::vec(any::<u64>(), 0..3)), 0..3)
        )
            .prop_map(|(object, method, embedded)| Request::Call { object, method, embedded }),
        Just(()).prop_map(|()| Request::CountObjects),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    let plain = prop_oneof![
        Just(()).prop_map(|()| Response::Ok),
        proptest::option::of(bytes()).prop_map(Response::MaybeValue),
        prop::collection::vec((".{0,8}", bytes()), 0..3).prop_map(Response::Named),
        (any::<u64>(), kind()).prop_map(|(object, kind)| Response::Found { object, kind }),
        ".{0,10}".prop_map(|m| Response::Err(WireError::Remote(m))),
    ];
    (plain, proptest::option::of(prop::collection::vec(any::<u64>(), 0..4))).prop_map(|(inner, moved)| {
        match moved {
            Some(ids) => Response::Moved { ids, inner: Box::new(inner) },
            None => inner,
        }
    })
}

/// The first two bytes of a `Moved` answer with no ids: one level of nesting.
fn moved_level() -> [u8; 2] {
    let one = proc_core::codec::to_vec(&Response::Moved { ids: Vec::new(), inner: Box::new(Response::Ok) })
        .unwrap();
    [one[0], one[1]]
}

proptest! {
    #![proptest_config(config(128))]

    /// Requests and answers come back as they were sent, one frame each; then the end.
    #[test]
    fn frames_round_trip(requests in prop::collection::vec(request(), 0..5), responses in prop::collection::vec(response(), 0..5)) {
        let (got, end) = read_all::<Request>(&frames(&requests), DEFAULT_MAX_FRAME);
        prop_assert_eq!(got, requests.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>());
        prop_assert!(matches!(end, Error::Connection(_)), "{end:?}");
        let (got, end) = read_all::<Response>(&frames(&responses), DEFAULT_MAX_FRAME);
        prop_assert_eq!(got, responses.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>());
        prop_assert!(matches!(end, Error::Connection(_)), "{end:?}");
    }

    /// Arbitrary bytes, as requests and as answers: values then an error, within the bounds.
    #[test]
    fn arbitrary_bytes_are_values_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let (largest_bound, growth_bound) = bounds(bytes.len());
        let (_, largest, growth) = measure(|| read_all::<Request>(&bytes, DEFAULT_MAX_FRAME));
        prop_assert!(largest <= largest_bound && growth <= growth_bound, "{largest} {growth}");
        let (_, largest, growth) = measure(|| read_all::<Response>(&bytes, DEFAULT_MAX_FRAME));
        prop_assert!(largest <= largest_bound && growth <= growth_bound, "{largest} {growth}");
    }

    /// Arbitrary bodies in well-formed frames (so that the decoder, not the framing, meets them).
    #[test]
    fn arbitrary_bodies_are_values_or_an_error(bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..6)) {
        let mut bytes = Vec::new();
        for body in &bodies {
            bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
            bytes.extend_from_slice(body);
        }
        let (largest_bound, growth_bound) = bounds(bytes.len());
        let ((_, end), largest, growth) = measure(|| read_all::<Request>(&bytes, DEFAULT_MAX_FRAME));
        prop_assert!(matches!(end, Error::Connection(_) | Error::Protocol(_)), "{end:?}");
        prop_assert!(largest <= largest_bound && growth <= growth_bound, "{largest} {growth}");
        let ((_, end), largest, growth) = measure(|| read_all::<Response>(&bytes, DEFAULT_MAX_FRAME));
        prop_assert!(matches!(end, Error::Connection(_) | Error::Protocol(_)), "{end:?}");
        prop_assert!(largest <= largest_bound && growth <= growth_bound, "{largest} {growth}");
    }

    /// Valid frames cut at any length: the whole frames before the cut, then `UnexpectedEof`.
    #[test]
    fn truncation_at_every_length(requests in prop::collection::vec(request(), 1..4), cut in any::<prop::sample::Index>()) {
        let bytes = frames(&requests);
        let cut = cut.index(bytes.len());
        let (got, end) = read_all::<Request>(&bytes[..cut], DEFAULT_MAX_FRAME);
        let mut whole = 0;
        let mut at = 0;
        for r in &requests {
            at += frames(std::slice::from_ref(r)).len();
            if at <= cut {
                whole += 1;
            }
        }
        prop_assert_eq!(got.len(), whole);
        prop_assert!(matches!(&end, Error::Connection(e) if e.kind() == std::io::ErrorKind::UnexpectedEof), "{end:?}");
    }

    /// Valid frames with one bit flipped: values or an error, within the bounds.
    #[test]
    fn a_flipped_bit_is_survived(requests in prop::collection::vec(request(), 1..4), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = frames(&requests);
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let (largest_bound, growth_bound) = bounds(bytes.len());
        let (_, largest, growth) = measure(|| read_all::<Request>(&bytes, DEFAULT_MAX_FRAME));
        prop_assert!(largest <= largest_bound && growth <= growth_bound, "{largest} {growth}");
    }

    /// A length above the limit is refused before anything is read or allocated; a length under
    /// it whose bytes never come costs only the bytes that came.
    #[test]
    fn lengths_above_and_below_the_limit(len in any::<u32>(), max in 1u32..=DEFAULT_MAX_FRAME, tail in prop::collection::vec(any::<u8>(), 0..1000)) {
        let mut bytes = len.to_le_bytes().to_vec();
        bytes.extend_from_slice(&tail);
        prop_assume!(len as usize > tail.len());
        let ((got, end), largest, growth) = measure(|| read_all::<Request>(&bytes, max));
        prop_assert!(got.is_empty());
        if len > max {
            prop_assert!(matches!(end, Error::TooLarge(l) if l == u64::from(len)), "{end:?}");
        } else {
            prop_assert!(matches!(&end, Error::Connection(e) if e.kind() == std::io::ErrorKind::UnexpectedEof), "{end:?}");
        }
        let (largest_bound, growth_bound) = bounds(bytes.len());
        prop_assert!(largest <= largest_bound && growth <= growth_bound, "{largest} {growth}");
    }

    /// A value followed by more bytes inside its frame is refused.
    #[test]
    fn trailing_bytes_are_refused(request in request(), extra in prop::collection::vec(any::<u8>(), 1..20)) {
        let mut body = proc_core::codec::to_vec(&request).unwrap();
        body.extend_from_slice(&extra);
        let mut bytes = (body.len() as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&body);
        let (got, end) = read_all::<Request>(&bytes, DEFAULT_MAX_FRAME);
        prop_assert!(got.is_empty());
        prop_assert!(matches!(end, Error::Protocol(_)), "{end:?}");
    }

    /// Values of the wrong type in well-formed frames (an answer where a request belongs, a
    /// request where an answer does, a hello either way): a value or a protocol error, within the
    /// bounds.
    #[test]
    fn values_of_the_wrong_type_are_values_or_an_error(requests in prop::collection::vec(request(), 1..4), responses in prop::collection::vec(response(), 1..4), session in any::<u128>(), pid in any::<u32>()) {
        let hello = frames(&[super::Hello { session, pid }]);
        for (bytes, as_request) in [(frames(&responses), true), (frames(&requests), false), (hello.clone(), true), (hello, false)] {
            let (largest_bound, growth_bound) = bounds(bytes.len());
            let ((_, end), largest, growth) = if as_request {
                measure(|| read_all::<Request>(&bytes, DEFAULT_MAX_FRAME))
            } else {
                measure(|| read_all::<Response>(&bytes, DEFAULT_MAX_FRAME))
            };
            prop_assert!(matches!(end, Error::Connection(_) | Error::Protocol(_)), "{end:?}");
            prop_assert!(largest <= largest_bound && growth <= growth_bound, "{largest} {growth}");
        }
    }

    /// Answers nested `depth` levels deep: one level decodes, more are refused, whatever the
    /// depth, and no deeper than the first nested level is read.
    #[test]
    fn nested_answers_are_refused(depth in 2usize..5000) {
        let mut body = moved_level().repeat(depth);
        body.push(0);
        let mut bytes = (body.len() as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&body);
        let (got, end) = read_all::<Response>(&bytes, DEFAULT_MAX_FRAME);
        prop_assert!(got.is_empty());
        prop_assert!(matches!(&end, Error::Protocol(m) if m.contains("moved answer inside")), "{end:?}");
    }
}

/// Regression: a frame of nested `Moved` answers (two bytes a level, far under the frame limit)
/// overflowed the reading thread's stack before `Response` refused a `Moved` inside a `Moved`.
/// Read on a thread with a small stack, as the server's connection threads have (1 MiB).
#[test]
fn deeply_nested_answers_do_not_overflow_the_stack() {
    let reader = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(|| {
            let mut body = moved_level().repeat(1_000_000);
            body.push(0);
            let mut bytes = (body.len() as u32).to_le_bytes().to_vec();
            bytes.extend_from_slice(&body);
            let (mut a, b) = UnixStream::pair().unwrap();
            let writer = std::thread::spawn(move || a.write_all(&bytes).unwrap());
            let got = Framed::new(b).read::<Response>(DEFAULT_MAX_FRAME).map(|r| format!("{r:?}"));
            writer.join().unwrap();
            got
        })
        .unwrap();
    let end = reader.join().expect("the reader overflowed its stack or panicked").unwrap_err();
    assert!(matches!(&end, Error::Protocol(m) if m.contains("moved answer inside")), "{end:?}");
    // One level is a valid answer, and the mark is cleared after each answer, refused or not.
    let one = frames(&[Response::Moved { ids: vec![3], inner: Box::new(Response::Count(1)) }]);
    let (got, _) = read_all::<Response>(&one.repeat(2), DEFAULT_MAX_FRAME);
    assert_eq!(got, vec!["Moved { ids: [3], inner: Count(1) }"; 2]);
}

/// The allocation counter can fail: it sees an allocation.
#[test]
fn the_counter_sees_what_it_counts() {
    let (v, largest, growth) = measure(|| vec![1u8; 1 << 20]);
    assert!(largest >= 1 << 20 && growth >= 1 << 20, "{largest} {growth}");
    drop(v);
}
