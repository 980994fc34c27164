//! The async receives (feature `tokio`) under tokio's current-thread and multi-thread runtimes:
//! `Connection::recv_async`, `Queue::get_async` (and the simple and joinable queues'),
//! `ready_async`; a dropped future loses no message and no part of one.

#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used)]

use std::os::fd::AsFd;
use std::time::Duration;

use proc_core::Process;
use proc_queue::{pipe, ready_async, JoinableQueue, Queue, SimpleQueue};
use test_support::{runtimes, serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(60);

/// A child that puts `n` numbers.
fn produce(q: Queue<u64>, n: u64) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

#[test]
fn get_async_takes_what_a_child_puts() {
    let _s = serial();
    let _w = Watchdog::new("get_async_child", LIMIT);
    for rt in runtimes() {
        rt.block_on(async {
            let q = Queue::<u64>::new(4).unwrap();
            let p = Process::new(produce, (q.clone(), 100)).start().unwrap();
            for i in 0..100 {
                assert_eq!(q.get_async().await.unwrap(), i);
            }
            p.join().unwrap();
        });
    }
}

#[test]
fn a_dropped_get_async_takes_nothing() {
    let _w = Watchdog::new("get_async_dropped", LIMIT);
    for rt in runtimes() {
        rt.block_on(async {
            let q = Queue::<u32>::new(2).unwrap();
            let early = tokio::time::timeout(Duration::from_millis(20), q.get_async()).await;
            assert!(early.is_err(), "nothing was there");
            q.put(7).unwrap();
            assert_eq!(q.get_nowait().unwrap(), 7, "the dropped get took nothing");
            // A getter task woken by a put from another task.
            let getter = tokio::spawn({
                let q = q.clone();
                async move { q.get_async().await }
            });
            tokio::task::yield_now().await;
            q.put(8).unwrap();
            assert_eq!(getter.await.unwrap().unwrap(), 8);
            // The simple and joinable queues.
            let sq = SimpleQueue::<u8>::new().unwrap();
            sq.put(1).unwrap();
            assert_eq!(sq.get_async().await.unwrap(), 1);
            let jq = JoinableQueue::<u8>::new(2).unwrap();
            jq.put(2).unwrap();
            assert_eq!(jq.get_async().await.unwrap(), 2);
            jq.task_done().unwrap();
        });
    }
}

#[test]
fn recv_async_keeps_a_partial_message_across_a_dropped_future() {
    let _w = Watchdog::new("recv_async_partial", LIMIT);
    for rt in runtimes() {
        rt.block_on(async {
            let (a, b) = pipe::<String>().unwrap();
            let text = "x".repeat(100 << 10);
            let frame = {
                let body = proc_core::codec::to_vec(&text).unwrap();
                let mut f = proc_os::frame::header(body.len() as u64, 0).to_vec();
                f.extend_from_slice(&body);
                f
            };
            // Half a message: the receive cannot finish, and is dropped.
            let half = frame.len() / 2;
            proc_os::fd::write_all(a.as_fd(), &frame[..half]).unwrap();
            let early = tokio::time::timeout(Duration::from_millis(20), b.recv_async()).await;
            assert!(early.is_err(), "half a message is no message");
            let rest = frame[half..].to_vec();
            let writer = std::thread::spawn(move || {
                proc_os::fd::write_all(a.as_fd(), &rest).unwrap();
                a
            });
            assert_eq!(b.recv_async().await.unwrap(), text);
            let a = writer.join().unwrap();
            // Whole messages, and the end of the stream.
            a.send(&"one".to_string()).unwrap();
            assert_eq!(b.recv_async().await.unwrap(), "one");
            drop(a);
            assert!(matches!(b.recv_async().await, Err(proc_queue::Error::Disconnected)));
        });
    }
}

fn sleepy() -> u8 {
    3
}

#[test]
fn ready_async_waits_for_a_process_and_a_connection() {
    let _s = serial();
    let _w = Watchdog::new("ready_async", LIMIT);
    for rt in runtimes() {
        rt.block_on(async {
            let p = Process::new(sleepy, ()).start().unwrap();
            ready_async(&p.sentinel()).await.unwrap();
            assert_eq!(p.join().unwrap(), 3);
            let (a, b) = pipe::<u8>().unwrap();
            let waiter = tokio::spawn(async move {
                ready_async(&b).await.unwrap();
                b.recv().unwrap()
            });
            a.send(&9).unwrap();
            assert_eq!(waiter.await.unwrap(), 9);
        });
    }
}

#[test]
fn without_a_runtime_the_async_receives_are_errors() {
    let (_a, b) = pipe::<u8>().unwrap();
    let mut fut = std::pin::pin!(b.recv_async());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let polled = std::future::Future::poll(fut.as_mut(), &mut cx);
    assert!(matches!(polled, std::task::Poll::Ready(Err(proc_queue::Error::Os(_)))), "{polled:?}");
}

#[test]
fn send_async_waits_for_room_and_a_dropped_send_still_delivers_whole() {
    let _w = Watchdog::new("send_async", LIMIT);
    for rt in runtimes() {
        rt.block_on(async {
            let (a, b) = pipe::<proc_core::ByteBuf>().unwrap();
            let big = proc_core::ByteBuf::from((0..8u32 << 20).map(|i| i as u8).collect::<Vec<u8>>());
            // Far larger than the socket's buffer: sender and receiver take turns on the runtime.
            let (sent, got) = tokio::join!(a.send_async(&big), b.recv_async());
            sent.unwrap();
            assert_eq!(got.unwrap(), big);
            // A send that cannot finish (nobody reads), dropped: its message still arrives whole,
            // sent by the next send before its own.
            let early = tokio::time::timeout(Duration::from_millis(20), a.send_async(&big)).await;
            assert!(early.is_err(), "8 MiB cannot fit in the socket's buffer");
            let reader = std::thread::spawn(move || (b.recv().unwrap(), b.recv().unwrap()));
            a.send(&proc_core::ByteBuf::from(vec![1u8, 2, 3])).unwrap();
            let (first, second) = reader.join().unwrap();
            assert_eq!(first, big);
            assert_eq!(second.into_vec(), [1, 2, 3]);
        });
    }
}

#[test]
fn recv_async_gets_a_message_another_receiver_read_ahead() {
    let _w = Watchdog::new("recv_async_turn", LIMIT);
    for rt in runtimes() {
        rt.block_on(async {
            let (a, b) = pipe::<u32>().unwrap();
            let b = std::sync::Arc::new(b);
            // A blocking receiver takes the turn first and waits in `recv`.
            let blocking = std::thread::spawn({
                let b = b.clone();
                move || b.recv().unwrap()
            });
            let task = tokio::spawn({
                let b = b.clone();
                async move { b.recv_async().await.unwrap() }
            });
            tokio::task::yield_now().await;
            // Two frames in one write: the blocking receiver reads both, returns one and keeps the
            // other read ahead; the async receiver must get it.
            let mut both = Vec::new();
            for v in [1u32, 2] {
                let body = proc_core::codec::to_vec(&v).unwrap();
                both.extend_from_slice(&proc_os::frame::header(body.len() as u64, 0));
                both.extend_from_slice(&body);
            }
            proc_os::fd::write_all(a.as_fd(), &both).unwrap();
            let first = blocking.join().unwrap();
            let second = tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
            assert_eq!((first.min(second), first.max(second)), (1, 2));
        });
    }
}
