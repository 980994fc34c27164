//! Processes killed while asleep in a blocked `get` or `put`: the sleeper flag they announced stays
//! set, and costs the next commit (or release) one spare wake-up, nothing more. Live callers, and a
//! live waiter that sleeps after the dead one, are served as if the dead one had never slept.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proc_core::Process;
use proc_queue::Queue;
use test_support::{serial, spawn_until_asleep, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

fn get_forever(q: Queue<u32>) {
    let _ = q.get();
}

fn put_forever(q: Queue<u32>) {
    let _ = q.put(99);
}

/// Whether process `pid` (its main thread) sleeps in the kernel. Linux reads `/proc`; elsewhere
/// the announced flag alone tells that the process reached its sleep (it may still be on the way).
fn sleeping(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // The state follows the command name, which is in parentheses.
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
        state == Some('S')
    } else {
        true
    }
}

/// Returns child `p`, which blocks in a call on `q`, once it announced its sleep (`announced` reads
/// the flag) and sleeps.
fn until_asleep(p: Process<()>, q: &Queue<u32>, announced: impl Fn(&Queue<u32>) -> bool) -> Process<()> {
    // Nobody else commits or releases meanwhile, so once set the flag stays set: the child is past
    // its announcement, and from then on it only sleeps, or wakes at a liveness check and sleeps
    // again (announcing again) without ever clearing the flag.
    while !(announced(q) && sleeping(p.pid())) {
        std::thread::yield_now();
    }
    p
}

#[test]
fn a_getter_killed_asleep_costs_one_spare_wake_up() {
    let _s = serial();
    let _w = Watchdog::new("a_getter_killed_asleep_costs_one_spare_wake_up", LIMIT);
    let q = Queue::<u32>::new(2).unwrap();
    let p = until_asleep(Process::new(get_forever, (q.clone(),)).start().unwrap(), &q, |q| {
        q.announced_sleepers().0
    });
    p.kill().unwrap();
    let _ = p.join();
    // The dead getter's announcement stays: nobody answered it.
    assert_eq!(q.announced_sleepers(), (true, false));

    // A live getter that sleeps after it (on the same flag) is woken by the next put, which
    // clears the flag.
    let q2 = q.clone();
    let live = spawn_until_asleep(move || q2.get());
    q.put(7).unwrap();
    assert_eq!(q.announced_sleepers(), (false, false));
    assert_eq!(live.join().unwrap().unwrap(), 7);

    // Without timeouts, and without a flag left behind: the next commit finds nobody announced.
    q.put(8).unwrap();
    assert_eq!(q.get().unwrap(), 8);
    assert_eq!(q.announced_sleepers(), (false, false));
    assert!(q.empty());
}

#[test]
fn a_getter_killed_asleep_is_answered_by_the_next_commit_alone() {
    let _s = serial();
    let _w = Watchdog::new("a_getter_killed_asleep_is_answered_by_the_next_commit_alone", LIMIT);
    // Bounded, and unbounded (whose producer reads the flag to tell whether a consumer is about).
    for q in [Queue::<u32>::new(2).unwrap(), Queue::<u32>::unbounded().unwrap()] {
        let p = Process::new(get_forever, (q.clone(),)).start().unwrap();
        let p = until_asleep(p, &q, |q| q.announced_sleepers().0);
        p.kill().unwrap();
        let _ = p.join();
        assert_eq!(q.announced_sleepers(), (true, false));
        // With no live sleeper the first put clears the stale flag (its one spare wake-up finds
        // nobody), and the queue works on without timeouts.
        q.put(1).unwrap();
        assert_eq!(q.announced_sleepers(), (false, false));
        q.put(2).unwrap();
        assert_eq!(q.get().unwrap(), 1);
        assert_eq!(q.get().unwrap(), 2);
        assert_eq!(q.announced_sleepers(), (false, false));
    }
}

#[test]
fn a_putter_killed_asleep_costs_one_spare_wake_up() {
    let _s = serial();
    let _w = Watchdog::new("a_putter_killed_asleep_costs_one_spare_wake_up", LIMIT);
    let q = Queue::<u32>::new(1).unwrap();
    q.put(0).unwrap();
    let p = until_asleep(Process::new(put_forever, (q.clone(),)).start().unwrap(), &q, |q| {
        q.announced_sleepers().1
    });
    p.kill().unwrap();
    let _ = p.join();
    // It died waiting for room: it left its announcement, and no message.
    assert_eq!(q.announced_sleepers(), (false, true));
    assert_eq!(q.qsize(), 1);

    // A live putter that sleeps after it is woken by the next get, which clears the flag.
    let q2 = q.clone();
    let live = spawn_until_asleep(move || q2.put(1));
    assert_eq!(q.get().unwrap(), 0);
    assert!(!q.announced_sleepers().1);
    live.join().unwrap().unwrap();
    assert_eq!(q.get().unwrap(), 1);

    // Without timeouts, and without a flag left behind.
    q.put(2).unwrap();
    assert_eq!(q.get().unwrap(), 2);
    assert_eq!(q.announced_sleepers(), (false, false));
    assert!(q.empty());
}

#[test]
fn a_putter_killed_asleep_is_answered_by_the_next_release_alone() {
    let _s = serial();
    let _w = Watchdog::new("a_putter_killed_asleep_is_answered_by_the_next_release_alone", LIMIT);
    let q = Queue::<u32>::new(1).unwrap();
    q.put(0).unwrap();
    let p = until_asleep(Process::new(put_forever, (q.clone(),)).start().unwrap(), &q, |q| {
        q.announced_sleepers().1
    });
    p.kill().unwrap();
    let _ = p.join();
    assert_eq!(q.announced_sleepers(), (false, true));
    assert_eq!(q.get().unwrap(), 0);
    assert_eq!(q.announced_sleepers(), (false, false));
    q.put(1).unwrap();
    assert!(q.full());
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.announced_sleepers(), (false, false));
}
