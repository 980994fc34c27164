//! The calls on the objects a call can wait on: queue, lock (and reentrant lock), semaphore,
//! event, condition, barrier. For each kind, first the function for its calls that never wait
//! (given the state, its mutex held by [`Object::call`]; it returns the answer and whether
//! waiters should look again), then those that wait, on the object's condition variable, until
//! they can go on, their deadline passes, or the call is aborted.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::{deadline, err, not_allowed, ok, value, Abort, Embedded, Object, State};
use crate::wire::{Method, Millis, Owner, Response, WireError};

impl Object {
    /// A queue's calls that never wait.
    pub(super) fn queue_call(
        items: &mut VecDeque<Vec<u8>>,
        unfinished: &mut u64,
        joinable: bool,
        method: Method,
    ) -> (Response, bool) {
        match method {
            Method::QueueSize => (Response::Count(items.len() as u64), false),
            // Back at the front, past `maxsize` if need be: it was this queue's oldest value
            // (`unfinished` still counts it: a `get` does not change it).
            Method::QueueUnget(v) => {
                items.push_front(v.into_vec());
                (ok(), true)
            }
            Method::TaskDone if joinable => {
                if *unfinished == 0 {
                    return (err(WireError::NotHeld), false);
                }
                *unfinished -= 1;
                (ok(), *unfinished == 0)
            }
            other => not_allowed(&other),
        }
    }

    /// A lock's calls that never wait: `release`.
    pub(super) fn lock_call(
        owner: &mut Option<Owner>,
        count: &mut u32,
        reentrant: bool,
        method: Method,
    ) -> (Response, bool) {
        match method {
            Method::Release { owner: who } => {
                let held_by_caller = owner.is_some_and(|o| o == who);
                match owner {
                    None => (err(WireError::NotHeld), false),
                    // An RLock is released only by its owner; a Lock by anyone (as Python's).
                    Some(_) if reentrant && !held_by_caller => (err(WireError::NotHeld), false),
                    Some(_) => {
                        *count = count.saturating_sub(1);
                        if *count == 0 || !reentrant {
                            *owner = None;
                            *count = 0;
                        }
                        (ok(), owner.is_none())
                    }
                }
            }
            Method::ReleaseOwned { owner: who } => {
                if *owner != Some(who) {
                    return (err(WireError::NotHeld), false);
                }
                *count = count.saturating_sub(1);
                if *count == 0 || !reentrant {
                    *owner = None;
                    *count = 0;
                }
                (ok(), owner.is_none())
            }
            other => not_allowed(&other),
        }
    }

    /// A semaphore's calls that never wait.
    pub(super) fn semaphore_call(
        value: &mut u32,
        initial: u32,
        bounded: bool,
        method: Method,
    ) -> (Response, bool) {
        match method {
            Method::Release { .. } => {
                if bounded && *value >= initial {
                    return (err(WireError::NotHeld), false);
                }
                *value = value.saturating_add(1);
                (ok(), true)
            }
            Method::SemValue => (Response::Count(u64::from(*value)), false),
            other => not_allowed(&other),
        }
    }

    /// An event's calls that never wait.
    pub(super) fn event_call(flag: &mut bool, method: Method) -> (Response, bool) {
        match method {
            Method::EventSet => {
                *flag = true;
                (ok(), true)
            }
            Method::EventClear => {
                *flag = false;
                (ok(), false)
            }
            Method::EventIsSet => (Response::Bool(*flag), false),
            other => not_allowed(&other),
        }
    }

    /// A condition's calls that never wait: `notify`.
    pub(super) fn condition_call(
        lock: &Arc<Object>,
        waiting: &mut BTreeSet<u64>,
        notified: &mut HashSet<u64>,
        method: Method,
    ) -> (Response, bool) {
        match method {
            Method::CondNotify { owner, n } => {
                if !lock.held_by(owner) {
                    return (err(WireError::NotHeld), false);
                }
                for _ in 0..n {
                    match waiting.pop_first() {
                        Some(ticket) => notified.insert(ticket),
                        None => break,
                    };
                }
                (ok(), true)
            }
            other => not_allowed(&other),
        }
    }

    /// A barrier's calls that never wait.
    pub(super) fn barrier_call(
        parties: u32,
        waiting: &mut u32,
        generation: &mut u64,
        broken: &mut bool,
        resets: &mut HashSet<u64>,
        method: Method,
    ) -> (Response, bool) {
        match method {
            Method::BarrierAbort => {
                *broken = true;
                (ok(), true)
            }
            Method::BarrierReset => {
                // Parties waiting get BrokenBarrier; the barrier starts afresh.
                if *waiting > 0 {
                    resets.insert(*generation);
                    *generation += 1;
                    *waiting = 0;
                }
                *broken = false;
                (ok(), true)
            }
            Method::BarrierState => {
                (Response::Barrier { parties, waiting: *waiting, broken: *broken }, false)
            }
            other => not_allowed(&other),
        }
    }

    /// Whether `who` holds this lock.
    fn held_by(&self, who: Owner) -> bool {
        matches!(&*self.lock(), State::Lock { owner: Some(o), .. } if *o == who)
    }

    pub(super) fn queue_put(
        &self,
        v: Vec<u8>,
        embedded: Embedded,
        block: bool,
        timeout: Millis,
        abort: &dyn Abort,
    ) -> Response {
        let state = self.lock();
        let deadline = if block { deadline(timeout) } else { Some(Instant::now()) };
        let room = |s: &mut State| matches!(s, State::Queue { items, maxsize, .. } if *maxsize == 0 || items.len() < *maxsize as usize);
        if !matches!(&*state, State::Queue { .. }) {
            return err(WireError::MethodNotAllowed("put".into()));
        }
        match self.wait_until(state, deadline, abort, room) {
            Ok(mut state) => {
                // Registered with the store, under the same lock: no other call sees one without
                // the other.
                self.register(embedded);
                if let State::Queue { items, unfinished, joinable, .. } = &mut *state {
                    items.push_back(v);
                    if *joinable {
                        *unfinished += 1;
                    }
                }
                drop(state);
                self.notify();
                ok()
            }
            Err((_, WireError::Timeout)) => err(WireError::Full),
            Err((_, e)) => err(e),
        }
    }

    pub(super) fn queue_get(&self, block: bool, timeout: Millis, abort: &dyn Abort) -> Response {
        let state = self.lock();
        let deadline = if block { deadline(timeout) } else { Some(Instant::now()) };
        if !matches!(&*state, State::Queue { .. }) {
            return err(WireError::MethodNotAllowed("get".into()));
        }
        let has_item = |s: &mut State| matches!(s, State::Queue { items, .. } if !items.is_empty());
        match self.wait_until(state, deadline, abort, has_item) {
            Ok(mut state) => {
                let item = match &mut *state {
                    State::Queue { items, .. } => items.pop_front(),
                    _ => None,
                };
                drop(state);
                self.notify();
                match item {
                    Some(v) => value(v),
                    None => err(WireError::Empty),
                }
            }
            Err((_, WireError::Timeout)) => err(WireError::Empty),
            Err((_, e)) => err(e),
        }
    }

    pub(super) fn queue_join(&self, timeout: Millis, abort: &dyn Abort) -> Response {
        let state = self.lock();
        if !matches!(&*state, State::Queue { joinable: true, .. }) {
            return err(WireError::MethodNotAllowed("join".into()));
        }
        let done = |s: &mut State| matches!(s, State::Queue { unfinished: 0, .. });
        match self.wait_until(state, deadline(timeout), abort, done) {
            Ok(_) => ok(),
            Err((_, e)) => err(e),
        }
    }

    pub(super) fn acquire(&self, who: Owner, block: bool, timeout: Millis, abort: &dyn Abort) -> Response {
        let mut state = self.lock();
        match &mut *state {
            State::Lock { owner: Some(o), count, reentrant: true } if *o == who => {
                return match count.checked_add(1) {
                    Some(c) => {
                        *count = c;
                        Response::Bool(true)
                    }
                    None => err(WireError::Remote("the RLock is acquired too many times".into())),
                };
            }
            State::Lock { .. } | State::Semaphore { .. } => {}
            _ => return err(WireError::MethodNotAllowed("acquire".into())),
        }
        let deadline = if block { deadline(timeout) } else { Some(Instant::now()) };
        let free = |s: &mut State| match s {
            State::Lock { owner, .. } => owner.is_none(),
            State::Semaphore { value, .. } => *value > 0,
            _ => true,
        };
        match self.wait_until(state, deadline, abort, free) {
            Ok(mut state) => {
                match &mut *state {
                    State::Lock { owner, count, .. } => {
                        *owner = Some(who);
                        *count = 1;
                    }
                    State::Semaphore { value, .. } => *value -= 1,
                    _ => {}
                }
                Response::Bool(true)
            }
            Err((_, WireError::Timeout)) => Response::Bool(false),
            Err((_, e)) => err(e),
        }
    }

    pub(super) fn event_wait(&self, timeout: Millis, abort: &dyn Abort) -> Response {
        let state = self.lock();
        if !matches!(&*state, State::Event(_)) {
            return err(WireError::MethodNotAllowed("wait".into()));
        }
        match self.wait_until(state, deadline(timeout), abort, |s| matches!(s, State::Event(true))) {
            Ok(_) => Response::Bool(true),
            Err((_, WireError::Timeout)) => Response::Bool(false),
            Err((_, e)) => err(e),
        }
    }

    pub(super) fn cond_wait(&self, who: Owner, timeout: Millis, abort: &dyn Abort) -> Response {
        let mut state = self.lock();
        let (lock, ticket) = match &mut *state {
            State::Condition { lock, next, waiting, .. } => {
                if !lock.held_by(who) {
                    return err(WireError::NotHeld);
                }
                *next += 1;
                waiting.insert(*next);
                (lock.clone(), *next)
            }
            _ => return err(WireError::MethodNotAllowed("wait".into())),
        };
        // Registered before the lock is released: a notify after the release wakes us.
        let depth = lock.release_fully(who);
        let is_notified =
            |s: &mut State| matches!(s, State::Condition { notified, .. } if notified.contains(&ticket));
        let outcome = self.wait_until(state, deadline(timeout), abort, is_notified);
        let (mut state, error) = match outcome {
            Ok(state) => (state, None),
            Err((state, e)) => (state, Some(e)),
        };
        // Take the ticket out, whichever way the wait ended; a notification that came with the
        // timeout counts.
        let was_notified = match &mut *state {
            State::Condition { waiting, notified, .. } => {
                waiting.remove(&ticket);
                notified.remove(&ticket)
            }
            _ => false,
        };
        drop(state);
        let result = match error {
            _ if was_notified => Response::Bool(true),
            None | Some(WireError::Timeout) => Response::Bool(false),
            Some(e) => return err(e),
        };
        // Take the lock back (as Python's wait does, however long it takes).
        lock.reacquire(who, depth, abort);
        result
    }

    /// Releases a lock held by `who` completely; returns its depth.
    fn release_fully(&self, who: Owner) -> u32 {
        let mut state = self.lock();
        let depth = match &mut *state {
            State::Lock { owner, count, .. } if *owner == Some(who) => {
                let depth = *count;
                *owner = None;
                *count = 0;
                depth
            }
            _ => 0,
        };
        drop(state);
        self.notify();
        depth
    }

    /// Takes the lock back for `who` at `depth`.
    fn reacquire(&self, who: Owner, depth: u32, abort: &dyn Abort) {
        let state = self.lock();
        let free = |s: &mut State| matches!(s, State::Lock { owner: None, .. });
        if let Ok(mut state) = self.wait_until(state, None, abort, free) {
            if let State::Lock { owner, count, .. } = &mut *state {
                *owner = Some(who);
                *count = depth.max(1);
            }
        }
    }

    pub(super) fn barrier_wait(&self, timeout: Millis, abort: &dyn Abort) -> Response {
        let mut state = self.lock();
        let (index, generation) = match &mut *state {
            State::Barrier { broken: true, .. } => return err(WireError::BrokenBarrier),
            State::Barrier { parties, waiting, generation, .. } => {
                let index = *waiting;
                *waiting += 1;
                if *waiting == *parties {
                    *waiting = 0;
                    *generation += 1;
                    drop(state);
                    self.notify();
                    return Response::Count(u64::from(index));
                }
                (index, *generation)
            }
            _ => return err(WireError::MethodNotAllowed("wait".into())),
        };
        let passed = |s: &mut State| match s {
            State::Barrier { generation: g, broken, .. } => *g != generation || *broken,
            _ => true,
        };
        match self.wait_until(state, deadline(timeout), abort, passed) {
            Ok(mut state) => match &mut *state {
                State::Barrier { resets, .. } if resets.contains(&generation) => {
                    err(WireError::BrokenBarrier)
                }
                State::Barrier { generation: g, .. } if *g != generation => Response::Count(u64::from(index)),
                State::Barrier { waiting, .. } => {
                    // Broken while this party waited: it leaves.
                    *waiting = waiting.saturating_sub(1);
                    err(WireError::BrokenBarrier)
                }
                _ => err(WireError::BrokenBarrier),
            },
            Err((mut state, e)) => {
                // A party that gives up breaks the barrier for everyone (Python's rule).
                if let State::Barrier { broken, waiting, generation: g, .. } = &mut *state {
                    *broken = true;
                    if *g == generation {
                        *waiting = waiting.saturating_sub(1);
                    }
                }
                drop(state);
                self.notify();
                match e {
                    WireError::Timeout => err(WireError::BrokenBarrier),
                    e => err(e),
                }
            }
        }
    }
}
