//! The references that stored values holding proxies keep: recorded when a call stores such a
//! value, and, after each call, moved to the caller with the values its answer hands over or
//! released with the copies that are gone.

use std::sync::atomic::Ordering;
use std::sync::{MutexGuard, PoisonError};

use super::{Embedded, Held, Object, State};
use crate::wire::{ObjectId, Response};

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
impl Object {
    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the references of values about to be stored (state's mutex held).
    pub(super) fn register(&self, embedded: Embedded) {
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
    pub(super) fn reconcile(&self, state: &State, response: &Response) -> (Vec<ObjectId>, Vec<ObjectId>) {
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
}
