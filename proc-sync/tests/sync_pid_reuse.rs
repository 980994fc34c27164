//! A lock (or a semaphore permit) whose owner died and whose pid went to another process is taken
//! over all the same, and a barrier party or condition waiter that died so is seen dead: pid reuse
//! forced in a fresh pid namespace with `ns_last_pid` (Linux, as root; skipped elsewhere).

#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proc_core::{get_all_start_methods, get_context, Process, StartMethod};
use proc_sync::{AcquireResult, Barrier, BarrierError, Condition, Event, Lock, RLock, Semaphore};
use serde::{Deserialize, Serialize};
use test_support::{serial, until, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

/// How long a waiter may wait for a lock whose owner died: far beyond a liveness check.
const PATIENCE: Duration = Duration::from_secs(5);

/// The scenario that runs as pid 1 of a fresh pid namespace.
const SCENARIO: &str = "pid_reuse_in_a_fresh_pid_namespace";

#[test]
fn a_reused_pid_does_not_keep_a_dead_owner_alive() {
    let _s = serial();
    let _w = Watchdog::new("a_reused_pid_does_not_keep_a_dead_owner_alive", LIMIT);
    if !cfg!(target_os = "linux") {
        println!("skipped: forcing pid reuse needs Linux pid namespaces");
        return;
    }
    if proc_os::geteuid() != 0 {
        println!("skipped: forcing pid reuse needs root (a pid namespace and ns_last_pid)");
        return;
    }
    let probe = Command::new("unshare").args(["--pid", "--fork", "--mount-proc", "true"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        println!("skipped: `unshare --pid --fork --mount-proc` does not work here");
        return;
    }
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "--ignored", "--nocapture", "--test-threads=1", SCENARIO])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the scenario failed: {:?}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains(&format!("test {SCENARIO} ... ok")), "the scenario did not run:\n{stdout}");
}

/// A `Lock`, an `RLock` or a `Semaphore`'s guarded permit, passed to children as one argument.
#[derive(Clone, Serialize, Deserialize)]
enum AnyLock {
    Lock(Lock),
    RLock(RLock),
    Semaphore(Semaphore),
}

impl AnyLock {
    /// Tries for at most `timeout` and, if taken, runs `then` before letting go: `Ok(true)` taken,
    /// `Ok(false)` timed out, `Err(pid)` taken over from `pid`, which died holding it.
    fn take(&self, timeout: Duration, then: impl FnOnce()) -> Result<bool, u32> {
        fn hold<G>(taken: AcquireResult<Option<G>>, then: impl FnOnce()) -> Result<bool, u32> {
            match taken {
                Ok(None) => Ok(false),
                Ok(Some(_guard)) => {
                    then();
                    Ok(true)
                }
                Err(e) => {
                    let pid = e.pid();
                    let _guard = e.into_guard();
                    then();
                    Err(pid)
                }
            }
        }
        match self {
            AnyLock::Lock(l) => hold(l.acquire_timeout(timeout), then),
            AnyLock::RLock(l) => hold(l.acquire_timeout(timeout), then),
            AnyLock::Semaphore(s) => hold(s.acquire_guard_timeout(timeout), then),
        }
    }

    fn locked(&self) -> bool {
        match self {
            AnyLock::Lock(l) => l.locked(),
            AnyLock::RLock(l) => l.locked(),
            AnyLock::Semaphore(s) => s.get_value() == 0,
        }
    }
}

/// Takes the lock, says so, and once told to, dies holding it.
fn hold_then_die(lock: AnyLock, held: Event, go: Event) {
    let taken = lock.take(Duration::ZERO, || {
        held.set();
        go.wait();
        // SAFETY: SIGKILL to ourselves; nothing after it runs.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    });
    panic!("the lock was not taken: {taken:?}");
}

/// Runs as the process that got the dead owner's pid: takes the lock over from its own pid.
fn take_over_from_my_own_pid(lock: AnyLock, dead: u32) {
    assert_eq!(proc_os::pid(), dead, "this process got the dead owner's pid");
    let before = Instant::now();
    assert_eq!(lock.take(PATIENCE, || ()), Err(dead), "after {:?}", before.elapsed());
}

/// Starts a holder with `method`, lets it die holding `lock` and waits until its pid is free:
/// the pid and the holder's start time.
fn owner_dies(method: StartMethod, lock: &AnyLock) -> (u32, u64) {
    let (held, go) = (Event::new().unwrap(), Event::new().unwrap());
    let owner =
        get_context(method).process(hold_then_die, (lock.clone(), held.clone(), go.clone())).start().unwrap();
    held.wait();
    let pid = owner.pid();
    let start = proc_os::start_time(pid).expect("this /proc tells start times");
    go.set();
    assert_eq!(owner.join().unwrap_err().signal(), Some(libc::SIGKILL));
    assert!(lock.locked(), "the dead owner still holds the lock");
    pid_freed(pid, start);
    (pid, start)
}

/// Waits until process `pid`, which started at `start` and was killed, is reaped and its pid free,
/// and until a process started now would start in a later tick of the start-time clock.
fn pid_freed(pid: u32, start: u64) {
    // Reaped (by us or by the fork server): its /proc entry goes with it.
    until(|| proc_os::start_time(pid).is_none());
    // Start times count clock ticks: the next process must start in a later tick than the dead
    // one, or nothing tells them apart. Probes (whose pids do not matter yet) show the clock.
    loop {
        let mut probe = blocked_child();
        let probe_start = proc_os::start_time(probe.id()).unwrap();
        drop(probe.stdin.take());
        probe.wait().unwrap();
        if probe_start > start {
            break;
        }
    }
}

/// Waits until `waiting` says that process `p` waits, kills it and waits until its pid is free:
/// its pid.
fn dies_waiting(p: Process<()>, waiting: impl Fn() -> bool) -> u32 {
    until(waiting);
    let pid = p.pid();
    let start = proc_os::start_time(pid).unwrap();
    // SAFETY: kill takes plain integers; the process is our child (or the fork server's), not yet
    // reaped, so the pid is still its own.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    assert_eq!(p.join().unwrap_err().signal(), Some(libc::SIGKILL));
    pid_freed(pid, start);
    pid
}

/// Waits at `barrier` (until killed).
fn wait_at(barrier: Barrier) {
    let _ = barrier.wait();
    unreachable!("the barrier let one party of three through");
}

/// Waits on `cond` (until killed).
fn wait_on(cond: Condition) {
    let mut g = cond.acquire().unwrap();
    let _ = g.wait();
    unreachable!("nobody notifies");
}

/// A child that runs until its stdin closes: `cat`, reading a pipe nobody writes.
fn blocked_child() -> Child {
    Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap()
}

/// Makes `pid` the next pid of this (fresh) pid namespace, in which no other process forks.
fn next_pid_is(pid: u32) {
    std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
}

#[test]
#[ignore = "helper: run in a fresh pid namespace by a_reused_pid_does_not_keep_a_dead_owner_alive"]
fn pid_reuse_in_a_fresh_pid_namespace() {
    let _w = Watchdog::new(SCENARIO, LIMIT);
    assert_eq!(
        proc_os::getpid(),
        1,
        "run as pid 1 of a fresh pid namespace (`unshare --pid --fork --mount-proc`)"
    );
    for method in get_all_start_methods() {
        let locks = [
            AnyLock::Lock(Lock::new().unwrap()),
            AnyLock::RLock(RLock::new().unwrap()),
            AnyLock::Semaphore(Semaphore::new(1).unwrap()),
        ];
        for lock in locks {
            // Another process gets the dead owner's pid and lives on; a waiter here must take over.
            let (dead, start) = owner_dies(method, &lock);
            next_pid_is(dead);
            let mut newcomer = blocked_child();
            assert_eq!(newcomer.id(), dead, "{method}: the newcomer got the dead owner's pid");
            assert!(proc_os::process_alive(dead));
            assert_ne!(proc_os::start_time(dead), Some(start));
            let before = Instant::now();
            assert_eq!(lock.take(PATIENCE, || ()), Err(dead), "{method}: after {:?}", before.elapsed());
            assert!(proc_os::process_alive(dead), "{method}: the newcomer still runs");
            assert!(!lock.locked(), "{method}");
            drop(newcomer.stdin.take());
            newcomer.wait().unwrap();

            // The process that gets the dead owner's pid wants the lock itself: the lock word
            // names its own pid, and must not pass for its own.
            let (dead, _) = owner_dies(method, &lock);
            next_pid_is(dead);
            let newcomer =
                get_context(method).process(take_over_from_my_own_pid, (lock.clone(), dead)).start().unwrap();
            assert_eq!(newcomer.pid(), dead, "{method}: the newcomer got the dead owner's pid");
            newcomer.join().unwrap();
            assert!(!lock.locked(), "{method}");
        }

        // A barrier party dies waiting; a process gets its pid; a waiting party hears of the death.
        let barrier = Barrier::new(3).unwrap();
        let party = get_context(method).process(wait_at, (barrier.clone(),)).start().unwrap();
        let dead = dies_waiting(party, || barrier.n_waiting() == 1);
        next_pid_is(dead);
        let mut newcomer = blocked_child();
        assert_eq!(newcomer.id(), dead, "{method}: the newcomer got the dead party's pid");
        let before = Instant::now();
        let waited = barrier.wait_timeout(PATIENCE);
        assert!(
            matches!(waited, Err(BarrierError::PartyDied { pid }) if pid == dead),
            "{method}: {waited:?} after {:?}",
            before.elapsed()
        );
        drop(newcomer.stdin.take());
        newcomer.wait().unwrap();

        // A condition waiter dies; a process gets its pid; a notify does not count it as woken.
        let cond = Condition::new().unwrap();
        let waiter = get_context(method).process(wait_on, (cond.clone(),)).start().unwrap();
        let dead = dies_waiting(waiter, || cond.waiting() == 1);
        next_pid_is(dead);
        let mut newcomer = blocked_child();
        assert_eq!(newcomer.id(), dead, "{method}: the newcomer got the dead waiter's pid");
        // It may have died holding the lock, between recording itself and sleeping.
        let mut g = cond.acquire().unwrap_or_else(|died| died.into_guard());
        assert_eq!(g.notify(1), 0, "{method}: a notify chose the dead waiter");
        assert_eq!(cond.waiting(), 0, "{method}: the dead waiter's slot is free");
        drop(g);
        drop(newcomer.stdin.take());
        newcomer.wait().unwrap();
    }
}
