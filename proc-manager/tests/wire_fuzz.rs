//! Property tests against a real manager server: garbage from a peer before authentication
//! (arbitrary bytes, a wrong answer to the challenge, a cut handshake) and after it (arbitrary
//! frames and bytes where requests belong) costs only that peer's connection: the server closes it
//! (or answers well-formed frames first), and goes on serving everyone else. Proxies decoded from
//! mutated bytes are a proxy or an error, never a panic.
//!
//! The frame decoder's own properties (allocation bounds, nesting, truncation) are in
//! `src/wire/test.rs`. Failures are reproducible: proptest's persistence files are off, and a
//! failing case prints its minimal input, which becomes a plain regression test.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use common::authenticated;
use proc_core::handle::{deserialize_with_fds, serialize_with_fds};
use proc_manager::{Address, Dict, Manager};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use test_support::{serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(180);

fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: None, ..Config::default() }
}

fn unix_path(m: &Manager) -> PathBuf {
    match m.address() {
        Address::Unix(p) => p.clone(),
        _ => panic!("expected a Unix socket"),
    }
}

/// A server whose handshake deadline is short, so that a peer that stops mid-handshake costs the
/// cases little, and whose frames are capped at 1 MiB.
fn server() -> Manager {
    Manager::builder().handshake_timeout(Duration::from_millis(500)).max_frame(1 << 20).start().unwrap()
}

/// Reads what the server sends until it closes the connection (within `within`): the bytes, or
/// `None` if it did not close it.
fn read_until_closed(stream: &mut UnixStream, within: Duration) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(got),
            Err(_) => return None,
        }
    }
}

/// Whether `bytes` are whole frames (a `u32` length and that many bytes), as every answer is.
fn whole_frames(mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        let Some((len, rest)) = bytes.split_first_chunk::<4>() else { return false };
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return false;
        }
        bytes = &rest[len..];
    }
    true
}

/// The server still serves a client with the key: a new connection, a new object, a round trip.
fn still_serves(m: &Manager) -> Result<(), TestCaseError> {
    let other = Manager::connect(m.address(), m.authkey()).unwrap();
    let d = other.dict::<u8, u8>().unwrap();
    d.insert(1, 2).unwrap();
    prop_assert_eq!(d.get(&1).unwrap(), Some(2));
    Ok(())
}

/// What a peer sends before authentication: bytes at once, or after reading the challenge.
#[derive(Debug, Clone)]
enum Before {
    /// Bytes right after connecting, then the end.
    Raw(Vec<u8>),
    /// The challenge read, then bytes (an answer of any length, wrong), then the end.
    Answer(Vec<u8>),
}

fn before() -> impl Strategy<Value = Before> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..120).prop_map(Before::Raw),
        prop::collection::vec(any::<u8>(), 0..80).prop_map(Before::Answer),
    ]
}

#[test]
fn garbage_before_authentication_costs_only_its_connection() {
    let _g = serial();
    let _w = Watchdog::new("garbage_before_authentication", LIMIT);
    let m = server();
    let path = unix_path(&m);
    let v = m.value(7u32).unwrap();
    let mut runner = TestRunner::new(config(48));
    runner
        .run(&before(), |case| {
            let mut s = UnixStream::connect(&path).unwrap();
            match &case {
                Before::Raw(bytes) => {
                    // The server may close before all of it is written.
                    let _ = s.write_all(bytes);
                }
                Before::Answer(bytes) => {
                    let mut challenge = [0u8; 40];
                    s.read_exact(&mut challenge).unwrap();
                    prop_assert_eq!(&challenge[..8], b"#CH0001#");
                    let _ = s.write_all(bytes);
                }
            }
            let _ = s.shutdown(std::net::Shutdown::Write);
            let answer = read_until_closed(&mut s, Duration::from_secs(30));
            prop_assert!(answer.is_some(), "the server kept the connection open");
            // Never welcomed: at most the challenge and a refusal.
            let answer = answer.unwrap_or_default();
            prop_assert!(!answer.windows(8).any(|w| w == b"#WELCOM#"), "{case:?} was welcomed");
            prop_assert_eq!(v.get().unwrap(), 7);
            Ok(())
        })
        .unwrap();
    still_serves(&m).unwrap();
}

/// What a peer sends after authentication: frames with arbitrary bodies, or arbitrary bytes.
#[derive(Debug, Clone)]
enum After {
    Frames(Vec<Vec<u8>>),
    Raw(Vec<u8>),
}

fn after() -> impl Strategy<Value = After> {
    // `Request::Shutdown` is variant 9: a body that starts with it could stop the server, as it
    // may for any client with the key.
    let body =
        prop::collection::vec(any::<u8>(), 0..200).prop_filter("not Shutdown", |b| b.first() != Some(&9));
    prop_oneof![
        prop::collection::vec(body, 1..6).prop_map(After::Frames),
        prop::collection::vec(any::<u8>(), 0..300)
            .prop_filter("not Shutdown", |b| b.get(4) != Some(&9))
            .prop_map(After::Raw),
    ]
}

#[test]
fn garbage_after_authentication_costs_only_its_connection() {
    let _g = serial();
    let _w = Watchdog::new("garbage_after_authentication", LIMIT);
    let m = server();
    let path = unix_path(&m);
    // The harness sees answers: a valid request (`CountObjects`, variant 8) is answered with one
    // whole frame before the end.
    let mut s = authenticated(&path, m.authkey());
    s.write_all(&[1, 0, 0, 0, 8]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let answer = read_until_closed(&mut s, Duration::from_secs(30)).unwrap();
    assert!(!answer.is_empty() && whole_frames(&answer), "{answer:?}");
    assert!(!whole_frames(&answer[..answer.len() - 1]));
    let mut runner = TestRunner::new(config(64));
    runner
        .run(&after(), |case| {
            let mut s = authenticated(&path, m.authkey());
            let bytes = match &case {
                After::Frames(bodies) => bodies
                    .iter()
                    .flat_map(|b| (b.len() as u32).to_le_bytes().into_iter().chain(b.iter().copied()))
                    .collect(),
                After::Raw(bytes) => bytes.clone(),
            };
            let _ = s.write_all(&bytes);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let answer = read_until_closed(&mut s, Duration::from_secs(30));
            prop_assert!(answer.is_some(), "the server kept the connection open");
            // Answers to what decoded, each a whole frame, then the end.
            prop_assert!(whole_frames(&answer.unwrap_or_default()), "a cut answer to {case:?}");
            still_serves(&m)
        })
        .unwrap();
}

/// Regression-style cases after authentication: bodies that look deeply nested (10,000 option
/// or sequence openers), a length at the limit whose bytes never come, a length above it.
#[test]
fn nested_looking_huge_and_cut_frames_close_only_their_connection() {
    let _g = serial();
    let _w = Watchdog::new("nested_huge_cut", LIMIT);
    let m = server();
    let path = unix_path(&m);
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for opener in [1u8, 6, 0x80, 0xff] {
        let body = vec![opener; 10_000];
        let mut frame = (body.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&body);
        cases.push(frame);
    }
    cases.push((1u32 << 20).to_le_bytes().to_vec());
    cases.push(u32::MAX.to_le_bytes().to_vec());
    for bytes in cases {
        let mut s = authenticated(&path, m.authkey());
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let answer = read_until_closed(&mut s, Duration::from_secs(30));
        assert_eq!(
            answer.as_deref(),
            Some(&[][..]),
            "{:?}… was answered or not closed",
            &bytes[..8.min(bytes.len())]
        );
    }
    still_serves(&m).unwrap();
}

/// A proxy as it travels (address, key, id, kind, token), with one byte changed: a proxy or an
/// error, never a panic; the manager goes on serving.
#[test]
fn proxies_decoded_from_mutated_bytes_are_a_proxy_or_an_error() {
    let _g = serial();
    let _w = Watchdog::new("mutated_proxies", LIMIT);
    let m = server();
    let d = m.dict::<u8, u8>().unwrap();
    d.insert(1, 2).unwrap();
    let mut runner = TestRunner::new(config(64));
    runner
        .run(&(any::<prop::sample::Index>(), 1u8..=255), |(at, xor)| {
            let (mut bytes, fds) = serialize_with_fds(&d).unwrap();
            // Not the first byte (the address's variant): a Unix path read as a TCP address
            // could make the decoder wait out a connect to some host.
            let i = 1 + at.index(bytes.len() - 1);
            bytes[i] ^= xor;
            if let Ok(p) = deserialize_with_fds::<Dict<u8, u8>>(&bytes, fds) {
                // A proxy whose id or kind was changed may name another object or none.
                let _ = p.get(&1);
            }
            prop_assert_eq!(d.get(&1).unwrap(), Some(2));
            Ok(())
        })
        .unwrap();
    // Every truncation of the same bytes is an error.
    let (bytes, _) = serialize_with_fds(&d).unwrap();
    for cut in 0..bytes.len() {
        assert!(deserialize_with_fds::<Dict<u8, u8>>(&bytes[..cut], Vec::new()).is_err(), "cut {cut}");
    }
}
