//! Model checks of the ring protocol (`ring`): loom runs the real claim → write → commit and
//! claim → take → release code, and the repairs of a dead writer's and a dead reader's slot, on a
//! heap copy of a ring (see `crate::loom`), through every interleaving of a few model processes
//! (threads) within a preemption bound and, for a process that dies, at every one of its steps.
//!
//! Run them with (about 3 minutes on two cores)
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p proc-queue --release --lib queue::model
//! ```
//!
//! (`LOOM_MAX_PREEMPTIONS` overrides the bounds set here; `MODEL_TRACE=1` with `--nocapture`
//! prints the time each death step took.)
//!
//! A put here is the ring part of `Queue::put`: `claim_write` with the repair of dead readers,
//! the message written into the slot, `commit`; a get is `claim_read` with the repair of dead
//! writers, skipping voids, then `take`. Where the real calls would wait, a model process yields
//! and tries once more, then gives up: unbounded spin loops make loom's search explode. The
//! unbounded models go through `Queue::put_nowait` and `get_nowait` (the chain's growth, its seal,
//! readers moving on, the release of drained rings). A released ring's memory stays on the heap
//! (each process' mapping of a ring is its own, as in the system); the model's oracle is the flag
//! the unlink sets (`Heap::released`), outside the model: `commit` asserts that no message is
//! committed into a released ring, and opening a released ring's name fails. Not modelled: the
//! blocking loops and their clocks (`wake`), spilled messages, the task count of a
//! `JoinableQueue`, `shutdown`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};

use loom::thread;
use serde::{Deserialize, Serialize};

use super::handle::Queue;
use super::layout::Mem;
use super::ring::Ring;
use crate::loom::{mark_dead, set_budget, set_pid, Killed};

/// A message: its producer, its number, and a check word that a torn message would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Msg {
    from: u32,
    seq: u32,
    check: u64,
}

impl Msg {
    fn new(from: u32, seq: u32) -> Self {
        Msg { from, seq, check: check(from, seq) }
    }
}

fn check(from: u32, seq: u32) -> u64 {
    (u64::from(from) << 32 | u64::from(seq)).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555_5555_5555_5555
}

fn ring(capacity: u32) -> Arc<Ring> {
    Arc::new(Ring::new(capacity, 0, 1 << 10, None).expect("a model ring"))
}

/// One try at a put: `false` if the ring is full.
fn try_put(ring: &Ring, msg: Msg) -> bool {
    let Some(claim) = ring.claim_write(true) else { return false };
    let data = ring.slot_data(&claim);
    // SAFETY: the slot is claimed by this model process: no one else touches its bytes.
    let buf = unsafe { std::slice::from_raw_parts_mut(data, ring.slot_size) };
    let len = proc_core::codec::to_slice(&msg, buf).expect("a message fits a slot").len();
    ring.commit(claim, len as u64, false);
    true
}

/// A put that tries `TRIES` times, yielding in between; whether it put.
///
/// The model processes never wait without bound: a spin loop multiplies what loom explores.
fn put(ring: &Ring, msg: Msg) -> bool {
    (0..TRIES).any(|i| {
        if i > 0 {
            thread::yield_now();
        }
        try_put(ring, msg)
    })
}

/// How many times a model process tries a put or a get before it gives up.
const TRIES: usize = 2;

/// One try at a get: the next message, skipping voids; `None` if the ring is empty (or its next
/// slot is being written by a live process).
fn try_get(ring: &Ring) -> Option<Msg> {
    loop {
        let (claim, void) = ring.claim_read(true).ok()?;
        if void {
            ring.release(claim);
            continue;
        }
        let msg = ring
            .take(ring, claim, &mut |bytes| proc_core::codec::from_bytes::<Msg>(bytes))
            .expect("a slot message")
            .expect("a message decodes (not torn)");
        assert_eq!(msg.check, check(msg.from, msg.seq), "a torn message: {msg:?}");
        return Some(msg);
    }
}

/// A get that tries `TRIES` times, yielding in between.
fn get(ring: &Ring) -> Option<Msg> {
    (0..TRIES).find_map(|i| {
        if i > 0 {
            thread::yield_now();
        }
        try_get(ring)
    })
}

/// Everything left in the ring, once every model process is over.
fn drain(ring: &Ring) -> Vec<Msg> {
    std::iter::from_fn(|| try_get(ring)).collect()
}

/// Runs `body` as model process `pid`, killed before its `budget`-th step on shared memory if
/// it gets that far (`None`: never): then marked dead, as the kernel would have it. Whether it
/// was killed.
fn process(pid: u32, budget: Option<u32>, body: impl FnOnce()) -> bool {
    set_pid(pid);
    if let Some(steps) = budget {
        set_budget(steps);
    }
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(()) => false,
        Err(payload) if payload.is::<Killed>() => {
            mark_dead();
            true
        }
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// The preemption bound of the models (loom's default is none): an interleaving may switch
/// threads this many times where the running one could go on. `LOOM_MAX_PREEMPTIONS` overrides it.
const PREEMPTIONS: usize = 2;

/// Explores every execution of `model` with at most `preemptions` preemptions.
fn explore(preemptions: usize, model: impl Fn() + Send + Sync + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    builder.check(model);
}

/// Keeps the panics that kill model processes out of the test's output.
fn quiet_kills() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Killed>() {
                default(info);
            }
        }));
    });
}

/// Runs `model` (given the step budget of its mortal process) for every budget from 0 up to the
/// first that no execution spends: the process dies at each of its steps in turn, then lives.
fn at_every_step(preemptions: usize, model: impl Fn(u32, Arc<AtomicBool>) + Send + Sync + Clone + 'static) {
    quiet_kills();
    for budget in 0.. {
        let killed = Arc::new(AtomicBool::new(false));
        let (model, k) = (model.clone(), Arc::clone(&killed));
        let t = std::time::Instant::now();
        explore(preemptions, move || model(budget, Arc::clone(&k)));
        if std::env::var_os("MODEL_TRACE").is_some() {
            eprintln!("killed after {budget} steps: {:?}", t.elapsed());
        }
        if !killed.load(Ordering::Relaxed) {
            break;
        }
    }
}

/// Every message put delivered exactly once, untorn, in each producer's order: producers and a
/// consumer on rings of one and two slots, laps included. (A put or get that finds the ring full
/// or empty twice gives up; what the consumer leaves is drained at the end.)
#[test]
fn two_producers_one_consumer() {
    // (producers, messages each, capacity, preemptions): two producers of two messages each
    // explode past a preemption bound of one.
    for (producers, msgs, capacity, preemptions) in [(2, 1, 1, 2), (2, 1, 2, 2), (1, 3, 1, 2), (2, 2, 1, 1)] {
        explore(preemptions, move || {
            let ring = ring(capacity);
            let threads: Vec<_> = (2..2 + producers)
                .map(|pid| {
                    let ring = Arc::clone(&ring);
                    thread::spawn(move || {
                        let mut sent = Vec::new();
                        process(pid, None, || {
                            for seq in 0..msgs {
                                if put(&ring, Msg::new(pid, seq)) {
                                    sent.push(seq);
                                }
                            }
                        });
                        sent
                    })
                })
                .collect();
            let mut got: Vec<Msg> = (0..producers * msgs).filter_map(|_| get(&ring)).collect();
            let sent: Vec<Vec<u32>> = threads.into_iter().map(|t| t.join().expect("a producer")).collect();
            got.extend(drain(&ring));
            assert_eq!(got.len(), sent.iter().map(Vec::len).sum::<usize>(), "only what was put: {got:?}");
            for (pid, sent) in (2..).zip(sent) {
                let theirs: Vec<u32> = got.iter().filter(|m| m.from == pid).map(|m| m.seq).collect();
                assert_eq!(theirs, sent, "producer {pid}'s messages, once each and in order: {got:?}");
            }
        });
    }
}

/// A producer killed at any step: every message of the other producer that was put is delivered
/// exactly once; of the dead one's, every put that returned, and at most the one in flight, each
/// once, untorn, in order; the queue goes on (every slot, a voided one included, carries a message
/// again).
#[test]
fn a_producer_dies_at_any_step() {
    // (capacity, the mortal producer's messages, the consumer's gets while they run)
    for (capacity, msgs, gets) in [(1, 2, 1), (2, 1, 2)] {
        at_every_step(PREEMPTIONS, move |budget, killed| {
            let ring = ring(capacity);
            let mortal = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    let mut returned = Vec::new();
                    let died = process(2, Some(budget), || {
                        for seq in 0..msgs {
                            if put(&ring, Msg::new(2, seq)) {
                                returned.push(seq);
                            }
                        }
                    });
                    (died, returned)
                })
            };
            let other = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    let mut sent = Vec::new();
                    process(3, None, || {
                        if put(&ring, Msg::new(3, 0)) {
                            sent.push(0);
                        }
                    });
                    sent
                })
            };
            let mut got: Vec<Msg> = (0..gets).filter_map(|_| get(&ring)).collect();
            let (died, returned) = mortal.join().expect("the mortal producer");
            let sent = other.join().expect("the other producer");
            got.extend(drain(&ring));
            if died {
                killed.store(true, Ordering::Relaxed);
            }
            let theirs: Vec<u32> = got.iter().filter(|m| m.from == 3).map(|m| m.seq).collect();
            assert_eq!(theirs, sent, "the live producer's messages, once each: {got:?}");
            let dead: Vec<u32> = got.iter().filter(|m| m.from == 2).map(|m| m.seq).collect();
            assert_eq!(got.len(), theirs.len() + dead.len(), "no other message: {got:?}");
            assert!(dead.windows(2).all(|w| w[0] < w[1]), "the dead one's in order, once each: {got:?}");
            let extra = dead.iter().filter(|seq| !returned.contains(seq)).count();
            assert!(
                returned.iter().all(|seq| dead.contains(seq)) && extra <= usize::from(died),
                "none lost but the one in flight, no other added: {returned:?} returned, {got:?}"
            );
            for seq in 0..=capacity {
                let msg = Msg::new(1, seq);
                assert!(try_put(&ring, msg), "the queue goes on: room for {msg:?}");
                assert_eq!(try_get(&ring), Some(msg), "the queue goes on");
            }
        });
    }
}

/// A consumer killed at any step of a get, beside a live consumer and a producer, the ring full
/// at the start: every message is delivered exactly once but for at most one, and that one only
/// if the consumer died (the message it had claimed); the producer gets the dead reader's slot;
/// the queue goes on.
#[test]
fn a_consumer_dies_at_any_step() {
    for capacity in [1, 2] {
        at_every_step(PREEMPTIONS, move |budget, killed| {
            let ring = ring(capacity);
            for seq in 0..capacity {
                assert!(try_put(&ring, Msg::new(1, seq)));
            }
            let reader = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    let mut got = None;
                    let died = process(2, Some(budget), || got = get(&ring));
                    (died, got)
                })
            };
            let writer = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    let mut put_it = false;
                    process(3, None, || put_it = put(&ring, Msg::new(3, 0)));
                    put_it
                })
            };
            let mut got: Vec<Msg> = get(&ring).into_iter().collect();
            let (died, read) = reader.join().expect("the reader");
            let put_it = writer.join().expect("the writer");
            if died {
                killed.store(true, Ordering::Relaxed);
            }
            got.extend(read);
            got.extend(drain(&ring));
            if !put_it {
                // The ring was full when the writer looked: there is room now.
                assert!(try_put(&ring, Msg::new(3, 0)), "room for the writer's message: {got:?}");
                got.extend(drain(&ring));
            }
            let mut all: Vec<Msg> = (0..capacity).map(|seq| Msg::new(1, seq)).collect();
            all.push(Msg::new(3, 0));
            let once = all.iter().all(|m| got.iter().filter(|&g| g == m).count() <= 1);
            let lost = all.iter().filter(|m| !got.contains(m)).count();
            assert!(once && got.len() + lost == all.len(), "each message at most once, no other: {got:?}");
            assert!(lost == 0 || (died && lost == 1), "only the dead reader's message lost: {got:?}");
            for seq in 0..=capacity {
                let msg = Msg::new(1, 10 + seq);
                assert!(try_put(&ring, msg), "the queue goes on: room for {msg:?}");
                assert_eq!(try_get(&ring), Some(msg), "the queue goes on");
            }
        });
    }
}

/// Handles on a model ring 0 for the processes of a model: each has its own (its own reading and
/// writing ring, and mapped chain).
fn handles(ring: Ring, n: usize) -> Vec<Queue<Msg>> {
    let Mem::Heap(heap) = &*ring.seg else { unreachable!("a model ring is on the heap") };
    let mut all: Vec<Queue<Msg>> = (1..n)
        .map(|_| {
            let bell = ring.bell_dup().expect("a doorbell");
            Queue::from_ring(Ring::attach(Mem::Heap(Arc::clone(heap)), bell, None).expect("attached"))
        })
        .collect();
    all.insert(0, Queue::from_ring(ring));
    all
}

/// Model process 2, killed before its `budget`-th step: two puts on an unbounded queue. Whether
/// it was killed, and the sequence numbers of the puts that returned.
fn mortal_producer(mortal: Queue<Msg>, budget: u32) -> thread::JoinHandle<(bool, Vec<u32>)> {
    thread::spawn(move || {
        let mut returned = Vec::new();
        let died = process(2, Some(budget), || {
            for seq in 0..2 {
                mortal.put_nowait(Msg::new(2, seq)).expect("an unbounded queue takes every put");
                returned.push(seq);
            }
        });
        (died, returned)
    })
}

/// A ring 0 of one slot for an unbounded queue.
fn unbounded() -> Ring {
    let ring = Ring::new(1, 0, 1 << 10, None).expect("a model ring");
    ring.header().unbounded.store(1, std::sync::atomic::Ordering::Relaxed);
    ring
}

/// An unbounded queue grows under a producer and a consumer, each a process with its own handle
/// (its own reading and writing ring): ring 0 of one slot fills, the producer links a ring of two,
/// seals ring 0 and goes on there; the consumer drains ring 0 and moves on. Every message is
/// delivered exactly once, untorn, in order, across the rings. This one goes through the public
/// `put_nowait` and `get_nowait` of `Queue` (their zero timeouts never read a clock twice).
#[test]
fn an_unbounded_queue_grows_its_chain() {
    static GREW: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    explore(PREEMPTIONS, || {
        let mut handles = handles(unbounded(), 3);
        let (consumer, producer, main) =
            (handles.pop().expect("3"), handles.pop().expect("2"), handles.pop().expect("1"));
        let producer = thread::spawn(move || {
            process(2, None, || {
                for seq in 0..3 {
                    producer.put_nowait(Msg::new(2, seq)).expect("an unbounded queue takes every put");
                }
            })
        });
        let consumer = thread::spawn(move || {
            let mut got = Vec::new();
            process(3, None, || {
                for i in 0..3 {
                    if i > 0 {
                        thread::yield_now();
                    }
                    got.extend(consumer.get_nowait().ok());
                }
            });
            got
        });
        producer.join().expect("the producer");
        let mut got = consumer.join().expect("the consumer");
        got.extend(std::iter::from_fn(|| main.get_nowait().ok()));
        let seqs: Vec<u32> = got.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [0, 1, 2], "every message once, in order: {got:?}");
        assert!(got.iter().all(|m| m.from == 2 && m.check == check(m.from, m.seq)), "untorn: {got:?}");
        if matches!(main.ring.ring_at(1), Ok(super::chain::At::Ring(_))) {
            GREW.fetch_add(1, Ordering::Relaxed);
        }
    });
    assert!(GREW.load(Ordering::Relaxed) > 0, "the chain grew in some executions");
}

/// A producer of an unbounded queue killed at any step, growing the chain or not, beside a live
/// producer: the live one's messages are delivered exactly once, in order; of the dead one's,
/// every put that returned and at most the one in flight; a link left half made by the dead one
/// (`LINKING | pid`) is taken over; the queue goes on.
#[test]
fn an_unbounded_producer_dies_at_any_step() {
    at_every_step(PREEMPTIONS, |budget, killed| {
        let mut handles = handles(unbounded(), 3);
        let (other, mortal, main) =
            (handles.pop().expect("3"), handles.pop().expect("2"), handles.pop().expect("1"));
        let mortal = mortal_producer(mortal, budget);
        let other = thread::spawn(move || {
            process(3, None, || {
                other.put_nowait(Msg::new(3, 0)).expect("an unbounded queue takes every put")
            });
        });
        let (died, returned) = mortal.join().expect("the mortal producer");
        other.join().expect("the other producer");
        if died {
            killed.store(true, Ordering::Relaxed);
        }
        let mut got: Vec<Msg> = std::iter::from_fn(|| main.get_nowait().ok()).collect();
        assert_eq!(
            got.iter().filter(|m| m.from == 3).count(),
            1,
            "the live producer's message, once: {got:?}"
        );
        let dead: Vec<u32> = got.iter().filter(|m| m.from == 2).map(|m| m.seq).collect();
        assert_eq!(got.len(), 1 + dead.len(), "no other message: {got:?}");
        assert!(dead.windows(2).all(|w| w[0] < w[1]), "the dead one's in order, once each: {got:?}");
        let extra = dead.iter().filter(|seq| !returned.contains(seq)).count();
        assert!(
            returned.iter().all(|seq| dead.contains(seq)) && extra <= usize::from(died),
            "none lost but the one in flight: {returned:?} returned, {got:?}"
        );
        got.clear();
        for seq in 0..3 {
            main.put_nowait(Msg::new(1, seq)).expect("the queue goes on");
        }
        got.extend(std::iter::from_fn(|| main.get_nowait().ok()));
        assert_eq!(got, (0..3).map(|seq| Msg::new(1, seq)).collect::<Vec<_>>(), "the queue goes on");
    });
}

/// A drained ring of an unbounded queue is released while a producer that grows the queue past
/// it is killed at any step. Ring 0 of one slot and ring 1 of two hold three messages put before
/// (ring 1 is full); the mortal producer puts two more, linking ring 2 and sealing ring 1 on the
/// way; a consumer takes four, moving past ring 1 (and releasing it) once it is drained. Every
/// message put is delivered exactly once but for the dead one's in flight, in order; no message
/// is committed into a released ring (`commit` asserts it); a process whose rings were released
/// meanwhile goes on past them; and once everything is drained every ring behind the reading
/// one is released, also after the queue grew again.
#[test]
fn a_drained_ring_is_released_under_a_dying_producer() {
    static RELEASED_MEANWHILE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    at_every_step(PREEMPTIONS, |budget, killed| {
        let mut handles = handles(unbounded(), 3);
        let (consumer, mortal, main) =
            (handles.pop().expect("3"), handles.pop().expect("2"), handles.pop().expect("1"));
        for seq in 0..3 {
            main.put_nowait(Msg::new(1, seq)).expect("an unbounded queue takes every put");
        }
        let mortal = mortal_producer(mortal, budget);
        let consumer = thread::spawn(move || {
            let mut got = Vec::new();
            process(3, None, || {
                for i in 0..4 {
                    if i > 0 {
                        thread::yield_now();
                    }
                    got.extend(consumer.get_nowait().ok());
                }
            });
            got
        });
        let (died, returned) = mortal.join().expect("the mortal producer");
        let mut got = consumer.join().expect("the consumer");
        if died {
            killed.store(true, Ordering::Relaxed);
        }
        if main.ring.freed() > 0 {
            RELEASED_MEANWHILE.fetch_add(1, Ordering::Relaxed);
        }
        got.extend(std::iter::from_fn(|| main.get_nowait().ok()));
        let mine: Vec<u32> = got.iter().filter(|m| m.from == 1).map(|m| m.seq).collect();
        assert_eq!(mine, [0, 1, 2], "the first three, once each, in order: {got:?}");
        let dead: Vec<u32> = got.iter().filter(|m| m.from == 2).map(|m| m.seq).collect();
        assert_eq!(got.len(), 3 + dead.len(), "no other message: {got:?}");
        assert!(got.iter().all(|m| m.check == check(m.from, m.seq)), "untorn: {got:?}");
        assert!(dead.windows(2).all(|w| w[0] < w[1]), "the dead one's in order, once each: {got:?}");
        let extra = dead.iter().filter(|seq| !returned.contains(seq)).count();
        assert!(
            returned.iter().all(|seq| dead.contains(seq)) && extra <= usize::from(died),
            "none lost but the one in flight: {returned:?} returned, {got:?}"
        );
        let behind = |q: &Queue<Msg>| {
            let read_at = q.ring.read_at.load(Ordering::Relaxed);
            (read_at, q.ring.freed())
        };
        let (read_at, freed) = behind(&main);
        assert!(read_at >= 1 && freed + 1 == read_at, "the rings behind ring {read_at} released: {freed}");
        // The queue goes on, growing again past the ring it reads.
        for seq in 3..9 {
            main.put_nowait(Msg::new(1, seq)).expect("the queue goes on");
        }
        let again: Vec<Msg> = std::iter::from_fn(|| main.get_nowait().ok()).collect();
        assert_eq!(again, (3..9).map(|seq| Msg::new(1, seq)).collect::<Vec<_>>(), "the queue goes on");
        let (read_at, freed) = behind(&main);
        assert!(freed + 1 == read_at, "the rings behind ring {read_at} released again: {freed}");
    });
    assert!(
        RELEASED_MEANWHILE.load(Ordering::Relaxed) > 0,
        "the consumer released a ring in some executions"
    );
}

/// A producer late on a ring races the ring's release, killed at any step: it put into ring 1
/// before, and puts once more while a live producer fills ring 1, links ring 2 and seals ring 1,
/// and a consumer drains ring 1 and releases it. Its claim either came before the seal (its
/// message is read before the ring is released) or after (it voids the slot and goes on in ring
/// 2): no message is committed into a released ring (`commit` asserts it), none is lost but the
/// dead one's in flight, none comes twice, and each producer's come in order.
#[test]
fn a_late_producer_races_the_release_of_its_ring() {
    at_every_step(1, |budget, killed| {
        let mut handles = handles(unbounded(), 4);
        let (consumer, live, mortal, main) = (
            handles.pop().expect("4"),
            handles.pop().expect("3"),
            handles.pop().expect("2"),
            handles.pop().expect("1"),
        );
        main.put_nowait(Msg::new(1, 0)).expect("an unbounded queue takes every put");
        // The mortal producer's own handle links ring 1 and writes there (as process 1, before
        // the model's processes start).
        mortal.put_nowait(Msg::new(1, 1)).expect("an unbounded queue takes every put");
        let mortal = thread::spawn(move || {
            let mut returned = false;
            let died = process(2, Some(budget), || {
                mortal.put_nowait(Msg::new(2, 0)).expect("an unbounded queue takes every put");
                returned = true;
            });
            (died, returned)
        });
        let live = thread::spawn(move || {
            process(3, None, || {
                for seq in 0..2 {
                    live.put_nowait(Msg::new(3, seq)).expect("an unbounded queue takes every put");
                }
            });
        });
        let consumer = thread::spawn(move || {
            let mut got = Vec::new();
            // No yield between the gets: one preemption lets the consumer drain ring 1 and move
            // past it between the mortal producer's look at the seal and its claim.
            process(4, None, || got.extend((0..4).filter_map(|_| consumer.get_nowait().ok())));
            got
        });
        let (died, returned) = mortal.join().expect("the mortal producer");
        live.join().expect("the live producer");
        let mut got = consumer.join().expect("the consumer");
        if died {
            killed.store(true, Ordering::Relaxed);
        }
        got.extend(std::iter::from_fn(|| main.get_nowait().ok()));
        let seqs = |from| got.iter().filter(|m| m.from == from).map(|m| m.seq).collect::<Vec<_>>();
        assert_eq!(seqs(1), [0, 1], "the first two, once each, in order: {got:?}");
        assert_eq!(seqs(3), [0, 1], "the live producer's, once each, in order: {got:?}");
        let dead = seqs(2);
        assert!(dead.len() <= 1 && got.len() == 4 + dead.len(), "no other message: {got:?}");
        assert!(!returned || dead == [0], "a put that returned is delivered: {got:?}");
        assert!(returned || died || dead.is_empty(), "{got:?}");
        let read_at = main.ring.read_at.load(Ordering::Relaxed);
        assert!(main.ring.freed() + 1 == read_at, "the rings behind ring {read_at} released");
    });
}
