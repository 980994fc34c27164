//! The calls on data objects: dict, list, namespace, value, array, and objects of registered
//! types. None waits: each function gets the object's state (its mutex held by
//! [`Object::call`]) and returns the answer and whether waiters should look again.

use std::collections::BTreeMap;

use super::{err, index, not_allowed, ok, short_debug, value, Object, OrderedMap};
use crate::registry::Erased;
use crate::wire::{Bytes, Method, Response, WireError};

impl Object {
    /// A dict's calls.
    pub(super) fn dict_call(d: &mut OrderedMap, method: Method) -> (Response, bool) {
        match method {
            Method::DictGet(k) => (Response::MaybeValue(d.get(&k).cloned().map(Bytes::from)), false),
            Method::DictInsert(k, v) => {
                (Response::MaybeValue(d.insert(k.into_vec(), v.into_vec()).map(Bytes::from)), false)
            }
            Method::DictRemove(k) => (Response::MaybeValue(d.remove(&k).map(Bytes::from)), false),
            Method::DictContains(k) => (Response::Bool(d.get(&k).is_some()), false),
            Method::DictKeys => {
                (Response::Values(d.iter().map(|(k, _)| Bytes::from(k.clone())).collect()), false)
            }
            Method::DictValues => {
                (Response::Values(d.iter().map(|(_, v)| Bytes::from(v.clone())).collect()), false)
            }
            Method::DictItems => (
                Response::Pairs(
                    d.iter().map(|(k, v)| (Bytes::from(k.clone()), Bytes::from(v.clone()))).collect(),
                ),
                false,
            ),
            Method::DictUpdate(pairs) => {
                for (k, v) in pairs {
                    d.insert(k.into_vec(), v.into_vec());
                }
                (ok(), false)
            }
            Method::DictSetDefault(k, v) => {
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
            Method::Len => (Response::Count(d.len() as u64), false),
            Method::Clear => {
                d.clear();
                (ok(), false)
            }
            other => not_allowed(&other),
        }
    }

    /// A list's calls. Every change bumps the version (see `ListReplace`); none wakes a waiter.
    pub(super) fn list_call(items: &mut Vec<Vec<u8>>, version: &mut u64, method: Method) -> (Response, bool) {
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

    /// A namespace's calls.
    pub(super) fn namespace_call(ns: &mut BTreeMap<String, Vec<u8>>, method: Method) -> (Response, bool) {
        match method {
            Method::NsGet(name) => match ns.get(&name) {
                Some(v) => (value(v.clone()), false),
                None => (err(WireError::KeyNotFound), false),
            },
            Method::NsSet(name, v) => {
                ns.insert(name, v.into_vec());
                (ok(), false)
            }
            Method::NsDel(name) => match ns.remove(&name) {
                Some(_) => (ok(), false),
                None => (err(WireError::KeyNotFound), false),
            },
            Method::NsItems => (
                Response::Named(ns.iter().map(|(k, v)| (k.clone(), Bytes::from(v.clone()))).collect()),
                false,
            ),
            other => not_allowed(&other),
        }
    }

    /// A value's calls.
    pub(super) fn value_call(v: &mut Vec<u8>, method: Method) -> (Response, bool) {
        match method {
            Method::ValueGet => (value(v.clone()), false),
            Method::ValueSet(new) => {
                *v = new.into_vec();
                (ok(), false)
            }
            other => not_allowed(&other),
        }
    }

    /// An array's calls.
    pub(super) fn array_call(a: &mut [Vec<u8>], method: Method) -> (Response, bool) {
        match method {
            Method::ArrayGet(i) => match index(i, a.len()) {
                Some(i) => (value(a[i].clone()), false),
                None => (err(WireError::IndexOutOfRange), false),
            },
            Method::ArraySet(i, v) => match index(i, a.len()) {
                Some(i) => {
                    a[i] = v.into_vec();
                    (ok(), false)
                }
                None => (err(WireError::IndexOutOfRange), false),
            },
            Method::ArraySnapshot => (Response::Values(a.iter().cloned().map(Bytes::from).collect()), false),
            Method::Len => (Response::Count(a.len() as u64), false),
            other => not_allowed(&other),
        }
    }

    /// A registered type's calls: its own typed request, decoded by the type.
    pub(super) fn custom_call(object: &mut dyn Erased, method: Method) -> (Response, bool) {
        match method {
            Method::Custom { method, args } => match object.call(&method, &args) {
                Ok(v) => (value(v), true),
                Err(e) => (err(e), false),
            },
            other => not_allowed(&other),
        }
    }
}
