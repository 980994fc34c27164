//! Typed proxies. Each holds a reference to an object on the manager; the object lives while any
//! proxy (in any process) refers to it. Reads return owned copies: only the proxies' methods
//! change the shared object (`dict.get(k)` gives a copy, and changing the copy changes nothing on
//! the manager — Python silently loses `d['k'].append(1)`; here the types make it plain).
//!
//! A proxy is a handle: pass it to a child as a start argument (or through a multiproc
//! connection) and the child reaches the same object. Inside another shared object (a proxy as a
//! dict's value) it is stored as a reference that keeps its object alive while it is stored.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::auth::AuthKey;
use crate::client::{Address, Client};
use crate::error::{Error, Result};
use crate::registry::Shared;
use crate::wire::{Bytes, Kind, Method, ObjectId, Owner, Request, Response};

thread_local! {
    /// While a value is encoded: the export tokens of the proxies inside it.
    static TOKENS: std::cell::RefCell<Option<Vec<u64>>> = const { std::cell::RefCell::new(None) };
    /// The values encoded for the next call that hold proxies, with their tokens.
    static EMBEDDED: std::cell::RefCell<Vec<(Bytes, Vec<u64>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Encodes a value for a call; a value holding proxies is remembered for the call, so that the
/// object keeps their references while it stores the value.
fn enc<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    let previous = TOKENS.with(|t| t.borrow_mut().replace(Vec::new()));
    let bytes = proc_core::codec::to_vec(value).map(Bytes::from).map_err(|e| Error::Serialize(e.to_string()));
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

fn dec<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    proc_core::codec::from_bytes(bytes).map_err(|e| Error::Serialize(e.to_string()))
}

fn unexpected(r: Response) -> Error {
    Error::protocol(format!("unexpected answer {r:?}"))
}

/// This thread's identity as a lock owner.
fn owner(client: &Client) -> Owner {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
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
    fn owner(&self) -> Result<Owner> {
        let client = self.client()?;
        Ok(owner(&client))
    }

    /// Calls a method; the second value holds references moved to this session until the
    /// answer is decoded.
    fn call_moved(&self, method: Method) -> Result<(Response, Option<Moved>)> {
        let embedded = take_embedded();
        let client = self.client()?;
        match client.call(&Request::Call { object: self.id, method, embedded })? {
            Response::Moved { ids, inner } => Ok((*inner, Some(Moved { client, ids }))),
            r => Ok((r, None)),
        }
    }

    fn call(&self, method: Method) -> Result<Response> {
        Ok(self.call_moved(method)?.0)
    }

    fn ok(&self, method: Method) -> Result<()> {
        match self.call(method)? {
            Response::Ok => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    fn value<T: DeserializeOwned>(&self, method: Method) -> Result<T> {
        let (response, _moved) = self.call_moved(method)?;
        match response {
            Response::Value(v) => dec(&v),
            r => Err(unexpected(r)),
        }
    }

    fn maybe<T: DeserializeOwned>(&self, method: Method) -> Result<Option<T>> {
        let (response, _moved) = self.call_moved(method)?;
        match response {
            Response::MaybeValue(v) => v.map(|v| dec(&v)).transpose(),
            r => Err(unexpected(r)),
        }
    }

    fn values<T: DeserializeOwned>(&self, method: Method) -> Result<Vec<T>> {
        let (response, _moved) = self.call_moved(method)?;
        match response {
            Response::Values(vs) => vs.iter().map(|v| dec(v)).collect(),
            r => Err(unexpected(r)),
        }
    }

    fn boolean(&self, method: Method) -> Result<bool> {
        match self.call(method)? {
            Response::Bool(b) => Ok(b),
            r => Err(unexpected(r)),
        }
    }

    fn count(&self, method: Method) -> Result<u64> {
        match self.call(method)? {
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

/// Defines a proxy type: a shared handle, `Clone`, `Debug`, serde as a handle.
macro_rules! proxy {
    ($(#[$meta:meta])* $name:ident $(<$($t:ident),*>)?) => {
        $(#[$meta])*
        pub struct $name $(<$($t),*>)? {
            handle: Arc<Handle>,
            $(_types: PhantomData<fn() -> ($($t,)*)>,)?
        }

        impl $(<$($t),*>)? Clone for $name $(<$($t),*>)? {
            fn clone(&self) -> Self {
                $name { handle: self.handle.clone(), $(_types: PhantomData::<fn() -> ($($t,)*)>,)? }
            }
        }

        impl $(<$($t),*>)? fmt::Debug for $name $(<$($t),*>)? {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.handle).finish()
            }
        }

        impl $(<$($t),*>)? Serialize for $name $(<$($t),*>)? {
            fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                self.handle.serialize(serializer)
            }
        }

        impl<'de $(, $($t),*)?> Deserialize<'de> for $name $(<$($t),*>)? {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let handle = Handle::deserialize(deserializer)?;
                Ok($name { handle: Arc::new(handle), $(_types: PhantomData::<fn() -> ($($t,)*)>,)? })
            }
        }

        impl $(<$($t),*>)? $name $(<$($t),*>)? {
            pub(crate) fn from_handle(handle: Arc<Handle>) -> Self {
                $name { handle, $(_types: PhantomData::<fn() -> ($($t,)*)>,)? }
            }
        }
    };
}

proxy! {
    /// A shared dict (Python's `manager.dict()`), in insertion order. Keys compare by their
    /// serialized bytes.
    ///
    /// # Errors
    ///
    /// Every method: [`Error::Connection`] when the manager is gone, [`Error::Serialize`] for a
    /// value that does not (de)serialize as `K`/`V`; the ones that say so, [`Error::KeyNotFound`].
    Dict<K, V>
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> Dict<K, V> {
    /// A copy of the value of `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.handle.maybe(Method::DictGet(enc(key)?))
    }

    /// Sets `key` (Python's `d[k] = v`); returns the previous value.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        self.handle.maybe(Method::DictInsert(enc(&key)?, enc(&value)?))
    }

    /// Removes `key`; returns its value.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        self.handle.maybe(Method::DictRemove(enc(key)?))
    }

    /// Removes `key` and returns its value (Python's `pop`): [`Error::KeyNotFound`] if absent.
    pub fn pop(&self, key: &K) -> Result<V> {
        self.remove(key)?.ok_or(Error::KeyNotFound)
    }

    /// Whether `key` is there (Python's `in`).
    pub fn contains(&self, key: &K) -> Result<bool> {
        self.handle.boolean(Method::DictContains(enc(key)?))
    }

    /// The number of entries.
    pub fn len(&self) -> Result<usize> {
        Ok(self.handle.count(Method::Len)? as usize)
    }

    /// Whether the dict is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order.
    pub fn keys(&self) -> Result<Vec<K>> {
        self.handle.values(Method::DictKeys)
    }

    /// The values, in insertion order.
    pub fn values(&self) -> Result<Vec<V>> {
        self.handle.values(Method::DictValues)
    }

    /// The entries, in insertion order: a copy of the whole dict in one round trip.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.handle.call(Method::DictItems)? {
            Response::Pairs(pairs) => pairs.iter().map(|(k, v)| Ok((dec(k)?, dec(v)?))).collect(),
            r => Err(unexpected(r)),
        }
    }

    /// Sets many entries in one round trip (Python's `update`).
    pub fn update(&self, entries: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let pairs = entries.into_iter().map(|(k, v)| Ok((enc(&k)?, enc(&v)?))).collect::<Result<Vec<_>>>()?;
        self.handle.ok(Method::DictUpdate(pairs))
    }

    /// The value of `key`, set to `default` first if absent (Python's `setdefault`).
    pub fn setdefault(&self, key: K, default: V) -> Result<V> {
        self.handle.value(Method::DictSetDefault(enc(&key)?, enc(&default)?))
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        self.handle.ok(Method::Clear)
    }
}

proxy! {
    /// A shared list (Python's `manager.list()`). Indices may be negative, as in Python.
    ///
    /// # Errors
    ///
    /// Every method: [`Error::Connection`], [`Error::Serialize`]; those with an index,
    /// [`Error::IndexOutOfRange`]; `remove` and `index`, [`Error::ValueNotFound`].
    List<T>
}

impl<T: Serialize + DeserializeOwned> List<T> {
    /// Appends a value.
    pub fn append(&self, value: T) -> Result<()> {
        self.handle.ok(Method::ListAppend(enc(&value)?))
    }

    /// Appends many values in one round trip.
    pub fn extend(&self, values: impl IntoIterator<Item = T>) -> Result<()> {
        let values = values.into_iter().map(|v| enc(&v)).collect::<Result<Vec<_>>>()?;
        self.handle.ok(Method::ListExtend(values))
    }

    /// A copy of the value at `index`.
    pub fn get(&self, index: i64) -> Result<T> {
        self.handle.value(Method::ListGet(index))
    }

    /// Replaces the value at `index` (Python's `l[i] = v`).
    pub fn set(&self, index: i64, value: T) -> Result<()> {
        self.handle.ok(Method::ListSet(index, enc(&value)?))
    }

    /// Inserts before `index` (clamped, as Python's `insert`).
    pub fn insert(&self, index: i64, value: T) -> Result<()> {
        self.handle.ok(Method::ListInsert(index, enc(&value)?))
    }

    /// Removes and returns the last value.
    pub fn pop(&self) -> Result<T> {
        self.handle.value(Method::ListPop(None))
    }

    /// Removes and returns the value at `index`.
    pub fn pop_at(&self, index: i64) -> Result<T> {
        self.handle.value(Method::ListPop(Some(index)))
    }

    /// Removes the first value equal to `value` (compared serialized).
    pub fn remove(&self, value: &T) -> Result<()> {
        self.handle.ok(Method::ListRemove(enc(value)?))
    }

    /// The index of the first value equal to `value`.
    pub fn index(&self, value: &T) -> Result<usize> {
        Ok(self.handle.count(Method::ListIndex(enc(value)?))? as usize)
    }

    /// The number of values.
    pub fn len(&self) -> Result<usize> {
        Ok(self.handle.count(Method::Len)? as usize)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of every value, in one round trip (Python's `list(l)`).
    pub fn snapshot(&self) -> Result<Vec<T>> {
        Ok(self.snapshot_versioned()?.1)
    }

    fn snapshot_versioned(&self) -> Result<(u64, Vec<T>)> {
        match self.handle.call(Method::ListSnapshot)? {
            Response::Snapshot { version, items } => {
                Ok((version, items.iter().map(|v| dec(v)).collect::<Result<Vec<T>>>()?))
            }
            r => Err(unexpected(r)),
        }
    }

    /// Removes every value.
    pub fn clear(&self) -> Result<()> {
        self.handle.ok(Method::Clear)
    }

    /// Sorts the list in place, atomically: sorted here, then stored only if no one changed
    /// the list meanwhile (else tried again).
    pub fn sort(&self) -> Result<()>
    where
        T: Ord,
    {
        loop {
            let (version, mut items) = self.snapshot_versioned()?;
            items.sort();
            let items = items.iter().map(enc).collect::<Result<Vec<_>>>()?;
            if self.handle.boolean(Method::ListReplace { version, items })? {
                return Ok(());
            }
        }
    }
}

proxy! {
    /// A shared namespace (Python's `manager.Namespace()`): named fields of any serde type.
    ///
    /// # Errors
    ///
    /// Every method: [`Error::Connection`], [`Error::Serialize`] (also for a field read as
    /// another type than it was set); `get` and `del`, [`Error::KeyNotFound`].
    Namespace
}

impl Namespace {
    /// A copy of field `name`.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        self.handle.value(Method::NsGet(name.to_string()))
    }

    /// Sets field `name`.
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        self.handle.ok(Method::NsSet(name.to_string(), enc(value)?))
    }

    /// Deletes field `name`.
    pub fn del(&self, name: &str) -> Result<()> {
        self.handle.ok(Method::NsDel(name.to_string()))
    }

    /// The names of the fields, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        match self.handle.call(Method::NsItems)? {
            Response::Named(items) => Ok(items.into_iter().map(|(n, _)| n).collect()),
            r => Err(unexpected(r)),
        }
    }
}

proxy! {
    /// A shared value (Python's `manager.Value(typecode, value)`, of any serde type).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`], [`Error::Serialize`].
    Value<T>
}

impl<T: Serialize + DeserializeOwned> Value<T> {
    /// A copy of the value.
    pub fn get(&self) -> Result<T> {
        self.handle.value(Method::ValueGet)
    }

    /// Replaces the value.
    pub fn set(&self, value: &T) -> Result<()> {
        self.handle.ok(Method::ValueSet(enc(value)?))
    }
}

proxy! {
    /// A shared fixed-length array (Python's `manager.Array(typecode, sequence)`).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`], [`Error::Serialize`]; with an index, [`Error::IndexOutOfRange`].
    Array<T>
}

impl<T: Serialize + DeserializeOwned> Array<T> {
    /// A copy of the value at `index`.
    pub fn get(&self, index: i64) -> Result<T> {
        self.handle.value(Method::ArrayGet(index))
    }

    /// Replaces the value at `index`.
    pub fn set(&self, index: i64, value: &T) -> Result<()> {
        self.handle.ok(Method::ArraySet(index, enc(value)?))
    }

    /// The length.
    pub fn len(&self) -> Result<usize> {
        Ok(self.handle.count(Method::Len)? as usize)
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of every value.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.handle.values(Method::ArraySnapshot)
    }
}

proxy! {
    /// A queue kept by the manager (Python's `manager.Queue()`): reachable by any client of
    /// the manager, also across machines.
    ///
    /// # Errors
    ///
    /// Every method: [`Error::Connection`], [`Error::Serialize`]; `put_nowait`/`put_timeout`,
    /// [`Error::Full`]; `get_nowait`/`get_timeout`, [`Error::Empty`]; the blocking ones,
    /// [`Error::ShutDown`] when the manager shuts down meanwhile.
    Queue<T>
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    fn put_with(&self, value: &T, block: bool, timeout: Option<Duration>) -> Result<()> {
        let method = Method::QueuePut { value: enc(value)?, block, timeout: Client::millis(timeout) };
        self.handle.ok(method)
    }

    fn get_with(&self, block: bool, timeout: Option<Duration>) -> Result<T> {
        self.handle.value(Method::QueueGet { block, timeout: Client::millis(timeout) })
    }

    /// Puts a value, waiting for room.
    pub fn put(&self, value: T) -> Result<()> {
        self.put_with(&value, true, None)
    }

    /// Puts a value, waiting at most `timeout` for room.
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<()> {
        self.put_with(&value, true, Some(timeout))
    }

    /// Puts a value if there is room now.
    pub fn put_nowait(&self, value: T) -> Result<()> {
        self.put_with(&value, false, None)
    }

    /// Takes a value, waiting for one.
    pub fn get(&self) -> Result<T> {
        self.get_with(true, None)
    }

    /// Takes a value, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_with(true, Some(timeout))
    }

    /// Takes a value if there is one now.
    pub fn get_nowait(&self) -> Result<T> {
        self.get_with(false, None)
    }

    /// The number of values in the queue (a snapshot).
    pub fn qsize(&self) -> Result<usize> {
        Ok(self.handle.count(Method::QueueSize)? as usize)
    }

    /// Whether the queue is empty (a snapshot).
    pub fn empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }

    /// Marks one value taken as done (Python's `task_done`, for a joinable queue).
    ///
    /// # Errors
    ///
    /// Also [`Error::NotHeld`] when called more times than values were put, and
    /// [`Error::MethodNotAllowed`] for a queue that is not joinable.
    pub fn task_done(&self) -> Result<()> {
        self.handle.ok(Method::TaskDone)
    }

    /// Waits until every value put was marked done (Python's `join`, for a joinable queue).
    ///
    /// # Errors
    ///
    /// Also [`Error::MethodNotAllowed`] for a queue that is not joinable.
    pub fn join(&self) -> Result<()> {
        self.handle.ok(Method::QueueJoin { timeout: None })
    }

    /// [`join`](Self::join), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// Also [`Error::Timeout`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.handle.ok(Method::QueueJoin { timeout: Client::millis(Some(timeout)) })
    }
}

proxy! {
    /// A lock kept by the manager (Python's `manager.Lock()`, or `manager.RLock()`, reentrant
    /// per thread). A lock held by a client process that ends (even killed) is released.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`]; `release`, [`Error::NotHeld`].
    Lock
}

/// A held manager lock; released when dropped.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}

impl Lock {
    fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        let who = self.handle.owner()?;
        self.handle.boolean(Method::Acquire { owner: who, block, timeout: Client::millis(timeout) })
    }

    /// Acquires the lock, waiting as long as it takes.
    pub fn acquire(&self) -> Result<LockGuard<'_>> {
        // A guard is made only for a lock this thread took: a dropped guard releases, and a
        // `Lock` may be released by anyone, so a guard made for a lock not taken would release
        // another client's.
        if self.acquire_with(true, None)? {
            Ok(LockGuard { lock: self })
        } else {
            Err(Error::protocol("the manager answered a blocking acquire with false"))
        }
    }

    /// Acquires the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// Also [`Error::Timeout`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>> {
        if self.acquire_with(true, Some(timeout))? {
            Ok(LockGuard { lock: self })
        } else {
            Err(Error::Timeout)
        }
    }

    /// Acquires the lock if it is free now.
    pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>> {
        // Not `then_some(LockGuard { .. })`: that builds the guard before looking at the answer,
        // and dropping it on `false` would release the lock another client holds.
        if self.acquire_with(false, None)? {
            Ok(Some(LockGuard { lock: self }))
        } else {
            Ok(None)
        }
    }

    /// Releases the lock (Python's `release`; a guard does it when dropped).
    pub fn release(&self) -> Result<()> {
        let who = self.handle.owner()?;
        self.handle.ok(Method::Release { owner: who })
    }
}

proxy! {
    /// A semaphore kept by the manager (Python's `manager.Semaphore(n)` and
    /// `manager.BoundedSemaphore(n)`).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`]; `release` of a bounded semaphore at its initial value,
    /// [`Error::NotHeld`].
    Semaphore
}

impl Semaphore {
    fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        let who = self.handle.owner()?;
        self.handle.boolean(Method::Acquire { owner: who, block, timeout: Client::millis(timeout) })
    }

    /// Takes a permit, waiting as long as it takes.
    pub fn acquire(&self) -> Result<()> {
        // A `false` here would be a permit not taken: say so rather than let the caller release
        // one it never had.
        if self.acquire_with(true, None)? {
            Ok(())
        } else {
            Err(Error::protocol("the manager answered a blocking acquire with false"))
        }
    }

    /// Takes a permit, waiting at most `timeout`; false if none came.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.acquire_with(true, Some(timeout))
    }

    /// Takes a permit if one is free now.
    pub fn try_acquire(&self) -> Result<bool> {
        self.acquire_with(false, None)
    }

    /// Gives a permit back.
    pub fn release(&self) -> Result<()> {
        let who = self.handle.owner()?;
        self.handle.ok(Method::Release { owner: who })
    }

    /// The number of free permits (a snapshot).
    pub fn get_value(&self) -> Result<u32> {
        Ok(self.handle.count(Method::SemValue)? as u32)
    }
}

proxy! {
    /// An event kept by the manager (Python's `manager.Event()`).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`]; waits, [`Error::ShutDown`] when the manager shuts down meanwhile.
    Event
}

impl Event {
    /// Sets the flag and wakes every waiter.
    pub fn set(&self) -> Result<()> {
        self.handle.ok(Method::EventSet)
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<()> {
        self.handle.ok(Method::EventClear)
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool> {
        self.handle.boolean(Method::EventIsSet)
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<()> {
        self.handle.boolean(Method::EventWait { timeout: None }).map(|_| ())
    }

    /// Waits at most `timeout`; returns whether the flag is set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.handle.boolean(Method::EventWait { timeout: Client::millis(Some(timeout)) })
    }
}

proxy! {
    /// A condition variable kept by the manager (Python's `manager.Condition(lock)`), over a
    /// manager [`Lock`].
    ///
    /// # Errors
    ///
    /// [`Error::Connection`]; `wait`/`notify` without holding the lock, [`Error::NotHeld`].
    Condition
}

impl Condition {
    /// Waits for a notification, holding the lock before and after (the caller must hold it).
    pub fn wait(&self) -> Result<()> {
        let who = self.handle.owner()?;
        self.handle.boolean(Method::CondWait { owner: who, timeout: None }).map(|_| ())
    }

    /// Waits at most `timeout`; returns whether it was notified.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        let who = self.handle.owner()?;
        self.handle.boolean(Method::CondWait { owner: who, timeout: Client::millis(Some(timeout)) })
    }

    /// Wakes up to `n` waiters (the caller must hold the lock).
    pub fn notify(&self, n: u32) -> Result<()> {
        let who = self.handle.owner()?;
        self.handle.ok(Method::CondNotify { owner: who, n })
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(u32::MAX)
    }
}

proxy! {
    /// A barrier kept by the manager (Python's `manager.Barrier(parties)`).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`]; `wait`, [`Error::BrokenBarrier`] when the barrier breaks (a party
    /// timed out, or it was aborted or reset meanwhile).
    Barrier
}

impl Barrier {
    /// Waits for every party; returns this party's index (0 to parties − 1).
    pub fn wait(&self) -> Result<u32> {
        Ok(self.handle.count(Method::BarrierWait { timeout: None })? as u32)
    }

    /// Waits at most `timeout`; when it passes, the barrier breaks.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        Ok(self.handle.count(Method::BarrierWait { timeout: Client::millis(Some(timeout)) })? as u32)
    }

    /// Breaks the barrier: waiting and later parties get [`Error::BrokenBarrier`].
    pub fn abort(&self) -> Result<()> {
        self.handle.ok(Method::BarrierAbort)
    }

    /// Returns the barrier to its empty state; parties waiting get [`Error::BrokenBarrier`].
    pub fn reset(&self) -> Result<()> {
        self.handle.ok(Method::BarrierReset)
    }

    fn state(&self) -> Result<(u32, u32, bool)> {
        match self.handle.call(Method::BarrierState)? {
            Response::Barrier { parties, waiting, broken } => Ok((parties, waiting, broken)),
            r => Err(unexpected(r)),
        }
    }

    /// The number of parties.
    pub fn parties(&self) -> Result<u32> {
        Ok(self.state()?.0)
    }

    /// How many parties wait now.
    pub fn n_waiting(&self) -> Result<u32> {
        Ok(self.state()?.1)
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> Result<bool> {
        Ok(self.state()?.2)
    }
}

proxy! {
    /// A proxy of a registered type `T` (see [`Shared`]): only `T`'s declared requests can be
    /// sent.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`], [`Error::Serialize`], [`Error::Remote`] when the method panicked
    /// on the server, [`Error::MethodNotAllowed`] when the server's `T` does not declare the
    /// request (another program's type of the same name).
    Proxy<T>
}

impl<T: Shared> Proxy<T> {
    /// Calls a method of the object on the server.
    pub fn call(&self, request: &T::Request) -> Result<T::Response> {
        self.handle.value(Method::Custom { method: String::new(), args: enc(request)? })
    }
}

/// What a manager can look up by name: any proxy type, checked against the object's kind.
pub trait FromObject: Sized {
    /// Whether an object of `kind` fits this proxy.
    #[doc(hidden)]
    fn fits(kind: &KindRef<'_>) -> bool;
    /// The proxy.
    #[doc(hidden)]
    fn from_object(handle: ObjectHandle) -> Self;
}

/// An object's kind, as [`FromObject`] sees it.
#[doc(hidden)]
#[derive(Debug)]
pub struct KindRef<'a>(pub(crate) &'a Kind);

/// A reference to an object, as [`FromObject`] takes it.
#[doc(hidden)]
#[derive(Debug)]
pub struct ObjectHandle(pub(crate) Arc<Handle>);

impl<T: Shared> FromObject for Proxy<T> {
    /// An object of a registered type, of type `T` (compared by the Rust type's name).
    fn fits(kind: &KindRef<'_>) -> bool {
        matches!(kind.0, Kind::Custom { type_name, .. } if type_name == std::any::type_name::<T>())
    }
    fn from_object(handle: ObjectHandle) -> Self {
        Proxy::from_handle(handle.0)
    }
}

macro_rules! from_object {
    ($name:ident $(<$($t:ident),*>)?, $pat:pat) => {
        impl $(<$($t),*>)? FromObject for $name $(<$($t),*>)? {
            fn fits(kind: &KindRef<'_>) -> bool {
                matches!(kind.0, $pat)
            }
            fn from_object(handle: ObjectHandle) -> Self {
                $name::from_handle(handle.0)
            }
        }
    };
}

from_object!(Dict<K, V>, Kind::Dict);
from_object!(List<T>, Kind::List);
from_object!(Namespace, Kind::Namespace);
from_object!(Value<T>, Kind::Value);
from_object!(Array<T>, Kind::Array);
from_object!(Queue<T>, Kind::Queue { .. });
from_object!(Lock, Kind::Lock | Kind::RLock);
from_object!(Semaphore, Kind::Semaphore { .. });
from_object!(Event, Kind::Event);
from_object!(Condition, Kind::Condition { .. });
from_object!(Barrier, Kind::Barrier { .. });

/// The id of an object, for publishing it under a name.
pub trait AsObject {
    /// The object's id on its manager.
    #[doc(hidden)]
    fn object_id(&self) -> u64;
}

macro_rules! as_object {
    ($name:ident $(<$($t:ident),*>)?) => {
        impl $(<$($t),*>)? AsObject for $name $(<$($t),*>)? {
            fn object_id(&self) -> u64 {
                self.handle.id
            }
        }
    };
}

as_object!(Dict<K, V>);
as_object!(List<T>);
as_object!(Namespace);
as_object!(Value<T>);
as_object!(Array<T>);
as_object!(Queue<T>);
as_object!(Lock);
as_object!(Semaphore);
as_object!(Event);
as_object!(Condition);
as_object!(Barrier);
as_object!(Proxy<T>);
