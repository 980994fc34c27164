//! proc-queue's `Queue`, `SimpleQueue` and `Pipe` (`Connection`) next to their raw floors:
//! throughput of one producer → one consumer (and two → two) for `u64`s and for 64 KiB and 4 MiB
//! byte messages, and round trips.
//!
//! Groups (`<pin>` is `free` or `pinned`); in every throughput group the parent is the consumer and
//! children started with the fork start method produce, all started together by a spin gate, and
//! the time is from the gate until the parent has all the items (one item per iteration):
//!
//! - `small_1to1_<pin>`: `u64`s through a `queue` (unbounded), a `simple_queue` and a `pipe`,
//!   next to `floor_spsc_ring` (a raw single-producer single-consumer ring of 8-byte slots in
//!   `MAP_SHARED` memory, as many slots as the unbounded queue).
//! - `small_2to2_<pin>`: two producer children, and the parent and a consumer child, through one
//!   unbounded `queue`.
//! - `bytes_64k_<pin>`, `bytes_4m_<pin>`: byte messages (a newtype serialized with
//!   `serialize_bytes`, so postcard copies them whole) through a `queue` of 4 slots of the default
//!   size (the messages spill to a segment each), for 64 KiB also `queue_slot128k` (slots of
//!   128 KiB: in the ring), and a `pipe` (`send_bytes`/`recv_bytes_into`); next to
//!   `floor_byte_ring` (a 2 MiB byte ring, memcpy in and memcpy out: two copies) and
//!   `floor_memcpy` (one copy in one process). `queue_vec` and `queue_bytebuf` put the user's own
//!   payload types through the same queue: a `Vec<u8>` (serialized element by element) and a
//!   `multiproc::ByteBuf` (one copy), each cloned for every put. `pipe_typed` sends the same
//!   bytes as typed messages, `send(&ByteBuf)` → `recv()`, next to `pipe`'s raw bytes.
//! - `backlog_4k_<pin>`, `backlog_64k_<pin>`, `backlog_1m_<pin>`: byte messages in rounds of a backlog
//!   (4000 messages, at most 256 MiB), each round by a fresh producer child, through an unbounded
//!   `queue`, a `bounded_queue` (`maxsize` = the backlog), a `simple_queue` and a `joinable_queue`
//!   (unbounded, `task_done` after each `get`). A `<kind>` row keeps up (the parent gets while the
//!   child puts); its `<kind>_backlog` row starts getting only once the child has put the whole
//!   round. Both time the round from the gate until the parent has every message; `queue_drain`
//!   times only the gets of the unbounded queue's backlog, and `floor_memcpy` (one copy in one
//!   process) is there for scale. `floor_backlog` is the same backlog without a queue: a fresh
//!   child per round copies the round's messages into `MAP_SHARED` memory it has not mapped yet
//!   (a MiB mapped at a time ahead of the writes), then the parent copies them out.
//! - `pingpong_<pin>`: one round trip of a `u64` between parent and child through two `queue`s,
//!   or a duplex `pipe`, next to `floor_futex` (a shared-futex ping-pong) and `floor_socketpair`
//!   (one byte back and forth over a Unix socket pair), and `floor_socketpair_polling` (the same,
//!   each side looking for the byte without sleeping for up to 100 µs first, as a `Connection`'s
//!   receive does).
//!
//! `cargo xtask bench queue` runs this free and pinned and puts the figures next to Python's
//! (`benches/python/queue.py`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use multiproc::queue::{pipe, Connection, JoinableQueue, Queue, SimpleQueue};
use multiproc::{ByteBuf, Process};
use multiproc_benches::{
    floor_byte_ring, floor_memcpy, floor_socketpair_pingpong, floor_socketpair_pingpong_polling,
    floor_spsc_ring, group_name, join_bounded, pin_if_asked, Gate, BOUND,
};
use serde::{Deserialize, Serialize};

fn configure(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    warm_up_ms: u64,
    measure_ms: u64,
) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(warm_up_ms))
        .measurement_time(Duration::from_millis(measure_ms));
}

/// A byte message that postcard copies whole (`serialize_bytes`), not byte by byte. Shared, so a
/// producer can put the same bytes again without copying them first (as Python's producer puts
/// the same `bytes` object).
struct Blob(Arc<Vec<u8>>);

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
                Ok(Blob(Arc::new(v.to_vec())))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(Arc::new(v)))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Starts a child (fork start method) that waits at `gate`, runs `produce` and says it finished.
fn producer(gate: &Gate, produce: impl FnOnce() -> bool + Send + 'static) -> multiproc::Process<bool> {
    let gate = gate.clone();
    Process::fork(
        move || {
            if !gate.arrive() || !produce() {
                return false;
            }
            gate.finish();
            true
        },
        (),
    )
    .start()
    .expect("start")
}

/// One child produces `n` items with `produce(n)`; the parent consumes them with `consume(n)`.
/// The time from the gate until the parent has them all.
fn one_to_one(
    n: u64,
    produce: impl FnOnce(u64) -> bool + Send + 'static,
    consume: impl FnOnce(u64),
) -> Duration {
    let gate = Gate::new();
    let child = producer(&gate, move || produce(n));
    let start = gate.open();
    consume(n);
    let elapsed = start.elapsed();
    join_bounded(child);
    elapsed
}

fn small_1to1(c: &mut Criterion) {
    pin_if_asked();
    let mut group = c.benchmark_group(group_name("small_1to1"));
    configure(&mut group, 300, 1500);
    group.throughput(Throughput::Elements(1));
    group.bench_function("floor_spsc_ring", |b| b.iter_custom(floor_spsc_ring));

    let q = Queue::<u64>::unbounded().expect("queue");
    group.bench_function("queue", |b| {
        b.iter_custom(|n| {
            let producer_q = q.clone();
            one_to_one(
                n,
                move |n| (0..n).all(|i| producer_q.put(i).is_ok()),
                |n| {
                    let sum = (0..n).fold(0u64, |s, _| s.wrapping_add(q.get_timeout(BOUND).expect("get")));
                    assert_eq!(sum, n.wrapping_mul(n.wrapping_sub(1)) / 2);
                },
            )
        })
    });

    let sq = SimpleQueue::<u64>::new().expect("simple queue");
    group.bench_function("simple_queue", |b| {
        b.iter_custom(|n| {
            let producer_q = sq.clone();
            one_to_one(
                n,
                move |n| (0..n).all(|i| producer_q.put(i).is_ok()),
                |n| {
                    let sum = (0..n).fold(0u64, |s, _| s.wrapping_add(sq.get().expect("get")));
                    assert_eq!(sum, n.wrapping_mul(n.wrapping_sub(1)) / 2);
                },
            )
        })
    });

    group.bench_function("pipe", |b| {
        b.iter_custom(|n| {
            let (rx, tx) = pipe::<u64>().expect("pipe");
            one_to_one(
                n,
                move |n| (0..n).all(|i| tx.send(&i).is_ok()),
                |n| {
                    let sum = (0..n).fold(0u64, |s, _| s.wrapping_add(rx.recv_timeout(BOUND).expect("recv")));
                    assert_eq!(sum, n.wrapping_mul(n.wrapping_sub(1)) / 2);
                },
            )
        })
    });
    group.finish();
}

/// Two producer children put `n` items between them, each followed by one stop mark
/// (`u64::MAX`); the parent and a consumer child get until each has seen a stop mark.
fn queue_2to2(q: &Queue<u64>, n: u64) -> Duration {
    const STOP: u64 = u64::MAX;
    let gate = Gate::with_parties(3);
    let halves = [n / 2, n - n / 2];
    let producers: Vec<_> = halves
        .iter()
        .map(|&count| {
            let q = q.clone();
            producer(&gate, move || (0..count).all(|i| q.put(i).is_ok()) && q.put(STOP).is_ok())
        })
        .collect();
    let drain = |q: &Queue<u64>| -> Option<u64> {
        let mut got = 0;
        loop {
            match q.get_timeout(BOUND) {
                Ok(STOP) => return Some(got),
                Ok(_) => got += 1,
                Err(_) => return None,
            }
        }
    };
    let consumer = {
        let (q, gate) = (q.clone(), gate.clone());
        Process::fork(
            move || {
                if !gate.arrive() {
                    return None;
                }
                let got = drain(&q);
                gate.finish();
                got
            },
            (),
        )
        .start()
        .expect("start")
    };
    let start = gate.open();
    let mine = drain(q).expect("the parent's get timed out");
    gate.wait_finished();
    let elapsed = start.elapsed();
    for p in producers {
        join_bounded(p);
    }
    let theirs = consumer.join_timeout(BOUND).expect("join").flatten().expect("the consumer child failed");
    assert_eq!(mine + theirs, n, "lost items");
    elapsed
}

fn small_2to2(c: &mut Criterion) {
    pin_if_asked();
    let mut group = c.benchmark_group(group_name("small_2to2"));
    configure(&mut group, 300, 1500);
    group.throughput(Throughput::Elements(1));
    let q = Queue::<u64>::unbounded().expect("queue");
    group.bench_function("queue", |b| b.iter_custom(|n| queue_2to2(&q, n)));
    group.finish();
}

/// `n` messages of `len` bytes through `q`.
fn queue_bytes(q: &Queue<Blob>, n: u64, len: usize) -> Duration {
    let producer_q = q.clone();
    one_to_one(
        n,
        move |n| {
            let message: Arc<Vec<u8>> = Arc::new((0..len).map(|i| i as u8).collect());
            (0..n).all(|_| producer_q.put(Blob(Arc::clone(&message))).is_ok())
        },
        |n| {
            for _ in 0..n {
                let blob = q.get_timeout(BOUND).expect("get");
                assert_eq!(blob.0.len(), len);
            }
        },
    )
}

/// `n` messages of `len` bytes through `q` as the user's own type `T` (a `Vec<u8>` or a
/// `ByteBuf`), which the producer clones for each `put` (a `put` takes its item by value).
fn queue_owned_bytes<T>(q: &Queue<T>, n: u64, len: usize) -> Duration
where
    T: Serialize + serde::de::DeserializeOwned + From<Vec<u8>> + AsRef<[u8]> + Clone + 'static,
{
    let producer_q = q.clone();
    one_to_one(
        n,
        move |n| {
            let message = T::from((0..len).map(|i| i as u8).collect());
            (0..n).all(|_| producer_q.put(message.clone()).is_ok())
        },
        |n| {
            for _ in 0..n {
                let got = q.get_timeout(BOUND).expect("get");
                assert_eq!(got.as_ref().len(), len);
            }
        },
    )
}

/// `n` messages of `len` bytes through a pipe, `send_bytes` → `recv_bytes_into`.
fn pipe_bytes(n: u64, len: usize) -> Duration {
    let (rx, tx): (Connection<()>, Connection<()>) = pipe().expect("pipe");
    let mut sink = vec![0u8; len];
    one_to_one(
        n,
        move |n| {
            let message: Vec<u8> = (0..len).map(|i| i as u8).collect();
            (0..n).all(|_| tx.send_bytes(&message).is_ok())
        },
        |n| {
            for _ in 0..n {
                assert!(rx.poll(BOUND).expect("poll"), "the pipe's producer stopped");
                assert_eq!(rx.recv_bytes_into(&mut sink).expect("recv"), len);
            }
        },
    )
}

/// `n` messages of `len` bytes through a pipe as typed messages: `send(&ByteBuf)` → `recv()`.
fn pipe_typed_bytes(n: u64, len: usize) -> Duration {
    let (rx, tx): (Connection<ByteBuf>, Connection<ByteBuf>) = pipe().expect("pipe");
    one_to_one(
        n,
        move |n| {
            let message = ByteBuf::from((0..len).map(|i| i as u8).collect::<Vec<u8>>());
            (0..n).all(|_| tx.send(&message).is_ok())
        },
        |n| {
            for _ in 0..n {
                assert!(rx.poll(BOUND).expect("poll"), "the pipe's producer stopped");
                assert_eq!(rx.recv().expect("recv").len(), len);
            }
        },
    )
}

fn bytes(c: &mut Criterion, name: &str, len: usize, with_big_slots: bool) {
    pin_if_asked();
    let mut group = c.benchmark_group(group_name(name));
    configure(&mut group, 300, 2000);
    group.throughput(Throughput::Bytes(len as u64));
    group.bench_function("floor_byte_ring", |b| b.iter_custom(|n| floor_byte_ring(n, len)));
    group.bench_function("floor_memcpy", |b| b.iter_custom(|n| floor_memcpy(n, len)));
    let q = Queue::<Blob>::new(4).expect("queue");
    group.bench_function("queue", |b| b.iter_custom(|n| queue_bytes(&q, n, len)));
    // What a user's own payload costs: a bare `Vec<u8>` (serde writes it element by element)
    // next to `multiproc::ByteBuf` (one copy), each cloned for every put.
    let q = Queue::<Vec<u8>>::new(4).expect("queue");
    group.bench_function("queue_vec", |b| b.iter_custom(|n| queue_owned_bytes(&q, n, len)));
    let q = Queue::<ByteBuf>::new(4).expect("queue");
    group.bench_function("queue_bytebuf", |b| b.iter_custom(|n| queue_owned_bytes(&q, n, len)));
    if with_big_slots {
        let q = Queue::<Blob>::builder().maxsize(4).slot_size(128 << 10).build().expect("queue");
        group.bench_function("queue_slot128k", |b| b.iter_custom(|n| queue_bytes(&q, n, len)));
    }
    group.bench_function("pipe", |b| b.iter_custom(|n| pipe_bytes(n, len)));
    group.bench_function("pipe_typed", |b| b.iter_custom(|n| pipe_typed_bytes(n, len)));
    group.finish();
}

fn bytes_64k(c: &mut Criterion) {
    bytes(c, "bytes_64k", 64 << 10, true);
}

fn bytes_4m(c: &mut Criterion) {
    bytes(c, "bytes_4m", 4 << 20, false);
}

/// The messages of one backlog round: 4000, or fewer where that would pass 256 MiB.
fn backlog_round(len: usize) -> u64 {
    (4000u64).min((256u64 << 20) / len as u64).max(1)
}

/// One of the queue kinds a backlog group compares.
#[derive(Clone)]
enum AnyQueue {
    Queue(Queue<Blob>),
    Simple(SimpleQueue<Blob>),
    Joinable(JoinableQueue<Blob>),
}

impl AnyQueue {
    fn put(&self, blob: Blob) -> bool {
        match self {
            AnyQueue::Queue(q) => q.put(blob).is_ok(),
            AnyQueue::Simple(q) => q.put(blob).is_ok(),
            AnyQueue::Joinable(q) => q.put(blob).is_ok(),
        }
    }

    fn get(&self) -> Blob {
        match self {
            AnyQueue::Queue(q) => q.get_timeout(BOUND).expect("get"),
            AnyQueue::Simple(q) => q.get().expect("get"),
            AnyQueue::Joinable(q) => {
                let blob = q.get_timeout(BOUND).expect("get");
                q.task_done().expect("task_done");
                blob
            }
        }
    }
}

/// When the consumer of a backlog round starts, and what is timed.
#[derive(Clone, Copy, PartialEq)]
enum Round {
    /// The parent gets while the child puts; timed from the gate until the parent has them all.
    KeepUp,
    /// The parent gets once the child has put them all; timed the same way.
    Backlog,
    /// As `Backlog`, timing only the parent's gets.
    Drain,
}

/// `n` messages of `len` bytes through `q` in rounds of [`backlog_round`] messages, each put by
/// a fresh child: the sum of the rounds' times.
fn queue_rounds(q: &AnyQueue, n: u64, len: usize, mode: Round) -> Duration {
    let round = backlog_round(len);
    let message: Arc<Vec<u8>> = Arc::new((0..len).map(|i| i as u8).collect());
    let mut total = Duration::ZERO;
    let mut left = n;
    while left > 0 {
        let count = left.min(round);
        left -= count;
        let gate = Gate::new();
        let (producer_q, message) = (q.clone(), Arc::clone(&message));
        let child = producer(&gate, move || (0..count).all(|_| producer_q.put(Blob(Arc::clone(&message)))));
        let mut start = gate.open();
        if mode != Round::KeepUp {
            gate.wait_finished();
        }
        if mode == Round::Drain {
            start = Instant::now();
        }
        for _ in 0..count {
            assert_eq!(q.get().0.len(), len);
        }
        total += start.elapsed();
        join_bounded(child);
    }
    total
}

fn backlog(c: &mut Criterion, name: &str, len: usize) {
    pin_if_asked();
    let mut group = c.benchmark_group(group_name(name));
    configure(&mut group, 300, 2000);
    group.throughput(Throughput::Bytes(len as u64));
    group.bench_function("floor_memcpy", |b| b.iter_custom(|n| floor_memcpy(n, len)));
    let round = u32::try_from(backlog_round(len)).expect("round");
    let kinds = [
        ("queue", AnyQueue::Queue(Queue::unbounded().expect("queue"))),
        ("bounded_queue", AnyQueue::Queue(Queue::new(round).expect("queue"))),
        ("simple_queue", AnyQueue::Simple(SimpleQueue::new().expect("queue"))),
        ("joinable_queue", AnyQueue::Joinable(JoinableQueue::new(0).expect("queue"))),
    ];
    for (kind, q) in &kinds {
        group.bench_function(*kind, |b| b.iter_custom(|n| queue_rounds(q, n, len, Round::KeepUp)));
        group.bench_function(format!("{kind}_backlog"), |b| {
            b.iter_custom(|n| queue_rounds(q, n, len, Round::Backlog))
        });
    }
    // The unbounded queue's backlog once more, timing only the gets: how fast a backlog drains.
    let q = &kinds[0].1;
    group.bench_function("queue_drain", |b| b.iter_custom(|n| queue_rounds(q, n, len, Round::Drain)));
    // The same backlog without a queue: what fresh mappings and cold caches cost by themselves.
    let floor = multiproc_benches::BacklogFloor::new(len, backlog_round(len));
    group.bench_function("floor_backlog", |b| b.iter_custom(|n| floor.run(n)));
    group.finish();
}

fn backlog_4k(c: &mut Criterion) {
    backlog(c, "backlog_4k", 4 << 10);
}

fn backlog_64k(c: &mut Criterion) {
    backlog(c, "backlog_64k", 64 << 10);
}

fn backlog_1m(c: &mut Criterion) {
    backlog(c, "backlog_1m", 1 << 20);
}

fn pingpong(c: &mut Criterion) {
    pin_if_asked();
    let mut group = c.benchmark_group(group_name("pingpong"));
    configure(&mut group, 300, 1500);
    #[cfg(target_os = "linux")]
    group.bench_function("floor_futex", |b| b.iter_custom(multiproc_benches::floor_futex_pingpong));
    group.bench_function("floor_socketpair", |b| b.iter_custom(floor_socketpair_pingpong));
    group.bench_function("floor_socketpair_polling", |b| {
        b.iter_custom(|n| floor_socketpair_pingpong_polling(n, Duration::from_micros(100)))
    });
    group.bench_function("queue", |b| b.iter_custom(multiproc_benches::pingpong::queue_pingpong));
    group.bench_function("pipe", |b| b.iter_custom(multiproc_benches::pingpong::pipe_pingpong));
    group.finish();
}

criterion_group!(
    benches,
    small_1to1,
    small_2to2,
    bytes_64k,
    bytes_4m,
    backlog_4k,
    backlog_64k,
    backlog_1m,
    pingpong
);
criterion_main!(benches);
