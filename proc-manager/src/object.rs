//! The objects a server keeps, and their methods. Values are opaque bytes: the types live in the
//! clients' proxies, so no input makes the server run code (registered types decode their own
//! typed requests, and refuse anything else).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::registry::Erased;
use crate::wire::{Bytes, Kind, Method, Millis, ObjectId, Owner, Response, SessionId, WireError};

/// How often a blocked call looks whether its client is still there, and whether the server
/// shuts down.
const SLICE: Duration = Duration::from_millis(100);

/// A dict that keeps insertion order, as Python's.
#[derive(Debug, Default)]
pub(crate) struct OrderedMap {
    entries: HashMap<Vec<u8>, (u64, Vec<u8>)>,
    order: BTreeMap<u64, Vec<u8>>,
    next: u64,
}

impl OrderedMap {
    fn get(&self, k: &[u8]) -> Option<&Vec<u8>> {
        self.entries.get(k).map(|(_, v)| v)
    }

    fn insert(&mut self, k: Vec<u8>, v: Vec<u8>) -> Option<Vec<u8>> {
        if let Some((_, old)) = self.entries.get_mut(&k) {
            return Some(std::mem::replace(old, v));
        }
        let seq = self.next;
        self.next += 1;
        self.order.insert(seq, k.clone());
        self.entries.insert(k, (seq, v));
        None
    }

    fn remove(&mut self, k: &[u8]) -> Option<Vec<u8>> {
        let (seq, v) = self.entries.remove(k)?;
        self.order.remove(&seq);
        Some(v)
    }

    fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.order.values().filter_map(|k| self.entries.get(k).map(|(_, v)| (k, v)))
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }
}

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
    holds: std::sync::atomic::AtomicBool,
}

/// See [`Object::held`].
type Held = HashMap<Vec<u8>, Vec<Vec<ObjectId>>>;

/// Values of a call that hold proxies, with the objects those refer to.
pub(crate) type Embedded = Vec<(Vec<u8>, Vec<ObjectId>)>;

/// How many stored copies of `key` the state holds.
fn occurrences(state: &State, key: &[u8]) -> usize {
    match state {
        State::Dict(d) => d.iter().filter(|(_, v)| v[..] == *key).count(),
        State::List { items, .. } | State::Array(items) => items.iter().filter(|v| v[..] == *key).count(),
        State::Namespace(ns) => ns.values().filter(|v| v[..] == *key).count(),
        State::Value(v) => usize::from(v[..] == *key),
        State::Queue { items, .. } => items.iter().filter(|v| v[..] == *key).count(),
        _ => 0,
    }
}

/// How many copies of `key` an answer hands over.
fn handed_over(response: &Response, key: &[u8]) -> usize {
    match response {
        Response::Value(v) | Response::MaybeValue(Some(v)) => usize::from(v[..] == *key),
        Response::Values(vs) => vs.iter().filter(|v| v[..] == *key).count(),
        _ => 0,
    }
}

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

impl Object {
    pub(crate) fn new(kind: Kind, state: State) -> Self {
        Object {
            kind,
            state: Mutex::new(state),
            changed: Condvar::new(),
            waiting: AtomicU32::new(0),
            held: Mutex::new(HashMap::new()),
            holds: std::sync::atomic::AtomicBool::new(false),
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

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the references of values about to be stored (state's mutex held).
    fn register(&self, embedded: Embedded) {
        if embedded.is_empty() {
            return;
        }
        let mut held = self.held();
        for (bytes, ids) in embedded {
            held.entry(bytes).or_default().push(ids);
        }
        self.holds.store(true, Ordering::Relaxed);
    }

    /// After a call (state's mutex held): the references of stored copies that are gone. Those
    /// whose value the answer hands over are moved (first list), the others released (second).
    fn reconcile(&self, state: &State, response: &Response) -> (Vec<ObjectId>, Vec<ObjectId>) {
        let (mut moved, mut released) = (Vec::new(), Vec::new());
        if !self.holds.load(Ordering::Relaxed) {
            return (moved, released);
        }
        let mut held = self.held();
        for (key, copies) in held.iter_mut() {
            let present = occurrences(state, key);
            let mut handed = handed_over(response, key);
            while copies.len() > present {
                let Some(ids) = copies.pop() else { break };
                if handed > 0 {
                    handed -= 1;
                    moved.extend(ids);
                } else {
                    released.extend(ids);
                }
            }
        }
        held.retain(|_, copies| !copies.is_empty());
        self.holds.store(!held.is_empty(), Ordering::Relaxed);
        (moved, released)
    }

    /// Every reference its stored values hold (the object is being freed).
    pub(crate) fn take_held(&self) -> Vec<ObjectId> {
        let _state = self.lock();
        self.holds.store(false, Ordering::Relaxed);
        self.held().drain().flat_map(|(_, copies)| copies.into_iter().flatten()).collect()
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

    /// The methods that never wait. Returns the response and whether waiters should look again.
    fn call_now(state: &mut State, method: Method) -> (Response, bool) {
        let not_allowed = |m: &Method| (err(WireError::MethodNotAllowed(short_debug(m))), false);
        match (state, method) {
            (State::Dict(d), Method::DictGet(k)) => {
                (Response::MaybeValue(d.get(&k).cloned().map(Bytes::from)), false)
            }
            (State::Dict(d), Method::DictInsert(k, v)) => {
                (Response::MaybeValue(d.insert(k.into_vec(), v.into_vec()).map(Bytes::from)), false)
            }
            (State::Dict(d), Method::DictRemove(k)) => {
                (Response::MaybeValue(d.remove(&k).map(Bytes::from)), false)
            }
            (State::Dict(d), Method::DictContains(k)) => (Response::Bool(d.get(&k).is_some()), false),
            (State::Dict(d), Method::DictKeys) => {
                (Response::Values(d.iter().map(|(k, _)| Bytes::from(k.clone())).collect()), false)
            }
            (State::Dict(d), Method::DictValues) => {
                (Response::Values(d.iter().map(|(_, v)| Bytes::from(v.clone())).collect()), false)
            }
            (State::Dict(d), Method::DictItems) => (
                Response::Pairs(
                    d.iter().map(|(k, v)| (Bytes::from(k.clone()), Bytes::from(v.clone()))).collect(),
                ),
                false,
            ),
            (State::Dict(d), Method::DictUpdate(pairs)) => {
                for (k, v) in pairs {
                    d.insert(k.into_vec(), v.into_vec());
                }
                (ok(), false)
            }
            (State::Dict(d), Method::DictSetDefault(k, v)) => {
                let k = k.into_vec();
                let current = match d.get(&k) {
                    Some(existing) => existing.clone(),
                    None => {
                        let v = v.into_vec();
                        d.insert(k, v.clone());
                        v
                    }
                };
                (value(current), false)
            }
            (State::Dict(d), Method::Len) => (Response::Count(d.len() as u64), false),
            (State::Dict(d), Method::Clear) => {
                d.clear();
                (ok(), false)
            }
            (State::List { items, version }, method) => Self::list(items, version, method),
            (State::Namespace(ns), Method::NsGet(name)) => match ns.get(&name) {
                Some(v) => (value(v.clone()), false),
                None => (err(WireError::KeyNotFound), false),
            },
            (State::Namespace(ns), Method::NsSet(name, v)) => {
                ns.insert(name, v.into_vec());
                (ok(), false)
            }
            (State::Namespace(ns), Method::NsDel(name)) => match ns.remove(&name) {
                Some(_) => (ok(), false),
                None => (err(WireError::KeyNotFound), false),
            },
            (State::Namespace(ns), Method::NsItems) => (
                Response::Named(ns.iter().map(|(k, v)| (k.clone(), Bytes::from(v.clone()))).collect()),
                false,
            ),
            (State::Value(v), Method::ValueGet) => (value(v.clone()), false),
            (State::Value(v), Method::ValueSet(new)) => {
                *v = new.into_vec();
                (ok(), false)
            }
            (State::Array(a), Method::ArrayGet(i)) => match index(i, a.len()) {
                Some(i) => (value(a[i].clone()), false),
                None => (err(WireError::IndexOutOfRange), false),
            },
            (State::Array(a), Method::ArraySet(i, v)) => match index(i, a.len()) {
                Some(i) => {
                    a[i] = v.into_vec();
                    (ok(), false)
                }
                None => (err(WireError::IndexOutOfRange), false),
            },
            (State::Array(a), Method::ArraySnapshot) => {
                (Response::Values(a.iter().cloned().map(Bytes::from).collect()), false)
            }
            (State::Array(a), Method::Len) => (Response::Count(a.len() as u64), false),
            (State::Queue { items, .. }, Method::QueueSize) => (Response::Count(items.len() as u64), false),
            (State::Queue { unfinished, joinable: true, .. }, Method::TaskDone) => {
                if *unfinished == 0 {
                    return (err(WireError::NotHeld), false);
                }
                *unfinished -= 1;
                (ok(), *unfinished == 0)
            }
            (State::Lock { owner, count, reentrant }, Method::Release { owner: who }) => {
                let held_by_caller = owner.is_some_and(|o| o == who);
                match owner {
                    None => (err(WireError::NotHeld), false),
                    // An RLock is released only by its owner; a Lock by anyone (as Python's).
                    Some(_) if *reentrant && !held_by_caller => (err(WireError::NotHeld), false),
                    Some(_) => {
                        *count = count.saturating_sub(1);
                        if *count == 0 || !*reentrant {
                            *owner = None;
                            *count = 0;
                        }
                        (ok(), owner.is_none())
                    }
                }
            }
            (State::Semaphore { value, initial, bounded }, Method::Release { .. }) => {
                if *bounded && *value >= *initial {
                    return (err(WireError::NotHeld), false);
                }
                *value = value.saturating_add(1);
                (ok(), true)
            }
            (State::Semaphore { value, .. }, Method::SemValue) => (Response::Count(u64::from(*value)), false),
            (State::Event(flag), Method::EventSet) => {
                *flag = true;
                (ok(), true)
            }
            (State::Event(flag), Method::EventClear) => {
                *flag = false;
                (ok(), false)
            }
            (State::Event(flag), Method::EventIsSet) => (Response::Bool(*flag), false),
            (State::Condition { lock, waiting, notified, .. }, Method::CondNotify { owner, n }) => {
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
            (State::Barrier { broken, .. }, Method::BarrierAbort) => {
                *broken = true;
                (ok(), true)
            }
            (State::Barrier { waiting, generation, broken, resets, .. }, Method::BarrierReset) => {
                // Parties waiting get BrokenBarrier; the barrier starts afresh.
                if *waiting > 0 {
                    resets.insert(*generation);
                    *generation += 1;
                    *waiting = 0;
                }
                *broken = false;
                (ok(), true)
            }
            (State::Barrier { parties, waiting, broken, .. }, Method::BarrierState) => {
                (Response::Barrier { parties: *parties, waiting: *waiting, broken: *broken }, false)
            }
            (State::Custom(object), Method::Custom { method, args }) => match object.call(&method, &args) {
                Ok(v) => (value(v), true),
                Err(e) => (err(e), false),
            },
            (state, method) => {
                let _ = state;
                not_allowed(&method)
            }
        }
    }

    fn list(items: &mut Vec<Vec<u8>>, version: &mut u64, method: Method) -> (Response, bool) {
        let mut changed = true;
        let response = match method {
            Method::ListAppend(v) => {
                items.push(v.into_vec());
                ok()
            }
            Method::ListExtend(vs) => {
                items.extend(vs.into_iter().map(Bytes::into_vec));
                ok()
            }
            Method::ListGet(i) => {
                changed = false;
                match index(i, items.len()) {
                    Some(i) => value(items[i].clone()),
                    None => err(WireError::IndexOutOfRange),
                }
            }
            Method::ListSet(i, v) => match index(i, items.len()) {
                Some(i) => {
                    items[i] = v.into_vec();
                    ok()
                }
                None => err(WireError::IndexOutOfRange),
            },
            Method::ListInsert(i, v) => {
                // Python clamps insert positions.
                let len = items.len() as i64;
                let pos = if i < 0 { (i + len).max(0) } else { i.min(len) };
                items.insert(pos as usize, v.into_vec());
                ok()
            }
            Method::ListPop(i) => match index(i.unwrap_or(-1), items.len()) {
                Some(i) => value(items.remove(i)),
                None => err(WireError::IndexOutOfRange),
            },
            Method::ListRemove(v) => match items.iter().position(|x| x[..] == v[..]) {
                Some(i) => {
                    items.remove(i);
                    ok()
                }
                None => err(WireError::ValueNotFound),
            },
            Method::ListIndex(v) => {
                changed = false;
                match items.iter().position(|x| x[..] == v[..]) {
                    Some(i) => Response::Count(i as u64),
                    None => err(WireError::ValueNotFound),
                }
            }
            Method::ListSnapshot => {
                changed = false;
                Response::Snapshot {
                    version: *version,
                    items: items.iter().cloned().map(Bytes::from).collect(),
                }
            }
            Method::ListReplace { version: seen, items: new } => {
                if seen != *version {
                    changed = false;
                    Response::Bool(false)
                } else {
                    *items = new.into_iter().map(Bytes::into_vec).collect();
                    Response::Bool(true)
                }
            }
            Method::Len => {
                changed = false;
                Response::Count(items.len() as u64)
            }
            Method::Clear => {
                items.clear();
                ok()
            }
            other => {
                changed = false;
                err(WireError::MethodNotAllowed(short_debug(&other)))
            }
        };
        if changed {
            *version += 1;
        }
        (response, false)
    }

    /// Whether `who` holds this lock.
    fn held_by(&self, who: Owner) -> bool {
        matches!(&*self.lock(), State::Lock { owner: Some(o), .. } if *o == who)
    }

    fn queue_put(
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

    fn queue_get(&self, block: bool, timeout: Millis, abort: &dyn Abort) -> Response {
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

    fn queue_join(&self, timeout: Millis, abort: &dyn Abort) -> Response {
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

    fn acquire(&self, who: Owner, block: bool, timeout: Millis, abort: &dyn Abort) -> Response {
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

    fn event_wait(&self, timeout: Millis, abort: &dyn Abort) -> Response {
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

    fn cond_wait(&self, who: Owner, timeout: Millis, abort: &dyn Abort) -> Response {
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

    fn barrier_wait(&self, timeout: Millis, abort: &dyn Abort) -> Response {
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
