//! The objects a server keeps, and their methods. Values are opaque bytes: the types live in the
//! clients' proxies, so no input makes the server run code (registered types decode their own
//! typed requests, and refuse anything else).
//!
//! - Here: [`State`], [`Object`] with its mutex and condition variable, and the dispatch of a call
//!   ([`Object::call`]): a method that may wait goes to its function in `blocking`, any other to
//!   `call_now`, which hands the state to the function of the object's kind.
//! - `data`: the calls on data objects (dict, list, namespace, value, array, registered types);
//!   none waits.
//! - `blocking`: the calls on the objects a call can wait on (queue, lock, semaphore, event,
//!   condition, barrier), those that wait and those that do not.
//! - `references`: the references that stored values holding proxies keep, and how a call moves
//!   or releases them.
//! - `ordered_map`: the dict's insertion-ordered map.
//!
//! The files below only add `impl Object` blocks and name items of this file; this file names
//! none of theirs but `OrderedMap`, so imports go one way.

mod blocking;
mod data;
mod ordered_map;
mod references;
#[cfg(test)]
mod test;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub(crate) use ordered_map::OrderedMap;

use crate::registry::Erased;
use crate::wire::{Bytes, Kind, Method, Millis, ObjectId, Owner, Response, SessionId, WireError};

/// How often a blocked call looks whether its client is still there, and whether the server
/// shuts down.
const SLICE: Duration = Duration::from_millis(100);

/// The state of an object.
pub(crate) enum State {
    Dict(OrderedMap),
    List {
        items: Vec<Vec<u8>>,
        version: u64,
    },
    Namespace(BTreeMap<String, Vec<u8>>),
    Value(Vec<u8>),
    Array(Vec<Vec<u8>>),
    Queue {
        items: VecDeque<Vec<u8>>,
        maxsize: u32,
        unfinished: u64,
        joinable: bool,
    },
    Lock {
        owner: Option<Owner>,
        count: u32,
        reentrant: bool,
    },
    Semaphore {
        value: u32,
        initial: u32,
        bounded: bool,
    },
    Event(bool),
    /// Waiters hold tickets in order; `notify(n)` moves the n oldest to `notified`.
    Condition {
        lock: Arc<Object>,
        next: u64,
        waiting: BTreeSet<u64>,
        notified: HashSet<u64>,
    },
    /// `resets`: generations ended by a reset (their waiters get BrokenBarrier).
    Barrier {
        parties: u32,
        waiting: u32,
        generation: u64,
        broken: bool,
        resets: HashSet<u64>,
    },
    Custom(Box<dyn Erased>),
}

/// An object: its state, and a condition variable for the calls that wait on it.
pub(crate) struct Object {
    pub(crate) kind: Kind,
    state: Mutex<State>,
    changed: Condvar,
    /// Calls waiting on `changed` (changed only under the state's mutex): a notification costs
    /// a system call, so it is made only when someone waits.
    waiting: AtomicU32,
    /// References held by stored values that contain proxies: per value's bytes, one list of
    /// objects per stored copy. Locked only with the state's mutex held.
    held: Mutex<Held>,
    /// Whether `held` has entries (changed, like it, only under the state's mutex), so that
    /// calls on objects without stored proxies never lock it.
    holds: AtomicBool,
}

/// See [`Object::held`]: per value's bytes, one list of referenced objects per stored copy.
type Held = HashMap<Vec<u8>, Vec<Vec<ObjectId>>>;

/// Values of a call that hold proxies, with the objects those refer to.
pub(crate) type Embedded = Vec<(Vec<u8>, Vec<ObjectId>)>;

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Object").field("kind", &self.kind).finish_non_exhaustive()
    }
}

/// What a blocked call needs to know about the world: whether to give up.
pub(crate) trait Abort {
    /// The client went away, or the server shuts down.
    fn aborted(&self) -> bool;
}

fn ok() -> Response {
    Response::Ok
}

fn err(e: WireError) -> Response {
    Response::Err(e)
}

fn value(v: Vec<u8>) -> Response {
    Response::Value(Bytes::from(v))
}

/// A Python-style index (negative counts from the end) into `len` items.
fn index(i: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let i = if i < 0 { i + len } else { i };
    (0..len).contains(&i).then_some(i as usize)
}

/// At most 60 characters of a value's `Debug` form: a method refused with a large argument costs
/// no more than its name.
fn short_debug(value: &dyn std::fmt::Debug) -> String {
    struct Bounded(String);
    impl std::fmt::Write for Bounded {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = 60usize.saturating_sub(self.0.len());
            if s.len() > room {
                let cut = (0..=room).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                self.0.push_str(&s[..cut]);
                return Err(std::fmt::Error);
            }
            self.0.push_str(s);
            Ok(())
        }
    }
    let mut out = Bounded(String::new());
    if std::fmt::write(&mut out, format_args!("{value:?}")).is_err() {
        out.0.push('…');
    }
    out.0
}

fn deadline(timeout: Millis) -> Option<Instant> {
    timeout.and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)))
}

/// The answer to a method the object's kind does not have.
fn not_allowed(method: &Method) -> (Response, bool) {
    (err(WireError::MethodNotAllowed(short_debug(method))), false)
}

impl Object {
    pub(crate) fn new(kind: Kind, state: State) -> Self {
        Object {
            kind,
            state: Mutex::new(state),
            changed: Condvar::new(),
            waiting: AtomicU32::new(0),
            held: Mutex::new(HashMap::new()),
            holds: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every call waiting on this object (a change, or the server shutting down).
    pub(crate) fn wake_all(&self) {
        self.changed.notify_all();
    }

    /// After a change (made under the mutex, now released): wakes the waiters, if any. A call
    /// that starts waiting after the change sees it before it waits.
    fn notify(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.changed.notify_all();
        }
    }

    /// Waits on the condition variable until `ready` is true, the deadline passes (`Timeout`) or
    /// the call is aborted (`ShutDown`). Looks at the abort condition every slice.
    fn wait_until<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        deadline: Option<Instant>,
        abort: &dyn Abort,
        mut ready: impl FnMut(&mut State) -> bool,
    ) -> Result<MutexGuard<'a, State>, (MutexGuard<'a, State>, WireError)> {
        loop {
            if ready(&mut state) {
                return Ok(state);
            }
            if abort.aborted() {
                return Err((state, WireError::ShutDown));
            }
            let now = Instant::now();
            let slice = match deadline {
                Some(d) if d <= now => return Err((state, WireError::Timeout)),
                Some(d) => (d - now).min(SLICE),
                None => SLICE,
            };
            self.waiting.fetch_add(1, Ordering::SeqCst);
            state = self.changed.wait_timeout(state, slice).unwrap_or_else(PoisonError::into_inner).0;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Releases what `session` holds (its client is gone): locks owned by its threads. A
    /// semaphore's permits are not tracked by owner.
    pub(crate) fn release_session(&self, session: SessionId) {
        let mut state = self.lock();
        if let State::Lock { owner, count, .. } = &mut *state {
            if owner.is_some_and(|o| o.session == session) {
                tracing::info!("a lock held by a client that went away was released");
                *owner = None;
                *count = 0;
                drop(state);
                self.notify();
            }
        }
    }
    /// Runs a method. Returns the answer, the references handed to the caller with it, and those
    /// to release.
    pub(crate) fn call(
        &self,
        method: Method,
        embedded: Embedded,
        abort: &dyn Abort,
    ) -> (Response, Vec<ObjectId>, Vec<ObjectId>) {
        let response = match method {
            Method::QueuePut { value, block, timeout } => {
                self.queue_put(value.into_vec(), embedded, block, timeout, abort)
            }
            Method::QueueGet { block, timeout } => self.queue_get(block, timeout, abort),
            Method::QueueJoin { timeout } => return (self.queue_join(timeout, abort), vec![], vec![]),
            Method::Acquire { owner, block, timeout } => {
                return (self.acquire(owner, block, timeout, abort), vec![], vec![])
            }
            Method::EventWait { timeout } => return (self.event_wait(timeout, abort), vec![], vec![]),
            Method::CondWait { owner, timeout } => {
                return (self.cond_wait(owner, timeout, abort), vec![], vec![])
            }
            Method::BarrierWait { timeout } => return (self.barrier_wait(timeout, abort), vec![], vec![]),
            method => {
                let mut state = self.lock();
                self.register(embedded);
                let (response, changed) = Self::call_now(&mut state, method);
                let (moved, released) = self.reconcile(&state, &response);
                drop(state);
                if changed {
                    self.notify();
                }
                return (response, moved, released);
            }
        };
        let state = self.lock();
        let (moved, released) = self.reconcile(&state, &response);
        (response, moved, released)
    }

    /// The methods that never wait: the state goes to the function of the object's kind.
    /// Returns the response and whether waiters should look again.
    fn call_now(state: &mut State, method: Method) -> (Response, bool) {
        match state {
            State::Dict(d) => Self::dict_call(d, method),
            State::List { items, version } => Self::list_call(items, version, method),
            State::Namespace(ns) => Self::namespace_call(ns, method),
            State::Value(v) => Self::value_call(v, method),
            State::Array(a) => Self::array_call(a, method),
            State::Queue { items, unfinished, joinable, .. } => {
                Self::queue_call(items, unfinished, *joinable, method)
            }
            State::Lock { owner, count, reentrant } => Self::lock_call(owner, count, *reentrant, method),
            State::Semaphore { value, initial, bounded } => {
                Self::semaphore_call(value, *initial, *bounded, method)
            }
            State::Event(flag) => Self::event_call(flag, method),
            State::Condition { lock, waiting, notified, .. } => {
                Self::condition_call(lock, waiting, notified, method)
            }
            State::Barrier { parties, waiting, generation, broken, resets } => {
                Self::barrier_call(*parties, waiting, generation, broken, resets, method)
            }
            State::Custom(object) => Self::custom_call(object.as_mut(), method),
        }
    }
}
