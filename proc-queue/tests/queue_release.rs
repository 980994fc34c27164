//! The rings of a grown unbounded queue are released once drained: their names leave
//! `/dev/shm` and this process unmaps them, while the queue goes on (and grows again), also
//! after a producer was killed in the middle of a burst.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proc_core::Process;
use proc_queue::{GetError, Queue, UNBOUNDED_INITIAL_CAPACITY};
use proc_sync::Event;
use test_support::{serial, shm_names, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

/// Messages that fill ring 0 and the rings 1 to 3 linked after it (each twice as large as the
/// one before), with some left over in ring 3.
const BURST: u64 = 9 * UNBOUNDED_INITIAL_CAPACITY as u64;

/// The later rings of unbounded queues among `names` (`mp_<chain>_<index>`), by chain and index.
fn rings(names: &BTreeSet<String>) -> BTreeMap<(String, u32), String> {
    names
        .iter()
        .filter_map(|name| {
            let (chain, idx) = name.strip_prefix("mp_")?.split_once('_')?;
            let idx = u32::from_str_radix(idx, 16).ok()?;
            (chain.len() == 16).then(|| ((chain.to_owned(), idx), name.clone()))
        })
        .collect()
}

/// The `mp_*` segments this process maps (Linux): what it has not unmapped.
fn mapped_here() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once("/dev/shm/").map(|(_, n)| n.trim_end_matches(" (deleted)").to_owned()))
        .filter(|n| n.starts_with("mp_"))
        .collect()
}

/// The later rings of this test's queue now: those that came since `before`, by index.
fn new_rings(before: &BTreeSet<String>) -> BTreeMap<u32, String> {
    let now: BTreeSet<String> = shm_names().difference(before).cloned().collect();
    rings(&now).into_iter().map(|((_, idx), name)| (idx, name)).collect()
}

fn put_range(q: Queue<u64>, from: u64, n: u64) {
    for i in from..from + n {
        q.put(i).unwrap();
    }
}

/// Puts 0, 1, 2, ... until killed, saying once `announce` messages are in.
fn put_forever(q: Queue<u64>, announce: u64, said: Event) {
    for i in 0.. {
        q.put(i).unwrap();
        if i + 1 == announce {
            said.set();
        }
    }
}

/// Takes what the queue holds now, checking it is `from`, `from + 1`, ...; how many it took.
fn drain_in_order(q: &Queue<u64>, from: u64) -> u64 {
    let mut next = from;
    loop {
        match q.get_nowait() {
            Ok(i) => {
                assert_eq!(i, next, "in order, none lost or twice");
                next += 1;
            }
            Err(GetError::Empty) => return next - from,
            Err(e) => panic!("{e}"),
        }
    }
}

/// After a drain: of the queue's rings only the last, which it reads and writes, is left in
/// `/dev/shm`, and this process maps none of those it left behind (Linux).
fn only_the_last_ring_is_left(before: &BTreeSet<String>, grown: &BTreeMap<u32, String>) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let left = new_rings(before);
    let last = grown.keys().max().copied().unwrap();
    assert_eq!(left.keys().copied().collect::<Vec<_>>(), [last], "the drained rings are unlinked: {left:?}");
    let mapped = mapped_here();
    for (idx, name) in grown.iter().filter(|(idx, _)| **idx < last) {
        assert!(!mapped.contains(name), "ring {idx} ({name}) is still mapped here");
    }
}

#[test]
fn drained_rings_are_released_and_the_queue_goes_on() {
    let _s = serial();
    let _w = Watchdog::new("drained_rings_are_released_and_the_queue_goes_on", LIMIT);
    let before = shm_names();
    let q = Queue::<u64>::unbounded().unwrap();
    // A child grows the queue across several rings, with no one reading.
    let p = Process::new(put_range, (q.clone(), 0, BURST)).start().unwrap();
    p.join().unwrap();
    let grown = new_rings(&before);
    if cfg!(target_os = "linux") {
        assert_eq!(grown.keys().copied().collect::<Vec<_>>(), [1, 2, 3], "{grown:?}");
    }
    assert_eq!(drain_in_order(&q, 0), BURST);
    only_the_last_ring_is_left(&before, &grown);
    // The queue goes on in its last ring, and grows again past it (here, in this process).
    put_range(q.clone(), BURST, 10);
    assert_eq!(drain_in_order(&q, BURST), 10);
    let more = 2 * BURST;
    put_range(q.clone(), BURST + 10, more);
    let regrown = new_rings(&before);
    if cfg!(target_os = "linux") {
        assert_eq!(regrown.keys().copied().collect::<Vec<_>>(), [3, 4], "{regrown:?}");
    }
    assert_eq!(drain_in_order(&q, BURST + 10), more);
    only_the_last_ring_is_left(&before, &regrown);
    drop(q);
    assert_eq!(shm_names(), before, "the last ring went with the queue");
}

#[test]
fn rings_are_released_after_a_producer_killed_mid_burst() {
    let _s = serial();
    let _w = Watchdog::new("rings_are_released_after_a_producer_killed_mid_burst", LIMIT);
    let before = shm_names();
    let q = Queue::<u64>::unbounded().unwrap();
    let said = Event::new().unwrap();
    let p = Process::new(put_forever, (q.clone(), BURST, said.clone())).start().unwrap();
    // Killed in the middle of a burst that has grown the queue past ring 3.
    said.wait();
    p.kill().unwrap();
    let _ = p.join();
    let grown = new_rings(&before);
    let took = drain_in_order(&q, 0);
    // Every message the producer put before it was killed, in order (the one it was putting, if
    // any, is dropped).
    assert!(took >= BURST, "{took} of at least {BURST}");
    let last = grown.keys().max().copied().unwrap_or(0);
    if cfg!(target_os = "linux") {
        assert!(last >= 3, "{grown:?}");
    }
    only_the_last_ring_is_left(&before, &grown);
    // The queue goes on, and grows again.
    let more = 2 * BURST;
    put_range(q.clone(), took, more);
    assert_eq!(drain_in_order(&q, took), more);
    let regrown = new_rings(&before);
    if cfg!(target_os = "linux") {
        assert!(regrown.keys().all(|idx| *idx > last), "{regrown:?} after {grown:?}");
    }
    only_the_last_ring_is_left(&before, &regrown);
    // The killed producer never dropped its handle: clean up now rather than at the program's end.
    q.unlink_segments();
    drop(q);
    assert_eq!(shm_names(), before);
}

/// A process that receives the queue after rings were released: it has mapped none, and reads
/// from ring 0 on. Takes one message and puts one.
fn late_consumer(q: Queue<u64>, put: u64) -> u64 {
    let got = q.get_nowait().unwrap();
    q.put(put).unwrap();
    got
}

#[test]
fn a_process_that_never_mapped_a_released_ring_goes_past_it() {
    let _s = serial();
    let _w = Watchdog::new("a_process_that_never_mapped_a_released_ring_goes_past_it", LIMIT);
    let before = shm_names();
    let q = Queue::<u64>::unbounded().unwrap();
    put_range(q.clone(), 0, BURST);
    let grown = new_rings(&before);
    assert_eq!(drain_in_order(&q, 0), BURST);
    only_the_last_ring_is_left(&before, &grown);
    q.put(BURST).unwrap();
    // Rings 1 and 2 are gone: it goes on at ring 3, for reading and for writing.
    let p = Process::new(late_consumer, (q.clone(), BURST + 1)).start().unwrap();
    assert_eq!(p.join().unwrap(), BURST);
    assert_eq!(q.get_nowait().unwrap(), BURST + 1);
    assert!(q.empty());
    drop(q);
    assert_eq!(shm_names(), before);
}
