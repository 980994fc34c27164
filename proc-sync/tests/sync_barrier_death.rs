//! A `Barrier` party that dies: killed while waiting it breaks the barrier for every waiter with
//! its pid (a wait without a timeout included), until a reset; dead between rounds it breaks
//! nothing. Its handle is checked against its party count when decoded.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use proc_core::handle::{deserialize_with_fds, serialize_with_fds, Fd, StaticFn};
use proc_core::{get_all_start_methods, get_context, Process, StartMethod};
use proc_sync::{Barrier, BarrierError, Condition, Event, LIVENESS_CHECK};
use test_support::{serial, spawn_until_asleep, until, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

/// How long a waiter may take to notice a death: the check runs once per `LIVENESS_CHECK`; the
/// rest is room for a loaded machine.
const NOTICED_WITHIN: Duration = Duration::from_secs(10);

/// One wait, without a timeout; the error as its message (a child's result travels back).
fn wait_once(barrier: Barrier) -> Result<u32, String> {
    barrier.wait().map_err(|e| e.to_string())
}

/// Waits for one round, reports it, then blocks until killed.
fn one_round_then_block(barrier: Barrier, done: Event, never: Event) -> Result<u32, String> {
    let index = barrier.wait().map_err(|e| e.to_string())?;
    done.set();
    never.wait();
    Ok(index)
}

/// `rounds` waits; their indices.
fn rounds(barrier: Barrier, rounds: u32) -> Result<Vec<u32>, String> {
    (0..rounds).map(|_| barrier.wait().map_err(|e| e.to_string())).collect()
}

fn party_died(result: Result<u32, BarrierError>) -> u32 {
    match result {
        Err(BarrierError::PartyDied { pid }) => pid,
        other => panic!("expected PartyDied, got {other:?}"),
    }
}

/// Starts a party in a child and returns once it waits in the barrier (counted in `n_waiting`).
fn start_waiting(m: StartMethod, barrier: &Barrier) -> Process<Result<u32, String>> {
    let before = barrier.n_waiting();
    let p = get_context(m).process(wait_once, (barrier.clone(),)).start().unwrap();
    until(|| barrier.n_waiting() == before + 1);
    p
}

/// Kills `p` (SIGKILL) and reaps it.
fn kill<T: serde::Serialize + serde::de::DeserializeOwned>(p: Process<T>) {
    p.kill().unwrap();
    assert_eq!(p.join().err().and_then(|e| e.signal()), Some(libc::SIGKILL));
}

#[test]
fn a_party_killed_while_waiting_breaks_the_barrier_for_every_waiter() {
    let _s = serial();
    let _w = Watchdog::new("a_party_killed_while_waiting_breaks_the_barrier", LIMIT);
    for m in get_all_start_methods() {
        let barrier = Barrier::new(3).unwrap();
        let victim = start_waiting(m, &barrier);
        let dead = victim.pid();
        // The parent waits too, without a timeout, on a thread asleep in the wait.
        let b = barrier.clone();
        let parent = spawn_until_asleep(move || b.wait());
        until(|| barrier.n_waiting() == 2);
        let killed = Instant::now();
        kill(victim);
        assert_eq!(party_died(parent.join().unwrap()), dead, "{m}");
        assert!(killed.elapsed() < NOTICED_WITHIN, "noticed after {:?}", killed.elapsed());
        assert!(barrier.broken());
        assert_eq!(barrier.n_waiting(), 0);
        // Later waits get the same error until a reset, in this process and in another.
        assert_eq!(party_died(barrier.wait()), dead);
        let later = get_context(m).process(wait_once, (barrier.clone(),)).start().unwrap();
        let message = later.join().unwrap().unwrap_err();
        assert!(message.contains(&dead.to_string()), "{message}");
    }
}

#[test]
fn a_wait_without_timeout_notices_a_party_that_died_before_it_came() {
    let _s = serial();
    let _w = Watchdog::new("a_wait_without_timeout_notices", LIMIT);
    let barrier = Barrier::new(3).unwrap();
    let victim = start_waiting(StartMethod::Spawn, &barrier);
    let dead = victim.pid();
    kill(victim);
    // Two of three: the parent waits, and finds the dead party on its first check.
    let before = Instant::now();
    assert_eq!(party_died(barrier.wait()), dead);
    assert!(before.elapsed() < NOTICED_WITHIN);
    assert!(barrier.broken());
}

#[test]
fn after_a_death_reset_makes_the_barrier_work_again() {
    let _s = serial();
    let _w = Watchdog::new("after_a_death_reset_makes_the_barrier_work_again", LIMIT);
    // Reset after a waiter noticed the death, and reset before anyone did (the reset clears the
    // dead party's slot itself: else the reset would wait for it to leave).
    for noticed in [true, false] {
        let barrier = Barrier::new(3).unwrap();
        let victim = start_waiting(StartMethod::Fork, &barrier);
        let dead = victim.pid();
        kill(victim);
        if noticed {
            assert_eq!(party_died(barrier.wait()), dead);
        }
        barrier.reset();
        assert!(!barrier.broken(), "noticed first: {noticed}");
        assert_eq!(barrier.n_waiting(), 0);
        // Two rounds of three live parties.
        let children: Vec<_> =
            (0..2).map(|_| Process::new(rounds, (barrier.clone(), 2)).start().unwrap()).collect();
        let mut first = vec![barrier.wait().unwrap()];
        let mut second = vec![barrier.wait().unwrap()];
        for c in children {
            let indices = c.join().unwrap().unwrap();
            first.push(indices[0]);
            second.push(indices[1]);
        }
        first.sort_unstable();
        second.sort_unstable();
        assert_eq!((first, second), (vec![0, 1, 2], vec![0, 1, 2]), "noticed first: {noticed}");
        assert!(!barrier.broken());
    }
}

#[test]
fn a_party_that_dies_between_rounds_breaks_nothing() {
    let _s = serial();
    let _w = Watchdog::new("a_party_that_dies_between_rounds_breaks_nothing", LIMIT);
    for m in get_all_start_methods() {
        let barrier = Barrier::new(3).unwrap();
        let (done, never) = (Event::new().unwrap(), Event::new().unwrap());
        let leaver = get_context(m)
            .process(one_round_then_block, (barrier.clone(), done.clone(), never))
            .start()
            .unwrap();
        let stayer = get_context(m).process(rounds, (barrier.clone(), 2)).start().unwrap();
        let mine = barrier.wait().unwrap();
        // The leaver passed the round and left it; it dies outside any wait.
        done.wait();
        kill(leaver);
        // Round two: the stayer and the parent wait for a replacement. Not synchronization: time
        // for the waiters to check the recorded parties a few times, so that a dead party left
        // among them would be found and break the round.
        let b = barrier.clone();
        let parent = std::thread::spawn(move || b.wait());
        until(|| barrier.n_waiting() == 2);
        std::thread::sleep(LIVENESS_CHECK * 4);
        assert!(!barrier.broken(), "{m}");
        let replacement = get_context(m).process(wait_once, (barrier.clone(),)).start().unwrap();
        let mut second = vec![parent.join().unwrap().unwrap(), replacement.join().unwrap().unwrap()];
        let stayed = stayer.join().unwrap().unwrap();
        second.push(stayed[1]);
        second.sort_unstable();
        assert_eq!(second, [0, 1, 2], "{m}");
        assert!(mine < 3 && stayed[0] < 3 && mine != stayed[0]);
        assert!(!barrier.broken());
    }
}

/// A region's wire form: `(arena id, arena descriptor, arena length, offset, length)`.
type RegionWire = (u128, Fd, u64, u64, u64);

/// A `Barrier`'s wire form: `(cond, region, parties, action, timeout)`, the same bytes the handle
/// writes.
type BarrierWire = (Condition, RegionWire, u32, Option<StaticFn>, Option<Duration>);

fn reencode<T: serde::Serialize, U: serde::de::DeserializeOwned>(value: &T) -> proc_core::Result<U> {
    let (bytes, fds) = serialize_with_fds(value)?;
    deserialize_with_fds(&bytes, fds)
}

#[test]
fn a_handle_with_more_parties_than_its_memory_holds_is_refused() {
    use std::os::fd::AsFd;
    let barrier = Barrier::new(2).unwrap();
    let (cond, region, parties, action, timeout): BarrierWire = reencode(&barrier).unwrap();
    assert_eq!(parties, 2);
    let with = |parties: u32| -> BarrierWire {
        let fd = Fd::from(region.1.as_fd().try_clone_to_owned().unwrap());
        (cond.clone(), (region.0, fd, region.2, region.3, region.4), parties, action, timeout)
    };
    let same: Barrier = reencode(&with(2)).unwrap();
    assert_eq!(same.parties(), 2);
    // The region holds a slot for each of two parties: not one more.
    for garbled in [0, 3, 1 << 20, u32::MAX] {
        assert!(reencode::<_, Barrier>(&with(garbled)).is_err(), "{garbled} parties accepted");
    }
}
