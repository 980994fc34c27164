//! The async sends and receives (feature `tokio`) under tokio's current-thread and multi-thread
//! runtimes: `Connection::recv_async` and `send_async`, `Queue::get_async` and `put_async` (and the
//! simple and joinable queues'), `ready_async`; a dropped future loses no message and no part of
//! one, and puts nothing.

#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::Poll;
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
    // A put that has to wait, on a full queue; one that has room needs no runtime.
    let q = Queue::<u8>::new(1).unwrap();
    let mut put = std::pin::pin!(q.put_async(1));
    assert!(matches!(std::future::Future::poll(put.as_mut(), &mut cx), std::task::Poll::Ready(Ok(()))));
    let mut put = std::pin::pin!(q.put_async(2));
    let polled = std::future::Future::poll(put.as_mut(), &mut cx);
    assert!(
        matches!(polled, std::task::Poll::Ready(Err(proc_queue::PutError::Os { value: 2, .. }))),
        "{polled:?}"
    );
    assert_eq!(q.get_nowait().unwrap(), 1);
    assert!(q.empty(), "the failed put put nothing");
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

/// Polls `fut` once from the calling task: whether it is still pending (it then waits, its waker
/// this task's).
async fn pending<F: Future>(fut: Pin<&mut F>) -> bool {
    let mut fut = Some(fut);
    std::future::poll_fn(|cx| Poll::Ready(fut.take().unwrap().poll(cx).is_pending())).await
}

/// A child that takes one item.
fn take_one(q: Queue<u64>) -> u64 {
    q.get().unwrap()
}

#[test]
fn put_async_waits_for_a_child_to_get() {
    let _s = serial();
    let _w = Watchdog::new("put_async_child", LIMIT);
    for rt in runtimes() {
        rt.block_on(async {
            let q = Queue::<u64>::new(1).unwrap();
            q.put_async(1).await.unwrap();
            assert!(q.full());
            let mut put = std::pin::pin!(q.put_async(2));
            assert!(pending(put.as_mut()).await, "the queue is full: the put waits");
            assert!(q.space_bell_armed(), "the waiting put armed the space doorbell");
            assert_eq!(q.qsize(), 1, "a waiting put holds no slot");
            // The runtime's thread is free meanwhile (a blocking put would hold it).
            tokio::task::yield_now().await;
            let p = Process::new(take_one, (q.clone(),)).start().unwrap();
            put.await.unwrap();
            assert_eq!(p.join().unwrap(), 1);
            assert_eq!(q.get_nowait().unwrap(), 2);
            assert!(q.empty());
        });
    }
}

#[test]
fn a_dropped_put_async_puts_nothing() {
    let _w = Watchdog::new("put_async_dropped", LIMIT);
    for rt in runtimes() {
        rt.block_on(async {
            let q = Queue::<u32>::new(2).unwrap();
            q.put(1).unwrap();
            q.put(2).unwrap();
            let early = tokio::time::timeout(Duration::from_millis(20), q.put_async(3)).await;
            assert!(early.is_err(), "the queue was full");
            assert_eq!(q.qsize(), 2, "the dropped put claimed no slot");
            // Two puts wait; a get frees one slot and rings; the put woken first is dropped
            // before it runs, and the other one still gets the slot.
            let mut a = Box::pin(q.put_async(4));
            let mut b = Box::pin(q.put_async(5));
            assert!(pending(a.as_mut()).await && pending(b.as_mut()).await);
            assert_eq!(q.get().unwrap(), 1);
            drop(a);
            b.await.unwrap();
            assert_eq!(q.get_nowait().unwrap(), 2);
            assert_eq!(q.get_nowait().unwrap(), 5);
            assert!(matches!(q.get_nowait(), Err(proc_queue::GetError::Empty)), "3 and 4 were never put");
            // Still usable, async and not.
            q.put_async(6).await.unwrap();
            q.put(7).unwrap();
            assert!(q.put_nowait(8).unwrap_err().is_full());
            assert_eq!((q.get().unwrap(), q.get().unwrap()), (6, 7));
            // A joinable queue counts a dropped put as no task.
            let jq = JoinableQueue::<u8>::new(1).unwrap();
            jq.put_async(1).await.unwrap();
            let mut put = std::pin::pin!(jq.put_async(2));
            assert!(pending(put.as_mut()).await);
            assert_eq!(jq.unfinished_tasks(), 1);
            assert_eq!(jq.get_async().await.unwrap(), 1);
            put.await.unwrap();
            assert_eq!(jq.unfinished_tasks(), 2);
            assert_eq!(jq.get().unwrap(), 2);
            jq.task_done().unwrap();
            jq.task_done().unwrap();
            jq.join().unwrap();
            // An unbounded queue's put never waits.
            let uq = Queue::<u32>::unbounded().unwrap();
            for i in 0..10_000 {
                uq.put_async(i).await.unwrap();
            }
            assert_eq!(uq.qsize(), 10_000);
        });
    }
}

#[test]
fn a_shutdown_ends_a_waiting_put_async() {
    let _w = Watchdog::new("put_async_shutdown", LIMIT);
    for rt in runtimes() {
        rt.block_on(async {
            let q = Queue::<u32>::new(1).unwrap();
            q.put(1).unwrap();
            let mut put = std::pin::pin!(q.put_async(2));
            assert!(pending(put.as_mut()).await);
            q.shutdown(false);
            assert!(matches!(put.await, Err(proc_queue::PutError::ShutDown(2))));
            assert_eq!(q.get().unwrap(), 1);
        });
    }
}

const PUTTERS: u64 = 8;
const EACH: u64 = 250;

/// A child that takes `n` items and returns them in the order it took them.
fn take_all(q: Queue<u64>, n: u64) -> Vec<u64> {
    (0..n).map(|_| q.get().unwrap()).collect()
}

#[test]
fn many_put_async_tasks_feed_a_blocking_child() {
    let _s = serial();
    let _w = Watchdog::new("put_async_many", LIMIT);
    for rt in runtimes() {
        rt.block_on(async {
            let q = Queue::<u64>::new(2).unwrap();
            let p = Process::new(take_all, (q.clone(), PUTTERS * EACH)).start().unwrap();
            let tasks: Vec<_> = (0..PUTTERS)
                .map(|k| {
                    let q = q.clone();
                    tokio::spawn(async move {
                        for i in 0..EACH {
                            q.put_async(k * EACH + i).await.unwrap();
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            let got = tokio::task::spawn_blocking(move || p.join().unwrap()).await.unwrap();
            // Every item exactly once, each putter's in its order.
            let mut sorted = got.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..PUTTERS * EACH).collect::<Vec<_>>());
            for k in 0..PUTTERS {
                let mine: Vec<u64> = got.iter().copied().filter(|v| v / EACH == k).collect();
                assert!(mine.is_sorted(), "putter {k}'s items in order");
            }
            assert!(q.empty());
        });
    }
}

/// A child that takes `n` items with `get_async` on a runtime of its own, in the order it took them.
fn take_all_async(q: Queue<u64>, n: u64) -> Vec<u64> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async { futures_take(&q, n).await })
}

async fn futures_take(q: &Queue<u64>, n: u64) -> Vec<u64> {
    let mut got = Vec::new();
    for _ in 0..n {
        got.push(q.get_async().await.unwrap());
    }
    got
}

/// Getters in several processes wait on one doorbell: a ring that one of them drains before the
/// others look must not leave another asleep while an item waits (each passes the bell on).
#[test]
fn get_async_in_several_processes_drains_a_blocking_putter() {
    let _s = serial();
    let _w = Watchdog::new("get_async_processes", LIMIT);
    const GETTERS: u64 = 3;
    const ROUNDS: u64 = 5;
    for _ in 0..ROUNDS {
        let q = Queue::<u64>::new(2).unwrap();
        let getters: Vec<_> =
            (0..GETTERS).map(|_| Process::new(take_all_async, (q.clone(), EACH)).start().unwrap()).collect();
        for i in 0..GETTERS * EACH {
            q.put(i).unwrap();
        }
        let mut all = Vec::new();
        for p in getters {
            let got = p.join().unwrap();
            assert!(got.is_sorted(), "one getter's items in the order they were put");
            all.extend(got);
        }
        all.sort_unstable();
        assert_eq!(all, (0..GETTERS * EACH).collect::<Vec<_>>());
        assert!(q.empty());
    }
}
