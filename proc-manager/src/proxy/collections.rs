//! The proxies of the data objects: [`Dict`], [`List`], [`Namespace`], [`Value`], [`Array`].

use std::borrow::Borrow;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::handle::{dec, enc, unexpected};
#[cfg(feature = "tokio")]
use crate::client::Undo;
use crate::error::{Error, Result};
use crate::wire::{Kind, Method, Response};

proxy! {
    /// A shared dict (Python's `manager.dict()`), in insertion order. Keys compare by their
    /// serialized bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use proc_manager::Manager;
    ///
    /// let manager = Manager::start()?;
    /// let scores = manager.dict::<String, u32>()?;
    /// scores.insert("ann".into(), 3)?;
    /// scores.update([("bob".into(), 5), ("cy".into(), 8)])?;
    /// assert_eq!(scores.get("bob")?, Some(5));
    /// assert_eq!(scores.setdefault("dee".into(), 1)?, 1);
    /// assert_eq!(scores.keys()?, ["ann", "bob", "cy", "dee"]);
    /// assert!(matches!(scores.pop("zed"), Err(proc_manager::Error::KeyNotFound)));
    /// # Ok::<(), proc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Every method: [`Error::Connection`] when the manager is gone, [`Error::Serialize`] for a
    /// value that does not (de)serialize as `K`/`V`; the ones that say so, [`Error::KeyNotFound`].
    Dict<K, V>
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> Dict<K, V> {
    /// A copy of the value of `key`. The key may be any borrowed form of `K` that serializes as
    /// `K` does (`&str` for a `String` key, `&[T]` for a `Vec<T>`), as with std's maps.
    ///
    /// ```
    /// # fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// d.insert("k".to_string(), 1)?;
    /// assert_eq!(d.get("k")?, Some(1));
    /// assert_eq!(d.get_or("missing", 7)?, 7);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when a value
    /// does not serialize (nothing is sent) or the answer does not deserialize as the proxy's type,
    /// [`Error::TooLarge`] when a value exceeds the manager's frame limit.
    pub fn get<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
    {
        self.handle.maybe(Method::DictGet(enc(key)?))
    }

    /// A copy of the value of `key`, or `default` if absent (Python's `d.get(k, default)`).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when a value
    /// does not serialize (nothing is sent) or the answer does not deserialize as the proxy's type,
    /// [`Error::TooLarge`] when a value exceeds the manager's frame limit.
    pub fn get_or<Q: Serialize + ?Sized>(&self, key: &Q, default: V) -> Result<V>
    where
        K: Borrow<Q>,
    {
        Ok(self.get(key)?.unwrap_or(default))
    }

    /// Sets `key` (Python's `d[k] = v`); returns the previous value.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when a value
    /// does not serialize (nothing is sent) or the answer does not deserialize as the proxy's type,
    /// [`Error::TooLarge`] when a value exceeds the manager's frame limit.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        self.handle.maybe(Method::DictInsert(enc(&key)?, enc(&value)?))
    }

    /// Removes `key`; returns its value.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when a value
    /// does not serialize (nothing is sent) or the answer does not deserialize as the proxy's type,
    /// [`Error::TooLarge`] when a value exceeds the manager's frame limit.
    pub fn remove<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
    {
        self.handle.maybe(Method::DictRemove(enc(key)?))
    }

    /// Removes `key` and returns its value (Python's `pop`): [`Error::KeyNotFound`] if absent.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when a value
    /// does not serialize (nothing is sent) or the answer does not deserialize as the proxy's type,
    /// [`Error::TooLarge`] when a value exceeds the manager's frame limit; [`Error::KeyNotFound`] when `key`
    /// is absent.
    pub fn pop<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<V>
    where
        K: Borrow<Q>,
    {
        self.remove(key)?.ok_or(Error::KeyNotFound)
    }

    /// Whether `key` is there (Python's `in`).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when a value
    /// does not serialize (nothing is sent), [`Error::TooLarge`] when it exceeds the manager's frame limit.
    pub fn contains<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
    {
        self.handle.boolean(Method::DictContains(enc(key)?))
    }

    /// The number of entries.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn len(&self) -> Result<usize> {
        Ok(self.handle.count(Method::Len)? as usize)
    }

    /// Whether the dict is empty.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when the value
    /// held does not deserialize as the proxy's type.
    pub fn keys(&self) -> Result<Vec<K>> {
        self.handle.values(Method::DictKeys)
    }

    /// The values, in insertion order.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when the value
    /// held does not deserialize as the proxy's type.
    pub fn values(&self) -> Result<Vec<V>> {
        self.handle.values(Method::DictValues)
    }

    /// The entries, in insertion order: a copy of the whole dict in one round trip.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when the value
    /// held does not deserialize as the proxy's type.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.handle.call(Method::DictItems)? {
            Response::Pairs(pairs) => pairs.iter().map(|(k, v)| Ok((dec(k)?, dec(v)?))).collect(),
            r => Err(unexpected(r)),
        }
    }

    /// Sets many entries in one round trip (Python's `update`).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when a value
    /// does not serialize (nothing is sent), [`Error::TooLarge`] when it exceeds the manager's frame limit.
    pub fn update(&self, entries: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let pairs = entries.into_iter().map(|(k, v)| Ok((enc(&k)?, enc(&v)?))).collect::<Result<Vec<_>>>()?;
        self.handle.ok(Method::DictUpdate(pairs))
    }

    /// The value of `key`, set to `default` first if absent (Python's `setdefault`).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when a value
    /// does not serialize (nothing is sent) or the answer does not deserialize as the proxy's type,
    /// [`Error::TooLarge`] when a value exceeds the manager's frame limit.
    pub fn setdefault(&self, key: K, default: V) -> Result<V> {
        self.handle.value(Method::DictSetDefault(enc(&key)?, enc(&default)?))
    }

    /// Removes every entry.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn clear(&self) -> Result<()> {
        self.handle.ok(Method::Clear)
    }
}

/// A few common calls without blocking the runtime's thread (feature `tokio`). They never wait
/// on the manager; a future dropped before it is done may or may not have had its effect.
#[cfg(feature = "tokio")]
impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> Dict<K, V> {
    /// The async [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// d.insert_async("k".to_string(), 1).await?;
    /// assert_eq!(d.get_async("k").await?, Some(1));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get); also [`Error::Connection`] when there is no tokio runtime
    /// here.
    pub async fn get_async<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
    {
        let method = Method::DictGet(enc(key)?);
        self.handle.maybe_async(method).await
    }

    /// The async [`insert`](Self::insert); returns the previous value.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let d = manager.dict::<u8, String>()?;
    /// assert_eq!(d.insert_async(1, "a".into()).await?, None);
    /// assert_eq!(d.insert_async(1, "b".into()).await?, Some("a".into()));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert); also [`Error::Connection`] when there is no tokio runtime
    /// here.
    pub async fn insert_async(&self, key: K, value: V) -> Result<Option<V>> {
        let method = Method::DictInsert(enc(&key)?, enc(&value)?);
        self.handle.maybe_async(method).await
    }
}

proxy! {
    /// A shared list (Python's `manager.list()`). Indices may be negative, as in Python.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = proc_manager::Manager::start()?;
    /// let l = manager.list::<i32>()?;
    /// l.extend([3, 1, 2])?;
    /// l.append(0)?;
    /// assert_eq!(l.get(-1)?, 0);
    /// l.sort()?;
    /// assert_eq!(l.snapshot()?, [0, 1, 2, 3]);
    /// assert_eq!(l.pop()?, 3);
    /// assert_eq!(l.index(&1)?, 1);
    /// # Ok::<(), proc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Every method: [`Error::Connection`], [`Error::Serialize`]; those with an index,
    /// [`Error::IndexOutOfRange`]; `remove` and `index`, [`Error::ValueNotFound`].
    List<T>
}

impl<T: Serialize + DeserializeOwned> List<T> {
    /// Appends a value.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when a value
    /// does not serialize (nothing is sent), [`Error::TooLarge`] when it exceeds the manager's frame limit.
    pub fn append(&self, value: T) -> Result<()> {
        self.handle.ok(Method::ListAppend(enc(&value)?))
    }

    /// Appends many values in one round trip.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when a value
    /// does not serialize (nothing is sent), [`Error::TooLarge`] when it exceeds the manager's frame limit.
    pub fn extend(&self, values: impl IntoIterator<Item = T>) -> Result<()> {
        let values = values.into_iter().map(|v| enc(&v)).collect::<Result<Vec<_>>>()?;
        self.handle.ok(Method::ListExtend(values))
    }

    /// A copy of the value at `index`.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when the value
    /// held does not deserialize as the proxy's type; [`Error::IndexOutOfRange`] when `index` is out of
    /// range.
    pub fn get(&self, index: i64) -> Result<T> {
        self.handle.value(Method::ListGet(index))
    }

    /// Replaces the value at `index` (Python's `l[i] = v`).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when a value
    /// does not serialize (nothing is sent), [`Error::TooLarge`] when it exceeds the manager's frame limit;
    /// [`Error::IndexOutOfRange`] when `index` is out of range.
    pub fn set(&self, index: i64, value: T) -> Result<()> {
        self.handle.ok(Method::ListSet(index, enc(&value)?))
    }

    /// Inserts before `index` (clamped, as Python's `insert`).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when a value
    /// does not serialize (nothing is sent), [`Error::TooLarge`] when it exceeds the manager's frame limit.
    pub fn insert(&self, index: i64, value: T) -> Result<()> {
        self.handle.ok(Method::ListInsert(index, enc(&value)?))
    }

    /// Removes and returns the last value.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when the value
    /// held does not deserialize as the proxy's type; [`Error::IndexOutOfRange`] when the list is empty.
    pub fn pop(&self) -> Result<T> {
        self.handle.value(Method::ListPop(None))
    }

    /// Removes and returns the value at `index`.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when the value
    /// held does not deserialize as the proxy's type; [`Error::IndexOutOfRange`] when `index` is out of
    /// range.
    pub fn pop_at(&self, index: i64) -> Result<T> {
        self.handle.value(Method::ListPop(Some(index)))
    }

    /// Removes the first value equal to `value` (compared serialized).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when a value
    /// does not serialize (nothing is sent), [`Error::TooLarge`] when it exceeds the manager's frame limit;
    /// [`Error::ValueNotFound`] when no item equals `value`.
    pub fn remove(&self, value: &T) -> Result<()> {
        self.handle.ok(Method::ListRemove(enc(value)?))
    }

    /// The index of the first value equal to `value`.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when a value
    /// does not serialize (nothing is sent), [`Error::TooLarge`] when it exceeds the manager's frame limit;
    /// [`Error::ValueNotFound`] when no item equals `value`.
    pub fn index(&self, value: &T) -> Result<usize> {
        Ok(self.handle.count(Method::ListIndex(enc(value)?))? as usize)
    }

    /// The number of values.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn len(&self) -> Result<usize> {
        Ok(self.handle.count(Method::Len)? as usize)
    }

    /// Whether the list is empty.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of every value, in one round trip (Python's `list(l)`).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when the value
    /// held does not deserialize as the proxy's type.
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
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn clear(&self) -> Result<()> {
        self.handle.ok(Method::Clear)
    }

    /// Sorts the list in place, atomically: sorted here, then stored only if no one changed
    /// the list meanwhile (else tried again).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when the value
    /// held does not deserialize as the proxy's type.
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

/// A few common calls without blocking the runtime's thread (feature `tokio`). They never wait
/// on the manager; a future dropped before it is done may or may not have had its effect.
#[cfg(feature = "tokio")]
impl<T: Serialize + DeserializeOwned> List<T> {
    /// The async [`append`](Self::append).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let l = manager.list::<u32>()?;
    /// l.append_async(5).await?;
    /// assert_eq!(l.get_async(0).await?, 5);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`append`](Self::append); also [`Error::Connection`] when there is no tokio runtime
    /// here.
    pub async fn append_async(&self, value: T) -> Result<()> {
        let method = Method::ListAppend(enc(&value)?);
        self.handle.ok_async(method, Undo::Nothing).await
    }

    /// The async [`get`](Self::get): a copy of the value at `index`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let l = manager.list::<u32>()?;
    /// l.extend([1, 2])?;
    /// assert_eq!(l.get_async(-1).await?, 2);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get); also [`Error::Connection`] when there is no tokio runtime
    /// here.
    pub async fn get_async(&self, index: i64) -> Result<T> {
        self.handle.value_async(Method::ListGet(index), Undo::Nothing).await
    }
}

proxy! {
    /// A shared namespace (Python's `manager.Namespace()`): named fields of any serde type.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = proc_manager::Manager::start()?;
    /// let ns = manager.namespace()?;
    /// ns.set("x", &10u32)?;
    /// ns.set("name", "run-1")?;
    /// assert_eq!(ns.get::<u32>("x")?, 10);
    /// assert_eq!(ns.get::<String>("name")?, "run-1");
    /// ns.del("x")?;
    /// assert_eq!(ns.names()?, ["name"]);
    /// # Ok::<(), proc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Every method: [`Error::Connection`], [`Error::Serialize`] (also for a field read as
    /// another type than it was set); `get` and `del`, [`Error::KeyNotFound`].
    Namespace
}

impl Namespace {
    /// A copy of field `name`.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when the field
    /// does not deserialize as `T`; [`Error::KeyNotFound`] when there is no field `name`.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        self.handle.value(Method::NsGet(name.to_string()))
    }

    /// Sets field `name`.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when a value
    /// does not serialize (nothing is sent), [`Error::TooLarge`] when it exceeds the manager's frame limit.
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        self.handle.ok(Method::NsSet(name.to_string(), enc(value)?))
    }

    /// Deletes field `name`.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::KeyNotFound`] when there is
    /// no field `name`.
    pub fn del(&self, name: &str) -> Result<()> {
        self.handle.ok(Method::NsDel(name.to_string()))
    }

    /// The names of the fields, sorted.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn names(&self) -> Result<Vec<String>> {
        match self.handle.call(Method::NsItems)? {
            Response::Named(items) => Ok(items.into_iter().map(|(n, _)| n).collect()),
            r => Err(unexpected(r)),
        }
    }
}

/// The async [`get`](Namespace::get) and [`set`](Namespace::set) (feature `tokio`). They never
/// wait on the manager; a future dropped before it is done may or may not have had its effect.
#[cfg(feature = "tokio")]
impl Namespace {
    /// The async [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let ns = manager.namespace()?;
    /// ns.set_async("x", &10u32).await?;
    /// assert_eq!(ns.get_async::<u32>("x").await?, 10);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get); also [`Error::Connection`] when there is no tokio runtime here.
    pub async fn get_async<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        self.handle.value_async(Method::NsGet(name.to_string()), Undo::Nothing).await
    }

    /// The async [`set`](Self::set).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let ns = manager.namespace()?;
    /// ns.set_async("name", "ann").await?;
    /// assert_eq!(ns.get::<String>("name")?, "ann");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set); also [`Error::Connection`] when there is no tokio runtime here.
    pub async fn set_async<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        let method = Method::NsSet(name.to_string(), enc(value)?);
        self.handle.ok_async(method, Undo::Nothing).await
    }
}

proxy! {
    /// A shared value (Python's `manager.Value(typecode, value)`, of any serde type).
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = proc_manager::Manager::start()?;
    /// let v = manager.value(1.5f64)?;
    /// v.set(2.5)?;
    /// assert_eq!(v.get()?, 2.5);
    /// # Ok::<(), proc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Connection`], [`Error::Serialize`].
    Value<T>
}

impl<T: Serialize + DeserializeOwned> Value<T> {
    /// A copy of the value.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when the value
    /// held does not deserialize as the proxy's type.
    pub fn get(&self) -> Result<T> {
        self.handle.value(Method::ValueGet)
    }

    /// Replaces the value. Takes the value or a reference to it, so `v.set(5)` reads as with
    /// proc-sync's `Value::set`, and a large value need not be moved.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when a value
    /// does not serialize (nothing is sent), [`Error::TooLarge`] when it exceeds the manager's frame limit.
    pub fn set(&self, value: impl Borrow<T>) -> Result<()> {
        self.handle.ok(Method::ValueSet(enc(value.borrow())?))
    }
}

/// A few common calls without blocking the runtime's thread (feature `tokio`). They never wait
/// on the manager; a future dropped before it is done may or may not have had its effect.
#[cfg(feature = "tokio")]
impl<T: Serialize + DeserializeOwned> Value<T> {
    /// The async [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let v = manager.value(1u32)?;
    /// assert_eq!(v.get_async().await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get); also [`Error::Connection`] when there is no tokio runtime
    /// here.
    pub async fn get_async(&self) -> Result<T> {
        self.handle.value_async(Method::ValueGet, Undo::Nothing).await
    }

    /// The async [`set`](Self::set).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let v = manager.value(1u32)?;
    /// v.set_async(2).await?;
    /// assert_eq!(v.get()?, 2);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set); also [`Error::Connection`] when there is no tokio runtime
    /// here.
    pub async fn set_async(&self, value: impl Borrow<T>) -> Result<()> {
        let method = Method::ValueSet(enc(value.borrow())?);
        self.handle.ok_async(method, Undo::Nothing).await
    }
}

proxy! {
    /// A shared fixed-length array (Python's `manager.Array(typecode, sequence)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = proc_manager::Manager::start()?;
    /// let a = manager.array(vec![0u8; 4])?;
    /// a.set(-1, 9)?;
    /// assert_eq!(a.len()?, 4);
    /// assert_eq!(a.to_vec()?, [0, 0, 0, 9]);
    /// # Ok::<(), proc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Connection`], [`Error::Serialize`]; with an index, [`Error::IndexOutOfRange`].
    Array<T>
}

impl<T: Serialize + DeserializeOwned> Array<T> {
    /// A copy of the value at `index`.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when the value
    /// held does not deserialize as the proxy's type; [`Error::IndexOutOfRange`] when `index` is out of
    /// range.
    pub fn get(&self, index: i64) -> Result<T> {
        self.handle.value(Method::ArrayGet(index))
    }

    /// Replaces the value at `index`. Takes the value or a reference to it, as [`Value::set`].
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when a value
    /// does not serialize (nothing is sent), [`Error::TooLarge`] when it exceeds the manager's frame limit;
    /// [`Error::IndexOutOfRange`] when `index` is out of range.
    pub fn set(&self, index: i64, value: impl Borrow<T>) -> Result<()> {
        self.handle.ok(Method::ArraySet(index, enc(value.borrow())?))
    }

    /// The length.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn len(&self) -> Result<usize> {
        Ok(self.handle.count(Method::Len)? as usize)
    }

    /// Whether the array is empty.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of every value.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when the value
    /// held does not deserialize as the proxy's type.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.handle.values(Method::ArraySnapshot)
    }
}

/// The async [`get`](Array::get) and [`set`](Array::set) (feature `tokio`). They never wait on
/// the manager; a future dropped before it is done may or may not have had its effect.
#[cfg(feature = "tokio")]
impl<T: Serialize + DeserializeOwned> Array<T> {
    /// The async [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let a = manager.array(vec![1u8, 2, 3])?;
    /// assert_eq!(a.get_async(-1).await?, 3);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get); also [`Error::Connection`] when there is no tokio runtime here.
    pub async fn get_async(&self, index: i64) -> Result<T> {
        self.handle.value_async(Method::ArrayGet(index), Undo::Nothing).await
    }

    /// The async [`set`](Self::set).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let a = manager.array(vec![0u8; 2])?;
    /// a.set_async(0, 7).await?;
    /// assert_eq!(a.to_vec()?, [7, 0]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set); also [`Error::Connection`] when there is no tokio runtime here.
    pub async fn set_async(&self, index: i64, value: impl Borrow<T>) -> Result<()> {
        let method = Method::ArraySet(index, enc(value.borrow())?);
        self.handle.ok_async(method, Undo::Nothing).await
    }
}

from_object!(Dict<K, V>, Kind::Dict);
from_object!(List<T>, Kind::List);
from_object!(Namespace, Kind::Namespace);
from_object!(Value<T>, Kind::Value);
from_object!(Array<T>, Kind::Array);
