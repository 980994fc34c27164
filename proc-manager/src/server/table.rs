//! The table of objects, sessions, exported references and names, and the requests that change
//! it: one function per request, each run with the table locked (a call on an object's method
//! runs in `server::call`, with the table unlocked while the method runs).

use std::collections::HashMap;
use std::sync::Arc;

use crate::object::{Embedded, Object, OrderedMap, State};
use crate::registry::Factory;
use crate::wire::{Bytes, Kind, ObjectId, Response, SessionId, WireError};

/// The registered types a server can make: per name, the factory and the Rust type's name.
pub(crate) type Types = HashMap<String, (Factory, String)>;

/// An object in the table, with its count of references.
struct Entry {
    object: Arc<Object>,
    refs: u64,
}

/// A client process: its open connections and the references it holds.
#[derive(Default)]
struct Session {
    conns: u32,
    refs: HashMap<ObjectId, u64>,
}

/// Everything a server keeps: objects, sessions, exported references, names.
#[derive(Default)]
pub(super) struct Table {
    next: ObjectId,
    objects: HashMap<ObjectId, Entry>,
    /// References on their way to another process, by token.
    exported: HashMap<u64, ObjectId>,
    next_token: u64,
    sessions: HashMap<SessionId, Session>,
    names: HashMap<String, ObjectId>,
}

impl Table {
    /// Drops `n` references of `id`; removes the object with its last one.
    pub(super) fn release(&mut self, id: ObjectId, n: u64) {
        let gone = match self.objects.get_mut(&id) {
            Some(e) => {
                e.refs = e.refs.saturating_sub(n);
                e.refs == 0
            }
            None => false,
        };
        if gone {
            if let Some(e) = self.objects.remove(&id) {
                tracing::debug!(id, "manager object freed");
                e.object.wake_all();
                // A condition holds a reference to its lock, stored values to their proxies' objects.
                if let Kind::Condition { lock } = e.object.kind {
                    self.release(lock, 1);
                }
                for held in e.object.take_held() {
                    self.release(held, 1);
                }
            }
        }
    }

    fn take_ref(&mut self, session: SessionId, id: ObjectId) {
        if let Some(e) = self.objects.get_mut(&id) {
            e.refs += 1;
            *self.sessions.entry(session).or_default().refs.entry(id).or_default() += 1;
        }
    }

    /// A new connection of `session`.
    pub(super) fn open_connection(&mut self, session: SessionId) {
        self.sessions.entry(session).or_default().conns += 1;
    }

    /// A connection of `session` closed. When it was the session's last, the session ends: its
    /// references are dropped, and the objects are returned, so that the caller (with the table
    /// unlocked) releases the locks the session's threads held.
    pub(super) fn close_connection(&mut self, session: SessionId) -> Option<Vec<Arc<Object>>> {
        let ended = match self.sessions.get_mut(&session) {
            Some(s) => {
                s.conns = s.conns.saturating_sub(1);
                s.conns == 0
            }
            None => false,
        };
        if !ended {
            return None;
        }
        let s = self.sessions.remove(&session)?;
        let objects: Vec<Arc<Object>> = self.objects.values().map(|e| e.object.clone()).collect();
        for (id, n) in s.refs {
            self.release(id, n);
        }
        Some(objects)
    }

    /// Wakes every blocked call (the server shuts down), so that its client learns the news.
    pub(super) fn wake_all(&self) {
        for e in self.objects.values() {
            e.object.wake_all();
        }
    }

    /// `Request::Create`.
    pub(super) fn create(
        &mut self,
        types: &Types,
        session: SessionId,
        kind: Kind,
        init: Option<Bytes>,
    ) -> Response {
        let state = match new_state(types, self, &kind, init) {
            Ok(s) => s,
            Err(e) => return Response::Err(e),
        };
        if let Kind::Condition { lock } = kind {
            if let Some(e) = self.objects.get_mut(&lock) {
                e.refs += 1;
            }
        }
        self.next += 1;
        let id = self.next;
        self.objects.insert(id, Entry { object: Arc::new(Object::new(kind, state)), refs: 0 });
        self.take_ref(session, id);
        Response::Created(id)
    }

    /// `Request::IncRef`.
    pub(super) fn inc_ref(&mut self, session: SessionId, id: ObjectId) -> Response {
        if !self.objects.contains_key(&id) {
            return Response::Err(WireError::NoSuchObject);
        }
        self.take_ref(session, id);
        Response::Ok
    }

    /// `Request::DecRef`.
    pub(super) fn dec_ref(&mut self, session: SessionId, id: ObjectId) -> Response {
        let held = self.sessions.get_mut(&session).and_then(|s| s.refs.get_mut(&id)).map(|n| {
            *n -= 1;
            *n
        });
        match held {
            Some(left) => {
                if left == 0 {
                    if let Some(s) = self.sessions.get_mut(&session) {
                        s.refs.remove(&id);
                    }
                }
                self.release(id, 1);
                Response::Ok
            }
            None => Response::Err(WireError::NoSuchObject),
        }
    }

    /// `Request::Export`: a reference on its way to another process, held under a token.
    pub(super) fn export(&mut self, id: ObjectId) -> Response {
        match self.objects.get_mut(&id) {
            Some(e) => {
                e.refs += 1;
                self.next_token += 1;
                let token = self.next_token;
                self.exported.insert(token, id);
                Response::Count(token)
            }
            None => Response::Err(WireError::NoSuchObject),
        }
    }

    /// `Request::Adopt`: `session` takes the reference exported under `token`.
    pub(super) fn adopt(&mut self, session: SessionId, token: u64) -> Response {
        let Some(id) = self.exported.remove(&token) else {
            return Response::Err(WireError::NoSuchObject);
        };
        let Some(kind) = self.objects.get(&id).map(|e| e.object.kind.clone()) else {
            return Response::Err(WireError::NoSuchObject);
        };
        *self.sessions.entry(session).or_default().refs.entry(id).or_default() += 1;
        Response::Found { object: id, kind }
    }

    /// `Request::Publish`.
    pub(super) fn publish(&mut self, name: String, object: ObjectId) -> Response {
        let Some(e) = self.objects.get_mut(&object) else {
            return Response::Err(WireError::NoSuchObject);
        };
        e.refs += 1;
        if let Some(old) = self.names.insert(name, object) {
            self.release(old, 1);
        }
        Response::Ok
    }

    /// `Request::Lookup`.
    pub(super) fn lookup(&mut self, session: SessionId, name: &str) -> Response {
        let Some(&id) = self.names.get(name) else { return Response::Err(WireError::NoSuchObject) };
        let Some(kind) = self.objects.get(&id).map(|e| e.object.kind.clone()) else {
            return Response::Err(WireError::NoSuchObject);
        };
        self.take_ref(session, id);
        Response::Found { object: id, kind }
    }

    /// `Request::CountObjects`.
    pub(super) fn count_objects(&self) -> Response {
        Response::Count(self.objects.len() as u64)
    }

    /// The object a `Request::Call` names.
    pub(super) fn object(&self, id: ObjectId) -> Option<Arc<Object>> {
        self.objects.get(&id).map(|e| e.object.clone())
    }

    /// The exported references of proxies inside a call's values, which become the object's.
    pub(super) fn embed(&mut self, embedded: Vec<(Bytes, Vec<u64>)>) -> Embedded {
        embedded
            .into_iter()
            .map(|(bytes, tokens)| {
                let ids = tokens.iter().filter_map(|t| self.exported.remove(t)).collect();
                (bytes.into_vec(), ids)
            })
            .collect()
    }

    /// After a call: the references its answer handed over go to the caller's session (the client
    /// drops them once the proxies it decoded took their own).
    pub(super) fn hand_over(&mut self, session: SessionId, moved: &[ObjectId]) {
        let session_refs = &mut self.sessions.entry(session).or_default().refs;
        for id in moved {
            *session_refs.entry(*id).or_default() += 1;
        }
    }
}

/// The state of a new object of `kind`: a condition's lock must be here, a registered type
/// registered under the same Rust type.
fn new_state(types: &Types, table: &Table, kind: &Kind, init: Option<Bytes>) -> Result<State, WireError> {
    let init = init.map(Bytes::into_vec);
    Ok(match kind {
        Kind::Dict => State::Dict(OrderedMap::default()),
        Kind::List => State::List { items: Vec::new(), version: 0 },
        Kind::Namespace => State::Namespace(Default::default()),
        Kind::Value => State::Value(init.unwrap_or_default()),
        Kind::Array => {
            let items: Vec<Bytes> = proc_core::codec::from_bytes(&init.unwrap_or_default())
                .map_err(|e| WireError::Remote(format!("the array's values: {e}")))?;
            State::Array(items.into_iter().map(Bytes::into_vec).collect())
        }
        Kind::Queue { maxsize, joinable } => {
            State::Queue { items: Default::default(), maxsize: *maxsize, unfinished: 0, joinable: *joinable }
        }
        Kind::Lock => State::Lock { owner: None, count: 0, reentrant: false },
        Kind::RLock => State::Lock { owner: None, count: 0, reentrant: true },
        Kind::Semaphore { value, bounded } => {
            State::Semaphore { value: *value, initial: *value, bounded: *bounded }
        }
        Kind::Event => State::Event(false),
        Kind::Condition { lock } => {
            let lock = table.objects.get(lock).ok_or(WireError::NoSuchObject)?;
            if !matches!(lock.object.kind, Kind::Lock | Kind::RLock) {
                return Err(WireError::MethodNotAllowed("a condition needs a Lock or an RLock".into()));
            }
            State::Condition {
                lock: lock.object.clone(),
                next: 0,
                waiting: Default::default(),
                notified: Default::default(),
            }
        }
        Kind::Barrier { parties } => State::Barrier {
            parties: (*parties).max(1),
            waiting: 0,
            generation: 0,
            broken: false,
            resets: Default::default(),
        },
        Kind::Custom { name, type_name } => {
            let (factory, registered) = types
                .get(name)
                .ok_or_else(|| WireError::MethodNotAllowed(format!("no registered type {name:?}")))?;
            if registered != type_name {
                return Err(WireError::MethodNotAllowed(format!(
                    "{name:?} is registered as {registered}, not {type_name}"
                )));
            }
            State::Custom(factory(&init.unwrap_or_default())?)
        }
    })
}
