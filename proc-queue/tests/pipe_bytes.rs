//! Typed messages that are one large byte string go out and come in without a copy of their
//! bytes; the wire is unchanged, and every other value (even one whose encoding looks like a
//! string's) decodes as before.

#![allow(clippy::unwrap_used)]

use std::os::fd::AsFd;
use std::time::Duration;

use proc_core::{ByteBuf, Process};
use proc_queue::{pipe, Connection, Error};
use serde::{Deserialize, Serialize};
use test_support::{serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(60);

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// A `#[serde(transparent)]` wrapper: a newtype of a byte string.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
struct Frame(ByteBuf);

/// The sizes around the fast path's threshold (16 KiB), and large ones: the last is past the
/// largest buffer a connection keeps between messages (16 MiB).
const SIZES: [usize; 9] =
    [0, 1, 100, (16 << 10) - 1, 16 << 10, (16 << 10) + 1, 64 << 10, 4 << 20, (16 << 20) + 3];

/// Postcard's encoding of a byte string: its length as a varint, then the bytes.
fn encoded(bytes: &[u8]) -> Vec<u8> {
    let mut out = proc_core::codec::to_vec(&(bytes.len() as u64)).unwrap();
    out.extend_from_slice(bytes);
    out
}

/// Sends `value` on `conn` from another thread (a large one fills the socket's buffer).
fn send_from_thread<T: Serialize + Send + 'static>(
    conn: Connection<T>,
    value: T,
) -> std::thread::JoinHandle<Connection<T>> {
    std::thread::spawn(move || {
        conn.send(&value).unwrap();
        conn
    })
}

#[test]
fn byte_strings_text_and_wrappers_of_every_size_round_trip() {
    let _w = Watchdog::new("byte_strings_round_trip", LIMIT);
    let (mut a, b) = pipe::<ByteBuf>().unwrap();
    let (mut text_a, text_b) = pipe::<String>().unwrap();
    let (mut frame_a, frame_b) = pipe::<Frame>().unwrap();
    for len in SIZES {
        let bytes = pattern(len, len as u8);
        let text: String = bytes.iter().map(|b| char::from(b'a' + b % 26)).collect();
        let sent = send_from_thread(a, ByteBuf::from(bytes.clone()));
        assert_eq!(b.recv().unwrap().into_vec(), bytes, "{len}");
        a = sent.join().unwrap();
        let sent = send_from_thread(text_a, text.clone());
        assert_eq!(text_b.recv().unwrap(), text, "{len}");
        text_a = sent.join().unwrap();
        let sent = send_from_thread(frame_a, Frame(ByteBuf::from(bytes.clone())));
        assert_eq!(frame_b.recv().unwrap(), Frame(ByteBuf::from(bytes)), "{len}");
        frame_a = sent.join().unwrap();
    }
}

#[test]
fn the_wire_is_unchanged_either_way() {
    let _w = Watchdog::new("wire_unchanged", LIMIT);
    for len in SIZES {
        let bytes = pattern(len, 9);
        // Sent the fast way, read raw: postcard's encoding.
        let (a, b) = pipe::<ByteBuf>().unwrap();
        let sent = send_from_thread(a, ByteBuf::from(bytes.clone()));
        assert_eq!(b.recv_bytes().unwrap(), encoded(&bytes), "{len}");
        drop(sent.join().unwrap());
        // Written raw in postcard's encoding, read typed.
        let (a, b) = pipe::<ByteBuf>().unwrap();
        let raw = encoded(&bytes);
        let sent = std::thread::spawn(move || a.send_bytes(&raw).map(|()| a));
        assert_eq!(b.recv().unwrap().into_vec(), bytes, "{len}");
        drop(sent.join().unwrap().unwrap());
    }
}

#[test]
fn values_that_only_look_like_strings_decode_as_before() {
    let _w = Watchdog::new("look_like_strings", LIMIT);
    // `(u64, ByteBuf)` whose number equals the length of the rest: the reader splits the body,
    // the value refuses the split, and the whole body is decoded the usual way.
    let payload = pattern(20_000, 3);
    let rest = 3 + payload.len() as u64; // the ByteBuf's 3-byte varint, and its bytes
    assert_eq!(proc_core::codec::to_vec(&rest).unwrap().len(), 3);
    let (a, b) = pipe::<(u64, ByteBuf)>().unwrap();
    let sent = send_from_thread(a, (rest, ByteBuf::from(payload.clone())));
    assert_eq!(b.recv().unwrap(), (rest, ByteBuf::from(payload.clone())));
    drop(sent.join().unwrap());
    // A `Vec<u8>` is a sequence, encoded as a string is: decoded element by element, twice in a
    // row (the connection's buffer survives the fallback).
    let (a, b) = pipe::<Vec<u8>>().unwrap();
    let sent = std::thread::spawn({
        let payload = payload.clone();
        move || {
            a.send(&payload).unwrap();
            a.send(&payload).unwrap();
            a
        }
    });
    assert_eq!(b.recv().unwrap(), payload);
    assert_eq!(b.recv().unwrap(), payload);
    drop(sent.join().unwrap());
    // Bytes that are not UTF-8 are no `String`: a typed error, and the next message is fine.
    let (a, b) = pipe::<String>().unwrap();
    let mut bad = pattern(32 << 10, 1);
    bad[0] = 0xff;
    let raw = encoded(&bad);
    let sent = std::thread::spawn(move || {
        a.send_bytes(&raw).unwrap();
        a.send(&"x".repeat(40 << 10)).unwrap();
        a
    });
    assert!(matches!(b.recv(), Err(Error::Deserialize(_))));
    assert_eq!(b.recv().unwrap(), "x".repeat(40 << 10));
    drop(sent.join().unwrap());
}

#[test]
fn a_split_body_cut_by_a_timeout_is_whole_for_the_next_receive() {
    let _w = Watchdog::new("split_then_timeout", LIMIT);
    let (a, b) = pipe::<ByteBuf>().unwrap();
    let bytes = pattern(100 << 10, 5);
    let frame = {
        let body = encoded(&bytes);
        let mut f = proc_os::frame::header(body.len() as u64, 0).to_vec();
        f.extend_from_slice(&body);
        f
    };
    // Half the frame: a typed receive splits its body, then runs out of time.
    let half = frame.len() / 2;
    proc_os::fd::write_all(a.as_fd(), &frame[..half]).unwrap();
    assert!(matches!(b.recv_timeout(Duration::from_millis(20)), Err(Error::Timeout)));
    // The rest, read raw: the whole body, as sent.
    let rest = frame[half..].to_vec();
    let writer = std::thread::spawn(move || {
        proc_os::fd::write_all(a.as_fd(), &rest).unwrap();
        a
    });
    assert_eq!(b.recv_bytes().unwrap(), encoded(&bytes));
    drop(writer.join().unwrap());
}

/// The child's side: receives `n` byte strings and returns their lengths and a checksum.
fn receive_all(conn: Connection<ByteBuf>, n: usize) -> (usize, u64) {
    let mut total = (0, 0u64);
    for _ in 0..n {
        let b = conn.recv().unwrap();
        total.0 += b.len();
        total.1 += b.iter().map(|&x| u64::from(x)).sum::<u64>();
    }
    total
}

#[test]
fn a_child_receives_large_byte_strings() {
    let _s = serial();
    let _w = Watchdog::new("child_receives", LIMIT);
    let (a, b) = pipe::<ByteBuf>().unwrap();
    let p = Process::new(receive_all, (b, 5)).start().unwrap();
    let mut expected = (0, 0u64);
    for i in 0..5 {
        let bytes = pattern(1 << 20, i);
        expected.0 += bytes.len();
        expected.1 += bytes.iter().map(|&x| u64::from(x)).sum::<u64>();
        a.send(&ByteBuf::from(bytes)).unwrap();
    }
    assert_eq!(p.join().unwrap(), expected);
}

/// A value whose `Serialize` counts its calls (a manager proxy's exports itself, for one).
#[derive(Debug)]
struct Counted(u32);

static SERIALIZED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Serialize for Counted {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SERIALIZED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u32::deserialize(d).map(Counted)
    }
}

#[test]
fn a_value_is_serialized_once_per_send() {
    let (a, b) = pipe::<Counted>().unwrap();
    a.send(&Counted(5)).unwrap();
    assert_eq!(SERIALIZED.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(b.recv().unwrap().0, 5);
}
