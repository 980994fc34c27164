//! The reference every proxy wraps ([`Handle`]): its calls to the manager, the encoding of the
//! values it sends (a value holding proxies is remembered with their export tokens, so that the
//! object storing it keeps their references), and its form on the wire.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::auth::AuthKey;
use crate::client::{Address, Client, Undo};
use crate::error::{Error, Result};
use crate::wire::{Bytes, Kind, Method, ObjectId, Owner, Request, Response};

thread_local! {
    /// While a value is encoded: the export tokens of the proxies inside it.
    static TOKENS: std::cell::RefCell<Option<Vec<u64>>> = const { std::cell::RefCell::new(None) };
    /// The values encoded for the next call that hold proxies, with their tokens.
    static EMBEDDED: std::cell::RefCell<Vec<(Bytes, Vec<u64>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Encodes a value for a call; a value holding proxies is remembered for the call, so that the
/// object keeps their references while it stores the value.
pub(super) fn enc<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    let previous = TOKENS.with(|t| t.borrow_mut().replace(Vec::new()));
    let bytes = proc_core::codec::to_vec(value).map(Bytes::from).map_err(Error::Serialize);
    let tokens = TOKENS.with(|t| std::mem::replace(&mut *t.borrow_mut(), previous)).unwrap_or_default();
    let bytes = bytes?;
    if !tokens.is_empty() {
        EMBEDDED.with(|e| e.borrow_mut().push((bytes.clone(), tokens)));
    }
    Ok(bytes)
}

/// Takes the values with proxies encoded for this call.
fn take_embedded() -> Vec<(Bytes, Vec<u64>)> {
    EMBEDDED.with(|e| std::mem::take(&mut *e.borrow_mut()))
}

/// References moved to this session with an answer: dropped once the answer is decoded (the
/// proxies decoded from it took references of their own).
struct Moved {
    client: Arc<Client>,
    ids: Vec<ObjectId>,
}

impl Drop for Moved {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.client.call(&Request::DecRef(*id));
        }
    }
}

pub(super) fn dec<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    proc_core::codec::from_bytes(bytes).map_err(Error::Serialize)
}

pub(super) fn unexpected(r: Response) -> Error {
    Error::protocol(format!("unexpected answer {r:?}"))
}

/// A new lock owner's number in this process: one per thread, and one per async acquire.
fn next_owner() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// This thread's identity as a lock owner.
fn owner(client: &Client) -> Owner {
    thread_local! {
        static ID: u64 = next_owner();
    }
    Owner { session: client.session(), thread: ID.with(|id| *id) }
}

/// A reference to an object on a manager, held by this process.
pub(crate) struct Handle {
    /// The client of the process that holds the reference. A copy inherited through fork finds
    /// its parent's here, and takes a reference of its own on first use.
    client: Mutex<Arc<Client>>,
    id: ObjectId,
    kind: Kind,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let client = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Handle").field("address", &client.address).field("id", &self.id).finish()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // A copy inherited through fork holds no reference of its own (until it takes one).
        let client = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if client.is_local() {
            let _ = client.call(&Request::DecRef(self.id));
        }
    }
}

impl Handle {
    pub(crate) fn new(client: Arc<Client>, id: ObjectId, kind: Kind) -> Arc<Self> {
        Arc::new(Handle { client: Mutex::new(client), id, kind })
    }

    /// The object's id on its manager.
    pub(super) fn id(&self) -> ObjectId {
        self.id
    }

    /// This process's client, with this process's reference: a handle inherited through fork
    /// connects (a session of its own) and takes one first.
    fn client(&self) -> Result<Arc<Client>> {
        let mut client = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if !client.is_local() {
            let mine = Client::get(&client.address, &client.key)?;
            mine.call(&Request::IncRef(self.id))?;
            *client = mine;
        }
        Ok(client.clone())
    }

    /// The lock owner this thread is, on this object's manager.
    pub(super) fn owner(&self) -> Result<Owner> {
        let client = self.client()?;
        Ok(owner(&client))
    }

    /// Calls a method; the second value holds references moved to this session until the
    /// answer is decoded.
    fn call_moved(&self, method: Method) -> Result<(Response, Option<Moved>)> {
        self.call_moved_undoable(method, Undo::Nothing)
    }

    /// [`call_moved`](Self::call_moved), with what undoes the call should the manager grant it
    /// after this process gave up waiting for the answer (see [`Client::call_undoable`]).
    fn call_moved_undoable(&self, method: Method, undo: Undo) -> Result<(Response, Option<Moved>)> {
        let embedded = take_embedded();
        let client = self.client()?;
        match client.call_undoable(&Request::Call { object: self.id, method, embedded }, undo)? {
            Response::Moved { ids, inner } => Ok((*inner, Some(Moved { client, ids }))),
            r => Ok((r, None)),
        }
    }

    pub(super) fn call(&self, method: Method) -> Result<Response> {
        Ok(self.call_moved(method)?.0)
    }

    pub(super) fn ok(&self, method: Method) -> Result<()> {
        match self.call(method)? {
            Response::Ok => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    pub(super) fn value<T: DeserializeOwned>(&self, method: Method) -> Result<T> {
        self.value_undoable(method, Undo::Nothing)
    }

    /// [`value`](Self::value) of a call that `undo` undoes if this process gives up waiting.
    pub(super) fn value_undoable<T: DeserializeOwned>(&self, method: Method, undo: Undo) -> Result<T> {
        let (response, _moved) = self.call_moved_undoable(method, undo)?;
        match response {
            Response::Value(v) => dec(&v),
            r => Err(unexpected(r)),
        }
    }

    pub(super) fn maybe<T: DeserializeOwned>(&self, method: Method) -> Result<Option<T>> {
        let (response, _moved) = self.call_moved(method)?;
        match response {
            Response::MaybeValue(v) => v.map(|v| dec(&v)).transpose(),
            r => Err(unexpected(r)),
        }
    }

    pub(super) fn values<T: DeserializeOwned>(&self, method: Method) -> Result<Vec<T>> {
        let (response, _moved) = self.call_moved(method)?;
        match response {
            Response::Values(vs) => vs.iter().map(|v| dec(v)).collect(),
            r => Err(unexpected(r)),
        }
    }

    pub(super) fn boolean(&self, method: Method) -> Result<bool> {
        self.boolean_undoable(method, Undo::Nothing)
    }

    /// [`boolean`](Self::boolean) of a call that `undo` undoes if this process gives up waiting.
    pub(super) fn boolean_undoable(&self, method: Method, undo: Undo) -> Result<bool> {
        match self.call_moved_undoable(method, undo)?.0 {
            Response::Bool(b) => Ok(b),
            r => Err(unexpected(r)),
        }
    }

    pub(super) fn count(&self, method: Method) -> Result<u64> {
        match self.call(method)? {
            Response::Count(n) => Ok(n),
            r => Err(unexpected(r)),
        }
    }
}

/// The async calls (feature `tokio`): as the blocking ones, through [`Client::call_async`]; `undo`
/// says what undoes a call whose future is dropped before its answer.
#[cfg(feature = "tokio")]
impl Handle {
    /// An owner of its own, for one async acquire: a task may move between threads, so it is no
    /// thread's (and two tasks on one thread are two owners).
    pub(super) fn fresh_owner(&self) -> Result<Owner> {
        let client = self.client()?;
        Ok(Owner { session: client.session(), thread: next_owner() })
    }

    async fn call_moved_async(&self, method: Method, undo: Undo) -> Result<(Response, Option<Moved>)> {
        // Taken before the first await: the values were encoded on this thread, in this poll.
        let embedded = take_embedded();
        let client = self.client()?;
        match client.call_async(&Request::Call { object: self.id, method, embedded }, undo).await? {
            Response::Moved { ids, inner } => Ok((*inner, Some(Moved { client, ids }))),
            r => Ok((r, None)),
        }
    }

    pub(super) async fn ok_async(&self, method: Method, undo: Undo) -> Result<()> {
        match self.call_moved_async(method, undo).await?.0 {
            Response::Ok => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    pub(super) async fn value_async<T: DeserializeOwned>(&self, method: Method, undo: Undo) -> Result<T> {
        let (response, _moved) = self.call_moved_async(method, undo).await?;
        match response {
            Response::Value(v) => dec(&v),
            r => Err(unexpected(r)),
        }
    }

    pub(super) async fn maybe_async<T: DeserializeOwned>(&self, method: Method) -> Result<Option<T>> {
        let (response, _moved) = self.call_moved_async(method, Undo::Nothing).await?;
        match response {
            Response::MaybeValue(v) => v.map(|v| dec(&v)).transpose(),
            r => Err(unexpected(r)),
        }
    }

    pub(super) async fn boolean_async(&self, method: Method, undo: Undo) -> Result<bool> {
        match self.call_moved_async(method, undo).await?.0 {
            Response::Bool(b) => Ok(b),
            r => Err(unexpected(r)),
        }
    }

    pub(super) async fn count_async(&self, method: Method, undo: Undo) -> Result<u64> {
        match self.call_moved_async(method, undo).await?.0 {
            Response::Count(n) => Ok(n),
            r => Err(unexpected(r)),
        }
    }
}

/// A proxy as it travels.
#[derive(Serialize, Deserialize)]
struct WireProxy {
    address: Address,
    /// Sent only with a handle transfer (a start argument, a multiproc connection).
    key: Option<AuthKey>,
    id: ObjectId,
    kind: Kind,
    /// For a transfer: the export the receiver adopts. Stored in another object: none (the
    /// export keeps the object until the manager shuts down; a reader takes a reference).
    token: Option<u64>,
}

impl Serialize for Handle {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let transfer = proc_core::handle::in_transfer();
        let client =
            self.client().map_err(|e| S::Error::custom(format!("cannot export a manager proxy: {e}")))?;
        // The reference travels with the bytes: held on the manager until the receiver adopts it
        // with the token (or, stored in another object, until the manager shuts down).
        let token = match client.call(&Request::Export(self.id)) {
            Ok(Response::Count(token)) => token,
            Ok(r) => return Err(S::Error::custom(format!("cannot export a manager proxy: {r:?}"))),
            Err(e) => return Err(S::Error::custom(format!("cannot export a manager proxy: {e}"))),
        };
        if !transfer {
            // Inside a value of a call: the object that stores the value keeps the reference.
            TOKENS.with(|t| {
                if let Some(tokens) = t.borrow_mut().as_mut() {
                    tokens.push(token);
                }
            });
        }
        WireProxy {
            address: client.address.clone(),
            key: transfer.then(|| client.key.clone()),
            id: self.id,
            kind: self.kind.clone(),
            token: transfer.then_some(token),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let wire = WireProxy::deserialize(deserializer)?;
        let client = match (&wire.key, Client::known(&wire.address)) {
            (Some(key), _) => Client::get(&wire.address, key).map_err(D::Error::custom)?,
            (None, Some(c)) => c,
            (None, None) => return Err(D::Error::custom(
                "a manager proxy from an unknown manager: receive a proxy of it as a start argument first",
            )),
        };
        let request = match wire.token {
            Some(token) => {
                // The token is good for one adoption: a second decode of these bytes (a second
                // `join` of the process that returned them) gets `ResultTaken` instead.
                proc_core::handle::single_use();
                Request::Adopt(token)
            }
            None => Request::IncRef(wire.id),
        };
        client.call(&request).map_err(D::Error::custom)?;
        Ok(Handle { client: Mutex::new(client), id: wire.id, kind: wire.kind })
    }
}
