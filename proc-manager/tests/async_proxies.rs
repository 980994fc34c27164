//! The async proxy calls (feature `tokio`) under tokio's current-thread and multi-thread runtimes,
//! against a real manager and child processes: an async `get` that a child's `put` completes, an
//! async `acquire` that waits for a child to release, dropped calls that leave every value in the
//! queue and the lock free, and the timeouts.

#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::task::Poll;
use std::time::{Duration, Instant};

use proc_core::Process;
use proc_manager::{pending_undos, Error, Event, Lock, Manager, Queue};
use test_support::{runtimes, serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

/// Polls `fut` once (an async call writes its request then), and drops it unless it was done.
async fn poll_once_then_drop<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        Poll::Ready(match fut.as_mut().poll(cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        })
    })
    .await
}

/// Waits until every dropped call of this process has been undone (bounded by the watchdog).
async fn settled() {
    while pending_undos() > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A child: waits for `go`, then puts `values`.
fn put_when_told(q: Queue<u32>, go: Event, values: Vec<u32>) {
    assert!(go.wait_timeout(Duration::from_secs(60)).unwrap(), "never told to put");
    for v in values {
        q.put(v).unwrap();
    }
}

/// A child: takes `lock`, says so, and holds it until told to let go.
fn hold_until_told(lock: Lock, held: Event, release: Event) {
    let guard = lock.acquire().unwrap();
    held.set().unwrap();
    assert!(release.wait_timeout(Duration::from_secs(60)).unwrap(), "never told to release");
    drop(guard);
}

/// Kills and reaps a child however the test ends, so that a failing test fails instead of hanging.
struct Child(Option<Process<()>>);

impl Child {
    fn start(p: Process<()>) -> Self {
        Child(Some(p))
    }

    fn join(mut self) {
        if let Some(p) = self.0.take() {
            p.join().unwrap();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = p.kill();
            let _ = p.join_timeout(Duration::from_secs(60));
        }
    }
}

#[test]
fn get_async_completes_when_another_process_puts() {
    let _s = serial();
    let _w = Watchdog::new("async_get_child_put", LIMIT);
    let m = Manager::start().unwrap();
    for rt in runtimes() {
        rt.block_on(async {
            let q = m.queue::<u32>(0).unwrap();
            let go = m.event().unwrap();
            let getter = tokio::spawn({
                let q = q.clone();
                async move { q.get_async().await }
            });
            // The getter runs (and waits on the manager) before the child is told to put: were
            // its wait blocking, a current-thread runtime would never get back here.
            tokio::task::yield_now().await;
            let child =
                Child::start(Process::new(put_when_told, (q.clone(), go.clone(), vec![42])).start().unwrap());
            go.set().unwrap();
            assert_eq!(getter.await.unwrap().unwrap(), 42);
            child.join();
            assert_eq!(q.qsize().unwrap(), 0);
        });
    }
}

#[test]
fn acquire_async_waits_for_a_holder_in_a_child_to_release() {
    let _s = serial();
    let _w = Watchdog::new("async_acquire_child", LIMIT);
    let m = Manager::start().unwrap();
    for rt in runtimes() {
        rt.block_on(async {
            let lock = m.lock().unwrap();
            let (held, release) = (m.event().unwrap(), m.event().unwrap());
            let child = Child::start(
                Process::new(hold_until_told, (lock.clone(), held.clone(), release.clone())).start().unwrap(),
            );
            held.wait_async().await.unwrap();
            let acquirer = tokio::spawn({
                let lock = lock.clone();
                async move {
                    let guard = lock.acquire_async().await?;
                    // Held here, by this call's owner.
                    let busy = lock.try_acquire()?.is_none();
                    drop(guard);
                    Ok::<bool, Error>(busy)
                }
            });
            tokio::task::yield_now().await;
            assert!(!acquirer.is_finished(), "acquired a lock a child holds");
            release.set().unwrap();
            assert!(acquirer.await.unwrap().unwrap(), "the lock was not held after acquire_async");
            child.join();
            assert!(lock.try_acquire().unwrap().is_some(), "the guard did not release");
        });
    }
}

#[test]
fn a_dropped_get_async_leaves_every_value_in_order() {
    let _s = serial();
    let _w = Watchdog::new("async_get_dropped", LIMIT);
    let m = Manager::start().unwrap();
    for rt in runtimes() {
        rt.block_on(async {
            let q = m.queue::<u32>(0).unwrap();
            // Dropped while it waits on an empty queue; values put right after may be granted to
            // it before the manager sees it gone: they come back, at the front.
            assert!(poll_once_then_drop(q.get_async()).await.is_none());
            for v in [1, 2, 3] {
                q.put(v).unwrap();
            }
            settled().await;
            let mut left = Vec::new();
            while let Ok(v) = q.get_nowait() {
                left.push(v);
            }
            assert_eq!(left, [1, 2, 3], "a value was lost, or came back elsewhere than the front");
            // The same, under many drops racing many puts, across processes.
            let go = m.event().unwrap();
            let child = Child::start(
                Process::new(put_when_told, (q.clone(), go.clone(), (0..50).collect())).start().unwrap(),
            );
            go.set().unwrap();
            // Values answered within the first poll are taken; the others must all be back.
            let mut all = Vec::new();
            for _ in 0..50 {
                if let Some(v) = poll_once_then_drop(q.get_timeout_async(Duration::from_secs(60))).await {
                    all.push(v.unwrap());
                }
            }
            child.join();
            settled().await;
            while let Ok(v) = q.get_nowait() {
                all.push(v);
            }
            all.sort_unstable();
            assert_eq!(all, (0..50).collect::<Vec<u32>>(), "a value was lost or doubled");
        });
    }
}

#[test]
fn a_value_granted_to_a_dropped_get_goes_back_to_the_front() {
    let _s = serial();
    let _w = Watchdog::new("async_get_granted", LIMIT);
    let m = Manager::start().unwrap();
    for rt in runtimes() {
        rt.block_on(async {
            let q = m.queue::<u32>(0).unwrap();
            let mut undone = 0;
            for round in 0..20 {
                q.put(1).unwrap();
                q.put(2).unwrap();
                match poll_once_then_drop(q.get_async()).await {
                    // Answered within its first poll: it took the front value.
                    Some(v) => assert_eq!(v.unwrap(), 1),
                    None => {
                        undone += 1;
                        settled().await;
                        assert_eq!(q.get_nowait().unwrap(), 1, "round {round}: the front value moved");
                    }
                }
                assert_eq!(q.get_nowait().unwrap(), 2);
                assert!(matches!(q.get_nowait(), Err(Error::Empty)));
            }
            assert!(undone > 0, "every get was answered within its first poll: nothing tested");
        });
    }
}

#[test]
fn a_dropped_acquire_async_leaves_the_lock_free() {
    let _s = serial();
    let _w = Watchdog::new("async_acquire_dropped", LIMIT);
    let m = Manager::start().unwrap();
    for rt in runtimes() {
        rt.block_on(async {
            let lock = m.lock().unwrap();
            // Granted at once (the lock is free), dropped before the answer is read.
            for _ in 0..20 {
                if let Some(guard) = poll_once_then_drop(lock.acquire_async()).await {
                    drop(guard.unwrap());
                }
                settled().await;
                assert!(lock.try_acquire().unwrap().is_some(), "a dropped acquire left the lock held");
            }
            // Dropped while it waits for a child to release; the release may grant it first.
            let (held, release) = (m.event().unwrap(), m.event().unwrap());
            let child = Child::start(
                Process::new(hold_until_told, (lock.clone(), held.clone(), release.clone())).start().unwrap(),
            );
            held.wait_async().await.unwrap();
            assert!(poll_once_then_drop(lock.acquire_async()).await.is_none(), "acquired a held lock");
            release.set().unwrap();
            child.join();
            settled().await;
            assert!(lock.try_acquire().unwrap().is_some(), "a dropped acquire left the lock held");
            // A semaphore's permit, the same way.
            let sem = m.semaphore(1).unwrap();
            for _ in 0..20 {
                if let Some(r) = poll_once_then_drop(sem.acquire_async()).await {
                    r.unwrap();
                    sem.release().unwrap();
                }
                settled().await;
                assert_eq!(sem.get_value().unwrap(), 1, "a dropped acquire kept a permit");
            }
        });
    }
}

#[test]
fn timeouts_of_the_async_calls() {
    let _s = serial();
    let _w = Watchdog::new("async_timeouts", LIMIT);
    let m = Manager::start().unwrap();
    for rt in runtimes() {
        rt.block_on(async {
            let q = m.queue::<u32>(1).unwrap();
            let t = Duration::from_millis(50);
            let start = Instant::now();
            assert!(matches!(q.get_timeout_async(t).await, Err(Error::Empty)));
            assert!(start.elapsed() >= t);
            q.put(1).unwrap();
            let full = q.put_timeout_async(2, t).await.unwrap_err();
            assert!(matches!(full, proc_manager::PutError::Full(2)));
            assert_eq!(q.get_timeout_async(t).await.unwrap(), 1);

            let lock = m.lock().unwrap();
            let (held, release) = (m.event().unwrap(), m.event().unwrap());
            let child = Child::start(
                Process::new(hold_until_told, (lock.clone(), held.clone(), release.clone())).start().unwrap(),
            );
            held.wait_async().await.unwrap();
            let start = Instant::now();
            assert!(matches!(lock.acquire_timeout_async(t).await, Err(Error::Timeout)));
            assert!(start.elapsed() >= t);
            // A tokio timeout drops the call: the lock is not taken by it.
            assert!(tokio::time::timeout(t, lock.acquire_async()).await.is_err());
            release.set().unwrap();
            child.join();
            settled().await;
            let guard = lock.acquire_timeout_async(Duration::from_secs(60)).await.unwrap();
            assert!(lock.try_acquire().unwrap().is_none());
            drop(guard);

            let ev = m.event().unwrap();
            assert!(!ev.wait_timeout_async(t).await.unwrap());
            ev.set().unwrap();
            assert!(ev.wait_timeout_async(t).await.unwrap());
            let barrier = m.barrier(2).unwrap();
            assert!(matches!(barrier.wait_timeout_async(t).await, Err(Error::BrokenBarrier)));
            let sem = m.semaphore(0).unwrap();
            assert!(!sem.acquire_timeout_async(t).await.unwrap());
        });
    }
}

#[test]
fn condition_wait_async_and_a_dropped_one() {
    let _s = serial();
    let _w = Watchdog::new("async_condition", LIMIT);
    let m = Manager::start().unwrap();
    for rt in runtimes() {
        rt.block_on(async {
            let lock = m.lock().unwrap();
            let cond = m.condition(&lock).unwrap();
            let guard = lock.acquire_async().await.unwrap();
            let notifier = std::thread::spawn({
                let (lock, cond) = (lock.clone(), cond.clone());
                move || {
                    // Gets the lock only once the waiter released it by waiting.
                    let _g = lock.acquire().unwrap();
                    cond.notify_all().unwrap();
                }
            });
            cond.wait_async(&guard).await.unwrap();
            assert!(lock.try_acquire().unwrap().is_none(), "the wait did not take the lock back");
            notifier.join().unwrap();
            // Dropped while it waits: the lock ends up released, the guard's drop does nothing.
            assert!(poll_once_then_drop(cond.wait_async(&guard)).await.is_none());
            settled().await;
            // In doubt after a dropped wait: it serves no further wait.
            assert!(matches!(cond.wait_async(&guard).await, Err(Error::NotHeld)));
            drop(guard);
            let other = lock.try_acquire().unwrap();
            assert!(other.is_some(), "a dropped condition wait left the lock held");
            drop(other);
            // A guard of a blocking acquire belongs to the thread: refused.
            let thread_guard = lock.acquire().unwrap();
            assert!(matches!(cond.wait_async(&thread_guard).await, Err(Error::NotHeld)));
            drop(thread_guard);
        });
    }
}

#[test]
fn a_wait_dropped_after_the_lock_was_taken_back_releases_it_once() {
    let _s = serial();
    let _w = Watchdog::new("async_condition_retaken", LIMIT);
    let m = Manager::start().unwrap();
    for rt in runtimes() {
        rt.block_on(async {
            let lock = m.lock().unwrap();
            let cond = m.condition(&lock).unwrap();
            let guard = lock.acquire_async().await.unwrap();
            {
                let mut wait = std::pin::pin!(cond.wait_async(&guard));
                // Polled once: the request is out and the manager released the lock for the wait.
                assert!(poll_once_then_drop(wait.as_mut()).await.is_none());
                let notifier = std::thread::spawn({
                    let (lock, cond) = (lock.clone(), cond.clone());
                    move || {
                        let _g = lock.acquire().unwrap();
                        cond.notify_all().unwrap();
                    }
                });
                notifier.join().unwrap();
                // The manager takes the lock back for the wait: held by nobody else now.
                loop {
                    match lock.try_acquire().unwrap() {
                        Some(g) => drop(g),
                        None => break,
                    }
                    tokio::task::yield_now().await;
                }
                // Dropped with its answer unread.
            }
            settled().await;
            // The undoing released the lock taken back; another holder's hold then survives the
            // guard's drop.
            let holder = lock.try_acquire().unwrap().expect("the lock taken back was not released");
            drop(guard);
            assert!(lock.try_acquire().unwrap().is_none(), "the guard's drop released another's hold");
            drop(holder);
            assert!(lock.try_acquire().unwrap().is_some());
        });
    }
}

#[test]
fn notify_async_and_release_async_act_as_the_guard_s_owner() {
    let _s = serial();
    let _w = Watchdog::new("async_notify_release", LIMIT);
    let m = Manager::start().unwrap();
    for rt in runtimes() {
        rt.block_on(async {
            let lock = m.lock().unwrap();
            let cond = m.condition(&lock).unwrap();
            let held = m.event().unwrap();
            let waiter = tokio::spawn({
                let (lock, cond, held) = (lock.clone(), cond.clone(), held.clone());
                async move {
                    let guard = lock.acquire_async().await?;
                    held.set()?;
                    cond.wait_async(&guard).await?;
                    guard.release_async().await
                }
            });
            // The waiter holds the lock until it waits: then this acquire gets it.
            held.wait_async().await.unwrap();
            let guard = lock.acquire_async().await.unwrap();
            // The blocking notify acts as the thread, which does not hold the lock.
            assert!(matches!(cond.notify_all(), Err(Error::NotHeld)));
            cond.notify_all_async(&guard).await.unwrap();
            guard.release_async().await.unwrap();
            waiter.await.unwrap().unwrap();
            assert!(lock.try_acquire().unwrap().is_some(), "release_async left the lock held");
        });
    }
}

#[test]
fn the_common_collection_calls() {
    let _s = serial();
    let _w = Watchdog::new("async_collections", LIMIT);
    let m = Manager::start().unwrap();
    for rt in runtimes() {
        rt.block_on(async {
            let d = m.dict::<String, u32>().unwrap();
            assert_eq!(d.insert_async("a".into(), 1).await.unwrap(), None);
            assert_eq!(d.insert_async("a".into(), 2).await.unwrap(), Some(1));
            assert_eq!(d.get_async("a").await.unwrap(), Some(2));
            assert_eq!(d.get_async("b").await.unwrap(), None);
            let l = m.list::<u32>().unwrap();
            l.append_async(5).await.unwrap();
            assert_eq!(l.get_async(0).await.unwrap(), 5);
            assert!(matches!(l.get_async(3).await, Err(Error::IndexOutOfRange)));
            let v = m.value(1u32).unwrap();
            v.set_async(7).await.unwrap();
            assert_eq!(v.get_async().await.unwrap(), 7);
            // Many at once on one runtime: each takes a connection of its own.
            let calls = (0..16).map(|i| {
                let d = d.clone();
                tokio::spawn(async move { d.insert_async(format!("k{i}"), i).await })
            });
            for c in calls {
                c.await.unwrap().unwrap();
            }
            assert_eq!(d.len().unwrap(), 17);
        });
    }
}

#[test]
fn an_async_call_outside_a_runtime_is_refused() {
    let _s = serial();
    let _w = Watchdog::new("async_no_runtime", LIMIT);
    let m = Manager::start().unwrap();
    let q = m.queue::<u32>(0).unwrap();
    let fut = std::pin::pin!(q.get_async());
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match fut.poll(&mut cx) {
        Poll::Ready(Err(Error::Connection(_))) => {}
        other => panic!("{other:?}"),
    }
}

/// Over TLS (feature `tls`): rustls on the nonblocking socket, with values larger than a TLS
/// record and than the socket's buffers, both ways.
#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use proc_manager::{TlsClient, TlsServer};

    const KEY: &[u8] = b"a manager key of more than 16 bytes";

    #[test]
    fn async_calls_over_tls() {
        let _s = serial();
        let _w = Watchdog::new("async_tls", LIMIT);
        let server =
            TlsServer::from_pem(include_bytes!("tls/server.pem"), include_bytes!("tls/server.key")).unwrap();
        let owner = TlsClient::from_pem("localhost", include_bytes!("tls/ca.pem")).unwrap();
        let m = Manager::builder()
            .authkey(KEY.to_vec())
            .tls(server, owner)
            .start_tcp("127.0.0.1:0".parse().unwrap())
            .unwrap();
        for rt in runtimes() {
            rt.block_on(async {
                let q = m.queue::<Vec<u8>>(0).unwrap();
                let big: Vec<u8> = (0..4 << 20).map(|i: u32| i as u8).collect();
                let getter = tokio::spawn({
                    let q = q.clone();
                    async move { q.get_async().await }
                });
                q.put_async(big.clone()).await.unwrap();
                assert_eq!(getter.await.unwrap().unwrap(), big);
                q.put(vec![1]).unwrap();
                match poll_once_then_drop(q.get_async()).await {
                    Some(v) => assert_eq!(v.unwrap(), [1]),
                    None => {
                        settled().await;
                        assert_eq!(q.get_nowait().unwrap(), [1], "a dropped get over TLS lost its value");
                    }
                }
                let lock = m.lock().unwrap();
                if let Some(g) = poll_once_then_drop(lock.acquire_async()).await {
                    drop(g.unwrap());
                }
                settled().await;
                assert!(lock.try_acquire().unwrap().is_some());
            });
        }
        m.shutdown().unwrap();
    }
}

/// A child: waits for `go`, then takes `count` values and marks each done.
fn consume_when_told(q: Queue<u32>, go: Event, count: u32) {
    assert!(go.wait_timeout(Duration::from_secs(60)).unwrap(), "never told to consume");
    for _ in 0..count {
        q.get().unwrap();
        q.task_done().unwrap();
    }
}

#[test]
fn join_async_waits_for_a_child_to_mark_every_value_done() {
    let _s = serial();
    let _w = Watchdog::new("async_join_child", LIMIT);
    let m = Manager::start().unwrap();
    for rt in runtimes() {
        rt.block_on(async {
            let q = m.joinable_queue::<u32>(0).unwrap();
            for v in 0..3 {
                q.put(v).unwrap();
            }
            assert!(matches!(q.join_timeout_async(Duration::from_millis(10)).await, Err(Error::Timeout)));
            let go = m.event().unwrap();
            let joiner = tokio::spawn({
                let q = q.clone();
                async move { q.join_async().await }
            });
            tokio::task::yield_now().await;
            assert!(!joiner.is_finished(), "joined with three values not done");
            let child =
                Child::start(Process::new(consume_when_told, (q.clone(), go.clone(), 3)).start().unwrap());
            go.set().unwrap();
            joiner.await.unwrap().unwrap();
            child.join();
            assert_eq!(q.qsize().unwrap(), 0);
            // A dropped join changes nothing: the queue still joins at once.
            q.put(9).unwrap();
            assert!(poll_once_then_drop(q.join_async()).await.is_none());
            q.get().unwrap();
            q.task_done().unwrap();
            q.join_async().await.unwrap();
        });
    }
}

/// A registered type for `Proxy::call_async`: a running total.
#[derive(Default)]
struct Total(u64);

impl proc_manager::Shared for Total {
    type Init = u64;
    type Request = u64;
    type Response = u64;
    fn new(start: u64) -> Self {
        Total(start)
    }
    fn handle(&mut self, add: u64) -> u64 {
        self.0 += add;
        self.0
    }
}

#[test]
fn namespace_array_and_registered_types_have_async_calls() {
    let _s = serial();
    let _w = Watchdog::new("async_other_proxies", LIMIT);
    let m = Manager::builder().register::<Total>("Total").start().unwrap();
    for rt in runtimes() {
        rt.block_on(async {
            let ns = m.namespace().unwrap();
            ns.set_async("x", &5u32).await.unwrap();
            assert_eq!(ns.get::<u32>("x").unwrap(), 5);
            assert_eq!(ns.get_async::<u32>("x").await.unwrap(), 5);
            assert!(matches!(ns.get_async::<u32>("missing").await, Err(Error::KeyNotFound)));

            let a = m.array(vec![0u16; 3]).unwrap();
            a.set_async(-1, 7u16).await.unwrap();
            assert_eq!(a.to_vec().unwrap(), [0, 0, 7]);
            assert_eq!(a.get_async(2).await.unwrap(), 7);
            assert!(matches!(a.get_async(3).await, Err(Error::IndexOutOfRange)));

            let total = m.create_object::<Total>("Total", 40).unwrap();
            assert_eq!(total.call_async(&2).await.unwrap(), 42);
            assert_eq!(total.call(&0).unwrap(), 42);
        });
    }
}
