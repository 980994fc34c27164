//! The proxies of the data objects: [`Dict`], [`List`], [`Namespace`], [`Value`], [`Array`].

use std::borrow::Borrow;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::handle::{dec, enc, unexpected};
use crate::error::{Error, Result};
use crate::wire::{Kind, Method, Response};

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
    pub fn get<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
    {
        self.handle.maybe(Method::DictGet(enc(key)?))
    }

    /// A copy of the value of `key`, or `default` if absent (Python's `d.get(k, default)`).
    pub fn get_or<Q: Serialize + ?Sized>(&self, key: &Q, default: V) -> Result<V>
    where
        K: Borrow<Q>,
    {
        Ok(self.get(key)?.unwrap_or(default))
    }

    /// Sets `key` (Python's `d[k] = v`); returns the previous value.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        self.handle.maybe(Method::DictInsert(enc(&key)?, enc(&value)?))
    }

    /// Removes `key`; returns its value.
    pub fn remove<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
    {
        self.handle.maybe(Method::DictRemove(enc(key)?))
    }

    /// Removes `key` and returns its value (Python's `pop`): [`Error::KeyNotFound`] if absent.
    pub fn pop<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<V>
    where
        K: Borrow<Q>,
    {
        self.remove(key)?.ok_or(Error::KeyNotFound)
    }

    /// Whether `key` is there (Python's `in`).
    pub fn contains<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
    {
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

    /// Replaces the value. Takes the value or a reference to it, so `v.set(5)` reads as with
    /// proc-sync's `Value::set`, and a large value need not be moved.
    pub fn set(&self, value: impl Borrow<T>) -> Result<()> {
        self.handle.ok(Method::ValueSet(enc(value.borrow())?))
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

    /// Replaces the value at `index`. Takes the value or a reference to it, as [`Value::set`].
    pub fn set(&self, index: i64, value: impl Borrow<T>) -> Result<()> {
        self.handle.ok(Method::ArraySet(index, enc(value.borrow())?))
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

from_object!(Dict<K, V>, Kind::Dict);
from_object!(List<T>, Kind::List);
from_object!(Namespace, Kind::Namespace);
from_object!(Value<T>, Kind::Value);
from_object!(Array<T>, Kind::Array);
