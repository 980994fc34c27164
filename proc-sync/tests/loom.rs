//! Loom models of the protocols that live in shared memory, run on the crate's own code (the seam
//! in `src/shim.rs` gives it loom's atomics, heap-backed regions and model processes that can die
//! at any step; see `src/shim/model.rs`).
//!
//! ```text
//! RUSTFLAGS="--cfg proc_sync_loom" CARGO_TARGET_DIR=target/loom-sync \
//!     cargo test -p proc-sync --release --test loom
//! ```
//!
//! Each model runs once per budget `k` of the dying process (it stops just before its `k`-th
//! shared-memory write or wait; a load changes nothing, so it is not a step), from 0 until a
//! budget at which it no longer dies in any interleaving, so that it stops at every step of its
//! run. A process that never gets what the protocol owes it spins in the model's waits until
//! loom's branch limit fails the model: that is the check that nobody is stuck. (`LOOM_PROFILE=n`
//! prints, for the first execution that reaches `n` operations, who made them where: the loop
//! that burns the branches.)
//!
//! The lock and semaphore models run with at most 2 preemptions per execution, the condition and
//! barrier models with 1 (their executions are longer, and 2 would take hours); a death is a
//! switch of its own, at every step, on top of that. `LOOM_MAX_PREEMPTIONS` overrides both.
//! Environment: `LOOM_VERBOSE_BUDGETS=1` prints each budget's time and executions,
//! `LOOM_FIRST_BUDGET=k` starts at budget `k`.
#![cfg(proc_sync_loom)]
#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use loom::cell::UnsafeCell;
use proc_sync::{
    model, Barrier, BarrierError, BoundedSemaphore, Condition, ConditionGuard, Lock, LIVENESS_CHECK,
};

std::thread_local! {
    /// Whether the dying process died in some interleaving of the current budget (per test:
    /// loom runs a model's threads on the thread that checks it).
    static DIED: Cell<bool> = const { Cell::new(false) };
}

/// The most budgets a model runs (a bound that a run never reaches is an error).
const MAX_BUDGET: usize = 200;

/// Runs `f` under loom (preemptions bounded by `LOOM_MAX_PREEMPTIONS`, 2 if unset).
fn check(f: impl Fn() + Sync + Send + 'static) {
    check_bounded(2, f);
}

/// Runs `f` under loom, with at most `preemptions` preemptions per execution unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise. (Switches where a thread blocks or sleeps are free, and
/// so is the switch at a death.)
fn check_bounded(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    if std::env::var_os("LOOM_MAX_BRANCHES").is_none() {
        builder.max_branches = 20_000;
    }
    let executions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = executions.clone();
    builder.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        model::profile::reset();
        f();
    });
    if std::env::var_os("LOOM_VERBOSE_BUDGETS").is_some() {
        eprintln!("  {} executions", executions.load(Ordering::Relaxed));
    }
}

/// Runs `model(k)` for every budget `k` from 0 until the dying process survives every
/// interleaving; returns how many budgets ran.
fn every_budget(name: &str, model: impl Fn(usize)) -> usize {
    let start: usize = std::env::var("LOOM_FIRST_BUDGET").map_or(0, |v| v.parse().unwrap());
    for k in start..MAX_BUDGET {
        DIED.set(false);
        let t = std::time::Instant::now();
        model(k);
        if std::env::var_os("LOOM_VERBOSE_BUDGETS").is_some() {
            eprintln!("{name}: budget {k} in {:?}", t.elapsed());
        }
        if !DIED.get() {
            eprintln!("{name}: {} budgets", k + 1);
            return k + 1;
        }
    }
    panic!("{name}: the dying process still dies at budget {MAX_BUDGET}");
}

/// Notes a death for [`every_budget`].
fn note<T>(outcome: Option<T>) -> Option<T> {
    if outcome.is_none() {
        DIED.set(true);
    }
    outcome
}

/// Data a lock protects: loom fails the model if two threads touch it without the lock ordering
/// them.
struct Guarded(UnsafeCell<u32>);

// SAFETY: the models only touch it under the lock, which is what loom checks.
unsafe impl Sync for Guarded {}

impl Guarded {
    fn bump(&self) {
        // SAFETY: called with the lock held; loom reports a concurrent access.
        self.0.with_mut(|p| unsafe { *p += 1 });
    }
}

/// One critical section: takes the lock, bumps the data, releases. Whether it took the lock over
/// from a dead owner (always pid 2 in these models). `holding` is set while the guard lives, from
/// the acquire's return until the release's last operation.
fn critical(lock: &Lock, data: &Guarded, holding: &AtomicBool) -> bool {
    let (guard, took_over) = match lock.acquire() {
        Ok(g) => (g, false),
        Err(died) => {
            assert_eq!(died.pid(), 2, "a takeover from a live owner");
            (died.into_guard(), true)
        }
    };
    holding.store(true, Ordering::SeqCst);
    data.bump();
    drop(guard);
    holding.store(false, Ordering::SeqCst);
    took_over
}

/// Lock: process 2 takes the lock once and dies at step `k`; `survivors` other processes take it
/// once each, then the model's main thread takes it.
///
/// Invariants: mutual exclusion (loom checks the data), no takeover from a live owner, at most one
/// takeover in all, exactly one if process 2 died holding the lock, and everyone gets the lock.
fn lock_model(survivors: u32, k: usize) {
    check(move || {
        let lock = Lock::new().unwrap();
        let data = Arc::new(Guarded(UnsafeCell::new(0)));
        let holding = Arc::new(AtomicBool::new(false));
        let dying = {
            let (lock, data, holding) = (lock.clone(), data.clone(), holding.clone());
            model::spawn(2, Some(k), move || critical(&lock, &data, &holding))
        };
        let others: Vec<_> = (0..survivors)
            .map(|i| {
                let (lock, data) = (lock.clone(), data.clone());
                model::spawn(3 + i, None, move || critical(&lock, &data, &AtomicBool::new(false)))
            })
            .collect();
        let mut takeovers = 0;
        let died = note(model::join(dying)).is_none();
        for o in others {
            takeovers += u32::from(model::join(o).unwrap());
        }
        let died_holding = died && holding.load(Ordering::SeqCst);
        takeovers += u32::from(critical(&lock, &data, &AtomicBool::new(false)));
        assert!(takeovers <= 1, "the lock was taken over {takeovers} times");
        assert!(!died_holding || takeovers == 1, "a lock held by a dead owner was not taken over");
        assert!(died || takeovers == 0, "a takeover while the owner lives");
        assert!(!lock.locked());
    });
}

#[test]
fn lock_owner_dies_one_survivor() {
    every_budget("lock, 1 survivor", |k| lock_model(1, k));
}

#[test]
fn lock_owner_dies_two_survivors() {
    every_budget("lock, 2 survivors", |k| lock_model(2, k));
}

/// Semaphore: a `BoundedSemaphore` of 2. Process 2 takes a guarded permit and dies at step `k`;
/// process 3 takes a guarded permit, process 4 a plain one (released with the bounded check);
/// then the model's main thread takes both permits without waiting.
///
/// Invariants: at most 2 holders at once; a dead holder's recorded permit is recovered (by process
/// 3 as `OwnerDied`, by process 4 as a plain permit, or by the main thread) exactly once, never
/// counted twice: the value never exceeds 2, the plain release never finds it full, and there is
/// at most one `OwnerDied`; the main thread gets both permits if process 2 died holding its
/// recorded permit, and unless it died in the instant between taking its permit and recording it,
/// or between clearing its record and returning it (the loss the docs own to); and everyone gets
/// a permit.
fn semaphore_model(k: usize) {
    check(move || {
        let sem = BoundedSemaphore::new(2).unwrap();
        let inside = Arc::new(loom::sync::atomic::AtomicU32::new(0));
        let enter = |inside: &loom::sync::atomic::AtomicU32| {
            assert!(inside.fetch_add(1, Ordering::SeqCst) < 2, "three holders of two permits");
            inside.fetch_sub(1, Ordering::SeqCst);
        };
        let holding = Arc::new(AtomicBool::new(false));
        let dying = {
            let (sem, inside, holding) = (sem.clone(), inside.clone(), holding.clone());
            model::spawn(2, Some(k), move || {
                let guard = sem.acquire_guard().expect("nobody died before process 2");
                enter(&inside);
                // A step inside the section (a look at the semaphore), so that the process can die
                // holding a recorded permit; `holding` marks that step.
                holding.store(true, Ordering::SeqCst);
                let _ = sem.get_value();
                holding.store(false, Ordering::SeqCst);
                drop(guard);
            })
        };
        let guarded = {
            let (sem, inside) = (sem.clone(), inside.clone());
            model::spawn(3, None, move || {
                let (guard, took_over) = match sem.acquire_guard() {
                    Ok(g) => (g, false),
                    Err(died) => {
                        assert_eq!(died.pid(), 2, "a permit taken over from a live holder");
                        (died.into_guard(), true)
                    }
                };
                enter(&inside);
                drop(guard);
                took_over
            })
        };
        let plain = {
            let (sem, inside) = (sem.clone(), inside.clone());
            model::spawn(4, None, move || {
                sem.acquire();
                enter(&inside);
                sem.release().expect("a permit counted twice: the semaphore was full");
            })
        };
        let died = note(model::join(dying)).is_none();
        let died_holding = died && holding.load(Ordering::SeqCst);
        let mut takeovers = u32::from(model::join(guarded).unwrap());
        model::join(plain).unwrap();
        assert!(sem.get_value() <= 2, "a permit counted twice");
        let mut guards = Vec::new();
        for _ in 0..2 {
            match sem.acquire_guard_timeout(Duration::ZERO) {
                Ok(Some(g)) => guards.push(g),
                Ok(None) => {}
                Err(died) => {
                    assert_eq!(died.pid(), 2);
                    takeovers += 1;
                    guards.extend(died.into_guard());
                }
            }
        }
        assert!(takeovers <= 1, "a dead holder's permit recovered {takeovers} times");
        assert!(died || takeovers == 0, "a permit taken over from a live holder");
        assert!(died || guards.len() == 2, "a permit lost without a death");
        assert!(!died_holding || guards.len() == 2, "a recorded permit lost");
        let n = guards.len();
        drop(guards);
        assert_eq!(sem.get_value() as usize, n, "a permit counted twice");
    });
}

/// Semaphore, the recovery race: a `BoundedSemaphore` of 1, whose holder (process 2) dies while it
/// holds its recorded permit, while process 3 (guarded) and process 4 (plain) may both be waiting.
///
/// Invariants: one holder at a time; the permit is recovered exactly once (at most one
/// `OwnerDied`, never two holders, the plain release never finds the semaphore full); the main
/// thread then gets the one permit; everyone gets the permit.
fn semaphore_recovery_race() {
    check(move || {
        let sem = BoundedSemaphore::new(1).unwrap();
        let inside = Arc::new(loom::sync::atomic::AtomicU32::new(0));
        let enter = |inside: &loom::sync::atomic::AtomicU32| {
            assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders of one permit");
            inside.fetch_sub(1, Ordering::SeqCst);
        };
        let dying = {
            let sem = sem.clone();
            model::spawn(2, None, move || {
                let _guard = sem.acquire_guard().expect("nobody died before process 2");
                // Die at the next step, holding the recorded permit.
                model::set_budget(Some(0));
                sem.get_value();
            })
        };
        let guarded = {
            let (sem, inside) = (sem.clone(), inside.clone());
            model::spawn(3, None, move || match sem.acquire_guard() {
                Ok(guard) => {
                    enter(&inside);
                    drop(guard);
                    false
                }
                Err(died) => {
                    assert_eq!(died.pid(), 2, "a permit taken over from a live holder");
                    enter(&inside);
                    drop(died.into_guard());
                    true
                }
            })
        };
        let plain = {
            let (sem, inside) = (sem.clone(), inside.clone());
            model::spawn(4, None, move || {
                sem.acquire();
                enter(&inside);
                sem.release().expect("a permit counted twice: the semaphore was full");
            })
        };
        assert!(model::join(dying).is_none());
        let mut takeovers = u32::from(model::join(guarded).unwrap());
        model::join(plain).unwrap();
        assert!(sem.get_value() <= 1, "a permit counted twice");
        let guard = match sem.acquire_guard_timeout(Duration::ZERO) {
            Ok(g) => g,
            Err(died) => {
                takeovers += 1;
                died.into_guard()
            }
        };
        assert!(guard.is_some(), "the dead holder's permit was lost");
        assert_eq!(takeovers, u32::from(takeovers > 0), "the permit was taken over {takeovers} times");
        drop(guard);
        assert_eq!(sem.get_value(), 1);
    });
}

#[test]
fn semaphore_recovery_is_counted_once() {
    semaphore_recovery_race();
}

#[test]
fn semaphore_holder_dies() {
    every_budget("semaphore", semaphore_model);
}

/// Tokens that the condition's lock protects (loom checks that it does).
struct Tokens(UnsafeCell<u32>);

// SAFETY: the models only touch it under the condition's lock, which is what loom checks.
unsafe impl Sync for Tokens {}

impl Tokens {
    fn get(&self) -> u32 {
        // SAFETY: called with the lock held; loom reports a concurrent access.
        self.0.with(|p| unsafe { *p })
    }

    fn add(&self, n: i32) {
        // SAFETY: as for `get`.
        self.0.with_mut(|p| unsafe { *p = p.read().checked_add_signed(n).expect("a token taken twice") });
    }
}

/// Takes the condition's lock, a dead holder's included.
fn lock(cond: &Condition) -> ConditionGuard<'_> {
    cond.acquire().unwrap_or_else(|died| died.into_guard())
}

/// Waits (Python's `with cond: cond.wait_for(lambda: tokens > 0)`) for a token and takes it,
/// noting it in `took` (before any step after the take).
fn take_token(cond: &Condition, tokens: &Tokens, took: &AtomicBool) {
    let mut guard = lock(cond);
    while tokens.get() == 0 {
        // A lock holder that died meanwhile: the lock is held again all the same.
        let _ = guard.wait();
    }
    tokens.add(-1);
    took.store(true, Ordering::SeqCst);
}

/// Condition: processes 2 (dying at step `k`) and 3 each wait for a token (`wait` in a predicate
/// loop, Python's `wait_for`); process 4 twice puts a token and calls `notify(1)`.
///
/// Invariants: the tokens are only touched under the lock (loom checks), none is taken twice, and
/// process 3 gets one: a notification chosen for process 2 that died before its wait ended is
/// passed on, so no waiter is left asleep with a token (and its notification) available; at the
/// end the tokens left are the ones nobody took.
///
/// Mutation caught: a wait that returns without taking the lock back (loom: concurrent accesses
/// to the tokens).
fn condition_model(k: usize) {
    check_bounded(1, move || {
        let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
        let tokens = Arc::new(Tokens(UnsafeCell::new(0)));
        let took = Arc::new(AtomicBool::new(false));
        let dying = {
            let (cond, tokens, took) = (cond.clone(), tokens.clone(), took.clone());
            model::spawn(2, Some(k), move || take_token(&cond, &tokens, &took))
        };
        let waiter = {
            let (cond, tokens) = (cond.clone(), tokens.clone());
            model::spawn(3, None, move || take_token(&cond, &tokens, &AtomicBool::new(false)))
        };
        let notifier = {
            let (cond, tokens) = (cond.clone(), tokens.clone());
            model::spawn(4, None, move || {
                for _ in 0..2 {
                    let mut guard = lock(&cond);
                    tokens.add(1);
                    guard.notify(1);
                }
            })
        };
        note(model::join(dying));
        model::join(waiter).unwrap();
        model::join(notifier).unwrap();
        let _guard = lock(&cond);
        let left = if took.load(Ordering::SeqCst) { 0 } else { 1 };
        assert_eq!(tokens.get(), left, "tokens lost or taken twice");
    });
}

#[test]
fn condition_waiter_dies() {
    every_budget("condition", condition_model);
}

/// Condition, the hand-over: processes 2 (dying at step `k` of its wait, immortal after it) and
/// 3 each wait once, process 3 once process 2 waits (or died); process 4 calls `notify(1)` once
/// both wait; process 2, its wait over, passes its notification on with `notify(1)`. Process 2 has
/// the older ticket, so a live process 2 is the waiter that process 4's notify chooses. (Were it
/// process 3, a live process 2 would wait for ever: in the model, time would pass for ever, and
/// process 2 would die at every budget.)
///
/// Invariants: process 4's notify reports one live waiter woken (process 3 waits at that notify),
/// and process 3's wait returns: a notification chosen for process 2 that died before its wait
/// ended reaches process 3 (the hand-over: process 3 registered before that notify), and none is
/// spent on a dead waiter.
///
/// Mutations caught (process 3 never wakes: loom's branch limit): `reclaim` freeing a stranded
/// notification's slot without handing it over; sleeping waiters that never look for a stranded
/// notification.
fn condition_handover_model(k: usize) {
    check_bounded(1, move || {
        let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
        // Set once each waiter waits (or process 2 died).
        let (dying_waits, waiter_waits) =
            (Arc::new(model::Signal::default()), Arc::new(model::Signal::default()));
        let dying = {
            let (cond, waits) = (cond.clone(), dying_waits.clone());
            model::spawn(2, Some(k), move || {
                let mut guard = lock(&cond);
                // Under the lock, which the wait releases only once it is registered.
                waits.set();
                let _ = guard.wait();
                model::set_budget(None);
                guard.notify(1);
            })
        };
        let waiter = {
            let (cond, after, waits) = (cond.clone(), dying_waits.clone(), waiter_waits.clone());
            model::spawn(3, None, move || {
                after.wait();
                let mut guard = lock(&cond);
                waits.set();
                let _ = guard.wait();
            })
        };
        let notifier = {
            let (cond, waits) = (cond.clone(), waiter_waits.clone());
            model::spawn(4, None, move || {
                waits.wait();
                lock(&cond).notify(1)
            })
        };
        // If process 2 died before it waited, process 3 goes on once it is dead. (Not from process
        // 2's unwinding: a model thread must not switch while it unwinds.)
        note(model::join(dying));
        dying_waits.set();
        model::join(waiter).unwrap();
        let woken = model::join(notifier).unwrap();
        assert_eq!(woken, 1, "a notify with a live waiter woke {woken}");
    });
}

#[test]
fn condition_notification_handed_over() {
    every_budget("condition hand-over", condition_handover_model);
}

/// Barrier: three parties, of which only processes 2 (dying at step `k`) and 3 come to the first
/// round, so that it cannot pass. The main thread lets time pass once (every sleeping waiter's
/// slice ends, and it checks the others), then, once every other thread sleeps again, looks at the
/// barrier and, unless a death broke it, aborts it. Then it resets it, and it (with
/// `wait_timeout`), process 3 and process 4 pass the next round.
///
/// Invariants: nobody passes the first round (no party passes before all arrived); process 3
/// never hangs and gets `PartyDied` naming process 2 (never a live party) or `Broken`; a party that
/// died waiting is noticed: if process 2 died before time passed, the barrier is broken or counts
/// at most one waiter (process 2 never arrived) once everyone sleeps again; after the reset the
/// next round passes, with indices 0, 1 and 2 each once and the barrier whole (nothing left over
/// from the round before, no generation counted twice). Not checked: which of `PartyDied` and
/// `Broken` process 3 gets (the model cannot see whether process 2 had arrived).
///
/// Mutations caught: `check_parties` that never finds a dead party (the dead party's slot outlives
/// the reset, and the next round never fills); the last party counted one early (the short round
/// passes, and the model fails).
fn barrier_model(k: usize) {
    check_bounded(1, move || {
        let barrier = Barrier::new(3).unwrap();
        let again = Arc::new(model::Signal::default());
        let dying = {
            let barrier = barrier.clone();
            model::spawn(2, Some(k), move || barrier.wait())
        };
        let other = {
            let (barrier, again) = (barrier.clone(), again.clone());
            model::spawn(3, None, move || {
                let first = barrier.wait();
                again.wait();
                (first, barrier.wait())
            })
        };
        let dead = !model::alive(2);
        model::sleep(LIVENESS_CHECK);
        // Nothing moves while the main thread looks.
        model::idle();
        if !barrier.broken() {
            assert!(!dead || barrier.n_waiting() <= 1, "a party that died waiting went unnoticed");
            barrier.abort();
        }
        let r2 = note(model::join(dying));
        let died = r2.is_none();
        if let Some(r) = r2 {
            assert!(matches!(r, Err(BarrierError::Broken)), "process 2, alone with process 3: {r:?}");
        }
        barrier.reset();
        again.set();
        let last = {
            let barrier = barrier.clone();
            model::spawn(4, None, move || barrier.wait())
        };
        let a = barrier.wait_timeout(Duration::from_secs(1)).expect("the round after the reset failed");
        let (first, b) = model::join(other).unwrap();
        let c = model::join(last).unwrap().expect("the round after the reset failed");
        match first {
            Err(BarrierError::PartyDied { pid }) => {
                assert_eq!(pid, 2, "a live party reported dead");
                assert!(died, "a live party reported dead");
            }
            Err(BarrierError::Broken) => {}
            r => panic!("process 3 in a round of two parties of three: {r:?}"),
        }
        let b = b.expect("the round after the reset failed");
        let mut indices = [a, b, c];
        indices.sort_unstable();
        assert_eq!(indices, [0, 1, 2], "indices in the round after the reset");
        assert!(!barrier.broken());
        assert_eq!(barrier.n_waiting(), 0);
    });
}

#[test]
fn barrier_party_dies() {
    every_budget("barrier", barrier_model);
}
