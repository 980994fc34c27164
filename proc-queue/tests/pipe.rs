//! Pipes between real processes under every start method: framing, timeouts, one-way ends, closed
//! peers, typed messages, handles passed to running children, `wait`, large messages.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use proc_core::{get_all_start_methods, get_context, StartMethod};
use proc_queue::{pipe, pipe_one_way, wait, Connection, Error, Waitable};
use proc_sync::Value;
use serde::{Deserialize, Serialize};
use test_support::{serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

/// A raw stream over a duplicate of a connection's socket, to write or read bytes behind its back.
fn raw<T>(conn: &Connection<T>) -> UnixStream {
    UnixStream::from(conn.as_fd().try_clone_to_owned().unwrap())
}

fn send_pieces(conn: Connection<()>) {
    for m in [&b"a"[..], b"b", b"cd", b""] {
        conn.send_bytes(m).unwrap();
    }
}

#[test]
fn messages_are_never_merged_or_split() {
    let _s = serial();
    let _w = Watchdog::new("messages_are_never_merged_or_split", LIMIT);
    for m in get_all_start_methods() {
        let (parent, child) = pipe::<()>().unwrap();
        let p = get_context(m).process(send_pieces, (child,)).start().unwrap();
        p.join().unwrap();
        // All four are queued by now; each receive still takes exactly one.
        assert_eq!(parent.recv_bytes().unwrap(), b"a", "{m}");
        assert_eq!(parent.recv_bytes().unwrap(), b"b");
        assert_eq!(parent.recv_bytes().unwrap(), b"cd");
        assert_eq!(parent.recv_bytes().unwrap(), b"", "an empty message is a message");
        assert!(matches!(parent.recv_bytes(), Err(Error::Disconnected)), "{m}");
    }
}

#[test]
fn empty_messages_are_messages() {
    let _s = serial();
    let _w = Watchdog::new("empty_messages_are_messages", LIMIT);
    let (a, b) = pipe::<()>().unwrap();
    // `()` serializes to no bytes at all.
    a.send(&()).unwrap();
    a.send_bytes(&[]).unwrap();
    a.send(&()).unwrap();
    b.recv().unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"");
    let mut buf = [0u8; 0];
    assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 0);
    assert!(!b.poll(Duration::ZERO).unwrap());
}

#[test]
fn poll_never_consumes_and_waits_out_its_timeout() {
    let _s = serial();
    let _w = Watchdog::new("poll_never_consumes_and_waits_out_its_timeout", LIMIT);
    let (a, b) = pipe::<u32>().unwrap();
    let before = Instant::now();
    assert!(!b.poll(Duration::from_millis(50)).unwrap());
    assert!(before.elapsed() >= Duration::from_millis(50));
    assert!(!b.poll(Duration::ZERO).unwrap());
    a.send(&5).unwrap();
    assert!(b.poll(Duration::ZERO).unwrap());
    assert!(b.poll(Duration::from_secs(10)).unwrap());
    assert_eq!(b.recv().unwrap(), 5);
    assert!(!b.poll(Duration::ZERO).unwrap());
    // The end of the stream is something to receive, too.
    drop(a);
    assert!(b.poll(Duration::ZERO).unwrap());
    assert!(matches!(b.recv(), Err(Error::Disconnected)));
}

#[test]
fn poll_and_wait_see_messages_read_ahead() {
    let _s = serial();
    let _w = Watchdog::new("poll_and_wait_see_messages_read_ahead", LIMIT);
    let (a, b) = pipe::<u32>().unwrap();
    for i in 0..3 {
        a.send(&i).unwrap();
    }
    assert_eq!(b.recv().unwrap(), 0);
    // The first receive read the others ahead: the socket is empty, the connection is not.
    let sock = b.as_fd();
    assert!(wait(&[&sock], Some(Duration::ZERO)).unwrap().is_empty());
    assert!(b.poll(Duration::ZERO).unwrap());
    assert_eq!(wait(&[&b], Some(Duration::ZERO)).unwrap(), [0]);
    assert_eq!(wait(&[&sock, &b], None).unwrap(), [1]);
    // Data read ahead lives in this process only: the connection cannot leave it now.
    assert!(proc_core::handle::serialize_with_fds(&b).is_err());
    assert_eq!(b.recv_timeout(Duration::ZERO).unwrap(), 1);
    assert_eq!(b.recv_timeout(Duration::ZERO).unwrap(), 2);
    assert!(!b.poll(Duration::ZERO).unwrap());
    assert!(wait(&[&b], Some(Duration::ZERO)).unwrap().is_empty());
    assert!(proc_core::handle::serialize_with_fds(&b).is_ok());
}

#[test]
fn recv_timeout_waits_out_its_timeout_and_keeps_a_partial_message() {
    let _s = serial();
    let _w = Watchdog::new("recv_timeout_waits_out_its_timeout_and_keeps_a_partial_message", LIMIT);
    let (a, b) = pipe::<u32>().unwrap();
    let before = Instant::now();
    assert!(matches!(b.recv_timeout(Duration::from_millis(50)), Err(Error::Timeout)));
    assert!(before.elapsed() >= Duration::from_millis(50));
    assert!(matches!(b.recv_timeout(Duration::ZERO), Err(Error::Timeout)));

    // A frame written by hand: a 4-byte body (postcard's varint for 0x0fff_ffff), no handles.
    let frame = {
        let mut f = 4u64.to_le_bytes().to_vec();
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
        f
    };
    // Half of it: the header and one byte of the body.
    let mut w = raw(&a);
    w.write_all(&frame[..13]).unwrap();
    assert!(matches!(b.recv_timeout(Duration::from_millis(20)), Err(Error::Timeout)));
    // Half a message cannot leave the process: the receiver's copy would start mid-frame.
    assert!(proc_core::handle::serialize_with_fds(&b).is_err());
    w.write_all(&frame[13..]).unwrap();
    a.send(&7).unwrap();
    assert_eq!(b.recv_timeout(Duration::from_secs(10)).unwrap(), 0x0fff_ffff);
    assert_eq!(b.recv_timeout(Duration::from_secs(10)).unwrap(), 7);
}

#[test]
fn a_timed_receive_gives_up_waiting_for_its_turn_at_its_deadline() {
    let _s = serial();
    let _w = Watchdog::new("a_timed_receive_gives_up_waiting_for_its_turn_at_its_deadline", LIMIT);
    let (a, b) = pipe::<u32>().unwrap();
    std::thread::scope(|s| {
        let blocked = s.spawn(|| b.recv().unwrap());
        // Whoever gets the turn first, the timed receive ends by its deadline.
        let before = Instant::now();
        assert!(matches!(b.recv_timeout(Duration::from_millis(50)), Err(Error::Timeout)));
        let took = before.elapsed();
        assert!(took >= Duration::from_millis(50) && took < Duration::from_secs(30), "{took:?}");
        a.send(&9).unwrap();
        assert_eq!(blocked.join().unwrap(), 9);
    });
}

#[test]
fn a_short_buffer_hands_the_message_back_whole() {
    let _s = serial();
    let _w = Watchdog::new("a_short_buffer_hands_the_message_back_whole", LIMIT);
    let (a, b) = pipe::<()>().unwrap();
    a.send_bytes(b"hello world").unwrap();
    a.send_bytes(b"ok").unwrap();
    let mut buf = [0u8; 4];
    match b.recv_bytes_into(&mut buf) {
        Err(Error::BufferTooShort(message)) => assert_eq!(message, b"hello world"),
        other => panic!("{other:?}"),
    }
    assert_eq!(buf, [0; 4], "the buffer is untouched");
    assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 2);
    assert_eq!(&buf[..2], b"ok");
}

/// Returns what a one-way end reports about itself in a child.
fn one_way_end(rx: Connection<u8>, tx: Connection<u8>) -> (bool, bool, bool, bool) {
    let refuses_send = matches!(rx.send(&1), Err(Error::ReadOnly));
    let refuses_recv = matches!(tx.recv(), Err(Error::WriteOnly));
    tx.send(&2).unwrap();
    (rx.readable() && !rx.writable(), tx.writable() && !tx.readable(), refuses_send, refuses_recv)
}

#[test]
fn one_way_ends_refuse_the_other_direction() {
    let _s = serial();
    let _w = Watchdog::new("one_way_ends_refuse_the_other_direction", LIMIT);
    let (rx, tx) = pipe_one_way::<u8>().unwrap();
    assert!(matches!(rx.send(&1), Err(Error::ReadOnly)));
    assert!(matches!(rx.send_bytes(b"x"), Err(Error::ReadOnly)));
    assert!(matches!(tx.recv(), Err(Error::WriteOnly)));
    assert!(matches!(tx.recv_timeout(Duration::ZERO), Err(Error::WriteOnly)));
    assert!(matches!(tx.recv_bytes(), Err(Error::WriteOnly)));
    assert!(matches!(tx.recv_bytes_into(&mut [0; 8]), Err(Error::WriteOnly)));
    assert!(matches!(tx.poll(Duration::ZERO), Err(Error::WriteOnly)));
    assert!(!rx.poll(Duration::ZERO).unwrap());
    // The operating system enforces it too: the receiving end's socket cannot write.
    let e = raw(&rx).write_all(b"x").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    assert_eq!(raw(&tx).read(&mut [0; 1]).unwrap(), 0, "the sending end's socket reads nothing");
    tx.send(&3).unwrap();
    assert_eq!(rx.recv().unwrap(), 3);

    // The direction travels with the end.
    for m in get_all_start_methods() {
        let (rx, tx) = pipe_one_way::<u8>().unwrap();
        let (their_rx, their_tx) = pipe_one_way::<u8>().unwrap();
        let p = get_context(m).process(one_way_end, (their_rx, tx)).start().unwrap();
        assert_eq!(p.join().unwrap(), (true, true, true, true), "{m}");
        assert_eq!(rx.recv().unwrap(), 2);
        drop(their_tx);
    }
}

fn say_once(conn: Connection<String>) {
    conn.send(&"last words".to_string()).unwrap();
}

#[test]
fn a_peer_that_ended_is_disconnected() {
    let _s = serial();
    let _w = Watchdog::new("a_peer_that_ended_is_disconnected", LIMIT);
    for m in get_all_start_methods() {
        let (parent, child) = pipe::<String>().unwrap();
        let p = get_context(m).process(say_once, (child,)).start().unwrap();
        // Everything sent before the end comes first; the receive blocks until the child ends.
        assert_eq!(parent.recv().unwrap(), "last words");
        assert!(matches!(parent.recv(), Err(Error::Disconnected)), "{m}");
        assert!(matches!(parent.recv_timeout(Duration::from_secs(5)), Err(Error::Disconnected)));
        p.join().unwrap();
        // Sending to it is an error too, not a SIGPIPE.
        assert!(matches!(parent.send(&"anyone?".to_string()), Err(Error::Disconnected)), "{m}");
    }
}

/// With SIGPIPE at its default (deadly) disposition, sends to closed peers fail cleanly: on a
/// connection made here, and on one that came from the parent.
fn send_into_the_void(from_parent: Connection<u8>) -> bool {
    // SAFETY: restoring the default disposition of SIGPIPE runs no code of ours in signal context.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let (a, b) = pipe::<u8>().unwrap();
    drop(b);
    let local = matches!(a.send(&1), Err(Error::Disconnected));
    let bytes = matches!(a.send_bytes(&[0; 100_000]), Err(Error::Disconnected));
    let passed = matches!(from_parent.send(&2), Err(Error::Disconnected));
    local && bytes && passed
}

#[test]
fn sending_to_a_closed_peer_never_raises_sigpipe() {
    let _s = serial();
    let _w = Watchdog::new("sending_to_a_closed_peer_never_raises_sigpipe", LIMIT);
    for m in get_all_start_methods() {
        let (mine, theirs) = pipe::<u8>().unwrap();
        drop(mine);
        let p = get_context(m).process(send_into_the_void, (theirs,)).start().unwrap();
        let result = p.join();
        assert_eq!(p.exitcode(), Some(0), "{m}: the child died of a signal");
        assert!(result.unwrap(), "{m}");
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Msg {
    Job { id: u32, name: String, data: Vec<f64>, tag: Option<String> },
    Reply { id: u32, sum: f64, echo: String },
    Stop,
}

/// Serves jobs until told to stop. (Not until the end of the stream: under fork a child inherits
/// the parent's copy of the other end, so that end never closes while the child runs.)
fn serve_jobs(conn: Connection<Msg>) -> u32 {
    let mut served = 0;
    loop {
        match conn.recv().unwrap() {
            Msg::Job { id, name, data, tag } => {
                let echo = format!("{name}/{}", tag.unwrap_or_default());
                conn.send(&Msg::Reply { id, sum: data.iter().sum(), echo }).unwrap();
                served += 1;
            }
            Msg::Stop => return served,
            Msg::Reply { .. } => panic!("a reply sent to the server"),
        }
    }
}

fn job(id: u32) -> Msg {
    Msg::Job {
        id,
        name: format!("job-{id}"),
        data: (0..id).map(f64::from).collect(),
        tag: id.is_multiple_of(2).then(|| "even".to_string()),
    }
}

fn reply(id: u32) -> Msg {
    let tag = if id.is_multiple_of(2) { "even" } else { "" };
    Msg::Reply { id, sum: (0..id).map(f64::from).sum(), echo: format!("job-{id}/{tag}") }
}

#[test]
fn typed_messages_between_parent_and_child() {
    let _s = serial();
    let _w = Watchdog::new("typed_messages_between_parent_and_child", LIMIT);
    for m in get_all_start_methods() {
        let (parent, child) = pipe::<Msg>().unwrap();
        let p = get_context(m).process(serve_jobs, (child,)).start().unwrap();
        for id in 0..20 {
            parent.send(&job(id)).unwrap();
            assert_eq!(parent.recv().unwrap(), reply(id), "{m}");
        }
        parent.send(&Msg::Stop).unwrap();
        assert_eq!(p.join().unwrap(), 20, "{m}");
    }
}

fn ask_jobs(conn: Connection<Msg>, n: u32) -> bool {
    let all_right = (0..n).all(|id| {
        conn.send(&job(id)).unwrap();
        conn.recv().unwrap() == reply(id)
    });
    conn.send(&Msg::Stop).unwrap();
    all_right
}

#[test]
fn two_children_talk_over_a_pipe_their_parent_made() {
    let _s = serial();
    let _w = Watchdog::new("two_children_talk_over_a_pipe_their_parent_made", LIMIT);
    for m in get_all_start_methods() {
        let (a, b) = pipe::<Msg>().unwrap();
        let server = get_context(m).process(serve_jobs, (b,)).start().unwrap();
        let client = get_context(m).process(ask_jobs, (a, 50)).start().unwrap();
        assert!(client.join().unwrap(), "{m}");
        assert_eq!(server.join().unwrap(), 50, "{m}");
    }
}

#[derive(Serialize, Deserialize)]
enum Gift {
    Counter(Value<u64>),
    Line(Connection<String>),
    Thanks,
    Done,
}

fn receive_gifts(inbox: Connection<Gift>) {
    loop {
        match inbox.recv().unwrap() {
            Gift::Counter(counter) => {
                for _ in 0..1000 {
                    counter.update(|c| *c += 1);
                }
                inbox.send(&Gift::Thanks).unwrap();
            }
            Gift::Line(line) => line.send(&format!("hello from {}", std::process::id())).unwrap(),
            Gift::Thanks => {}
            Gift::Done => return,
        }
    }
}

#[test]
fn handles_reach_a_child_that_is_already_running() {
    let _s = serial();
    let _w = Watchdog::new("handles_reach_a_child_that_is_already_running", LIMIT);
    for m in get_all_start_methods() {
        let (inbox, theirs) = pipe::<Gift>().unwrap();
        let p = get_context(m).process(receive_gifts, (theirs,)).start().unwrap();
        // Made after the start: the child can only get them through the connection.
        let counter = Value::new(5u64).unwrap();
        let (line, their_line) = pipe::<String>().unwrap();
        inbox.send(&Gift::Counter(counter.clone())).unwrap();
        assert!(matches!(inbox.recv().unwrap(), Gift::Thanks), "{m}");
        assert_eq!(counter.get(), 1005, "{m}");
        inbox.send(&Gift::Line(their_line)).unwrap();
        // The parent's copy went with the message (it was dropped after sending), so once the
        // child drops its copy the line is closed.
        assert_eq!(line.recv().unwrap(), format!("hello from {}", p.pid()), "{m}");
        assert!(matches!(line.recv(), Err(Error::Disconnected)), "{m}");
        inbox.send(&Gift::Done).unwrap();
        p.join().unwrap();
    }
}

#[test]
fn a_connection_is_a_handle_that_refuses_to_leave_otherwise() {
    let (a, _b) = pipe::<u8>().unwrap();
    let e = serde_json::to_string(&a).unwrap_err();
    assert!(e.to_string().contains("start argument"), "{e}");
    // Inside a message it is fine, and the copy works.
    let (bytes, fds) = proc_core::handle::serialize_with_fds(&a).unwrap();
    assert_eq!(fds.len(), 1);
    let copy: Connection<u8> = proc_core::handle::deserialize_with_fds(&bytes, fds).unwrap();
    copy.send(&4).unwrap();
    assert_eq!(_b.recv().unwrap(), 4);
}

fn report(tx: Connection<(usize, u32)>, me: usize) {
    for seq in 0..10 {
        tx.send(&(me, seq)).unwrap();
    }
}

#[test]
fn wait_serves_four_children() {
    let _s = serial();
    let _w = Watchdog::new("wait_serves_four_children", LIMIT);
    for m in get_all_start_methods() {
        let mut receivers = Vec::new();
        let mut children = Vec::new();
        for me in 0..4 {
            let (rx, tx) = pipe_one_way::<(usize, u32)>().unwrap();
            children.push(get_context(m).process(report, (tx, me)).start().unwrap());
            receivers.push(rx);
        }
        let mut next = [0u32; 4];
        let mut open = [true; 4];
        let mut total = 0;
        while total < 40 {
            let watched: Vec<usize> = (0..4).filter(|&i| open[i]).collect();
            let objects: Vec<&dyn Waitable> =
                watched.iter().map(|&i| &receivers[i] as &dyn Waitable).collect();
            let ready = wait(&objects, Some(Duration::from_secs(60))).unwrap();
            assert!(!ready.is_empty(), "{m}: nothing arrived for a minute");
            for k in ready {
                let i = watched[k];
                match receivers[i].recv() {
                    Ok((from, seq)) => {
                        assert_eq!((from, seq), (i, next[i]), "{m}: out of order");
                        next[i] += 1;
                        total += 1;
                    }
                    Err(Error::Disconnected) => open[i] = false,
                    Err(e) => panic!("{m}: {e}"),
                }
            }
        }
        assert_eq!(next, [10; 4], "{m}");
        for p in &children {
            p.join().unwrap();
        }
        // Sentinels are waitable too: every child has ended. (Not `Duration::ZERO`: a fork-server
        // child's sentinel is a pipe that the server closes a moment after writing the exit code,
        // which `join` has read.)
        for p in &children {
            assert_eq!(wait(&[&p.sentinel()], None).unwrap(), [0], "{m}");
        }
    }
}

#[test]
fn wait_mixes_connections_and_sentinels_and_times_out() {
    let _s = serial();
    let _w = Watchdog::new("wait_mixes_connections_and_sentinels_and_times_out", LIMIT);
    let (quiet, _other) = pipe::<String>().unwrap();
    let (parent, child) = pipe::<String>().unwrap();
    let before = Instant::now();
    assert!(wait(&[&quiet, &parent], Some(Duration::from_millis(50))).unwrap().is_empty());
    assert!(before.elapsed() >= Duration::from_millis(50));
    assert!(wait(&[], None).unwrap().is_empty(), "nothing to wait for returns at once");
    let p = get_context(StartMethod::Spawn).process(say_once, (child,)).start().unwrap();
    let sentinel = p.sentinel();
    assert_eq!(wait(&[&quiet, &parent], None).unwrap(), [1]);
    assert_eq!(parent.recv().unwrap(), "last words");
    assert_eq!(wait(&[&quiet, &sentinel], None).unwrap(), [1]);
    p.join().unwrap();
}

const BIG: usize = 16 << 20;

fn big(seed: u8) -> Vec<u8> {
    (0..BIG).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn send_big(conn: Connection<Vec<u8>>) {
    conn.send_bytes(&big(1)).unwrap();
    conn.send(&big(2)).unwrap();
    conn.send_bytes(b"after").unwrap();
}

#[test]
fn a_16_mib_message_crosses_whole() {
    let _s = serial();
    let _w = Watchdog::new("a_16_mib_message_crosses_whole", LIMIT);
    for m in get_all_start_methods() {
        let (parent, child) = pipe::<Vec<u8>>().unwrap();
        let p = get_context(m).process(send_big, (child,)).start().unwrap();
        assert!(parent.recv_bytes().unwrap() == big(1), "{m}");
        // The second one with short timeouts: it arrives in many pieces, each timeout keeping
        // what came so far.
        let mut timeouts = 0;
        let typed = loop {
            match parent.recv_timeout(Duration::from_micros(100)) {
                Ok(v) => break v,
                Err(Error::Timeout) => timeouts += 1,
                Err(e) => panic!("{m}: {e}"),
            }
        };
        assert!(typed == big(2), "{m} (after {timeouts} timeouts)");
        assert_eq!(parent.recv_bytes().unwrap(), b"after");
        p.join().unwrap();
    }
}
