//! Small primitives share arenas (issue 18, item 5): a process under a 256-descriptor limit (macOS's
//! default) holds 10,000 locks, passes hundreds of them to a child in one start, and gets its
//! descriptors and mappings back when it drops them; a child made by `fork` never carves its
//! parent's slots.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proc_core::{get_all_start_methods, get_context, Process, StartMethod};
use proc_sync::{Event, Lock, RawValue};
use test_support::{serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

/// The descriptors this process holds (plus the one that reads the directory).
fn open_fds() -> usize {
    std::fs::read_dir("/dev/fd").unwrap().count()
}

/// The lines of this process' memory map (one per mapping), where `/proc` has it.
fn mappings() -> Option<usize> {
    std::fs::read_to_string("/proc/self/maps").ok().map(|m| m.lines().count())
}

/// Lowers this process' soft descriptor limit to 256.
fn limit_descriptors_to_256() {
    let mut limit = std::mem::MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: getrlimit writes a full rlimit into `limit`, a valid out-parameter.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, limit.as_mut_ptr()) }, 0);
    // SAFETY: initialized by the successful call above.
    let mut limit = unsafe { limit.assume_init() };
    limit.rlim_cur = 256;
    // SAFETY: setrlimit reads `limit`, a live rlimit; it changes only this process' limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

const LOCKS: usize = 10_000;
/// Every `STRIDE`-th lock goes to the grandchild: 304 of them, from every arena.
const STRIDE: usize = 33;

/// Takes every lock, says so, holds them until `go`, and returns how many descriptors it held
/// meanwhile.
fn hold_all(locks: Vec<Lock>, held: Event, go: Event) -> usize {
    let guards: Vec<_> = locks.iter().map(|l| l.acquire().unwrap()).collect();
    let fds = open_fds();
    held.set();
    go.wait();
    drop(guards);
    fds
}

/// What [`many_locks`] saw.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Seen {
    /// Descriptors more than before, holding 10,000 locks.
    fds_for_locks: usize,
    /// Descriptors the grandchild held while it held its share of the locks.
    grandchild_fds: usize,
    /// Descriptors given back when the locks were dropped.
    given_back: usize,
    /// Descriptors more than after that, once another 10,000 locks were made and dropped.
    growth_after_another_round: isize,
}

/// Under a 256-descriptor limit: makes 10,000 locks and uses each, has a grandchild take every
/// 33rd (checking that exactly those are held, and free again afterwards), then drops them all,
/// twice.
fn many_locks() -> Seen {
    limit_descriptors_to_256();
    let (held, go) = (Event::new().unwrap(), Event::new().unwrap());
    let base = open_fds();
    let locks: Vec<Lock> = (0..LOCKS).map(|_| Lock::new().unwrap()).collect();
    for lock in &locks {
        drop(lock.try_acquire().unwrap().unwrap());
    }
    let fds_for_locks = open_fds() - base;
    let share: Vec<Lock> = locks.iter().step_by(STRIDE).cloned().collect();
    let p = Process::new(hold_all, (share, held.clone(), go.clone())).start().unwrap();
    // Bounded: a grandchild that could not take the locks (or decode them) ends without `held`.
    while !held.wait_timeout(Duration::from_millis(100)) {
        assert!(p.is_alive(), "the grandchild ended before it held the locks");
    }
    let locked: Vec<bool> = locks.iter().map(Lock::locked).collect();
    go.set();
    let grandchild_fds = p.join().unwrap();
    for (i, locked) in locked.into_iter().enumerate() {
        assert_eq!(locked, i % STRIDE == 0, "lock {i}");
    }
    assert!(locks.iter().all(|l| !l.locked()));
    // Starting a child may have opened descriptors of its own (a fork server's socket, say).
    let with_locks = open_fds();
    drop(locks);
    let after = open_fds();
    let again: Vec<Lock> = (0..LOCKS).map(|_| Lock::new().unwrap()).collect();
    drop(again);
    let growth_after_another_round = open_fds() as isize - after as isize;
    Seen { fds_for_locks, grandchild_fds, given_back: with_locks - after, growth_after_another_round }
}

#[test]
fn ten_thousand_locks_under_a_256_descriptor_limit() {
    let _s = serial();
    let _w = Watchdog::new("ten_thousand_locks_under_a_256_descriptor_limit", LIMIT);
    for m in get_all_start_methods() {
        let seen: Seen = get_context(m).process(many_locks, ()).start().unwrap().join().unwrap();
        // 1023 slots of 64 bytes per 64 KiB arena: ten arenas (eleven with the one in use before).
        assert!(seen.fds_for_locks <= LOCKS / 1023 + 1, "{m}: {seen:?}");
        // The grandchild maps each arena once (not 304 times), under the limit it inherited.
        assert!(seen.grandchild_fds < 64, "{m}: {seen:?}");
        // Dropped: every arena but the current one is unmapped, each time.
        assert!(seen.given_back + 1 >= seen.fds_for_locks, "{m}: {seen:?}");
        assert_eq!(seen.growth_after_another_round, 0, "{m}: {seen:?}");
    }
}

/// Descriptors and mappings given back when `locks` (received in one start) are dropped.
fn drop_received(locks: Vec<Lock>) -> (usize, Option<usize>) {
    assert!(locks.iter().all(|l| !l.locked()));
    let (fds, maps) = (open_fds(), mappings());
    drop(locks);
    (fds - open_fds(), maps.zip(mappings()).map(|(before, after)| before - after))
}

#[test]
fn an_arena_is_unmapped_once_every_region_in_it_is_dropped() {
    let _s = serial();
    let _w = Watchdog::new("an_arena_is_unmapped_once_every_region_in_it_is_dropped", LIMIT);
    // 3,000 locks span at least three arenas (and at most five); the child gets every tenth.
    let locks: Vec<Lock> = (0..3000).map(|_| Lock::new().unwrap()).collect();
    let share: Vec<Lock> = locks.iter().step_by(10).cloned().collect();
    let (fds, maps) = Process::new(drop_received, (share,)).start().unwrap().join().unwrap();
    assert!((3..=5).contains(&fds), "{fds} descriptors given back");
    if let Some(maps) = maps {
        assert_eq!(maps, fds, "{maps} mappings given back for {fds} descriptors");
    }
    // Here: dropping them gives back all but the current arena's.
    let before = open_fds();
    let more: Vec<Lock> = (0..3000).map(|_| Lock::new().unwrap()).collect();
    assert!(open_fds() - before >= 2);
    drop((locks, more));
    assert!(open_fds() <= before + 1, "{} descriptors left of {before}", open_fds());
}

/// Makes a value, says so, waits for `go`, and returns what its value is then.
fn carve_and_wait(made: Event, go: Event) -> u64 {
    let value = RawValue::new(0xC0FFEE_u64).unwrap();
    made.set();
    go.wait();
    // SAFETY: nothing writes the value now (the parent wrote its own before `go`, into its own
    // memory unless the slots were shared, which is what this reads for).
    unsafe { value.read() }
}

#[test]
fn a_forked_child_never_carves_its_parents_slots() {
    let _s = serial();
    let _w = Watchdog::new("a_forked_child_never_carves_its_parents_slots", LIMIT);
    if !get_all_start_methods().contains(&StartMethod::Fork) {
        return;
    }
    for _ in 0..5 {
        // The parent's current arena has room: the child inherits it, with the next free slot.
        let (made, go) = (Event::new().unwrap(), Event::new().unwrap());
        let p = get_context(StartMethod::Fork)
            .process(carve_and_wait, (made.clone(), go.clone()))
            .start()
            .unwrap();
        made.wait();
        // The parent carves its next slots and writes them: had the child carved the same ones,
        // it would read 7.
        let mine = RawValue::new(7u64).unwrap();
        go.set();
        assert_eq!(p.join().unwrap(), 0xC0FFEE);
        // SAFETY: the child has exited; nothing else writes the value.
        assert_eq!(unsafe { mine.read() }, 7);
    }
}
