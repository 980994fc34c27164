//! Queue, SimpleQueue and JoinableQueue across processes: bounds, order, large messages, killed
//! producers and consumers, shutdown.

#![allow(clippy::unwrap_used)]

#[cfg(target_os = "linux")]
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use proc_core::{get_all_start_methods, get_context, Process, StartMethod};
use proc_queue::{GetError, JoinError, JoinableQueue, PutError, Queue, SimpleQueue};
use proc_sync::Event;
use serde::{Deserialize, Serialize};
use test_support::{serial, shm_names, Watchdog};

const LIMIT: Duration = Duration::from_secs(300);

/// Bytes that serialize with one copy (`serialize_bytes`), with a checksum to detect tearing.
#[derive(Debug, Clone, PartialEq)]
struct Blob(Vec<u8>);

impl Blob {
    fn new(len: usize, seed: u8) -> Self {
        Blob((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect())
    }

    fn is_whole(&self) -> bool {
        let seed = self.0.first().copied().unwrap_or(0);
        self.0.iter().enumerate().all(|(i, b)| *b == (i as u8).wrapping_mul(31).wrapping_add(seed))
    }
}

impl Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[test]
fn bounded_put_and_get_in_every_form() {
    let _w = Watchdog::new("bounded_put_and_get_in_every_form", LIMIT);
    let q = Queue::new(2).unwrap();
    assert!(q.empty());
    assert_eq!(q.qsize(), 0);
    q.put(1u32).unwrap();
    assert_eq!(q.qsize(), 1);
    q.put_nowait(2).unwrap();
    assert_eq!(q.qsize(), 2);
    assert!(q.full());
    match q.put_nowait(3) {
        Err(PutError::Full(v)) => assert_eq!(v, 3),
        other => panic!("{other:?}"),
    }
    let before = Instant::now();
    match q.put_timeout(4, Duration::from_millis(30)) {
        Err(PutError::Timeout(v)) => assert_eq!(v, 4),
        other => panic!("{other:?}"),
    }
    assert!(before.elapsed() >= Duration::from_millis(30));
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.qsize(), 1);
    assert_eq!(q.get_nowait().unwrap(), 2);
    assert_eq!(q.qsize(), 0);
    assert!(matches!(q.get_nowait(), Err(GetError::Empty)));
    let before = Instant::now();
    assert!(matches!(q.get_timeout(Duration::from_millis(30)), Err(GetError::Timeout)));
    assert!(before.elapsed() >= Duration::from_millis(30));
    // Zero-sized and empty values are messages too.
    let units = Queue::new(3).unwrap();
    units.put(()).unwrap();
    units.put(()).unwrap();
    assert_eq!(units.qsize(), 2);
    units.get().unwrap();
    units.get().unwrap();
    assert!(units.empty());
}

#[test]
fn a_capacity_of_one_holds_one() {
    let q = Queue::new(1).unwrap();
    for i in 0..10u8 {
        q.put_nowait(i).unwrap();
        assert!(q.put_nowait(99).unwrap_err().is_full());
        assert_eq!(q.get_nowait().unwrap(), i);
    }
}

fn produce_tagged(q: Queue<(u8, u32)>, tag: u8, n: u32) {
    for i in 0..n {
        q.put((tag, i)).unwrap();
    }
}

#[test]
fn each_producer_is_fifo_while_others_produce() {
    let _s = serial();
    let _w = Watchdog::new("each_producer_is_fifo_while_others_produce", LIMIT);
    for m in get_all_start_methods() {
        let q = Queue::new(16).unwrap();
        let child = get_context(m).process(produce_tagged, (q.clone(), 1, 2000)).start().unwrap();
        let mine = q.clone();
        let local = std::thread::spawn(move || produce_tagged(mine, 0, 2000));
        let mut next = [0u32; 2];
        for _ in 0..4000 {
            let (tag, i) = q.get().unwrap();
            assert_eq!(i, next[tag as usize], "{m}: producer {tag} out of order");
            next[tag as usize] += 1;
        }
        local.join().unwrap();
        child.join().unwrap();
        assert!(q.empty());
    }
}

fn put_big_and_exit(q: Queue<Blob>, len: usize) {
    q.put(Blob::new(len, 7)).unwrap();
}

#[test]
fn items_outlive_their_producer() {
    let _s = serial();
    let _w = Watchdog::new("items_outlive_their_producer", LIMIT);
    let before = shm_names();
    for m in get_all_start_methods() {
        let q = Queue::new(4).unwrap();
        // Python deadlocks here: the child's feeder thread cannot flush a large item.
        let p = get_context(m).process(put_big_and_exit, (q.clone(), 1 << 20)).start().unwrap();
        p.join().unwrap();
        assert_eq!(q.qsize(), 1);
        let blob = q.get().unwrap();
        assert_eq!(blob.0.len(), 1 << 20);
        assert!(blob.is_whole());
    }
    assert_eq!(shm_names(), before, "a large message's segment was left behind");
}

#[test]
fn sixteen_mib_and_one_gib_messages() {
    let _s = serial();
    let _w = Watchdog::new("sixteen_mib_and_one_gib_messages", LIMIT);
    let before = shm_names();
    let q = Queue::new(2).unwrap();
    let p = Process::new(put_big_and_exit, (q.clone(), 16 << 20)).start().unwrap();
    let blob = q.get().unwrap();
    p.join().unwrap();
    assert_eq!(blob.0.len(), 16 << 20);
    assert!(blob.is_whole());
    drop(blob);
    let p = Process::new(put_big_and_exit, (q.clone(), 1 << 30)).start().unwrap();
    let blob = q.get().unwrap();
    p.join().unwrap();
    assert_eq!(blob.0.len(), 1 << 30);
    assert!(blob.0[..1 << 20]
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (i as u8).wrapping_mul(31).wrapping_add(7)));
    assert_eq!(blob.0[(1 << 30) - 1], ((((1usize << 30) - 1) as u8).wrapping_mul(31)).wrapping_add(7));
    drop(blob);
    assert_eq!(shm_names(), before);
}

#[test]
fn a_message_above_the_maximum_is_refused_before_anything_is_written() {
    let q = Queue::<Blob>::builder().maxsize(2).max_message(1000).build().unwrap();
    match q.put(Blob::new(2000, 1)) {
        Err(PutError::TooLarge { value, size, max }) => {
            assert_eq!(value.0.len(), 2000);
            assert!(size > 2000);
            assert_eq!(max, 1000);
        }
        other => panic!("{other:?}"),
    }
    assert!(q.empty());
    q.put(Blob::new(900, 1)).unwrap();
    assert!(q.get().unwrap().is_whole());
}

#[derive(Debug)]
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("no"))
    }
}

impl<'de> Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Unserializable)
    }
}

#[test]
fn a_value_that_fails_to_serialize_is_not_enqueued() {
    let q = Queue::new(2).unwrap();
    assert!(matches!(q.put(Unserializable), Err(PutError::Serialize { .. })));
    assert!(q.empty());
    assert!(matches!(q.get_nowait(), Err(GetError::Empty)));
}

fn get_then_signal(q: Queue<u32>) -> Result<u32, String> {
    q.get().map_err(|e| e.to_string())
}

#[test]
fn close_and_shutdown() {
    let _s = serial();
    let _w = Watchdog::new("close_and_shutdown", LIMIT);
    let q = Queue::new(4).unwrap();
    q.put(1u32).unwrap();
    let other = q.clone();
    q.close();
    assert!(matches!(other.put(2), Err(PutError::Closed(2))));
    assert!(matches!(other.get(), Err(GetError::Closed)));

    // A getter blocked in another process is woken by a shutdown.
    let q = Queue::new(4).unwrap();
    let blocked = Process::new(get_then_signal, (q.clone(),)).start().unwrap();
    q.put(5).unwrap();
    // The child got 5; a second child blocks until the shutdown.
    assert_eq!(blocked.join().unwrap(), Ok(5));
    let blocked = Process::new(get_then_signal, (q.clone(),)).start().unwrap();
    q.shutdown(false);
    assert!(blocked.join().unwrap().unwrap_err().contains("shut down"));
    assert!(matches!(q.put(6), Err(PutError::ShutDown(6))));

    // Queued items can still be drained after a plain shutdown, not after an immediate one.
    let q = Queue::new(4).unwrap();
    q.put(1u32).unwrap();
    q.put(2).unwrap();
    q.shutdown(false);
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.get().unwrap(), 2);
    assert!(matches!(q.get(), Err(GetError::ShutDown)));
    let j = JoinableQueue::new(4).unwrap();
    j.put(1u32).unwrap();
    j.put(2).unwrap();
    j.shutdown(true);
    assert!(matches!(j.get(), Err(GetError::ShutDown)));
    assert!(j.empty());
    // Dropped items count as done.
    j.join().unwrap();
}

fn worker(q: JoinableQueue<Option<u64>>, results: Queue<u64>) {
    while let Some(n) = q.get().unwrap() {
        results.put(n * n).unwrap();
        q.task_done().unwrap();
    }
    q.task_done().unwrap();
}

#[test]
fn joinable_queue_with_four_workers() {
    let _s = serial();
    let _w = Watchdog::new("joinable_queue_with_four_workers", LIMIT);
    let (q, results) = (JoinableQueue::new(8).unwrap(), Queue::new(0).unwrap());
    let workers: Vec<_> =
        (0..4).map(|_| Process::new(worker, (q.clone(), results.clone())).start().unwrap()).collect();
    for n in 0..200u64 {
        q.put(Some(n)).unwrap();
    }
    for _ in 0..4 {
        q.put(None).unwrap();
    }
    q.join().unwrap();
    assert_eq!(q.unfinished_tasks(), 0);
    for w in workers {
        w.join().unwrap();
    }
    let mut got: Vec<u64> = (0..200).map(|_| results.get_nowait().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (0..200u64).map(|n| n * n).collect::<Vec<_>>());
    assert_eq!(q.task_done(), Err(JoinError::TooManyTaskDone));
    q.put(None).unwrap();
    assert_eq!(q.join_timeout(Duration::from_millis(20)), Err(JoinError::Timeout));
}

fn put_range(q: Queue<u64>, from: u64, n: u64) {
    for i in from..from + n {
        q.put(i).unwrap();
    }
}

fn take_until_sentinel(q: Queue<u64>) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        let v = q.get().unwrap();
        if v == u64::MAX {
            return got;
        }
        got.push(v);
    }
}

#[test]
fn four_producers_four_consumers_nothing_lost_or_duplicated() {
    let _s = serial();
    let _w = Watchdog::new("four_producers_four_consumers", LIMIT);
    const N: u64 = 100_000;
    let q = Queue::new(1024).unwrap();
    let consumers: Vec<_> =
        (0..4).map(|_| Process::new(take_until_sentinel, (q.clone(),)).start().unwrap()).collect();
    let producers: Vec<_> =
        (0..4).map(|p| Process::new(put_range, (q.clone(), p * N, N)).start().unwrap()).collect();
    for p in producers {
        p.join().unwrap();
    }
    for _ in 0..4 {
        q.put(u64::MAX).unwrap();
    }
    let mut all: Vec<u64> = consumers.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert_eq!(all.len() as u64, 4 * N);
    all.sort_unstable();
    assert!(all.iter().copied().eq(0..4 * N), "lost or duplicated items");
}

fn flood(q: Queue<Blob>, started: Event, len: usize) {
    let mut seed = 0u8;
    loop {
        q.put(Blob::new(len, seed)).unwrap();
        started.set();
        seed = seed.wrapping_add(1);
    }
}

#[test]
fn producers_killed_mid_put_never_tear_or_block_the_queue() {
    let _s = serial();
    let _w = Watchdog::new("producers_killed_mid_put", LIMIT);
    let before = shm_names();
    for (len, rounds) in [(40usize, 20), (16 << 20, 5)] {
        let q = Queue::new(4).unwrap();
        for _ in 0..rounds {
            let started = Event::new().unwrap();
            let p = Process::new(flood, (q.clone(), started.clone(), len)).start().unwrap();
            started.wait();
            // Take one so the producer is busy putting again, then kill it.
            assert!(q.get().unwrap().is_whole());
            p.kill().unwrap();
            let _ = p.join();
            // Whatever it left is whole, and the queue is usable.
            while let Ok(blob) = q.get_nowait() {
                assert!(blob.is_whole());
                assert_eq!(blob.0.len(), len);
            }
            q.put(Blob::new(len, 1)).unwrap();
            let back = q.get_timeout(Duration::from_secs(30)).unwrap();
            assert!(back.is_whole());
        }
    }
    // Segments of killed producers are unlinked by the resource tracker when the program ends,
    // not before; what consumers took is gone already.
    let left: Vec<_> = shm_names().difference(&before).cloned().collect();
    assert!(left.len() <= 5, "{left:?}");
}

fn hold_a_get(q: Queue<u32>, getting: Event) {
    // Take nothing: this process is killed while in (or entering) a blocked get, holding no slot.
    getting.set();
    let _ = q.get();
}

#[test]
fn a_consumer_killed_while_blocked_loses_nothing() {
    let _s = serial();
    let _w = Watchdog::new("a_consumer_killed_while_blocked_loses_nothing", LIMIT);
    let q = Queue::new(2).unwrap();
    let getting = Event::new().unwrap();
    let p =
        get_context(StartMethod::Spawn).process(hold_a_get, (q.clone(), getting.clone())).start().unwrap();
    getting.wait();
    p.kill().unwrap();
    let _ = p.join();
    q.put(1u32).unwrap();
    q.put(2).unwrap();
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.get().unwrap(), 2);
}

#[test]
fn simple_queue_and_handles() {
    let _s = serial();
    let q = SimpleQueue::new().unwrap();
    let p = Process::new(|q: SimpleQueue<String>| q.put("from child".into()).unwrap(), (q.clone(),))
        .start_method(StartMethod::Fork)
        .start()
        .unwrap();
    p.join().unwrap();
    assert_eq!(q.get().unwrap(), "from child");
    assert!(q.empty());
    // A queue is a handle: it refuses to serialize outside a start.
    assert!(serde_json::to_string(&Queue::<u8>::new(1).unwrap()).is_err());
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Queue<String>>();
    send_sync::<SimpleQueue<String>>();
    send_sync::<JoinableQueue<String>>();
}

fn drain_forever(q: Queue<u64>, started: Event) {
    loop {
        let _ = q.get();
        started.set();
    }
}

#[test]
fn consumers_killed_mid_get_lose_at_most_their_message() {
    let _s = serial();
    let _w = Watchdog::new("consumers_killed_mid_get", LIMIT);
    let q = Queue::new(4).unwrap();
    for round in 0..20u64 {
        let started = Event::new().unwrap();
        let p = Process::new(drain_forever, (q.clone(), started.clone())).start().unwrap();
        q.put(round).unwrap();
        started.wait();
        for i in 0..50 {
            q.put(i).unwrap();
        }
        p.kill().unwrap();
        let _ = p.join();
        while q.get_nowait().is_ok() {}
        // Every slot can be filled again: none stays held by the dead consumer.
        for i in 0..4u64 {
            q.put_timeout(i, Duration::from_secs(30)).unwrap();
        }
        for i in 0..4u64 {
            assert_eq!(q.get().unwrap(), i, "round {round}");
        }
    }
}

/// Serializes once (the size pass), then panics.
#[derive(Debug, Default)]
struct PanicsSecondTime(std::cell::Cell<u32>);

impl Serialize for PanicsSecondTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.set(self.0.get() + 1);
        assert!(self.0.get() != 2, "a serializer that panics");
        s.serialize_u8(1)
    }
}

impl<'de> Deserialize<'de> for PanicsSecondTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u8::deserialize(d).map(|_| PanicsSecondTime::default())
    }
}

#[test]
fn a_panicking_serializer_does_not_block_the_queue() {
    let q = Queue::<PanicsSecondTime>::new(2).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| q.put(PanicsSecondTime::default())));
    assert!(r.is_err());
    // Nothing was enqueued (the voided slot is skipped), and then the queue is empty.
    assert!(matches!(q.get_nowait(), Err(GetError::Empty)));
    assert!(q.empty());
    // Both slots are usable (values whose count is past 2 do not panic).
    for _ in 0..2 {
        let ok = PanicsSecondTime::default();
        ok.0.set(5);
        q.put_nowait(ok).unwrap();
    }
    q.get_nowait().unwrap();
    q.get_nowait().unwrap();
}

fn put_ten(q: Queue<u32>, base: u32) {
    for i in 0..10 {
        q.put(base + i).unwrap();
    }
}

#[test]
fn wait_watches_queues_next_to_connections() {
    use proc_queue::{pipe, wait, Waitable};
    let _s = serial();
    let _w = Watchdog::new("wait_watches_queues_next_to_connections", LIMIT);
    let queues: Vec<Queue<u32>> = (0..4).map(|_| Queue::new(4).unwrap()).collect();
    let (quiet, _other_end) = pipe::<u32>().unwrap();
    // An empty queue is not ready; the timeout is honoured from below.
    let before = Instant::now();
    assert!(wait(&[&queues[0], &quiet], Some(Duration::from_millis(30))).unwrap().is_empty());
    assert!(before.elapsed() >= Duration::from_millis(30));
    let children: Vec<_> = queues
        .iter()
        .enumerate()
        .map(|(i, q)| Process::new(put_ten, (q.clone(), 100 * i as u32)).start().unwrap())
        .collect();
    let mut objects: Vec<&dyn Waitable> = queues.iter().map(|q| q as &dyn Waitable).collect();
    objects.push(&quiet);
    let mut got = Vec::new();
    while got.len() < 40 {
        let ready = wait(&objects, Some(Duration::from_secs(60))).unwrap();
        assert!(!ready.is_empty(), "wait timed out with {} of 40 messages", got.len());
        for i in ready {
            assert!(i < 4, "the quiet pipe was reported ready");
            // Ready means a get does not wait.
            got.push(queues[i].get_nowait().unwrap());
        }
    }
    for c in children {
        c.join().unwrap();
    }
    got.sort_unstable();
    let want: Vec<u32> = (0..4).flat_map(|i| (0..10).map(move |j| 100 * i + j)).collect();
    assert_eq!(got, want);
    // A shut-down queue is ready: its get returns at once.
    queues[2].shutdown(false);
    assert_eq!(wait(&objects, Some(Duration::from_secs(60))).unwrap(), [2]);
}

#[test]
fn spill_segments_are_reused_and_go_with_the_queue() {
    let _s = serial();
    let before = shm_names();
    let q = Queue::new(2).unwrap();
    for seed in 0..20u8 {
        q.put(Blob::new(1 << 20, seed)).unwrap();
        let blob = q.get().unwrap();
        assert!(blob.is_whole());
        assert_eq!(blob.0[0], seed);
        // One segment goes round: it is reused, not created anew for every message.
        assert_eq!(shm_names().difference(&before).count(), 1, "round {seed}");
    }
    let other = q.clone();
    drop(q);
    assert_eq!(shm_names().difference(&before).count(), 1, "a handle is still alive");
    drop(other);
    assert_eq!(shm_names(), before);
}

/// Puts `n` messages of `len` bytes (seeds 0, 1, ...), then says so and waits to be killed.
fn put_backlog_and_wait(q: Queue<Blob>, n: u32, len: usize, done: Event) {
    for seed in 0..n {
        q.put(Blob::new(len, seed as u8)).unwrap();
    }
    done.set();
    // Hold the chunk (and the handle) until killed: the queue must not need this process.
    loop {
        std::thread::park();
    }
}

/// The `mp_*` segments this process has mapped (Linux): ours, whatever other programs on the
/// machine create meanwhile.
#[cfg(target_os = "linux")]
fn mapped_shm_names() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once("/dev/shm/").map(|(_, n)| n.trim_end_matches(" (deleted)").to_owned()))
        .filter(|n| n.starts_with("mp_"))
        .collect()
}

#[test]
#[cfg(target_os = "linux")]
fn a_backlog_of_large_messages_shares_a_few_segments() {
    let _s = serial();
    let _w = Watchdog::new("a_backlog_of_large_messages_shares_a_few_segments", LIMIT);
    for q in [Queue::unbounded().unwrap(), Queue::new(4000).unwrap()] {
        let before = shm_names();
        // 3000 messages of 64 KiB queued before anyone reads: a few chunks, not a segment each
        // (the bound leaves room for other programs' segments).
        for seed in 0..3000u32 {
            q.put(Blob::new(64 << 10, seed as u8)).unwrap();
        }
        let created = shm_names().difference(&before).count();
        assert!(created <= 40, "{created} segments for one backlog");
        let first = mapped_shm_names();
        for seed in 0..3000u32 {
            let blob = q.get().unwrap();
            assert!(blob.is_whole());
            assert_eq!(blob.0[0], seed as u8);
        }
        // A second backlog reuses them.
        for seed in 0..3000u32 {
            q.put(Blob::new(64 << 10, seed as u8)).unwrap();
        }
        let second = mapped_shm_names();
        assert!(second.difference(&first).count() <= 2, "{second:?} mapped after {first:?}");
        for _ in 0..3000u32 {
            assert!(q.get().unwrap().is_whole());
        }
        drop(q);
        let ours: BTreeSet<String> = first.union(&second).cloned().collect();
        let left: Vec<_> = shm_names().intersection(&ours).cloned().collect();
        assert!(left.is_empty(), "{left:?} outlived the queue");
    }
}

#[test]
fn a_producer_killed_with_a_backlog_leaves_whole_messages() {
    let _s = serial();
    let _w = Watchdog::new("a_producer_killed_with_a_backlog_leaves_whole_messages", LIMIT);
    let q = Queue::unbounded().unwrap();
    for round in 0..3u32 {
        let done = Event::new().unwrap();
        let p = Process::new(put_backlog_and_wait, (q.clone(), 200, 64 << 10, done.clone())).start().unwrap();
        done.wait();
        p.kill().unwrap();
        let _ = p.join();
        // The chunk of a dead producer stays readable: every message is there, whole, in order.
        for seed in 0..200u32 {
            let blob = q.get_nowait().unwrap();
            assert!(blob.is_whole(), "round {round}");
            assert_eq!(blob.0[0], seed as u8, "round {round}");
        }
        assert!(matches!(q.get_nowait(), Err(GetError::Empty)));
        // And the queue goes on, taking the dead producer's chunk back.
        q.put(Blob::new(64 << 10, 9)).unwrap();
        assert!(q.get().unwrap().is_whole());
    }
}

fn put_many(q: Queue<(u8, u32)>, tag: u8, n: u32) {
    for i in 0..n {
        q.put((tag, i)).unwrap();
    }
}

#[test]
fn an_unbounded_queue_grows_instead_of_blocking() {
    let _s = serial();
    let _w = Watchdog::new("an_unbounded_queue_grows_instead_of_blocking", LIMIT);
    let before = shm_names();
    for m in get_all_start_methods() {
        let q = Queue::unbounded().unwrap();
        assert_eq!(q.maxsize(), 0);
        // Far more than the first ring holds, put by a child that is joined before anyone reads.
        let n = 5 * proc_queue::UNBOUNDED_INITIAL_CAPACITY;
        let p = get_context(m).process(put_many, (q.clone(), 1, n)).start().unwrap();
        p.join().unwrap();
        assert_eq!(q.qsize(), n as usize, "{m}");
        assert!(!q.full());
        for i in 0..n {
            assert_eq!(q.get_nowait().unwrap(), (1, i), "{m}");
        }
        assert!(q.empty());
        assert!(matches!(q.get_nowait(), Err(GetError::Empty)));
        // Still usable after the rings it grew.
        q.put((2, 0)).unwrap();
        assert_eq!(q.get().unwrap(), (2, 0));
    }
    assert_eq!(shm_names(), before, "the rings of a grown queue outlived it");
}

#[test]
fn an_unbounded_queue_grows_past_a_consumer_that_stopped_reading() {
    let _s = serial();
    let _w = Watchdog::new("an_unbounded_queue_grows_past_a_consumer_that_stopped_reading", LIMIT);
    let q = Queue::unbounded().unwrap();
    // A consumer read once: a full ring now yields a little for it before growing, never more.
    q.put((0, 0)).unwrap();
    assert_eq!(q.get().unwrap(), (0, 0));
    let n = 5 * proc_queue::UNBOUNDED_INITIAL_CAPACITY;
    let start = Instant::now();
    put_many(q.clone(), 1, n);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(q.qsize(), n as usize);
    for i in 0..n {
        assert_eq!(q.get_nowait().unwrap(), (1, i));
    }
}

#[test]
fn large_puts_make_way_for_a_consumer_only_briefly() {
    let _s = serial();
    let _w = Watchdog::new("large_puts_make_way_for_a_consumer_only_briefly", LIMIT);
    let q = Queue::<Blob>::new(8).unwrap();
    // A consumer read once and then stopped: each large put yields a little for it, no more.
    q.put(Blob::new(10, 0)).unwrap();
    assert!(q.get().unwrap().is_whole());
    let start = Instant::now();
    for seed in 1..=6 {
        q.put(Blob::new(2 << 20, seed)).unwrap();
    }
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    for _ in 1..=6 {
        assert!(q.get_nowait().unwrap().is_whole());
    }
}

#[test]
fn producers_stay_in_order_across_ring_boundaries() {
    let _s = serial();
    let _w = Watchdog::new("producers_stay_in_order_across_ring_boundaries", LIMIT);
    let q = Queue::unbounded().unwrap();
    let n = 3 * proc_queue::UNBOUNDED_INITIAL_CAPACITY;
    let producers: Vec<_> =
        (0..2u8).map(|t| Process::new(put_many, (q.clone(), t, n)).start().unwrap()).collect();
    let consumer_q = q.clone();
    // Read only once the first ring overflowed: with nobody reading yet, the producers grow the
    // queue instead of yielding for a consumer.
    while q.qsize() <= proc_queue::UNBOUNDED_INITIAL_CAPACITY as usize {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut next = [0u32; 2];
    for _ in 0..2 * n {
        let (tag, i) = consumer_q.get().unwrap();
        assert_eq!(i, next[tag as usize], "producer {tag} out of order");
        next[tag as usize] += 1;
    }
    for p in producers {
        p.join().unwrap();
    }
    assert!(q.empty());
}
